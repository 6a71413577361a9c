//! Seeded mutation tests (std only): valid operations, pieces of them and
//! junk, strung together, mangled and fed in random pieces, must never panic
//! the parser, keep its buffer within the bound, and be read the same however
//! they are split. A failing case names its iteration and bytes.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::tests::drain;
use super::*;
use crate::testutil::XorShift;

/// Fragments the mutation loop strings together: valid operations, pieces
/// of them, and junk.
const FRAGMENTS: &[&[u8]] = &[
    b"PING\r\n",
    b"PONG\r\n",
    b"+OK\r\n",
    b"-ERR 'x'\r\n",
    b"INFO {\"max_payload\":5}\r\n",
    b"MSG mb.a 1 5\r\nhello\r\n",
    b"MSG mb.a 1 r 3\r\n",
    b"HMSG mb.a 2 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
    b"HMSG a 1 ",
    b"MSG a 1 70\r\n",
    b"MSG a 1 99999999999999999999999\r\n",
    b"INFO {",
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b"MSG",
    b"64",
    b"\xff\xfe",
    b"\0",
    b"'",
    b"NATS/1.0\r\n",
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

/// Runs `bytes` through a parser fed in the pieces `cuts` marks; the
/// operations and the error, checking the bound after every drain.
fn run_split(
    bytes: &[u8],
    cuts: &[usize],
    max_payload: usize,
) -> (Vec<ServerOp>, Option<ProtoError>) {
    let mut parser = Parser::new(max_payload);
    let mut ops = Vec::new();
    let mut from = 0;
    for to in cuts.iter().copied().chain([bytes.len()]) {
        parser.feed(&bytes[from..to]);
        from = to;
        let (more, err) = drain(&mut parser);
        ops.extend(more);
        if err.is_some() {
            return (ops, err);
        }
        assert!(parser.buffered() <= MAX_LINE.max(max_payload + 2));
    }
    (ops, None)
}

#[test]
fn mutations_never_panic_and_stay_bounded() {
    const MAX_PAYLOAD: usize = 64;
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let (mut ops, mut errors) = (0, Vec::new());
    for iteration in 0..20_000 {
        let mut bytes = Vec::new();
        for _ in 0..1 + rng.below(8) {
            bytes.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())]);
        }
        for _ in 0..rng.below(3) {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        let mut cuts: Vec<usize> = (0..rng.below(6))
            .map(|_| rng.below(bytes.len() + 1))
            .collect();
        cuts.sort_unstable();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let whole = run_split(&bytes, &[], MAX_PAYLOAD);
            let split = run_split(&bytes, &cuts, MAX_PAYLOAD);
            assert_eq!(whole, split, "the split changed the answer");
            whole
        }));
        let Ok((read, error)) = outcome else {
            panic!(
                "iteration {iteration}: {:?} cut at {cuts:?}",
                String::from_utf8_lossy(&bytes)
            );
        };
        ops += read.len();
        errors.extend(error.map(|e| std::mem::discriminant(&e)));
    }
    // The loop reaches both the operations and every error but the line limit.
    errors.sort_by_key(|d| format!("{d:?}"));
    errors.dedup();
    assert!(ops > 4_000, "{ops} operations");
    assert_eq!(errors.len(), 5, "{errors:?}");
}
