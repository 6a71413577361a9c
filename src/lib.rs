//! A small publish/subscribe broker, std only, wire-compatible with the Go
//! "Message-Broker".
//!
//! Publishers `POST /pub/{topic}` a JSON body `{"data":"…"}` to the broker;
//! subscribers `POST /sub/{topic}` with the port they listen on, and the broker
//! calls them back with `POST /msg` and `{"data":"…","Topic":"…"}`. Everything is
//! HTTP/1.1 with small JSON bodies, so `curl` is a complete client and a Go
//! program using the Go original's client package works unchanged. The wire
//! contract is `PROTOCOL.md` (summarised in the README).
//!
//! # Using it
//!
//! Run a broker in-process, subscribe with the [`client`], and publish:
//!
//! ```no_run
//! use message_broker::broker::{Broker, Config};
//! use message_broker::client::{Client, Message};
//! use std::sync::mpsc;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = Broker::bind(Config { port: 0, ..Config::default() })?;
//! let addr = broker.local_addr();
//! let _running = broker.spawn()?;
//!
//! let client = Client::builder(addr.to_string()).listen_port(0).build()?;
//! let (tx, rx) = mpsc::channel();
//! client.subscribe("hello/world", move |msg: Message| {
//!     let _ = tx.send(msg);
//! })?;
//! client.publish("hello/world", "MyData")?;
//! let msg = rx.recv_timeout(std::time::Duration::from_secs(5))?;
//! assert_eq!(msg.data, "MyData");
//! # Ok(())
//! # }
//! ```
//!
//! # Nothing lost, when asked for
//!
//! A publish or a subscription with `"qos":1` is at least once
//! (`PROTOCOL.md` section 6.2): the publish is answered once stored, a
//! subscriber that fails is retried and sent again what it did not answer,
//! and with a data directory (`--data-dir`, [`broker::Config::data_dir`])
//! everything survives a crash of the broker in a log of CRC-checked
//! records. The client's [`client::Client::subscribe_qos`] and
//! [`client::Client::publish_with`] speak it; qos 0, what a Go client sends,
//! is exactly as before. The README's "Delivery guarantees" says what each
//! mode promises.
//!
//! # Subscribers without a port
//!
//! `GET /sub/{pattern}` holds the connection and streams the messages as
//! server-sent events or NDJSON (`PROTOCOL.md` section 6.3): `curl -N`, a
//! browser's `EventSource`, or [`client::Client::stream`] for a program that
//! cannot listen on a port. Patterns take MQTT's wildcards, `+` for one
//! level and a last `#` for the rest, in every kind of subscription, and
//! `GET /` is a live console in the browser.
//!
//! ```no_run
//! use message_broker::client::Client;
//!
//! # fn main() -> Result<(), message_broker::client::Error> {
//! let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
//! for msg in client.stream("sensors/+/temperature")? {
//!     println!("{} (id {:?}): {}", msg.topic, msg.id, msg.data);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Why threads and not async
//!
//! The broker uses one OS thread per connection and one per subscriber
//! endpoint, blocking I/O and a mutex-protected registry. That keeps it std
//! only, small enough to read in an afternoon, and predictable on the small
//! machines and unikernels it targets; every read is bounded and every wait
//! has a deadline, so a slow peer only ever holds its own thread.
//!
//! # Modules
//!
//! - [`http`]: the HTTP/1.1 reader and writer (pure: bytes in, values out).
//! - [`json`]: the JSON decoder and encoder (pure).
//! - [`broker`]: the server: connections, routing, sessions, delivery.
//! - `store` (private): message ids, idempotency keys and the log.
//! - [`client`]: the embeddable client: publish, subscribe with a callback
//!   or over a stream.
//! - `nats` (private): the NATS client protocol, subjects and server URLs
//!   of a cluster (pure).
//! - `pattern` (private): topics, subscription patterns and their matching.
//! - [`cli`]: the broker's command line and its `BROKER_*` variables.
//! - [`log`]: leveled logging to stderr.
//!
//! `unsafe` is denied everywhere but in the private `signal` module, which
//! installs the SIGTERM/SIGINT handler through the C library (std has no
//! signal API); see [`broker::Broker::stop_on_signals`].
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod broker;
pub mod cli;
pub mod client;
mod deadline;
pub mod http;
pub mod json;
pub mod log;
pub(crate) mod nats;
mod net;
pub(crate) mod pattern;
mod server;
mod signal;
mod store;
#[cfg(test)]
mod testutil;
mod topic;
