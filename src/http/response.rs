//! Reading a response: what the broker reads back from a subscriber and the client from the
//! broker.
//!
//! **Owns:** the status-line grammar, skipping interim (1xx) responses, and which responses have
//! no body or run to the end of the connection.
//!
//! **Must never:** read past the end of the final response's body while the connection can be
//! reused, or keep a connection alive whose body ended at EOF.

use std::io::{self, BufRead, Read};

use super::headers::read_header_section;
use super::line::{FromReader, Line, read_line};
use super::request::{message_framing, read_body};
use super::{Headers, HttpError, Limits, MAX_INTERIM_RESPONSES, Version};
use super::{keep_alive, take_len};

/// A complete final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The protocol version of the status line.
    pub version: Version,
    /// The status code, 100 to 999.
    pub status: u16,
    /// The reason phrase as sent (may be empty).
    pub reason: String,
    /// The header fields.
    pub headers: Headers,
    /// The body, decoded if it was chunked.
    pub body: Vec<u8>,
    /// Whether the connection can carry another request: `false` after `Connection: close`, an
    /// HTTP/1.0 response without `Connection: keep-alive`, a body read to EOF, or a 101.
    pub keep_alive: bool,
}

/// Reads one final response, skipping up to [`MAX_INTERIM_RESPONSES`] interim (1xx) responses.
///
/// The body is delimited by `Content-Length` or chunked coding; 204, 304 and 101 have none;
/// otherwise it runs to EOF (and `keep_alive` is `false`). It is bounded by `limits.max_body`;
/// the status line by `limits.max_request_line`.
///
/// # Errors
///
/// [`HttpError::UnexpectedEof`] if the connection ends in the middle of the response;
/// [`HttpError::Io`] of kind [`ConnectionAborted`](std::io::ErrorKind::ConnectionAborted) if it
/// ends before the first byte of it (e.g. the peer closed an idle kept-alive connection);
/// [`HttpError::BadRequest`] for a malformed status line, header or framing
/// (the same ambiguity rules as requests), [`HttpError::VersionNotSupported`] for a well-formed
/// version other than 1.0/1.1, [`HttpError::HeadersTooLarge`] and
/// [`HttpError::PayloadTooLarge`] over the limits, [`HttpError::Io`] for transport errors.
///
/// # Examples
///
/// ```
/// use message_broker::http::{read_response, Limits};
///
/// let mut conn: &[u8] =
///     b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
/// let resp = read_response(&mut conn, &Limits::default())?;
/// assert_eq!((resp.status, resp.reason.as_str()), (202, "Accepted"));
/// assert!(resp.body.is_empty() && resp.keep_alive);
/// # Ok::<(), message_broker::http::HttpError>(())
/// ```
pub fn read_response<R: BufRead>(r: &mut R, limits: &Limits) -> Result<Response, HttpError> {
    let (version, status, reason, headers) = read_response_head(r, limits)?;
    let mut keep_alive = keep_alive(version, &headers) && status != 101;
    let body = if matches!(status, 101 | 204 | 304) {
        Vec::new()
    } else {
        match message_framing(version, &headers)? {
            Some(framing) => read_body(r, framing, limits)?,
            None => {
                keep_alive = false;
                read_to_eof(r, limits)?
            }
        }
    };
    Ok(Response {
        version,
        status,
        reason,
        headers,
        body,
        keep_alive,
    })
}

/// The status line and headers of the next final response, skipping interim (1xx) ones; the
/// body is left to the caller (a stream's runs as long as the connection).
///
/// # Errors
///
/// As [`read_response`], for the head.
pub(crate) fn read_response_head<R: BufRead>(
    r: &mut R,
    limits: &Limits,
) -> Result<(Version, u16, String, Headers), HttpError> {
    let mut line = Vec::with_capacity(128);
    for skipped in 0..=MAX_INTERIM_RESPONSES {
        match read_line(r, limits.max_request_line.saturating_add(2), &mut line)? {
            Line::Complete { .. } if line.len() <= limits.max_request_line => {}
            Line::Complete { .. } | Line::TooLong => {
                return Err(HttpError::BadRequest("status line too long"));
            }
            Line::Eof { partial: false } if skipped == 0 => return Err(closed_before_response()),
            Line::Eof { .. } => return Err(HttpError::UnexpectedEof),
        };
        let (version, status, reason) = parse_status_line(&line)?;
        let headers = read_header_section(&mut FromReader { r, line: &mut line }, limits)?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        return Ok((version, status, reason, headers));
    }
    Err(HttpError::BadRequest("too many interim responses"))
}

/// The error for a connection that ended before the first byte of a response: not
/// [`HttpError::UnexpectedEof`] (nothing of a message arrived), so a client can tell a stale
/// kept-alive connection from a response cut short.
fn closed_before_response() -> HttpError {
    HttpError::Io(io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed before the response",
    ))
}

/// `HTTP-version SP 3DIGIT [ SP reason-phrase ]`.
fn parse_status_line(line: &[u8]) -> Result<(Version, u16, String), HttpError> {
    let (version, rest) = line.split_at(line.len().min(8));
    let version = Version::parse(version)?;
    let rest = rest
        .strip_prefix(b" ")
        .ok_or(HttpError::BadRequest("malformed status line"))?;
    let (code, rest) = rest.split_at(rest.len().min(3));
    let status = match code {
        &[a, b, c] if code.iter().all(u8::is_ascii_digit) => {
            (u16::from(a - b'0') * 100) + (u16::from(b - b'0') * 10) + u16::from(c - b'0')
        }
        _ => return Err(HttpError::BadRequest("malformed status code")),
    };
    if status < 100 {
        return Err(HttpError::BadRequest("malformed status code"));
    }
    let reason = match rest {
        [] => &[][..],
        [b' ', reason @ ..] => reason,
        _ => return Err(HttpError::BadRequest("malformed status line")),
    };
    if !reason
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
    {
        return Err(HttpError::BadRequest("invalid reason phrase"));
    }
    Ok((version, status, super::string_lossy(reason)))
}

/// A body delimited by the end of the connection, at most `limits.max_body` bytes.
fn read_to_eof<R: BufRead>(r: &mut R, limits: &Limits) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    Read::take(r, take_len(limits.max_body).saturating_add(1)).read_to_end(&mut body)?;
    if body.len() > limits.max_body {
        return Err(HttpError::PayloadTooLarge);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<(u16, String, Vec<u8>, bool), String>;

    fn read(input: &[u8], limits: &Limits) -> Outcome {
        let mut r = input;
        read_response(&mut r, limits)
            .map(|resp| (resp.status, resp.reason, resp.body, resp.keep_alive))
            .map_err(|e| format!("{e:?}"))
    }

    fn ok(status: u16, reason: &str, body: &[u8], keep: bool) -> Outcome {
        Ok((status, reason.to_string(), body.to_vec(), keep))
    }

    #[test]
    fn response_table() {
        let l = Limits::default();
        let bad = |s: &str| Err(format!("BadRequest({s:?})"));
        let cases: Vec<(&[u8], Outcome)> = vec![
            (b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", ok(202, "Accepted", b"", true)),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", ok(200, "OK", b"hi", true)),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n1;x\r\n!\r\n0\r\nT: 1\r\n\r\n",
                ok(200, "OK", b"hi!", true)),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
                ok(202, "Accepted", b"", true)),
            (b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
                ok(204, "No Content", b"", true)),
            (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", ok(200, "OK", b"until the end", false)),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", ok(200, "OK", b"x", false)),
            (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
                ok(200, "OK", b"x", true)),
            (b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                ok(202, "Accepted", b"", false)),
            (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", ok(304, "Not Modified", b"", true)),
            (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
                ok(101, "Switching Protocols", b"", false)),
            (b"HTTP/1.1 202\r\nContent-Length: 0\r\n\r\n", ok(202, "", b"", true)),
            (b"HTTP/1.1 202 \r\nContent-Length: 0\r\n\r\n", ok(202, "", b"", true)),
            (b"HTTP/1.1 599 Some Thing \r\nContent-Length: 0\r\n\r\n", ok(599, "Some Thing ", b"", true)),
            (b"HTTP/1.1 202 Accepted\nContent-Length: 0\n\n", ok(202, "Accepted", b"", true)),
            (b"garbage\r\n\r\n", bad("malformed http version")),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n", bad("malformed http version")),
            (b"HTTP/1.1 20 OK\r\n\r\n", bad("malformed status code")),
            (b"HTTP/1.1 2000 OK\r\n\r\n", bad("malformed status line")),
            (b"HTTP/1.1 abc OK\r\n\r\n", bad("malformed status code")),
            (b"HTTP/1.1 099 Low\r\n\r\n", bad("malformed status code")),
            (b"HTTP/1.1  200 OK\r\n\r\n", bad("malformed status code")),
            (b"HTTP/1.1\r\n\r\n", bad("malformed status line")),
            (b"HTTP/1.1 200 O\x01K\r\n\r\n", bad("invalid reason phrase")),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
                bad("conflicting content-length")),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", bad("unknown transfer coding")),
            (b"HTTP/2.0 200 OK\r\n\r\n", Err("VersionNotSupported".into())),
            (b"", Err("Io(Custom { kind: ConnectionAborted, error: \"connection closed before the response\" })".into())),
            (b"HTTP/1.1 202 Acc", Err("UnexpectedEof".into())),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc", Err("UnexpectedEof".into())),
            (b"HTTP/1.1 100 Continue\r\n\r\n", Err("UnexpectedEof".into())),
        ];
        for (input, want) in cases {
            assert_eq!(
                read(input, &l),
                want,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn body_limits_exact_and_plus_one() {
        let l = Limits {
            max_body: 4,
            ..Limits::default()
        };
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\n\r\nabcd", &l),
            ok(200, "OK", b"abcd", false)
        );
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\n\r\nabcde", &l),
            Err("PayloadTooLarge".into())
        );
        assert!(read(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd", &l).is_ok());
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde", &l),
            Err("PayloadTooLarge".into())
        );
    }

    #[test]
    fn too_many_interim_responses() {
        let mut wire = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM_RESPONSES);
        wire.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(read(&wire, &Limits::default()).is_ok());
        let mut wire = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM_RESPONSES + 1);
        wire.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            read(&wire, &Limits::default()),
            Err("BadRequest(\"too many interim responses\")".into())
        );
    }

    #[test]
    fn keep_alive_responses_read_back_to_back() {
        let wire = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        let mut r: &[u8] = wire;
        let l = Limits::default();
        assert_eq!(read_response(&mut r, &l).map(|x| x.status).ok(), Some(202));
        assert_eq!(
            read_response(&mut r, &l).map(|x| x.body).ok(),
            Some(b"abc".to_vec())
        );
        assert!(r.is_empty());
    }
}
