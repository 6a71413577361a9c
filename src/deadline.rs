//! Deadlines on blocking socket calls, with or without kernel socket timeouts.
//!
//! On Linux every blocking read and write is bounded by `SO_RCVTIMEO` /
//! `SO_SNDTIMEO` (std's `set_read_timeout` / `set_write_timeout`). lwIP as
//! Unikraft ships it has neither: setting one fails with `ENOPROTOOPT`. The
//! first such failure switches the process to a watchdog: one thread that
//! holds every armed deadline and shuts down (`TcpStream::shutdown`, both
//! ways: on lwIP a read-side shutdown does not wake a blocked read) a socket
//! whose deadline passed, so that the blocked call returns. As nothing can be
//! written after that, a read may leave last words (a `408`) that the
//! watchdog sends, without blocking, before it shuts the socket. The switch is
//! logged once. `BROKER_SOCKET_TIMEOUTS=watchdog` forces the watchdog on any
//! stack (the tests use it to run every deadline test in both modes).
//!
//! Owns the mode and the watchdog thread; every socket read or write that
//! waits on a peer goes through [`Socket`]. Knows nothing of HTTP: it imports
//! nothing of the crate but `log`.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The variable that forces the watchdog (`watchdog`) or, the default,
/// kernel timeouts where the stack has them (`kernel`).
pub(crate) const MODE_VARIABLE: &str = "BROKER_SOCKET_TIMEOUTS";

/// How far a socket's kernel timeout may stray from the time left before it
/// is set again (each setting is a system call).
const SLACK: Duration = Duration::from_millis(100);

/// The watchdog thread's stack: it only sorts deadlines and shuts sockets.
const WATCHDOG_STACK: usize = 64 * 1024;

const UNKNOWN: u8 = 0;
const KERNEL: u8 = 1;
const WATCHDOG: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Whether deadlines are kernel socket timeouts (else: the watchdog).
pub(crate) fn kernel_timeouts() -> bool {
    match MODE.load(Ordering::Relaxed) {
        KERNEL => true,
        WATCHDOG => false,
        _ => {
            let forced = std::env::var(MODE_VARIABLE).is_ok_and(|v| v == "watchdog");
            let mode = if forced { WATCHDOG } else { KERNEL };
            if MODE
                .compare_exchange(UNKNOWN, mode, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
                && forced
            {
                crate::log::info!(
                    "socket deadlines: enforced by a watchdog thread ({MODE_VARIABLE}=watchdog)"
                );
            }
            MODE.load(Ordering::Relaxed) == KERNEL
        }
    }
}

/// `e`, from setting a socket timeout, says the stack has none.
fn unsupported(e: &io::Error) -> bool {
    const ENOSYS: i32 = 38;
    const ENOPROTOOPT: i32 = 92;
    const EOPNOTSUPP: i32 = 95;
    matches!(e.raw_os_error(), Some(ENOSYS | ENOPROTOOPT | EOPNOTSUPP))
}

/// Switches to the watchdog for good, saying so once.
fn fall_back(e: &io::Error) {
    if MODE.swap(WATCHDOG, Ordering::Relaxed) != WATCHDOG {
        crate::log::warning!(
            "socket deadlines: the network stack has no socket timeouts ({e}); \
             enforced by a watchdog thread"
        );
    }
}

/// The error of a call cut at its deadline.
fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "deadline passed")
}

/// The instant `d` from now; an absurdly long `d` (past what the clock can
/// hold) is as good as a century.
pub(crate) fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Whether `e` is a read or write that ran out of time.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A TCP socket whose every blocking read and write ends by a deadline.
#[derive(Debug)]
pub(crate) struct Socket {
    stream: Arc<TcpStream>,
    /// The kernel timeouts the socket has now, to set them only on a change.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// The watchdog cut a read and sent its last words.
    said_farewell: bool,
}

impl Socket {
    pub(crate) fn new(stream: TcpStream) -> Socket {
        Socket {
            stream: Arc::new(stream),
            read_timeout: None,
            write_timeout: None,
            said_farewell: false,
        }
    }

    pub(crate) fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// One read that returns by `deadline` (`TimedOut` past it).
    ///
    /// # Errors
    /// The read's own, and `TimedOut`.
    pub(crate) fn read_by(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.read_by_else(buf, deadline, None)
    }

    /// As [`Socket::read_by`]; if the watchdog cuts the read, it first sends
    /// `farewell` (see [`Socket::said_farewell`]).
    ///
    /// # Errors
    /// The read's own, and `TimedOut`.
    pub(crate) fn read_by_else(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
        farewell: Option<&'static [u8]>,
    ) -> io::Result<usize> {
        self.call_by(deadline, false, farewell, |mut s| s.read(buf))
    }

    /// One write that returns by `deadline` (`TimedOut` past it).
    ///
    /// # Errors
    /// The write's own, and `TimedOut`.
    pub(crate) fn write_by(&mut self, buf: &[u8], deadline: Instant) -> io::Result<usize> {
        self.call_by(deadline, true, None, |mut s| s.write(buf))
    }

    /// Runs `op` (one read, or one write if `write`) so that it returns by
    /// `deadline`: under a kernel timeout, or with the watchdog armed.
    fn call_by<T>(
        &mut self,
        deadline: Instant,
        write: bool,
        farewell: Option<&'static [u8]>,
        mut op: impl FnMut(&TcpStream) -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            if !self.kernel_timeout(left, write)? {
                return self.watched(deadline, farewell, op);
            }
            match op(&self.stream) {
                // Woken within the slack before the deadline: wait the rest.
                Err(e) if is_timeout(&e) => {}
                other => return other,
            }
        }
    }

    /// Whether the watchdog cut a read and sent its farewell: the socket is
    /// shut down, and the farewell is the last thing the peer got.
    pub(crate) fn said_farewell(&self) -> bool {
        self.said_farewell
    }

    /// Writes all of `buf`, each write within `timeout` of its start.
    ///
    /// # Errors
    /// As [`Socket::write_by`]; `WriteZero` if the socket takes nothing.
    pub(crate) fn write_all_within(&mut self, mut buf: &[u8], timeout: Duration) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_by(buf, after(timeout)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Gives the socket a kernel timeout near `left`; `false` when the
    /// watchdog is to bound the call instead.
    fn kernel_timeout(&mut self, left: Duration, write: bool) -> io::Result<bool> {
        if !kernel_timeouts() {
            return Ok(false);
        }
        let now = if write {
            &mut self.write_timeout
        } else {
            &mut self.read_timeout
        };
        if now.is_some_and(|t| t.abs_diff(left) <= SLACK) {
            return Ok(true);
        }
        let set = if write {
            self.stream.set_write_timeout(Some(left))
        } else {
            self.stream.set_read_timeout(Some(left))
        };
        match set {
            Ok(()) => {
                *now = Some(left);
                Ok(true)
            }
            Err(e) if unsupported(&e) => {
                fall_back(&e);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `op` with the watchdog armed to send `farewell` and shut the
    /// socket down at `deadline`; a call it cut short is `TimedOut`.
    fn watched<T>(
        &mut self,
        deadline: Instant,
        farewell: Option<&'static [u8]>,
        op: impl FnOnce(&TcpStream) -> io::Result<T>,
    ) -> io::Result<T> {
        let armed = arm(&self.stream, deadline, farewell)?;
        let result = op(&self.stream);
        if armed.fired() {
            self.said_farewell = farewell.is_some();
            return Err(timed_out());
        }
        result
    }
}

/// A socket the watchdog holds, and what to send before it shuts it down.
type Watched = (Arc<TcpStream>, Option<&'static [u8]>);

/// The watchdog's deadlines, earliest first (with a number to tell equal
/// instants apart).
struct Watchdog {
    armed: BTreeMap<(Instant, u64), Watched>,
    next_id: u64,
    running: bool,
}

static WATCH: Mutex<Watchdog> = Mutex::new(Watchdog {
    armed: BTreeMap::new(),
    next_id: 0,
    running: false,
});
static WAKE: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, Watchdog> {
    WATCH.lock().unwrap_or_else(|e| e.into_inner())
}

/// A deadline the watchdog holds; dropping it disarms it.
struct Armed {
    key: (Instant, u64),
}

impl Armed {
    /// Disarms it; `true` if the watchdog had already shut the socket down.
    fn fired(self) -> bool {
        let key = self.key;
        std::mem::forget(self);
        lock().armed.remove(&key).is_none()
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        lock().armed.remove(&self.key);
    }
}

/// Hands `stream` to the watchdog until `deadline`, starting its thread the
/// first time.
fn arm(
    stream: &Arc<TcpStream>,
    deadline: Instant,
    farewell: Option<&'static [u8]>,
) -> io::Result<Armed> {
    let mut watch = lock();
    if !watch.running {
        std::thread::Builder::new()
            .name("deadline watchdog".into())
            .stack_size(WATCHDOG_STACK)
            .spawn(run)
            .map_err(|e| io::Error::other(format!("cannot start the deadline watchdog: {e}")))?;
        watch.running = true;
    }
    let key = (deadline, watch.next_id);
    watch.next_id += 1;
    let earliest = watch.armed.first_key_value().is_none_or(|(k, _)| key < *k);
    watch.armed.insert(key, (stream.clone(), farewell));
    if earliest {
        WAKE.notify_one();
    }
    Ok(Armed { key })
}

/// The watchdog thread: sleeps until the earliest deadline, shuts down the
/// sockets whose deadline passed.
fn run() {
    let mut watch = lock();
    loop {
        let Some((&(deadline, id), _)) = watch.armed.first_key_value() else {
            watch = WAKE.wait(watch).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if let Some((stream, farewell)) = watch.armed.remove(&(deadline, id)) {
                cut(&stream, farewell);
            }
            continue;
        }
        watch = WAKE
            .wait_timeout(watch, left)
            .map(|(w, _)| w)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

/// Sends `farewell` if it fits in the socket's buffer now, then shuts the
/// socket down both ways, which wakes the call blocked on it.
fn cut(stream: &TcpStream, farewell: Option<&[u8]>) {
    if let Some(bytes) = farewell {
        // Never blocks the watchdog: a peer that reads nothing gets nothing.
        if stream.set_nonblocking(true).is_ok() {
            let _ = (&*stream).write(bytes);
        }
    }
    // An error means it is closed already.
    let _ = stream.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Socket::new(server), client)
    }

    #[test]
    fn a_read_with_nothing_to_read_ends_at_its_deadline() {
        let (mut socket, _peer) = pair();
        let start = Instant::now();
        let e = socket
            .read_by(&mut [0; 8], start + Duration::from_millis(200))
            .unwrap_err();
        assert!(is_timeout(&e), "{e}");
        assert!(start.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn the_watchdog_cuts_a_blocked_read_after_its_last_words() {
        let (mut socket, mut peer) = pair();
        let start = Instant::now();
        let deadline = start + Duration::from_millis(200);
        let e = socket
            .watched(deadline, Some(b"bye"), |mut s| s.read(&mut [0; 8]))
            .unwrap_err();
        assert!(is_timeout(&e), "{e}");
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert!(socket.said_farewell());
        // The last words, then the end of the stream.
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"bye");
    }

    #[test]
    fn the_watchdog_cuts_a_blocked_write() {
        let (mut socket, _peer) = pair();
        let chunk = vec![0u8; 1 << 20];
        let deadline = Instant::now() + Duration::from_millis(300);
        // The peer never reads: the buffers fill, then the write blocks.
        let e = socket
            .watched(deadline, None, |mut s| -> io::Result<()> {
                loop {
                    s.write_all(&chunk)?;
                }
            })
            .unwrap_err();
        assert!(is_timeout(&e), "{e}");
        assert!(!socket.said_farewell());
    }

    #[test]
    fn a_call_done_in_time_is_untouched_and_disarmed() {
        let (mut socket, mut peer) = pair();
        peer.write_all(b"x").unwrap();
        let got = socket
            .watched(after(Duration::from_secs(5)), None, |mut s| {
                s.read(&mut [0; 8])
            })
            .unwrap();
        assert_eq!(got, 1);
        let ours = Arc::as_ptr(&socket.stream);
        assert!(lock().armed.values().all(|(s, _)| Arc::as_ptr(s) != ours));
    }
}
