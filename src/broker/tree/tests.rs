//! The tree against `pattern::matches`: the shared table, random patterns and
//! topics, pruning, and what a match costs with many patterns.

use super::Tree;
use crate::pattern::{CASES, matches};
use std::collections::BTreeSet;

/// The values of every pattern that matches `topic`, sorted.
fn matched(tree: &Tree<u32>, topic: &str) -> Vec<u32> {
    let mut got = Vec::new();
    tree.for_each_match(topic, |v| {
        assert!(!v.is_empty(), "an empty slice visited for {topic:?}");
        got.extend_from_slice(v);
    });
    got.sort_unstable();
    got
}

/// A deterministic xorshift64 generator: `next(n)` is in `0..n`.
fn rng(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}

#[test]
fn every_case_of_the_pattern_table() {
    for &(pattern, topic, want) in CASES {
        let mut tree = Tree::default();
        tree.entry(pattern).push(1);
        assert_eq!(tree.get(pattern), Some(&[1][..]), "{pattern:?}");
        assert_eq!(tree.len(), 1);
        let listed: Vec<String> = tree.iter().map(|(p, _)| p).collect();
        assert_eq!(listed, [pattern], "rebuilt from its levels");
        let mut visits = 0;
        tree.for_each_match(topic, |_| visits += 1);
        assert_eq!(visits, usize::from(want), "{pattern:?} vs {topic:?}");
    }
}

/// Random patterns from `levels` (and `#` last, a third of the time) against
/// random topics from `topic_levels`: the tree finds what a scan of every
/// pattern with `matches` finds, before and after removing half of them.
fn cross_check(seed: u64, levels: &[&str], topic_levels: &[&str]) {
    let mut next = rng(seed);
    let mut patterns: Vec<String> = vec!["#".into()];
    for _ in 0..400 {
        let depth = 1 + next(4);
        let mut p: Vec<&str> = (0..depth).map(|_| levels[next(levels.len())]).collect();
        if next(3) == 0 {
            p.push("#");
        }
        patterns.push(p.join("/"));
    }
    let mut tree = Tree::default();
    for (i, p) in patterns.iter().enumerate() {
        tree.entry(p).push(i as u32);
    }
    let mut live: Vec<bool> = vec![true; patterns.len()];
    for round in 0..2 {
        for _ in 0..1500 {
            let depth = 1 + next(6);
            let topic: Vec<&str> = (0..depth)
                .map(|_| topic_levels[next(topic_levels.len())])
                .collect();
            let topic = topic.join("/");
            let want: Vec<u32> = (0..patterns.len())
                .filter(|&i| live[i] && matches(&patterns[i], &topic))
                .map(|i| i as u32)
                .collect();
            assert_eq!(matched(&tree, &topic), want, "round {round}: {topic:?}");
        }
        let distinct: BTreeSet<&str> = (0..patterns.len())
            .filter(|&i| live[i])
            .map(|i| patterns[i].as_str())
            .collect();
        let listed: BTreeSet<String> = tree.iter().map(|(p, _)| p).collect();
        assert_eq!(listed.len(), distinct.len(), "each pattern listed once");
        assert!(distinct.iter().all(|p| listed.contains(*p)));
        assert_eq!(tree.len(), distinct.len());
        for i in 0..patterns.len() {
            if live[i] && next(2) == 0 {
                assert_eq!(tree.remove_if(&patterns[i], |&v| v == i as u32), 1);
                live[i] = false;
            }
        }
    }
    for p in &patterns {
        tree.remove_if(p, |_| true);
    }
    assert_eq!((tree.len(), tree.nodes()), (0, 0), "nothing left behind");
    assert!(tree.is_empty() && tree.iter().next().is_none());
}

#[test]
fn agrees_with_brute_force_matching() {
    cross_check(
        0x2545_f491_4f6c_dd1d,
        &["a", "b", "", "+"],
        &["a", "b", "", "c"],
    );
    cross_check(0x9e37_79b9_7f4a_7c15, &["a", "+"], &["a", "b"]);
}

#[test]
fn agrees_on_invalid_patterns_and_topics_too() {
    // Not reachable through the broker; the fallback of `matches` (a
    // misplaced `#`, or `+` inside a level, is plain text) holds here too.
    let odd = ["a", "", "+", "#", "a+", "#a"];
    cross_check(0x0123_4567_89ab_cdef, &odd, &odd);
    let mut tree = Tree::default();
    for (i, p) in ["", "/", "#/#", "a/#/b", "+/", "//#"].iter().enumerate() {
        tree.entry(p).push(i as u32);
        assert_eq!(tree.get(p), Some(&[i as u32][..]));
    }
    assert_eq!(matched(&tree, ""), [0]);
    assert_eq!(matched(&tree, "/"), [1, 4, 5]);
    assert_eq!(matched(&tree, "#/x"), [2]);
}

#[test]
fn removal_prunes_back_to_nothing() {
    let mut tree = Tree::default();
    tree.entry("a/b/c").push(1);
    tree.entry("a/b").push(2);
    tree.entry("a/#").push(3);
    tree.entry("a/b/c").push(4);
    assert_eq!((tree.len(), tree.nodes()), (3, 3), "a, b, c");
    assert_eq!(tree.get("a/b/c"), Some(&[1, 4][..]));
    assert_eq!(tree.remove_if("a/b/c", |&v| v == 1), 1);
    assert_eq!((tree.len(), tree.nodes()), (3, 3), "4 is still there");
    assert_eq!(tree.remove_if("a/b/c", |_| false), 0);
    assert_eq!(tree.remove_if("a/b/c", |_| true), 1);
    assert_eq!((tree.len(), tree.nodes()), (2, 2), "c went");
    assert_eq!(tree.remove_if("a/b/c", |_| true), 0, "already gone");
    assert_eq!(tree.remove_if("a/+/c", |_| true), 0, "never there");
    assert_eq!(tree.remove_if("a", |_| true), 0, "a holds only a/#");
    assert_eq!(tree.remove_if("a/b", |_| true), 1);
    assert_eq!((tree.len(), tree.nodes()), (1, 1), "a holds a/#");
    assert_eq!(tree.remove_if("a/#", |_| true), 1);
    assert_eq!((tree.len(), tree.nodes()), (0, 0));
    assert!(tree.is_empty());

    tree.entry("#").push(1);
    tree.entry("+/+/#").push(2);
    assert_eq!(tree.nodes(), 2);
    tree.clear();
    assert_eq!((tree.len(), tree.nodes(), tree.get("#")), (0, 0, None));
}

#[test]
fn an_entry_counts_as_its_caller_leaves_it() {
    let mut tree: Tree<u32> = Tree::default();
    tree.entry("x/y");
    tree.entry("x/y");
    assert_eq!(tree.len(), 0, "opened, never filled");
    tree.entry("a").push(1);
    assert_eq!(tree.len(), 1);
    assert_eq!(tree.nodes(), 1, "x/y pruned on the next change");
    tree.entry("a").clear();
    assert_eq!(tree.len(), 0, "emptied by the caller");
    tree.entry("b").push(2);
    assert_eq!((tree.len(), tree.nodes()), (1, 1), "a pruned");
    tree.entry("b").push(3);
    assert_eq!(tree.len(), 1, "one pattern, two values");
}

#[test]
fn a_hundred_thousand_patterns_visit_only_the_matches() {
    let mut tree = Tree::default();
    for i in 0..100_000u32 {
        tree.entry(&format!("sensor/{i}/temp")).push(i);
    }
    for (i, p) in ["sensor/+/temp", "sensor/#", "#", "+/+/+/#"]
        .iter()
        .enumerate()
    {
        tree.entry(p).push(u32::MAX - i as u32);
    }
    assert_eq!(tree.len(), 100_004);
    let mut visits = 0;
    let looked = tree.walk("sensor/42/temp", |_| visits += 1);
    assert_eq!(visits, 5);
    assert!(looked <= 10, "looked at {looked} nodes");
    assert_eq!(matched(&tree, "sensor/42/temp")[0], 42);
    let mut visits = 0;
    let looked = tree.walk("other/42", |_| visits += 1);
    assert_eq!((visits, looked), (1, 3), "only #: root, + and +/+");
}

#[test]
fn deep_patterns_and_topics_fit_a_connection_thread() {
    // A request line of 8 KiB (the default limit) holds 4096 levels; walks
    // are iterative, so 256 KiB of stack (CONNECTION_STACK) is plenty.
    let deep = vec!["a"; 4096].join("/");
    let plus = vec!["+"; 4096].join("/");
    let run = move || {
        let mut tree = Tree::default();
        tree.entry(&deep).push(1u32);
        tree.entry(&plus).push(2);
        tree.entry(&format!("{plus}/#")).push(3);
        assert_eq!(matched(&tree, &deep), [1, 2, 3]);
        assert_eq!(tree.iter().count(), 3);
        assert_eq!(tree.remove_if(&deep, |_| true), 1);
        assert_eq!(tree.remove_if(&plus, |_| true), 1);
        assert_eq!(tree.remove_if(&format!("{plus}/#"), |_| true), 1);
        assert_eq!((tree.len(), tree.nodes()), (0, 0));
    };
    let thread = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(run);
    assert!(thread.expect("spawn").join().is_ok());
}

#[test]
fn matches_deeper_than_the_inline_steps() {
    // Every level both literal and `+`: the step stack spills to the heap.
    let mut tree = Tree::default();
    for depth in [1, 31, 32, 33, 64] {
        tree.entry(&vec!["a"; depth].join("/")).push(depth as u32);
        tree.entry(&vec!["+"; depth].join("/"))
            .push(1000 + depth as u32);
    }
    assert_eq!(matched(&tree, &vec!["a"; 33].join("/")), [33, 1033]);
    assert_eq!(matched(&tree, &vec!["b"; 64].join("/")), [1064]);
}
