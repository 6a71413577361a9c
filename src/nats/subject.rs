//! Topics and patterns as NATS subjects, and back (PROTOCOL.md section 6.7).
//!
//! **Owns:** the subject encoding: topic `a/b` is subject `mb.a.b`, one
//! token per level, every byte of a level outside `A-Z a-z 0-9 - _` written
//! `%XX` (upper-case hex) and an empty level written `%`, so that `.`, `*`,
//! `>`, whitespace and `%` never reach NATS as themselves. Patterns map `+`
//! to `*` and a last `#` to `>`.
//!
//! **Must never:** hand back a topic that `crate::pattern::validate_topic`
//! refuses, or one whose levels differ from the subject's tokens (a decoded
//! `/` is refused), whatever a NATS client published.

use std::fmt;

use crate::pattern;

/// Prefix of every subject the broker uses.
pub(crate) const PREFIX: &str = "mb";

/// The token of an empty level: `%` alone is never an escape.
const EMPTY_LEVEL: &str = "%";

/// Upper-case hex digits of the `%XX` escape.
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Topic `a/b` -> subject `mb.a.b`. Each level is one token; in a level
/// every byte outside `A-Z a-z 0-9 - _` is `%XX` (upper-case hex), an empty
/// level is the token `%`.
///
/// The topic is expected to be valid; any string gets a subject that
/// [`topic_of`] decodes back to it.
pub(crate) fn subject_of(topic: &str) -> String {
    let mut out = String::with_capacity(PREFIX.len() + 1 + topic.len() * 3);
    out.push_str(PREFIX);
    for level in topic.split('/') {
        out.push('.');
        push_level(&mut out, level);
    }
    out
}

/// The NATS subjects to subscribe for a (valid) subscription pattern: `+`
/// level -> `*`, last level `#` -> `>`; `a/#` gives BOTH `mb.a.>` and `mb.a`
/// (MQTT's `#` also matches the parent); a pattern that is just `#` gives
/// only `mb.>`. Literal levels encoded as in [`subject_of`].
///
/// A `#` that is not the last level (an invalid pattern) is encoded as a
/// literal level.
pub(crate) fn subjects_of_pattern(pattern: &str) -> Vec<String> {
    let mut subject = String::with_capacity(PREFIX.len() + 1 + pattern.len() * 3);
    subject.push_str(PREFIX);
    let mut levels = pattern.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if last && level == "#" {
            // `mb.a.>` needs at least one more token; `mb.a` is the parent
            // that `#` also matches. `#` alone has no parent topic.
            let parent = (subject.len() > PREFIX.len()).then(|| subject.clone());
            subject.push_str(".>");
            return std::iter::once(subject).chain(parent).collect();
        }
        subject.push('.');
        if level == "+" {
            subject.push('*');
        } else {
            push_level(&mut subject, level);
        }
    }
    vec![subject]
}

/// Subject from NATS -> topic.
///
/// A token that is exactly `%` is the empty level; bytes of a token outside
/// the escaped set that are not `%` (`mb.ü`, `mb.a+b`, published by some
/// other NATS client) are taken literally; escapes take upper- or
/// lower-case hex.
///
/// # Errors
/// [`SubjectError::NotOurs`] if it does not start with `mb.`;
/// [`SubjectError::BadEscape`] for a `%` not followed by two hex digits (or
/// an empty token, which NATS never delivers and which would alias `%`);
/// [`SubjectError::NotUtf8`] if the decoded bytes are not UTF-8;
/// [`SubjectError::SlashInLevel`] if a level decodes to a `/`;
/// [`SubjectError::InvalidTopic`] with the reason of
/// [`pattern::validate_topic`] (a level that is exactly `+` or `#`, control
/// characters).
pub(crate) fn topic_of(subject: &str) -> Result<String, SubjectError> {
    let tokens = subject
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or(SubjectError::NotOurs)?;
    let mut bytes = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.split('.').enumerate() {
        if i > 0 {
            bytes.push(b'/');
        }
        decode_token(token, &mut bytes)?;
    }
    let topic = String::from_utf8(bytes).map_err(|_| SubjectError::NotUtf8)?;
    pattern::validate_topic(&topic).map_err(SubjectError::InvalidTopic)?;
    Ok(topic)
}

/// Why a subject from NATS is not a topic (the bridge counts and drops it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubjectError {
    /// The subject does not start with `mb.`.
    NotOurs,
    /// A `%` not followed by two hex digits, or an empty token.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
    /// A level decodes to a `/`, which would change the topic's levels.
    SlashInLevel,
    /// The decoded topic is refused, with the reason.
    InvalidTopic(&'static str),
}

impl fmt::Display for SubjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectError::NotOurs => write!(f, "subject does not start with '{PREFIX}.'"),
            SubjectError::BadEscape => {
                f.write_str("bad escape in subject ('%' without two hex digits, or an empty token)")
            }
            SubjectError::NotUtf8 => f.write_str("subject does not decode to UTF-8"),
            SubjectError::SlashInLevel => f.write_str("subject token decodes to a '/'"),
            SubjectError::InvalidTopic(reason) => {
                write!(f, "subject is not a valid topic: {reason}")
            }
        }
    }
}

impl std::error::Error for SubjectError {}

/// Whether a byte of a level goes into a subject as itself.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Appends one level as a subject token.
fn push_level(out: &mut String, level: &str) {
    if level.is_empty() {
        out.push_str(EMPTY_LEVEL);
        return;
    }
    for b in level.bytes() {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
}

/// Appends the bytes of the level a token stands for.
fn decode_token(token: &str, out: &mut Vec<u8>) -> Result<(), SubjectError> {
    if token == EMPTY_LEVEL {
        return Ok(());
    }
    if token.is_empty() {
        return Err(SubjectError::BadEscape);
    }
    let mut bytes = token.bytes();
    while let Some(b) = bytes.next() {
        let b = if b == b'%' {
            let hi = bytes.next().and_then(hex_value);
            let lo = bytes.next().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => (hi << 4) | lo,
                _ => return Err(SubjectError::BadEscape),
            }
        } else {
            b
        };
        if b == b'/' {
            return Err(SubjectError::SlashInLevel);
        }
        out.push(b);
    }
    Ok(())
}

/// The value of one hex digit, either case.
fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::{SubjectError, subject_of, subjects_of_pattern, topic_of};
    use crate::pattern::validate_topic;
    use crate::testutil::XorShift;

    #[test]
    fn round_trips() {
        let cases: &[(&str, &str)] = &[
            ("a", "mb.a"),
            ("a/b", "mb.a.b"),
            ("hello/world", "mb.hello.world"),
            ("A-Z_09", "mb.A-Z_09"),
            ("a.b", "mb.a%2Eb"),
            ("*", "mb.%2A"),
            (">", "mb.%3E"),
            ("a/*/>", "mb.a.%2A.%3E"),
            ("with space", "mb.with%20space"),
            ("100%", "mb.100%25"),
            ("%", "mb.%25"),
            ("a//b", "mb.a.%.b"),
            ("/a", "mb.%.a"),
            ("a/", "mb.a.%"),
            ("/", "mb.%.%"),
            ("//", "mb.%.%.%"),
            ("ü", "mb.%C3%BC"),
            ("日本/語", "mb.%E6%97%A5%E6%9C%AC.%E8%AA%9E"),
            ("a+b/#1", "mb.a%2Bb.%231"),
            ("$SYS/x", "mb.%24SYS.x"),
            ("mb", "mb.mb"),
        ];
        for &(topic, subject) in cases {
            assert_eq!(subject_of(topic), subject, "{topic:?}");
            assert_eq!(topic_of(subject), Ok(topic.to_owned()), "{subject:?}");
        }
    }

    #[test]
    fn decoding_is_lenient_where_it_is_unambiguous() {
        let cases: &[(&str, &str)] = &[
            ("mb.%c3%bc", "ü"),
            ("mb.%e6%97%A5", "日"),
            ("mb.ü", "ü"),
            ("mb.a+b", "a+b"),
            ("mb.a b", "a b"),
            ("mb.a#.$x", "a#/$x"),
            ("mb.*", "*"),
            ("mb.a.>", "a/>"),
        ];
        for &(subject, topic) in cases {
            assert_eq!(topic_of(subject), Ok(topic.to_owned()), "{subject:?}");
        }
    }

    #[test]
    fn decode_errors() {
        use SubjectError::*;
        let wild = InvalidTopic("a topic level may not be '+' or '#'");
        let control = InvalidTopic("control character in topic");
        let cases: &[(&str, SubjectError)] = &[
            ("", NotOurs),
            ("mb", NotOurs),
            ("mbx.a", NotOurs),
            ("MB.a", NotOurs),
            ("other.a", NotOurs),
            (".mb.a", NotOurs),
            ("mb.", BadEscape),
            ("mb.a..b", BadEscape),
            ("mb.a.", BadEscape),
            ("mb.%%", BadEscape),
            ("mb.%2", BadEscape),
            ("mb.a%", BadEscape),
            ("mb.%G1", BadEscape),
            ("mb.%1G", BadEscape),
            ("mb.%+1", BadEscape),
            ("mb.%ü", BadEscape),
            ("mb.%C3", NotUtf8),
            ("mb.%FF", NotUtf8),
            ("mb.%C3.%BC", NotUtf8),
            ("mb.%2F", SlashInLevel),
            ("mb.a%2fb", SlashInLevel),
            ("mb.a/b", SlashInLevel),
            ("mb.%2B", wild.clone()),
            ("mb.a.%23", wild.clone()),
            ("mb.+", wild.clone()),
            ("mb.a.#", wild),
            ("mb.%00", control.clone()),
            ("mb.a%0Ab", control.clone()),
            ("mb.%7F", control),
        ];
        for (subject, expected) in cases {
            assert_eq!(topic_of(subject).as_ref(), Err(expected), "{subject:?}");
        }
    }

    #[test]
    fn patterns() {
        let cases: &[(&str, &[&str])] = &[
            ("a", &["mb.a"]),
            ("a/b", &["mb.a.b"]),
            ("+", &["mb.*"]),
            ("#", &["mb.>"]),
            ("a/#", &["mb.a.>", "mb.a"]),
            ("a/+", &["mb.a.*"]),
            ("+/#", &["mb.*.>", "mb.*"]),
            ("a/+/c/#", &["mb.a.*.c.>", "mb.a.*.c"]),
            ("/#", &["mb.%.>", "mb.%"]),
            ("+/", &["mb.*.%"]),
            ("a//b", &["mb.a.%.b"]),
            ("a.b/*/>", &["mb.a%2Eb.%2A.%3E"]),
            ("ü/+", &["mb.%C3%BC.*"]),
            ("a+/b#", &["mb.a%2B.b%23"]),
            ("#/a", &["mb.%23.a"]),
        ];
        for &(pattern, subjects) in cases {
            assert_eq!(subjects_of_pattern(pattern), subjects, "{pattern:?}");
        }
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            SubjectError::NotOurs.to_string(),
            "subject does not start with 'mb.'"
        );
        assert_eq!(
            SubjectError::InvalidTopic("empty topic").to_string(),
            "subject is not a valid topic: empty topic"
        );
    }

    /// Generated topics over an alphabet of special and multibyte characters
    /// come back from their subject, whose tokens are all plain.
    #[test]
    fn generated_topics_round_trip() {
        const ALPHABET: &[&str] = &[
            "a", "Z", "0", "-", "_", ".", "*", ">", " ", "%", "/", "/", "+", "#", "$", "ü", "日",
            "😀", "%2F", "\u{7f}",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut checked = 0;
        for _ in 0..5_000 {
            let len = 1 + rng.below(12);
            let topic: String = (0..len)
                .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                .collect();
            let subject = subject_of(&topic);
            let tokens = subject.strip_prefix("mb.").expect("prefix");
            assert_eq!(
                tokens.split('.').count(),
                topic.split('/').count(),
                "{topic:?}"
            );
            for token in tokens.split('.') {
                assert!(!token.is_empty(), "{topic:?}");
                let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_%".contains(&b);
                assert!(token.bytes().all(plain), "{topic:?} -> {subject:?}");
            }
            match validate_topic(&topic) {
                Ok(()) => {
                    checked += 1;
                    assert_eq!(topic_of(&subject), Ok(topic.clone()), "{topic:?}");
                }
                Err(reason) => {
                    assert_eq!(topic_of(&subject), Err(SubjectError::InvalidTopic(reason)));
                }
            }
        }
        assert!(checked > 2_000, "{checked}");
    }
}
