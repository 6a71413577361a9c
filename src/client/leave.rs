//! Brokers the client left that may still deliver to it: the topics to
//! unsubscribe at each, and the unsubscribing, tried again at every
//! heartbeat tick until each one has taken it or can deliver no more.
//!
//! A broker is left when a call to it fails, a timeout included, so the one
//! left is often up, only too loaded to answer in time. It keeps calling the
//! client back at its port, and every message of the cluster would then come
//! twice, for good: the ids are each broker's own, so [`super::dedupe`]
//! cannot tell. One try at leaving, with that broker still slow, is not
//! enough.
//!
//! Owns the list; the heartbeat thread is its only user (no lock). Never
//! unsubscribes at the broker in use: the client may be moving back there,
//! and the heartbeat thread then subscribes there again and drops its entry.

use super::brokers::BrokerList;
use super::{Error, Inner, Qos};
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The longest one tick spends unsubscribing at the brokers left, all of
/// them (the client's timeout, if shorter): heartbeats wait meanwhile.
const LEAVE_WAIT: Duration = Duration::from_secs(1);

/// How long a broker left is tried: an hour, the broker's default session
/// expiry (`--session-expiry`). A broker that neither takes the unsubscribe
/// nor refuses connections for that long is given up on, with a warning:
/// one that is down has let its qos 0 subscriptions go by then, and a qos 1
/// session of a client that stopped answering has expired.
pub(super) const LEAVE_LIMIT: Duration = Duration::from_secs(3600);

/// A broker left, and what is still subscribed there.
struct Left {
    /// Its index in the client's list.
    index: usize,
    /// The topics not yet unsubscribed there, each with its qos.
    topics: Vec<(String, Qos)>,
    /// When the client left it; tried until [`LEAVE_LIMIT`] after.
    since: Instant,
    /// Whether a failed try has been logged (once per broker left).
    told: bool,
}

/// The brokers left but not yet unsubscribed from.
#[derive(Default)]
pub(super) struct Leaving {
    left: Vec<Left>,
}

/// What one unsubscribe at a broker left came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Taken (2xx): that broker sends the topic no more.
    Done,
    /// The connection was refused: the broker is down, and its qos 0
    /// subscriptions ended with it. A qos 1 one is durable: a restarted
    /// broker would deliver it again, so it is still to unsubscribe.
    Down,
    /// Answered no for good (a Go broker knows no unsubscribe: 404);
    /// asking again would not change it.
    Refused,
    /// No answer in time, a broken connection, or a status that may pass
    /// (5xx, 408, 429): tried again at a later tick.
    Later,
}

fn outcome(result: &Result<(), Error>) -> Outcome {
    match result {
        Ok(()) => Outcome::Done,
        Err(Error::Status { status, .. }) => match status {
            200..=299 => Outcome::Done,
            408 | 429 | 500.. => Outcome::Later,
            _ => Outcome::Refused,
        },
        Err(Error::Io(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Outcome::Down,
        Err(_) => Outcome::Later,
    }
}

impl Leaving {
    /// The client left the broker at `index`, subscribed there to `topics`.
    /// Added to what is already to unsubscribe there (the first leaving's
    /// time stands).
    pub(super) fn add(&mut self, index: usize, topics: &[(String, Qos)], now: Instant) {
        if topics.is_empty() {
            return;
        }
        let Some(left) = self.left.iter_mut().find(|l| l.index == index) else {
            self.left.push(Left {
                index,
                topics: topics.to_vec(),
                since: now,
                told: false,
            });
            return;
        };
        for (topic, qos) in topics {
            match left.topics.iter_mut().find(|(t, _)| t == topic) {
                Some(known) => known.1 = *qos,
                None => left.topics.push((topic.clone(), *qos)),
            }
        }
    }

    /// The client subscribed again at the broker at `index`: nothing there
    /// is to unsubscribe any more.
    pub(super) fn forget(&mut self, index: usize) {
        self.left.retain(|l| l.index != index);
    }

    /// Tries the unsubscribes still due, within [`LEAVE_WAIT`] in all.
    pub(super) fn retry(&mut self, inner: &Inner) {
        if self.left.is_empty() {
            return;
        }
        let deadline = crate::deadline::after(inner.timeout.min(LEAVE_WAIT));
        self.retry_with(&inner.brokers, Instant::now(), |index, topic| {
            if inner.stopping.load(Ordering::SeqCst) || Instant::now() >= deadline {
                return None;
            }
            let (target, body) = inner.unsubscribe_request(topic);
            Some(inner.post_to(index, &target, body.as_bytes(), deadline))
        });
    }

    /// One round: `post(index, topic)` unsubscribes `topic` at the broker
    /// at `index`, or says with `None` that the round is over (no time
    /// left). A broker that fails is tried no further this round.
    fn retry_with(
        &mut self,
        brokers: &BrokerList,
        now: Instant,
        mut post: impl FnMut(usize, &str) -> Option<Result<(), Error>>,
    ) {
        self.left.retain(|left| {
            let expired = now.saturating_duration_since(left.since) >= LEAVE_LIMIT;
            if expired {
                let addr = brokers.addr(left.index);
                let n = left.topics.len();
                crate::log::warning!(
                    "client: gave up unsubscribing at {addr}, left {} s ago: it may still deliver {n} topic(s) a second time",
                    LEAVE_LIMIT.as_secs()
                );
            }
            !expired
        });
        // Whoever went first last time goes last: one broker that never
        // answers cannot spend every round's time alone.
        if self.left.len() > 1 {
            self.left.rotate_left(1);
        }
        let current = brokers.current().index;
        'brokers: for left in &mut self.left {
            if left.index == current {
                continue;
            }
            let addr = brokers.addr(left.index);
            while let Some((topic, _)) = left.topics.first() {
                let Some(result) = post(left.index, topic) else {
                    break 'brokers;
                };
                match outcome(&result) {
                    Outcome::Done => {
                        left.topics.remove(0);
                        if left.topics.is_empty() {
                            crate::log::info!("client: unsubscribed at {addr}, which was left");
                        }
                    }
                    Outcome::Refused => {
                        let (topic, _) = left.topics.remove(0);
                        crate::log::info!(
                            "client: {addr}, which was left, refused to unsubscribe {topic:?} ({}): it may still deliver it",
                            error_of(&result)
                        );
                    }
                    Outcome::Down => {
                        left.topics.retain(|(_, qos)| *qos == Qos::AtLeastOnce);
                        if !left.told {
                            left.told = true;
                            let n = left.topics.len();
                            crate::log::info!(
                                "client: {addr}, which was left, is down; unsubscribing {n} qos 1 topic(s) there when it is back"
                            );
                        }
                        continue 'brokers;
                    }
                    Outcome::Later => {
                        if !left.told {
                            left.told = true;
                            crate::log::info!(
                                "client: {addr}, which was left, did not unsubscribe ({}); trying again at every heartbeat",
                                error_of(&result)
                            );
                        }
                        continue 'brokers;
                    }
                }
            }
        }
        self.left.retain(|left| !left.topics.is_empty());
    }
}

fn error_of(result: &Result<(), Error>) -> String {
    result
        .as_ref()
        .err()
        .map_or_else(String::new, Error::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn topics(list: &[(&str, Qos)]) -> Vec<(String, Qos)> {
        list.iter().map(|(t, q)| ((*t).to_owned(), *q)).collect()
    }

    fn status(status: u16) -> Result<(), Error> {
        Err(Error::Status {
            status,
            reason: String::new(),
        })
    }

    fn io(kind: io::ErrorKind) -> Result<(), Error> {
        Err(Error::Io(kind.into()))
    }

    /// What is still to unsubscribe, by broker index.
    fn due(leaving: &Leaving) -> HashMap<usize, Vec<String>> {
        let list = leaving.left.iter();
        list.map(|l| (l.index, l.topics.iter().map(|(t, _)| t.clone()).collect()))
            .collect()
    }

    #[test]
    fn outcomes() {
        use io::ErrorKind::{ConnectionRefused, ConnectionReset, TimedOut};
        let cases = [
            (Ok(()), Outcome::Done),
            (status(200), Outcome::Done),
            (status(204), Outcome::Done),
            (io(ConnectionRefused), Outcome::Down),
            (status(404), Outcome::Refused),
            (status(401), Outcome::Refused),
            (status(400), Outcome::Refused),
            (io(TimedOut), Outcome::Later),
            (io(ConnectionReset), Outcome::Later),
            (
                Err(Error::Http(crate::http::HttpError::UnexpectedEof)),
                Outcome::Later,
            ),
            (Err(Error::Address("gone:1".into())), Outcome::Later),
            (status(408), Outcome::Later),
            (status(429), Outcome::Later),
            (status(503), Outcome::Later),
            (status(507), Outcome::Later),
        ];
        for (result, want) in cases {
            assert_eq!(outcome(&result), want, "{result:?}");
        }
    }

    #[test]
    fn leaving_again_adds_topics_and_keeps_the_first_time() {
        let t0 = Instant::now();
        let mut leaving = Leaving::default();
        leaving.add(1, &topics(&[("a", Qos::AtMostOnce)]), t0);
        leaving.add(1, &[], t0);
        leaving.add(2, &[], t0);
        let later = t0 + Duration::from_secs(5);
        let again = [("a", Qos::AtLeastOnce), ("b", Qos::AtMostOnce)];
        leaving.add(1, &topics(&again), later);
        assert_eq!(leaving.left.len(), 1);
        assert_eq!(leaving.left[0].topics, topics(&again));
        assert_eq!(leaving.left[0].since, t0);
        leaving.forget(1);
        assert!(leaving.left.is_empty());
    }

    #[test]
    fn a_slow_broker_is_tried_at_every_round_until_it_takes_every_topic() {
        let brokers = BrokerList::new(vec!["a:1".into(), "b:2".into()]);
        brokers.move_on(brokers.current(), &"timed out");
        let mut leaving = Leaving::default();
        let now = Instant::now();
        leaving.add(
            0,
            &topics(&[("x", Qos::AtMostOnce), ("y", Qos::AtMostOnce)]),
            now,
        );
        let mut tries = Vec::new();
        leaving.retry_with(&brokers, now, |i, t| {
            tries.push((i, t.to_owned()));
            Some(io(io::ErrorKind::TimedOut))
        });
        // No second topic after a timeout: the broker is slow.
        assert_eq!(tries, [(0, "x".to_owned())]);
        assert_eq!(due(&leaving)[&0], ["x", "y"]);
        let mut answers = vec![Ok(()), status(503)].into_iter();
        leaving.retry_with(&brokers, now, |_, _| answers.next());
        assert_eq!(due(&leaving)[&0], ["y"]);
        leaving.retry_with(&brokers, now, |_, _| Some(status(200)));
        assert!(leaving.left.is_empty());
    }

    #[test]
    fn a_broker_down_keeps_only_its_durable_topics_due() {
        let brokers = BrokerList::new(vec!["a:1".into(), "b:2".into()]);
        brokers.move_on(brokers.current(), &"refused");
        let mut leaving = Leaving::default();
        let now = Instant::now();
        let list = [("q0", Qos::AtMostOnce), ("q1", Qos::AtLeastOnce)];
        leaving.add(0, &topics(&list), now);
        leaving.retry_with(&brokers, now, |_, _| {
            Some(io(io::ErrorKind::ConnectionRefused))
        });
        assert_eq!(due(&leaving)[&0], ["q1"]);
        leaving.add(0, &topics(&[("only q0", Qos::AtMostOnce)]), now);
        let mut tries = 0;
        leaving.retry_with(&brokers, now, |_, _| {
            tries += 1;
            Some(io(io::ErrorKind::ConnectionRefused))
        });
        assert_eq!(
            (tries, due(&leaving)[&0].clone()),
            (1, vec!["q1".to_owned()])
        );
        // The broker is back and takes it.
        leaving.retry_with(&brokers, now, |_, _| Some(Ok(())));
        assert!(leaving.left.is_empty());
        // All qos 0: nothing left to do once it is down.
        leaving.add(0, &topics(&[("q0", Qos::AtMostOnce)]), now);
        leaving.retry_with(&brokers, now, |_, _| {
            Some(io(io::ErrorKind::ConnectionRefused))
        });
        assert!(leaving.left.is_empty());
    }

    #[test]
    fn a_refusal_drops_that_topic_and_the_round_goes_on() {
        let brokers = BrokerList::new(vec!["a:1".into(), "b:2".into()]);
        brokers.move_on(brokers.current(), &"timed out");
        let mut leaving = Leaving::default();
        let now = Instant::now();
        leaving.add(
            0,
            &topics(&[("x", Qos::AtMostOnce), ("y", Qos::AtMostOnce)]),
            now,
        );
        let mut answers = vec![status(404), Ok(())].into_iter();
        leaving.retry_with(&brokers, now, |_, _| answers.next());
        assert!(leaving.left.is_empty());
    }

    #[test]
    fn the_broker_in_use_is_never_told_and_a_round_ends_when_time_does() {
        let brokers = BrokerList::new(vec!["a:1".into(), "b:2".into(), "c:3".into()]);
        let mut leaving = Leaving::default();
        let now = Instant::now();
        // The client left a (0), then came back to it: a's entry waits for
        // the heartbeat thread to subscribe there again.
        leaving.add(0, &topics(&[("x", Qos::AtMostOnce)]), now);
        leaving.add(1, &topics(&[("x", Qos::AtMostOnce)]), now);
        leaving.add(2, &topics(&[("x", Qos::AtMostOnce)]), now);
        let mut tries = Vec::new();
        leaving.retry_with(&brokers, now, |i, _| {
            tries.push(i);
            None
        });
        assert_eq!(tries.len(), 1);
        assert_ne!(tries[0], 0);
        assert_eq!(due(&leaving).len(), 3);
        // The one that went first goes last next time.
        let first = tries[0];
        tries.clear();
        leaving.retry_with(&brokers, now, |i, _| {
            tries.push(i);
            Some(io(io::ErrorKind::TimedOut))
        });
        assert_eq!(tries.len(), 2);
        assert_eq!(tries[1], first);
        leaving.retry_with(&brokers, now, |_, _| Some(Ok(())));
        assert_eq!(due(&leaving).keys().collect::<Vec<_>>(), [&0]);
    }

    #[test]
    fn a_broker_left_is_given_up_on_after_the_limit() {
        let brokers = BrokerList::new(vec!["a:1".into(), "b:2".into()]);
        brokers.move_on(brokers.current(), &"timed out");
        let mut leaving = Leaving::default();
        let t0 = Instant::now();
        leaving.add(0, &topics(&[("x", Qos::AtLeastOnce)]), t0);
        let refused = |_: usize, _: &str| Some(io(io::ErrorKind::ConnectionRefused));
        leaving.retry_with(&brokers, t0 + LEAVE_LIMIT - Duration::from_secs(1), refused);
        assert_eq!(due(&leaving)[&0], ["x"]);
        let mut tries = 0;
        leaving.retry_with(&brokers, t0 + LEAVE_LIMIT, |_, _| {
            tries += 1;
            Some(Ok(()))
        });
        assert_eq!(tries, 0);
        assert!(leaving.left.is_empty());
    }
}
