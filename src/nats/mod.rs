//! The NATS side of a cluster of brokers (PROTOCOL.md section 6.7). It
//! must not import `broker`: the bridge hands messages to a sink.
//!
//! Pure parts, with no socket, thread or lock:
//! - `subject`: topic <-> subject, pattern -> subjects.
//! - `url`: `nats://user:pass@host:port,…` -> servers.
//! - `proto`: server operations parsed from bytes, client operations
//!   written to bytes.
//! - `interest`: the subjects held for the broker's patterns, and which
//!   copy of a message to take when they overlap.
//!
//! The bridge, over them:
//! - `bridge`: what the broker calls (publish, interest) and the state the
//!   bridge's threads share.
//! - `link`: the connections: the servers in turn, with a backoff;
//!   connect and handshake.
//! - `pump`: one connection after its handshake: the reader (pings,
//!   messages to the broker) and the writer (control, then publishes in
//!   chunks).

pub(crate) mod bridge;
mod interest;
mod link;
pub(crate) mod proto;
mod pump;
pub(crate) mod subject;
pub(crate) mod url;

use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// A new broker id for `Mb-Origin`: unique per broker process (random, with
/// the process id and the start time mixed in), 16 hex digits.
pub(crate) fn origin() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    format!("{:016x}", h.finish())
}
