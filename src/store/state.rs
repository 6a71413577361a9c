//! What the log says is true now: the durable sessions and their positions,
//! the retained messages, the idempotency keys and the highest id. Recovery
//! rebuilds it by applying every record in order; the writer keeps it up to
//! date the same way, writes it at the head of each new segment (so older
//! segments can be deleted) and asks it which segments sessions still need.
//!
//! Pure: records in, state out.

use super::record::{Record, Stored};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// A durable subscription endpoint as the log knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Session {
    /// Topic to the id after which the subscription began.
    pub(crate) topics: BTreeMap<String, u64>,
    /// Every message up to this id was answered.
    pub(crate) position: u64,
}

impl Session {
    /// Whether message `id` on `topic` is still owed to this session.
    pub(crate) fn owes(&self, topic: &str, id: u64) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|&from| id > from && id > self.position)
    }

    /// Messages up to this id are owed to it on no topic.
    fn floor(&self) -> u64 {
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
}

impl State {
    /// Applies one record.
    pub(crate) fn apply(&mut self, record: &Record) {
        match record {
            Record::Message(s) | Record::Retained(s) => {
                self.max_id = self.max_id.max(s.id);
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
            }
            Record::Ack { endpoint, id } => {
                self.max_id = self.max_id.max(*id);
                if let Some(session) = self.sessions.get_mut(endpoint) {
                    session.position = session.position.max(*id);
                }
            }
            Record::End { endpoint } => {
                self.sessions.remove(endpoint);
            }
            Record::Ids { max } => self.max_id = self.max_id.max(*max),
        }
    }

    /// Messages up to this id are owed to no session (`u64::MAX` if there
    /// are none).
    pub(crate) fn floor(&self) -> u64 {
        self.sessions
            .values()
            .map(Session::floor)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Forgets keys published before `oldest_ms`.
    pub(crate) fn prune_keys(&mut self, oldest_ms: u64) {
        self.keys.retain(|_, (_, time)| *time >= oldest_ms);
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

        state.apply(&Record::End { endpoint: b });
        assert_eq!(state.floor(), 2);
        state.apply(&Record::End { endpoint: a });
        assert_eq!(state.floor(), u64::MAX);
        state.prune_keys(3);
        assert_eq!(state.keys.len(), 2);
    }
}
