//! Client failover against real broker processes: a client given several
//! brokers moves to the next when the one it uses is killed or goes silent,
//! subscribes there again and sends its calls there, without any call from
//! the program. Every broker is killed by pid when its handle drops, pass or
//! fail.

mod support;

use message_broker::client::{Client, Error, Message, PublishOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};
use support::{BrokerProcess, RawSubscriber, WAIT};

/// The bound the issue sets on a failover.
const FAILOVER: Duration = Duration::from_secs(15);

/// A loopback address nothing listens on: a port bound, noted and released.
fn dead_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").to_string()
}

fn client_of(brokers: &[String]) -> Client {
    Client::builder(brokers)
        .listen_ip(Ipv4Addr::LOCALHOST.into())
        .listen_port(0)
        .build()
        .expect("client")
}

/// Kills `broker` with SIGKILL, by pid, and waits for it to be gone.
fn kill_9(broker: &mut BrokerProcess) {
    broker.signal("KILL");
    assert!(broker.wait_exit(WAIT).is_some(), "the broker did not die");
}

/// Publishes `from-b-N` to `topic` at `broker` again and again until
/// `received` (waiting at most its argument) gives a message, or `limit`
/// passes; the message and how long it took.
fn publish_until_received(
    broker: SocketAddr,
    topic: &str,
    limit: Duration,
    mut received: impl FnMut(Duration) -> Option<Message>,
) -> Option<(Message, Duration)> {
    let started = Instant::now();
    for i in 0.. {
        support::publish(broker, topic, &format!("from-b-{i}"));
        // The wait for the message is the pause between two publishes.
        if let Some(message) = received(Duration::from_millis(100)) {
            return Some((message, started.elapsed()));
        }
        if started.elapsed() >= limit {
            break;
        }
    }
    None
}

/// Subscribes `client` to `topic`, the messages going to a channel.
fn subscribe(client: &Client, topic: &str) -> Receiver<Message> {
    support::subscribe_channel(client, topic)
}

#[test]
fn a_subscriber_moves_to_the_next_broker_when_its_broker_is_killed() {
    let mut a = BrokerProcess::start(&[]);
    let b = BrokerProcess::start(&[]);
    let client = client_of(&[a.addr.to_string(), b.addr.to_string()]);
    let rx = subscribe(&client, "news/today");
    support::publish(a.addr, "news/today", "from-a");
    let first = rx.recv_timeout(WAIT).expect("a message from a");
    assert_eq!(first.data, "from-a");

    kill_9(&mut a);
    // No call on `client` from here on: the failover is the client's own.
    let got = publish_until_received(b.addr, "news/today", FAILOVER, |wait| {
        rx.recv_timeout(wait).ok()
    });
    let (message, took) = got.expect("a message from b within 15 s of the kill");
    assert!(message.data.starts_with("from-b-"), "{message:?}");
    eprintln!("the client received from b {took:?} after a was killed");
    assert_eq!(client.broker(), b.addr.to_string());
}

#[test]
fn calls_that_cannot_reach_the_first_broker_go_to_the_next() {
    let b = BrokerProcess::start(&[]);
    let watcher = RawSubscriber::start();
    support::subscribe(b.addr, "orders", watcher.port);
    let brokers = [dead_addr(), b.addr.to_string()];

    let client = client_of(&brokers);
    client
        .publish("orders", "qos 0")
        .expect("publish fails over");
    assert_eq!(client.broker(), b.addr.to_string());
    let client = client_of(&brokers);
    let id = client
        .publish_with("orders", "qos 1", &PublishOptions::at_least_once())
        .expect("a qos 1 publish fails over");
    assert!(id.is_some());
    let client = client_of(&brokers);
    let mut publisher = client.publisher();
    publisher.send("orders", "pipelined").expect("send");
    let failures = publisher.flush();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(watcher.recv_data(3), ["qos 0", "qos 1", "pipelined"]);

    // A subscription, too, lands on b.
    let client = client_of(&brokers);
    let rx = subscribe(&client, "orders");
    support::publish(b.addr, "orders", "for the subscriber");
    assert_eq!(
        rx.recv_timeout(WAIT).expect("a message").data,
        "for the subscriber"
    );
}

#[test]
fn with_no_broker_answering_a_publish_fails_within_its_timeouts() {
    let client = Client::builder([dead_addr(), dead_addr()])
        .listen_ip(Ipv4Addr::LOCALHOST.into())
        .listen_port(0)
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let started = Instant::now();
    assert!(matches!(client.publish("t", "x"), Err(Error::Io(_))));
    assert!(client.subscribe("t", |_| {}).is_err());
    assert!(started.elapsed() < WAIT);
}

#[test]
fn a_stream_moves_to_the_next_broker_when_its_broker_is_killed() {
    let mut a = BrokerProcess::start(&[]);
    let b = BrokerProcess::start(&[]);
    let client = client_of(&[a.addr.to_string(), b.addr.to_string()]);
    let mut stream = client.stream("feed/#").expect("stream");
    support::publish(a.addr, "feed/x", "from-a");
    let first = stream.next_within(WAIT).expect("a message from a");
    assert_eq!(first.data, "from-a");

    kill_9(&mut a);
    let got = publish_until_received(b.addr, "feed/x", FAILOVER, |wait| stream.next_within(wait));
    let (message, took) = got.expect("a message from b within 15 s of the kill");
    assert!(message.data.starts_with("from-b-"), "{message:?}");
    eprintln!("the stream received from b {took:?} after a was killed");
}

/// A broker played by the test for one stream: it records the request head,
/// answers with one NDJSON message, and holds the connection until the test
/// ends (or WAIT passes).
fn fake_stream_broker() -> (SocketAddr, Receiver<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.set_read_timeout(Some(WAIT));
        let mut reader = BufReader::new(&stream);
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line.trim_end().is_empty() => break,
                Ok(_) => head.push(line.trim_end().to_owned()),
            }
        }
        let _ = tx.send(head);
        let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n\
                      {\"id\":7,\"data\":\"from-fake\",\"Topic\":\"feed/x\"}\n";
        let _ = (&stream).write_all(answer.as_bytes());
        let _ = reader.read_line(&mut String::new()); // until closed, or WAIT
    });
    (addr, rx)
}

#[test]
fn a_stream_at_another_broker_starts_afresh_without_the_old_brokers_id() {
    let mut a = BrokerProcess::start(&[]);
    let (fake, heads) = fake_stream_broker();
    let client = client_of(&[a.addr.to_string(), fake.to_string()]);
    let mut stream = client.stream("feed/#").expect("stream");
    support::publish(a.addr, "feed/x", "from-a");
    let first = stream.next_within(WAIT).expect("a message from a");
    assert!(first.id.is_some());

    kill_9(&mut a);
    let message = stream
        .next_within(FAILOVER)
        .expect("the fake broker's message");
    assert_eq!((message.data.as_str(), message.id), ("from-fake", Some(7)));
    assert_eq!(stream.last_id(), Some(7));
    let head = heads.recv_timeout(WAIT).expect("the request head");
    assert!(head[0].starts_with("GET /sub/feed/"), "{head:?}");
    assert!(
        !head
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("last-event-id")),
        "a's id went to another broker: {head:?}"
    );
}

#[test]
fn a_broker_that_stays_silent_past_the_window_is_left_for_the_next_and_told() {
    // It answers 202 to everything and never calls the client back.
    let silent = RawSubscriber::start();
    let b = BrokerProcess::start(&[]);
    let client = Client::builder([silent.addr().to_string(), b.addr.to_string()])
        .listen_ip(Ipv4Addr::LOCALHOST.into())
        .listen_port(0)
        .heartbeat_interval(Duration::from_millis(500))
        .resubscribe_after(Duration::from_secs(2))
        .build()
        .expect("client");
    let rx = subscribe(&client, "quiet");
    let sub = silent.recv_any();
    assert!(sub.request_line.starts_with("POST /sub/quiet "), "{sub:?}");

    let got = publish_until_received(b.addr, "quiet", FAILOVER, |wait| rx.recv_timeout(wait).ok());
    let (message, took) = got.expect("a message from b after the silence");
    assert!(message.data.starts_with("from-b-"), "{message:?}");
    eprintln!("the client left the silent broker for b within {took:?}");
    // And told the broker it left, which is still up, to stop delivering.
    let deadline = Instant::now() + WAIT;
    loop {
        let request = silent.recv_any();
        if request.request_line.starts_with("POST /unsub/quiet ") {
            let port = format!("\"{}\"", client.listen_port());
            assert!(request.body.contains(&port), "{request:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no unsubscribe at the broker left"
        );
    }
}

#[test]
fn an_empty_list_of_brokers_is_an_error_at_build() {
    let none: Vec<String> = Vec::new();
    match Client::builder(none).listen_port(0).build() {
        Err(Error::NoBroker) => {}
        other => panic!("expected Error::NoBroker, got {other:?}"),
    }
    let err = Client::builder(<[&str; 0]>::default())
        .listen_port(0)
        .build()
        .expect_err("an empty array");
    assert_eq!(err.to_string(), "no broker address given");
}

#[test]
fn a_list_builds_when_one_address_resolves() {
    let b = BrokerProcess::start(&[]);
    let client = client_of(&["no-port-given".into(), b.addr.to_string()]);
    assert_eq!(client.broker(), "no-port-given");
    client.publish("t", "x").expect("publish fails over to b");
    assert_eq!(client.broker(), b.addr.to_string());
    let unresolvable = Client::builder(["no-port-given", "nor-here"])
        .listen_port(0)
        .build();
    assert!(matches!(unresolvable, Err(Error::Address(_))));
}
