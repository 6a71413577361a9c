//! Wildcard subscriptions and unsubscribe (PROTOCOL.md section 6.5) end to
//! end against the real broker binary: a matching table run over callback
//! endpoints and streams, the 400s for malformed patterns and wildcard
//! topics, one delivery per endpoint however many of its patterns match,
//! both ways of unsubscribing (durably, across a crash, too), retained
//! messages reaching a new wildcard subscription, and the Rust client's
//! patterns and streams.
//!
//! A message that must not arrive is proven absent by a fence: a later
//! message that does match, delivered in order behind it.

mod support;

use message_broker::client::{Client, Error, Message};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;
use support::durable::{
    Endpoint, TempDir, message_id, post_with, pub_body, publish_qos1, refused_port, subscribe_qos,
    wait_metric,
};
use support::patterns::{Unsub, data_and_topic, enc, get_with, topic_matching, wait_body};
use support::streams::StreamReader;
use support::{BrokerProcess, RawSubscriber, WAIT, metric, post, publish, subscribe_channel};

/// Pattern, topic published, whether the pattern's subscriber gets it.
const TABLE: &[(&str, &str, bool)] = &[
    ("#", "a", true),
    ("#", "a/b/c", true),
    ("#", "/", true),
    ("a/#", "a", true),
    ("a/#", "a/b/c", true),
    ("a/#", "ab", false),
    ("a/#", "b/a", false),
    ("+/+", "a/b", true),
    ("+/+", "/", true),
    ("+/+", "a", false),
    ("+/+", "a/b/c", false),
    ("+", "a/b", false),
    ("a//b", "a//b", true),
    ("a//b", "a/b", false),
    ("a/+/b", "a//b", true),
    ("+/x", "y/x", true),
    ("+/x", "y/z", false),
    ("x/+", "x/", true),
    ("x/+", "x", false),
    ("/+", "/a", true),
    ("+/", "a/", true),
    ("+/", "/a", false),
    ("a/+/#", "a", false),
    ("a/+/#", "a/b/c/d", true),
    ("A/+", "a/b", false),
    ("$SYS/#", "$SYS/x", true),
    ("x/+", "x/a+b", true),
];

/// The `data` of every message before `fence`, with its topic. Each `next`
/// has a deadline of its own; the whole wait has one too.
fn until_fence(mut next: impl FnMut() -> (String, String), fence: &str) -> Vec<(String, String)> {
    let deadline = Instant::now() + WAIT;
    let mut before = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no {fence:?} within {WAIT:?}; before it: {before:?}"
        );
        let (data, topic) = next();
        if data == fence {
            return before;
        }
        before.push((data, topic));
    }
}

/// Compares what one subscriber of `TABLE[i]` got with the table; the
/// mismatch, if any.
fn judge(i: usize, how: &str, before_fence: &[(String, String)]) -> Option<String> {
    let (pattern, topic, want) = TABLE[i];
    let case = format!("case{i}");
    let got: Vec<&str> = before_fence
        .iter()
        .filter(|(data, _)| *data == case)
        .map(|(_, topic)| topic.as_str())
        .collect();
    let expected: &[&str] = if want { &[topic] } else { &[] };
    (got != expected).then(|| {
        format!("{how} on {pattern:?}, publish to {topic:?}: expected {expected:?}, got {got:?}")
    })
}

#[test]
fn matching_table_over_callbacks_and_streams() {
    assert!(TABLE.len() >= 12);
    let broker = BrokerProcess::start(&["--liveness-timeout", "0"]);
    let subscribers: Vec<RawSubscriber> = TABLE
        .iter()
        .map(|(pattern, _, _)| {
            let s = RawSubscriber::start();
            support::subscribe(broker.addr, &enc(pattern), s.port);
            s
        })
        .collect();
    let mut streams: Vec<StreamReader> = TABLE
        .iter()
        .map(|(pattern, _, _)| StreamReader::sse(broker.addr, &enc(pattern), &[]))
        .collect();
    // Each case's message, then a fence its pattern surely matches.
    for (i, (pattern, topic, _)) in TABLE.iter().enumerate() {
        publish(broker.addr, &enc(topic), &format!("case{i}"));
        publish(
            broker.addr,
            &enc(&topic_matching(pattern)),
            &format!("fence{i}"),
        );
    }
    let mut wrong = Vec::new();
    for i in 0..TABLE.len() {
        let fence = format!("fence{i}");
        let before = until_fence(|| data_and_topic(&subscribers[i].recv_msg().body), &fence);
        wrong.extend(judge(i, "callback", &before));
        let stream = &mut streams[i];
        let before = until_fence(|| data_and_topic(&stream.message().data), &fence);
        wrong.extend(judge(i, "stream", &before));
    }
    assert!(
        wrong.is_empty(),
        "{} mismatches:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Malformed patterns (PROTOCOL.md 6.5: `+` or `#` mixed with other
/// characters in a level, `#` not last).
const INVALID: &[&str] = &["a/#/b", "a+", "#a", "a/b#", "+a", "a/+b", "##", "#/", "#/#"];

#[test]
fn malformed_patterns_are_400_on_every_subscription_request() {
    let broker = BrokerProcess::start(&[]);
    let port = RawSubscriber::start().port;
    let body = format!(r#"{{"qos":0,"port":"{port}"}}"#);
    let sse = [("Accept", "text/event-stream")];
    for pattern in INVALID {
        let path = enc(pattern);
        let answers = [
            (
                "POST /sub",
                post(broker.addr, &format!("/sub/{path}"), &body),
            ),
            (
                "GET /sub",
                get_with(broker.addr, &format!("/sub/{path}"), &sse),
            ),
            (
                "DELETE /sub",
                Unsub::Delete.send(broker.addr, pattern, port),
            ),
            ("POST /unsub", Unsub::Post.send(broker.addr, pattern, port)),
        ];
        for (what, resp) in answers {
            assert_eq!(
                resp.status,
                400,
                "{what} {pattern:?} ({path}): {}",
                resp.text()
            );
            assert!(!resp.body.is_empty(), "{what} {pattern:?}: a reason");
        }
    }
    assert_eq!(metric(broker.addr, "broker_subscribers"), 0);
    assert_eq!(metric(broker.addr, "broker_topics"), 0);
    assert_eq!(metric(broker.addr, "broker_streams"), 0);
    // The same requests with a well-formed pattern are taken.
    let resp = post(broker.addr, &format!("/sub/{}", enc("a/+/#")), &body);
    assert_eq!(resp.status, 202, "{}", resp.text());
    assert_eq!(metric(broker.addr, "broker_topics"), 1);
}

#[test]
fn a_topic_level_that_is_exactly_a_wildcard_is_400_and_a_plus_inside_a_level_is_not() {
    let broker = BrokerProcess::start(&["--liveness-timeout", "0"]);
    let all = RawSubscriber::start();
    support::subscribe(broker.addr, &enc("#"), all.port);
    let cases = [
        ("+", 400),
        ("#", 400),
        ("a/+", 400),
        ("a/#", 400),
        ("+/a", 400),
        ("a/#/b", 400),
        ("a//#", 400),
        ("/+", 400),
        ("a+b", 202),
        ("a#b", 202),
        ("+a", 202),
        ("#a/b", 202),
        ("a/++", 202),
        ("x/b+/c", 202),
    ];
    let mut accepted = Vec::new();
    for (i, (topic, want)) in cases.iter().enumerate() {
        let resp = post(
            broker.addr,
            &format!("/pub/{}", enc(topic)),
            &pub_body(&format!("m{i}"), 0, false),
        );
        assert_eq!(resp.status, *want, "publish to {topic:?}: {}", resp.text());
        if *want == 202 {
            accepted.push((format!("m{i}"), (*topic).to_owned()));
        }
    }
    publish(broker.addr, "fence", "fence");
    let got = until_fence(|| data_and_topic(&all.recv_msg().body), "fence");
    assert_eq!(got, accepted, "what a subscriber of # got");
}

#[test]
fn an_endpoint_matching_through_several_patterns_gets_a_message_once() {
    let broker = BrokerProcess::start(&["--liveness-timeout", "0"]);
    let plain = Endpoint::start();
    for pattern in ["m/+", "m/#", "m/x", "#"] {
        subscribe_qos(broker.addr, &enc(pattern), plain.port, 0);
    }
    // Patterns of both QoS on one endpoint: still once.
    let mixed = Endpoint::start();
    subscribe_qos(broker.addr, &enc("m/+"), mixed.port, 0);
    subscribe_qos(broker.addr, &enc("m/#"), mixed.port, 1);
    subscribe_qos(broker.addr, &enc("m/x"), mixed.port, 1);
    publish_qos1(broker.addr, "m/x", "once");
    publish(broker.addr, "m/y", "fence");
    for (name, endpoint) in [("qos 0", &plain), ("mixed qos", &mixed)] {
        let msgs = endpoint.wait_msgs(WAIT, "the fence", |m| m.iter().any(|a| a.data() == "fence"));
        let data: Vec<&str> = msgs.iter().map(|a| a.data()).collect();
        assert_eq!(data, ["once", "fence"], "{name}: every delivery");
        assert_eq!(msgs[0].topic().as_deref(), Some("m/x"));
    }
    assert_eq!(metric(broker.addr, "broker_subscribers"), 2);
}

#[test]
fn unsubscribing_stops_deliveries_for_that_pattern_both_ways() {
    let broker = BrokerProcess::start(&["--liveness-timeout", "0"]);
    let mut endpoints = Vec::new();
    for how in Unsub::BOTH {
        let ep = Endpoint::start();
        let (gone, kept) = (format!("{how:?}/u/+"), format!("{how:?}/keep"));
        subscribe_qos(broker.addr, &enc(&gone), ep.port, 0);
        subscribe_qos(broker.addr, &enc(&kept), ep.port, 0);
        publish(broker.addr, &format!("{how:?}/u/1"), "before");
        ep.wait_data(WAIT, &["before".to_owned()]);

        let resp = how.send(broker.addr, &gone, ep.port);
        assert_eq!(resp.status, 202, "{how:?} {gone}: {}", resp.text());
        publish(broker.addr, &format!("{how:?}/u/2"), "after");
        publish(broker.addr, &kept, "fence");
        let msgs = ep.wait_msgs(WAIT, "the fence", |m| m.iter().any(|a| a.data() == "fence"));
        let data: Vec<&str> = msgs.iter().map(|a| a.data()).collect();
        assert_eq!(data, ["before", "fence"], "{how:?}: after the 202");
        endpoints.push(ep); // kept up: a closed endpoint is dropped
    }
    // Both endpoints are still there, each with its other pattern.
    assert_eq!(metric(broker.addr, "broker_subscribers"), 2);
    assert_eq!(metric(broker.addr, "broker_topics"), 2);
}

#[test]
fn unsubscribing_what_is_not_there_is_202_and_without_a_port_400() {
    let broker = BrokerProcess::start(&["--liveness-timeout", "0"]);
    let ep = Endpoint::start();
    subscribe_qos(broker.addr, &enc("n/+"), ep.port, 0);
    let stranger = refused_port();
    for how in Unsub::BOTH {
        // Another spelling of an overlapping pattern is another pattern.
        for (pattern, port) in [("n/#", ep.port), ("n/x", ep.port), ("never", ep.port)] {
            let resp = how.send(broker.addr, pattern, port);
            assert_eq!(resp.status, 202, "{how:?} {pattern}: {}", resp.text());
        }
        let resp = how.send(broker.addr, "n/+", stranger);
        assert_eq!(resp.status, 202, "{how:?} an unknown endpoint");
        for body in [Some("{}"), Some(r#"{"qos":0}"#), Some(""), None] {
            let resp = how.send_body(broker.addr, "n/+", body);
            assert_eq!(resp.status, 400, "{how:?} with body {body:?}");
        }
        for port in [r#""0""#, r#""65536""#, "true", r#""x""#] {
            let body = format!(r#"{{"port":{port}}}"#);
            let resp = how.send_body(broker.addr, "n/+", Some(&body));
            assert_eq!(resp.status, 400, "{how:?} with body {body}");
        }
    }
    // None of that removed the subscription.
    publish(broker.addr, "n/1", "still");
    ep.wait_data(WAIT, &["still".to_owned()]);
    assert_eq!(metric(broker.addr, "broker_subscribers"), 1);
    assert_eq!(
        metric(
            broker.addr,
            "broker_subscribers_dropped_total{reason=\"unsubscribed\"}"
        ),
        0
    );
}

#[test]
fn the_last_pattern_removed_drops_the_endpoint_and_its_backlog() {
    const DROPPED: &str = "broker_subscribers_dropped_total{reason=\"unsubscribed\"}";
    let broker = BrokerProcess::start(&["--liveness-timeout", "0"]);
    let ep = Endpoint::start();
    subscribe_qos(broker.addr, &enc("l/a"), ep.port, 0);
    subscribe_qos(broker.addr, &enc("l/+"), ep.port, 0);
    assert_eq!(metric(broker.addr, "broker_subscribers"), 1);

    let resp = Unsub::Delete.send(broker.addr, "l/a", ep.port);
    assert_eq!(resp.status, 202);
    assert_eq!(metric(broker.addr, "broker_subscribers"), 1, "one left");
    assert_eq!(metric(broker.addr, DROPPED), 0);
    let resp = Unsub::Post.send(broker.addr, "l/+", ep.port);
    assert_eq!(resp.status, 202);
    wait_metric(broker.addr, "broker_subscribers", 0, WAIT);
    assert_eq!(metric(broker.addr, DROPPED), 1);
    assert_eq!(metric(broker.addr, "broker_topics"), 0);
    wait_body(broker.addr, "/api/v1/subscribers", "[]", WAIT);

    // A qos 1 endpoint that is down holds a backlog; its last unsubscribe
    // frees it.
    let down = refused_port();
    subscribe_qos(broker.addr, &enc("l/q/#"), down, 1);
    publish_qos1(broker.addr, "l/q", "owed 1");
    publish_qos1(broker.addr, "l/q/x", "owed 2");
    wait_metric(broker.addr, "broker_sessions_backlog_messages", 2, WAIT);
    let resp = Unsub::Delete.send(broker.addr, "l/q/#", down);
    assert_eq!(resp.status, 202);
    wait_metric(broker.addr, "broker_subscribers", 0, WAIT);
    assert_eq!(metric(broker.addr, "broker_sessions"), 0);
    assert_eq!(metric(broker.addr, "broker_sessions_backlog_messages"), 0);
    assert_eq!(metric(broker.addr, "broker_queued_messages"), 0);
    assert_eq!(metric(broker.addr, DROPPED), 2);
}

#[test]
fn a_durable_unsubscribe_survives_a_crash_and_restart() {
    let dir = TempDir::new("wild-unsub");
    let data = dir.arg("data");
    let mut broker = BrokerProcess::start(&["--data-dir", &data]);
    let port = broker.addr.port();
    let ep = Endpoint::start();
    subscribe_qos(broker.addr, &enc("d/a"), ep.port, 1);
    subscribe_qos(broker.addr, &enc("d/+/b"), ep.port, 1);
    publish_qos1(broker.addr, "d/x/b", "before");
    ep.wait_data(WAIT, &["before".to_owned()]);
    let resp = Unsub::Delete.send(broker.addr, "d/+/b", ep.port);
    assert_eq!(resp.status, 202, "{}", resp.text());

    broker.kill(); // SIGKILL: only what the log holds survives
    let broker = BrokerProcess::start_on(port, &["--data-dir", &data]);
    let gone = publish_qos1(broker.addr, "d/x/b", "gone");
    let kept = publish_qos1(broker.addr, "d/a", "kept");
    assert!(kept > gone);
    let msgs = ep.wait_data(WAIT, &["kept".to_owned()]);
    let data: Vec<&str> = msgs.iter().map(|a| a.data()).collect();
    assert!(
        !data.contains(&"gone"),
        "delivered after a durable unsubscribe and a restart: {data:?}"
    );
    let kept_at = msgs.iter().find(|a| a.data() == "kept").unwrap();
    assert_eq!(kept_at.qos1_id(), kept);
    let listing = get_with(broker.addr, "/api/v1/subscribers", &[]).text();
    let want = format!(
        "\"endpoint\":\"127.0.0.1:{}\",\"patterns\":[\"d/a\"],\"qos\":1",
        ep.port
    );
    assert!(listing.contains(&want), "{listing}");
}

#[test]
fn retained_messages_reach_a_new_wildcard_subscription() {
    let broker = BrokerProcess::start(&["--liveness-timeout", "0"]);
    let mut ids = Vec::new();
    for (topic, data) in [
        ("r/1", "one"),
        ("r/2", "two"),
        ("r/3/x", "deep"),
        ("q/1", "other"),
    ] {
        let resp = post_with(
            broker.addr,
            &format!("/pub/{topic}"),
            &pub_body(data, 0, true),
            &[],
        );
        assert_eq!(resp.status, 202, "{}", resp.text());
        ids.push(message_id(&resp));
    }
    let want = [
        ("one".to_owned(), "r/1".to_owned()),
        ("two".to_owned(), "r/2".to_owned()),
    ];
    let callback = RawSubscriber::start();
    support::subscribe(broker.addr, &enc("r/+"), callback.port);
    let mut stream = StreamReader::sse(broker.addr, &enc("r/+"), &[]);
    publish(broker.addr, "r/fence", "fence");
    let got = until_fence(|| data_and_topic(&callback.recv_msg().body), "fence");
    assert_eq!(got, want, "callback");
    let mut stream_ids = Vec::new();
    let got = until_fence(
        || {
            let e = stream.message();
            stream_ids.push(e.id);
            data_and_topic(&e.data)
        },
        "fence",
    );
    assert_eq!(got, want, "stream");
    assert_eq!(
        stream_ids[..2],
        [Some(ids[0]), Some(ids[1])],
        "original ids"
    );
}

// ---------------------------------------------------------------------------
// The Rust client

fn client(addr: SocketAddr) -> Client {
    Client::builder(addr.to_string())
        .listen_ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .listen_port(0)
        .build()
        .expect("client")
}

fn recv(rx: &Receiver<Message>, what: &str) -> Message {
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|e| panic!("{what}: nothing within {WAIT:?}: {e}"))
}

#[test]
fn client_wildcard_subscription_names_the_concrete_topic() {
    let broker = BrokerProcess::start(&[]);
    let c = client(broker.addr);
    let rx = subscribe_channel(&c, "w/+");
    c.publish("w/x/y", "too deep").unwrap();
    c.publish("w/x", "hello").unwrap();
    let m = recv(&rx, "w/x");
    assert_eq!(
        (m.topic.as_str(), m.data.as_str(), m.id),
        ("w/x", "hello", None),
        "the first message is the one that matches"
    );
    assert!(matches!(c.publish("w/+", "x"), Err(Error::InvalidTopic(_))));
    assert!(matches!(
        c.subscribe("w/#/x", |_| {}),
        Err(Error::InvalidTopic(_))
    ));
}

#[test]
fn client_overlapping_patterns_each_run_their_callback_once() {
    let broker = BrokerProcess::start(&[]);
    let c = client(broker.addr);
    let (tx, rx) = mpsc::channel();
    for pattern in ["o/+", "o/#"] {
        let tx = tx.clone();
        c.subscribe(pattern, move |m: Message| {
            let _ = tx.send((pattern, m.topic, m.data));
        })
        .unwrap();
    }
    c.publish("o/x", "one").unwrap();
    c.publish("o/fence", "fence").unwrap();
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.iter().filter(|(_, _, d)| d == "fence").count() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let call = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("both fences within {WAIT:?}; got {got:?}"));
        got.push(call);
    }
    let ones: Vec<(&str, &str)> = got
        .iter()
        .filter(|(_, _, d)| d == "one")
        .map(|(p, t, _)| (*p, t.as_str()))
        .collect();
    assert_eq!(ones.len(), 2, "each callback once: {got:?}");
    assert!(ones.contains(&("o/+", "o/x")) && ones.contains(&("o/#", "o/x")));
    // The broker sent each message once: the client ran both callbacks.
    wait_metric(broker.addr, "broker_messages_delivered_total", 2, WAIT);
}

#[test]
fn client_unsubscribe_stops_deliveries() {
    let broker = BrokerProcess::start(&[]);
    let c = client(broker.addr);
    let gone = subscribe_channel(&c, "cu/+");
    let fence = subscribe_channel(&c, "cf");
    c.publish("cu/1", "before").unwrap();
    assert_eq!(recv(&gone, "before").data, "before");

    c.unsubscribe("cu/+").unwrap();
    c.unsubscribe("never/+")
        .expect("unsubscribing what was never subscribed");
    c.publish("cu/2", "after").unwrap();
    c.publish("cf", "fence").unwrap();
    assert_eq!(recv(&fence, "fence").data, "fence");
    assert!(gone.try_recv().is_err(), "a message after unsubscribe");
    // The broker dropped the pattern, not only the client's callback.
    let listing = get_with(broker.addr, "/api/v1/subscribers", &[]).text();
    let want = format!(
        "\"endpoint\":\"127.0.0.1:{}\",\"patterns\":[\"cf\"]",
        c.listen_port()
    );
    assert!(listing.contains(&want), "{listing}");
}

#[test]
fn client_stream_of_a_wildcard_receives_messages_with_their_ids() {
    let broker = BrokerProcess::start(&[]);
    let c = client(broker.addr);
    let mut stream = c.stream("s/#").expect("stream");
    let mut want = Vec::new();
    for (topic, data) in [
        ("s", "zero"),
        ("t/1", "other"),
        ("s/1", "one"),
        ("s/2/3", "deep"),
    ] {
        let id = publish_qos1(broker.addr, topic, data);
        if topic.starts_with('s') {
            want.push(Message {
                topic: topic.into(),
                data: data.into(),
                id: Some(id),
            });
        }
    }
    for (i, expected) in want.iter().enumerate() {
        let got = stream.next_within(WAIT);
        assert_eq!(got.as_ref(), Some(expected), "message {i}");
    }
    assert_eq!(stream.last_id(), want.last().unwrap().id);
    assert!(matches!(c.stream("s/#/x"), Err(Error::InvalidTopic(_))));
}

#[test]
fn client_stream_resumes_without_gap_after_a_broker_crash_and_restart() {
    let dir = TempDir::new("wild-stream");
    let data = dir.arg("data");
    let mut broker = BrokerProcess::start(&["--data-dir", &data]);
    let port = broker.addr.port();
    let c = client(broker.addr);
    let mut stream = c.stream("g/#").expect("stream");
    let first = publish_qos1(broker.addr, "g/1", "m1");
    let got = stream.next_within(WAIT).expect("the first message");
    assert_eq!((got.data.as_str(), got.id), ("m1", Some(first)));
    // Stored but not read before the crash.
    let mut ids = vec![publish_qos1(broker.addr, "g/2", "m2")];

    broker.kill();
    let broker = BrokerProcess::start_on(port, &["--data-dir", &data]);
    // Published while the stream is away: the stream reconnects only when
    // read again, so these come from the log, after its Last-Event-ID.
    ids.push(publish_qos1(broker.addr, "g/3/x", "m3"));
    publish_qos1(broker.addr, "h/1", "other");
    ids.push(publish_qos1(broker.addr, "g", "m4"));
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = stream
            .next_within(WAIT)
            .unwrap_or_else(|| panic!("no message after {got:?}"));
        got.push((m.data, m.id));
    }
    let want: Vec<(String, Option<u64>)> = ["m2", "m3", "m4"]
        .iter()
        .zip(&ids)
        .map(|(d, id)| ((*d).to_owned(), Some(*id)))
        .collect();
    assert_eq!(got, want, "after the restart: no gap, no duplicate");
    // And live again.
    let live = publish_qos1(broker.addr, "g/5", "m5");
    let m = stream.next_within(WAIT).expect("a live message");
    assert_eq!((m.data.as_str(), m.id), ("m5", Some(live)));
}

/// Review finding: unsubscribing an endpoint's last qos 1 pattern while it
/// keeps a qos 0 one must end its durable session in the log, not leave a
/// session with no pattern to come back after a restart.
#[test]
fn the_last_durable_pattern_unsubscribed_leaves_no_session_behind() {
    let dir = TempDir::new("mb-wild-ghost");
    let data = dir.arg("data");
    let mut broker = BrokerProcess::start(&["--data-dir", &data]);
    let port = broker.addr.port();
    let endpoint = Endpoint::start();
    subscribe_qos(broker.addr, &enc("g/one"), endpoint.port, 1);
    subscribe_qos(broker.addr, &enc("g/zero"), endpoint.port, 0);
    assert_eq!(
        Unsub::Delete
            .send(broker.addr, "g/one", endpoint.port)
            .status,
        202
    );
    broker.kill();
    // Sessions are restored before the broker listens.
    let broker = BrokerProcess::start_on(port, &["--data-dir", &data]);
    let listing = get_with(broker.addr, "/api/v1/subscribers", &[]).text();
    assert_eq!(listing, "[]", "no session should come back");
    assert_eq!(metric(broker.addr, "broker_sessions"), 0);
}
