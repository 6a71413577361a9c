//! An endpoint's delivery thread: takes batches from its session and
//! writes them through a `delivery::Pipe`, the next batch while the answers
//! to the last are read; on a failure it either keeps the session and
//! retries with backoff (qos 1) or asks the registry to drop the endpoint
//! (qos 0). PROTOCOL.md sections 2 and 6.2.

use super::delivery::{DropReason, Pipe};
use super::metrics::{self, Loss};
use super::registry::Registry;
use super::session::{BATCH_MAX, Endpoint};
use crate::log;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// The first retry's wait; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Runs until the endpoint is closed or dropped.
pub(crate) fn run(endpoint: Arc<Endpoint>, registry: Arc<Registry>) {
    let settings = registry.settings;
    let mut pipe = Pipe::new(endpoint.addr, settings.timeout);
    let mut batch = Vec::with_capacity(BATCH_MAX);
    let mut answered = Vec::with_capacity(2 * BATCH_MAX);
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    // The sizes of the batches in flight, oldest first (at most two).
    let mut batches: VecDeque<usize> = VecDeque::with_capacity(2);
    loop {
        // With nothing in flight, wait for work.
        if pipe.in_flight() == 0 {
            batches.clear();
            if endpoint.next_batch(&mut batch, &settings).is_none() {
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
        }
        // A second batch, if one is queued, goes out before the answers to
        // the first are read: the subscriber works on it meanwhile.
        if batches.len() < 2 {
            if batch.is_empty() {
                endpoint.take_more(&mut batch);
            }
            if !batch.is_empty() {
                batches.push_back(batch.len());
                if let Err(reason) = pipe.write(std::mem::take(&mut batch)) {
                    batches.clear();
                    if fail(
                        &endpoint,
                        &registry,
                        &mut pipe,
                        reason,
                        &mut failing,
                        &mut backoff,
                    ) {
                        return;
                    }
                    continue;
                }
                if batches.len() < 2 {
                    continue; // look for a second one
                }
            }
        }
        let oldest = batches.pop_front().unwrap_or(0);
        let result = pipe.read(oldest, &mut answered);
        if !answered.is_empty() {
            endpoint.batch_done(&answered, &registry.metrics);
            registry.answered(&endpoint, &answered);
            endpoint.touch();
            if std::mem::replace(&mut failing, false) {
                log::info!("subscriber {} reachable again", endpoint.addr);
            }
            backoff = BACKOFF_MIN;
            answered.clear();
        }
        let Err(reason) = result else {
            continue;
        };
        batches.clear();
        if fail(
            &endpoint,
            &registry,
            &mut pipe,
            reason,
            &mut failing,
            &mut backoff,
        ) {
            return;
        }
    }
}

/// A failure: what was in flight is requeued (qos 1) or given up with the
/// endpoint (qos 0). Returns whether the endpoint is gone.
fn fail(
    endpoint: &Arc<Endpoint>,
    registry: &Registry,
    pipe: &mut Pipe,
    reason: DropReason,
    failing: &mut bool,
    backoff: &mut Duration,
) -> bool {
    let settings = registry.settings;
    let unanswered = pipe.unanswered();
    endpoint.unsent(&unanswered);
    if !endpoint.is_durable() {
        let lost = unanswered.iter().filter(|i| i.is_message()).count();
        if registry.remove(endpoint, &reason, lost) {
            return true;
        }
        // A qos 1 subscription came in meanwhile: keep what it is owed.
    }
    let owed = unanswered.iter().filter(|i| i.is_owed()).count();
    metrics::add(&registry.metrics.redelivered, owed as u64);
    registry
        .metrics
        .lost(Loss::SubscriberGone, endpoint.requeue(&unanswered));
    if !std::mem::replace(failing, true) {
        log::warning!(
            "subscriber {}: {reason}; its qos 1 session is kept and retried",
            endpoint.addr
        );
    }
    endpoint.failed();
    if endpoint.is_idle(&settings) && registry.expire(endpoint) {
        return true;
    }
    // Not past the expiry: the session is checked again then.
    let left = endpoint.expires_in(&settings).unwrap_or(*backoff);
    endpoint.back_off((*backoff).min(left.max(Duration::from_millis(1))));
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    false
}
