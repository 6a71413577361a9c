//! A streaming subscriber's queue (PROTOCOL.md section 6.3): messages wait
//! here for the connection thread that writes them out as events.
//!
//! Bounded like any subscriber's queue, but a full one never waits and never
//! drops the oldest: a reader that falls behind is told where it fell off
//! (`overflow`) and its stream ends, so that it can resume from the log with
//! `Last-Event-ID`. Publishers are never slowed by a stream. It must not
//! import `registry`, `delivery` or `store`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// How a stream is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `text/event-stream`.
    Sse,
    /// `application/x-ndjson`.
    Ndjson,
}

impl Format {
    /// Its name in listings.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Sse => "sse",
            Format::Ndjson => "ndjson",
        }
    }
}

/// One message on its way to a stream.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) id: u64,
    /// `{"data":"…","Topic":"…"}`, shared with the qos 0 callbacks.
    pub(crate) body: super::session::Body,
    /// It is in the log: a replay may have sent it already.
    pub(crate) stored: bool,
}

/// What the connection thread is to write next.
#[derive(Debug)]
pub(crate) enum Next {
    /// These events, oldest first.
    Events(Vec<Event>),
    /// The queue overflowed: the events before were all written; this is
    /// the first id the reader did not get.
    Overflow(u64),
    /// Nothing came by the deadline: time for a keep-alive.
    Quiet,
    /// The stream was closed from outside (the broker is stopping).
    Closed,
}

struct State {
    events: VecDeque<Event>,
    bytes: usize,
    overflow: Option<u64>,
    closed: bool,
    reader_waiting: bool,
    /// A push found the reader waiting and left the wake-up to its caller
    /// ([`Stream::wake`]): one is enough.
    wake_owed: bool,
}

/// What became of a pushed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pushed {
    /// Queued; false if it did not fit (the stream has overflowed, now or
    /// before) or the stream is closed.
    pub(crate) accepted: bool,
    /// The reader waits: call [`Stream::wake`] (once for any number of
    /// events; only the first push that finds it waiting says so).
    pub(crate) wake: bool,
}

/// A stream's queue, shared by publishers and its connection thread.
pub(crate) struct Stream {
    /// Its key in the registry.
    pub(crate) id: u64,
    /// The reader's address (for listings and logs).
    pub(crate) peer: SocketAddr,
    pub(crate) format: Format,
    capacity: usize,
    max_bytes: usize,
    state: Mutex<State>,
    ready: Condvar,
}

impl Stream {
    /// A stream holding at most `capacity` events and `max_bytes` bytes.
    pub(crate) fn new(
        id: u64,
        peer: SocketAddr,
        format: Format,
        capacity: usize,
        max_bytes: usize,
    ) -> Stream {
        Stream {
            id,
            peer,
            format,
            capacity: capacity.max(1),
            max_bytes,
            state: Mutex::new(State {
                events: VecDeque::new(),
                bytes: 0,
                overflow: None,
                closed: false,
                reader_waiting: false,
                wake_owed: false,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `event` and wakes the reader if it waits; false if it did
    /// not fit (the stream has overflowed, now or before) or the stream is
    /// closed.
    pub(crate) fn push(&self, event: Event) -> bool {
        let pushed = self.push_quietly(event);
        if pushed.wake {
            self.wake();
        }
        pushed.accepted
    }

    /// Queues `event`, leaving the reader's wake-up to the caller: a
    /// publisher of a pipelined burst wakes each stream once for the whole
    /// burst, so that each write to the stream carries the burst, and the
    /// publisher is not preempted by a thousand readers once per message.
    pub(crate) fn push_quietly(&self, event: Event) -> Pushed {
        let mut state = self.lock();
        if state.closed || state.overflow.is_some() {
            return Pushed {
                accepted: false,
                wake: false,
            };
        }
        let full = !state.events.is_empty()
            && (state.events.len() >= self.capacity
                || state.bytes.saturating_add(event.body.len()) > self.max_bytes);
        if full {
            state.overflow = Some(event.id);
        } else {
            state.bytes += event.body.len();
            state.events.push_back(event);
        }
        let wake = state.reader_waiting && !state.wake_owed;
        state.wake_owed |= state.reader_waiting;
        Pushed {
            accepted: !full,
            wake,
        }
    }

    /// Wakes the reader for what [`Stream::push_quietly`] queued.
    pub(crate) fn wake(&self) {
        let mut state = self.lock();
        if std::mem::take(&mut state.wake_owed) {
            self.ready.notify_one();
        }
    }

    /// Waits until there is something to write, or `deadline`.
    pub(crate) fn next(&self, deadline: Instant) -> Next {
        let mut state = self.lock();
        loop {
            if state.closed {
                return Next::Closed;
            }
            if !state.events.is_empty() {
                state.bytes = 0;
                return Next::Events(state.events.drain(..).collect());
            }
            if let Some(next) = state.overflow {
                return Next::Overflow(next);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Next::Quiet;
            }
            state.reader_waiting = true;
            state = self
                .ready
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
            state.reader_waiting = false;
            // Awake now, it looks at its queue itself.
            state.wake_owed = false;
        }
    }

    /// Ends the stream: its thread stops at its next wake-up. Returns the
    /// events discarded.
    pub(crate) fn close(&self) -> usize {
        let mut state = self.lock();
        state.closed = true;
        state.bytes = 0;
        let dropped = state.events.len();
        state.events.clear();
        self.ready.notify_all();
        dropped
    }

    /// Events (and bytes) waiting to be written.
    pub(crate) fn depth(&self) -> (usize, usize) {
        let state = self.lock();
        (state.events.len(), state.bytes)
    }

    /// Whether it overflowed and waits for its reader to be told.
    pub(crate) fn has_overflowed(&self) -> bool {
        self.lock().overflow.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::{Event, Format, Next, Stream};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn event(id: u64, bytes: usize) -> Event {
        Event {
            id,
            body: vec![b'x'; bytes].into(),
            stored: false,
        }
    }

    #[test]
    fn overflow_keeps_what_fit_and_names_the_first_lost() {
        let peer = "127.0.0.1:1".parse().unwrap();
        let stream = Stream::new(7, peer, Format::Sse, 2, 1000);
        assert!(stream.push(event(1, 10)));
        assert!(stream.push(event(2, 10)));
        assert!(!stream.push(event(3, 10)), "full: overflow at 3");
        assert!(!stream.push(event(4, 10)), "stays overflowed");
        assert_eq!(stream.depth(), (2, 20));
        let soon = Instant::now() + Duration::from_secs(5);
        match stream.next(soon) {
            Next::Events(e) => assert_eq!(e.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(stream.next(soon), Next::Overflow(3)));

        let bytes = Stream::new(8, peer, Format::Ndjson, 100, 15);
        assert!(bytes.push(event(1, 20)), "one event always fits");
        assert!(!bytes.push(event(2, 1)), "past the byte limit");
    }

    #[test]
    fn a_quiet_stream_times_out_and_a_push_wakes_it() {
        let peer = "127.0.0.1:1".parse().unwrap();
        let stream = Arc::new(Stream::new(1, peer, Format::Sse, 10, 1000));
        let now = Instant::now();
        assert!(matches!(stream.next(now), Next::Quiet));
        let pusher = stream.clone();
        let t = std::thread::spawn(move || pusher.push(event(5, 1)));
        match stream.next(now + Duration::from_secs(30)) {
            Next::Events(e) => assert_eq!(e[0].id, 5),
            other => panic!("{other:?}"),
        }
        assert!(t.join().unwrap());
        assert_eq!(stream.close(), 0);
        assert!(matches!(stream.next(now), Next::Closed));
        assert!(!stream.push(event(6, 1)));
    }
}
