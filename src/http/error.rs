//! The error type of the HTTP layer and its mapping to a status code.
//!
//! **Owns:** [`HttpError`], its `Display` text (short, lowercase, fit for a `text/plain` body)
//! and the one function that maps a framing error to an HTTP status.
//!
//! **Must never:** decide what the caller does with the connection beyond saying that it must be
//! closed; logging and metrics belong to the caller.

use std::fmt;
use std::io;

/// Everything that can go wrong reading or framing a message.
///
/// After any of these the connection must be closed ([`HttpError::must_close`]); for the ones
/// with a [`status`](HttpError::status) the server may first send that status.
///
/// # Examples
///
/// ```
/// use message_broker::http::{read_request_head, HttpError, Limits};
///
/// let mut conn: &[u8] = b"GET / HTTP/2.0\r\n\r\n";
/// match read_request_head(&mut conn, &Limits::default()) {
///     Err(e @ HttpError::VersionNotSupported) => {
///         assert_eq!(e.status(), Some(505));
///         assert_eq!(e.to_string(), "http version not supported");
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug)]
pub enum HttpError {
    /// Transport error, including timeouts (`WouldBlock` / `TimedOut` kinds).
    Io(io::Error),
    /// The peer closed the connection in the middle of a message.
    UnexpectedEof,
    /// Malformed message (400); the text is a short lowercase reason.
    BadRequest(&'static str),
    /// Request line longer than [`Limits::max_request_line`](super::Limits::max_request_line)
    /// (414).
    UriTooLong,
    /// Header section over [`Limits::max_header_bytes`](super::Limits::max_header_bytes) or
    /// [`Limits::max_headers`](super::Limits::max_headers) (431).
    HeadersTooLarge,
    /// Body over [`Limits::max_body`](super::Limits::max_body) (413).
    PayloadTooLarge,
    /// An `Expect` header other than `100-continue` (417).
    ExpectationFailed,
    /// A well-formed HTTP version other than 1.0 and 1.1 (505).
    VersionNotSupported,
}

impl HttpError {
    /// The status code a server should answer with, or `None` when there is nobody to answer
    /// ([`HttpError::Io`], [`HttpError::UnexpectedEof`]).
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Io(_) | HttpError::UnexpectedEof => None,
            HttpError::BadRequest(_) => Some(400),
            HttpError::UriTooLong => Some(414),
            HttpError::HeadersTooLarge => Some(431),
            HttpError::PayloadTooLarge => Some(413),
            HttpError::ExpectationFailed => Some(417),
            HttpError::VersionNotSupported => Some(505),
        }
    }

    /// Whether the connection must be closed: always. After a framing error the position of the
    /// next message is unknown, so the connection cannot be reused (the caller may still send
    /// [`status`](HttpError::status) first).
    pub fn must_close(&self) -> bool {
        true
    }

    /// Whether this is a read or write timeout of the underlying socket (an [`io::Error`] of
    /// kind `WouldBlock` or `TimedOut`), e.g. to answer 408 or to name the close "idle".
    pub fn is_timeout(&self) -> bool {
        matches!(self, HttpError::Io(e)
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Io(e) => write!(f, "i/o error: {e}"),
            HttpError::UnexpectedEof => f.write_str("connection closed mid-message"),
            HttpError::BadRequest(reason) => write!(f, "bad request: {reason}"),
            HttpError::UriTooLong => f.write_str("uri too long"),
            HttpError::HeadersTooLarge => f.write_str("request header fields too large"),
            HttpError::PayloadTooLarge => f.write_str("payload too large"),
            HttpError::ExpectationFailed => f.write_str("expectation failed"),
            HttpError::VersionNotSupported => f.write_str("http version not supported"),
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HttpError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for HttpError {
    /// Wraps `e`, except that [`io::ErrorKind::UnexpectedEof`] becomes
    /// [`HttpError::UnexpectedEof`].
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            HttpError::UnexpectedEof
        } else {
            HttpError::Io(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn status_display_and_close_table() {
        let cases: Vec<(HttpError, Option<u16>, &str)> = vec![
            (
                HttpError::UnexpectedEof,
                None,
                "connection closed mid-message",
            ),
            (
                HttpError::BadRequest("conflicting content-length"),
                Some(400),
                "bad request: conflicting content-length",
            ),
            (HttpError::UriTooLong, Some(414), "uri too long"),
            (
                HttpError::HeadersTooLarge,
                Some(431),
                "request header fields too large",
            ),
            (HttpError::PayloadTooLarge, Some(413), "payload too large"),
            (
                HttpError::ExpectationFailed,
                Some(417),
                "expectation failed",
            ),
            (
                HttpError::VersionNotSupported,
                Some(505),
                "http version not supported",
            ),
        ];
        for (err, status, text) in cases {
            assert_eq!(err.status(), status);
            assert_eq!(err.to_string(), text);
            assert!(err.must_close());
            assert!(err.source().is_none());
        }
    }

    #[test]
    fn from_io_error() {
        let eof: HttpError = io::Error::from(io::ErrorKind::UnexpectedEof).into();
        assert!(matches!(eof, HttpError::UnexpectedEof));

        let timeout: HttpError = io::Error::from(io::ErrorKind::WouldBlock).into();
        assert!(timeout.is_timeout());
        assert_eq!(timeout.status(), None);
        assert!(timeout.source().is_some());
        assert!(timeout.must_close());

        let reset: HttpError = io::Error::from(io::ErrorKind::ConnectionReset).into();
        assert!(matches!(reset, HttpError::Io(_)));
        assert!(!reset.is_timeout());
        assert!(reset.to_string().starts_with("i/o error: "));
    }
}
