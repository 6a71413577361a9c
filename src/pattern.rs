//! Subscription patterns (PROTOCOL.md section 6.5, after MQTT 3.1.1 section
//! 4.7): which patterns and publish topics are well formed, and whether a
//! pattern matches a topic. Pure string functions shared by the broker, its
//! store and the client; they never allocate, and never see a socket.
//!
//! A topic is `/`-separated levels, empty levels included (`a//b` has three).
//! In a pattern a level that is exactly `+` matches one level, and a last level
//! that is exactly `#` matches zero or more. Nothing else is special: matching
//! is byte for byte, so it is case-sensitive and `$` is an ordinary character.

use crate::topic;

/// Why a pattern with `+` inside a level is refused (a 400 body).
const PLUS_NOT_WHOLE: &str = "'+' must be a whole level";
/// Why a pattern with `#` inside a level, or not last, is refused.
const HASH_NOT_LAST: &str = "'#' must be the whole last level";
/// Why a publish topic with a wildcard level is refused.
const WILDCARD_IN_TOPIC: &str = "a topic level may not be '+' or '#'";

/// Checks a decoded subscription pattern: a valid topic name whose `+` levels
/// are whole levels and whose `#`, if any, is the whole last level. MQTT
/// refuses the other shapes rather than guess (is `a#` a prefix match?), and
/// so do we, so that what a client subscribes to means one thing everywhere.
///
/// # Errors
/// A short reason, suitable as a 400 body: the one from
/// [`topic::validate`], "'+' must be a whole level" or "'#' must be the whole
/// last level".
pub(crate) fn validate_pattern(pattern: &str) -> Result<(), &'static str> {
    topic::validate(pattern)?;
    let mut levels = pattern.split('/').peekable();
    while let Some(level) = levels.next() {
        if level != "+" && level.contains('+') {
            return Err(PLUS_NOT_WHOLE);
        }
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(HASH_NOT_LAST);
        }
    }
    Ok(())
}

/// Checks a decoded publish topic: a valid topic name with no level that is
/// exactly `+` or `#`. Such a message could never be told apart from a
/// pattern by a subscriber (and MQTT refuses it); `a+b` or `#1` are ordinary
/// levels, as they were for the Go original.
///
/// # Errors
/// A short reason, suitable as a 400 body: the one from
/// [`topic::validate`], or "a topic level may not be '+' or '#'".
pub(crate) fn validate_topic(topic: &str) -> Result<(), &'static str> {
    topic::validate(topic)?;
    if is_wildcard(topic) {
        return Err(WILDCARD_IN_TOPIC);
    }
    Ok(())
}

/// Whether any level of `pattern` is exactly `+` or `#`: a pattern without
/// one matches only the topic spelled the same, so callers can look it up
/// instead of scanning.
pub(crate) fn is_wildcard(pattern: &str) -> bool {
    pattern.split('/').any(|level| level == "+" || level == "#")
}

/// Whether `pattern` matches `topic`: a `+` level matches any one level (an
/// empty one too), a last `#` level matches zero or more levels (`a/#`
/// matches `a`), every other level matches itself byte for byte. Called on
/// every publish for every wildcard subscriber, so it does not allocate.
///
/// Both are expected to be valid ([`validate_pattern`], [`validate_topic`]);
/// for other input it still answers without panicking, comparing a `#` that
/// is not last, or `+` and `#` inside a level, as plain text.
pub(crate) fn matches(pattern: &str, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    let mut pattern_levels = pattern.split('/').peekable();
    while let Some(level) = pattern_levels.next() {
        if level == "#" && pattern_levels.peek().is_none() {
            return true; // whatever is left, nothing included
        }
        match topic_levels.next() {
            Some(t) if level == "+" || level == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// Pattern, topic, whether it matches: valid patterns and valid topics only
/// (so also the cases for the broker's tree of patterns).
#[cfg(test)]
pub(crate) const CASES: &[(&str, &str, bool)] = &[
    ("#", "a", true),
    ("#", "a/b", true),
    ("#", "/", true),
    ("#", "$SYS/x", true),
    ("a/#", "a", true),
    ("a/#", "a/b", true),
    ("a/#", "a/b/c", true),
    ("a/#", "a/", true),
    ("a/#", "a/b/c/d/e/f/g/h", true),
    ("a/#", "ab", false),
    ("a/#", "b/a", false),
    ("a/#", "b", false),
    ("+", "a", true),
    ("+", "a/b", false),
    ("+", "/", false),
    ("+/+", "a/b", true),
    ("+/+", "/", true),
    ("+/+", "a", false),
    ("+/+", "a/b/c", false),
    ("+/+/+", "//", true),
    ("/+", "/a", true),
    ("/+", "/", true),
    ("/+", "a/", false),
    ("+/", "a/", true),
    ("+/", "/", true),
    ("+/", "/a", false),
    ("a/+/c", "a/b/c", true),
    ("a/+/c", "a//c", true),
    ("a/+/c", "a/b/d", false),
    ("a/+/c", "a/c", false),
    ("+/#", "a", true),
    ("+/#", "a/b/c", true),
    ("+/#", "/", true),
    ("/#", "/", true),
    ("/#", "/x/y", true),
    ("/#", "a", false),
    ("a/b/#", "a/b", true),
    ("a/b/#", "a", false),
    ("a/+/#", "a/b", true),
    ("a/+/#", "a", false),
    ("a//b", "a//b", true),
    ("a//b", "a/b", false),
    ("a//b", "a///b", false),
    ("a/+/b", "a//b", true),
    ("a/+", "a/", true),
    ("a/+", "a", false),
    ("a", "a", true),
    ("a", "b", false),
    ("a", "a/b", false),
    ("a", "a/", false),
    ("a/b", "a", false),
    ("a/b", "a/b", true),
    ("A", "a", false),
    ("a/B", "a/b", false),
    ("a/+", "A/b", false),
    ("$SYS/#", "$SYS/x", true),
    ("$SYS/#", "SYS/x", false),
    ("+/x", "$SYS/x", true),
    ("ü/+", "ü/ñ", true),
    ("ü/+", "u/ñ", false),
    ("日本/#", "日本/語/x", true),
    ("a b/+", "a b/c d", true),
    ("x/+", "x/a+b", true),
    ("x/+", "x/#1", true),
    ("a/+/#", "a/b/c/d", true),
];

#[cfg(test)]
mod tests {
    use super::{CASES, is_wildcard, matches, validate_pattern, validate_topic};

    #[test]
    fn matching_table() {
        for &(pattern, topic, expected) in CASES {
            assert_eq!(matches(pattern, topic), expected, "{pattern:?} {topic:?}");
        }
    }

    #[test]
    fn the_table_holds_valid_patterns_and_topics_only() {
        assert!(CASES.len() >= 40);
        for &(pattern, topic, _) in CASES {
            assert_eq!(validate_pattern(pattern), Ok(()), "{pattern:?}");
            assert_eq!(validate_topic(topic), Ok(()), "{topic:?}");
        }
    }

    #[test]
    fn patterns() {
        const PLUS: Result<(), &str> = Err("'+' must be a whole level");
        const HASH: Result<(), &str> = Err("'#' must be the whole last level");
        let cases: &[(&str, Result<(), &str>)] = &[
            ("a", Ok(())),
            ("a/b", Ok(())),
            ("+", Ok(())),
            ("#", Ok(())),
            ("a/+", Ok(())),
            ("a/#", Ok(())),
            ("+/#", Ok(())),
            ("+/+", Ok(())),
            ("/+", Ok(())),
            ("+/", Ok(())),
            ("/#", Ok(())),
            ("//", Ok(())),
            ("a//b", Ok(())),
            ("$SYS/#", Ok(())),
            ("ünï/+/код", Ok(())),
            ("a/+/c/#", Ok(())),
            ("a b/+", Ok(())),
            ("", Err("empty topic")),
            ("a\0/+", Err("control character in topic")),
            ("tab\t/#", Err("control character in topic")),
            ("a+", PLUS),
            ("+a", PLUS),
            ("a/b+", PLUS),
            ("++", PLUS),
            ("a/+b/c", PLUS),
            ("a+#", PLUS),
            ("a#", HASH),
            ("#a", HASH),
            ("a/#b", HASH),
            ("##", HASH),
            ("#/a", HASH),
            ("a/#/b", HASH),
            ("#/#", HASH),
            ("a/#/", HASH),
            ("#/", HASH),
        ];
        for (pattern, expected) in cases {
            assert_eq!(validate_pattern(pattern), *expected, "{pattern:?}");
        }
    }

    #[test]
    fn topics() {
        const WILD: Result<(), &str> = Err("a topic level may not be '+' or '#'");
        let cases: &[(&str, Result<(), &str>)] = &[
            ("a", Ok(())),
            ("a/b", Ok(())),
            ("a+b", Ok(())),
            ("a#b", Ok(())),
            ("+a", Ok(())),
            ("#a/b", Ok(())),
            ("a/++", Ok(())),
            ("a/##", Ok(())),
            ("a/b+/c", Ok(())),
            ("/", Ok(())),
            ("a/", Ok(())),
            ("a//b", Ok(())),
            ("$SYS/x", Ok(())),
            ("ü/ñ", Ok(())),
            ("with space", Ok(())),
            ("", Err("empty topic")),
            ("a\0", Err("control character in topic")),
            ("x/\u{7f}", Err("control character in topic")),
            ("\n", Err("control character in topic")),
            ("+", WILD),
            ("#", WILD),
            ("a/+", WILD),
            ("a/#", WILD),
            ("+/a", WILD),
            ("#/a", WILD),
            ("a/+/b", WILD),
            ("/+", WILD),
            ("#/", WILD),
            ("+/+", WILD),
            ("a//#", WILD),
        ];
        for (topic, expected) in cases {
            assert_eq!(validate_topic(topic), *expected, "{topic:?}");
        }
    }

    #[test]
    fn wildcards() {
        for (pattern, wild) in [
            ("a/b", false),
            ("a+b/c#", false),
            ("+", true),
            ("#", true),
            ("a/+/b", true),
            ("a/#", true),
            ("/+", true),
        ] {
            assert_eq!(is_wildcard(pattern), wild, "{pattern:?}");
        }
    }

    #[test]
    fn invalid_input_is_answered_not_panicked_on() {
        // Not reachable through the broker (validation comes first); these
        // pin down the documented fallback: a misplaced `#` is plain text.
        assert!(!matches("#/a", "b/a"));
        assert!(matches("#/a", "#/a"));
        assert!(matches("a#", "a#"));
        assert!(!matches("a#", "a/b"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
        assert!(matches("+", ""));
    }
}
