//! Client failover against real broker processes: a client given several
//! brokers moves to the next when the one it uses is killed or goes silent,
//! subscribes there again and sends its calls there, without any call from
//! the program. Every broker is killed by pid when its handle drops, pass or
//! fail.

mod support;

use message_broker::client::{Client, Error, Message, PublishOptions};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use support::{BrokerProcess, RawSubscriber, WAIT, wait_until};

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

/// A relay in front of a broker that the test can stall, as a broker too
/// loaded to answer: while stalled it takes what it is sent (on connections
/// open then and on new ones), keeps it from the broker and answers nothing.
/// Once resumed, new connections reach the broker again. Its threads end
/// when it drops, or at the latest WAIT after their last byte.
struct StallingRelay {
    addr: SocketAddr,
    stalled: Arc<AtomicBool>,
    /// Everything kept from the broker while stalled.
    swallowed: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl StallingRelay {
    fn start(broker: SocketAddr) -> StallingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        listener.set_nonblocking(true).expect("nonblocking");
        let relay = StallingRelay {
            addr,
            stalled: Arc::default(),
            swallowed: Arc::default(),
            stop: Arc::default(),
        };
        let (stalled, swallowed, stop) = (
            relay.stalled.clone(),
            relay.swallowed.clone(),
            relay.stop.clone(),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (stalled, swallowed) = (stalled.clone(), swallowed.clone());
                        thread::spawn(move || relay_one(client, broker, &stalled, &swallowed));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => return,
                }
            }
        });
        relay
    }

    fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }

    fn swallowed(&self) -> String {
        String::from_utf8_lossy(&self.swallowed.lock().unwrap()).into_owned()
    }
}

impl Drop for StallingRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Relays one connection. From the first byte sent while stalled on, what
/// comes in is kept from the broker (answers to what went through before
/// still come back).
fn relay_one(
    client: TcpStream,
    broker: SocketAddr,
    stalled: &AtomicBool,
    swallowed: &Mutex<Vec<u8>>,
) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(WAIT));
    let _ = client.set_write_timeout(Some(WAIT));
    let upstream = match stalled.load(Ordering::SeqCst) {
        true => None,
        false => TcpStream::connect_timeout(&broker, WAIT).ok(),
    };
    if let Some(upstream) = &upstream {
        let _ = upstream.set_read_timeout(Some(WAIT));
        let _ = upstream.set_write_timeout(Some(WAIT));
        let (mut from, mut to) = (
            upstream.try_clone().expect("clone"),
            client.try_clone().expect("clone"),
        );
        thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    }
    let (mut from, mut buf) = (&client, [0; 4096]);
    let mut black_hole = upstream.is_none();
    while let Ok(n @ 1..) = from.read(&mut buf) {
        black_hole |= stalled.load(Ordering::SeqCst);
        match (upstream.as_ref(), black_hole) {
            (Some(mut to), false) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            _ => swallowed.lock().unwrap().extend_from_slice(&buf[..n]),
        }
    }
    if let Some(upstream) = &upstream {
        let _ = upstream.shutdown(Shutdown::Both);
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// The next message on `rx` whose data is `data`, skipping others, within
/// `limit`.
fn recv_data(rx: &Receiver<Message>, data: &str, limit: Duration) -> Option<Message> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let message = rx.recv_timeout(left).ok()?;
        if message.data == data {
            return Some(message);
        }
    }
}

/// Within a few heartbeat ticks of a left broker answering again.
const LEAVE_RETRY: Duration = Duration::from_secs(5);

#[test]
fn a_broker_left_while_too_slow_to_answer_is_unsubscribed_once_it_answers() {
    // a never drops an idle subscriber: only the client's unsubscribe ends
    // its deliveries, however long that takes.
    let a = BrokerProcess::start(&["--liveness-timeout", "0"]);
    let b = BrokerProcess::start(&[]);
    let relay = StallingRelay::start(a.addr);
    let client = Client::builder([relay.addr.to_string(), b.addr.to_string()])
        .listen_ip(Ipv4Addr::LOCALHOST.into())
        .listen_port(0)
        .heartbeat_interval(Duration::from_millis(500))
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let rx = subscribe(&client, "news");
    assert_eq!(support::metric(a.addr, "broker_subscribers"), 1);
    support::publish(a.addr, "news", "from-a");
    assert!(
        recv_data(&rx, "from-a", WAIT).is_some(),
        "no message from a"
    );

    // a stops answering: a heartbeat times out and the client moves to b.
    relay.stall();
    let got = publish_until_received(b.addr, "news", FAILOVER, |wait| rx.recv_timeout(wait).ok());
    let (message, took) = got.expect("a message from b after a stalled");
    assert!(message.data.starts_with("from-b-"), "{message:?}");
    eprintln!("the client left the stalled broker for b within {took:?}");
    assert_eq!(client.broker(), b.addr.to_string());
    // Its unsubscribe never reached a, which still delivers to the client.
    let unsub = wait_until(WAIT, || {
        relay
            .swallowed()
            .contains("POST /unsub/news ")
            .then_some(())
    });
    assert!(unsub.is_some(), "no unsubscribe tried while a was stalled");
    support::publish(a.addr, "news", "a-still");
    assert!(
        recv_data(&rx, "a-still", WAIT).is_some(),
        "a stopped delivering by itself"
    );

    // a answers again: the client's next tries reach it.
    let resumed = Instant::now();
    relay.resume();
    let left = wait_until(LEAVE_RETRY, || {
        (support::metric(a.addr, "broker_subscribers") == 0).then_some(())
    });
    assert!(left.is_some(), "the client is still subscribed at a");
    eprintln!(
        "unsubscribed at a {:?} after it answered again",
        resumed.elapsed()
    );
    support::publish(a.addr, "news", "a-after-leave");
    support::publish(b.addr, "news", "b-after-leave");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(500);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Ok(m) = rx.recv_timeout(left) {
            seen.push(m.data);
        }
    }
    assert!(seen.iter().any(|d| d == "b-after-leave"), "{seen:?}");
    assert!(!seen.iter().any(|d| d == "a-after-leave"), "{seen:?}");
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
