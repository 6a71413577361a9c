//! Helpers for the wildcard and console tests (`tests/wildcards.rs`,
//! `tests/console_api.rs`): patterns written into request paths, requests
//! with any method and headers, unsubscribing both ways, and the topic a
//! pattern surely matches (for fences). Every wait here has a deadline.
#![allow(dead_code)]

use super::{Resp, exchange, wait_until};
use std::net::SocketAddr;
use std::time::Duration;

/// A pattern or topic as a request path segment: `#` would start a
/// fragment, `?` a query, so they (and `%` and space) are percent-encoded;
/// `+` and `/` stay as they are.
pub fn enc(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        match c {
            '%' => out.push_str("%25"),
            '#' => out.push_str("%23"),
            '?' => out.push_str("%3F"),
            ' ' => out.push_str("%20"),
            c => out.push(c),
        }
    }
    out
}

/// `METHOD path` with extra header lines and a JSON body (none if `None`),
/// on a new connection; the one response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or(""));
    exchange(addr, head.as_bytes())
}

/// `GET path` with extra header lines.
pub fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(addr, "GET", path, headers, None)
}

/// The two ways to unsubscribe (PROTOCOL.md section 6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsub {
    /// `DELETE /sub/{pattern}`.
    Delete,
    /// `POST /unsub/{pattern}`.
    Post,
}

impl Unsub {
    pub const BOTH: [Unsub; 2] = [Unsub::Delete, Unsub::Post];

    /// The method and path that unsubscribe from `pattern`.
    pub fn target(self, pattern: &str) -> (&'static str, String) {
        match self {
            Unsub::Delete => ("DELETE", format!("/sub/{}", enc(pattern))),
            Unsub::Post => ("POST", format!("/unsub/{}", enc(pattern))),
        }
    }

    /// Sends the unsubscribe with `body` as is.
    pub fn send_body(self, addr: SocketAddr, pattern: &str, body: Option<&str>) -> Resp {
        let (method, path) = self.target(pattern);
        request(addr, method, &path, &[], body)
    }

    /// Unsubscribes 127.0.0.1:`port` from `pattern`; the answer.
    pub fn send(self, addr: SocketAddr, pattern: &str, port: u16) -> Resp {
        self.send_body(addr, pattern, Some(&format!(r#"{{"port":"{port}"}}"#)))
    }
}

/// A topic that `pattern` matches: each `+` level and a last `#` level
/// become `f` (so the topic has a level for `#`, which matches it too).
pub fn topic_matching(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|level| match level {
            "+" | "#" => "f",
            other => other,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The `data` and `Topic` of a delivered body (`{"data":…,"Topic":…}`).
pub fn data_and_topic(body: &str) -> (String, String) {
    let object = message_broker::json::parse_object(body.as_bytes())
        .unwrap_or_else(|e| panic!("not a JSON object: {body:?}: {e}"));
    let field = |key: &str| {
        object
            .get_str(key)
            .unwrap_or_else(|| panic!("no {key:?} in {body:?}"))
            .to_owned()
    };
    (field("data"), field("Topic"))
}

/// Waits until `GET path` answers 200 with exactly `want`; panics with the
/// last answer otherwise.
pub fn wait_body(addr: SocketAddr, path: &str, want: &str, limit: Duration) -> Resp {
    let mut last = None;
    let found = wait_until(limit, || {
        let resp = get_with(addr, path, &[]);
        let done = resp.status == 200 && resp.text() == want;
        last = Some(resp.clone());
        done.then_some(resp)
    });
    found.unwrap_or_else(|| {
        let last = last.map(|r| format!("{} {}", r.status, r.text()));
        panic!("GET {path} did not become\n  {want}\nwithin {limit:?}; last\n  {last:?}")
    })
}
