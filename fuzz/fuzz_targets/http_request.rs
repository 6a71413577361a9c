//! Server side: arbitrary bytes on a connection, read like the broker reads them.
//!
//! Requests are read back to back (pipelining) until a clean close or the first error, as
//! `server.rs` does, under the default limits and under tiny ones that every seed exceeds
//! somewhere. The same bytes are also read through a `BufReader` with a 7-byte buffer: how the
//! bytes arrive must not change what is parsed, so both runs must agree exactly.
//!
//! Must never panic; whatever is accepted must respect the limits.

#![no_main]

use std::io::{BufRead, BufReader};

use libfuzzer_sys::fuzz_target;
use message_broker::http::{BodyFraming, Limits, read_body, read_request_head};

/// A real connection closes after this many requests only if the peer says so; a bound keeps
/// one input from looping long (each turn consumes at least one byte anyway).
const MAX_REQUESTS: usize = 64;

const SMALL: Limits = Limits {
    max_request_line: 24,
    max_header_bytes: 40,
    max_headers: 3,
    max_body: 12,
};

/// Every request read, then how the connection ended, as comparable text.
fn serve(mut r: impl BufRead, limits: &Limits) -> Vec<String> {
    let mut outcome = Vec::new();
    for _ in 0..MAX_REQUESTS {
        let head = match read_request_head(&mut r, limits) {
            Ok(Some(head)) => head,
            Ok(None) => {
                outcome.push("closed".to_owned());
                return outcome;
            }
            Err(e) => {
                outcome.push(format!("head error {e:?}, status {:?}", e.status()));
                return outcome;
            }
        };
        assert!(!head.method.is_empty() && !head.target.is_empty());
        assert!(head.headers.len() <= limits.max_headers);
        // The accessors slice the target; they must cope with any target the reader accepts.
        let (_, _) = (head.path(), head.query());
        let body = match read_body(&mut r, head.framing, limits) {
            Ok(body) => body,
            Err(e) => {
                outcome.push(format!(
                    "{head:?} body error {e:?}, status {:?}",
                    e.status()
                ));
                return outcome;
            }
        };
        assert!(body.len() <= limits.max_body);
        if let BodyFraming::Length(n) = head.framing {
            assert_eq!(body.len(), n);
        }
        outcome.push(format!("{head:?} {body:?}"));
        if !head.keep_alive {
            return outcome;
        }
    }
    outcome
}

fuzz_target!(|data: &[u8]| {
    for limits in [Limits::default(), SMALL] {
        let whole = serve(data, &limits);
        let trickled = serve(BufReader::with_capacity(7, data), &limits);
        assert_eq!(
            whole, trickled,
            "the result depends on how the bytes arrive"
        );
    }
});
