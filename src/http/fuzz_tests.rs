//! Seeded mutation test (std only): mangled requests must never panic the reader, and whatever
//! is accepted must respect the limits.

use super::request::tests::{CHUNKED, GO_PUBLISH};
use super::*;
use crate::testutil::XorShift;

/// Bytes that sit on parser decisions; inserted more often than random ones.
const INTERESTING: &[u8] = b"\r\n :;,\t0123456789abcdefABCDEF\x00\x7f\xff%/HTP.-";

fn seeds() -> Vec<Vec<u8>> {
    vec![
        GO_PUBLISH.to_vec(),
        CHUNKED.to_vec(),
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        b"POST /hb HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        b"POST /sub/x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        b"\r\nPOST /pub/a HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabcGET /x HTTP/1.1\r\n\r\n"
            .to_vec(),
        b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
        b"POST /p HTTP/1.1\nTransfer-Encoding: chunked\n\nA;x=\"y\"\nabcdefghij\n0\nT: 1\n\n"
            .to_vec(),
        b"GET http://h/p?q HTTP/1.1\r\nConnection: close\r\nX:\r\n\r\n".to_vec(),
        b"OPTIONS * HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n".to_vec(),
    ]
}

fn mutate(rng: &mut XorShift, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 if at < data.len() => data[at] ^= 1 << rng.below(8),
            1 => {
                let b = if rng.below(2) == 0 {
                    INTERESTING[rng.below(INTERESTING.len())]
                } else {
                    rng.next() as u8
                };
                data.insert(at, b);
            }
            2 if at < data.len() => {
                let end = (at + 1 + rng.below(8)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(40)).min(other.len());
                data.splice(at..at, other[from..end].iter().copied());
            }
            _ => {
                // Replace a byte with an interesting one (digits, CR, LF, separators).
                if at < data.len() {
                    data[at] = INTERESTING[rng.below(INTERESTING.len())];
                }
            }
        }
    }
}

#[test]
fn mutated_requests_never_panic() {
    let seeds = seeds();
    let small = Limits {
        max_request_line: 24,
        max_header_bytes: 40,
        max_headers: 3,
        max_body: 12,
    };
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for iteration in 0..20_000 {
        let mut data = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut data, &seeds);
        let limits = if iteration % 4 == 0 {
            small
        } else {
            Limits::default()
        };
        let mut r: &[u8] = &data;
        for _ in 0..4 {
            let before = r.len();
            let head = match read_request_head(&mut r, &limits) {
                Ok(Some(head)) => head,
                Ok(None) | Err(_) => break,
            };
            assert!(r.len() < before, "iteration {iteration}: no progress");
            assert!(!head.target.is_empty() && !head.method.is_empty());
            assert!(head.headers.len() <= limits.max_headers);
            match read_body(&mut r, head.framing, &limits) {
                Ok(body) => {
                    accepted += 1;
                    assert!(body.len() <= limits.max_body, "iteration {iteration}");
                    if let BodyFraming::Length(n) = head.framing {
                        assert_eq!(body.len(), n, "iteration {iteration}");
                    }
                }
                Err(_) => break,
            }
        }
        // Responses share the header and body code; feed them the same bytes.
        let _ = read_response(&mut &data[..], &limits);
    }
    // The mutations must leave enough valid input to exercise the success paths too.
    eprintln!("accepted {accepted}");
    assert!(accepted > 2_000, "only {accepted} requests accepted");
}
