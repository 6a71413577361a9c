//! Brokers sharing topics through a real `nats-server` (PROTOCOL.md section
//! 6.7): every subscriber of every broker gets every message once, NATS
//! clients and HTTP clients see each other's messages, and the bridge
//! survives a NATS server going away. Skipped without `nats-server`, unless
//! `REQUIRE_NATS` is set (CI).

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};
use support::nats::{self, NatsServer, RawNats, subject_of, threads};
use support::streams::StreamReader;
use support::{BrokerProcess, RawSubscriber, WAIT, data_of, metric, post, subscribe, wait_until};

/// `topic` as a request path: every byte but letters, digits, `-_.~/`
/// percent-encoded.
fn enc(topic: &str) -> String {
    let mut out = String::new();
    for b in topic.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Publishes `data` (JSON-escaped here) to `topic`; panics unless 202.
fn publish(broker: SocketAddr, topic: &str, data: &str) {
    let data = data.replace('\\', "\\\\").replace('"', "\\\"");
    let resp = post(
        broker,
        &format!("/pub/{}", enc(topic)),
        &format!("{{\"data\":\"{data}\"}}"),
    );
    assert_eq!(resp.status, 202, "publish: {}", resp.text());
}

fn bridged(url: &str) -> BrokerProcess {
    BrokerProcess::start(&["--nats", url])
}

fn connected(broker: &BrokerProcess) -> bool {
    metric(broker.addr, "broker_bridge_connected") == 1
}

/// Everything a subscriber received, as data strings, from a channel.
fn drain(rx: &Receiver<String>, into: &mut Vec<String>, wait: Duration) {
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(data) => into.push(data),
            Err(_) => return,
        }
    }
}

/// A callback subscriber's data, on a channel.
fn callback_channel(sub: RawSubscriber) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // A subscriber quiet for a minute is done with.
        while let Some(d) = sub.try_recv_msg(Duration::from_secs(60)) {
            if tx.send(data_of(&d.body)).is_err() {
                return;
            }
        }
    });
    rx
}

/// An NDJSON stream's data, on a channel.
fn stream_channel(mut stream: StreamReader) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    stream.set_timeout(Duration::from_secs(60));
    thread::spawn(move || {
        while let Some(line) = stream.line() {
            if line.trim().is_empty() {
                continue; // keep-alive
            }
            if tx.send(data_of(&line)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Publishes `probe-K` from every broker K until every receiver has seen
/// a probe of every broker: the interest of every broker has reached NATS.
fn fence(brokers: &[BrokerProcess], topic: &str, receivers: &[Receiver<String>]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = vec![vec![false; brokers.len()]; receivers.len()];
    while seen.iter().flatten().any(|s| !s) {
        assert!(Instant::now() < deadline, "no probe through NATS: {seen:?}");
        for (k, b) in brokers.iter().enumerate() {
            publish(b.addr, topic, &format!("probe-{k}"));
        }
        for (r, rx) in receivers.iter().enumerate() {
            let mut got = Vec::new();
            drain(rx, &mut got, Duration::from_millis(100));
            for data in got {
                if let Some(k) = data.strip_prefix("probe-") {
                    seen[r][k.parse::<usize>().unwrap()] = true;
                }
            }
        }
    }
}

#[test]
fn three_brokers_on_one_nats_server_give_every_subscriber_every_message_once() {
    if !nats::available("cluster") {
        return;
    }
    let server = NatsServer::start();
    let brokers: Vec<BrokerProcess> = (0..3).map(|_| bridged(&server.url())).collect();
    let mut receivers = Vec::new();
    for b in &brokers {
        // Overlapping patterns: each message must still come once.
        let sub = RawSubscriber::start();
        for pattern in ["t/x", "t/+", "t/%23"] {
            subscribe(b.addr, pattern, sub.port);
        }
        receivers.push(callback_channel(sub));
        receivers.push(stream_channel(StreamReader::ndjson(b.addr, "t/%23", &[])));
    }
    fence(&brokers, "t/x", &receivers);
    const N: usize = 100;
    let publishers: Vec<_> = brokers
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let addr = b.addr;
            thread::spawn(move || {
                for i in 0..N {
                    publish(addr, "t/x", &format!("m-{k}-{i}"));
                }
                publish(addr, "t/x", &format!("end-{k}"));
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    for (r, rx) in receivers.iter().enumerate() {
        let mut got: Vec<String> = Vec::new();
        let deadline = Instant::now() + WAIT;
        while (0..3).any(|k| !got.contains(&format!("end-{k}"))) {
            assert!(Instant::now() < deadline, "receiver {r}: ends missing");
            drain(rx, &mut got, Duration::from_millis(100));
        }
        let mut per_broker: HashMap<usize, Vec<usize>> = HashMap::new();
        for data in got.iter().filter_map(|d| d.strip_prefix("m-")) {
            let (k, i) = data.split_once('-').unwrap();
            per_broker
                .entry(k.parse().unwrap())
                .or_default()
                .push(i.parse().unwrap());
        }
        for k in 0..3 {
            let want: Vec<usize> = (0..N).collect();
            assert_eq!(per_broker.get(&k), Some(&want), "receiver {r}, broker {k}");
        }
    }
    for b in &brokers {
        assert_eq!(
            metric(b.addr, "broker_bridge_dropped_total{reason=\"down\"}"),
            0
        );
    }
}

#[test]
fn nats_and_http_clients_see_each_others_messages_and_levels_round_trip() {
    if !nats::available("cluster") {
        return;
    }
    let server = NatsServer::start();
    let broker = bridged(&server.url());
    assert!(wait_until(WAIT, || connected(&broker).then_some(())).is_some());
    let topics = [
        "hello/world",
        "a.b/c*d",
        ">/x",
        "sp ace",
        "100%",
        "x//y",
        "/lead",
        "trail/",
        "ünï/côdé",
        "dash-under_score/9",
    ];
    // HTTP to NATS: the subject as the protocol says, the data raw.
    let mut client = RawNats::connect(server.port);
    for (sid, topic) in topics.iter().enumerate() {
        client.sub(&subject_of(topic), sid as u64 + 1);
    }
    for topic in topics {
        let data = format!("to nats \"{topic}\"");
        publish(broker.addr, topic, &data);
        let msg = client.next_msg(WAIT).expect("a message in NATS");
        assert_eq!(msg.subject, subject_of(topic));
        assert_eq!(msg.payload, data.as_bytes());
        let headers = msg.headers.expect("headers");
        assert!(headers.starts_with("NATS/1.0\r\n"), "{headers:?}");
        assert!(headers.contains("\r\nMb-Origin: "), "{headers:?}");
    }
    // NATS to HTTP: the topic decoded back.
    let sub = RawSubscriber::start();
    for topic in topics {
        subscribe(broker.addr, &enc(topic), sub.port);
        let subject = subject_of(topic);
        let got = wait_until(WAIT, || {
            client.publish(&subject, format!("from nats {topic}").as_bytes());
            client.flush();
            sub.try_recv_msg(Duration::from_millis(200))
        })
        .expect("a NATS message delivered");
        let body = message_broker::json::parse_object(got.body.as_bytes()).unwrap();
        let field = |name: &str| body.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        assert_eq!(field("data"), Some(format!("from nats {topic}")));
        assert_eq!(field("Topic").as_deref(), Some(topic));
        // Later copies of the probe are not a concern of the next topic.
        while sub.try_recv_msg(Duration::from_millis(100)).is_some() {}
    }
    // What does not decode is counted and dropped.
    subscribe(broker.addr, "%23", sub.port);
    let refused = |reason: &str| {
        metric(
            broker.addr,
            &format!("broker_bridge_refused_total{{reason=\"{reason}\"}}"),
        )
    };
    let deadline = Instant::now() + WAIT;
    while refused("subject") < 2 || refused("utf8") < 1 {
        assert!(Instant::now() < deadline, "refusals not counted");
        client.publish("mb.bad%ZZ", b"x");
        client.publish("mb.%FF", b"x");
        client.publish("mb.ok", &[0xff, 0xfe]);
        client.flush();
        thread::sleep(Duration::from_millis(50));
    }
    // A topic too long for a NATS control line is kept from NATS (a
    // server would close the connection for it), and counted.
    let long = "ü".repeat(1000);
    subscribe(broker.addr, &enc(&long), sub.port);
    publish(broker.addr, &long, "long");
    assert!(sub.recv_msg().body.contains("\"long\""));
    let dropped = "broker_bridge_dropped_total{reason=\"too_large\"}";
    assert_eq!(metric(broker.addr, dropped), 1);
    publish(broker.addr, "hello/world", "still connected");
    let msg = client.next_msg(WAIT).expect("the bridge still publishes");
    assert_eq!(msg.payload, b"still connected");
    assert_eq!(metric(broker.addr, "broker_bridge_connects_total"), 1);
    let page = support::exchange(
        broker.addr,
        b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(page.status, 200);
}

#[test]
fn the_bridge_survives_nats_restarting_and_local_delivery_never_stops() {
    if !nats::available("cluster") {
        return;
    }
    let mut server = NatsServer::start();
    let a = bridged(&server.url());
    let b = bridged(&server.url());
    let (sa, sb) = (RawSubscriber::start(), RawSubscriber::start());
    subscribe(a.addr, "r", sa.port);
    subscribe(b.addr, "r", sb.port);
    let rb = callback_channel(sb);
    let ra = callback_channel(sa);
    fence(std::slice::from_ref(&a), "r", std::slice::from_ref(&rb));
    let settled = threads(a.pid());

    server.kill();
    assert!(wait_until(WAIT, || (!connected(&a)).then_some(())).is_some());
    for i in 0..5 {
        publish(a.addr, "r", &format!("local-{i}"));
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !got.contains(&"local-4".to_owned()) {
        assert!(Instant::now() < deadline, "local delivery stopped: {got:?}");
        drain(&ra, &mut got, Duration::from_millis(100));
    }
    let local: Vec<&String> = got.iter().filter(|d| d.starts_with("local-")).collect();
    assert_eq!(local.len(), 5, "{got:?}");
    assert!(metric(a.addr, "broker_bridge_dropped_total{reason=\"down\"}") >= 5);

    server.restart();
    let restarted = Instant::now();
    let mut seen = Vec::new();
    let mut i = 0;
    while !seen.iter().any(|d: &String| d.starts_with("again-")) {
        assert!(
            restarted.elapsed() < Duration::from_secs(5),
            "no message through NATS 5 s after it came back"
        );
        publish(a.addr, "r", &format!("again-{i}"));
        i += 1;
        drain(&rb, &mut seen, Duration::from_millis(50));
    }
    assert!(metric(a.addr, "broker_bridge_connects_total") >= 2);
    // The old connection's threads are gone.
    let leaked = wait_until(WAIT, || (threads(a.pid()) <= settled).then_some(()));
    assert!(
        leaked.is_some(),
        "{} threads, {settled} before",
        threads(a.pid())
    );
}

#[test]
fn a_broker_survives_losing_its_nats_server_in_a_three_node_nats_cluster() {
    if !nats::available("cluster") {
        return;
    }
    let mut servers = NatsServer::cluster(3);
    let urls: Vec<String> = servers.iter().map(NatsServer::url).collect();
    // `a` starts on the first server; `b` is on the second only.
    let a = bridged(&urls.join(","));
    let b = bridged(&urls[1]);
    let (sa, sb) = (RawSubscriber::start(), RawSubscriber::start());
    subscribe(a.addr, "c", sa.port);
    subscribe(b.addr, "c", sb.port);
    let (ra, rb) = (callback_channel(sa), callback_channel(sb));
    fence(std::slice::from_ref(&a), "c", std::slice::from_ref(&rb));
    fence(std::slice::from_ref(&b), "c", std::slice::from_ref(&ra));

    servers[0].kill();
    // Both ways again, once `a` is on another server of the cluster.
    fence(std::slice::from_ref(&a), "c", std::slice::from_ref(&rb));
    fence(std::slice::from_ref(&b), "c", std::slice::from_ref(&ra));
    assert!(metric(a.addr, "broker_bridge_connects_total") >= 2);
    assert!(metric(a.addr, "broker_bridge_failures_total") >= 1);
}

#[test]
fn a_client_whose_broker_dies_receives_again_through_another_broker_of_the_cluster() {
    if !nats::available("cluster") {
        return;
    }
    let server = NatsServer::start();
    let mut a = bridged(&server.url());
    let b = bridged(&server.url());
    let c = bridged(&server.url());
    let client = message_broker::client::Client::builder([a.addr.to_string(), b.addr.to_string()])
        .listen_port(0)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    client
        .subscribe("f", move |m| {
            let _ = tx.send(m.data);
        })
        .unwrap();
    // Messages published on `c` reach the client through `a`...
    fence(std::slice::from_ref(&c), "f", std::slice::from_ref(&rx));
    a.kill();
    let killed = Instant::now();
    // ...and, once `a` is gone, through `b`, with no call from the program.
    let mut got = Vec::new();
    let mut i = 0;
    while !got.iter().any(|d: &String| d.starts_with("after-")) {
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "nothing through another broker 15 s after the kill"
        );
        publish(c.addr, "f", &format!("after-{i}"));
        i += 1;
        drain(&rx, &mut got, Duration::from_millis(100));
    }
    assert_eq!(client.broker(), b.addr.to_string());
}

#[test]
fn credentials_in_the_url_are_used_and_never_logged() {
    if !nats::available("cluster") {
        return;
    }
    let server = NatsServer::with_user("mb", "s3cret");
    let good = bridged(&format!("nats://mb:s3cret@127.0.0.1:{}", server.port));
    assert!(wait_until(WAIT, || connected(&good).then_some(())).is_some());
    let bad = bridged(&format!("nats://mb:wrong@127.0.0.1:{}", server.port));
    bad.wait_for_log("Authorization Violation");
    assert_eq!(metric(bad.addr, "broker_bridge_connected"), 0);
    for broker in [&good, &bad] {
        let log = broker.log().join("\n");
        assert!(!log.contains("s3cret") && !log.contains("wrong"), "{log}");
        let page = support::exchange(
            broker.addr,
            b"GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
        );
        assert!(!page.text().contains("s3cret"));
    }
}
