//! One subscriber endpoint's session: its queue of what is still to be
//! sent, its signs of life, and (for a qos 1 endpoint) what it is owed
//! after a failure (PROTOCOL.md sections 2, 3 and 6.2).
//!
//! Publishers put items in; the endpoint's delivery thread takes batches
//! out, and puts back what a failed batch left unanswered. A qos 0 queue is
//! bounded: a publisher waits up to `enqueue_wait` for room, then drops the
//! oldest message. A qos 1 queue never drops: past `backlog_bytes` the
//! session ends.
//!
//! While the delivery thread sleeps with nothing in flight, its open
//! connection is parked here, and the publisher's thread that wakes it
//! writes the queued messages on it first ([`Endpoint::wake`]): a message
//! then crosses one of the broker's threads on its way, not two. It must not
//! import `registry` or `store`; of `delivery` it holds the `Pipeline`.

use super::delivery::Pipeline;
use super::metrics::{self, Loss, Metrics};
use super::routing::Qos;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most queued items written in one go before their answers are read.
pub(crate) const BATCH_MAX: usize = 64;

/// Most bytes of bodies a publisher's thread writes on a parked connection
/// ([`Endpoint::wake`]); more is left to the delivery thread. Well inside a
/// socket's send buffer, so that the write does not wait for the peer.
const LENT_BYTES: usize = 16 * 1024;

/// How long the delivery thread must have slept before a publisher's
/// thread writes on its parked connection. A thread that slept that long is
/// slow to wake (paced 5,000/s: p50 45 -> 31 µs, p90 63 -> 52 writing
/// here); one that has just parked is woken as before, and keeps a steady
/// stream in its own batches (lock-step, 1 -> 1: writing here every time
/// took it from ~90,000 to ~23,000/s). README, Performance.
const LEND_AFTER: Duration = Duration::from_micros(100);

/// How long a delivery thread whose queue ran dry keeps yielding, looking
/// for the next message, before it sleeps, when messages come one at a
/// time and the last one came within this time of the queue running dry
/// (a publisher that waits for each answer): it yields only where it would
/// have caught the last message. Sleeping there left one core idle between
/// messages, and on this 2-core VM lock-step 1 -> 1 fell, in one run in
/// two, into a mode with twice the CPU per message and threads moving
/// between cores (~25,000 instead of ~110,000/s); yielding, 8 runs: median
/// 111,868/s, the slowest 63,837 (README, Performance). Batches of more
/// than one, and sparser messages, sleep after one yield as before:
/// yielding at every dry queue cut W=64 from ~780,000 to ~640,000/s (its
/// batches shrank to a message or two), and yielding for messages 50-100
/// µs apart, which it did not catch, paced 12,000/s from a p50 of 35-39 to
/// 62 µs with 45 % more CPU.
const SPIN: Duration = Duration::from_micros(50);

/// How sessions behave; see [`crate::broker::Config`] for the meanings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) queue_capacity: usize,
    pub(crate) queue_bytes: usize,
    pub(crate) enqueue_wait: Duration,
    pub(crate) timeout: Duration,
    pub(crate) liveness: Option<Duration>,
    pub(crate) session_expiry: Duration,
    pub(crate) backlog_bytes: usize,
}

/// A message body, shared by its subscribers.
pub(crate) type Body = Arc<[u8]>;

/// A message on its way to one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// The `POST /msg` body, shared by every subscriber at this QoS.
    pub(crate) body: Body,
    pub(crate) id: u64,
    pub(crate) qos: Qos,
}

/// One thing to send to an endpoint.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// A `POST /msg`.
    Message(Message),
    /// A `POST /hb` answering the subscriber's own heartbeat.
    Heartbeat,
}

impl Item {
    /// Bytes it holds in a queue (its body; a heartbeat has none).
    pub(crate) fn size(&self) -> usize {
        match self {
            Item::Message(m) => m.body.len(),
            Item::Heartbeat => 0,
        }
    }

    pub(crate) fn is_message(&self) -> bool {
        matches!(self, Item::Message(_))
    }

    /// A qos 1 message: kept until answered.
    pub(crate) fn is_owed(&self) -> bool {
        matches!(self, Item::Message(m) if m.qos == Qos::One)
    }
}

struct State {
    queue: VecDeque<Item>,
    closed: bool,
    /// A qos 1 endpoint: its session outlives failures.
    durable: bool,
    last_alive: Instant,
    /// The last delivery to this qos 1 endpoint failed: once it has shown
    /// no sign of life for the session expiry, its session ends.
    failing: bool,
    /// A heartbeat is queued: one is enough.
    heartbeat_queued: bool,
    /// qos 0 messages in a qos 1 endpoint's queue (count, bytes): bounded
    /// like a qos 0 queue, and not part of the backlog.
    loose: (usize, usize),
    /// A heartbeat or a subscription arrived: retry now.
    kicked: bool,
    /// Set once a publisher gave up waiting for room; cleared when the queue
    /// drains. While set, publishers drop without waiting.
    stalled: bool,
    /// Bytes of message bodies queued.
    bytes: usize,
    /// The delivery thread waits on `wake`: only then is it worth a
    /// notification (each costs a system call).
    sender_waiting: bool,
    /// A quiet enqueue found the thread waiting and left its wake-up to
    /// the caller ([`Endpoint::wake`]).
    wake_owed: bool,
    /// Publishers waiting on `room`.
    room_waiters: usize,
    /// Messages (and their bytes) taken to be sent and not yet answered or
    /// put back, for the queue-depth gauge and the drain on shutdown.
    in_flight: (usize, usize),
    /// A full queue was logged in this episode (cleared when it drains).
    warned: bool,
    /// The delivery thread's connection while it sleeps with nothing in
    /// flight; `None` while a publisher's thread writes on it (lent), or
    /// while the delivery thread holds it.
    parked: Option<Pipeline>,
    /// When the delivery thread parked its connection.
    parked_at: Instant,
    /// How long the queue was dry the last time it ran dry, and how many
    /// items the last batch took: whether a dry queue is worth [`SPIN`].
    last_dry: Duration,
    last_taken: usize,
    /// A lent write's batch, kept for the next one.
    spare: Vec<Item>,
}

impl State {
    /// Whether a publisher's thread may write what is queued on the parked
    /// connection now: the delivery thread has slept [`LEND_AFTER`] or
    /// more, and the queue holds at most [`LENT_BYTES`].
    fn may_lend(&self) -> bool {
        !self.closed
            && !self.queue.is_empty()
            && self.bytes <= LENT_BYTES
            && self.parked.as_ref().is_some_and(Pipeline::may_lend)
            && self.parked_at.elapsed() >= LEND_AFTER
    }

    /// Whether an item of `size` bytes finds no room (qos 0 rules).
    fn is_full(&self, size: usize, settings: &Settings) -> bool {
        !self.queue.is_empty()
            && (self.queue.len() >= settings.queue_capacity
                || self.bytes.saturating_add(size) > settings.queue_bytes)
    }
}

/// A subscriber endpoint's session, shared by publishers and its thread.
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
    /// Queued, but the qos 1 backlog is now past its limit.
    OverBacklog,
    /// Not queued: the endpoint is gone.
    Closed,
}

impl Endpoint {
    pub(crate) fn new(addr: SocketAddr, durable: bool) -> Endpoint {
        Endpoint {
            addr,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: false,
                durable,
                last_alive: Instant::now(),
                failing: false,
                heartbeat_queued: false,
                loose: (0, 0),
                kicked: false,
                stalled: false,
                bytes: 0,
                sender_waiting: false,
                wake_owed: false,
                room_waiters: 0,
                in_flight: (0, 0),
                warned: false,
                parked: None,
                parked_at: Instant::now(),
                last_dry: Duration::MAX,
                last_taken: 0,
                spare: Vec::new(),
            }),
            wake: Condvar::new(),
            room: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take every publisher down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` and wakes the delivery thread. A qos 0 endpoint's
    /// publisher waits up to `enqueue_wait` for room (not at all unless
    /// `may_wait`), then drops the oldest message, counted.
    pub(crate) fn enqueue(
        &self,
        item: Item,
        settings: &Settings,
        metrics: &Metrics,
        may_wait: bool,
    ) -> Enqueued {
        let (outcome, wake) = self.enqueue_quietly(item, settings, metrics, may_wait);
        if wake {
            self.wake();
        }
        outcome
    }

    /// As [`Endpoint::enqueue`], but the delivery thread's wake-up is left
    /// to the caller when the second value says so: a publisher of a
    /// pipelined burst wakes each endpoint once for the burst, so that its
    /// thread sends the burst as one batch (and does not preempt the
    /// publisher once per message).
    pub(crate) fn enqueue_quietly(
        &self,
        item: Item,
        settings: &Settings,
        metrics: &Metrics,
        may_wait: bool,
    ) -> (Enqueued, bool) {
        let (mut state, outcome) =
            self.enqueue_locked(self.lock(), item, settings, metrics, may_wait);
        let wake = state.sender_waiting && !state.wake_owed;
        state.wake_owed |= state.sender_waiting;
        (outcome, wake)
    }

    /// Writes what [`Endpoint::enqueue_quietly`] queued on the delivery
    /// thread's parked connection, if that thread has slept
    /// [`LEND_AFTER`] or more (up to [`LENT_BYTES`]); the wake-up stays
    /// owed, for [`Endpoint::wake`]. A publisher's thread calls it before it
    /// writes the publisher's answers, and wakes after them: the message
    /// goes out first, and the delivery thread, woken to read the answers,
    /// does not compete for a core with the two writes (paced 5,000/s,
    /// medians of 6 alternating: p50 31.6 -> 13.4 µs, p99 146.8 -> 72.5,
    /// NATS 127.0; waking it before the publisher's answer, p50 went to 41).
    pub(crate) fn lend(&self) {
        let state = self.lock();
        if state.wake_owed && state.sender_waiting {
            let mut state = self.lend_locked(state);
            // Owed again: a thread that woke while its connection was out
            // took the wake-up, and may be back asleep with the write to
            // answer.
            state.wake_owed |= state.sender_waiting;
        }
    }

    /// Wakes the delivery thread for what [`Endpoint::enqueue_quietly`]
    /// queued. If that thread sleeps with its connection parked and
    /// [`Endpoint::lend`] has not written it yet, this thread first writes
    /// what is queued on it, and the delivery thread wakes to read the
    /// answers.
    pub(crate) fn wake(&self) {
        let mut state = self.lock();
        if !(std::mem::take(&mut state.wake_owed) && state.sender_waiting) {
            return;
        }
        drop(self.lend_locked(state));
        self.wake.notify_one();
    }

    /// The write of [`Endpoint::lend`], where it may be made (see
    /// [`State::may_lend`]); the lock is let go during the write.
    fn lend_locked<'a>(&'a self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        if !state.may_lend() {
            return state;
        }
        let Some(mut pipe) = state.parked.take() else {
            return state;
        };
        let mut batch = std::mem::take(&mut state.spare);
        self.take(&mut state, &mut batch);
        drop(state);
        pipe.write_lent(&mut batch);
        state = self.lock();
        state.spare = batch;
        state.parked = Some(pipe);
        state
    }

    fn enqueue_locked<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        item: Item,
        settings: &Settings,
        metrics: &Metrics,
        may_wait: bool,
    ) -> (MutexGuard<'a, State>, Enqueued) {
        let size = item.size();
        if state.closed {
            return (state, Enqueued::Closed);
        }
        if matches!(item, Item::Heartbeat) {
            if state.heartbeat_queued {
                return (state, Enqueued::Queued); // one answers them all
            }
            state.heartbeat_queued = true;
        }
        if state.durable {
            let outcome = self.push_durable(&mut state, item, settings, metrics);
            return (state, outcome);
        }
        if matches!(item, Item::Heartbeat) && state.is_full(0, settings) {
            state.heartbeat_queued = false;
            return (state, Enqueued::Queued); // a full queue is answer enough
        }
        // Overflow-safe: an absurd wait is as good as waiting forever.
        let wait = if may_wait {
            settings.enqueue_wait
        } else {
            Duration::ZERO
        };
        let deadline = Instant::now().checked_add(wait);
        while !state.closed && state.is_full(size, settings) && !state.stalled {
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                state.stalled = true;
                break;
            }
            // Room comes from the delivery thread: it must not wait for a
            // wake-up this burst still owes it.
            if std::mem::take(&mut state.wake_owed) {
                self.wake.notify_one();
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
            return (state, Enqueued::Closed);
        }
        if state.durable {
            // A qos 1 subscription came in while this publisher waited.
            let outcome = self.push_durable(&mut state, item, settings, metrics);
            return (state, outcome);
        }
        let mut outcome = Enqueued::Queued;
        while state.is_full(size, settings) {
            let oldest = state.queue.iter().position(Item::is_message);
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
        (state, outcome)
    }

    /// Queues `item` on a qos 1 endpoint: an owed message is never
    /// dropped (past the backlog limit the session ends instead); a qos 0
    /// one is bounded like a qos 0 queue, the newest dropped.
    fn push_durable(
        &self,
        state: &mut State,
        item: Item,
        settings: &Settings,
        metrics: &Metrics,
    ) -> Enqueued {
        let size = item.size();
        if item.is_message() && !item.is_owed() {
            let (count, bytes) = state.loose;
            if count >= settings.queue_capacity || bytes + size > settings.queue_bytes {
                metrics.lost(Loss::QueueFull, 1);
                return Enqueued::DroppedOldest;
            }
            state.loose = (count + 1, bytes + size);
        }
        state.bytes += size;
        state.queue.push_back(item);
        if state.bytes.saturating_sub(state.loose.1) > settings.backlog_bytes {
            return Enqueued::OverBacklog;
        }
        Enqueued::Queued
    }

    fn wake_sender(&self, state: &State) {
        if state.sender_waiting {
            self.wake.notify_one();
        }
    }

    /// Makes this a qos 1 endpoint (it stays one for its life).
    pub(crate) fn make_durable(&self) {
        let mut state = self.lock();
        if !state.durable {
            state.durable = true;
            // What is queued already is qos 0: count it as such.
            let loose = state.queue.iter().filter(|i| i.is_message());
            state.loose = loose.fold((0, 0), |(n, b), i| (n + 1, b + i.size()));
        }
    }

    pub(crate) fn is_durable(&self) -> bool {
        self.lock().durable
    }

    /// A delivery succeeded.
    pub(crate) fn touch(&self) {
        let mut state = self.lock();
        state.last_alive = Instant::now();
        state.failing = false;
    }

    /// Whether its last delivery failed (it is being retried).
    pub(crate) fn is_failing(&self) -> bool {
        self.lock().failing
    }

    /// A delivery failed.
    pub(crate) fn failed(&self) {
        self.lock().failing = true;
    }

    /// A sign of life from the subscriber itself (a heartbeat or a
    /// subscription): also cuts a retry's backoff short.
    pub(crate) fn kick(&self) {
        let mut state = self.lock();
        state.last_alive = Instant::now();
        state.kicked = true;
        self.wake_sender(&state);
    }

    /// Whether the endpoint is past its limit: no delivery and no sign of
    /// life for the liveness timeout (qos 0), or for the session expiry and
    /// unreachable (qos 1: one that is merely sent nothing is probed with a
    /// heartbeat first, see [`Endpoint::needs_probe`]).
    pub(crate) fn is_idle(&self, settings: &Settings) -> bool {
        let state = self.lock();
        (!state.durable || state.failing)
            && deadline(&state, settings).is_some_and(|d| Instant::now() >= d)
    }

    /// A qos 1 endpoint without a sign of life for the session expiry that
    /// has not failed either: whether it is still there is asked with a
    /// heartbeat (queued here), which either answers or starts the expiry.
    pub(crate) fn needs_probe(&self, settings: &Settings, metrics: &Metrics) -> bool {
        let probe = {
            let state = self.lock();
            state.durable
                && !state.failing
                && deadline(&state, settings).is_some_and(|d| Instant::now() >= d)
        };
        if probe {
            self.enqueue(Item::Heartbeat, settings, metrics, false);
        }
        probe
    }

    /// How long a failing qos 1 session has left before it expires.
    pub(crate) fn expires_in(&self, settings: &Settings) -> Option<Duration> {
        let state = self.lock();
        let deadline = deadline(&state, settings).filter(|_| state.durable && state.failing)?;
        Some(deadline.saturating_duration_since(Instant::now()))
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
        state.loose = (0, 0);
        state.heartbeat_queued = false;
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

    /// `answered` (taken earlier, in order) got their answers: the messages
    /// among them count as delivered. Under the lock, so that the queue
    /// depth and the delivered count agree.
    pub(crate) fn batch_done(&self, answered: &[Item], metrics: &Metrics) {
        let (messages, bytes) = messages_in(answered);
        let mut state = self.lock();
        settle(&mut state, (messages, bytes));
        metrics::add(&metrics.delivered, messages as u64);
        metrics::add(&metrics.delivered_bytes, bytes as u64);
    }

    /// Puts the owed (qos 1) items among `unanswered` (taken earlier, in
    /// order, all still in flight) back at the head of the queue; returns
    /// how many qos 0 messages were given up.
    pub(crate) fn requeue(&self, unanswered: &[Item]) -> usize {
        let mut state = self.lock();
        settle(&mut state, messages_in(unanswered));
        if state.closed {
            return 0;
        }
        for item in unanswered.iter().rev().filter(|i| i.is_owed()) {
            state.bytes += item.size();
            state.queue.push_front(item.clone());
        }
        unanswered
            .iter()
            .filter(|i| i.is_message() && !i.is_owed())
            .count()
    }

    /// Waits out a retry's backoff: returns early when the subscriber shows
    /// a sign of life or the endpoint closes.
    pub(crate) fn back_off(&self, wait: Duration) {
        let deadline = Instant::now().checked_add(wait);
        let mut state = self.lock();
        while !state.kicked && !state.closed {
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                break;
            }
            state.sender_waiting = true;
            state = self
                .wake
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
            state.sender_waiting = false;
            // Awake now, it looks at its queue itself.
            state.wake_owed = false;
        }
        state.kicked = false;
    }

    /// Waits for the next items to send, or for the answers to what a
    /// publisher's thread wrote on `pipe` meanwhile ([`Endpoint::wake`]):
    /// while it waits, an open `pipe` (with nothing in flight) is parked
    /// here. `None`: closed, or idle past its limit with nothing queued.
    pub(crate) fn next_batch(
        &self,
        batch: &mut Vec<Item>,
        settings: &Settings,
        pipe: &mut Pipeline,
    ) -> Option<()> {
        let mut state = self.lock();
        let dry_since = state.queue.is_empty().then(Instant::now);
        if let Some(began) = dry_since {
            // Before sleeping, this thread yields: the publishers' threads,
            // runnable here, often queue the next messages meanwhile, and
            // then it goes on without a sleep and a wake-up (a futex call
            // each, and two context switches). Once, as a rule: 10 -> 10 at
            // W=16 went from ~600,000 to ~800,000 deliveries/s, 1 -> 10 at
            // W=1 from ~134,000 to ~413,000 (README, Performance). For up to
            // SPIN when messages come one at a time close behind each other
            // (see SPIN).
            let spin = if state.last_taken <= 1 && state.last_dry <= SPIN {
                SPIN
            } else {
                Duration::ZERO
            };
            drop(state);
            loop {
                std::thread::yield_now();
                if began.elapsed() >= spin || !self.lock().queue.is_empty() {
                    break;
                }
            }
            state = self.lock();
        }
        let parks = state.queue.is_empty() && !state.closed && pipe.is_idle_open();
        if parks {
            state.parked = Some(std::mem::replace(pipe, pipe.unconnected()));
            state.parked_at = Instant::now();
        }
        let found = loop {
            if state.closed {
                break None;
            }
            // While a publisher's thread writes on the parked connection,
            // it is not this thread's to use.
            let home = !parks || state.parked.is_some();
            let written = state.parked.as_ref().is_some_and(|p| p.in_flight() > 0);
            if home && (!state.queue.is_empty() || written) {
                break Some(());
            }
            let deadline = deadline(&state, settings).filter(|_| home);
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                break None;
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
            // Awake now, it looks at its queue itself.
            state.wake_owed = false;
        };
        if let Some(began) = dry_since {
            state.last_dry = began.elapsed();
        }
        if parks {
            // Still lent out if the endpoint closed meanwhile: the lender
            // puts it back, and the endpoint's end drops it.
            if let Some(parked) = state.parked.take() {
                *pipe = parked;
            }
        }
        found?;
        // Only a sign of life from now on cuts a retry's backoff short.
        state.kicked = false;
        self.take(&mut state, batch);
        Some(())
    }

    /// Takes what is queued now, without waiting: the next batch written
    /// while earlier ones still wait for their answers. Whether it took any.
    pub(crate) fn try_batch(&self, batch: &mut Vec<Item>) -> bool {
        let mut state = self.lock();
        if state.closed || state.queue.is_empty() {
            return false;
        }
        self.take(&mut state, batch);
        true
    }

    /// Moves up to [`BATCH_MAX`] queued items to `batch`, counting them in
    /// flight.
    fn take(&self, state: &mut State, batch: &mut Vec<Item>) {
        let n = state.queue.len().min(BATCH_MAX);
        state.last_taken = n;
        let start = batch.len();
        batch.extend(state.queue.drain(..n));
        let (messages, taken) = messages_in(&batch[start..]);
        state.bytes -= taken;
        for item in &batch[start..] {
            match item {
                Item::Heartbeat => state.heartbeat_queued = false,
                Item::Message(_) if state.durable && !item.is_owed() => {
                    let (count, bytes) = state.loose;
                    state.loose = (count.saturating_sub(1), bytes.saturating_sub(item.size()));
                }
                Item::Message(_) => {}
            }
        }
        state.in_flight = (state.in_flight.0 + messages, state.in_flight.1 + taken);
        if state.queue.is_empty() {
            state.stalled = false;
            state.warned = false;
        }
        if state.room_waiters > 0 {
            self.room.notify_all();
        }
    }
}

/// The messages among `items` and their bytes (a heartbeat has none).
fn messages_in(items: &[Item]) -> (usize, usize) {
    items
        .iter()
        .filter(|i| i.is_message())
        .fold((0, 0), |(n, b), i| (n + 1, b + i.size()))
}

/// `settled` messages (and bytes) in flight were answered or put back.
fn settle(state: &mut State, settled: (usize, usize)) {
    state.in_flight = (
        state.in_flight.0.saturating_sub(settled.0),
        state.in_flight.1.saturating_sub(settled.1),
    );
}

/// When the endpoint has gone too long without a sign of life, if it has a
/// limit. Overflow-safe: an absurd limit is as good as none.
fn deadline(state: &State, settings: &Settings) -> Option<Instant> {
    let limit = if state.durable {
        settings.session_expiry
    } else {
        settings.liveness?
    };
    state.last_alive.checked_add(limit)
}
