//! Minimal JSON for message bodies: decode one top-level object, encode
//! objects of string pairs.
//!
//! This module owns the wire format of request and response bodies. Peers are
//! Go programs using `encoding/json`, so key lookup and string escaping follow
//! Go's rules. Top-level members are kept (strings, numbers, literals); nested
//! arrays and objects are fully validated but their contents are discarded.
//!
//! It must never do I/O, never recurse on input (nesting is tracked with an
//! explicit stack, so any depth is safe even on a small thread stack), never
//! panic on any input, and always run in time linear in the input length.
//!
//! # Examples
//!
//! ```
//! use message_broker::json::{encode_object, parse_object};
//!
//! let body = encode_object(&[("data", "MyData"), ("Topic", "hello/world")]);
//! let object = parse_object(body.as_bytes()).unwrap();
//! assert_eq!(object.get("topic").and_then(|v| v.as_str()), Some("hello/world"));
//! ```

mod decode;
mod encode;
mod error;

pub use decode::parse_object;
pub use encode::{encode_object, write_string};
pub use error::{JsonError, JsonErrorKind};

/// A decoded JSON value. Nested arrays/objects are validated and skipped,
/// their contents not kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string, with all escapes decoded.
    String(String),
    /// A number: the raw literal text, validated against the RFC 8259 grammar.
    Number(String),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An array (validated, contents not kept).
    Array,
    /// A nested object (validated, contents not kept).
    Object,
}

impl Value {
    /// Returns the text of a [`Value::String`], `None` for any other kind.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Returns a [`Value::Number`] that is a non-negative integer literal
    /// (no fraction, no exponent) fitting in `u64`.
    ///
    /// # Examples
    ///
    /// ```
    /// use message_broker::json::Value;
    ///
    /// assert_eq!(Value::Number("10000".into()).as_u64(), Some(10000));
    /// assert_eq!(Value::Number("1e4".into()).as_u64(), None);
    /// assert_eq!(Value::Number("-1".into()).as_u64(), None);
    /// assert_eq!(Value::String("1".into()).as_u64(), None);
    /// ```
    pub fn as_u64(&self) -> Option<u64> {
        self.integer_literal()?.parse().ok()
    }

    /// Returns a [`Value::Number`] that is an integer literal (no fraction,
    /// no exponent) fitting in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.integer_literal()?.parse().ok()
    }

    /// The literal of a number made only of an optional `-` and digits.
    fn integer_literal(&self) -> Option<&str> {
        match self {
            Value::Number(n) if n.bytes().all(|b| b == b'-' || b.is_ascii_digit()) => Some(n),
            _ => None,
        }
    }
}

/// A table of the bytes that stop a scan of a string: the control
/// characters and `extra`.
const fn stop_table(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

/// A top-level JSON object: its keys in document order (duplicates kept).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Object {
    entries: Vec<(Key, Value)>,
}

/// A member's key: the protocol's own keys are not copied.
type Key = std::borrow::Cow<'static, str>;

/// Keys of the protocol's bodies, kept without an allocation when a body
/// spells them so (the Go client does).
const KNOWN_KEYS: [&str; 6] = ["data", "qos", "port", "retain", "Topic", "topic"];

/// `key` as a [`Key`].
fn key(key: std::borrow::Cow<'_, str>) -> Key {
    match KNOWN_KEYS.iter().find(|known| **known == key) {
        Some(known) => Key::Borrowed(known),
        None => Key::Owned(key.into_owned()),
    }
}

impl Object {
    /// Looks a key up with Go `encoding/json` semantics: keys match
    /// case-insensitively (ASCII case folding, plus Go's special folds
    /// U+017F 'ſ' == 's' and U+212A Kelvin sign == 'k'), and when several keys
    /// match, the last one in the document wins.
    ///
    /// Note that Go leaves a string field unchanged when its value is `null`;
    /// here the last match is returned as [`Value::Null`].
    ///
    /// # Examples
    ///
    /// ```
    /// use message_broker::json::parse_object;
    ///
    /// let object = parse_object(br#"{"Topic":"a","TOPIC":"b"}"#).unwrap();
    /// assert_eq!(object.get("topic").and_then(|v| v.as_str()), Some("b"));
    /// assert!(object.get("data").is_none());
    /// ```
    pub fn get(&self, key: &str) -> Option<&Value> {
        let mut newest_first = self.entries.iter().rev();
        newest_first
            .find(|(k, _)| keys_match(k, key))
            .map(|(_, value)| value)
    }

    /// Like [`Object::get`], but moves the value out (leaving `Null`), to
    /// spare a copy of a large string.
    ///
    /// ```
    /// use message_broker::json::{parse_object, Value};
    ///
    /// let mut object = parse_object(br#"{"data":"x"}"#).unwrap();
    /// assert_eq!(object.take("DATA"), Some(Value::String("x".into())));
    /// ```
    pub fn take(&mut self, key: &str) -> Option<Value> {
        let mut newest_first = self.entries.iter_mut().rev();
        newest_first
            .find(|(k, _)| keys_match(k, key))
            .map(|(_, value)| std::mem::replace(value, Value::Null))
    }

    /// Like [`Object::get`], but only returns string values.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// Number of members, duplicates included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the object has no members.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Iterates over the members in document order, duplicates included.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

/// Go's key folding for ASCII field names: ASCII case plus 'ſ' and 'K'.
fn fold(c: char) -> char {
    match c {
        '\u{17F}' => 's',
        '\u{212A}' => 'k',
        _ => c.to_ascii_lowercase(),
    }
}

fn keys_match(a: &str, b: &str) -> bool {
    a.chars().map(fold).eq(b.chars().map(fold))
}

#[cfg(test)]
mod tests;
