//! Who gets a message: subscription patterns to subscribers (an endpoint or
//! a stream, with a QoS), and the retained message of each topic
//! (PROTOCOL.md sections 1, 6.2, 6.3 and 6.5).
//!
//! Plain data behind the registry's lock: no threads, no queues, no I/O.
//! Patterns live in a tree of levels, so a publish costs the topic's depth
//! and its matches, not the number of subscriptions. It must not import
//! `session`, `delivery`, `registry` or `store`.

use super::tree::Tree;
use crate::pattern;
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

/// Who a subscription delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Target {
    /// A callback endpoint (`POST /msg` to it).
    Endpoint(SocketAddr),
    /// A streaming subscription, by its number.
    Stream(u64),
}

/// One subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) target: Target,
    pub(crate) qos: Qos,
}

/// Most topics remembered as recently published (for the console).
pub(crate) const RECENT_TOPICS: usize = 256;

/// Publishes to a topic (for the console).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Published {
    pub(crate) messages: u64,
    /// Publish order of its latest message: the oldest is forgotten first.
    last: u64,
}

/// The routing table.
#[derive(Debug, Default)]
pub(crate) struct Routing {
    tree: Tree<Subscription>,
    /// Each target's patterns: what to take out when it goes.
    patterns: HashMap<Target, Vec<String>>,
    retained: HashMap<String, Retained>,
    /// The id of the last stored message routed: a durable subscription
    /// made now gets the stored messages after it.
    pub(crate) last_stored: u64,
    recent: HashMap<String, Published>,
    published: u64,
    /// Patterns that became held (`true`) or no longer held, for the
    /// cluster bridge; `None` while no one asks.
    changes: Option<Vec<(String, bool)>>,
}

impl Routing {
    /// Subscribes `target` to `pattern`; subscribing again keeps one
    /// subscription with the higher QoS. Returns the QoS it had before.
    pub(crate) fn add(&mut self, pattern: &str, target: Target, qos: Qos) -> Option<Qos> {
        let subs = self.tree.entry(pattern);
        if let Some(existing) = subs.iter_mut().find(|s| s.target == target) {
            let before = existing.qos;
            existing.qos = existing.qos.max(qos);
            return Some(before);
        }
        let first = subs.is_empty();
        subs.push(Subscription { target, qos });
        if first && let Some(changes) = &mut self.changes {
            changes.push((pattern.to_owned(), true));
        }
        self.patterns
            .entry(target)
            .or_default()
            .push(pattern.to_owned());
        None
    }

    /// Removes the subscription of `target` to `pattern`; returns whether
    /// there was one.
    pub(crate) fn remove(&mut self, pattern: &str, target: Target) -> bool {
        if self.tree.remove_if(pattern, |s| s.target == target) == 0 {
            return false;
        }
        self.note_removed(pattern);
        if let Some(patterns) = self.patterns.get_mut(&target) {
            patterns.retain(|p| p != pattern);
            if patterns.is_empty() {
                self.patterns.remove(&target);
            }
        }
        true
    }

    /// Whether `target` has any subscription.
    pub(crate) fn holds(&self, target: Target) -> bool {
        self.patterns.contains_key(&target)
    }

    /// The patterns `target` subscribes to.
    pub(crate) fn patterns_of(&self, target: Target) -> &[String] {
        self.patterns.get(&target).map_or(&[], Vec::as_slice)
    }

    /// Removes every subscription of `target`.
    pub(crate) fn remove_target(&mut self, target: Target) {
        for pattern in self.patterns.remove(&target).unwrap_or_default() {
            self.tree.remove_if(&pattern, |s| s.target == target);
            self.note_removed(&pattern);
        }
    }

    /// Records that `pattern` is no longer held, if it is not.
    fn note_removed(&mut self, pattern: &str) {
        if let Some(changes) = &mut self.changes
            && self.tree.get(pattern).is_none_or(<[_]>::is_empty)
        {
            changes.push((pattern.to_owned(), false));
        }
    }

    /// Removes every subscription.
    pub(crate) fn clear(&mut self) {
        if let Some(changes) = &mut self.changes {
            changes.extend(self.tree.iter().map(|(p, _)| (p, false)));
        }
        self.tree.clear();
        self.patterns.clear();
    }

    /// From now on, records which patterns become held or no longer held
    /// (see [`Routing::take_changes`]). Returns the patterns held now.
    pub(crate) fn track_interest(&mut self) -> Vec<String> {
        self.changes = Some(Vec::new());
        self.tree.iter().map(|(p, _)| p).collect()
    }

    /// The patterns that became held (`true`) or no longer held since the
    /// last call, in order.
    pub(crate) fn take_changes(&mut self) -> Vec<(String, bool)> {
        match &mut self.changes {
            Some(changes) if !changes.is_empty() => std::mem::take(changes),
            _ => Vec::new(),
        }
    }

    /// The subscriptions whose pattern matches `topic`, one per target
    /// (with the highest QoS of its matching patterns), into `out`.
    pub(crate) fn matching(&self, topic: &str, out: &mut Vec<Subscription>) {
        out.clear();
        let mut patterns = 0;
        self.tree.for_each_match(topic, |subs| {
            patterns += 1;
            out.extend_from_slice(subs);
        });
        // One pattern's subscriptions are one per target already.
        if patterns > 1 {
            // A target that matches through several patterns gets it once.
            out.sort_unstable_by(|a, b| a.target.cmp(&b.target).then(b.qos.cmp(&a.qos)));
            out.dedup_by_key(|s| s.target);
        }
    }

    /// Counts a publish to `topic` (for the console), remembering at most
    /// [`RECENT_TOPICS`] topics.
    pub(crate) fn count_publish(&mut self, topic: &str) {
        self.published += 1;
        let order = self.published;
        if let Some(p) = self.recent.get_mut(topic) {
            p.messages += 1;
            p.last = order;
            return;
        }
        if self.recent.len() >= 2 * RECENT_TOPICS {
            // Forget the older half at once: amortized, not a scan per publish.
            let mut lasts: Vec<u64> = self.recent.values().map(|p| p.last).collect();
            lasts.sort_unstable();
            let keep_from = lasts[lasts.len() - RECENT_TOPICS];
            self.recent.retain(|_, p| p.last >= keep_from);
        }
        self.recent.insert(
            topic.to_owned(),
            Published {
                messages: 1,
                last: order,
            },
        );
    }

    /// The most recently published topics, newest first, at most
    /// [`RECENT_TOPICS`].
    pub(crate) fn recent(&self) -> Vec<(&str, Published)> {
        let mut recent: Vec<(&str, Published)> =
            self.recent.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        recent.sort_unstable_by_key(|(_, p)| std::cmp::Reverse(p.last));
        recent.truncate(RECENT_TOPICS);
        recent
    }

    /// Every pattern with its subscriptions.
    pub(crate) fn subscriptions(&self) -> Vec<(String, &[Subscription])> {
        self.tree.iter().collect()
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

    /// The retained messages of every topic `pattern` matches, oldest
    /// first.
    pub(crate) fn retained_matching<'a>(
        &'a self,
        pattern: &'a str,
    ) -> Vec<(&'a str, &'a Retained)> {
        let mut found: Vec<(&str, &Retained)> = if pattern::is_wildcard(pattern) {
            self.retained
                .iter()
                .filter(|(t, r)| !r.data.is_empty() && pattern::matches(pattern, t))
                .map(|(t, r)| (t.as_str(), r))
                .collect()
        } else {
            self.retained(pattern)
                .map(|r| (pattern, r))
                .into_iter()
                .collect()
        };
        found.sort_unstable_by_key(|(_, r)| r.id);
        found
    }

    /// Patterns with at least one subscription.
    pub(crate) fn topic_count(&self) -> usize {
        self.tree.len()
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
    use super::{Qos, RECENT_TOPICS, Retained, Routing, Subscription, Target};

    fn at(port: u16) -> Target {
        Target::Endpoint(([127, 0, 0, 1], port).into())
    }

    fn matching(r: &Routing, topic: &str) -> Vec<Subscription> {
        let mut out = Vec::new();
        r.matching(topic, &mut out);
        out
    }

    #[test]
    fn subscriptions_and_retained() {
        let (a, b) = (at(1), at(2));
        let mut r = Routing::default();
        assert_eq!(r.add("t", a, Qos::Zero), None);
        assert_eq!(r.add("t", a, Qos::One), Some(Qos::Zero), "one per pair");
        assert_eq!(r.add("t", b, Qos::Zero), None);
        assert_eq!(r.add("u", a, Qos::Zero), None);
        assert_eq!(matching(&r, "t").len(), 2);
        assert_eq!(matching(&r, "t")[0].qos, Qos::One, "raised to the higher");
        r.remove_target(a);
        assert_eq!(matching(&r, "t").len(), 1);
        assert!(matching(&r, "u").is_empty());
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
        assert!(r.remove("t", a));
        assert!(!r.remove("nope", a));
        assert!(r.holds(b) && !r.holds(a));
        assert!(matching(&r, "t").iter().all(|s| s.target != a));
        assert_eq!(Qos::One.min(Qos::Zero), Qos::Zero);
    }

    #[test]
    fn wildcards_deliver_once_per_target_with_the_highest_qos() {
        let (a, b, s) = (at(1), at(2), Target::Stream(7));
        let mut r = Routing::default();
        r.add("x/+", a, Qos::Zero);
        r.add("x/#", a, Qos::One);
        r.add("x/y", a, Qos::Zero);
        r.add("#", s, Qos::Zero);
        r.add("x/z", b, Qos::Zero);
        let got = matching(&r, "x/y");
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            got[0],
            Subscription {
                target: a,
                qos: Qos::One
            }
        );
        assert_eq!(got[1].target, s);
        assert_eq!(matching(&r, "x").len(), 2, "x/# and # match x");
        assert_eq!(r.patterns_of(a), ["x/+", "x/#", "x/y"]);
        r.remove_target(a);
        assert_eq!(matching(&r, "x/y").len(), 1);
        assert_eq!(r.topic_count(), 2);
        assert_eq!(r.subscriptions().len(), 2);
    }

    #[test]
    fn retained_of_a_pattern_oldest_first() {
        let mut r = Routing::default();
        for (id, topic) in [(3, "a/2"), (1, "a/1"), (2, "b/1"), (4, "a/3/x")] {
            let data = format!("m{id}");
            r.retain(
                topic,
                Retained {
                    id,
                    data,
                    qos: Qos::Zero,
                },
            );
        }
        let ids =
            |p: &str| -> Vec<u64> { r.retained_matching(p).iter().map(|(_, r)| r.id).collect() };
        assert_eq!(ids("a/+"), [1, 3]);
        assert_eq!(ids("#"), [1, 2, 3, 4]);
        assert_eq!(ids("a/3/x"), [4]);
        assert_eq!(ids("c"), Vec::<u64>::new());
    }

    #[test]
    fn recent_topics_stay_bounded_and_newest_first() {
        let mut r = Routing::default();
        for i in 0..3 * RECENT_TOPICS {
            r.count_publish(&format!("t/{i}"));
        }
        r.count_publish("t/0");
        r.count_publish("t/0");
        let recent = r.recent();
        assert_eq!(recent.len(), RECENT_TOPICS);
        assert_eq!(recent[0].0, "t/0");
        assert_eq!(recent[0].1.messages, 2, "forgotten, then counted anew");
        assert!(r.recent.len() <= 2 * RECENT_TOPICS);
    }
}
