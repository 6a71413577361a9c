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

use std::borrow::Cow;
use std::fmt;

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

/// A top-level JSON object: its keys in document order (duplicates kept).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Object {
    entries: Vec<(String, Value)>,
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
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
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

/// Parse error: the byte offset where it was detected plus what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    offset: usize,
    kind: JsonErrorKind,
}

impl JsonError {
    fn new(offset: usize, kind: JsonErrorKind) -> Self {
        Self { offset, kind }
    }

    /// Byte offset into the input at which the error was detected.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What went wrong.
    pub fn kind(&self) -> JsonErrorKind {
        self.kind
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.offset, self.kind)
    }
}

impl std::error::Error for JsonError {}

/// The kinds of [`JsonError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// The input is empty or only whitespace.
    Empty,
    /// The top-level value is valid JSON-looking but not an object.
    NotAnObject,
    /// The input ends in the middle of a value.
    UnexpectedEnd,
    /// A byte that cannot appear at this position.
    UnexpectedByte(u8),
    /// An object member does not start with a string key.
    ExpectedKey,
    /// An object key is not followed by `:`.
    ExpectedColon,
    /// A `,` directly followed by `}` or `]`.
    TrailingComma,
    /// A backslash escape that JSON does not define, or bad `\u` hex digits.
    InvalidEscape,
    /// A `\u` escape forming a lone or mismatched UTF-16 surrogate.
    InvalidUnicodeEscape,
    /// The input is not valid UTF-8.
    InvalidUtf8,
    /// A raw control character (below U+0020) inside a string.
    ControlCharacterInString,
    /// A number that does not follow the JSON grammar.
    InvalidNumber,
    /// A misspelled `true`, `false` or `null`.
    InvalidLiteral,
    /// Something other than whitespace after the top-level object.
    TrailingData,
}

impl fmt::Display for JsonErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::Empty => "empty input",
            Self::NotAnObject => "top-level value is not an object",
            Self::UnexpectedEnd => "unexpected end of input",
            Self::UnexpectedByte(b) if b.is_ascii_graphic() => {
                return write!(f, "unexpected character '{}'", char::from(*b));
            }
            Self::UnexpectedByte(b) => return write!(f, "unexpected byte 0x{b:02x}"),
            Self::ExpectedKey => "expected a string key",
            Self::ExpectedColon => "expected ':' after object key",
            Self::TrailingComma => "trailing comma",
            Self::InvalidEscape => "invalid escape sequence",
            Self::InvalidUnicodeEscape => "invalid unicode escape (lone or mismatched surrogate)",
            Self::InvalidUtf8 => "invalid UTF-8",
            Self::ControlCharacterInString => "control character in string",
            Self::InvalidNumber => "invalid number",
            Self::InvalidLiteral => "invalid literal",
            Self::TrailingData => "unexpected data after the object",
        };
        f.write_str(text)
    }
}

/// Parses `input` as exactly one JSON object (RFC 8259), with optional
/// whitespace around it.
///
/// # Errors
///
/// Returns a [`JsonError`] with the byte offset and [`JsonErrorKind`] when the
/// input is not valid UTF-8, is empty, is not an object at the top level,
/// contains any syntax error (also inside nested values, which are validated
/// but not kept), or has anything but whitespace after the object.
///
/// # Examples
///
/// ```
/// use message_broker::json::{parse_object, JsonErrorKind, Value};
///
/// let object = parse_object(br#"{"data":"MyData","qos":0}"#).unwrap();
/// assert_eq!(object.get("data"), Some(&Value::String("MyData".into())));
/// assert_eq!(object.get("qos").and_then(Value::as_u64), Some(0));
///
/// let err = parse_object(br#"{"qos":0,}"#).unwrap_err();
/// assert_eq!((err.offset(), err.kind()), (9, JsonErrorKind::TrailingComma));
/// ```
pub fn parse_object(input: &[u8]) -> Result<Object, JsonError> {
    let src = std::str::from_utf8(input)
        .map_err(|e| JsonError::new(e.valid_up_to(), JsonErrorKind::InvalidUtf8))?;
    let mut parser = Parser { src, pos: 0 };
    parser.skip_ws();
    match parser.peek() {
        Some(b'{') => parser.pos += 1,
        None => return Err(parser.err(JsonErrorKind::Empty)),
        Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            return Err(parser.err(JsonErrorKind::NotAnObject));
        }
        Some(b) => return Err(parser.err(JsonErrorKind::UnexpectedByte(b))),
    }
    let object = parser.top_object()?;
    parser.skip_ws();
    if parser.pos < src.len() {
        return Err(parser.err(JsonErrorKind::TrailingData));
    }
    Ok(object)
}

/// Cursor over validated UTF-8 input; `pos` never exceeds `src.len()`.
/// Slices are only cut next to ASCII bytes, so always on char boundaries.
struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &'a [u8] {
        self.src.as_bytes().get(self.pos..).unwrap_or_default()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    fn err(&self, kind: JsonErrorKind) -> JsonError {
        JsonError::new(self.pos, kind)
    }

    /// The error for the byte under the cursor being wrong here.
    fn unexpected(&self) -> JsonError {
        match self.peek() {
            Some(b) => self.err(JsonErrorKind::UnexpectedByte(b)),
            None => self.err(JsonErrorKind::UnexpectedEnd),
        }
    }

    /// `kind`, or `UnexpectedEnd` when the input has run out.
    fn err_or_end(&self, kind: JsonErrorKind) -> JsonError {
        match self.peek() {
            Some(_) => self.err(kind),
            None => self.err(JsonErrorKind::UnexpectedEnd),
        }
    }

    fn slice(&self, start: usize, end: usize) -> Result<&'a str, JsonError> {
        let slice = self.src.get(start..end);
        slice.ok_or_else(|| JsonError::new(start, JsonErrorKind::InvalidUtf8))
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Members of the top-level object, after its `{`, through its `}`.
    fn top_object(&mut self) -> Result<Object, JsonError> {
        let mut entries = Vec::new();
        self.skip_ws();
        if self.eat(b'}') {
            return Ok(Object { entries });
        }
        loop {
            let key = self.member_key()?;
            let value = self.value()?;
            entries.push((key.into_owned(), value));
            self.skip_ws();
            if self.eat(b',') {
                self.after_comma(b'}')?;
            } else if self.eat(b'}') {
                return Ok(Object { entries });
            } else {
                return Err(self.unexpected());
            }
        }
    }

    /// Parses `"key"`, the `:` and surrounding whitespace; stops at the value.
    fn member_key(&mut self) -> Result<Cow<'a, str>, JsonError> {
        if !self.eat(b'"') {
            return Err(self.err_or_end(JsonErrorKind::ExpectedKey));
        }
        let key = self.string_body()?;
        self.skip_ws();
        if !self.eat(b':') {
            return Err(self.err_or_end(JsonErrorKind::ExpectedColon));
        }
        self.skip_ws();
        Ok(key)
    }

    /// After a `,`: skips whitespace and rejects a trailing comma before `close`.
    fn after_comma(&mut self, close: u8) -> Result<(), JsonError> {
        self.skip_ws();
        if self.peek() == Some(close) {
            return Err(self.err(JsonErrorKind::TrailingComma));
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Value, JsonError> {
        match self.peek() {
            Some(b'{') => self.skip_nested().map(|()| Value::Object),
            Some(b'[') => self.skip_nested().map(|()| Value::Array),
            _ => self.scalar(),
        }
    }

    fn scalar(&mut self) -> Result<Value, JsonError> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                Ok(Value::String(self.string_body()?.into_owned()))
            }
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.unexpected()),
        }
    }

    /// Validates and skips one array or object without recursion: `open`
    /// holds the closing bracket of every container entered so far.
    fn skip_nested(&mut self) -> Result<(), JsonError> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            let element_pending = match self.peek() {
                Some(b'[' | b'{') => self.open_container(&mut open)?,
                Some(b'"') => {
                    self.pos += 1;
                    self.string_body()?;
                    false
                }
                _ => self.scalar().map(|_| false)?,
            };
            if !element_pending && self.close_containers(&mut open)? {
                return Ok(());
            }
        }
    }

    /// Enters the container under the cursor. Returns `true` when it is
    /// non-empty and the cursor now sits at its first element's value.
    fn open_container(&mut self, open: &mut Vec<u8>) -> Result<bool, JsonError> {
        let close = if self.peek() == Some(b'[') {
            b']'
        } else {
            b'}'
        };
        self.pos += 1;
        self.skip_ws();
        if self.eat(close) {
            return Ok(false);
        }
        open.push(close);
        if close == b'}' {
            self.member_key()?;
        }
        Ok(true)
    }

    /// After a complete value: closes finished containers or moves to the
    /// next element's value. Returns `true` once the outermost one is closed.
    fn close_containers(&mut self, open: &mut Vec<u8>) -> Result<bool, JsonError> {
        while let Some(&close) = open.last() {
            self.skip_ws();
            if self.eat(close) {
                open.pop();
            } else if self.eat(b',') {
                self.after_comma(close)?;
                if close == b'}' {
                    self.member_key()?;
                }
                return Ok(false);
            } else {
                return Err(self.unexpected());
            }
        }
        Ok(true)
    }

    fn literal(&mut self, text: &str, value: Value) -> Result<Value, JsonError> {
        for &want in text.as_bytes() {
            if !self.eat(want) {
                return Err(self.err_or_end(JsonErrorKind::InvalidLiteral));
            }
        }
        Ok(value)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, kept as raw text.
    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        self.eat(b'-');
        if self.eat(b'0') {
            if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(self.err(JsonErrorKind::InvalidNumber));
            }
        } else {
            self.digits()?;
        }
        if self.eat(b'.') {
            self.digits()?;
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.digits()?;
        }
        Ok(Value::Number(self.slice(start, self.pos)?.to_owned()))
    }

    /// One or more ASCII digits.
    fn digits(&mut self) -> Result<(), JsonError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.err_or_end(JsonErrorKind::InvalidNumber));
        }
        Ok(())
    }

    /// The rest of a string after its opening quote, through the closing one.
    /// Borrows from the input unless the string contains escapes.
    fn string_body(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let mut owned: Option<String> = None;
        let mut run = self.pos;
        loop {
            match self.peek() {
                Some(b'"') => {
                    let tail = self.slice(run, self.pos)?;
                    self.pos += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(tail),
                        Some(s) => Cow::Owned(s + tail),
                    });
                }
                Some(b'\\') => {
                    let out = owned.get_or_insert_with(String::new);
                    out.push_str(self.slice(run, self.pos)?);
                    self.escape(out)?;
                    run = self.pos;
                }
                Some(0..0x20) => return Err(self.err(JsonErrorKind::ControlCharacterInString)),
                Some(_) => self.pos += 1,
                None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
            }
        }
    }

    /// Decodes the escape whose backslash is under the cursor into `out`.
    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let at = self.pos;
        self.pos += 1;
        let decoded = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                out.push(self.unicode_escape(at)?);
                return Ok(());
            }
            Some(_) => return Err(JsonError::new(at, JsonErrorKind::InvalidEscape)),
            None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
        };
        self.pos += 1;
        out.push(decoded);
        Ok(())
    }

    /// The hex digits of `\uXXXX` (escape starts at `at`), joining a
    /// surrogate pair into one char.
    fn unicode_escape(&mut self, at: usize) -> Result<char, JsonError> {
        let invalid = JsonError::new(at, JsonErrorKind::InvalidUnicodeEscape);
        let high = self.hex4(at)?;
        let code = match high {
            0xD800..=0xDBFF => {
                let rest = self.rest();
                if rest.len() < 2 && b"\\u".starts_with(rest) {
                    return Err(self.err(JsonErrorKind::UnexpectedEnd));
                }
                if !rest.starts_with(b"\\u") {
                    return Err(invalid);
                }
                self.pos += 2;
                let low = self.hex4(at)?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(invalid);
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(invalid),
            _ => high,
        };
        char::from_u32(code).ok_or(invalid)
    }

    fn hex4(&mut self, at: usize) -> Result<u32, JsonError> {
        let mut code = 0;
        for _ in 0..4 {
            let byte = self
                .peek()
                .ok_or_else(|| self.err(JsonErrorKind::UnexpectedEnd))?;
            let digit = char::from(byte).to_digit(16);
            code = code * 16
                + digit.ok_or_else(|| JsonError::new(at, JsonErrorKind::InvalidEscape))?;
            self.pos += 1;
        }
        Ok(code)
    }
}

/// Appends `s` to `out` as a JSON string literal with quotes, escaped the way
/// Go's encoder does it: `\"`, `\\`, `\n`, `\r`, `\t`; other control
/// characters, `<`, `>`, `&`, U+2028 and U+2029 as `\u00XX`-style escapes
/// (lowercase hex); everything else as UTF-8 unchanged.
///
/// # Examples
///
/// ```
/// use message_broker::json::write_string;
///
/// let mut out = String::new();
/// write_string(&mut out, "a\"<b>\n\u{1}é");
/// assert_eq!(out, r#""a\"\u003cb\u003e\n\u0001é""#);
/// ```
pub fn write_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0'..='\u{1f}' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => push_u_escape(out, c),
            _ => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `\uXXXX` for a char in the Basic Multilingual Plane.
fn push_u_escape(out: &mut String, c: char) {
    out.push_str("\\u");
    let code = u32::from(c);
    for shift in [12, 8, 4, 0] {
        out.push(char::from_digit((code >> shift) & 0xF, 16).unwrap_or('0'));
    }
}

/// Encodes string pairs as one object, keys in the given order.
///
/// # Examples
///
/// ```
/// use message_broker::json::encode_object;
///
/// assert_eq!(encode_object(&[("data", "x"), ("Topic", "t")]), r#"{"data":"x","Topic":"t"}"#);
/// assert_eq!(encode_object(&[]), "{}");
/// ```
pub fn encode_object(pairs: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, key);
        out.push(':');
        write_string(&mut out, value);
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use JsonErrorKind::*;

    fn s(text: &str) -> Value {
        Value::String(text.to_owned())
    }

    fn n(text: &str) -> Value {
        Value::Number(text.to_owned())
    }

    fn members(object: &Object) -> Vec<(&str, &Value)> {
        object.iter().collect()
    }

    type OkCase = (&'static [u8], Vec<(&'static str, Value)>);

    fn ok_cases() -> Vec<OkCase> {
        vec![
            // The Go client's exact bodies.
            (
                br#"{"data":"MyData","qos":0}"#,
                vec![("data", s("MyData")), ("qos", n("0"))],
            ),
            (
                br#"{"qos":0,"port":"10000"}"#,
                vec![("qos", n("0")), ("port", s("10000"))],
            ),
            (
                br#"{"data":"x","Topic":"hello/world"}"#,
                vec![("data", s("x")), ("Topic", s("hello/world"))],
            ),
            (b"{}", vec![]),
            (b" \t\r\n{ \n } \r\n\t ", vec![]),
            (
                b"{ \"a\" : [ 1 , { \"b\" : null } ] ,\n\"c\"\t:\r\"d\" }",
                vec![("a", Value::Array), ("c", s("d"))],
            ),
            (
                br#"{"t":true,"f":false,"z":null}"#,
                vec![
                    ("t", Value::Bool(true)),
                    ("f", Value::Bool(false)),
                    ("z", Value::Null),
                ],
            ),
            (
                br#"{"a":[1,2,{"b":[]}],"c":{},"d":[ ],"e":{ }}"#,
                vec![
                    ("a", Value::Array),
                    ("c", Value::Object),
                    ("d", Value::Array),
                    ("e", Value::Object),
                ],
            ),
            (
                br#"{"e":"\"\\\/\b\f\n\r\t"}"#,
                vec![("e", s("\"\\/\u{8}\u{c}\n\r\t"))],
            ),
            (br#"{"h":"\u003cb\u003e \u0026"}"#, vec![("h", s("<b> &"))]),
            (br#"{"s":"\ud83d\ude00"}"#, vec![("s", s("😀"))]),
            (br#"{"s":"x\uD83D\uDE00y"}"#, vec![("s", s("x😀y"))]),
            (
                br#"{"u":"\u00e9\u4E2D\u0000\u2028"}"#,
                vec![("u", s("é中\0\u{2028}"))],
            ),
            (
                "{\"raw\":\"é😀中\u{7f}\"}".as_bytes(),
                vec![("raw", s("é😀中\u{7f}"))],
            ),
            (br#"{"\u0041b":1,"":""}"#, vec![("Ab", n("1")), ("", s(""))]),
            (
                br#"{"a":-0,"b":1.5e+10,"c":0.25E-3,"d":123,"e":-7e5,"f":0e0}"#,
                vec![
                    ("a", n("-0")),
                    ("b", n("1.5e+10")),
                    ("c", n("0.25E-3")),
                    ("d", n("123")),
                    ("e", n("-7e5")),
                    ("f", n("0e0")),
                ],
            ),
            (br#"{"a":1,"a":"2"}"#, vec![("a", n("1")), ("a", s("2"))]),
            (
                br#"{"x":{"k\"}":"]\\\"[{","\u005d":[]},"y":1}"#,
                vec![("x", Value::Object), ("y", n("1"))],
            ),
            (
                br#"{"x":[[[[]]]],"y":[{"a":[{}]}],"z":[[],{},"",0,true]}"#,
                vec![
                    ("x", Value::Array),
                    ("y", Value::Array),
                    ("z", Value::Array),
                ],
            ),
        ]
    }

    const ERR_CASES: &[(&[u8], JsonErrorKind)] = &[
        (b"", Empty),
        (b"  \t\r\n", Empty),
        (b"[]", NotAnObject),
        (b"\"x\"", NotAnObject),
        (b"1", NotAnObject),
        (b"null", NotAnObject),
        (b"\xEF\xBB\xBF{}", UnexpectedByte(0xEF)),
        (b"x{}", UnexpectedByte(b'x')),
        (b"{}{}", TrailingData),
        (b"{} x", TrailingData),
        (b"{}\0", TrailingData),
        (b"{}\x0c", TrailingData),
        (b"{", UnexpectedEnd),
        (b"{\"a", UnexpectedEnd),
        (b"{\"a\"", UnexpectedEnd),
        (b"{\"a\":", UnexpectedEnd),
        (b"{\"a\":1", UnexpectedEnd),
        (b"{\"a\":1,", UnexpectedEnd),
        (b"{\"a\":[", UnexpectedEnd),
        (b"{\"a\":[1,{\"b\":2}", UnexpectedEnd),
        (b"{\"a\":\"abc", UnexpectedEnd),
        (b"{\"a\":\"\\u12", UnexpectedEnd),
        (b"{\"a\":\"\\ud800", UnexpectedEnd),
        (b"{\"a\":\"\\ud800\\", UnexpectedEnd),
        (b"{\"a\":nul", UnexpectedEnd),
        (b"{\"a\":-", UnexpectedEnd),
        (b"{\"a\":1,}", TrailingComma),
        (b"{\"a\":[1,]}", TrailingComma),
        (b"{\"a\":{\"b\":1,}}", TrailingComma),
        (b"{,}", ExpectedKey),
        (b"{a:1}", ExpectedKey),
        (b"{1:1}", ExpectedKey),
        (b"{\"a\":1,2:3}", ExpectedKey),
        (b"{\"a\":{1:2}}", ExpectedKey),
        (b"{\"a\" 1}", ExpectedColon),
        (b"{\"a\"\x0c:1}", ExpectedColon),
        (b"{\"a\":{\"b\"}}", ExpectedColon),
        (b"{\"a\":01}", InvalidNumber),
        (b"{\"a\":-01}", InvalidNumber),
        (b"{\"a\":1.}", InvalidNumber),
        (b"{\"a\":1.e5}", InvalidNumber),
        (b"{\"a\":1e}", InvalidNumber),
        (b"{\"a\":1e+}", InvalidNumber),
        (b"{\"a\":-}", InvalidNumber),
        (b"{\"a\":-a}", InvalidNumber),
        (b"{\"a\":+1}", UnexpectedByte(b'+')),
        (b"{\"a\":.5}", UnexpectedByte(b'.')),
        (b"{\"a\":NaN}", UnexpectedByte(b'N')),
        (b"{\"a\":1.5.3}", UnexpectedByte(b'.')),
        (b"{\"a\":0x10}", UnexpectedByte(b'x')),
        (b"{\"a\":tru}", InvalidLiteral),
        (b"{\"a\":True}", UnexpectedByte(b'T')),
        (b"{\"a\":[nulL]}", InvalidLiteral),
        (b"{\"a\":truex}", UnexpectedByte(b'x')),
        (b"{\"a\":'x'}", UnexpectedByte(b'\'')),
        (b"{\"a\":\"\x01\"}", ControlCharacterInString),
        (b"{\"a\":\"\t\"}", ControlCharacterInString),
        (b"{\"a\n\":1}", ControlCharacterInString),
        (b"{\"a\":[\"\x1f\"]}", ControlCharacterInString),
        (b"{\"a\":\"\\x\"}", InvalidEscape),
        (b"{\"a\":\"\\U0041\"}", InvalidEscape),
        (b"{\"a\":\"\\u12g4\"}", InvalidEscape),
        (b"{\"a\":\"\\'\"}", InvalidEscape),
        (b"{\"a\":\"\\ud800\"}", InvalidUnicodeEscape),
        (b"{\"a\":\"\\udc00\\ud800\"}", InvalidUnicodeEscape),
        (b"{\"a\":\"\\ud800\\u0041\"}", InvalidUnicodeEscape),
        (b"{\"a\":\"\\ud800\\ud800\"}", InvalidUnicodeEscape),
        (b"{\"a\":\"\\ud800\\n\"}", InvalidUnicodeEscape),
        (b"{\"a\":[\"\\udfff\"]}", InvalidUnicodeEscape),
        (b"{\"a\":\"\xff\"}", InvalidUtf8),
        (b"{\"a\":\"\xc0\x80\"}", InvalidUtf8),
        (b"{\"a\":\"\xe2\x82\"}", InvalidUtf8),
        (b"{\"a\":\"\xe2\x82", InvalidUtf8),
        (b"{\"a\":\"\xed\xa0\x80\"}", InvalidUtf8),
        (b"{\"a\":[\"\xff\"]}", InvalidUtf8),
        (b"{\"\xf8\":1}", InvalidUtf8),
        (b"{}\xff", InvalidUtf8),
        (b"{\"a\":[1 2]}", UnexpectedByte(b'2')),
        (b"{\"a\":[1}", UnexpectedByte(b'}')),
        (b"{\"a\":{\"b\":1]}", UnexpectedByte(b']')),
        (b"{\"a\":1 \"b\":2}", UnexpectedByte(b'"')),
        (b"{\"a\":1]", UnexpectedByte(b']')),
        (b"{\"a\":}", UnexpectedByte(b'}')),
    ];

    #[test]
    fn valid_bodies_decode() {
        for (input, want) in ok_cases() {
            let text = String::from_utf8_lossy(input);
            let object = parse_object(input).unwrap_or_else(|e| panic!("{text}: {e}"));
            let want: Vec<(&str, &Value)> = want.iter().map(|(k, v)| (*k, v)).collect();
            assert_eq!(members(&object), want, "{text}");
            assert_eq!(object.len(), want.len(), "{text}");
        }
    }

    #[test]
    fn invalid_bodies_are_rejected() {
        for &(input, want) in ERR_CASES {
            let text = String::from_utf8_lossy(input);
            match parse_object(input) {
                Ok(object) => panic!("{text:?}: accepted as {object:?}"),
                Err(e) => {
                    assert_eq!(e.kind(), want, "{text:?}: {e}");
                    assert!(e.offset() <= input.len(), "{text:?}: {e}");
                }
            }
        }
    }

    #[test]
    fn error_offsets() {
        let cases: &[(&[u8], usize)] = &[
            (b"{\"a\":1,}", 7),
            (b"{\"a\":1", 6),
            (b"{} x", 3),
            (b"  [", 2),
            (b"{\"a\":\"\xff\"}", 6),
            (b"{\"a\":\"x\\q\"}", 7),
            (b"{\"a\":\"\\ud800\\u0041\"}", 6),
            (b"{\"a\":01}", 6),
        ];
        for &(input, offset) in cases {
            let err = parse_object(input).unwrap_err();
            assert_eq!(
                err.offset(),
                offset,
                "{:?}: {err}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn error_display() {
        let err = parse_object(b"{\"a\":1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid JSON at byte 6: unexpected end of input"
        );
        let err = parse_object(b"{\"a\":+1}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid JSON at byte 5: unexpected character '+'"
        );
        let err = parse_object(b"\xEF\xBB\xBF{}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid JSON at byte 0: unexpected byte 0xef"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert!(boxed.to_string().starts_with("invalid JSON"));
    }

    #[test]
    fn every_truncation_is_an_error() {
        for (input, _) in ok_cases() {
            let closing_brace = input.iter().rposition(|&b| b == b'}').unwrap_or_default();
            for cut in 0..closing_brace {
                let prefix = input.get(..cut).unwrap_or_default();
                let kind = parse_object(prefix).map(|_| ()).unwrap_err().kind();
                let want = if std::str::from_utf8(prefix).is_err() {
                    InvalidUtf8
                } else if prefix.iter().all(u8::is_ascii_whitespace) {
                    Empty
                } else {
                    UnexpectedEnd
                };
                assert_eq!(kind, want, "{:?}", String::from_utf8_lossy(prefix));
            }
        }
    }

    #[test]
    fn number_accessors() {
        let cases: &[(&str, Option<u64>, Option<i64>)] = &[
            ("0", Some(0), Some(0)),
            ("-0", None, Some(0)),
            ("10000", Some(10000), Some(10000)),
            ("18446744073709551615", Some(u64::MAX), None),
            ("18446744073709551616", None, None),
            ("-9223372036854775808", None, Some(i64::MIN)),
            ("-9223372036854775809", None, None),
            ("-1", None, Some(-1)),
            ("1.0", None, None),
            ("1e2", None, None),
            ("1E2", None, None),
        ];
        for &(literal, want_u, want_i) in cases {
            let object = parse_object(format!("{{\"n\":{literal}}}").as_bytes()).unwrap();
            let value = object.get("n").unwrap();
            assert_eq!(value.as_u64(), want_u, "{literal}");
            assert_eq!(value.as_i64(), want_i, "{literal}");
            assert_eq!(value.as_str(), None, "{literal}");
        }
        assert_eq!(s("1").as_u64(), None);
        assert_eq!(Value::Number("+1".into()).as_u64(), None);
        assert_eq!(Value::Null.as_i64(), None);
        assert_eq!(s("x").as_str(), Some("x"));
    }

    #[test]
    fn get_matches_like_go() {
        let object = parse_object(br#"{"Topic":"a","topic":"b","TOPIC":"c","data":"d"}"#).unwrap();
        for key in ["topic", "Topic", "TOPIC", "tOpIc"] {
            assert_eq!(object.get_str(key), Some("c"), "{key}");
        }
        assert_eq!(object.get_str("DATA"), Some("d"));
        assert_eq!(object.get("missing"), None);
        assert_eq!(object.get("topi"), None);
        assert_eq!(object.get("topics"), None);

        let object = parse_object(br#"{"topic":"a","qos":1}"#).unwrap();
        assert_eq!(object.get_str("Topic"), Some("a"));
        assert_eq!(object.get_str("qos"), None);
        assert_eq!(object.get("QOS").and_then(Value::as_u64), Some(1));

        let folds = parse_object("{\"\u{17F}\":1,\"\u{212A}\":2,\"tópic\":3}".as_bytes()).unwrap();
        assert_eq!(folds.get("S").and_then(Value::as_u64), Some(1));
        assert_eq!(folds.get("s").and_then(Value::as_u64), Some(1));
        assert_eq!(folds.get("k").and_then(Value::as_u64), Some(2));
        assert_eq!(folds.get("K").and_then(Value::as_u64), Some(2));
        assert_eq!(folds.get("topic"), None);
        assert_eq!(
            folds.get("TÓPIC"),
            None,
            "only ASCII and Go's special folds"
        );
        assert_eq!(folds.get("tópic").and_then(Value::as_u64), Some(3));

        let last = parse_object(br#"{"data":"x","DATA":null}"#).unwrap();
        assert_eq!(last.get("data"), Some(&Value::Null));
        assert!(Object::default().is_empty());
        assert!(!last.is_empty());
    }

    #[test]
    fn write_string_escapes_like_go() {
        let cases: &[(&str, &str)] = &[
            ("", r#""""#),
            ("plain text/ok", r#""plain text/ok""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("\n\r\t", r#""\n\r\t""#),
            (
                "\0\u{1}\u{8}\u{b}\u{c}\u{1f}",
                r#""\u0000\u0001\u0008\u000b\u000c\u001f""#,
            ),
            (
                "<a href='x'>&</a>",
                r#""\u003ca href='x'\u003e\u0026\u003c/a\u003e""#,
            ),
            ("\u{2028}\u{2029}", r#""\u2028\u2029""#),
            ("\u{7f}é中😀\u{ffff}", "\"\u{7f}é中😀\u{ffff}\""),
        ];
        for &(input, want) in cases {
            let mut out = String::from("prefix:");
            write_string(&mut out, input);
            assert_eq!(out, format!("prefix:{want}"), "{input:?}");
        }
    }

    #[test]
    fn encode_object_orders_keys() {
        assert_eq!(encode_object(&[]), "{}");
        assert_eq!(
            encode_object(&[("data", "x"), ("Topic", "t")]),
            r#"{"data":"x","Topic":"t"}"#
        );
        assert_eq!(encode_object(&[("a<", "\n")]), r#"{"a\u003c":"\n"}"#);
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let mut every: String = (0u8..0x20).map(char::from).collect();
        every.push_str("\"\\/<>&\u{2028}\u{2029}\u{7f}é中😀\u{fffd}\u{10ffff} end");
        let texts = [every.as_str(), "", "hello/world", "Ünïcødé ключ 鍵 🎉"];
        for text in texts {
            let body = encode_object(&[("data", text), (text, "key"), ("Topic", "t")]);
            assert!(
                body.bytes().all(|b| b >= 0x20),
                "no raw control bytes: {body:?}"
            );
            let object = parse_object(body.as_bytes()).unwrap();
            let got: Vec<(&str, Option<&str>)> =
                object.iter().map(|(k, v)| (k, v.as_str())).collect();
            assert_eq!(
                got,
                [
                    ("data", Some(text)),
                    (text, Some("key")),
                    ("Topic", Some("t"))
                ]
            );
        }
    }

    #[test]
    fn deep_nesting_uses_no_recursion() {
        let worker = std::thread::Builder::new().stack_size(64 * 1024).spawn(|| {
            let depth = 200_000;
            let mut body = b"{\"x\":".to_vec();
            body.extend(std::iter::repeat_n(b'[', depth));
            let unclosed = parse_object(&body).unwrap_err();
            assert_eq!(
                (unclosed.kind(), unclosed.offset()),
                (UnexpectedEnd, body.len())
            );
            body.extend(std::iter::repeat_n(b']', depth));
            body.push(b'}');
            assert_eq!(parse_object(&body).unwrap().get("x"), Some(&Value::Array));

            let mut objects = b"{\"x\":".to_vec();
            for _ in 0..depth / 2 {
                objects.extend_from_slice(b"[{\"a\":");
            }
            objects.push(b'1');
            assert_eq!(parse_object(&objects).unwrap_err().kind(), UnexpectedEnd);
            objects.extend(std::iter::repeat_n(&b"}]"[..], depth / 2).flatten());
            objects.extend_from_slice(b",\"y\":2}");
            let object = parse_object(&objects).unwrap();
            assert_eq!(object.get("y").and_then(Value::as_u64), Some(2));
        });
        worker
            .expect("spawn")
            .join()
            .expect("parsing must not overflow the stack");
    }

    /// xorshift64: a tiny deterministic PRNG for the mutation test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound.max(1) as u64) as usize
        }
    }

    #[test]
    fn mutated_bodies_never_panic() {
        let seeds: [&[u8]; 10] = [
            br#"{"data":"MyData","qos":0}"#,
            br#"{"qos":0,"port":"10000"}"#,
            br#"{"data":"x","Topic":"hello/world"}"#,
            br#"{"a":[1,2.5e-3,{"b":[true,false,null]}],"c":{}}"#,
            br#"{"s":"\ud83d\ude00 \u003c\n\"","n":-0.0}"#,
            "{\"é\":\"中文\",\"k\":\"😀\"}".as_bytes(),
            br#"{ "x" : [ [ [ ] ] ] , "y" : { "z" : "w" } }"#,
            br#"{"data":"a\\b\/c","qos":1,"data":"dup"}"#,
            b"{}",
            br#"{"deep":[[[[{"a":[{"b":"c"}]}]]]]}"#,
        ];
        let interesting = b"{}[]\",:\\u0123456789-+.eEtrufalsn \t\n\x00\x1f\x7f\x80\xc3\xed\xff";
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut accepted, mut rejected) = (0, 0);
        for _ in 0..20_000 {
            let mut body = seeds[rng.below(seeds.len())].to_vec();
            for _ in 0..=rng.below(4) {
                let at = rng.below(body.len() + 1);
                match rng.below(4) {
                    0 if at < body.len() => body[at] ^= 1 << rng.below(8),
                    1 => body.insert(at, interesting[rng.below(interesting.len())]),
                    2 if at < body.len() => drop(body.remove(at)),
                    _ => {
                        let donor = seeds[rng.below(seeds.len())];
                        let start = rng.below(donor.len());
                        let end = start + rng.below(donor.len() - start + 1);
                        let cut = (at + rng.below(4)).min(body.len());
                        body.splice(at..cut, donor[start..end].iter().copied());
                    }
                }
            }
            match parse_object(&body) {
                Ok(object) => {
                    accepted += 1;
                    assert!(object.iter().all(|(key, _)| object.get(key).is_some()));
                }
                Err(e) => {
                    rejected += 1;
                    assert!(e.offset() <= body.len(), "{e} for {body:?}");
                }
            }
        }
        assert!(
            accepted > 0 && rejected > 0,
            "accepted {accepted}, rejected {rejected}"
        );
    }
}
