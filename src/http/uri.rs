//! Percent-encoding of request paths (RFC 3986 section 2.1).
//!
//! **Owns:** decoding a path (or topic) from a request target and encoding a topic into one.
//!
//! **Must never:** decide what the decoded bytes mean: UTF-8 and topic rules are the caller's.

use super::HttpError;

/// Percent-decodes a path string. `%` must be followed by two hex digits; `+` stays `+` (it means
/// a space only in form data, not in paths). Returns raw bytes: the caller checks UTF-8.
///
/// # Errors
///
/// [`HttpError::BadRequest`]`("bad percent-encoding")` for a `%` not followed by two hex digits.
///
/// # Examples
///
/// ```
/// use message_broker::http::percent_decode;
///
/// assert_eq!(percent_decode("hello/w%C3%B6rld+1")?, "hello/wörld+1".as_bytes());
/// assert!(percent_decode("100%").is_err());
/// # Ok::<(), message_broker::http::HttpError>(())
/// ```
pub fn percent_decode(s: &str) -> Result<Vec<u8>, HttpError> {
    if !s.contains('%') {
        return Ok(s.as_bytes().to_vec());
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hi = bytes.next().and_then(hex_value);
        let lo = bytes.next().and_then(hex_value);
        match (hi, lo) {
            (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
            _ => return Err(HttpError::BadRequest("bad percent-encoding")),
        }
    }
    Ok(out)
}

/// The value of `name` in a query string (`since=5&token=x`), percent-decoded, with `+` as a
/// space (form encoding, as browsers write queries). `None` if it is absent, badly encoded or
/// not UTF-8; the first one counts when it is given twice.
pub(crate) fn query_value(query: &str, name: &str) -> Option<String> {
    let raw = query
        .split('&')
        .find_map(|pair| pair.split_once('=').filter(|(n, _)| *n == name))?
        .1
        .replace('+', " ");
    String::from_utf8(percent_decode(&raw).ok()?).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes every byte except unreserved characters (`A-Z a-z 0-9 - . _ ~`), `/` and the
/// characters safe in a path (`! $ & ' ( ) * + , ; = : @`), with upper-case hex digits.
///
/// # Examples
///
/// ```
/// use message_broker::http::percent_encode_path;
///
/// assert_eq!(percent_encode_path("hello/world"), "hello/world");
/// assert_eq!(percent_encode_path("a b?#%ü"), "a%20b%3F%23%25%C3%BC");
/// ```
pub fn percent_encode_path(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values() {
        let q = "since=42&token=a%2Bb+c&empty=&since=7";
        assert_eq!(
            query_value(q, "since").as_deref(),
            Some("42"),
            "the first counts"
        );
        assert_eq!(query_value(q, "token").as_deref(), Some("a+b c"));
        assert_eq!(query_value(q, "empty").as_deref(), Some(""));
        assert_eq!(query_value(q, "nope"), None);
        assert_eq!(query_value("token=%zz", "token"), None);
        assert_eq!(query_value("token=%ff", "token"), None);
        assert_eq!(query_value("tokens=1", "token"), None);
    }

    #[test]
    fn decode_table() {
        let cases: &[(&str, Option<&[u8]>)] = &[
            ("", Some(b"")),
            ("hello/world", Some(b"hello/world")),
            ("a%20b", Some(b"a b")),
            ("a+b", Some(b"a+b")),
            ("%2f%2F", Some(b"//")),
            ("%C3%BC", Some("ü".as_bytes())),
            ("%00%ff", Some(b"\0\xff")),
            ("%", None),
            ("%4", None),
            ("%zz", None),
            ("%4g", None),
            ("abc%", None),
            ("%%41", None),
        ];
        for (input, want) in cases {
            let got = percent_decode(input);
            match want {
                Some(bytes) => assert_eq!(got.ok().as_deref(), Some(*bytes), "{input}"),
                None => assert!(
                    matches!(got, Err(HttpError::BadRequest("bad percent-encoding"))),
                    "{input}"
                ),
            }
        }
    }

    #[test]
    fn encode_table() {
        let cases = [
            ("hello/world", "hello/world"),
            ("a b", "a%20b"),
            ("ü", "%C3%BC"),
            ("%", "%25"),
            ("?", "%3F"),
            ("#", "%23"),
            ("AZaz09-._~", "AZaz09-._~"),
            ("!$&'()*+,;=:@", "!$&'()*+,;=:@"),
            ("\"<>\\^`{|}", "%22%3C%3E%5C%5E%60%7B%7C%7D"),
            ("\n\x7f", "%0A%7F"),
        ];
        for (input, want) in cases {
            assert_eq!(percent_encode_path(input), want, "{input:?}");
        }
    }

    #[test]
    fn round_trips() {
        for s in [
            "",
            "a b/c?d#e%f",
            "topic/ü/日本",
            "+plus+",
            "%25%",
            "tab\there",
        ] {
            let encoded = percent_encode_path(s);
            assert!(encoded.bytes().all(|b| b.is_ascii_graphic()), "{encoded}");
            assert_eq!(
                percent_decode(&encoded).ok(),
                Some(s.as_bytes().to_vec()),
                "{s:?}"
            );
        }
    }
}
