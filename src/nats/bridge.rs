//! The bridge: what this broker shares with the other brokers through NATS
//! (PROTOCOL.md section 6.7). It publishes every message the broker accepts,
//! subscribes to what the broker's subscribers hold, and hands the messages
//! of the other brokers (and of NATS clients) to a sink.
//!
//! It never makes a publisher wait: a message for NATS is queued, up to a
//! bound, for the connection's writer thread, and counted as dropped when
//! NATS is down or the queue is full. The connection itself (connect,
//! handshake, reading, writing, reconnecting) is `link`.

use super::interest::{Interest, MAX_SUBJECT};
use super::link;
use super::proto::{self, Msg};
use super::subject;
use super::url::Server;
use crate::log;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The NATS header that names the broker a message comes from.
pub(crate) const ORIGIN_HEADER: &str = "Mb-Origin";

/// Bytes of publishes queued for NATS before more are dropped: about a
/// second of a fast publisher, so a slow NATS costs memory only up to it.
pub(crate) const OUTBOX_BYTES: usize = 8 * 1024 * 1024;

/// How the bridge connects.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The NATS servers, tried in turn.
    pub(crate) servers: Vec<Server>,
    /// This broker's `Mb-Origin`: unique per broker process.
    pub(crate) origin: String,
    /// Largest message data taken from NATS (the broker's payload limit).
    pub(crate) max_data: usize,
    /// Bytes of publishes queued for NATS at most.
    pub(crate) outbox_bytes: usize,
}

/// A message from NATS for the broker's subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inbound {
    pub(crate) topic: String,
    pub(crate) data: String,
}

/// Where messages from NATS go, a read's worth at a time.
pub(crate) type Sink = Box<dyn Fn(Vec<Inbound>) + Send + Sync>;

/// The bridge's counters, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Handshakes completed.
    pub(crate) connects: AtomicU64,
    /// Connections lost or refused (after or during the handshake).
    pub(crate) failures: AtomicU64,
    /// Messages written to NATS.
    pub(crate) sent: AtomicU64,
    /// Messages from NATS handed to the broker.
    pub(crate) received: AtomicU64,
    /// Publishes not sent: NATS down, the queue full, or too large for
    /// the server.
    pub(crate) dropped_down: AtomicU64,
    pub(crate) dropped_full: AtomicU64,
    pub(crate) dropped_large: AtomicU64,
    /// Messages from NATS refused: a subject that is not a topic, data
    /// that is not UTF-8, or data over the payload limit.
    pub(crate) refused_subject: AtomicU64,
    pub(crate) refused_utf8: AtomicU64,
    pub(crate) refused_large: AtomicU64,
    /// `-ERR` from the server, and protocol errors (the connection is
    /// dropped).
    pub(crate) server_errors: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
}

/// What the bridge's threads share.
pub(super) struct Shared {
    pub(super) opts: Options,
    pub(super) state: Mutex<State>,
    /// Wakes the writer: something to write, or its connection is over.
    pub(super) writer: Condvar,
    /// Wakes the connecting thread from its backoff (stop).
    pub(super) retry: Condvar,
    pub(super) counters: Counters,
    pub(super) sink: Sink,
}

/// The bridge's state, behind one lock (a leaf: nothing else is locked
/// while it is held).
pub(super) struct State {
    pub(super) interest: Interest,
    /// A handshake is done and the connection is up.
    pub(super) connected: bool,
    /// Counts connections: a writer serves one only.
    pub(super) generation: u64,
    /// Publishes to write, and where each ends in it: the writer writes
    /// them in chunks that end on a message, with `control` between.
    pub(super) outbox: Vec<u8>,
    pub(super) outbox_ends: Vec<usize>,
    /// The writer is writing a batch it took.
    pub(super) writing: bool,
    /// Subscriptions, pings and pongs to write, before the publishes.
    pub(super) control: Vec<u8>,
    /// `PING`s written to this connection's control, and `PONG`s read: the
    /// fences of retired subscriptions, and the server's liveness.
    pub(super) pings: u64,
    pub(super) pongs: u64,
    /// The server's largest message.
    pub(super) max_payload: usize,
    /// The socket being connected or served, for [`Bridge::stop`].
    pub(super) socket: Option<TcpStream>,
    /// Messages from NATS are no longer taken (the broker is stopping).
    pub(super) deaf: bool,
    pub(super) stopping: bool,
}

impl State {
    /// Queues a control operation; past [`MAX_CONTROL`] the server is not
    /// reading, and the connection is dropped (the next one subscribes
    /// again, from the interest).
    pub(super) fn control(&mut self, op: &[u8]) {
        if op == proto::PING {
            self.pings += 1;
        }
        self.control.extend_from_slice(op);
        if self.control.len() > MAX_CONTROL
            && let Some(socket) = &self.socket
        {
            log::warning!("nats: the server reads nothing; reconnecting");
            let _ = socket.shutdown(Shutdown::Both);
            self.control.clear();
        }
    }

    /// Whether the writer has something it is writing or to write: a
    /// server slow to answer a ping may just be busy reading.
    pub(super) fn writer_busy(&self) -> bool {
        self.writing || !self.outbox.is_empty()
    }
}

/// Bytes of subscriptions, pings and pongs queued at most.
const MAX_CONTROL: usize = 256 * 1024;
/// How long a stopping bridge gives what it has queued to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running bridge.
pub(crate) struct Bridge {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A snapshot for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Status {
    pub(crate) connected: bool,
    pub(crate) subscriptions: usize,
    pub(crate) queued_bytes: usize,
}

impl Bridge {
    /// Starts the bridge's thread, which connects (and keeps connecting)
    /// to the servers in turn.
    ///
    /// # Errors
    /// The thread could not be started.
    pub(crate) fn start(opts: Options, sink: Sink) -> io::Result<Bridge> {
        let shared = Arc::new(Shared {
            opts,
            state: Mutex::new(State {
                interest: Interest::default(),
                connected: false,
                generation: 0,
                outbox: Vec::new(),
                outbox_ends: Vec::new(),
                writing: false,
                control: Vec::new(),
                pings: 0,
                pongs: 0,
                max_payload: link::DEFAULT_MAX_PAYLOAD,
                socket: None,
                deaf: false,
                stopping: false,
            }),
            writer: Condvar::new(),
            retry: Condvar::new(),
            counters: Counters::default(),
            sink,
        });
        let run = shared.clone();
        let thread = thread::Builder::new()
            .name("nats".into())
            .stack_size(link::STACK)
            .spawn(move || link::run(&run))?;
        Ok(Bridge {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a message the broker accepted for NATS, never waiting.
    pub(crate) fn publish(&self, topic: &str, data: &str) {
        let subject = subject::subject_of(topic);
        let counters = &self.shared.counters;
        let mut state = lock(&self.shared);
        if !state.connected {
            add(&counters.dropped_down);
            return;
        }
        // The server counts the headers in its limit.
        let headers = ORIGIN_HEADER.len() + self.shared.opts.origin.len() + 16;
        if data.len() + headers > state.max_payload || subject.len() > MAX_SUBJECT {
            add(&counters.dropped_large);
            return;
        }
        let size = subject.len() + data.len() + self.shared.opts.origin.len() + 64;
        if state.outbox.len() + size > self.shared.opts.outbox_bytes {
            add(&counters.dropped_full);
            return;
        }
        let wake = state.outbox.is_empty() && state.control.is_empty();
        let origin = [(ORIGIN_HEADER, self.shared.opts.origin.as_str())];
        proto::write_hpub(&mut state.outbox, &subject, &origin, data.as_bytes());
        let end = state.outbox.len();
        state.outbox_ends.push(end);
        drop(state);
        if wake {
            self.shared.writer.notify_all();
        }
    }

    /// A local subscription pattern is held (`on`) or no longer held.
    pub(crate) fn interest(&self, pattern: &str, on: bool) {
        if on
            && subject::subjects_of_pattern(pattern)
                .iter()
                .any(|s| s.len() > MAX_SUBJECT)
        {
            log::warning!(
                "nats: pattern too long for a NATS subject ({MAX_SUBJECT} bytes encoded): \
                 its subscribers get only this broker's messages"
            );
        }
        let mut state = lock(&self.shared);
        let before = state.control.len();
        if on {
            for (sid, subject) in state.interest.add(pattern) {
                if state.connected {
                    let mut op = Vec::new();
                    proto::write_sub(&mut op, &subject, sid);
                    state.control(&op);
                }
            }
        } else {
            // The copies that raced the UNSUB are in once the server
            // answered the PING after it, and one more.
            let fence = state.pings + 2;
            let gone = state.interest.remove(pattern, fence);
            if state.connected && !gone.is_empty() {
                let mut op = Vec::new();
                for sid in gone {
                    proto::write_unsub(&mut op, sid);
                }
                state.control(&op);
                // On its own, so that it counts among the pings (the fence).
                state.control(proto::PING);
            }
        }
        let wrote = state.control.len() != before;
        drop(state);
        if wrote {
            self.shared.writer.notify_all();
        }
    }

    /// Where the bridge stands.
    pub(crate) fn status(&self) -> Status {
        let state = lock(&self.shared);
        Status {
            connected: state.connected,
            subscriptions: state.interest.len(),
            queued_bytes: state.outbox.len(),
        }
    }

    /// The bridge's counters.
    pub(crate) fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Takes no more messages from NATS (the broker is stopping); what it
    /// publishes still goes out.
    pub(crate) fn stop_receiving(&self) {
        lock(&self.shared).deaf = true;
    }

    /// Stops the bridge: gives what is queued up to [`FLUSH_TIMEOUT`] to be
    /// written, closes the connection and waits for its threads.
    pub(crate) fn stop(&self) {
        let state = lock(&self.shared);
        let flushed = self
            .shared
            .retry
            .wait_timeout_while(state, FLUSH_TIMEOUT, |s| {
                s.connected && !s.stopping && (s.writer_busy() || !s.control.is_empty())
            })
            .unwrap_or_else(|e| e.into_inner());
        let mut state = flushed.0;
        state.stopping = true;
        if let Some(socket) = &state.socket {
            let _ = socket.shutdown(Shutdown::Both);
        }
        drop(state);
        self.shared.writer.notify_all();
        self.shared.retry.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        // The bridge's own thread may drop the last reference to the
        // broker (its sink), and so come here: it must not join itself.
        if let Some(thread) = thread
            && thread.thread().id() != thread::current().id()
            && thread.join().is_err()
        {
            log::error!("nats: the bridge's thread panicked");
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(super) fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The messages of one read that go to the broker: not its own, the one
/// copy of each (overlapping subscriptions), decoded into topics.
pub(super) fn take(shared: &Shared, msgs: Vec<Msg>) -> Vec<Inbound> {
    let c = &shared.counters;
    let origin = shared.opts.origin.as_str();
    let msgs: Vec<Msg> = {
        let state = lock(shared);
        if state.deaf {
            return Vec::new();
        }
        msgs.into_iter()
            .filter(|m| {
                let own = m
                    .headers
                    .as_deref()
                    .and_then(|h| proto::header(h, ORIGIN_HEADER));
                own != Some(origin) && state.interest.takes(m.sid, &m.subject)
            })
            .collect()
    };
    let mut taken = Vec::with_capacity(msgs.len());
    for m in msgs {
        let topic = match subject::topic_of(&m.subject) {
            Ok(topic) => topic,
            Err(e) => {
                add(&c.refused_subject);
                log::debug!("nats: message on '{}' refused: {e}", m.subject);
                continue;
            }
        };
        if m.payload.len() > shared.opts.max_data {
            add(&c.refused_large);
            continue;
        }
        let Ok(data) = String::from_utf8(m.payload) else {
            add(&c.refused_utf8);
            log::debug!("nats: message on '{topic}' refused: data not UTF-8");
            continue;
        };
        add(&c.received);
        taken.push(Inbound { topic, data });
    }
    taken
}
