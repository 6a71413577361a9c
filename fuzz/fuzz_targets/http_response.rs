//! Client side: arbitrary bytes as the answer of a broker or subscriber, read like the client and
//! the delivery thread read them (back to back while the connection stays alive).
//!
//! Must never panic; a body must respect the limit; a 7-byte `BufReader` must read the same.

#![no_main]

use std::io::{BufRead, BufReader};

use libfuzzer_sys::fuzz_target;
use message_broker::http::{Limits, read_response};

const MAX_RESPONSES: usize = 64;

const SMALL: Limits = Limits {
    max_request_line: 24,
    max_header_bytes: 40,
    max_headers: 3,
    max_body: 12,
};

fn read_all(mut r: impl BufRead, limits: &Limits) -> Vec<String> {
    let mut outcome = Vec::new();
    for _ in 0..MAX_RESPONSES {
        match read_response(&mut r, limits) {
            Ok(resp) => {
                assert!((100..=999).contains(&resp.status));
                assert!(resp.body.len() <= limits.max_body);
                assert!(resp.headers.len() <= limits.max_headers);
                let keep_alive = resp.keep_alive;
                outcome.push(format!("{resp:?}"));
                if !keep_alive {
                    break;
                }
            }
            Err(e) => {
                outcome.push(format!("{e:?}"));
                break;
            }
        }
    }
    outcome
}

fuzz_target!(|data: &[u8]| {
    for limits in [Limits::default(), SMALL] {
        let whole = read_all(data, &limits);
        let trickled = read_all(BufReader::with_capacity(7, data), &limits);
        assert_eq!(
            whole, trickled,
            "the result depends on how the bytes arrive"
        );
    }
});
