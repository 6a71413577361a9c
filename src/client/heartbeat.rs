//! Liveness, client side (PROTOCOL.md section 3): once subscribed, send
//! `POST /hb` every interval; when the broker has not called back for the
//! re-subscribe timeout, send `/sub` again for every topic, each with its own
//! qos. This is how subscriptions survive a broker restart without the
//! caller doing anything.

use super::{Inner, Qos};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How often the loop looks at the clock; the broker's calls are noticed, and
/// the re-subscription happens, at most this long late.
const TICK: Duration = Duration::from_millis(500);

/// Runs until `stop` is dropped (the client closes).
pub(super) fn run(inner: Arc<Inner>, stop: Receiver<()>) {
    let mut next_beat = crate::deadline::after(inner.heartbeat_interval);
    let mut calls_seen = 0;
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
            continue;
        }
        if Instant::now() >= next_beat {
            next_beat = crate::deadline::after(inner.heartbeat_interval);
            if let Err(e) = inner.send_heartbeat() {
                crate::log::debug!("client: heartbeat failed: {e}");
            }
        }
        let silent_for = inner.lock_broker_seen().elapsed();
        if silent_for >= inner.resubscribe_after {
            resubscribe(&inner, &topics);
        }
    }
}

fn resubscribe(inner: &Inner, topics: &[(String, Qos)]) {
    crate::log::info!("client: no word from the broker, subscribing again");
    for (topic, qos) in topics {
        if let Err(e) = inner.send_subscribe(topic, *qos) {
            crate::log::debug!("client: re-subscribing to {topic:?} failed: {e}");
            return; // try again on a later tick
        }
    }
    // Give the broker a full period to answer our heartbeats again.
    *inner.lock_broker_seen() = Instant::now();
}
