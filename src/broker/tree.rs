//! A tree of topic levels holding values under subscription patterns
//! (PROTOCOL.md section 6.5), so that what matches a topic is found by walking
//! the topic's levels: the cost grows with the topic's depth and the branches
//! that match (a literal level, `+`, `#`), not with the number of patterns.
//!
//! Plain data: no locks, no I/O. Patterns are validated before they get here
//! (`crate::pattern`); any other string is stored without panicking, with a
//! misplaced `#` or `+` inside a level taken literally, as `pattern::matches`
//! does. No walk recurses: a pattern or topic can have thousands of levels
//! (one per `/` of a request line) and connection threads have small stacks.

use std::collections::HashMap;

/// Steps of a match kept on the call stack before spilling to the heap. A
/// match holds at most one step more than the topic has levels, so topics up
/// to this deep cost no allocation.
const INLINE_STEPS: usize = 32;

/// Values stored under subscription patterns, matched against topics.
#[derive(Debug)]
pub(crate) struct Tree<T> {
    root: Node<T>,
    /// Patterns with at least one value, the `opened` one counted as it was
    /// when it was handed out.
    len: usize,
    /// The pattern whose values [`Tree::entry`] handed out last, and whether
    /// it had any then: the caller may have changed them since, so the count
    /// is settled (and a node left empty pruned) on the next change.
    opened: Option<(String, bool)>,
}

/// One level of the tree: the levels patterns go on with, and the values of
/// the patterns that end here.
#[derive(Debug)]
struct Node<T> {
    /// Literal next levels (never exactly `+`). SipHash, as peers choose the
    /// keys.
    children: HashMap<Box<str>, Node<T>>,
    /// The next level `+`.
    plus: Option<Box<Node<T>>>,
    /// Values of the pattern made of this node's levels and a last `#`.
    hash: Vec<T>,
    /// Values of the pattern made of exactly this node's levels.
    values: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Node<T> {
        Node {
            children: HashMap::new(),
            plus: None,
            hash: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<T> Drop for Node<T> {
    /// Drops the nodes below one by one: the default drop recurses once per
    /// level, and a deep pattern would overflow a connection thread's stack.
    fn drop(&mut self) {
        let mut below: Vec<Node<T>> = self.children.drain().map(|(_, n)| n).collect();
        below.extend(self.plus.take().map(|n| *n));
        while let Some(mut node) = below.pop() {
            below.extend(node.children.drain().map(|(_, n)| n));
            below.extend(node.plus.take().map(|n| *n));
        }
    }
}

impl<T> Default for Tree<T> {
    fn default() -> Tree<T> {
        Tree {
            root: Node::default(),
            len: 0,
            opened: None,
        }
    }
}

impl<T> Node<T> {
    /// The next node for a pattern's `level`.
    fn child(&self, level: &str) -> Option<&Node<T>> {
        if level == "+" {
            self.plus.as_deref()
        } else {
            self.children.get(level)
        }
    }

    /// The next node for a pattern's `level`, to change.
    fn child_mut(&mut self, level: &str) -> Option<&mut Node<T>> {
        if level == "+" {
            self.plus.as_deref_mut()
        } else {
            self.children.get_mut(level)
        }
    }

    /// The next node for a pattern's `level`, made if missing.
    fn child_or_insert(&mut self, level: &str) -> &mut Node<T> {
        if level == "+" {
            self.plus.get_or_insert_with(Box::default)
        } else {
            self.children.entry(level.into()).or_default()
        }
    }

    /// How many next levels there are.
    fn fan_out(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some())
    }

    /// The values of the pattern ending here, with a last `#` or without.
    fn slot_mut(&mut self, hash: bool) -> &mut Vec<T> {
        if hash {
            &mut self.hash
        } else {
            &mut self.values
        }
    }
}

/// Splits `pattern` into the levels that lead to its node (`None`: the root)
/// and whether its values are the node's `hash` ones: a last `#` is where
/// the values live, not a level.
fn locate(pattern: &str) -> (Option<&str>, bool) {
    if pattern == "#" {
        (None, true)
    } else if let Some(path) = pattern.strip_suffix("/#") {
        (Some(path), true)
    } else {
        (Some(pattern), false)
    }
}

/// The levels of a path from [`locate`].
fn levels(path: Option<&str>) -> impl Iterator<Item = &str> {
    path.into_iter().flat_map(|p| p.split('/'))
}

impl<T> Tree<T> {
    /// The values under exactly `pattern` (the same string, not what it
    /// matches), creating the entry. One left empty is not counted, and its
    /// nodes are pruned on the next change.
    pub(crate) fn entry(&mut self, pattern: &str) -> &mut Vec<T> {
        self.settle();
        let (path, hash) = locate(pattern);
        let mut node = &mut self.root;
        for level in levels(path) {
            node = node.child_or_insert(level);
        }
        let values = node.slot_mut(hash);
        self.opened = Some((pattern.to_owned(), !values.is_empty()));
        values
    }

    /// The values under exactly `pattern`; `None` when there are none.
    pub(crate) fn get(&self, pattern: &str) -> Option<&[T]> {
        let (path, hash) = locate(pattern);
        let mut node = &self.root;
        for level in levels(path) {
            node = node.child(level)?;
        }
        let values = if hash { &node.hash } else { &node.values };
        (!values.is_empty()).then_some(values.as_slice())
    }

    /// Removes the values under exactly `pattern` for which `remove` is true;
    /// returns how many. Nodes left empty are pruned, so that memory does not
    /// grow with patterns that came and went.
    pub(crate) fn remove_if(&mut self, pattern: &str, mut remove: impl FnMut(&T) -> bool) -> usize {
        self.settle();
        let (path, hash) = locate(pattern);
        let mut node = &mut self.root;
        for level in levels(path) {
            let Some(next) = node.child_mut(level) else {
                return 0;
            };
            node = next;
        }
        let values = node.slot_mut(hash);
        let before = values.len();
        values.retain(|v| !remove(v));
        let removed = before - values.len();
        if removed > 0 && values.is_empty() {
            self.len -= 1;
            self.prune(pattern);
        }
        removed
    }

    /// Calls `visit` once per stored pattern that matches `topic`, with its
    /// values (never an empty slice). Allocates nothing unless the topic is
    /// deeper than [`INLINE_STEPS`] levels.
    pub(crate) fn for_each_match(&self, topic: &str, visit: impl FnMut(&[T])) {
        self.walk(topic, visit);
    }

    /// [`Tree::for_each_match`], returning how many nodes it looked at (so
    /// tests can check the cost without timing it).
    fn walk(&self, topic: &str, mut visit: impl FnMut(&[T])) -> usize {
        let mut steps = Steps::new((&self.root, Some(topic)));
        let mut looked = 0;
        while let Some((node, rest)) = steps.pop() {
            looked += 1;
            // `#` matches what is left, nothing included (`a/#` matches `a`).
            if !node.hash.is_empty() {
                visit(&node.hash);
            }
            let Some(rest) = rest else {
                if !node.values.is_empty() {
                    visit(&node.values);
                }
                continue;
            };
            let (level, tail) = match rest.split_once('/') {
                Some((level, tail)) => (level, Some(tail)),
                None => (rest, None),
            };
            if let Some(child) = node.children.get(level) {
                steps.push((child, tail));
            }
            if let Some(plus) = node.plus.as_deref() {
                steps.push((plus, tail));
            }
        }
        looked
    }

    /// Every pattern (rebuilt from its levels) with its values, for listings;
    /// in no set order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (String, &[T])> {
        let mut found = Vec::new();
        // Each node with its pattern so far (`None`: the root).
        let mut todo: Vec<(&Node<T>, Option<String>)> = vec![(&self.root, None)];
        while let Some((node, path)) = todo.pop() {
            let join = |level: &str| match &path {
                Some(path) => format!("{path}/{level}"),
                None => level.to_owned(),
            };
            if !node.hash.is_empty() {
                found.push((join("#"), node.hash.as_slice()));
            }
            for (level, child) in &node.children {
                todo.push((child, Some(join(level))));
            }
            if let Some(plus) = node.plus.as_deref() {
                todo.push((plus, Some(join("+"))));
            }
            // The root's `values` are no pattern's: every pattern has a level.
            if let Some(path) = path.filter(|_| !node.values.is_empty()) {
                found.push((path, node.values.as_slice()));
            }
        }
        found.into_iter()
    }

    /// Number of patterns with at least one value.
    pub(crate) fn len(&self) -> usize {
        match &self.opened {
            Some((pattern, had)) => {
                self.len + usize::from(self.get(pattern).is_some()) - usize::from(*had)
            }
            None => self.len,
        }
    }

    /// Whether no pattern has a value.
    #[allow(dead_code)] // `len`'s pair; routing has no use for it yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes everything.
    pub(crate) fn clear(&mut self) {
        *self = Tree::default();
    }

    /// Counts in the pattern [`Tree::entry`] handed out last, as its caller
    /// left it.
    fn settle(&mut self) {
        if let Some((pattern, had)) = self.opened.take() {
            let has = self.get(&pattern).is_some();
            self.len = self.len + usize::from(has) - usize::from(had);
            if !has {
                self.prune(&pattern);
            }
        }
    }

    /// Drops the nodes at the end of `pattern`'s path that hold nothing but
    /// the rest of that path, now that its values are gone.
    fn prune(&mut self, pattern: &str) {
        let (path, _) = locate(pattern);
        // The first level from which the path holds nothing else.
        let mut cut = None;
        let mut node = &self.root;
        for (depth, level) in levels(path).enumerate() {
            let Some(next) = node.child(level) else {
                return;
            };
            node = next;
            if !node.hash.is_empty() || !node.values.is_empty() || node.fan_out() > 1 {
                cut = None;
            } else if cut.is_none() {
                cut = Some(depth);
            }
        }
        // The last node must hold nothing at all (values made `cut` `None`).
        let Some(cut) = cut.filter(|_| node.fan_out() == 0) else {
            return;
        };
        let mut levels = levels(path);
        let mut parent = &mut self.root;
        for level in levels.by_ref().take(cut) {
            let Some(next) = parent.child_mut(level) else {
                return;
            };
            parent = next;
        }
        match levels.next() {
            Some("+") => parent.plus = None,
            Some(level) => drop(parent.children.remove(level)),
            None => {}
        }
    }

    /// How many nodes there are, the root aside.
    #[cfg(test)]
    fn nodes(&self) -> usize {
        let mut count = 0;
        let mut todo = vec![&self.root];
        while let Some(node) = todo.pop() {
            count += node.fan_out();
            todo.extend(node.children.values());
            todo.extend(node.plus.as_deref());
        }
        count
    }
}

/// What is left of a match: a node, and the topic levels it has yet to meet
/// (`None`: all met; `Some("")`: one empty level).
type Step<'a, T> = (&'a Node<T>, Option<&'a str>);

/// A stack of [`Step`]s, on the call stack up to [`INLINE_STEPS`], then on
/// the heap.
struct Steps<'a, T> {
    inline: [Step<'a, T>; INLINE_STEPS],
    heap: Vec<Step<'a, T>>,
    len: usize,
}

impl<'a, T> Steps<'a, T> {
    /// A stack holding `first`.
    fn new(first: Step<'a, T>) -> Steps<'a, T> {
        Steps {
            inline: [first; INLINE_STEPS],
            heap: Vec::new(),
            len: 1,
        }
    }

    /// Puts `step` on top.
    fn push(&mut self, step: Step<'a, T>) {
        if let Some(slot) = self.inline.get_mut(self.len) {
            *slot = step;
        } else {
            self.heap.push(step);
        }
        self.len += 1;
    }

    /// Takes the top step off.
    fn pop(&mut self) -> Option<Step<'a, T>> {
        self.len = self.len.checked_sub(1)?;
        match self.inline.get(self.len) {
            Some(step) => Some(*step),
            None => self.heap.pop(),
        }
    }
}

#[cfg(test)]
mod tests;
