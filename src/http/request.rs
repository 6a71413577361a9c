//! Reading a request: the request line, the header section, the body framing and the body.
//!
//! **Owns:** the request-line grammar, leading empty lines, how `Content-Length` and
//! `Transfer-Encoding` decide where a body ends (for responses too), `Expect` and keep-alive.
//!
//! **Must never:** read a body the caller has not asked for (so a server can answer
//! `Expect: 100-continue` or 413 first), or guess when the framing is ambiguous: every conflict
//! a front-end proxy could resolve differently is a [`HttpError::BadRequest`].

use std::io::{BufRead, Read};

use super::chunked::read_chunked;
use super::headers::{read_header_section, trim_ows_str};
use super::line::{FromReader, InMemory, Line, Lines, read_line};
use super::{
    Headers, HttpError, Limits, MAX_LEADING_EMPTY_LINES, Version, is_tchar, is_token, keep_alive,
    take_len,
};

/// How the body of a message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (a request with neither `Content-Length` nor `Transfer-Encoding`).
    Empty,
    /// Exactly this many bytes (`Content-Length`); may exceed `Limits::max_body`, which
    /// [`read_body`] reports.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request line and header section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, a token, case preserved (`POST`).
    pub method: String,
    /// The request target as sent: origin-form `/p?q`, absolute-form, authority-form or `*`.
    pub target: String,
    /// The protocol version.
    pub version: Version,
    /// The header fields.
    pub headers: Headers,
    /// Where the body ends.
    pub framing: BodyFraming,
    /// Whether the client wants the connection kept open after the response.
    pub keep_alive: bool,
    /// Whether the client sent `Expect: 100-continue` (HTTP/1.1 only) and waits for
    /// `100 Continue` (or a final status) before sending the body.
    pub expect_continue: bool,
}

impl RequestHead {
    /// The target without query or fragment; for absolute-form `http://host/p?q` it is `/p`
    /// (and `/` when the absolute form has no path).
    ///
    /// # Examples
    ///
    /// ```
    /// use message_broker::http::{read_request_head, Limits};
    ///
    /// let mut conn: &[u8] = b"GET http://broker:9999/sub/a%20b?x=1 HTTP/1.1\r\n\r\n";
    /// let head = read_request_head(&mut conn, &Limits::default())?.unwrap();
    /// assert_eq!(head.path(), "/sub/a%20b");
    /// assert_eq!(head.query(), Some("x=1"));
    /// # Ok::<(), message_broker::http::HttpError>(())
    /// ```
    pub fn path(&self) -> &str {
        let t = self.target.as_str();
        if t.starts_with('/') {
            // Origin form, the usual one: up to a query or fragment.
            let end = t.bytes().position(|b| b == b'?' || b == b'#');
            return end.and_then(|end| t.get(..end)).unwrap_or(t);
        }
        let t = match strip_scheme(t) {
            // Absolute form: the path starts at the first '/' after the authority.
            Some(rest) => match rest.find(['/', '?', '#']).and_then(|i| rest.get(i..)) {
                Some(path) if path.starts_with('/') => path,
                _ => return "/",
            },
            None => t,
        };
        t.split(['?', '#']).next().unwrap_or(t)
    }

    /// The query (after `?`, before any `#`), if the target has one.
    pub fn query(&self) -> Option<&str> {
        let (_, q) = self.target.split_once('?')?;
        q.split('#').next()
    }
}

/// The part after `http://` or `https://` (case-insensitive), if `t` is in absolute form.
fn strip_scheme(t: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let (head, rest) = t.split_at_checked(scheme.len())?;
        head.eq_ignore_ascii_case(scheme).then_some(rest)
    })
}

/// Reads a request line and header section and decides the body framing.
///
/// Returns `Ok(None)` when the peer closed cleanly (or sent only empty lines) before the first
/// byte of a request. Up to [`MAX_LEADING_EMPTY_LINES`] empty lines before the request line are
/// skipped. The body is left unread: call [`read_body`] with the returned framing.
///
/// # Errors
///
/// - [`HttpError::UriTooLong`]: request line over `limits.max_request_line`.
/// - [`HttpError::HeadersTooLarge`]: header section over `limits.max_header_bytes` or
///   `limits.max_headers`.
/// - [`HttpError::VersionNotSupported`]: a well-formed version other than 1.0 and 1.1.
/// - [`HttpError::ExpectationFailed`]: an HTTP/1.1 `Expect` other than `100-continue`.
/// - [`HttpError::BadRequest`]: anything malformed, including ambiguous framing
///   (`Transfer-Encoding` with `Content-Length`, conflicting lengths, a coding other than
///   exactly `chunked`, `Transfer-Encoding` in HTTP/1.0).
/// - [`HttpError::UnexpectedEof`]: the peer closed after the first byte of the request.
/// - [`HttpError::Io`]: transport errors and timeouts.
///
/// # Examples
///
/// ```
/// use message_broker::http::{read_request_head, BodyFraming, Limits, Version};
///
/// let mut conn: &[u8] = b"POST /hb HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
/// let head = read_request_head(&mut conn, &Limits::default())?.unwrap();
/// assert_eq!((head.method.as_str(), head.version), ("POST", Version::Http10));
/// assert_eq!(head.framing, BodyFraming::Empty);
/// assert!(head.keep_alive);
/// // The peer then closes: no request, no error.
/// assert!(read_request_head(&mut conn, &Limits::default())?.is_none());
/// # Ok::<(), message_broker::http::HttpError>(())
/// ```
pub fn read_request_head<R: BufRead>(
    r: &mut R,
    limits: &Limits,
) -> Result<Option<RequestHead>, HttpError> {
    if !skip_empty_lines(r)? {
        return Ok(None);
    }
    // Most heads have arrived whole: they are parsed where they lie, with no
    // line copied (and, if one has not, it is read line by line).
    let (whole, used) = {
        let mut lines = InMemory::new(r.fill_buf()?);
        (parse_head(&mut lines, limits), lines.used())
    };
    if !matches!(whole, Err(HttpError::UnexpectedEof)) {
        r.consume(used);
        return whole.map(Some);
    }
    let mut line = Vec::with_capacity(256);
    parse_head(&mut FromReader { r, line: &mut line }, limits).map(Some)
}

/// A request head from its first line on.
fn parse_head(lines: &mut impl Lines, limits: &Limits) -> Result<RequestHead, HttpError> {
    let (found, line) = lines.next_line(limits.max_request_line.saturating_add(2))?;
    match found {
        Line::Complete { .. } if line.len() <= limits.max_request_line => {}
        Line::Complete { .. } | Line::TooLong => return Err(HttpError::UriTooLong),
        Line::Eof { .. } => return Err(HttpError::UnexpectedEof),
    };
    let (method, target, version) = parse_request_line(line)?;
    let headers = read_header_section(lines, limits)?;
    let framing = message_framing(version, &headers)?.unwrap_or(BodyFraming::Empty);
    let expect_continue = match version {
        Version::Http11 => expects_continue(&headers)?,
        Version::Http10 => false,
    };
    Ok(RequestHead {
        method,
        target,
        version,
        keep_alive: keep_alive(version, &headers),
        headers,
        framing,
        expect_continue,
    })
}

/// Skips empty lines; `false` if the reader ended before a request began.
fn skip_empty_lines<R: BufRead>(r: &mut R) -> Result<bool, HttpError> {
    let mut skipped = 0;
    loop {
        let first = loop {
            match r.fill_buf() {
                Ok(buf) => break buf.first().copied(),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        };
        match first {
            None => return Ok(false),
            Some(b'\r' | b'\n') => {
                if skipped == MAX_LEADING_EMPTY_LINES {
                    return Err(HttpError::BadRequest("too many empty lines"));
                }
                match read_line(r, 2, &mut Vec::new())? {
                    Line::Complete { .. } => skipped += 1,
                    Line::TooLong => return Err(HttpError::BadRequest("bare cr")),
                    Line::Eof { .. } => return Ok(false),
                }
            }
            // Fail fast on bytes that cannot start a method (a TLS handshake, binary junk)
            // instead of waiting for a line feed that may never come.
            Some(b) if !is_tchar(b) => return Err(HttpError::BadRequest("not an http request")),
            Some(_) => return Ok(true),
        }
    }
}

/// Splits `method SP request-target SP HTTP-version`, single spaces only.
fn parse_request_line(line: &[u8]) -> Result<(String, String, Version), HttpError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest("malformed request line"));
    };
    if !is_token(method) {
        return Err(HttpError::BadRequest("invalid method"));
    }
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(HttpError::BadRequest("invalid request target"));
    }
    let version = Version::parse(version)?;
    // Both are printable ASCII by now, so the lossy conversion is exact.
    Ok((
        super::string_lossy(method),
        super::string_lossy(target),
        version,
    ))
}

/// The framing announced by `Transfer-Encoding` / `Content-Length`, or `None` if neither is
/// present (a request then has no body; a response runs to the end of the connection).
///
/// # Errors
///
/// [`HttpError::BadRequest`] for every ambiguity (RFC 9112 section 6).
pub(crate) fn message_framing(
    version: Version,
    headers: &Headers,
) -> Result<Option<BodyFraming>, HttpError> {
    let has_te = headers.contains("transfer-encoding");
    let has_cl = headers.contains("content-length");
    if has_te && has_cl {
        return Err(HttpError::BadRequest(
            "both transfer-encoding and content-length",
        ));
    }
    if has_te {
        if version == Version::Http10 {
            return Err(HttpError::BadRequest("transfer-encoding in http/1.0"));
        }
        let mut codings = headers.list("transfer-encoding");
        return match (codings.next(), codings.next()) {
            (Some(c), None) if c.eq_ignore_ascii_case("chunked") => Ok(Some(BodyFraming::Chunked)),
            _ => Err(HttpError::BadRequest("unknown transfer coding")),
        };
    }
    let mut length = None;
    // The elements of every Content-Length list, as `headers.list` gives them.
    for value in headers.get_all("content-length") {
        for element in value.split(',') {
            let n = parse_content_length(trim_ows_str(element))?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::BadRequest("conflicting content-length"));
            }
            length = Some(n);
        }
    }
    Ok(length.map(BodyFraming::Length))
}

/// `1*DIGIT`, no sign, no whitespace, no overflow.
fn parse_content_length(value: &str) -> Result<usize, HttpError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::BadRequest("invalid content-length"));
    }
    value.bytes().try_fold(0usize, |n, digit| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(digit - b'0')))
            .ok_or(HttpError::BadRequest("content-length overflow"))
    })
}

/// `true` for `Expect: 100-continue`, an error for any other expectation.
fn expects_continue(headers: &Headers) -> Result<bool, HttpError> {
    let mut any = false;
    for value in headers.list("expect") {
        if !value.eq_ignore_ascii_case("100-continue") {
            return Err(HttpError::ExpectationFailed);
        }
        any = true;
    }
    Ok(any)
}

/// Reads the body announced by `framing`, decoded, bounded by `limits.max_body`.
///
/// A [`BodyFraming::Length`] over the limit fails before reading a byte of it. A chunked body
/// fails as soon as the decoded total would pass the limit; chunk extensions are ignored and
/// trailers are read (bounded like a header section) and discarded.
///
/// # Errors
///
/// [`HttpError::PayloadTooLarge`] over `limits.max_body`, [`HttpError::UnexpectedEof`] if the
/// reader ends first, [`HttpError::BadRequest`] for malformed chunked coding,
/// [`HttpError::HeadersTooLarge`] for oversized trailers, [`HttpError::Io`] for transport errors.
///
/// # Examples
///
/// ```
/// use message_broker::http::{read_body, BodyFraming, HttpError, Limits};
///
/// let mut conn: &[u8] = b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n";
/// assert_eq!(read_body(&mut conn, BodyFraming::Chunked, &Limits::default())?, b"hello");
///
/// let small = Limits { max_body: 4, ..Limits::default() };
/// let mut conn: &[u8] = b"hello";
/// assert!(matches!(
///     read_body(&mut conn, BodyFraming::Length(5), &small),
///     Err(HttpError::PayloadTooLarge)
/// ));
/// assert_eq!(conn, b"hello"); // nothing was read
/// # Ok::<(), HttpError>(())
/// ```
pub fn read_body<R: BufRead>(
    r: &mut R,
    framing: BodyFraming,
    limits: &Limits,
) -> Result<Vec<u8>, HttpError> {
    match framing {
        BodyFraming::Empty => Ok(Vec::new()),
        BodyFraming::Length(n) if n > limits.max_body => Err(HttpError::PayloadTooLarge),
        BodyFraming::Length(n) => read_exact_body(r, n),
        BodyFraming::Chunked => read_chunked(r, limits),
    }
}

/// Initial capacity of a body buffer: a peer's announced length is not trusted for more.
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// Reads exactly `n` bytes; the caller has checked `n` against the body limit.
pub(crate) fn read_exact_body<R: BufRead>(r: &mut R, n: usize) -> Result<Vec<u8>, HttpError> {
    if n == 0 {
        // Nothing to wait for (a read now would wait for the next message).
        return Ok(Vec::new());
    }
    if let Some(whole) = r.fill_buf()?.get(..n) {
        // Buffered whole, as a pipelined request's body mostly is.
        let body = whole.to_vec();
        r.consume(n);
        return Ok(body);
    }
    let mut body = Vec::with_capacity(n.min(INITIAL_BODY_CAPACITY));
    Read::take(r, take_len(n)).read_to_end(&mut body)?;
    if body.len() < n {
        return Err(HttpError::UnexpectedEof);
    }
    Ok(body)
}

#[cfg(test)]
mod limit_tests;
#[cfg(test)]
pub(crate) mod tests;
