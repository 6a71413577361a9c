//! Table-driven tests for `read_request_head` and `read_body`.

use super::*;
use std::io::BufReader;

/// The bytes the Go client (`pkg/client`) sends for a publish.
pub(crate) const GO_PUBLISH: &[u8] = b"POST /pub/hello/world HTTP/1.1\r\nHost: 127.0.0.1:9999\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 25\r\nAccept-Encoding: gzip\r\n\r\n{\"data\":\"MyData\",\"qos\":0}";

/// A chunked request with extensions and trailers.
pub(crate) const CHUNKED: &[u8] = b"POST /sub/t HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n7;name=val\r\n{\"qos\":\r\n11\r\n0,\"port\":\"10000\"}\r\n0;end\r\nChecksum: abc\r\n\r\n";

pub(super) fn limits() -> Limits {
    Limits::default()
}

/// Reads every request until a clean close; heads and bodies.
pub(super) fn read_all(
    mut r: impl BufRead,
    l: &Limits,
) -> Result<Vec<(RequestHead, Vec<u8>)>, HttpError> {
    let mut out = Vec::new();
    while let Some(head) = read_request_head(&mut r, l)? {
        let body = read_body(&mut r, head.framing, l)?;
        out.push((head, body));
    }
    Ok(out)
}

/// The outcome of reading one head, compressed to a comparable string.
pub(super) fn head_outcome(input: &[u8], l: &Limits) -> String {
    let mut r = input;
    match read_request_head(&mut r, l) {
        Ok(Some(h)) => format!(
            "{} {} {:?} {:?} keep={} expect={}",
            h.method, h.target, h.version, h.framing, h.keep_alive, h.expect_continue
        ),
        Ok(None) => "None".into(),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn go_client_publish() {
    for (name, result) in [
        ("slice", read_all(GO_PUBLISH, &limits())),
        (
            "one-byte buffer",
            read_all(BufReader::with_capacity(1, GO_PUBLISH), &limits()),
        ),
    ] {
        let reqs = result.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(reqs.len(), 1, "{name}");
        let (head, body) = &reqs[0];
        assert_eq!(head.method, "POST");
        assert_eq!(head.target, "/pub/hello/world");
        assert_eq!(head.path(), "/pub/hello/world");
        assert_eq!(head.query(), None);
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.framing, BodyFraming::Length(25));
        assert!(head.keep_alive && !head.expect_continue);
        assert_eq!(head.headers.len(), 4);
        assert_eq!(head.headers.get("user-agent"), Some("Go-http-client/1.1"));
        assert_eq!(head.headers.get("ACCEPT-ENCODING"), Some("gzip"));
        assert_eq!(body, br#"{"data":"MyData","qos":0}"#);
    }
}

#[test]
fn pipelined_requests_back_to_back() {
    let mut wire = GO_PUBLISH.to_vec();
    wire.extend_from_slice(CHUNKED);
    wire.extend_from_slice(b"POST /hb HTTP/1.1\r\nConnection: close\r\n\r\n");
    wire.extend_from_slice(b"\r\nGET /health HTTP/1.0\r\n\r\n");
    let reqs = read_all(&wire[..], &limits()).unwrap();
    let summary: Vec<_> = reqs
        .iter()
        .map(|(h, b)| {
            (
                h.path(),
                String::from_utf8_lossy(b).into_owned(),
                h.keep_alive,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "/pub/hello/world",
                r#"{"data":"MyData","qos":0}"#.to_string(),
                true
            ),
            ("/sub/t", r#"{"qos":0,"port":"10000"}"#.to_string(), true),
            ("/hb", String::new(), false),
            ("/health", String::new(), false),
        ]
    );
}

#[test]
fn request_head_table() {
    let l = limits();
    let bad = |s: &str| format!("BadRequest({s:?})");
    let cases: Vec<(&[u8], String)> = vec![
        // Accepted forms.
        (
            b"GET / HTTP/1.1\r\n\r\n",
            "GET / Http11 Empty keep=true expect=false".into(),
        ),
        (
            b"GET / HTTP/1.1\n\n",
            "GET / Http11 Empty keep=true expect=false".into(),
        ),
        (
            b"\r\n\nGET / HTTP/1.1\r\n\r\n",
            "GET / Http11 Empty keep=true expect=false".into(),
        ),
        (
            b"POST /p HTTP/1.0\r\n\r\n",
            "POST /p Http10 Empty keep=false expect=false".into(),
        ),
        (
            b"POST /p HTTP/1.0\r\nConnection: Keep-Alive\r\nExpect: odd\r\n\r\n",
            "POST /p Http10 Empty keep=true expect=false".into(),
        ),
        (
            b"POST /p HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
            "POST /p Http11 Empty keep=false expect=false".into(),
        ),
        (
            b"OPTIONS * HTTP/1.1\r\n\r\n",
            "OPTIONS * Http11 Empty keep=true expect=false".into(),
        ),
        (
            b"post /x?y=%20 HTTP/1.1\r\n\r\n",
            "post /x?y=%20 Http11 Empty keep=true expect=false".into(),
        ),
        (
            b"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            "POST /p Http11 Length(5) keep=true expect=false".into(),
        ),
        (
            b"POST /p HTTP/1.1\r\nContent-Length: 5, 5\r\ncontent-length: 005\r\n\r\n",
            "POST /p Http11 Length(5) keep=true expect=false".into(),
        ),
        (
            b"POST /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "POST /p Http11 Length(0) keep=true expect=false".into(),
        ),
        (
            b"POST /p HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n",
            "POST /p Http11 Chunked keep=true expect=false".into(),
        ),
        (
            b"POST /p HTTP/1.1\r\nContent-Length: 9\r\nExpect: 100-Continue\r\n\r\n",
            "POST /p Http11 Length(9) keep=true expect=true".into(),
        ),
        // Over max_body is the body reader's business, not the head's.
        (
            b"POST /p HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
            "POST /p Http11 Length(99999999) keep=true expect=false".into(),
        ),
        // Request line.
        (b"GET  / HTTP/1.1\r\n\r\n", bad("malformed request line")),
        (b"GET / HTTP/1.1 \r\n\r\n", bad("malformed request line")),
        (b"GET /\r\n\r\n", bad("malformed request line")),
        (b"GET\r\n\r\n", bad("malformed request line")),
        (b"GET /\tx HTTP/1.1\r\n\r\n", bad("invalid request target")),
        (
            b"GET /\xc3\xbc HTTP/1.1\r\n\r\n",
            bad("invalid request target"),
        ),
        (b"G(T / HTTP/1.1\r\n\r\n", bad("invalid method")),
        (b"GET / HTTP/1\r\n\r\n", bad("malformed http version")),
        (b"GET / HTTX/1.1\r\n\r\n", bad("malformed http version")),
        (b"GET / http/1.1\r\n\r\n", bad("malformed http version")),
        (b"GET / HTTP/2.0\r\n\r\n", "VersionNotSupported".into()),
        (b"GET / HTTP/1.2\r\n\r\n", "VersionNotSupported".into()),
        (b"GET / HTTP/0.9\r\n\r\n", "VersionNotSupported".into()),
        (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "VersionNotSupported".into(),
        ),
        (b"GET / HTTP/1.1\rX\r\n\r\n", bad("bare cr")),
        (b"\rGET / HTTP/1.1\r\n\r\n", bad("bare cr")),
        (
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
            bad("not an http request"),
        ),
        (b"\x00\x00\x00\x00", bad("not an http request")),
        (b" GET / HTTP/1.1\r\n\r\n", bad("not an http request")),
        // Headers.
        (b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", bad("bare cr")),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            bad("obsolete line folding"),
        ),
        (
            b"GET / HTTP/1.1\r\nHost a\r\n\r\n",
            bad("header line without colon"),
        ),
        (
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            bad("whitespace before colon"),
        ),
        (
            b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
            bad("invalid header value"),
        ),
        // Framing.
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            bad("both transfer-encoding and content-length"),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            bad("both transfer-encoding and content-length"),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            bad("unknown transfer coding"),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            bad("unknown transfer coding"),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            bad("unknown transfer coding"),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            bad("unknown transfer coding"),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
            bad("unknown transfer coding"),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n",
            bad("unknown transfer coding"),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
            bad("unknown transfer coding"),
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            bad("transfer-encoding in http/1.0"),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            bad("conflicting content-length"),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            bad("conflicting content-length"),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            bad("invalid content-length"),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            bad("invalid content-length"),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
            bad("invalid content-length"),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n",
            bad("invalid content-length"),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
            bad("invalid content-length"),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5,\r\n\r\n",
            bad("invalid content-length"),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1.0\r\n\r\n",
            bad("invalid content-length"),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            bad("content-length overflow"),
        ),
        // Expect.
        (
            b"POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n",
            "ExpectationFailed".into(),
        ),
        (
            b"POST / HTTP/1.1\r\nExpect: 100-continue, x\r\n\r\n",
            "ExpectationFailed".into(),
        ),
        (
            b"POST / HTTP/1.1\r\nExpect:\r\n\r\n",
            "ExpectationFailed".into(),
        ),
        // Truncation and clean close.
        (b"", "None".into()),
        (b"\r\n\r\n\n", "None".into()),
        (b"\r\n\r", "None".into()),
        (b"GET / HTTP/1.1\r\nHost: a\r\n", "UnexpectedEof".into()),
        (b"GET / HTTP/1.1", "UnexpectedEof".into()),
    ];
    for (input, want) in cases {
        assert_eq!(
            head_outcome(input, &l),
            want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn path_and_query_table() {
    let cases = [
        ("/pub/hello/world", "/pub/hello/world", None),
        ("/p?q=1", "/p", Some("q=1")),
        ("/p?q=1#frag", "/p", Some("q=1")),
        ("/p#frag", "/p", None),
        ("http://host/p?q", "/p", Some("q")),
        ("HTTPS://host:1/a/b", "/a/b", None),
        ("http://host", "/", None),
        ("http://host?x", "/", Some("x")),
        ("*", "*", None),
        ("host:443", "host:443", None),
        ("/?", "/", Some("")),
    ];
    for (target, path, query) in cases {
        let head = RequestHead {
            method: "GET".into(),
            target: target.into(),
            version: Version::Http11,
            headers: Headers::new(),
            framing: BodyFraming::Empty,
            keep_alive: true,
            expect_continue: false,
        };
        assert_eq!((head.path(), head.query()), (path, query), "{target}");
    }
}

/// A peer that sent nothing more: any read would wait for it.
struct Silent;

impl std::io::Read for Silent {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

#[test]
fn an_empty_or_buffered_body_is_read_without_waiting_on_the_peer() {
    let limits = Limits::default();
    let mut silent = std::io::BufReader::new(Silent);
    assert_eq!(
        read_body(&mut silent, BodyFraming::Length(0), &limits).unwrap(),
        b""
    );
    // A body already in the buffer, and one that is not all there yet.
    let mut conn = std::io::BufReader::new(std::io::Read::chain(&b"abcdefgh"[..], Silent));
    assert_eq!(
        read_body(&mut conn, BodyFraming::Length(3), &limits).unwrap(),
        b"abc"
    );
    assert_eq!(
        read_body(&mut conn, BodyFraming::Length(5), &limits).unwrap(),
        b"defgh"
    );
    let mut short = std::io::BufReader::new(std::io::Read::chain(&b"ab"[..], Silent));
    let err = read_body(&mut short, BodyFraming::Length(3), &limits).unwrap_err();
    assert!(matches!(err, HttpError::Io(e) if e.kind() == std::io::ErrorKind::WouldBlock));
}
