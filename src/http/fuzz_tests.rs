//! Seeded mutation tests (std only): mangled requests and responses must never panic the
//! readers, whatever is accepted must respect the limits, and how the bytes arrive (one slice or
//! a trickle through a tiny buffer) must not change what is read.
//!
//! The seeds are the messages of `PROTOCOL.md`; `fuzz/` runs the same properties under
//! libFuzzer. A panicking case is reported with its iteration and its input bytes.

use std::io::{BufRead, BufReader};
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::request::tests::{CHUNKED, GO_PUBLISH};
use super::*;
use crate::testutil::XorShift;

/// Mutated request streams (each also read as a response stream).
const REQUEST_CASES: usize = 100_000;
/// Mutated response streams, seeded with responses.
const RESPONSE_CASES: usize = 50_000;
/// Every case is also read through a `BufReader` of this many bytes and the results compared:
/// smaller than most lines of the seeds, so lines, chunk sizes and bodies straddle refills.
const TRICKLE: usize = 7;
/// Most messages read from one mutated stream.
const MAX_MESSAGES: usize = 8;

/// Bytes that sit on parser decisions; inserted more often than random ones.
const INTERESTING: &[u8] = b"\r\n :;,\t0123456789abcdefABCDEF\x00\x7f\xff%/HTP.-";

/// Limits that every seed passes somewhere, so the limit paths are mutated too.
const SMALL: Limits = Limits {
    max_request_line: 24,
    max_header_bytes: 40,
    max_headers: 3,
    max_body: 12,
};

/// The requests of `PROTOCOL.md` and some framing corner cases.
fn request_seeds() -> Vec<Vec<u8>> {
    let mut pipelined = GO_PUBLISH.to_vec();
    pipelined.extend_from_slice(
        b"POST /hb HTTP/1.1\r\nHost: 127.0.0.1:9999\r\nContent-Length: 0\r\n\r\n",
    );
    vec![
        GO_PUBLISH.to_vec(),
        CHUNKED.to_vec(),
        pipelined,
        b"POST /sub/hello/world HTTP/1.1\r\nHost: 127.0.0.1:9999\r\nContent-Length: 24\r\n\r\n{\"qos\":0,\"port\":\"10000\"}".to_vec(),
        b"POST /sub/news HTTP/1.1\r\nHost: b\r\nContent-Length: 14\r\n\r\n{\"port\":10000}".to_vec(),
        b"POST /hb HTTP/1.1\r\nHost: 127.0.0.1:9999\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"POST /hb HTTP/1.1\r\nHost: 127.0.0.1:9999\r\nContent-Length: 16\r\n\r\n{\"port\":\"10000\"}".to_vec(),
        b"POST /pub/hello HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n9;ext=1\r\n{\"data\":\"\r\n10\r\nMyData\",\"qos\":0}\r\n0\r\nX-Trailer: done\r\n\r\n".to_vec(),
        b"POST /pub/hello HTTP/1.1\r\nHost: b\r\nExpect: 100-continue\r\nContent-Length: 25\r\n\r\n{\"data\":\"MyData\",\"qos\":0}".to_vec(),
        b"POST /msg HTTP/1.1\r\nHost: 127.0.0.1:10000\r\nContent-Type: application/json\r\nContent-Length: 39\r\n\r\n{\"data\":\"MyData\",\"Topic\":\"hello/world\"}".to_vec(),
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        b"POST /hb HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        b"\r\nPOST /pub/a HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabcGET /x HTTP/1.1\r\n\r\n"
            .to_vec(),
        b"POST /p HTTP/1.1\nTransfer-Encoding: chunked\n\nA;x=\"y\"\nabcdefghij\n0\nT: 1\n\n"
            .to_vec(),
        b"GET http://h/p?q HTTP/1.1\r\nConnection: close\r\nX:\r\n\r\n".to_vec(),
        b"OPTIONS * HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n".to_vec(),
        b"POST /pub/a%2Fb%20c HTTP/1.1\r\nConnection: close\r\nContent-Length: 12\r\n\r\n{\"data\":\"x\"}".to_vec(),
    ]
}

/// What the broker and the subscribers answer, and interim responses.
fn response_seeds() -> Vec<Vec<u8>> {
    vec![
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\r\nmissing key data".to_vec(),
        b"HTTP/1.1 405 Method Not Allowed\r\nAllow: POST\r\nContent-Length: 18\r\n\r\nmethod not allowed".to_vec(),
        b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 17\r\n\r\npayload too large".to_vec(),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nok\r\n0\r\nT: 1\r\n\r\n".to_vec(),
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end".to_vec(),
        b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n".to_vec(),
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 13\r\n\r\nshutting down".to_vec(),
    ]
}

/// One to five edits: flip a bit, insert a byte, delete a run, splice in a slice of another
/// sample, or overwrite a byte with an interesting one.
fn mutate(rng: &mut XorShift, data: &mut Vec<u8>, samples: &[Vec<u8>]) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
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
            3 | 4 => {
                // Splice: a slice of another sample, inserted or replacing as many bytes.
                let other = &samples[rng.below(samples.len())];
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(40)).min(other.len());
                let cut = if rng.below(2) == 0 {
                    at
                } else {
                    (at + end - from).min(data.len())
                };
                data.splice(at..cut, other[from..end].iter().copied());
            }
            _ => {
                if at < data.len() {
                    data[at] = INTERESTING[rng.below(INTERESTING.len())];
                }
            }
        }
    }
}

/// `bytes` as a Rust byte-string literal body, to paste into a regression test.
fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Runs `check` on one case; a panic is re-raised naming the case and its input.
fn run_case(kind: &str, iteration: usize, data: &[u8], check: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(check)).is_err() {
        panic!(
            "{kind} case {iteration} panicked (message above) on input b\"{}\"",
            escaped(data)
        );
    }
}

/// Reads requests back to back like a server; returns how many bodies were read and a
/// comparable account of every step.
fn serve(mut r: impl BufRead, limits: &Limits) -> (usize, Vec<String>) {
    let (mut bodies, mut log) = (0, Vec::new());
    for _ in 0..MAX_MESSAGES {
        let head = match read_request_head(&mut r, limits) {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(e) => {
                log.push(format!("{e:?}"));
                break;
            }
        };
        assert!(!head.target.is_empty() && !head.method.is_empty());
        assert!(head.headers.len() <= limits.max_headers);
        let _ = (head.path(), head.query());
        let body = match read_body(&mut r, head.framing, limits) {
            Ok(body) => body,
            Err(e) => {
                log.push(format!("{head:?} {e:?}"));
                break;
            }
        };
        bodies += 1;
        assert!(body.len() <= limits.max_body);
        if let BodyFraming::Length(n) = head.framing {
            assert_eq!(body.len(), n);
        }
        log.push(format!("{head:?} {body:?}"));
        if !head.keep_alive {
            break;
        }
    }
    (bodies, log)
}

/// Reads responses back to back like a client; returns how many were read and an account.
fn read_responses(mut r: impl BufRead, limits: &Limits) -> (usize, Vec<String>) {
    let (mut read, mut log) = (0, Vec::new());
    for _ in 0..MAX_MESSAGES {
        match read_response(&mut r, limits) {
            Ok(resp) => {
                read += 1;
                assert!((100..=999).contains(&resp.status));
                assert!(resp.body.len() <= limits.max_body);
                assert!(resp.headers.len() <= limits.max_headers);
                let keep_alive = resp.keep_alive;
                log.push(format!("{resp:?}"));
                if !keep_alive {
                    break;
                }
            }
            Err(e) => {
                log.push(format!("{e:?}"));
                break;
            }
        }
    }
    (read, log)
}

/// Runs `check` on `cases` seeded mutations of `seeds` (every fourth with
/// [`SMALL`] limits), naming the input of any case that panics.
fn for_each_mutation(
    kind: &str,
    seeds: &[Vec<u8>],
    rng_seed: u64,
    cases: usize,
    mut check: impl FnMut(&[u8], &Limits),
) {
    let mut rng = XorShift(rng_seed);
    for iteration in 0..cases {
        let mut data = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut data, seeds);
        let limits = if iteration % 4 == 0 {
            SMALL
        } else {
            Limits::default()
        };
        run_case(kind, iteration, &data, || check(&data, &limits));
    }
}

#[test]
fn mutated_requests_never_panic() {
    let mut accepted = 0;
    let seeds = request_seeds();
    for_each_mutation(
        "request",
        &seeds,
        0x9E37_79B9_7F4A_7C15,
        REQUEST_CASES,
        |data, limits| {
            let (bodies, log) = serve(data, limits);
            accepted += bodies;
            let trickled = serve(BufReader::with_capacity(TRICKLE, data), limits);
            assert_eq!(
                trickled.1, log,
                "the result depends on how the bytes arrive"
            );
            // Responses share the header and body code; feed them the same bytes.
            let _ = read_responses(data, limits);
        },
    );
    // The mutations must leave enough valid input to exercise the success paths too.
    assert!(
        accepted > REQUEST_CASES / 10,
        "only {accepted} requests accepted"
    );
}

#[test]
fn mutated_responses_never_panic() {
    let mut accepted = 0;
    let seeds = response_seeds();
    for_each_mutation(
        "response",
        &seeds,
        0x2545_F491_4F6C_DD1D,
        RESPONSE_CASES,
        |data, limits| {
            let (read, log) = read_responses(data, limits);
            accepted += read;
            let trickled = read_responses(BufReader::with_capacity(TRICKLE, data), limits);
            assert_eq!(
                trickled.1, log,
                "the result depends on how the bytes arrive"
            );
        },
    );
    assert!(
        accepted > RESPONSE_CASES / 10,
        "only {accepted} responses accepted"
    );
}

#[test]
fn seeds_are_valid() {
    // A seed that no longer parses would leave the mutation tests exploring only error paths.
    for seed in request_seeds() {
        let (bodies, log) = serve(&seed[..], &Limits::default());
        assert!(bodies > 0, "{}: {log:?}", escaped(&seed));
    }
    for seed in response_seeds() {
        let (read, log) = read_responses(&seed[..], &Limits::default());
        assert!(read > 0, "{}: {log:?}", escaped(&seed));
    }
}
