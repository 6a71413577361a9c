//! Delivery to one subscriber endpoint: its bounded queue, and the thread that
//! owns one persistent connection to the endpoint and sends it, in order, what
//! the queue holds (PROTOCOL.md section 2).
//!
//! A slow or dead endpoint only ever holds its own thread: publishers wait at
//! most `enqueue_wait` for room, then drop the oldest message. This module
//! never touches the topic table; it asks the registry to drop an endpoint.

use crate::broker::metrics::{self, Loss, Metrics};
use crate::broker::registry::Registry;
use crate::http::Response;
use crate::net::{self, Connection};
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most queued items written in one go before their answers are read.
const BATCH_MAX: usize = 64;

/// How delivery behaves; see [`crate::broker::Config`] for the meanings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) queue_capacity: usize,
    pub(crate) queue_bytes: usize,
    pub(crate) enqueue_wait: Duration,
    pub(crate) timeout: Duration,
    pub(crate) liveness: Option<Duration>,
}

/// One thing to send to an endpoint.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// A `POST /msg` with this JSON body, shared by every subscriber.
    Message(Arc<[u8]>),
    /// A `POST /hb` answering the subscriber's own heartbeat.
    Heartbeat,
}

impl Item {
    /// Bytes it holds in a queue.
    fn size(&self) -> usize {
        match self {
            Item::Message(body) => body.len(),
            Item::Heartbeat => 0,
        }
    }

    fn is_message(&self) -> bool {
        matches!(self, Item::Message(_))
    }
}

/// Why an endpoint was dropped; logged once per endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The TCP connection could not be made.
    ConnectFailed(String),
    /// No answer within the delivery timeout.
    TimedOut,
    /// The connection broke.
    Io(String),
    /// The endpoint answered something other than 2xx.
    Refused(u16),
    /// The endpoint's answer was not HTTP.
    BadResponse(String),
    /// No delivery and no heartbeat for the liveness timeout.
    Idle,
}

impl DropReason {
    /// Its place in [`metrics::DROP_REASONS`].
    pub(crate) fn index(&self) -> usize {
        match self {
            DropReason::ConnectFailed(_) => 0,
            DropReason::TimedOut => 1,
            DropReason::Io(_) => 2,
            DropReason::Refused(_) => 3,
            DropReason::BadResponse(_) => 4,
            DropReason::Idle => 5,
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            DropReason::TimedOut => f.write_str("delivery timed out"),
            DropReason::Io(e) => write!(f, "connection broke: {e}"),
            DropReason::Refused(status) => write!(f, "answered {status}"),
            DropReason::BadResponse(e) => write!(f, "bad response: {e}"),
            DropReason::Idle => {
                f.write_str("no delivery and no heartbeat within the liveness timeout")
            }
        }
    }
}

struct State {
    queue: VecDeque<Item>,
    closed: bool,
    last_alive: Instant,
    /// Set once a publisher gave up waiting for room; cleared when the queue
    /// drains. While set, publishers drop without waiting.
    stalled: bool,
    /// Bytes of message bodies queued.
    bytes: usize,
    /// The delivery thread waits on `wake`: only then is it worth a
    /// notification (each costs a system call).
    sender_waiting: bool,
    /// Publishers waiting on `room`.
    room_waiters: usize,
    /// Messages (and their bytes) of the batch being sent now, for the
    /// queue-depth gauge.
    in_flight: (usize, usize),
    /// A full queue was logged in this episode (cleared when it drains).
    warned: bool,
}

impl State {
    /// Whether an item of `size` bytes finds no room.
    fn is_full(&self, size: usize, settings: &Settings) -> bool {
        !self.queue.is_empty()
            && (self.queue.len() >= settings.queue_capacity
                || self.bytes.saturating_add(size) > settings.queue_bytes)
    }
}

/// A subscriber endpoint's queue, shared by publishers and its thread.
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    state: Mutex<State>,
    wake: Condvar,
    room: Condvar,
}

/// What became of an enqueued item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    Queued,
    /// Queued, after dropping the oldest message to make room.
    DroppedOldest,
    /// Not queued: the endpoint is gone.
    Closed,
}

impl Endpoint {
    pub(crate) fn new(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: false,
                last_alive: Instant::now(),
                stalled: false,
                bytes: 0,
                sender_waiting: false,
                room_waiters: 0,
                in_flight: (0, 0),
                warned: false,
            }),
            wake: Condvar::new(),
            room: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take every publisher down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item`, waiting up to `settings.enqueue_wait` for room; counts
    /// the messages it drops to make room.
    pub(crate) fn enqueue(&self, item: Item, settings: &Settings, metrics: &Metrics) -> Enqueued {
        let size = item.size();
        let mut state = self.lock();
        if matches!(item, Item::Heartbeat) && state.is_full(0, settings) {
            return Enqueued::Queued; // a full queue is answer enough
        }
        // Overflow-safe: an absurd wait is as good as waiting forever.
        let deadline = Instant::now().checked_add(settings.enqueue_wait);
        while !state.closed && state.is_full(size, settings) && !state.stalled {
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                state.stalled = true;
                break;
            }
            state.room_waiters += 1;
            state = self
                .room
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
            state.room_waiters -= 1;
        }
        if state.closed {
            return Enqueued::Closed;
        }
        let mut outcome = Enqueued::Queued;
        while state.is_full(size, settings) {
            let oldest = state
                .queue
                .iter()
                .position(|i| matches!(i, Item::Message(_)));
            let Some(dropped) = oldest.and_then(|at| state.queue.remove(at)) else {
                break; // only heartbeats left: queue it anyway
            };
            state.bytes -= dropped.size();
            metrics.lost(Loss::QueueFull, 1);
            outcome = Enqueued::DroppedOldest;
        }
        if outcome == Enqueued::DroppedOldest && !std::mem::replace(&mut state.warned, true) {
            crate::log::warning!(
                "subscriber {}: queue full, dropping its oldest messages until it catches up",
                self.addr
            );
        }
        state.bytes += size;
        state.queue.push_back(item);
        if state.sender_waiting {
            self.wake.notify_one();
        }
        outcome
    }

    /// Records a sign of life (a subscription or a delivered item).
    pub(crate) fn touch(&self) {
        self.lock().last_alive = Instant::now();
    }

    /// Whether the endpoint has shown no sign of life for `liveness`.
    pub(crate) fn is_idle(&self, liveness: Duration) -> bool {
        self.lock().last_alive.elapsed() >= liveness
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Stops the endpoint and frees its queue; waiting publishers return.
    /// Returns how many messages the queue still held.
    pub(crate) fn close(&self) -> usize {
        let mut state = self.lock();
        state.closed = true;
        let queue = std::mem::take(&mut state.queue);
        state.bytes = 0;
        self.wake.notify_all();
        self.room.notify_all();
        queue.iter().filter(|i| i.is_message()).count()
    }

    /// Messages and bytes waiting to be sent (the batch being sent included).
    pub(crate) fn depth(&self) -> (usize, usize) {
        let state = self.lock();
        let messages = state.queue.iter().filter(|i| i.is_message()).count();
        (
            messages + state.in_flight.0,
            state.bytes + state.in_flight.1,
        )
    }

    /// The batch being sent is done; the messages among `answered` (all of
    /// it, or the part before a failure) count as delivered. Under the lock,
    /// so that the queue depth and the delivered count agree.
    fn batch_done(&self, answered: &[Item], metrics: &Metrics) {
        let (mut messages, mut bytes) = (0, 0);
        for item in answered.iter().filter(|i| i.is_message()) {
            messages += 1;
            bytes += item.size() as u64;
        }
        let mut state = self.lock();
        state.in_flight = (0, 0);
        metrics::add(&metrics.delivered, messages);
        metrics::add(&metrics.delivered_bytes, bytes);
    }

    /// Waits for the next items to send. `None`: closed, or idle past the
    /// liveness deadline with nothing queued.
    fn next_batch(&self, batch: &mut Vec<Item>, liveness: Option<Duration>) -> Option<()> {
        let mut state = self.lock();
        while state.queue.is_empty() && !state.closed {
            // Overflow-safe: an absurd liveness timeout is as good as none.
            let deadline = liveness.and_then(|limit| state.last_alive.checked_add(limit));
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return None;
            }
            state.sender_waiting = true;
            state = match left {
                None => self.wake.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(left) => self
                    .wake
                    .wait_timeout(state, left)
                    .map(|(s, _)| s)
                    .unwrap_or_else(|e| e.into_inner().0),
            };
            state.sender_waiting = false;
        }
        if state.closed {
            return None;
        }
        let n = state.queue.len().min(BATCH_MAX);
        let taken: usize = state.queue.iter().take(n).map(Item::size).sum();
        state.bytes -= taken;
        batch.extend(state.queue.drain(..n));
        let messages = batch.iter().filter(|i| i.is_message()).count();
        state.in_flight = (messages, taken);
        if state.queue.is_empty() {
            state.stalled = false;
            state.warned = false;
        }
        if state.room_waiters > 0 {
            self.room.notify_all();
        }
        Some(())
    }
}

/// The endpoint's thread: sends batches until the endpoint is closed or dead.
pub(crate) fn run(endpoint: Arc<Endpoint>, registry: Arc<Registry>, settings: Settings) {
    let mut conn = None;
    let mut batch = Vec::with_capacity(BATCH_MAX);
    loop {
        if endpoint.next_batch(&mut batch, settings.liveness).is_none() {
            if endpoint.is_closed() {
                return;
            }
            if registry.expire(&endpoint) {
                return;
            }
            continue;
        }
        let result = send_batch(&mut conn, endpoint.addr, &batch, settings.timeout);
        let answered = match &result {
            Ok(()) => batch.len(),
            Err((_, done)) => *done,
        };
        endpoint.batch_done(&batch[..answered], &registry.metrics);
        if let Err((reason, _)) = result {
            let unanswered = batch[answered..].iter().filter(|i| i.is_message()).count();
            registry.remove(&endpoint, &reason, unanswered);
            return;
        }
        endpoint.touch();
        batch.clear();
    }
}

/// A failed exchange: how many items were answered before it, and why.
struct Failure {
    acked: usize,
    reason: DropReason,
    /// Nothing came back at all, as when the peer had closed the idle
    /// connection just before we wrote: worth one retry on a fresh one.
    silent: bool,
}

/// Sends `batch` in order; on failure, returns why and how many items were
/// answered before it.
fn send_batch(
    conn: &mut Option<Connection>,
    addr: SocketAddr,
    batch: &[Item],
    timeout: Duration,
) -> Result<(), (DropReason, usize)> {
    let mut done = 0;
    let mut retried = false;
    while done < batch.len() {
        let reused = matches!(conn.as_ref(), Some(c) if !c.is_stale());
        let c = match conn {
            Some(c) if reused => c,
            _ => conn.insert(
                Connection::connect(addr, timeout)
                    .map_err(|e| (DropReason::ConnectFailed(e.to_string()), done))?,
            ),
        };
        match exchange(c, &batch[done..]) {
            Ok((acked, keep_alive)) => {
                done += acked;
                if !keep_alive {
                    *conn = None;
                }
            }
            Err(failure) => {
                *conn = None;
                done += failure.acked;
                if !(failure.silent && reused && !retried) {
                    return Err((failure.reason, done));
                }
                retried = true;
            }
        }
    }
    Ok(())
}

/// Writes `items` in one go, then reads their answers in order. Stops early
/// (returning how many were answered) if the endpoint asks to close.
fn exchange(conn: &mut Connection, items: &[Item]) -> Result<(usize, bool), Failure> {
    let io = |acked, e: std::io::Error| Failure {
        acked,
        silent: acked == 0,
        reason: reason_for_io(&e),
    };
    for item in items {
        let sent = match item {
            Item::Message(body) => conn.send("/msg", Some("application/json"), body),
            Item::Heartbeat => conn.send("/hb", None, b""),
        };
        sent.map_err(|e| io(0, e))?;
    }
    conn.flush().map_err(|e| io(0, e))?;
    let limits = net::response_limits();
    for (i, _) in items.iter().enumerate() {
        let response: Response = conn.read_response(&limits).map_err(|e| Failure {
            acked: i,
            silent: i == 0 && is_silent_close(&e),
            reason: match e {
                crate::http::HttpError::Io(io) => reason_for_io(&io),
                crate::http::HttpError::UnexpectedEof => {
                    DropReason::Io("closed before answering".into())
                }
                other => DropReason::BadResponse(other.to_string()),
            },
        })?;
        if !(200..300).contains(&response.status) {
            return Err(Failure {
                acked: i,
                silent: false,
                reason: DropReason::Refused(response.status),
            });
        }
        if !response.keep_alive {
            return Ok((i + 1, false));
        }
    }
    Ok((items.len(), true))
}

/// The peer closed without a byte of answer: it had likely closed the idle
/// connection before it saw our request.
fn is_silent_close(e: &crate::http::HttpError) -> bool {
    match e {
        crate::http::HttpError::UnexpectedEof => true,
        crate::http::HttpError::Io(io) => net::is_peer_close(io),
        _ => false,
    }
}

fn reason_for_io(e: &std::io::Error) -> DropReason {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => DropReason::TimedOut,
        _ => DropReason::Io(e.to_string()),
    }
}
