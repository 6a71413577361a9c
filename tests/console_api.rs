//! The console and its JSON API (PROTOCOL.md section 6.6) against the real
//! broker binary: the page is self-contained HTML that reads the API and
//! tails over `EventSource`; `GET /api/v1/topics` and
//! `GET /api/v1/subscribers` have their exact shape; `--token` guards them
//! (with `?token=` on GET only) and is never logged; hostile requests get
//! their status, never a crash.

mod support;

use std::net::SocketAddr;
use support::durable::{Endpoint, post_with, pub_body, publish_qos1, refused_port, subscribe_qos};
use support::patterns::{Unsub, enc, get_with, request, wait_body};
use support::streams::StreamReader;
use support::{BrokerProcess, RawSubscriber, WAIT, publish, subscribe};

// ---------------------------------------------------------------------------
// The page

/// What in `html` would load something from another origin: `src=`,
/// `href=` (except on a plain `<a>` link), `srcset=`, CSS `url(` and
/// `@import` whose value is `http:`, `https:` or protocol-relative `//`,
/// and any absolute http(s) URL outside an `<a>` tag (a script's fetch or
/// import). Each finding is a short excerpt.
fn external_assets(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let excerpt = |at: usize| lower[at..].chars().take(60).collect::<String>();
    let is_external = |value: &str| {
        let v = value.trim_start_matches(['"', '\'', ' ', '\t', '\n']);
        ["http:", "https:", "//", "ftp:"]
            .iter()
            .any(|scheme| v.starts_with(scheme))
    };
    let mut found = Vec::new();
    for marker in ["src=", "srcset=", "href=", "url(", "@import"] {
        for (at, _) in lower.match_indices(marker) {
            if marker == "href=" && in_anchor(&lower, at) {
                continue; // a plain link loads nothing
            }
            if is_external(&lower[at + marker.len()..]) {
                found.push(excerpt(at));
            }
        }
    }
    for scheme in ["http://", "https://"] {
        for (at, _) in lower.match_indices(scheme) {
            if !in_anchor(&lower, at) {
                found.push(excerpt(at));
            }
        }
    }
    found
}

/// Whether `at` is inside an `<a …>` start tag.
fn in_anchor(lower: &str, at: usize) -> bool {
    let Some(open) = lower[..at].rfind('<') else {
        return false;
    };
    let tag = &lower[open..at];
    !tag.contains('>') && (tag.starts_with("<a ") || tag.starts_with("<a\n"))
}

#[test]
fn the_asset_checker_finds_what_it_should() {
    let clean = r#"<html><link rel="icon" href="data:,"><a href="https://example.com/docs">docs</a>
        <script>fetch("api/v1/topics"); // a comment
        </script><style>.x{background:url(data:image/png;base64,AAAA)}</style>"#;
    assert_eq!(external_assets(clean), Vec::<String>::new());
    for bad in [
        r#"<script src="https://cdn.example/x.js"></script>"#,
        r#"<script src='//cdn.example/x.js'></script>"#,
        r#"<link rel="stylesheet" href="http://cdn.example/x.css">"#,
        r#"<img srcset="https://img.example/a.png 2x">"#,
        r#"<style>body{background:url("//img.example/a.png")}</style>"#,
        r#"<style>@import "https://fonts.example/f.css";</style>"#,
        r#"<script>fetch("https://api.example/x")</script>"#,
        r#"<IMG SRC=HTTPS://img.example/a.png>"#,
    ] {
        assert!(!external_assets(bad).is_empty(), "not caught: {bad}");
    }
}

#[test]
fn the_console_page_is_self_contained_html_that_reads_the_api() {
    let broker = BrokerProcess::start(&[]);
    let page = get_with(broker.addr, "/", &[]);
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();
    assert!(html.to_ascii_lowercase().contains("<html"), "{html}");
    let external = external_assets(&html);
    assert!(external.is_empty(), "assets from elsewhere: {external:?}");
    // The API paths may be written relative to the page, which is `/`.
    for needle in ["api/v1/topics", "api/v1/subscribers", "EventSource"] {
        assert!(html.contains(needle), "the page does not mention {needle}");
    }
}

// ---------------------------------------------------------------------------
// The JSON API

/// One row of `GET /api/v1/topics`, as the broker writes it.
fn topic_row(topic: &str, subscribers: usize, messages: u64, retained: bool) -> String {
    format!(
        r#"{{"topic":"{topic}","subscribers":{subscribers},"messages":{messages},"retained":{retained}}}"#
    )
}

/// One row of `GET /api/v1/subscribers`.
struct SubRow<'a> {
    kind: &'a str,
    endpoint: SocketAddr,
    patterns: &'a [&'a str],
    qos: u8,
    state: &'a str,
    backlog: (usize, usize),
}

impl SubRow<'_> {
    fn json(&self) -> String {
        let patterns: Vec<String> = self.patterns.iter().map(|p| format!("\"{p}\"")).collect();
        format!(
            r#"{{"kind":"{}","endpoint":"{}","patterns":[{}],"qos":{},"state":"{}","backlog_messages":{},"backlog_bytes":{}}}"#,
            self.kind,
            self.endpoint,
            patterns.join(","),
            self.qos,
            self.state,
            self.backlog.0,
            self.backlog.1
        )
    }
}

fn array(rows: &[String]) -> String {
    format!("[{}]", rows.join(","))
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn topics_and_subscribers_have_their_exact_shape() {
    let broker = BrokerProcess::start(&["--liveness-timeout", "0"]);
    let addr = broker.addr;
    assert_eq!(wait_body(addr, "/api/v1/topics", "[]", WAIT).text(), "[]");
    let empty = wait_body(addr, "/api/v1/subscribers", "[]", WAIT);
    assert_eq!(empty.header("content-type"), Some("application/json"));

    // A qos 0 callback with two patterns, a qos 1 callback, a qos 1
    // callback that is down, and a stream.
    let plain = RawSubscriber::start();
    subscribe(addr, &enc("c/+"), plain.port);
    subscribe(addr, "other", plain.port);
    let durable = Endpoint::start();
    subscribe_qos(addr, "c/q", durable.port, 1);
    let down = refused_port();
    subscribe_qos(addr, "c/q", down, 1);
    let mut stream = StreamReader::sse(addr, &enc("c/#"), &[]);
    let stream_peer = stream.socket().local_addr().unwrap();

    publish(addr, "c/x", "x1");
    publish(addr, "c/x", "x2");
    let q1 = publish_qos1(addr, "c/q", "q1");
    let resp = post_with(addr, "/pub/z/kept", &pub_body("kept", 0, true), &[]);
    assert_eq!(resp.status, 202);
    // Delivered (so the live subscribers' backlogs are empty again).
    assert_eq!(plain.recv_data(2), ["x1", "x2"]);
    durable.wait_data(WAIT, &["q1".to_owned()]);
    for want in ["x1", "x2", "q1"] {
        let e = stream.message();
        assert!(e.data.contains(&format!("\"data\":\"{want}\"")), "{e:?}");
    }

    // Name order (byte order: '#' < '+' < letters): patterns with their
    // subscriber counts, published topics with their message counts.
    let topics = array(&[
        topic_row("c/#", 1, 0, false),
        topic_row("c/+", 1, 0, false),
        topic_row("c/q", 2, 1, false),
        topic_row("c/x", 0, 2, false),
        topic_row("other", 1, 0, false),
        topic_row("z/kept", 0, 1, true),
    ]);
    wait_body(addr, "/api/v1/topics", &topics, WAIT);

    // The down endpoint owes q1 as a qos 1 delivery body.
    let owed = format!(r#"{{"data":"q1","Topic":"c/q","id":{q1}}}"#).len();
    let mut callbacks = [
        SubRow {
            kind: "callback",
            endpoint: local(plain.port),
            patterns: &["c/+", "other"],
            qos: 0,
            state: "ok",
            backlog: (0, 0),
        },
        SubRow {
            kind: "callback",
            endpoint: local(durable.port),
            patterns: &["c/q"],
            qos: 1,
            state: "ok",
            backlog: (0, 0),
        },
        SubRow {
            kind: "callback",
            endpoint: local(down),
            patterns: &["c/q"],
            qos: 1,
            state: "retrying",
            backlog: (1, owed),
        },
    ];
    callbacks.sort_by_key(|r| r.endpoint);
    let stream_row = SubRow {
        kind: "stream",
        endpoint: stream_peer,
        patterns: &["c/#"],
        qos: 0,
        state: "streaming",
        backlog: (0, 0),
    };
    let mut rows: Vec<String> = callbacks.iter().map(SubRow::json).collect();
    rows.push(stream_row.json());
    wait_body(addr, "/api/v1/subscribers", &array(&rows), WAIT);

    // The lists follow the tables: a stream that leaves and a pattern
    // given up are gone from both.
    stream.close();
    let resp = Unsub::Delete.send(addr, "other", plain.port);
    assert_eq!(resp.status, 202);
    callbacks
        .iter_mut()
        .filter(|r| r.endpoint == local(plain.port))
        .for_each(|r| r.patterns = &["c/+"]);
    let rows: Vec<String> = callbacks.iter().map(SubRow::json).collect();
    wait_body(addr, "/api/v1/subscribers", &array(&rows), WAIT);
    let topics = array(&[
        topic_row("c/+", 1, 0, false),
        topic_row("c/q", 2, 1, false),
        topic_row("c/x", 0, 2, false),
        topic_row("z/kept", 0, 1, true),
    ]);
    wait_body(addr, "/api/v1/topics", &topics, WAIT);
}

// ---------------------------------------------------------------------------
// The token

const TOKEN: &str = "s3cret";
const WRONG: &str = "wr0ng";
const GUARDED: [&str; 3] = ["/", "/api/v1/topics", "/api/v1/subscribers"];

/// A request target, its headers, and the status it must get.
type Case<'a> = (String, Vec<(&'a str, &'a str)>, u16);

fn status(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    let body = (method == "POST").then_some(r#"{"data":"x","qos":0}"#);
    request(addr, method, path, headers, body).status
}

#[test]
fn the_token_guards_console_api_and_streams_and_is_never_logged() {
    let broker = BrokerProcess::start(&["--token", TOKEN, "--log-level", "debug"]);
    let addr = broker.addr;
    let bearer = format!("Bearer {TOKEN}");
    let wrong_bearer = format!("Bearer {WRONG}");
    for path in GUARDED {
        let cases: [Case; 5] = [
            (path.into(), vec![], 401),
            (path.into(), vec![("Authorization", &bearer)], 200),
            (format!("{path}?token={TOKEN}"), vec![], 200),
            (format!("{path}?token={WRONG}"), vec![], 401),
            (path.into(), vec![("Authorization", &wrong_bearer)], 401),
        ];
        for (target, headers, want) in cases {
            let got = status(addr, "GET", &target, &headers);
            assert_eq!(got, want, "GET {target} with {headers:?}");
        }
    }
    // The query is for GET only (EventSource cannot set a header).
    let query = format!("?token={TOKEN}");
    assert_eq!(status(addr, "POST", &format!("/pub/t{query}"), &[]), 401);
    assert_eq!(
        status(addr, "POST", "/pub/t", &[("Authorization", &bearer)]),
        202
    );
    // The operations endpoints need none.
    assert_eq!(status(addr, "GET", "/healthz", &[]), 200);
    assert_eq!(status(addr, "GET", "/metrics", &[]), 200);

    // Streams: refused without the token, served with it either way.
    let sse = ("Accept", "text/event-stream");
    let refused = StreamReader::open(addr, "/sub/t", &[sse]);
    assert_eq!(refused.status, 401);
    let refused = StreamReader::open(addr, &format!("/sub/t?token={WRONG}"), &[sse]);
    assert_eq!(refused.status, 401);
    let mut by_query = StreamReader::open(addr, &format!("/sub/t{query}"), &[sse]);
    assert_eq!(by_query.status, 200);
    let mut by_header = StreamReader::open(addr, "/sub/t", &[sse, ("Authorization", &bearer)]);
    assert_eq!(by_header.status, 200);
    let resp = post_with(
        addr,
        "/pub/t",
        &pub_body("through", 0, false),
        &[("Authorization", &bearer)],
    );
    assert_eq!(resp.status, 202);
    for s in [&mut by_query, &mut by_header] {
        assert!(s.message().data.contains("\"data\":\"through\""));
    }
    by_query.close();
    by_header.close();

    // The log has its debug lines, up to the streams' end, and no token.
    broker.wait_for_log("ended");
    let log = broker.log();
    assert!(
        log.iter().any(|l| l.contains("debug")),
        "no debug lines: {log:?}"
    );
    let leaks: Vec<&String> = log
        .iter()
        .filter(|l| l.contains(TOKEN) || l.contains(WRONG))
        .collect();
    assert!(leaks.is_empty(), "a token in the log: {leaks:?}");
}

// ---------------------------------------------------------------------------
// Hostile input

#[test]
fn hostile_requests_to_the_console_endpoints_get_a_status_not_a_crash() {
    let mut broker = BrokerProcess::start(&["--token", TOKEN]);
    let addr = broker.addr;
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    for (method, path) in [
        ("POST", "/api/v1/topics"),
        ("PUT", "/api/v1/subscribers"),
        ("DELETE", "/api/v1/topics"),
        ("POST", "/"),
    ] {
        let resp = request(addr, method, path, &auth, Some("{}"));
        assert_eq!(resp.status, 405, "{method} {path}");
        assert_eq!(resp.header("allow"), Some("GET"), "{method} {path}");
    }
    for path in [
        "/api/v1/topics/x",
        "/api/v1/subscribers/127.0.0.1:1",
        "/api/v1",
        "/api/v1/",
        "/api/v2/topics",
        "/api/v1/topicsx",
    ] {
        assert_eq!(status(addr, "GET", path, &auth), 404, "GET {path}");
    }
    // Tokens that are not the token, however they are dressed.
    for token in [
        "",
        "%zz",
        "s3cret%00",
        "s3cre",
        "s3crett",
        &"a".repeat(7000),
    ] {
        let path = format!("/api/v1/topics?token={token}");
        assert_eq!(status(addr, "GET", &path, &[]), 401, "token {token:.20}");
    }
    // Percent-encoded as a browser's encodeURIComponent may write it.
    assert_eq!(
        status(addr, "GET", "/api/v1/topics?token=s3cre%74", &[]),
        200
    );
    // Past the request line or header limits.
    let huge = "a".repeat(10 * 1024);
    for path in ["/api/v1/topics", "/", "/sub/t"] {
        let got = status(addr, "GET", &format!("{path}?token={huge}"), &[]);
        assert!(
            [401, 414, 431].contains(&got),
            "10 kB ?token= on {path}: {got}"
        );
    }
    let huge_bearer = format!("Bearer {huge}");
    let got = status(
        addr,
        "GET",
        "/api/v1/subscribers",
        &[("Authorization", &huge_bearer)],
    );
    assert!([401, 431].contains(&got), "10 kB bearer: {got}");

    assert!(
        broker.exited().is_none(),
        "the broker died: {:?}",
        broker.log()
    );
    assert_eq!(status(addr, "GET", "/healthz", &[]), 200);
    assert_eq!(status(addr, "GET", "/api/v1/topics", &auth), 200);
}
