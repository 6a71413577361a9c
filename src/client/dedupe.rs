//! Drops repeated qos 1 deliveries. The broker resends from the first
//! message whose answer it did not get, so a subscriber can see a message
//! twice; every qos 1 message carries an id, the same for every subscriber
//! and never reused, and the listener remembers the latest ids it took.
//!
//! Owns the window of ids; pure (no I/O, no lock: the caller holds one).

use std::collections::{HashSet, VecDeque};

/// How many of the latest message ids a client remembers to drop
/// duplicates: a redelivered message is recognised if fewer than this many
/// other messages with an id arrived since it first came. The broker resends
/// from its first unanswered message, so a duplicate is never further back
/// than the messages it had in flight. Messages without an id (qos 0, or a
/// Go broker) are never dropped as duplicates.
pub const DEDUPE_WINDOW: usize = 4096;

/// The latest ids seen, oldest first, with a set for the lookup.
#[derive(Debug)]
pub(super) struct Dedupe {
    order: VecDeque<u64>,
    seen: HashSet<u64>,
    capacity: usize,
}

impl Dedupe {
    /// An empty window of `capacity` ids (at least 1).
    pub(super) fn new(capacity: usize) -> Dedupe {
        let capacity = capacity.max(1);
        Dedupe {
            order: VecDeque::with_capacity(capacity),
            seen: HashSet::with_capacity(capacity),
            capacity,
        }
    }

    /// Records `id`; false if it is already in the window (a duplicate).
    /// The oldest id leaves the window when it is full.
    pub(super) fn first_time(&mut self, id: u64) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.order.push_back(id);
        true
    }

    /// Forgets `id` again: its message could not be taken after all, so the
    /// broker's resend must get through.
    pub(super) fn forget(&mut self, id: u64) {
        if self.seen.remove(&id)
            && let Some(at) = self.order.iter().rposition(|&x| x == id)
        {
            self.order.remove(at);
        }
    }

    /// How many ids the window holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{DEDUPE_WINDOW, Dedupe};

    #[test]
    fn repeats_inside_the_window_are_duplicates() {
        // (ids offered in order, expected first_time answers)
        let cases: &[(&[u64], &[bool])] = &[
            (&[5, 5, 6], &[true, false, true]),
            (&[1, 2, 3, 2, 1], &[true, true, true, false, false]),
            (&[7, 6, 7, 6], &[true, true, false, false]),
            (&[0, u64::MAX, 0], &[true, true, false]),
        ];
        for &(ids, want) in cases {
            let mut window = Dedupe::new(DEDUPE_WINDOW);
            let got: Vec<bool> = ids.iter().map(|&id| window.first_time(id)).collect();
            assert_eq!(got, want, "{ids:?}");
        }
    }

    #[test]
    fn the_window_holds_its_limit_and_no_more() {
        let mut window = Dedupe::new(DEDUPE_WINDOW);
        for id in 0..DEDUPE_WINDOW as u64 {
            assert!(window.first_time(id));
        }
        assert_eq!(window.len(), DEDUPE_WINDOW);
        // At the limit, the oldest is still remembered...
        assert!(!window.first_time(0));
        // ...and one past it pushes the oldest out.
        assert!(window.first_time(DEDUPE_WINDOW as u64));
        assert_eq!(window.len(), DEDUPE_WINDOW);
        assert!(window.first_time(0), "id 0 left the window");
        assert!(!window.first_time(2), "id 2 is still in it");
    }

    #[test]
    fn a_forgotten_id_is_taken_again() {
        let mut window = Dedupe::new(3);
        assert!(window.first_time(1));
        assert!(window.first_time(2));
        window.forget(2);
        window.forget(99); // never seen: nothing happens
        assert_eq!(window.len(), 1);
        assert!(window.first_time(2));
        assert!(!window.first_time(2));
        // The queue and the set stay in step: 4 pushes 1 out, then 1 pushes 2 out.
        assert!(window.first_time(3));
        assert!(window.first_time(4));
        assert!(window.first_time(1));
        assert!(!window.first_time(4));
    }

    #[test]
    fn a_zero_window_still_holds_the_latest_id() {
        let mut window = Dedupe::new(0);
        assert!(window.first_time(1));
        assert!(!window.first_time(1));
        assert!(window.first_time(2));
        assert!(window.first_time(1));
    }
}
