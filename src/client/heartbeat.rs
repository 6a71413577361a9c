//! Liveness, client side (PROTOCOL.md section 3): once subscribed, send
//! `POST /hb` every interval; when the broker has not called back for the
//! re-subscribe timeout, send `/sub` again for every topic, each with its own
//! qos. This is how subscriptions survive a broker restart without the
//! caller doing anything.
//!
//! With several brokers, silence moves the client to the next one, and
//! whenever the client has moved (here, or after a failed call anywhere),
//! this thread subscribes again where it is now, then unsubscribes at the
//! broker it left, in case that one is still up (once, briefly: it is
//! usually down).

use super::brokers::At;
use super::dedupe::Dedupe;
use super::{DEDUPE_WINDOW, Inner, Qos, lock};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How often the loop looks at the clock; the broker's calls are noticed, and
/// the re-subscription happens, at most this long late.
const TICK: Duration = Duration::from_millis(500);

/// The longest this thread spends unsubscribing at a broker it left (the
/// client's timeout, if shorter): heartbeats wait meanwhile.
const LEAVE_WAIT: Duration = Duration::from_secs(1);

/// Runs until `stop` is dropped (the client closes).
pub(super) fn run(inner: Arc<Inner>, stop: Receiver<()>) {
    let mut next_beat = crate::deadline::after(inner.heartbeat_interval);
    let mut calls_seen = 0;
    // The stay at a broker where every topic is subscribed.
    let mut subscribed_at = inner.brokers.current();
    loop {
        match stop.recv_timeout(TICK) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let calls = inner.broker_calls.load(Ordering::Relaxed);
        if calls != calls_seen {
            calls_seen = calls;
            *inner.lock_broker_seen() = Instant::now();
        }
        let topics = inner.topics();
        if topics.is_empty() {
            *inner.lock_broker_seen() = Instant::now();
            subscribed_at = inner.brokers.current();
            continue;
        }
        if Instant::now() >= next_beat {
            next_beat = crate::deadline::after(inner.heartbeat_interval);
            if let Err(e) = inner.send_heartbeat() {
                crate::log::debug!("client: heartbeat failed: {e}");
            }
        }
        let silent_for = inner.lock_broker_seen().elapsed();
        let silent = silent_for >= inner.resubscribe_after;
        let mut at = inner.brokers.current();
        // Silence counts against the broker subscribed at, not one the
        // client has just moved to.
        if silent && at.epoch == subscribed_at.epoch {
            let why = format!("silent for {} s", silent_for.as_secs());
            at = inner.brokers.move_on(at, &why).unwrap_or(at);
        }
        if at.epoch != subscribed_at.epoch {
            // Message ids are per broker: one of the new broker's must not
            // pass for a duplicate of the old one's.
            *lock(&inner.dedupe) = Dedupe::new(DEDUPE_WINDOW);
            let addr = inner.brokers.addr(at.index);
            crate::log::info!("client: subscribing again, at {addr}");
        } else if silent {
            crate::log::info!("client: no word from the broker, subscribing again");
        } else {
            continue;
        }
        // A move during the round (the new broker failing too) leaves the
        // epochs apart, and the next tick subscribes again where it led.
        if resubscribe(&inner, &topics) {
            if at.index != subscribed_at.index {
                leave(&inner, subscribed_at, &topics);
            }
            subscribed_at = at;
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

/// Unsubscribes every topic at the broker the client has left, `left`, so
/// that one, if it is still up, does not deliver each message a second time.
/// Best effort: gives up at the first failure, and after [`LEAVE_WAIT`].
fn leave(inner: &Inner, left: At, topics: &[(String, Qos)]) {
    let deadline = crate::deadline::after(inner.timeout.min(LEAVE_WAIT));
    let addr = inner.brokers.addr(left.index);
    for (topic, _) in topics {
        let (target, body) = inner.unsubscribe_request(topic);
        if let Err(e) = inner.post_to(left.index, &target, body.as_bytes(), deadline) {
            crate::log::debug!("client: no unsubscribing at {addr}, which was left: {e}");
            return;
        }
    }
    crate::log::info!("client: unsubscribed at {addr}, which was left");
}
