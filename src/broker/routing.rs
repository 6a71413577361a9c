//! Who gets a message: topic to subscriptions (endpoint and QoS), and the
//! retained message of each topic (PROTOCOL.md sections 1 and 6.2).
//!
//! Plain data behind the registry's lock: no threads, no queues, no I/O.
//! It must not import `session`, `delivery`, `registry` or `store`.

use std::collections::HashMap;
use std::net::SocketAddr;

/// The QoS of a subscription or of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Qos {
    /// At most once: what the Go broker does.
    Zero,
    /// At least once: stored, retried, resent until answered.
    One,
}

impl Qos {
    /// The QoS of a delivery: the lower of the message's and the
    /// subscription's.
    pub(crate) fn min(self, other: Qos) -> Qos {
        Ord::min(self, other)
    }
}

/// A topic's retained message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Retained {
    pub(crate) id: u64,
    pub(crate) data: String,
    pub(crate) qos: Qos,
}

/// One subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) endpoint: SocketAddr,
    pub(crate) qos: Qos,
}

/// The routing table.
#[derive(Debug, Default)]
pub(crate) struct Routing {
    topics: HashMap<String, Vec<Subscription>>,
    retained: HashMap<String, Retained>,
    /// The id of the last stored message routed: a durable subscription
    /// made now gets the stored messages after it.
    pub(crate) last_stored: u64,
}

impl Routing {
    /// Subscribes `endpoint` to `topic`; subscribing again keeps one
    /// subscription with the higher QoS. Returns whether the pair is new.
    pub(crate) fn add(&mut self, topic: &str, endpoint: SocketAddr, qos: Qos) -> bool {
        let subs = self.topics.entry(topic.to_owned()).or_default();
        match subs.iter_mut().find(|s| s.endpoint == endpoint) {
            Some(existing) => {
                existing.qos = existing.qos.max(qos);
                false
            }
            None => {
                subs.push(Subscription { endpoint, qos });
                true
            }
        }
    }

    /// Removes the subscription of `endpoint` to `topic`.
    pub(crate) fn remove(&mut self, topic: &str, endpoint: SocketAddr) {
        if let Some(subs) = self.topics.get_mut(topic) {
            subs.retain(|s| s.endpoint != endpoint);
            if subs.is_empty() {
                self.topics.remove(topic);
            }
        }
    }

    /// Whether `endpoint` has any subscription.
    pub(crate) fn holds(&self, endpoint: SocketAddr) -> bool {
        self.topics
            .values()
            .any(|subs| subs.iter().any(|s| s.endpoint == endpoint))
    }

    /// Removes every subscription of `endpoint`.
    pub(crate) fn remove_endpoint(&mut self, endpoint: SocketAddr) {
        self.topics.retain(|_, subs| {
            subs.retain(|s| s.endpoint != endpoint);
            !subs.is_empty()
        });
    }

    /// Removes every subscription.
    pub(crate) fn clear(&mut self) {
        self.topics.clear();
    }

    /// The subscriptions of `topic`.
    pub(crate) fn subscribers(&self, topic: &str) -> &[Subscription] {
        self.topics.get(topic).map_or(&[], Vec::as_slice)
    }

    /// Sets (or, with empty data, clears) the retained message of `topic`,
    /// unless a newer one is already there (publishes in memory race).
    pub(crate) fn retain(&mut self, topic: &str, retained: Retained) {
        if self.retained.get(topic).is_some_and(|r| r.id > retained.id) {
            return;
        }
        // A clear stays as an empty entry, so that an older message that
        // comes late cannot bring the topic's retained message back.
        self.retained.insert(topic.to_owned(), retained);
    }

    /// The retained message of `topic`.
    pub(crate) fn retained(&self, topic: &str) -> Option<&Retained> {
        self.retained.get(topic).filter(|r| !r.data.is_empty())
    }

    /// Topics with at least one subscription.
    pub(crate) fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Topics with a retained message.
    pub(crate) fn retained_count(&self) -> usize {
        self.retained
            .values()
            .filter(|r| !r.data.is_empty())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::{Qos, Retained, Routing};

    #[test]
    fn subscriptions_and_retained() {
        let a = "127.0.0.1:1".parse().unwrap();
        let b = "127.0.0.1:2".parse().unwrap();
        let mut r = Routing::default();
        assert!(r.add("t", a, Qos::Zero));
        assert!(!r.add("t", a, Qos::One), "one subscription per pair");
        assert!(r.add("t", b, Qos::Zero));
        assert!(r.add("u", a, Qos::Zero));
        assert_eq!(r.subscribers("t").len(), 2);
        assert_eq!(r.subscribers("t")[0].qos, Qos::One, "raised to the higher");
        r.remove_endpoint(a);
        assert_eq!(r.subscribers("t").len(), 1);
        assert!(r.subscribers("u").is_empty());
        assert_eq!(r.topic_count(), 1);

        let kept = |data: &str| Retained {
            id: 1,
            data: data.into(),
            qos: Qos::Zero,
        };
        r.retain("t", kept("x"));
        assert_eq!(r.retained("t"), Some(&kept("x")));
        let older = Retained {
            id: 0,
            ..kept("old")
        };
        r.retain("t", older);
        assert_eq!(r.retained("t"), Some(&kept("x")), "an older one loses");
        r.retain("t", Retained { id: 2, ..kept("") });
        assert_eq!(r.retained("t"), None);
        r.retain("t", kept("late"));
        assert_eq!(r.retained("t"), None, "an older one after a clear");
        assert_eq!(r.retained_count(), 0);
        r.add("t", a, Qos::One);
        r.remove("t", a);
        r.remove("nope", a);
        assert!(r.holds(b) && !r.holds(a));
        assert!(r.subscribers("t").iter().all(|s| s.endpoint != a));
        assert_eq!(Qos::One.min(Qos::Zero), Qos::Zero);
    }
}
