//! Writing messages: complete responses (the broker) and complete requests (deliveries and the
//! client library).
//!
//! **Owns:** the byte layout of what we send, reason phrases, and refusing to emit a header that
//! could split the message (CR/LF in a value, a non-token name).
//!
//! **Must never:** flush or buffer on its own (the caller wraps the stream in a `BufWriter` and
//! flushes once per message), or send a framing header the caller did not ask for twice.

use std::io::{self, Write};

use super::is_token;

/// Writes a complete HTTP/1.1 response into `w`.
///
/// The head is the status line with [`reason_phrase`]`(status)`, then `Content-Length`,
/// `Content-Type: text/plain; charset=utf-8` if `body` is non-empty and `extra_headers` has no
/// `Content-Type`, `Connection: close` if `close`, then `extra_headers` in order. For 1xx and 204
/// responses, which must not carry a body or a `Content-Length` (RFC 9110 section 8.6), neither
/// is written. The caller buffers and flushes.
///
/// # Errors
///
/// [`io::ErrorKind::InvalidInput`] (nothing written) if an extra header has a name that is not a
/// token, a value with control characters other than HTAB, or is `Content-Length` /
/// `Transfer-Encoding` (framing is this function's job), or if a 1xx/204 response has a body;
/// otherwise any error of `w`.
///
/// # Examples
///
/// ```
/// use message_broker::http::write_response;
///
/// let mut out = Vec::new();
/// write_response(&mut out, 405, &[("Allow", "POST")], b"method not allowed", true)?;
/// assert_eq!(
///     String::from_utf8(out).unwrap(),
///     "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 18\r\n\
///      Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nAllow: POST\r\n\r\n\
///      method not allowed"
/// );
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_response<W: Write>(
    w: &mut W,
    status: u16,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    for &(name, value) in extra_headers {
        check_header(name, value)?;
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Err(invalid("framing headers are written by write_response"));
        }
    }
    let bodiless = (100..200).contains(&status) || status == 204;
    if bodiless && !body.is_empty() {
        return Err(invalid("1xx and 204 responses have no body"));
    }
    let mut head = Head::new();
    head.put(b"HTTP/1.1 ");
    head.decimal(u64::from(status));
    head.put(b" ");
    head.put(reason_phrase(status).as_bytes());
    head.put(b"\r\n");
    if !bodiless {
        head.put(b"Content-Length: ");
        head.decimal(body.len() as u64);
        head.put(b"\r\n");
    }
    let has_type = extra_headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    if !body.is_empty() && !has_type {
        head.put(b"Content-Type: text/plain; charset=utf-8\r\n");
    }
    if close {
        head.put(b"Connection: close\r\n");
    }
    head.fields(extra_headers);
    head.send(w, body)
}

/// Writes a complete HTTP/1.1 request with `Host`, `Content-Length` (always, also 0) and
/// `headers` (such as `Content-Type` or `Authorization`). The caller buffers and flushes.
///
/// # Errors
///
/// [`io::ErrorKind::InvalidInput`] (nothing written) if `method` is not a token, `target` is
/// empty or holds spaces or control characters, `host` holds control characters, or a header
/// is invalid or is `Content-Length` / `Transfer-Encoding`; otherwise any error of `w`.
///
/// # Examples
///
/// ```
/// use message_broker::http::write_request;
///
/// let mut out = Vec::new();
/// let headers = [("Content-Type", "application/json")];
/// write_request(&mut out, "POST", "/msg", "10.0.0.7:10000", &headers, b"{}")?;
/// assert_eq!(
///     out,
///     b"POST /msg HTTP/1.1\r\nHost: 10.0.0.7:10000\r\nContent-Length: 2\r\n\
///       Content-Type: application/json\r\n\r\n{}"
/// );
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_request<W: Write>(
    w: &mut W,
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    if !is_token(method.as_bytes()) {
        return Err(invalid("method is not a token"));
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("request target has spaces or control characters"));
    }
    check_header("Host", host)?;
    for &(name, value) in headers {
        check_header(name, value)?;
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Err(invalid("framing headers are written by write_request"));
        }
    }
    let mut head = Head::new();
    head.put(method.as_bytes());
    head.put(b" ");
    head.put(target.as_bytes());
    head.put(b" HTTP/1.1\r\nHost: ");
    head.put(host.as_bytes());
    head.put(b"\r\nContent-Length: ");
    head.decimal(body.len() as u64);
    head.put(b"\r\n");
    head.fields(headers);
    head.send(w, body)
}

/// A message head being put together: on the stack while it is short (a
/// publish's answer, a delivery's request), so that writing one allocates
/// nothing and formats nothing.
struct Head {
    short: [u8; HEAD_ON_STACK],
    len: usize,
    /// Set once the head outgrows `short`: the whole head.
    long: Vec<u8>,
}

const HEAD_ON_STACK: usize = 256;

impl Head {
    fn new() -> Head {
        Head {
            short: [0; HEAD_ON_STACK],
            len: 0,
            long: Vec::new(),
        }
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if self.long.is_empty() {
            if let Some(room) = self.short.get_mut(self.len..self.len + bytes.len()) {
                room.copy_from_slice(bytes);
                self.len += bytes.len();
                return;
            }
            self.long.extend_from_slice(&self.short[..self.len]);
        }
        self.long.extend_from_slice(bytes);
    }

    fn decimal(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        self.put(decimal(n, &mut digits).as_bytes());
    }

    /// `name: value` lines, then the empty line that ends the head.
    fn fields(&mut self, fields: &[(&str, &str)]) {
        for (name, value) in fields {
            self.put(name.as_bytes());
            self.put(b": ");
            self.put(value.as_bytes());
            self.put(b"\r\n");
        }
        self.put(b"\r\n");
    }

    /// Writes the head, then `body`.
    fn send<W: Write>(&self, w: &mut W, body: &[u8]) -> io::Result<()> {
        if self.long.is_empty() {
            w.write_all(&self.short[..self.len])?;
        } else {
            w.write_all(&self.long)?;
        }
        w.write_all(body)
    }
}

/// `202 Accepted` with an empty body and nothing else, byte for byte as
/// [`write_response`] writes it (a test holds them equal): the answer to a
/// plain publish and to a delivery, sent and recognized as a constant.
pub(crate) const PLAIN_ACCEPTED: &[u8] = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";

/// `n` in decimal, written into `buf`.
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[at..]).unwrap_or("0")
}

/// The reason phrase for `status`, or `""` for a code without one here.
///
/// # Examples
///
/// ```
/// use message_broker::http::reason_phrase;
///
/// assert_eq!(reason_phrase(202), "Accepted");
/// assert_eq!(reason_phrase(799), "");
/// ```
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "",
    }
}

fn check_header(name: &str, value: &str) -> io::Result<()> {
    if !is_token(name.as_bytes()) {
        return Err(invalid("header name is not a token"));
    }
    if !value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
    {
        return Err(invalid("header value has control characters"));
    }
    Ok(())
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Limits, read_body, read_request_head, read_response};

    #[test]
    fn decimal_writes_every_width() {
        let mut buf = [0u8; 20];
        for n in [0, 7, 10, 99, 1_796_063_850_630_306, u64::MAX] {
            assert_eq!(decimal(n, &mut buf), n.to_string());
        }
    }

    #[test]
    fn a_head_past_the_stack_buffer_is_written_whole() {
        let long = "v".repeat(300);
        let mut out = Vec::new();
        write_request(&mut out, "POST", "/msg", "h", &[("X-Long", &long)], b"{}").unwrap();
        let want = format!(
            "POST /msg HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nX-Long: {long}\r\n\r\n{{}}"
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    fn response(status: u16, extra: &[(&str, &str)], body: &[u8], close: bool) -> String {
        let mut out = Vec::new();
        write_response(&mut out, status, extra, body, close).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn response_layout_table() {
        let cases = [
            (
                response(202, &[], b"", false),
                "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
            ),
            (
                response(400, &[], b"bad", true),
                "HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nContent-Type: text/plain; \
                 charset=utf-8\r\nConnection: close\r\n\r\nbad",
            ),
            (
                response(200, &[("content-type", "application/json")], b"{}", false),
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-type: application/json\r\n\r\n{}",
            ),
            (
                response(100, &[], b"", false),
                "HTTP/1.1 100 Continue\r\n\r\n",
            ),
            (
                response(204, &[], b"", true),
                "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
            ),
            (
                response(799, &[], b"", false),
                "HTTP/1.1 799 \r\nContent-Length: 0\r\n\r\n",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn invalid_input_writes_nothing() {
        type Extra = &'static [(&'static str, &'static str)];
        let bad: &[(u16, Extra, &[u8])] = &[
            (200, &[("X", "a\r\nInjected: 1")], b""),
            (200, &[("Bad Name", "1")], b""),
            (200, &[("Content-Length", "1")], b""),
            (200, &[("transfer-encoding", "chunked")], b""),
            (204, &[], b"body"),
            (100, &[], b"body"),
        ];
        for (status, extra, body) in bad {
            let mut out = Vec::new();
            let err = write_response(&mut out, *status, extra, body, false).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(out.is_empty());
        }
        let mut out = Vec::new();
        let ct: &[(&str, &str)] = &[("Content-Type", "a\nb")];
        let framing: &[(&str, &str)] = &[("Content-Length", "1")];
        for (m, t, h, headers) in [
            ("PO ST", "/", "h", &[][..]),
            ("POST", "/a b", "h", &[]),
            ("POST", "", "h", &[]),
            ("POST", "/", "h\r\nX: 1", &[]),
            ("POST", "/", "h", ct),
            ("POST", "/", "h", framing),
        ] {
            let err = write_request(&mut out, m, t, h, headers, b"").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(out.is_empty());
        }
    }

    #[test]
    fn written_messages_parse_back() {
        let l = Limits::default();
        let mut out = Vec::new();
        write_request(&mut out, "POST", "/pub/a%20b", "127.0.0.1:9999", &[], b"").unwrap();
        let headers = [
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer t"),
        ];
        write_request(&mut out, "POST", "/msg", "h", &headers, b"{\"a\":1}").unwrap();
        let mut r: &[u8] = &out;
        let first = read_request_head(&mut r, &l).unwrap().unwrap();
        assert_eq!(read_body(&mut r, first.framing, &l).unwrap(), b"");
        assert_eq!(first.headers.get("host"), Some("127.0.0.1:9999"));
        let second = read_request_head(&mut r, &l).unwrap().unwrap();
        assert_eq!(second.headers.get("content-type"), Some("application/json"));
        assert_eq!(second.headers.get("authorization"), Some("Bearer t"));
        assert_eq!(read_body(&mut r, second.framing, &l).unwrap(), b"{\"a\":1}");
        assert!(r.is_empty());

        let mut out = Vec::new();
        write_response(&mut out, 100, &[], b"", false).unwrap();
        write_response(&mut out, 503, &[("Retry-After", "1")], b"overloaded", true).unwrap();
        let resp = read_response(&mut &out[..], &l).unwrap();
        assert_eq!(
            (resp.status, resp.reason.as_str()),
            (503, "Service Unavailable")
        );
        assert_eq!(
            (resp.body.as_slice(), resp.keep_alive),
            (&b"overloaded"[..], false)
        );
    }

    #[test]
    fn every_known_status_has_a_phrase() {
        for s in [
            100, 200, 202, 400, 401, 404, 405, 408, 413, 414, 417, 431, 500, 503, 505, 507,
        ] {
            assert!(!reason_phrase(s).is_empty(), "{s}");
        }
        assert_eq!(reason_phrase(413), "Payload Too Large");
        assert_eq!(reason_phrase(0), "");
    }
}
