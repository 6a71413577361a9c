//! The decoder: one top-level object, nested values validated and skipped
//! without recursion.

use super::{JsonError, JsonErrorKind, Object, Value};
use std::borrow::Cow;

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

/// The bytes that end a run of plain string content: a quote, a backslash and
/// the control characters.
const STRING_STOP: [bool; 256] = super::stop_table(b"\"\\");

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
        let mut entries = Vec::with_capacity(4);
        self.skip_ws();
        if self.eat(b'}') {
            return Ok(Object { entries });
        }
        loop {
            let key = self.member_key()?;
            let value = self.value()?;
            entries.push((super::key(key), value));
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
                // A run of plain bytes at once, up to the next one above.
                Some(_) => match self
                    .rest()
                    .iter()
                    .position(|&b| STRING_STOP[usize::from(b)])
                {
                    Some(n) => self.pos += n.max(1),
                    None => self.pos = self.src.len(),
                },
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
