//! What the log says is true now: the durable sessions and their positions,
//! the retained messages, the idempotency keys and the highest id. Recovery
//! rebuilds it by applying every record in order; the writer keeps it up to
//! date the same way, writes it at the head of each new segment (so older
//! segments can be deleted) and asks it which segments sessions still need.
//!
//! Pure: records in, state out.

use super::keys::{MAX_KEY_BYTES, MAX_KEYS};
use super::record::{Record, Stored};
use crate::pattern;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

/// A durable subscription endpoint as the log knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Session {
    /// Topic pattern to the id after which the subscription began.
    pub(crate) topics: BTreeMap<String, u64>,
    /// Every message up to this id was answered.
    pub(crate) position: u64,
}

impl Session {
    /// Whether message `id` on `topic` is still owed to this session.
    pub(crate) fn owes(&self, topic: &str, id: u64) -> bool {
        id > self.position
            && (self.topics.get(topic).is_some_and(|&from| id > from)
                || self
                    .topics
                    .iter()
                    .any(|(p, &from)| id > from && pattern::matches(p, topic)))
    }

    /// Messages up to this id are owed to it on no topic, given each
    /// topic's last stored qos 1 message. A session owed nothing at all
    /// holds nothing back (`u64::MAX`).
    fn floor(&self, last: &HashMap<String, u64>) -> u64 {
        let owed = self.topics.iter().any(|(topic, &from)| {
            last.get(topic)
                .is_some_and(|&id| id > from && id > self.position)
        });
        if !owed {
            return u64::MAX;
        }
        let from = self.topics.values().copied().min().unwrap_or(u64::MAX);
        from.max(self.position)
    }
}

/// The state the records add up to.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The highest message id seen.
    pub(crate) max_id: u64,
    pub(crate) sessions: HashMap<SocketAddr, Session>,
    /// Topic to its retained message (never one with empty data).
    pub(crate) retained: HashMap<String, Stored>,
    /// (topic, key) to (id, publish time in ms since the epoch).
    pub(crate) keys: HashMap<(String, String), (u64, u64)>,
    /// The last qos 1 message of each pattern some session subscribes to
    /// (what a session may be owed).
    last: HashMap<String, u64>,
    /// The patterns in `last` with a wildcard: a message is matched against
    /// each of these (the others are looked up by its topic).
    wild: BTreeSet<String>,
}

impl State {
    /// Applies one record.
    pub(crate) fn apply(&mut self, record: &Record) {
        match record {
            Record::Message(s) | Record::Retained(s) => {
                self.max_id = self.max_id.max(s.id);
                if matches!(record, Record::Message(_)) && s.qos1 {
                    self.saw_qos1(&s.topic, s.id);
                }
                if s.retain || matches!(record, Record::Retained(_)) {
                    if s.data.is_empty() {
                        self.retained.remove(&s.topic);
                    } else {
                        self.retained.insert(s.topic.clone(), s.clone());
                    }
                }
                if let Some(key) = &s.key {
                    self.keys
                        .insert((s.topic.clone(), key.clone()), (s.id, s.time_ms));
                }
            }
            Record::Key {
                topic,
                key,
                id,
                time_ms,
            } => {
                self.keys
                    .insert((topic.clone(), key.clone()), (*id, *time_ms));
            }
            Record::Subscribe {
                endpoint,
                topic,
                from,
            } => {
                self.max_id = self.max_id.max(*from);
                let session = self.sessions.entry(*endpoint).or_default();
                session.topics.entry(topic.clone()).or_insert(*from);
                self.last.entry(topic.clone()).or_insert(0);
                self.note_wild(topic);
            }
            Record::Unsubscribe { endpoint, topic } => {
                if let Some(session) = self.sessions.get_mut(endpoint)
                    && session.topics.remove(topic).is_some()
                {
                    if session.topics.is_empty() {
                        // No durable pattern left: the session is over.
                        self.sessions.remove(endpoint);
                    }
                    self.forget_unheld([topic.as_str()]);
                }
            }
            Record::Ack { endpoint, id } => {
                self.max_id = self.max_id.max(*id);
                if let Some(session) = self.sessions.get_mut(endpoint) {
                    session.position = session.position.max(*id);
                }
            }
            Record::End { endpoint } => {
                if let Some(ended) = self.sessions.remove(endpoint) {
                    self.forget_unheld(ended.topics.keys().map(String::as_str));
                }
            }
            Record::Ids { max } => self.max_id = self.max_id.max(*max),
            Record::Last { topic, id } => {
                self.max_id = self.max_id.max(*id);
                let last = self.last.entry(topic.clone()).or_insert(0);
                *last = (*last).max(*id);
                self.note_wild(topic);
            }
        }
    }

    /// A qos 1 message `id` was stored on `topic`: the patterns it matches
    /// have a newer last message.
    fn saw_qos1(&mut self, topic: &str, id: u64) {
        if let Some(last) = self.last.get_mut(topic) {
            *last = (*last).max(id);
        }
        for p in &self.wild {
            if pattern::matches(p, topic)
                && let Some(last) = self.last.get_mut(p)
            {
                *last = (*last).max(id);
            }
        }
    }

    /// Keeps `pattern` among the wildcard ones if it is one.
    fn note_wild(&mut self, pattern: &str) {
        if pattern::is_wildcard(pattern) && !self.wild.contains(pattern) {
            self.wild.insert(pattern.to_owned());
        }
    }

    /// Forgets the last message of the patterns no session holds any more.
    fn forget_unheld<'a>(&mut self, patterns: impl IntoIterator<Item = &'a str>) {
        for p in patterns {
            if !self.sessions.values().any(|s| s.topics.contains_key(p)) {
                self.last.remove(p);
                self.wild.remove(p);
            }
        }
    }

    /// Messages up to this id are owed to no session (`u64::MAX` if there
    /// are none).
    pub(crate) fn floor(&self) -> u64 {
        self.sessions
            .values()
            .map(|s| s.floor(&self.last))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Forgets keys published before `oldest_ms`.
    /// Also keeps at most the newest [`MAX_KEYS`] keys and
    /// [`MAX_KEY_BYTES`] of them, as the store's own window does, so that a
    /// snapshot stays small whatever publishers send.
    pub(crate) fn prune_keys(&mut self, oldest_ms: u64) {
        self.keys.retain(|_, (_, time)| *time >= oldest_ms);
        let bytes: usize = self.keys.keys().map(|(t, k)| t.len() + k.len()).sum();
        if self.keys.len() <= MAX_KEYS && bytes <= MAX_KEY_BYTES {
            return;
        }
        let mut newest: Vec<(u64, (String, String))> = self
            .keys
            .iter()
            .map(|(k, (_, time))| (*time, k.clone()))
            .collect();
        newest.sort_unstable_by_key(|n| std::cmp::Reverse(n.0));
        let (mut count, mut bytes) = (0, 0);
        for (_, (topic, key)) in newest {
            count += 1;
            bytes += topic.len() + key.len();
            if count > MAX_KEYS || bytes > MAX_KEY_BYTES {
                self.keys.remove(&(topic, key));
            }
        }
    }

    /// Records that rebuild this state on their own, with `given` the
    /// highest id given out so far: written at the head of every new
    /// segment.
    pub(crate) fn snapshot(&self, given: u64) -> Vec<Record> {
        let mut records = vec![Record::Ids {
            max: given.max(self.max_id),
        }];
        for s in self.retained.values() {
            records.push(Record::Retained(Stored {
                key: None,
                ..s.clone()
            }));
        }
        for ((topic, key), (id, time_ms)) in &self.keys {
            records.push(Record::Key {
                topic: topic.clone(),
                key: key.clone(),
                id: *id,
                time_ms: *time_ms,
            });
        }
        for (topic, id) in &self.last {
            records.push(Record::Last {
                topic: topic.clone(),
                id: *id,
            });
        }
        for (endpoint, session) in &self.sessions {
            for (topic, from) in &session.topics {
                records.push(Record::Subscribe {
                    endpoint: *endpoint,
                    topic: topic.clone(),
                    from: *from,
                });
            }
            records.push(Record::Ack {
                endpoint: *endpoint,
                id: session.position,
            });
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::{Record, State, Stored};

    fn message(id: u64, topic: &str, retain: bool, data: &str) -> Record {
        Record::Message(Stored {
            id,
            time_ms: id,
            qos1: true,
            retain,
            topic: topic.into(),
            data: data.into(),
            key: Some(format!("k{id}")),
        })
    }

    #[test]
    fn sessions_positions_retained_and_keys_add_up() {
        let a = "127.0.0.1:1".parse().unwrap();
        let b = "127.0.0.1:2".parse().unwrap();
        let mut state = State::default();
        let records = [
            Record::Subscribe {
                endpoint: a,
                topic: "t".into(),
                from: 0,
            },
            message(1, "t", true, "one"),
            Record::Subscribe {
                endpoint: b,
                topic: "u".into(),
                from: 1,
            },
            message(2, "t", false, "two"),
            Record::Ack { endpoint: a, id: 2 },
            message(3, "u", true, "x"),
            message(4, "u", true, ""),
        ];
        for r in &records {
            state.apply(r);
        }
        assert_eq!(state.max_id, 4);
        assert_eq!(state.sessions[&a].position, 2);
        assert!(state.sessions[&a].owes("t", 3));
        assert!(!state.sessions[&a].owes("t", 2));
        assert!(!state.sessions[&a].owes("u", 9));
        assert_eq!(state.floor(), 1, "b began after 1");
        assert_eq!(state.retained.len(), 1, "u was cleared");
        assert_eq!(state.keys.len(), 4);

        // A snapshot rebuilds the same state on its own.
        let mut again = State::default();
        for r in state.snapshot(99) {
            again.apply(&r);
        }
        assert_eq!(again.sessions, state.sessions);
        assert_eq!(again.retained.keys().collect::<Vec<_>>(), vec!["t"]);
        assert_eq!(again.keys, state.keys);
        assert_eq!(again.max_id, 99, "ids given out survive the snapshot");

        assert_eq!(again.floor(), 1, "what is owed survives the snapshot");
        state.apply(&Record::End { endpoint: b });
        assert_eq!(state.floor(), u64::MAX, "a has answered all of t");
        state.apply(&message(5, "t", false, "five"));
        assert_eq!(state.floor(), 2, "a is owed 5");
        state.apply(&Record::End { endpoint: a });
        assert_eq!(state.floor(), u64::MAX);
        state.prune_keys(3);
        assert_eq!(state.keys.len(), 3, "published at 3, 4 and 5");
    }

    #[test]
    fn wildcard_sessions_and_unsubscribe() {
        let a = "127.0.0.1:1".parse().unwrap();
        let mut state = State::default();
        let subscribe = |topic: &str, from| Record::Subscribe {
            endpoint: a,
            topic: topic.into(),
            from,
        };
        state.apply(&subscribe("s/+", 0));
        state.apply(&subscribe("x/#", 2));
        state.apply(&message(1, "s/1", false, "one"));
        state.apply(&message(3, "x/y/z", false, "three"));
        let session = &state.sessions[&a];
        assert!(session.owes("s/1", 1));
        assert!(!session.owes("s/1/2", 4), "+ is one level");
        assert!(session.owes("x", 3), "x/# matches x");
        assert!(!session.owes("x/y", 2), "x/# began after 2");
        assert_eq!(state.floor(), 0);
        state.apply(&Record::Ack { endpoint: a, id: 3 });
        assert_eq!(state.floor(), u64::MAX, "both patterns answered");
        state.apply(&message(4, "s/2", false, "four"));
        assert_eq!(state.floor(), 3);

        let mut again = State::default();
        for r in state.snapshot(4) {
            again.apply(&r);
        }
        assert_eq!(again.floor(), 3, "wildcard lasts survive the snapshot");

        state.apply(&Record::Unsubscribe {
            endpoint: a,
            topic: "s/+".into(),
        });
        assert!(!state.sessions[&a].owes("s/2", 4), "unsubscribed");
        assert_eq!(state.floor(), u64::MAX, "nothing owed on x/#");
        assert!(state.sessions.contains_key(&a), "x/# stays");
        state.apply(&Record::Unsubscribe {
            endpoint: a,
            topic: "nope".into(),
        });
        assert_eq!(state.sessions[&a].topics.len(), 1);
        state.apply(&Record::Unsubscribe {
            endpoint: a,
            topic: "x/#".into(),
        });
        assert!(!state.sessions.contains_key(&a), "the last pattern ends it");
        assert!(state.wild.is_empty() && state.last.is_empty());
    }
}
