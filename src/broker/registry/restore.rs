//! Start-up with a log: the registry rebuilt from what the store recovered
//! (durable sessions, what each is owed, retained messages). A part of the
//! registry, kept apart because it runs once, before the first connection.

use super::{Registry, body, lock};
use crate::broker::delivery::DropReason;
use crate::broker::metrics;
use crate::broker::routing::{Qos, Retained, Target};
use crate::broker::session::{Endpoint, Item, Message};
use crate::log;
use crate::store::{Record, Recovered};
use std::sync::Arc;

impl Registry {
    /// Rebuilds the durable sessions and retained messages that the log
    /// holds, before the broker takes its first connection.
    pub(crate) fn restore(self: &Arc<Self>, found: &mut Recovered) {
        let mut routing = self.routing();
        routing.last_stored = found.state.max_id;
        for (topic, s) in &found.state.retained {
            let qos = if s.qos1 { Qos::One } else { Qos::Zero };
            routing.retain(
                topic,
                Retained {
                    id: s.id,
                    data: s.data.clone(),
                    qos,
                },
            );
        }
        let mut endpoints = lock(&self.endpoints);
        for (addr, session) in &found.state.sessions {
            // A session with no pattern left (an older log's) holds nothing.
            if found.over_backlog.contains(addr) || session.topics.is_empty() {
                continue;
            }
            let endpoint = Arc::new(Endpoint::new(*addr, true));
            if let Err(e) = self.start_thread(&endpoint) {
                log::warning!("session of {addr} not resumed: {e}");
                continue;
            }
            for topic in session.topics.keys() {
                routing.add(topic, Target::Endpoint(*addr), Qos::One);
            }
            for s in found.backlogs.remove(addr).unwrap_or_default() {
                let item = Item::Message(Message {
                    body: body(&s.topic, &s.data, s.id, Qos::One),
                    id: s.id,
                    qos: Qos::One,
                });
                endpoint.enqueue(item, &self.settings, &self.metrics, false);
            }
            endpoints.insert(*addr, endpoint);
        }
        drop((endpoints, routing));
        for addr in std::mem::take(&mut found.over_backlog) {
            log::warning!("session of {addr} ended: {}", DropReason::Backlog);
            metrics::add(
                &self.metrics.subscribers_dropped[DropReason::Backlog.index()],
                1,
            );
            self.store.append(Record::End { endpoint: addr });
        }
    }
}
