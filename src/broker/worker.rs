//! An endpoint's delivery thread: takes batches from its session and
//! writes each before it reads the answers to the one before (a window of
//! two batches, [`Pipeline`]); on a failure it either keeps the session and
//! retries with backoff (qos 1) or asks the registry to drop the endpoint
//! (qos 0). PROTOCOL.md sections 2 and 6.2.

use super::delivery::Pipeline;
use super::metrics::{self, Loss};
use super::registry::Registry;
use super::session::{BATCH_MAX, Endpoint};
use crate::log;
use std::sync::Arc;
use std::time::Duration;

/// The first retry's wait; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Runs until the endpoint is closed or dropped.
pub(crate) fn run(endpoint: Arc<Endpoint>, registry: Arc<Registry>) {
    let settings = registry.settings;
    let mut pipe = Pipeline::new(endpoint.addr, settings.timeout);
    let mut batch = Vec::with_capacity(BATCH_MAX);
    let mut answered = Vec::with_capacity(2 * BATCH_MAX);
    let mut unanswered = Vec::new();
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        if pipe.in_flight() == 0 {
            // Answers to what a publisher's thread wrote meanwhile may be
            // in flight when it returns.
            if endpoint
                .next_batch(&mut batch, &settings, &mut pipe)
                .is_none()
            {
                if endpoint.is_closed() {
                    return;
                }
                if endpoint.needs_probe(&settings, &registry.metrics) {
                    continue;
                }
                if registry.expire(&endpoint) {
                    return;
                }
                continue;
            }
        } else if pipe.has_room() {
            endpoint.try_batch(&mut batch);
        }
        let ahead = pipe.in_flight();
        // The next batch goes out first, then the answers to the one before
        // it (or, with nothing new, to everything in flight) are read.
        let result = if batch.is_empty() {
            Ok(())
        } else {
            pipe.write(&mut batch)
        };
        let result = result.and_then(|()| pipe.read(ahead, &mut answered));
        if !answered.is_empty() {
            endpoint.batch_done(&answered, &registry.metrics);
            registry.answered(&endpoint, &answered);
        }
        match result {
            Ok(()) if answered.is_empty() => {}
            Ok(()) => {
                endpoint.touch();
                if std::mem::replace(&mut failing, false) {
                    log::info!("subscriber {} reachable again", endpoint.addr);
                }
                backoff = BACKOFF_MIN;
            }
            Err(reason) if endpoint.is_durable() => {
                pipe.take_unanswered(&mut unanswered);
                let owed = unanswered.iter().filter(|i| i.is_owed()).count();
                metrics::add(&registry.metrics.redelivered, owed as u64);
                registry
                    .metrics
                    .lost(Loss::SubscriberGone, endpoint.requeue(&unanswered));
                if !answered.is_empty() {
                    backoff = BACKOFF_MIN;
                }
                if !std::mem::replace(&mut failing, true) {
                    log::warning!(
                        "subscriber {}: {reason}; its qos 1 session is kept and retried",
                        endpoint.addr
                    );
                }
                endpoint.failed();
                if endpoint.is_idle(&settings) && registry.expire(&endpoint) {
                    return;
                }
                // Not past the expiry: the session is checked again then.
                let left = endpoint.expires_in(&settings).unwrap_or(backoff);
                endpoint.back_off(backoff.min(left.max(Duration::from_millis(1))));
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(reason) => {
                pipe.take_unanswered(&mut unanswered);
                let lost = unanswered.iter().filter(|i| i.is_message()).count();
                if registry.remove(&endpoint, &reason, lost) {
                    return;
                }
                // A qos 1 subscription came in meanwhile: keep what it is owed.
                registry
                    .metrics
                    .lost(Loss::SubscriberGone, endpoint.requeue(&unanswered));
            }
        }
        answered.clear();
        unanswered.clear();
    }
}
