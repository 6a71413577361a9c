//! The idempotency keys in their window (PROTOCOL.md section 6.2): topic and
//! key to the first message's id, and the log batch that stores it while it
//! is not yet written, so that a repeated key is answered only once the
//! first copy is stored.
//!
//! Bounded: past [`MAX_KEYS`] keys or [`MAX_KEY_BYTES`] of topics and keys,
//! the oldest are forgotten early (a flood of unique keys shortens the
//! window rather than filling memory). Pure data: no I/O, no threads.

use super::Batch;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most keys remembered at once.
pub(crate) const MAX_KEYS: usize = 100_000;

/// Most bytes of topics and keys remembered at once.
pub(crate) const MAX_KEY_BYTES: usize = 16 * 1024 * 1024;

/// What a key maps to.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) id: u64,
    /// The batch storing the first copy (none in memory, or for qos 0).
    pub(crate) batch: Option<Arc<Batch>>,
    at: Instant,
}

/// Keys to the first message's id, oldest first for pruning.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    map: HashMap<(String, String), Seen>,
    order: VecDeque<(Instant, String, String)>,
    bytes: usize,
}

impl Keys {
    /// The first message with `key` on `topic`, if it is in the window.
    pub(crate) fn find(
        &mut self,
        topic: &str,
        key: &str,
        now: Instant,
        window: Duration,
    ) -> Option<&Seen> {
        self.prune(|at| now.saturating_duration_since(at) >= window);
        self.map.get(&(topic.to_owned(), key.to_owned()))
    }

    /// Remembers `key` on `topic` for message `id`, published `at`.
    pub(crate) fn remember(
        &mut self,
        topic: &str,
        key: &str,
        id: u64,
        at: Instant,
        batch: Option<Arc<Batch>>,
    ) {
        self.map
            .insert((topic.to_owned(), key.to_owned()), Seen { id, batch, at });
        self.order.push_back((at, topic.to_owned(), key.to_owned()));
        self.bytes += topic.len() + key.len();
        let full = |keys: &Keys| keys.order.len() > MAX_KEYS || keys.bytes > MAX_KEY_BYTES;
        while full(self) {
            if !self.pop_oldest() {
                break;
            }
        }
    }

    /// Forgets `key` on `topic` if it still names message `id` (its write
    /// failed: a retry must store it).
    pub(crate) fn forget(&mut self, topic: &str, key: &str, id: u64) {
        let k = (topic.to_owned(), key.to_owned());
        if self.map.get(&k).is_some_and(|s| s.id == id) {
            self.map.remove(&k);
        }
    }

    /// Keys remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }

    /// Drops keys from the front while `expired` says so.
    fn prune(&mut self, expired: impl Fn(Instant) -> bool) {
        while self.order.front().is_some_and(|(at, _, _)| expired(*at)) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) -> bool {
        let Some((at, topic, key)) = self.order.pop_front() else {
            return false;
        };
        self.bytes -= topic.len() + key.len();
        let k = (topic, key);
        // A newer entry for the same key has its own place in `order`.
        if self.map.get(&k).is_some_and(|s| s.at == at) {
            self.map.remove(&k);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{Keys, MAX_KEY_BYTES, MAX_KEYS};
    use std::time::{Duration, Instant};

    #[test]
    fn window_forget_and_bounds() {
        let window = Duration::from_secs(120);
        let t0 = Instant::now();
        let mut keys = Keys::default();
        keys.remember("t", "k", 1, t0, None);
        assert_eq!(keys.find("t", "k", t0, window).map(|s| s.id), Some(1));
        assert!(keys.find("u", "k", t0, window).is_none(), "per topic");
        keys.forget("t", "k", 2);
        assert!(keys.find("t", "k", t0, window).is_some(), "another id");
        keys.forget("t", "k", 1);
        assert!(keys.find("t", "k", t0, window).is_none());

        keys.remember("t", "old", 3, t0, None);
        let later = t0 + window;
        assert!(
            keys.find("t", "old", later, window).is_none(),
            "out of the window"
        );
        assert_eq!(keys.len(), 0);

        // At the count limit and one past it: the oldest goes.
        for i in 0..=MAX_KEYS {
            keys.remember("t", &i.to_string(), i as u64, t0, None);
        }
        assert_eq!(keys.len(), MAX_KEYS);
        assert!(keys.find("t", "0", t0, window).is_none());
        assert!(keys.find("t", "1", t0, window).is_some());

        // Past the byte limit: long topics push the oldest out.
        let mut keys = Keys::default();
        let topic = "x".repeat(1024 * 1024);
        for i in 0..=MAX_KEY_BYTES / topic.len() {
            keys.remember(&topic, &i.to_string(), i as u64, t0, None);
        }
        assert!(keys.len() <= MAX_KEY_BYTES / topic.len());
        assert!(keys.find(&topic, "0", t0, window).is_none());
    }
}
