//! The table of open client connections: admits a new one while there is
//! room, and when there is none, makes room by closing the keep-alive
//! connection that has been idle the longest (one that has been answered and
//! waits for its next request; a new connection that has sent nothing yet is
//! not one).
//!
//! Owns a second handle on each socket, only to shut it down from outside.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Admitted, no request yet.
const NEW: u8 = 0;
/// Between requests, after at least one: may be closed to make room.
const IDLE: u8 = 1;
const BUSY: u8 = 2;
const EVICTED: u8 = 3;
/// Serving a stream: neither idle (never evicted: its keep-alives are
/// traffic) nor busy (the drain does not wait for it; it ends itself).
const STREAMING: u8 = 4;

/// What a connection's thread and the table share about it.
#[derive(Debug)]
pub(crate) struct Activity {
    state: AtomicU8,
    /// When it last finished a request (or opened), in ns since the table's epoch.
    idle_since: AtomicU64,
    /// Answers are being written: the drain waits for them.
    unsent: AtomicBool,
    epoch: Instant,
}

impl Activity {
    /// A request begins; `false` if the connection was evicted meanwhile.
    /// Sequentially consistent, as is [`Conns::busy`]: a request that began
    /// before a stop is seen by the drain, or sees the stop itself.
    pub(crate) fn begin(&self) -> bool {
        self.state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s != EVICTED).then_some(BUSY)
            })
            .is_ok()
    }

    /// Every request that arrived is answered, the answers are about to be
    /// written, and then the connection waits for its next request: from
    /// now on it may be closed to make room (its read side only, so that
    /// the answers still leave).
    pub(crate) fn idle(&self) {
        self.idle_since.store(nanos(self.epoch), Ordering::Relaxed);
        self.unsent.store(true, Ordering::SeqCst);
        let _ = self
            .state
            .compare_exchange(BUSY, IDLE, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The connection now serves a stream.
    pub(crate) fn streaming(&self) {
        self.state.store(STREAMING, Ordering::SeqCst);
        self.unsent.store(false, Ordering::SeqCst);
    }

    /// The answers are written.
    pub(crate) fn sent(&self) {
        self.unsent.store(false, Ordering::SeqCst);
    }

    /// Whether a request is being read or answered, or its answer written.
    pub(crate) fn is_busy(&self) -> bool {
        self.state.load(Ordering::SeqCst) == BUSY || self.unsent.load(Ordering::SeqCst)
    }
}

fn nanos(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

struct Entry {
    stream: TcpStream,
    activity: Arc<Activity>,
}

/// A connection's place in the table; dropping it frees the place.
pub(crate) struct Ticket {
    table: Arc<Conns>,
    id: u64,
    pub(crate) activity: Arc<Activity>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

/// Open connections, at most `max`.
pub(crate) struct Conns {
    table: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    max: usize,
    epoch: Instant,
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// Every place is taken by a connection that is new or in the middle of
    /// a request.
    AllBusy,
}

/// How a connection got its place.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admitted {
    Free,
    /// The longest-idle connection was closed to make room.
    Evicted,
}

impl Conns {
    pub(crate) fn new(max: usize) -> Arc<Conns> {
        Arc::new(Conns {
            table: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            max,
            epoch: Instant::now(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.lock().len()
    }

    /// Connections in the middle of a request now.
    pub(crate) fn busy(&self) -> usize {
        self.lock()
            .values()
            .filter(|e| e.activity.is_busy())
            .count()
    }

    /// Takes a place for `stream` (keeping `handle`, a second handle on it),
    /// closing the longest-idle connection if every place is taken.
    ///
    /// # Errors
    /// [`Full::AllBusy`]: no place, and no idle keep-alive connection to close.
    pub(crate) fn admit(self: &Arc<Self>, handle: TcpStream) -> Result<(Ticket, Admitted), Full> {
        let mut table = self.lock();
        let mut how = Admitted::Free;
        if table.len() >= self.max {
            let victim = table
                .iter()
                .filter(|(_, e)| e.activity.state.load(Ordering::SeqCst) == IDLE)
                .min_by_key(|(id, e)| (e.activity.idle_since.load(Ordering::Relaxed), **id))
                .map(|(id, _)| *id)
                .ok_or(Full::AllBusy)?;
            let entry = &table[&victim];
            if entry
                .activity
                .state
                .compare_exchange(IDLE, EVICTED, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                return Err(Full::AllBusy); // it just got a request: let it be
            }
            // Read side only: its thread wakes to an end of stream, and a
            // last answer still on its way out is not cut off.
            let _ = entry.stream.shutdown(Shutdown::Read);
            table.remove(&victim);
            how = Admitted::Evicted;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            state: AtomicU8::new(NEW),
            idle_since: AtomicU64::new(nanos(self.epoch)),
            unsent: AtomicBool::new(false),
            epoch: self.epoch,
        });
        table.insert(
            id,
            Entry {
                stream: handle,
                activity: activity.clone(),
            },
        );
        drop(table);
        Ok((
            Ticket {
                table: self.clone(),
                id,
                activity,
            },
            how,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{Admitted, Conns, Full};
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (client, listener.accept().unwrap().0)
    }

    #[test]
    fn evicts_the_longest_idle_and_never_a_busy_or_new_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let conns = Conns::new(2);
        let (mut c1, s1) = pair(&listener);
        let (_c2, s2) = pair(&listener);
        let (t1, _) = conns.admit(s1).unwrap();
        let (t2, _) = conns.admit(s2).unwrap();
        // Both new, neither has had a request: no room to make.
        let (_c0, s0) = pair(&listener);
        assert_eq!(conns.admit(s0).err(), Some(Full::AllBusy));
        assert!(t1.activity.begin());
        assert!(t1.activity.begin(), "a pipelined request after it");
        t1.activity.idle(); // answered: an idle keep-alive connection
        assert!(t2.activity.begin()); // busy: never evicted
        let (_c3, s3) = pair(&listener);
        let (t3, how) = conns.admit(s3).unwrap();
        assert_eq!(how, Admitted::Evicted);
        assert!(
            !t1.activity.begin(),
            "the evicted one may not start a request"
        );
        assert_eq!(
            c1.read(&mut [0u8; 1]).unwrap(),
            0,
            "evicted socket is closed"
        );
        assert_eq!(conns.open(), 2);
        assert_eq!(conns.busy(), 1);
        // t2 busy, t3 idle after a request: t3 goes next; then none is idle.
        assert!(t3.activity.begin());
        t3.activity.idle();
        let (_c4, s4) = pair(&listener);
        let (t4, how) = conns.admit(s4).unwrap();
        assert_eq!(how, Admitted::Evicted);
        assert!(t4.activity.begin());
        let (_c5, s5) = pair(&listener);
        assert_eq!(conns.admit(s5).err(), Some(Full::AllBusy));
        t2.activity.idle();
        drop(t2);
        assert_eq!(conns.open(), 1);
        // A stream is never evicted, and not busy.
        t4.activity.streaming();
        assert_eq!(conns.busy(), 0);
        let (_c6, s6) = pair(&listener);
        let (_t6, _) = conns.admit(s6).unwrap();
        let (_c7, s7) = pair(&listener);
        assert_eq!(conns.admit(s7).err(), Some(Full::AllBusy));
    }
}
