//! Liveness, client side (PROTOCOL.md section 3): once subscribed, send
//! `POST /hb` every interval; when the broker has not called back for the
//! re-subscribe timeout, send `/sub` again for every topic, each with its own
//! qos. This is how subscriptions survive a broker restart without the
//! caller doing anything.
//!
//! With several brokers, silence moves the client to the next one, and
//! whenever the client has moved (here, or after a failed call anywhere),
//! this thread subscribes again where it is now, then unsubscribes at the
//! broker it left, in case that one is still up: at every tick until it
//! has (see [`super::leave`]).

use super::brokers::At;
use super::dedupe::Dedupe;
use super::leave::Leaving;
use super::{DEDUPE_WINDOW, Inner, Qos, lock};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How often the loop looks at the clock; the broker's calls are noticed, and
/// the re-subscription happens, at most this long late.
const TICK: Duration = Duration::from_millis(500);

/// Runs until `stop` is dropped (the client closes).
pub(super) fn run(inner: Arc<Inner>, stop: Receiver<()>) {
    let mut beat = Beat {
        next_beat: crate::deadline::after(inner.heartbeat_interval),
        calls_seen: 0,
        subscribed_at: inner.brokers.current(),
        leaving: Leaving::default(),
    };
    loop {
        match stop.recv_timeout(TICK) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        beat.tick(&inner);
        // Last, so that the tick's own work never waits for a broker left.
        beat.leaving.retry(&inner);
    }
}

/// The heartbeat thread's state.
struct Beat {
    next_beat: Instant,
    calls_seen: u64,
    /// The stay at a broker where every topic is subscribed.
    subscribed_at: At,
    /// The brokers left, still to unsubscribe at.
    leaving: Leaving,
}

impl Beat {
    fn tick(&mut self, inner: &Inner) {
        let calls = inner.broker_calls.load(Ordering::Relaxed);
        if calls != self.calls_seen {
            self.calls_seen = calls;
            *inner.lock_broker_seen() = Instant::now();
        }
        let topics = inner.topics();
        if topics.is_empty() {
            *inner.lock_broker_seen() = Instant::now();
            self.subscribed_at = inner.brokers.current();
            return;
        }
        if Instant::now() >= self.next_beat {
            self.next_beat = crate::deadline::after(inner.heartbeat_interval);
            if let Err(e) = inner.send_heartbeat() {
                crate::log::debug!("client: heartbeat failed: {e}");
            }
        }
        let silent_for = inner.lock_broker_seen().elapsed();
        let silent = silent_for >= inner.resubscribe_after;
        let mut at = inner.brokers.current();
        // Silence counts against the broker subscribed at, not one the
        // client has just moved to.
        if silent && at.epoch == self.subscribed_at.epoch {
            let why = format!("silent for {} s", silent_for.as_secs());
            at = inner.brokers.move_on(at, &why).unwrap_or(at);
        }
        if at.epoch != self.subscribed_at.epoch {
            // Message ids are per broker: one of the new broker's must not
            // pass for a duplicate of the old one's.
            *lock(&inner.dedupe) = Dedupe::new(DEDUPE_WINDOW);
            let addr = inner.brokers.addr(at.index);
            crate::log::info!("client: subscribing again, at {addr}");
        } else if silent {
            crate::log::info!("client: no word from the broker, subscribing again");
        } else {
            return;
        }
        let now = Instant::now();
        // A move during the round (the new broker failing too) leaves the
        // epochs apart, and the next tick subscribes again where it led.
        if resubscribe(inner, &topics) {
            self.leaving.forget(at.index);
            if at.index != self.subscribed_at.index {
                self.leaving.add(self.subscribed_at.index, &topics, now);
            }
            self.subscribed_at = at;
        } else if at.index != self.subscribed_at.index {
            // Some topics may have been taken there before the failure. Not
            // unsubscribed while the client stays (the broker in use is
            // never told); dropped once subscribing there succeeds.
            self.leaving.add(at.index, &topics, now);
        }
    }
}

/// Sends `/sub` for every topic; whether all of them were accepted.
fn resubscribe(inner: &Inner, topics: &[(String, Qos)]) -> bool {
    for (topic, qos) in topics {
        if let Err(e) = inner.send_subscribe(topic, *qos) {
            crate::log::debug!("client: re-subscribing to {topic:?} failed: {e}");
            return false; // try again on a later tick
        }
    }
    // Give the broker a full period to answer our heartbeats again.
    *inner.lock_broker_seen() = Instant::now();
    true
}
