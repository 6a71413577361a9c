//! Limit, truncation and transport tests for `read_request_head` and `read_body`: each limit
//! exactly at the limit and at limit + 1, every truncation offset, timeouts.

use super::tests::{CHUNKED, GO_PUBLISH, head_outcome, limits, read_all};
use super::*;
use std::io::{self, BufReader};

#[test]
fn leading_empty_lines_limit() {
    let l = limits();
    let request = |n: usize| [b"\r\n".repeat(n), b"GET / HTTP/1.1\r\n\r\n".to_vec()].concat();
    assert!(head_outcome(&request(MAX_LEADING_EMPTY_LINES), &l).starts_with("GET /"));
    assert_eq!(
        head_outcome(&request(MAX_LEADING_EMPTY_LINES + 1), &l),
        "BadRequest(\"too many empty lines\")"
    );
}

#[test]
fn request_line_limit_exact_and_plus_one() {
    let l = Limits {
        max_request_line: 64,
        ..limits()
    };
    let line = |len: usize, ending: &str| {
        let fixed = "GET / HTTP/1.1".len();
        format!("GET /{} HTTP/1.1{ending}\r\n", "a".repeat(len - fixed)).into_bytes()
    };
    for ending in ["\r\n", "\n"] {
        assert!(
            head_outcome(&line(64, ending), &l).starts_with("GET /"),
            "{ending:?}"
        );
        assert_eq!(
            head_outcome(&line(65, ending), &l),
            "UriTooLong",
            "{ending:?}"
        );
    }
    // No line feed at all: stops after limit + 2 bytes instead of buffering the rest.
    let endless = vec![b'A'; 10_000];
    let mut r = &endless[..];
    assert!(matches!(
        read_request_head(&mut r, &l),
        Err(HttpError::UriTooLong)
    ));
    assert_eq!(r.len(), 10_000 - 66);
}

#[test]
fn header_limits_exact_and_plus_one() {
    // "X-Pad: " + n bytes + CRLF; the Host line is 9 bytes.
    let with_headers = |lines: &[String]| {
        let mut v = b"GET / HTTP/1.1\r\n".to_vec();
        for line in lines {
            v.extend_from_slice(line.as_bytes());
        }
        v.extend_from_slice(b"\r\n");
        v
    };
    let l = Limits {
        max_header_bytes: 100,
        max_headers: 4,
        ..limits()
    };
    let host = "Host: a\r\n".to_string();
    let pad = |total: usize| format!("X-Pad: {}\r\n", "p".repeat(total - 9));
    assert!(head_outcome(&with_headers(&[host.clone(), pad(91)]), &l).starts_with("GET"));
    assert_eq!(
        head_outcome(&with_headers(&[host.clone(), pad(92)]), &l),
        "HeadersTooLarge"
    );

    let count = |n: usize| with_headers(&vec![host.clone(); n]);
    assert!(head_outcome(&count(4), &l).starts_with("GET"));
    assert_eq!(head_outcome(&count(5), &l), "HeadersTooLarge");
}

#[test]
fn body_limits_exact_and_plus_one() {
    let l = Limits {
        max_body: 8,
        ..limits()
    };
    let body = |framing, input: &[u8]| {
        let mut r = input;
        read_body(&mut r, framing, &l).map_err(|e| format!("{e:?}"))
    };
    assert_eq!(
        body(BodyFraming::Length(8), b"12345678"),
        Ok(b"12345678".to_vec())
    );
    assert_eq!(
        body(BodyFraming::Length(9), b"123456789"),
        Err("PayloadTooLarge".into())
    );
    assert_eq!(
        body(BodyFraming::Chunked, b"8\r\n12345678\r\n0\r\n\r\n").map(|b| b.len()),
        Ok(8)
    );
    assert_eq!(
        body(BodyFraming::Chunked, b"9\r\n123456789\r\n0\r\n\r\n"),
        Err("PayloadTooLarge".into())
    );
    assert_eq!(
        body(
            BodyFraming::Chunked,
            b"4\r\n1234\r\n4\r\n5678\r\n1\r\n9\r\n0\r\n\r\n"
        ),
        Err("PayloadTooLarge".into())
    );
    assert_eq!(body(BodyFraming::Empty, b"ignored"), Ok(Vec::new()));
    assert_eq!(
        body(BodyFraming::Length(5), b"123"),
        Err("UnexpectedEof".into())
    );
}

#[test]
fn expect_continue_then_413_without_reading_the_body() {
    let l = Limits {
        max_body: 10,
        ..limits()
    };
    let wire = b"POST /pub/t HTTP/1.1\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n";
    let mut r: &[u8] = wire;
    let head = read_request_head(&mut r, &l).unwrap().unwrap();
    assert!(head.expect_continue);
    assert_eq!(head.framing, BodyFraming::Length(11));
    assert!(matches!(
        read_body(&mut r, head.framing, &l),
        Err(HttpError::PayloadTooLarge)
    ));
}

/// Every proper prefix of a valid stream of requests ends in a clean close exactly at a
/// request boundary and in `UnexpectedEof` everywhere else.
#[test]
fn truncation_at_every_offset() {
    let streams: Vec<Vec<u8>> = vec![
        GO_PUBLISH.to_vec(),
        CHUNKED.to_vec(),
        b"\r\nGET /a?b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(),
        [GO_PUBLISH, b"POST /hb HTTP/1.1\n\n", CHUNKED].concat(),
    ];
    let l = limits();
    for stream in &streams {
        let full = read_all(&stream[..], &l).unwrap();
        // Offsets where a prefix holds only whole requests (and leading empty lines).
        let mut boundaries = vec![0];
        let mut r = &stream[..];
        while let Some(h) = read_request_head(&mut r, &l).unwrap() {
            read_body(&mut r, h.framing, &l).unwrap();
            boundaries.push(stream.len() - r.len());
        }
        let leading_blank = stream
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        for cut in 0..stream.len() {
            let prefix = &stream[..cut];
            for (name, got) in [
                ("slice", read_all(prefix, &l)),
                (
                    "one-byte",
                    read_all(BufReader::with_capacity(1, prefix), &l),
                ),
            ] {
                if cut <= leading_blank || boundaries.contains(&cut) {
                    let n = boundaries.iter().filter(|&&b| b != 0 && b <= cut).count();
                    let got = got.unwrap_or_else(|e| panic!("{name} cut {cut}: {e:?}"));
                    assert_eq!(got[..], full[..n], "{name} cut {cut}");
                } else {
                    assert!(
                        matches!(got, Err(HttpError::UnexpectedEof)),
                        "{name} cut {cut}: {got:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn transport_errors_pass_through() {
    struct Failing(io::ErrorKind);
    impl io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(self.0.into())
        }
    }
    for kind in [io::ErrorKind::WouldBlock, io::ErrorKind::TimedOut] {
        let mut r = BufReader::new(Failing(kind));
        let err = read_request_head(&mut r, &limits()).unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
    }
    // Mid-message: the partial head is followed by a timeout.
    let mut r = BufReader::new(io::Read::chain(
        &b"GET / HT"[..],
        Failing(io::ErrorKind::TimedOut),
    ));
    assert!(
        read_request_head(&mut r, &limits())
            .unwrap_err()
            .is_timeout()
    );
}
