//! The Rust client end to end against a real broker process: several clients
//! and topics, every message exactly once and in order.

mod support;

use message_broker::client::{Client, Message};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};
use support::{BrokerProcess, WAIT};

fn client(broker: &BrokerProcess) -> Client {
    Client::builder(broker.addr.to_string())
        .listen_port(0)
        .build()
        .expect("client")
}

/// Subscribes `client` to `topics`, all feeding one channel.
fn subscribe_all(client: &Client, topics: &[&str]) -> Receiver<Message> {
    let (tx, rx) = mpsc::channel();
    for topic in topics {
        let tx = tx.clone();
        client
            .subscribe(topic, move |m| {
                let _ = tx.send(m);
            })
            .expect("subscribe");
    }
    rx
}

/// Collects exactly `n` messages (failing on a timeout), then checks that
/// nothing more arrives for a moment.
fn collect(rx: &Receiver<Message>, n: usize) -> Vec<Message> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(m) => got.push(m),
            Err(_) => panic!("only {} of {n} messages arrived", got.len()),
        }
    }
    if let Ok(extra) = rx.recv_timeout(Duration::from_millis(300)) {
        panic!("unexpected extra message {extra:?}");
    }
    got
}

#[test]
fn three_clients_get_exactly_their_topics_in_order_ten_thousand_messages() {
    let broker = BrokerProcess::start(&[]);
    let (a, b, c) = (client(&broker), client(&broker), client(&broker));
    let rx_a = subscribe_all(&a, &["t1", "t2"]);
    let rx_b = subscribe_all(&b, &["t2", "t3"]);
    let rx_c = subscribe_all(&c, &["t3"]);
    let publisher = client(&broker);

    let topics = ["t1", "t2", "t3", "nobody"];
    let mut sent: Vec<(String, String)> = Vec::new();
    for i in 0..10_000 {
        let topic = topics[i % topics.len()];
        let data = format!("{topic}-{i}");
        publisher.publish(topic, &data).expect("publish");
        sent.push((topic.to_owned(), data));
    }
    let expect = |wanted: &[&str]| -> Vec<(String, String)> {
        sent.iter()
            .filter(|(t, _)| wanted.contains(&t.as_str()))
            .cloned()
            .collect()
    };
    for (name, rx, wanted) in [
        ("a", &rx_a, &["t1", "t2"][..]),
        ("b", &rx_b, &["t2", "t3"]),
        ("c", &rx_c, &["t3"]),
    ] {
        let want = expect(wanted);
        let got: Vec<(String, String)> = collect(rx, want.len())
            .into_iter()
            .map(|m| (m.topic, m.data))
            .collect();
        assert_eq!(got.len(), want.len(), "client {name}");
        assert!(
            got == want,
            "client {name}: messages differ or are out of order"
        );
    }
}

#[test]
fn publish_errors_carry_status_and_reason() {
    let broker = BrokerProcess::start(&["--max-payload", "32"]);
    let c = client(&broker);
    match c.publish("t", &"x".repeat(100)) {
        Err(message_broker::client::Error::Status { status, reason }) => {
            assert_eq!(status, 413);
            assert!(!reason.is_empty());
        }
        other => panic!("expected a 413, got {other:?}"),
    }
    // The client reconnects after the broker closed on the 413.
    c.publish("t", "small").expect("publish after an error");
    // A body far over the limit: the broker answers 413 without reading it
    // all, and the client still reports the 413, not the broken write.
    match c.publish("t", &"y".repeat(4 << 20)) {
        Err(message_broker::client::Error::Status { status: 413, .. }) => {}
        other => panic!("expected a 413 for 4 MiB, got {other:?}"),
    }
    assert!(matches!(
        c.publish("", "x"),
        Err(message_broker::client::Error::InvalidTopic(_))
    ));
}

#[test]
fn unreachable_broker_is_an_error_within_the_timeout() {
    // A port nothing listens on: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Client::builder(format!("127.0.0.1:{port}"))
        .listen_port(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let started = Instant::now();
    assert!(matches!(
        c.publish("t", "x"),
        Err(message_broker::client::Error::Io(_))
    ));
    assert!(c.subscribe("t", |_| {}).is_err());
    assert!(started.elapsed() < WAIT);
}

#[test]
fn close_frees_the_listen_port() {
    let broker = BrokerProcess::start(&[]);
    let c = client(&broker);
    let rx = support::subscribe_channel(&c, "t");
    support::publish(broker.addr, "t", "hi");
    assert_eq!(rx.recv_timeout(WAIT).unwrap().data, "hi");
    let port = c.listen_port();
    c.close();
    // Other tests of this binary fork broker processes; a child briefly holds
    // inherited sockets until it execs, so allow a moment.
    let bound = support::wait_until(WAIT, || std::net::TcpListener::bind(("0.0.0.0", port)).ok());
    assert!(bound.is_some(), "port {port} still taken after close");
}
