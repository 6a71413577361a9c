//! The registry's side of the cluster bridge (PROTOCOL.md section 6.7):
//! messages the broker accepts go out to NATS, messages from NATS come in
//! as qos 0 publishes that do not go out again, and the patterns the
//! broker's subscribers hold are the bridge's interest.

use super::{Registry, Wakes, lock};
use crate::broker::routing::{Qos, Routing};
use crate::nats::bridge::{Bridge, Inbound};
use crate::store;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, MutexGuard};

/// The routing table, locked; on unlock, the patterns that became held or
/// no longer held go to the bridge (still under the lock, so in order).
pub(crate) struct RoutingGuard<'a> {
    routing: MutexGuard<'a, Routing>,
    bridge: Option<&'a Bridge>,
}

impl Deref for RoutingGuard<'_> {
    type Target = Routing;
    fn deref(&self) -> &Routing {
        &self.routing
    }
}

impl DerefMut for RoutingGuard<'_> {
    fn deref_mut(&mut self) -> &mut Routing {
        &mut self.routing
    }
}

impl Drop for RoutingGuard<'_> {
    fn drop(&mut self) {
        if let Some(bridge) = self.bridge {
            for (pattern, held) in self.routing.take_changes() {
                bridge.interest(&pattern, held);
            }
        }
    }
}

impl Registry {
    /// Locks the routing table.
    pub(crate) fn routing(&self) -> RoutingGuard<'_> {
        RoutingGuard {
            routing: lock(&self.routing),
            bridge: self.bridge.get().map(|b| &**b),
        }
    }

    /// Connects the registry to a bridge: from now on it follows the
    /// patterns held, starting with those held now.
    pub(crate) fn attach(&self, bridge: Arc<Bridge>) {
        let mut routing = lock(&self.routing);
        for pattern in routing.track_interest() {
            bridge.interest(&pattern, true);
        }
        // Only ever set here, once, under the lock.
        let _ = self.bridge.set(bridge);
    }

    /// The bridge, if the broker has one.
    pub(crate) fn bridge(&self) -> Option<&Bridge> {
        self.bridge.get().map(|b| &**b)
    }

    /// Sends a message the broker accepted to the other brokers.
    pub(super) fn forward(&self, topic: &str, data: &str) {
        if let Some(bridge) = self.bridge.get() {
            bridge.publish(topic, data);
        }
    }

    /// Messages from NATS, published to this broker's subscribers at qos
    /// 0 (they are stored, if at all, by the broker they were published
    /// to), and not sent back out.
    pub(crate) fn publish_from_cluster(&self, messages: Vec<Inbound>) {
        let mut wakes = Wakes::default();
        for m in messages {
            let p = store::Publish {
                topic: m.topic,
                data: m.data,
                qos1: false,
                retain: false,
                key: None,
            };
            let id = match self.store.publish(&p) {
                store::Published::New(id, _) | store::Published::Duplicate(id, _) => id,
            };
            self.route(&p.topic, &p.data, id, Qos::Zero, true, Some(&mut wakes));
        }
        Registry::wake(&mut wakes);
    }
}
