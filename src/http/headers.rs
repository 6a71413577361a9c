//! Header fields: the [`Headers`] collection and the bounded reading of a header section.
//!
//! **Owns:** parsing `name: value` lines, the header byte and count limits, and the
//! case-insensitive lookups (including comma-separated token lists such as `Connection`).
//!
//! **Must never:** interpret what a header means for framing (that is `request.rs`), or accept
//! a line a stricter parser would read differently (obsolete folding, whitespace before the
//! colon, control characters in a value).

use std::ops::Range;

use super::line::{Line, Lines};
use super::{HttpError, Limits, is_tchar, is_token};

/// Header fields in arrival order; names are compared ASCII-case-insensitively, values are
/// trimmed of SP/HTAB.
///
/// # Examples
///
/// ```
/// use message_broker::http::Headers;
///
/// let mut h = Headers::new();
/// h.append("Connection", "keep-alive, Upgrade");
/// h.append("X-Tag", "a");
/// h.append("x-tag", "b");
/// assert_eq!(h.get("CONNECTION"), Some("keep-alive, Upgrade"));
/// assert!(h.has_token("connection", "upgrade"));
/// assert_eq!(h.get_all("X-TAG").collect::<Vec<_>>(), ["a", "b"]);
/// assert_eq!(h.len(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Every name and value, one after the other: one allocation for all.
    text: String,
    /// Where each field's name and value lie in `text`.
    fields: Vec<(Range<usize>, Range<usize>)>,
}

impl Headers {
    /// An empty collection.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Adds a field at the end, keeping any earlier field of the same name. The value is trimmed
    /// of SP/HTAB; neither name nor value is otherwise checked.
    pub fn append(&mut self, name: &str, value: &str) {
        let value = value.trim_matches([' ', '\t']);
        self.push(name.as_bytes(), value.as_bytes());
    }

    /// Adds raw bytes as a field; bytes that are not UTF-8 become U+FFFD.
    fn push(&mut self, name: &[u8], value: &[u8]) {
        if self.fields.is_empty() {
            // A request's fields at once, most of the time: no regrowing.
            self.text.reserve(256);
            self.fields.reserve(8);
        }
        let mut add = |bytes: &[u8]| {
            let start = self.text.len();
            match std::str::from_utf8(bytes) {
                Ok(s) => self.text.push_str(s),
                Err(_) => self.text.push_str(&String::from_utf8_lossy(bytes)),
            }
            start..self.text.len()
        };
        let (name, value) = (add(name), add(value));
        self.fields.push((name, value));
    }

    /// The fields at `fields` in `text`; where `text` is not UTF-8, each
    /// field is converted on its own (see [`Headers::push`]).
    fn from_raw(text: Vec<u8>, fields: Vec<(Range<usize>, Range<usize>)>) -> Headers {
        match String::from_utf8(text) {
            Ok(text) => Headers { text, fields },
            Err(e) => {
                let text = e.into_bytes();
                let mut headers = Headers::new();
                for (name, value) in fields {
                    let (Some(name), Some(value)) = (text.get(name), text.get(value)) else {
                        continue;
                    };
                    headers.push(name, value);
                }
                headers
            }
        }
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        let text = |range: &Range<usize>| self.text.get(range.clone()).unwrap_or_default();
        self.fields.iter().map(move |(n, v)| (text(n), text(v)))
    }

    /// The value of the first field called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let (_, value) = self.fields.iter().find(|(n, _)| self.name_is(n, name))?;
        self.text.get(value.clone())
    }

    /// The values of every field called `name`, in arrival order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.fields
            .iter()
            .filter(move |(n, _)| self.name_is(n, name))
            .map(|(_, v)| self.text.get(v.clone()).unwrap_or_default())
    }

    /// Whether the name at `range` is `name`, compared as bytes: only a
    /// match's value is sliced out of `text`.
    fn name_is(&self, range: &Range<usize>, name: &str) -> bool {
        range.len() == name.len()
            && self
                .text
                .as_bytes()
                .get(range.clone())
                .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// Whether a field called `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every field as `(name, value)`, in arrival order, names as received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields()
    }

    /// The number of fields (lines), counting repeated names separately.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Whether any field called `name` holds `token` in its comma-separated list, compared
    /// ASCII-case-insensitively (`Connection: keep-alive, Upgrade` has `upgrade`).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name).any(|v| {
            v.split(',')
                .any(|t| trim_ows_str(t).eq_ignore_ascii_case(token))
        })
    }

    /// The elements of the comma-separated lists of every field called `name`, trimmed, with
    /// empty elements kept (so a caller can reject them).
    pub(crate) fn list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .map(trim_ows_str)
    }
}

/// Reads header lines up to and including the empty line that ends the section.
///
/// # Errors
///
/// [`HttpError::HeadersTooLarge`] over `limits.max_header_bytes` or `limits.max_headers`,
/// [`HttpError::BadRequest`] for a malformed line, [`HttpError::UnexpectedEof`] if the reader
/// ends first, [`HttpError::Io`] for transport errors.
pub(crate) fn read_header_section(
    lines: &mut impl Lines,
    limits: &Limits,
) -> Result<Headers, HttpError> {
    // The fields' bytes, one after the other, checked as UTF-8 once at the end.
    let mut text = Vec::with_capacity(256);
    let mut fields = Vec::with_capacity(8);
    let mut used = 0usize;
    loop {
        let remaining = limits.max_header_bytes.saturating_sub(used);
        // Two extra bytes so that the CRLF ending the section always fits.
        let (found, line) = lines.next_line(remaining.saturating_add(2))?;
        match found {
            Line::Eof { .. } => return Err(HttpError::UnexpectedEof),
            Line::TooLong => return Err(HttpError::HeadersTooLarge),
            Line::Complete { .. } if line.is_empty() => return Ok(Headers::from_raw(text, fields)),
            Line::Complete { wire_len } => {
                if wire_len > remaining || fields.len() >= limits.max_headers {
                    return Err(HttpError::HeadersTooLarge);
                }
                used += wire_len;
                let (name, value) = parse_field_line(line)?;
                let mut add = |bytes: &[u8]| {
                    let start = text.len();
                    text.extend_from_slice(bytes);
                    start..text.len()
                };
                let field = (add(name), add(value));
                fields.push(field);
            }
        }
    }
}

/// Parses `name ":" OWS value OWS` (RFC 9112 section 5).
fn parse_field_line(line: &[u8]) -> Result<(&[u8], &[u8]), HttpError> {
    // The usual line in one pass over its name: a token, then the colon.
    let name_len = line.iter().position(|&b| !is_tchar(b));
    let (name, rest) = match name_len {
        Some(n) if n > 0 && line.get(n) == Some(&b':') => line.split_at(n),
        _ => return parse_odd_field_line(line),
    };
    field_value(name, rest)
}

/// [`parse_field_line`] for a line whose name is not a token followed by a colon: which
/// error it is, in the order a reader meets them.
fn parse_odd_field_line(line: &[u8]) -> Result<(&[u8], &[u8]), HttpError> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(HttpError::BadRequest("obsolete line folding"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HttpError::BadRequest("header line without colon"))?;
    let (name, rest) = line.split_at(colon);
    if matches!(name.last(), Some(b' ' | b'\t')) {
        return Err(HttpError::BadRequest("whitespace before colon"));
    }
    if !is_token(name) {
        return Err(HttpError::BadRequest("invalid header name"));
    }
    field_value(name, rest)
}

/// The value after the colon that `rest` starts with, trimmed and checked.
fn field_value<'a>(name: &'a [u8], rest: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), HttpError> {
    let value = trim_ows(rest.get(1..).unwrap_or_default());
    if !value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
    {
        return Err(HttpError::BadRequest("invalid header value"));
    }
    // Names are ASCII tokens; values may hold obs-text, kept as U+FFFD where not UTF-8.
    Ok((name, value))
}

/// `s` without SP/HTAB on either side.
pub(crate) fn trim_ows_str(s: &str) -> &str {
    let ows = |b: &u8| matches!(b, b' ' | b'\t');
    let start = s.bytes().take_while(ows).count();
    let end = s.len() - s.bytes().rev().take_while(ows).count();
    // Only ASCII bytes are cut off: both ends fall on char boundaries.
    s.get(start..end.max(start)).unwrap_or_default()
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::line::{FromReader, InMemory};
    use super::*;

    /// Reads a section line by line from a reader, and again where it lies in memory: both
    /// must read the same (bytes missing at the end read as an unexpected end either way).
    fn read(input: &[u8], limits: &Limits) -> Result<Vec<(String, String)>, String> {
        let brief = |read: Result<Headers, HttpError>| {
            read.map(|h| {
                h.iter()
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect()
            })
            .map_err(|e| format!("{e:?}"))
        };
        let mut lines = FromReader {
            r: &mut &input[..],
            line: &mut Vec::new(),
        };
        let reader = brief(read_header_section(&mut lines, limits));
        let memory = brief(read_header_section(&mut InMemory::new(input), limits));
        assert_eq!(reader, memory, "input {:?}", String::from_utf8_lossy(input));
        reader
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn header_section_table() {
        let l = Limits::default();
        type Fields = &'static [(&'static str, &'static str)];
        let cases: &[(&[u8], Result<Fields, &str>)] = &[
            (b"\r\n", Ok(&[])),
            (b"A: 1\r\nb:2\r\n\r\n", Ok(&[("A", "1"), ("b", "2")])),
            (b"A: 1\nB: 2\n\n", Ok(&[("A", "1"), ("B", "2")])),
            (b"A: \t spaced out \t\r\n\r\n", Ok(&[("A", "spaced out")])),
            (b"Empty:\r\n\r\n", Ok(&[("Empty", "")])),
            (b"A: x:y: z\r\n\r\n", Ok(&[("A", "x:y: z")])),
            (
                b"A: 1\r\n folded\r\n\r\n",
                Err("BadRequest(\"obsolete line folding\")"),
            ),
            (
                b"\tA: 1\r\n\r\n",
                Err("BadRequest(\"obsolete line folding\")"),
            ),
            (
                b"NoColon\r\n\r\n",
                Err("BadRequest(\"header line without colon\")"),
            ),
            (
                b"A : 1\r\n\r\n",
                Err("BadRequest(\"whitespace before colon\")"),
            ),
            (
                b"A\t: 1\r\n\r\n",
                Err("BadRequest(\"whitespace before colon\")"),
            ),
            (b": 1\r\n\r\n", Err("BadRequest(\"invalid header name\")")),
            (
                b"A(b): 1\r\n\r\n",
                Err("BadRequest(\"invalid header name\")"),
            ),
            (
                b"A: x\0y\r\n\r\n",
                Err("BadRequest(\"invalid header value\")"),
            ),
            (
                b"A: x\x1by\r\n\r\n",
                Err("BadRequest(\"invalid header value\")"),
            ),
            (
                b"A: x\x7f\r\n\r\n",
                Err("BadRequest(\"invalid header value\")"),
            ),
            (b"A: x\ry\r\n\r\n", Err("BadRequest(\"bare cr\")")),
            (b"A: 1\r\n", Err("UnexpectedEof")),
            (b"A: 1\r\n\r", Err("UnexpectedEof")),
        ];
        for (input, want) in cases {
            let got = read(input, &l);
            let want = want.map(pairs).map_err(str::to_string);
            assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn looked_up_names_are_found_in_any_case_and_absent_ones_are_not() {
        let section = b"CONTENT-length: 5\r\nX: 1\r\nconnection: a\r\nConnection: b\r\n\r\n";
        let h = read_header_section(&mut InMemory::new(section), &Limits::default()).unwrap();
        assert_eq!(h.get("Content-Length"), Some("5"));
        assert_eq!(h.get_all("CONNECTION").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(h.get("x"), Some("1"));
        for absent in [
            "transfer-encoding",
            "Expect",
            "idempotency-key",
            "authorization",
            "y",
        ] {
            assert_eq!(h.get(absent), None, "{absent}");
        }
        let mut built = Headers::new();
        built.append("Transfer-Encoding", "chunked");
        assert!(built.has_token("transfer-encoding", "CHUNKED"));
        assert!(!built.contains("content-length"));
    }

    #[test]
    fn obs_text_value_is_kept_lossily() {
        let got = read(b"A: caf\xe9\r\n\r\n", &Limits::default()).unwrap();
        assert_eq!(got, pairs(&[("A", "caf\u{fffd}")]));
        // Among valid fields, and split mid-character: each field on its own.
        let got = read(
            b"A: 1\r\nB: \xe2\x82\r\nC: \xe2\x82\xac\r\n\r\n",
            &Limits::default(),
        );
        let want = pairs(&[("A", "1"), ("B", "\u{fffd}"), ("C", "\u{20ac}")]);
        assert_eq!(got.unwrap(), want);
    }

    #[test]
    fn header_bytes_limit_exact_and_plus_one() {
        // "A: 123\r\n" is 8 bytes; two of them are 16.
        let l = Limits {
            max_header_bytes: 16,
            ..Limits::default()
        };
        assert!(read(b"A: 123\r\nB: 456\r\n\r\n", &l).is_ok());
        assert_eq!(
            read(b"A: 123\r\nB: 4567\r\n\r\n", &l),
            Err("HeadersTooLarge".into())
        );
        // A line with no end at all is cut off at the budget.
        let long = [b'x'; 100];
        assert_eq!(read(&long, &l), Err("HeadersTooLarge".into()));
    }

    #[test]
    fn header_count_limit_exact_and_plus_one() {
        let l = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        assert_eq!(
            read(b"A: 1\r\nA: 2\r\nA: 3\r\n\r\n", &l).map(|v| v.len()),
            Ok(3)
        );
        assert_eq!(
            read(b"A: 1\r\nA: 2\r\nA: 3\r\nA: 4\r\n\r\n", &l),
            Err("HeadersTooLarge".into())
        );
    }

    #[test]
    fn lookups() {
        let mut h = Headers::new();
        h.append("Transfer-Encoding", "gzip,  chunked");
        h.append("connection", "keep-alive,,Upgrade");
        assert!(h.has_token("CONNECTION", "upgrade"));
        assert!(!h.has_token("connection", "close"));
        assert!(!h.has_token("missing", "x"));
        assert_eq!(
            h.list("transfer-encoding").collect::<Vec<_>>(),
            ["gzip", "chunked"]
        );
        assert!(h.contains("TRANSFER-ENCODING"));
        assert_eq!(
            h.iter().next(),
            Some(("Transfer-Encoding", "gzip,  chunked"))
        );
        assert!(!h.is_empty());
        assert!(Headers::new().is_empty());
    }
}
