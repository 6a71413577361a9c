//! What the bridge subscribes to in NATS, and which copy of a message to
//! take (PROTOCOL.md section 6.7). Pure: no socket, no lock.
//!
//! Each distinct NATS subject is one subscription (one sid), held while any
//! local pattern needs it: patterns `a` and `a/#` share `mb.a`. NATS sends a
//! message once per matching subscription, so when a broker's patterns
//! overlap (`a/+` and `a/#`) the same message comes more than once. It is
//! taken only on the lowest sid among the subscriptions that match its
//! subject. A subscription given up is kept as *retired* (still counted, and
//! its copies still taken when lowest) until the server has answered a
//! `PING` sent after the `UNSUB`, and one more: the copies that raced the
//! `UNSUB` are then all in. Sids only grow, so a new subscription never
//! takes a copy that an older one takes.

use super::subject;
use std::collections::{BTreeMap, HashMap};

/// Longest subject the bridge sends. A NATS server closes a connection
/// whose control line passes its limit (4,096 bytes by default), so a
/// longer subject would cost every message in flight: a publish to it is
/// dropped, and a pattern with it is not subscribed in NATS.
pub(crate) const MAX_SUBJECT: usize = 2048;

/// One held subject.
#[derive(Debug, Clone, Copy)]
struct Held {
    sid: u64,
    /// Patterns that need it.
    refs: usize,
}

/// The subjects the bridge holds in NATS.
#[derive(Debug, Default)]
pub(crate) struct Interest {
    subjects: HashMap<String, Held>,
    /// Held subjects by sid.
    by_sid: HashMap<u64, String>,
    /// Held subjects with a wildcard token, by sid, split into tokens.
    wild: BTreeMap<u64, Vec<String>>,
    /// Subscriptions given up, by sid: the subject, and the count of
    /// `PONG`s after which no copy can come for it any more.
    retired: BTreeMap<u64, (String, u64)>,
    last_sid: u64,
}

impl Interest {
    /// A local pattern is now held: the subscriptions to make, as `(sid,
    /// subject)`.
    pub(crate) fn add(&mut self, pattern: &str) -> Vec<(u64, String)> {
        let mut new = Vec::new();
        for subject in subject::subjects_of_pattern(pattern) {
            if subject.len() > MAX_SUBJECT {
                continue;
            }
            if let Some(held) = self.subjects.get_mut(&subject) {
                held.refs += 1;
                continue;
            }
            self.last_sid += 1;
            let sid = self.last_sid;
            if is_wild(&subject) {
                self.wild.insert(sid, tokens(&subject));
            }
            self.by_sid.insert(sid, subject.clone());
            self.subjects.insert(subject.clone(), Held { sid, refs: 1 });
            new.push((sid, subject));
        }
        new
    }

    /// A local pattern is no longer held: the sids to unsubscribe. They
    /// stay retired until `fence` `PONG`s have come (see
    /// [`Interest::ponged`]).
    pub(crate) fn remove(&mut self, pattern: &str, fence: u64) -> Vec<u64> {
        let mut gone = Vec::new();
        for subject in subject::subjects_of_pattern(pattern) {
            let Some(held) = self.subjects.get_mut(&subject) else {
                continue;
            };
            held.refs -= 1;
            if held.refs == 0 {
                let sid = held.sid;
                self.subjects.remove(&subject);
                self.by_sid.remove(&sid);
                self.wild.remove(&sid);
                self.retired.insert(sid, (subject, fence));
                gone.push(sid);
            }
        }
        gone
    }

    /// `pongs` `PONG`s have come on this connection: the retired
    /// subscriptions fenced by them are gone for good.
    pub(crate) fn ponged(&mut self, pongs: u64) {
        self.retired.retain(|_, (_, fence)| *fence > pongs);
    }

    /// A new connection: nothing of the old one's can come any more.
    pub(crate) fn reconnected(&mut self) {
        self.retired.clear();
    }

    /// Every held subscription, as `(sid, subject)`, in sid order: what to
    /// subscribe again on a new connection.
    pub(crate) fn all(&self) -> Vec<(u64, &str)> {
        let mut all: Vec<(u64, &str)> = self
            .by_sid
            .iter()
            .map(|(sid, s)| (*sid, s.as_str()))
            .collect();
        all.sort_unstable();
        all
    }

    /// Subjects held.
    pub(crate) fn len(&self) -> usize {
        self.subjects.len()
    }

    /// Whether the copy of a message on `subject` that came for `sid` is
    /// the one to take: `sid` is held or retired, and no held or retired
    /// subscription with a lower sid matches `subject`.
    pub(crate) fn takes(&self, sid: u64, subject: &str) -> bool {
        if !self.by_sid.contains_key(&sid) && !self.retired.contains_key(&sid) {
            return false; // not ours (any more)
        }
        if self.subjects.get(subject).is_some_and(|h| h.sid < sid) {
            return false;
        }
        let parts: Vec<&str> = subject.split('.').collect();
        let lower_held = self.wild.range(..sid).any(|(_, p)| matches(p, &parts));
        let lower_retired = self
            .retired
            .range(..sid)
            .any(|(_, (s, _))| s == subject || (is_wild(s) && matches(&tokens(s), &parts)));
        !lower_held && !lower_retired
    }
}

fn is_wild(subject: &str) -> bool {
    subject.split('.').any(|t| t == "*" || t == ">")
}

fn tokens(subject: &str) -> Vec<String> {
    subject.split('.').map(str::to_owned).collect()
}

/// NATS subject matching: `*` is one token, a last `>` one or more.
fn matches(pattern: &[String], subject: &[&str]) -> bool {
    let mut i = 0;
    for (n, p) in pattern.iter().enumerate() {
        if p == ">" && n + 1 == pattern.len() {
            return subject.len() > n;
        }
        match subject.get(i) {
            Some(s) if p == "*" || p == s => i += 1,
            _ => return false,
        }
    }
    i == subject.len()
}

#[cfg(test)]
mod tests {
    use super::{Interest, matches, tokens};

    #[test]
    fn subject_matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("mb.a.b", "mb.a.b", true),
            ("mb.a.*", "mb.a.b", true),
            ("mb.a.*", "mb.a", false),
            ("mb.a.*", "mb.a.b.c", false),
            ("mb.a.>", "mb.a.b.c", true),
            ("mb.a.>", "mb.a", false),
            ("mb.>", "mb.x", true),
            ("mb.*.c", "mb.b.c", true),
            ("mb.*.c", "mb.b.d", false),
        ];
        for (pattern, subject, want) in cases {
            let parts: Vec<&str> = subject.split('.').collect();
            assert_eq!(
                matches(&tokens(pattern), &parts),
                *want,
                "{pattern} {subject}"
            );
        }
    }

    #[test]
    fn a_subject_too_long_for_nats_is_not_held() {
        let mut i = Interest::default();
        let long = "x".repeat(super::MAX_SUBJECT);
        assert_eq!(i.add(&long), Vec::new());
        assert_eq!(i.remove(&long, 1), Vec::<u64>::new());
        let fits = "x".repeat(super::MAX_SUBJECT - 3);
        assert_eq!(i.add(&fits).len(), 1);
    }

    #[test]
    fn shared_subjects_are_held_once_and_released_with_the_last_pattern() {
        let mut i = Interest::default();
        assert_eq!(i.add("a"), vec![(1, "mb.a".to_owned())]);
        // `a/#` needs `mb.a` too: only `mb.a.>` is new.
        assert_eq!(i.add("a/#"), vec![(2, "mb.a.>".to_owned())]);
        assert_eq!(i.len(), 2);
        assert_eq!(i.remove("a", 1), Vec::<u64>::new());
        let mut gone = i.remove("a/#", 1);
        gone.sort_unstable();
        assert_eq!(gone, vec![1, 2]);
        assert_eq!(i.len(), 0);
        assert_eq!(i.remove("never", 1), Vec::<u64>::new());
        assert_eq!(i.add("b/+"), vec![(3, "mb.b.*".to_owned())]);
        assert_eq!(i.all(), vec![(3, "mb.b.*")]);
    }

    /// The sids NATS sends a message on (every held subscription whose
    /// subject matches), and of those the ones the bridge takes.
    fn taken(i: &Interest, subject: &str) -> Vec<u64> {
        let parts: Vec<&str> = subject.split('.').collect();
        let held = i.all();
        held.iter()
            .filter(|(_, s)| matches(&tokens(s), &parts))
            .map(|(sid, _)| *sid)
            .filter(|&sid| i.takes(sid, subject))
            .collect()
    }

    #[test]
    fn an_overlapping_message_is_taken_on_its_lowest_sid_only() {
        let mut i = Interest::default();
        i.add("a/+"); // sid 1: mb.a.*
        i.add("a/#"); // sids 2, 3: mb.a.> and mb.a
        i.add("a/b"); // sid 4: mb.a.b
        assert_eq!(taken(&i, "mb.a.b"), vec![1]);
        assert_eq!(taken(&i, "mb.a.b.c"), vec![2]);
        assert_eq!(taken(&i, "mb.a"), vec![3]);
        assert_eq!(taken(&i, "mb.z"), Vec::<u64>::new());
        // a/+ given up: until its fence, a copy on sid 1 (which raced the
        // UNSUB) is still the one taken, and the copy on sid 2 is not.
        i.remove("a/+", 2);
        assert!(i.takes(1, "mb.a.b"));
        assert!(!i.takes(2, "mb.a.b"));
        i.ponged(1);
        assert!(i.takes(1, "mb.a.b") && !i.takes(2, "mb.a.b"));
        // After the fence, only sid 2 is left.
        i.ponged(2);
        assert!(!i.takes(1, "mb.a.b"));
        assert!(i.takes(2, "mb.a.b"));
        // A new connection forgets what was retired at once.
        i.remove("a/#", 9);
        i.reconnected();
        assert!(!i.takes(2, "mb.a.b.c"));
    }
}
