//! Helpers for the durability tests (`tests/durable.rs`,
//! `tests/durable_crash.rs`): a subscriber endpoint that answers as the test
//! says and can be taken down and brought back on the same port, qos 1
//! publishing that returns the `Message-Id`, a temporary data directory
//! removed on drop, the log's segment framing (`u32 LE` length, `u32 LE`
//! CRC-32C, payload), and brokers started under a file-size limit or
//! expected to exit. Every wait here has a deadline.
//!
//! - `endpoint`: the subscriber endpoint played by the test.
//! - `segment`: the log's segment files and their framing.
//! - `process`: brokers under a file-size limit or expected to exit, and
//!   pipelined qos 1 publishing.
//!
//! It reaches the shared helpers as `crate::support`.
#![allow(dead_code)]

mod endpoint;
mod process;
mod segment;

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use endpoint::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use segment::*;

use crate::support::{Resp, exchange, wait_until};
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Temporary directories

/// A directory under `std::env::temp_dir()` with a name no other test uses;
/// removed with everything in it when dropped. Declare it before the
/// brokers that use it, so that they are killed before it goes.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "mb-{tag}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside it (not created).
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `join(name)` as a string, for a `--data-dir` flag. The broker
    /// creates the directory itself (SPEC: "created if missing").
    pub fn arg(&self, name: &str) -> String {
        path_arg(&self.join(name))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A path as a command-line argument.
pub fn path_arg(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temp path").to_owned()
}

/// Copies the files of `from` into a new directory `to`, except `lock`
/// (a copy of a data directory as a crash would have left it, minus the
/// lock, which a crashed broker no longer holds).
pub fn copy_data_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "lock" || !entry.file_type().unwrap().is_file() {
            continue;
        }
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

// ---------------------------------------------------------------------------
// Talking to the broker

/// A `POST` with a JSON `body` and extra header lines, on a new connection.
pub fn post_with(addr: SocketAddr, path: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    exchange(addr, request.as_bytes())
}

/// `GET path` on a new connection.
pub fn get(addr: SocketAddr, path: &str) -> Resp {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The `Message-Id` of a publish answer; panics if it is missing or not a
/// decimal u64.
pub fn message_id(resp: &Resp) -> u64 {
    let value = resp
        .header("message-id")
        .unwrap_or_else(|| panic!("no Message-Id on {resp:?}"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("Message-Id {value:?} is not a decimal u64"))
}

/// The JSON body of a publish of `data` (plain ASCII, no escaping needed).
pub fn pub_body(data: &str, qos: u8, retain: bool) -> String {
    if retain {
        format!(r#"{{"data":"{data}","qos":{qos},"retain":true}}"#)
    } else {
        format!(r#"{{"data":"{data}","qos":{qos}}}"#)
    }
}

/// Publishes `data` with `qos`; panics unless 202. Its `Message-Id`.
pub fn publish_qos(addr: SocketAddr, topic: &str, data: &str, qos: u8) -> u64 {
    let resp = post_with(
        addr,
        &format!("/pub/{topic}"),
        &pub_body(data, qos, false),
        &[],
    );
    assert_eq!(
        resp.status,
        202,
        "publish {data:?} to {topic}: {}",
        resp.text()
    );
    message_id(&resp)
}

/// Publishes `data` with qos 1; panics unless 202. Its `Message-Id`.
pub fn publish_qos1(addr: SocketAddr, topic: &str, data: &str) -> u64 {
    publish_qos(addr, topic, data, 1)
}

/// Subscribes the endpoint 127.0.0.1:`port` to `topic` with `qos`; panics
/// unless 202.
pub fn subscribe_qos(addr: SocketAddr, topic: &str, port: u16, qos: u8) {
    let resp = post_with(
        addr,
        &format!("/sub/{topic}"),
        &format!(r#"{{"qos":{qos},"port":"{port}"}}"#),
        &[],
    );
    assert_eq!(
        resp.status,
        202,
        "subscribe {port} to {topic}: {}",
        resp.text()
    );
}

/// A durable (qos 1) subscription of 127.0.0.1:`port` to `topic`.
pub fn subscribe_qos1(addr: SocketAddr, topic: &str, port: u16) {
    subscribe_qos(addr, topic, port, 1);
}

/// The value of one sample on `GET /metrics`, if the page has it (a
/// labelled sample is named as printed: `name{label="v"}`).
pub fn metric_value(addr: SocketAddr, sample: &str) -> Option<u64> {
    let page = get(addr, "/metrics");
    assert_eq!(page.status, 200, "GET /metrics");
    let text = page.text();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))?
        .trim();
    value
        .parse()
        .ok()
        .or_else(|| value.parse::<f64>().ok().map(|v| v as u64))
}

/// Waits until the sample is `want`; panics with the last value seen.
pub fn wait_metric(addr: SocketAddr, sample: &str, want: u64, limit: Duration) {
    let mut last = None;
    let reached = wait_until(limit, || {
        last = metric_value(addr, sample);
        (last == Some(want)).then_some(())
    });
    assert!(
        reached.is_some(),
        "{sample} did not become {want} within {limit:?}; last seen {last:?}"
    );
}

/// A port on 127.0.0.1 that nothing listens on (it was free a moment ago):
/// connecting to it is refused.
pub fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
