//! HTTP/1.1 framing for the broker (server side) and for its clients (client side).
//!
//! **Owns:** reading a request head and body, reading a response, writing a request or a
//! response, chunked transfer coding, percent-encoding of paths, the size limits and the
//! error type every one of them reports.
//!
//! **Must never:** own a socket, a thread, a lock or a clock. Every function here takes a
//! [`BufRead`](std::io::BufRead), a [`Write`](std::io::Write) or bytes and returns a value or an
//! [`HttpError`]. Every read is bounded by a named constant or a [`Limits`] field; nothing a peer
//! sends can make this module panic or buffer without bound. Timeouts are the caller's business:
//! set them on the socket, and they surface here as [`HttpError::Io`] (see
//! [`HttpError::is_timeout`]).
//!
//! The parser follows RFC 9112 and is strict wherever leniency lets two parsers disagree about
//! where a message ends (request smuggling): `Content-Length` together with `Transfer-Encoding`,
//! conflicting lengths, unknown transfer codings, obsolete line folding and bare CRs are errors.
//!
//! # Examples
//!
//! One server turn: read a request, read its body, answer it.
//!
//! ```
//! use message_broker::http::{read_body, read_request_head, write_response, Limits};
//!
//! let wire = b"POST /pub/news HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\nhello";
//! let mut conn: &[u8] = wire; // in the broker: a BufReader<TcpStream>
//! let limits = Limits::default();
//!
//! let head = read_request_head(&mut conn, &limits)?.expect("a request");
//! assert_eq!(head.path(), "/pub/news");
//! let body = read_body(&mut conn, head.framing, &limits)?;
//! assert_eq!(body, b"hello");
//!
//! let mut out = Vec::new(); // in the broker: a BufWriter<TcpStream>, flushed after this
//! write_response(&mut out, 202, &[], b"", !head.keep_alive)?;
//! assert_eq!(out, b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chunked;
mod error;
mod headers;
mod line;
mod request;
mod response;
mod uri;
mod write;

/// `bytes` as a `String`, invalid UTF-8 replaced by U+FFFD. Valid input (the
/// usual case) takes the fast validation path.
pub(crate) fn string_lossy(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod fuzz_tests;

pub use chunked::{write_chunk, write_last_chunk};
pub use error::HttpError;
pub use headers::Headers;
pub use request::{BodyFraming, RequestHead, read_body, read_request_head};
pub(crate) use response::read_response_head;
pub use response::{Response, read_response};
pub(crate) use uri::query_value;
pub use uri::{percent_decode, percent_encode_path};
pub(crate) use write::{PLAIN_ACCEPTED, decimal};
pub use write::{reason_phrase, write_request, write_response};

/// Default for [`Limits::max_request_line`]: 8 KiB.
pub const DEFAULT_MAX_REQUEST_LINE: usize = 8192;
/// Default for [`Limits::max_header_bytes`]: 16 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16384;
/// Default for [`Limits::max_headers`]: 100 fields.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default for [`Limits::max_body`]: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1_048_576;

/// How many empty lines before a request line are skipped (RFC 9112 section 2.2); one more is a
/// [`HttpError::BadRequest`].
pub const MAX_LEADING_EMPTY_LINES: usize = 8;
/// Longest chunk-size line (size, extensions and line ending) of a chunked body, in bytes.
pub const MAX_CHUNK_SIZE_LINE: usize = 4096;
/// How many interim (1xx) responses [`read_response`] skips before giving up.
pub const MAX_INTERIM_RESPONSES: usize = 16;

/// Size limits for reading a message.
///
/// | field | default | exceeded |
/// |---|---|---|
/// | `max_request_line` | 8192 | [`HttpError::UriTooLong`] (414) |
/// | `max_header_bytes` | 16384 | [`HttpError::HeadersTooLarge`] (431) |
/// | `max_headers` | 100 | [`HttpError::HeadersTooLarge`] (431) |
/// | `max_body` | 1_048_576 | [`HttpError::PayloadTooLarge`] (413) |
///
/// # Examples
///
/// ```
/// use message_broker::http::Limits;
///
/// let limits = Limits { max_body: 64 * 1024, ..Limits::default() };
/// assert_eq!(limits.max_headers, 100);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (or response status line), excluding its line ending.
    pub max_request_line: usize,
    /// Largest header section: the sum of all header lines including their line endings, not
    /// counting the empty line that ends the section. Applies to chunked trailers separately.
    pub max_header_bytes: usize,
    /// Most header fields (lines) in one header section (or trailer section).
    pub max_headers: usize,
    /// Largest body, after chunked decoding.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: DEFAULT_MAX_REQUEST_LINE,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// The HTTP versions this module speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`: connections close after each message unless `Connection: keep-alive`.
    Http10,
    /// `HTTP/1.1`: persistent connections unless `Connection: close`.
    Http11,
}

impl Version {
    /// The version as it appears on the wire, e.g. `"HTTP/1.1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }

    /// Parses `HTTP/DIGIT.DIGIT`.
    ///
    /// # Errors
    ///
    /// [`HttpError::VersionNotSupported`] for a well-formed version other than 1.0 and 1.1,
    /// [`HttpError::BadRequest`] for anything else.
    pub(crate) fn parse(v: &[u8]) -> Result<Version, HttpError> {
        match v {
            [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                if major.is_ascii_digit() && minor.is_ascii_digit() =>
            {
                match (major, minor) {
                    (b'1', b'0') => Ok(Version::Http10),
                    (b'1', b'1') => Ok(Version::Http11),
                    _ => Err(HttpError::VersionNotSupported),
                }
            }
            _ => Err(HttpError::BadRequest("malformed http version")),
        }
    }
}

/// Whether a peer asked to keep the connection open, from its version and `Connection` header.
pub(crate) fn keep_alive(version: Version, headers: &Headers) -> bool {
    let close = headers.has_token("connection", "close");
    match version {
        Version::Http11 => !close,
        Version::Http10 => !close && headers.has_token("connection", "keep-alive"),
    }
}

/// `tchar` of RFC 9110 section 5.6.2: the bytes of a method or a header name.
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// [`is_tchar`] as a table: header names are checked byte by byte.
const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let others = *b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// A non-empty sequence of `tchar`s.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Converts a byte count to a `Read::take` argument without a lossy cast.
pub(crate) fn take_len(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parse_table() {
        let cases: &[(&[u8], Result<Version, &str>)] = &[
            (b"HTTP/1.1", Ok(Version::Http11)),
            (b"HTTP/1.0", Ok(Version::Http10)),
            (b"HTTP/2.0", Err("505")),
            (b"HTTP/1.2", Err("505")),
            (b"HTTP/0.9", Err("505")),
            (b"HTTP/1", Err("400")),
            (b"HTTX/1.1", Err("400")),
            (b"http/1.1", Err("400")),
            (b"HTTP/1.10", Err("400")),
            (b"HTTP/a.b", Err("400")),
            (b"", Err("400")),
        ];
        for (input, want) in cases {
            let got = Version::parse(input).map_err(|e| match e.status() {
                Some(505) => "505",
                Some(400) => "400",
                _ => "other",
            });
            assert_eq!(&got, want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn limits_default() {
        let l = Limits::default();
        assert_eq!(
            (
                l.max_request_line,
                l.max_header_bytes,
                l.max_headers,
                l.max_body
            ),
            (8192, 16384, 100, 1_048_576)
        );
    }

    #[test]
    fn keep_alive_table() {
        let cases: &[(Version, Option<&str>, bool)] = &[
            (Version::Http11, None, true),
            (Version::Http11, Some("close"), false),
            (Version::Http11, Some("keep-alive, Close"), false),
            (Version::Http11, Some("upgrade"), true),
            (Version::Http11, Some("closed"), true),
            (Version::Http10, None, false),
            (Version::Http10, Some("Keep-Alive"), true),
            (Version::Http10, Some("keep-alive, close"), false),
        ];
        for &(version, conn, want) in cases {
            let mut h = Headers::new();
            if let Some(v) = conn {
                h.append("Connection", v);
            }
            assert_eq!(keep_alive(version, &h), want, "{version:?} {conn:?}");
        }
    }
}
