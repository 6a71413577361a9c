//! The NATS side of a cluster of brokers (PROTOCOL.md section 6.7), pure
//! parts: how topics and patterns become subjects, the `--nats` list of
//! servers, and the client protocol's parser and encoders. None of it owns
//! a socket, a thread or a lock; the bridge that does is built on them.
//!
//! - `subject`: topic <-> subject, pattern -> subjects.
//! - `url`: `nats://user:pass@host:port,…` -> servers.
//! - `proto`: server operations parsed from bytes, client operations
//!   written to bytes.

pub(crate) mod proto;
pub(crate) mod subject;
pub(crate) mod url;
