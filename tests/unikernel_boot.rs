//! The host side of `scripts/unikernel-boot.sh`, which boots the broker on
//! a real Unikraft kernel under QEMU. Ignored in a plain `cargo test`: it
//! needs `UNIKERNEL_BOOT_BROKER=127.0.0.1:PORT` (QEMU's forward to the
//! guest), set by the script, with `UNIKERNEL_BOOT_SUBSCRIBERS` (the
//! broker's `--max-subscribers`) and `UNIKERNEL_BOOT_REQUEST_TIMEOUT`.
//!
//! The guest sees the host as 10.0.2.2 (QEMU user networking), which is
//! also the address every host connection comes from: a subscriber
//! listening on the host's 127.0.0.1:PORT subscribes with its port, and the
//! broker's deliveries to 10.0.2.2:PORT reach it.
//!
//! Requests go over one keep-alive connection ([`Conn`]), not one
//! connection each: lwIP keeps a connection the broker closed in TIME_WAIT
//! for two minutes and answers a SYN that reuses its address and port with
//! a bare ACK, never a SYN-ACK, and Linux hands out a destination's
//! ephemeral ports again after a few thousand connects (fewer when it
//! skips). A test that connected per request stalled on a connect once the
//! ports came round (README, "Booted for real").

mod support;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::streams::StreamReader;
use support::{RawSubscriber, Resp, WAIT, connect, publish_request, read_resp, wait_until};

/// Messages the host subscriber must receive, in order.
const MESSAGES: usize = 1_000;

fn broker() -> SocketAddr {
    std::env::var("UNIKERNEL_BOOT_BROKER")
        .expect("UNIKERNEL_BOOT_BROKER (run scripts/unikernel-boot.sh)")
        .parse()
        .expect("an address")
}

fn env_number(name: &str) -> u64 {
    let value = std::env::var(name).unwrap_or_else(|_| panic!("{name}"));
    value.trim_end_matches('s').parse().expect(name)
}

/// One keep-alive HTTP connection to the broker, made again only after the
/// broker closed it.
struct Conn {
    addr: SocketAddr,
    reader: Option<BufReader<TcpStream>>,
    /// Connections made, the first included.
    connects: u32,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            reader: None,
            connects: 0,
        }
    }

    /// One request and its response. A connection kept from an earlier
    /// request that turns out closed (no byte of an answer) is made again
    /// once: the request never reached the broker.
    fn request(&mut self, method: &str, path: &str, body: &str) -> Result<Resp, String> {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let reused = self.reader.is_some();
        match self.exchange(request.as_bytes()) {
            Err(_) if reused => self.exchange(request.as_bytes()),
            other => other,
        }
    }

    fn exchange(&mut self, request: &[u8]) -> Result<Resp, String> {
        if self.reader.is_none() {
            self.reader = Some(BufReader::new(connect(self.addr)));
            self.connects += 1;
        }
        let reader = self.reader.as_mut().expect("connected");
        let started = Instant::now();
        let answer = reader
            .get_mut()
            .write_all(request)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                read_resp(reader).ok_or_else(|| format!("no answer after {:?}", started.elapsed()))
            });
        match &answer {
            Ok(resp) if resp.header("Connection") != Some("close") => {}
            _ => self.reader = None,
        }
        answer
    }

    fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, "")
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    fn post(&mut self, path: &str, body: &str) -> Resp {
        self.request("POST", path, body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Subscribes the host's `port` to `topic` at qos 0; panics unless 202.
    fn subscribe(&mut self, topic: &str, port: u16) {
        let body = format!(r#"{{"qos":0,"port":"{port}"}}"#);
        let resp = self.post(&format!("/sub/{topic}"), &body);
        assert_eq!(resp.status, 202, "subscribe: {}", resp.text());
    }

    /// The value of one sample on `GET /metrics`.
    fn metric(&mut self, sample: &str) -> u64 {
        let page = self.get("/metrics");
        assert_eq!(page.status, 200);
        support::sample_in(&page.text(), sample)
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
#[ignore = "driven by scripts/unikernel-boot.sh against a broker in QEMU"]
fn drive() {
    let broker = broker();
    let mut conn = Conn::new(broker);
    let health = conn.get("/healthz");
    assert_eq!((health.status, health.text().trim()), (200, "ok"));

    // Publish round trips (nobody subscribed), lock-step on one connection.
    let stream = connect(broker);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let trips: Vec<Duration> = (0..50)
        .map(|i| {
            let started = Instant::now();
            (&stream)
                .write_all(&publish_request("nobody", &format!("p{i}")))
                .unwrap();
            assert_eq!(read_resp(&mut reader).expect("answer").status, 202);
            started.elapsed()
        })
        .collect();
    println!("  publish round trip: median {:?}", median(trips));

    // A subscriber on the host gets every message, in order.
    let sub = RawSubscriber::start();
    conn.subscribe("boot/load", sub.port);
    let sent: Vec<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    let started = Instant::now();
    for data in &sent {
        (&stream)
            .write_all(&publish_request("boot/load", data))
            .unwrap();
        assert_eq!(read_resp(&mut reader).expect("answer").status, 202);
    }
    assert_eq!(sub.recv_data(sent.len()), sent);
    println!(
        "  {MESSAGES} messages published and delivered in order: {:?}",
        started.elapsed()
    );

    // Counted as each answer comes back, so a moment after the last arrives.
    let delivered = wait_until(WAIT, || {
        let n = conn.metric("broker_messages_delivered_total");
        (n >= MESSAGES as u64).then_some(n)
    });
    let delivered = delivered.expect("the deliveries counted in /metrics");
    println!("  /metrics: broker_messages_delivered_total {delivered}");

    slowloris(broker);
    thread_budget(&mut conn);
    println!(
        "  {} connections for every other request (keep-alive)",
        conn.connects
    );
}

/// A request that never ends gets 408 at the request deadline, from the
/// watchdog (lwIP has no socket timeouts).
fn slowloris(broker: SocketAddr) {
    let limit = Duration::from_secs(env_number("UNIKERNEL_BOOT_REQUEST_TIMEOUT"));
    let mut slow = connect(broker);
    let started = Instant::now();
    slow.write_all(b"POST /pub/t HTTP/1.1\r\nHost: b\r\nX: ")
        .unwrap();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text:?} after {took:?}");
    assert!(
        took >= limit && took < limit + Duration::from_secs(5),
        "cut after {took:?}, deadline {limit:?}"
    );
    println!("  slowloris: 408 after {took:?} (request timeout {limit:?})");
}

/// Subscribes endpoints until 503: the broker holds exactly
/// `--max-subscribers` of them, one delivery thread each.
fn thread_budget(conn: &mut Conn) {
    let limit = env_number("UNIKERNEL_BOOT_SUBSCRIBERS");
    let held = subscribe_until_refused(conn, limit + 1);
    assert_eq!(held, limit, "subscribers held, against --max-subscribers");
    println!(
        "  thread budget: {held} subscriber endpoints held, then 503 (--max-subscribers {limit})"
    );
    let health = conn.get("/healthz");
    assert_eq!(health.status, 200, "still serving after the 503s");
}

/// Subscribes new endpoints (ports that nobody publishes to) until one gets
/// 503 or `most` are held; the number of endpoints held then.
fn subscribe_until_refused(conn: &mut Conn, most: u64) -> u64 {
    for port in 20_000..20_000 + most as u16 {
        let body = format!(r#"{{"qos":0,"port":"{port}"}}"#);
        match conn.post("/sub/boot/budget", &body).status {
            202 => {}
            503 => break,
            other => panic!("subscribe of port {port} answered {other}"),
        }
    }
    conn.metric("broker_subscribers")
}

#[test]
#[ignore = "driven by scripts/unikernel-boot.sh (UNIKERNEL_CAPACITY=1)"]
fn capacity() {
    let mut conn = Conn::new(broker());
    let held = subscribe_until_refused(&mut conn, 5_000);
    println!("  capacity: {held} subscriber endpoints held before a thread could not start");
    let resp = conn.post("/pub/boot/other", r#"{"data":"still serving"}"#);
    assert_eq!(resp.status, 202, "publish after the capacity probe");
}

/// qos 1 with a data directory in the guest (on the initrd's ramfs: the log
/// code on the real kernel, not its persistence): stored publishes answered
/// with their ids, a durable subscriber on the host getting each in order
/// with its id, a retained message, and the log's counters.
#[test]
#[ignore = "driven by scripts/unikernel-boot.sh against a broker with --data-dir in QEMU"]
fn durable() {
    let broker = broker();
    let mut conn = Conn::new(broker);
    let sub = RawSubscriber::start();
    let body = format!(r#"{{"qos":1,"port":"{}"}}"#, sub.port);
    assert_eq!(conn.post("/sub/boot/durable", &body).status, 202);
    let stream = connect(broker);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..100 {
        let body = format!(r#"{{"data":"d{i}","qos":1}}"#);
        let request = format!(
            "POST /pub/boot/durable HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        (&stream).write_all(request.as_bytes()).unwrap();
        let answer = read_resp(&mut reader).expect("answer");
        assert_eq!(answer.status, 202, "{}", answer.text());
        let id: u64 = answer
            .header("Message-Id")
            .expect("Message-Id")
            .parse()
            .unwrap();
        ids.push(id);
    }
    println!("  100 qos 1 publishes stored: {:?}", started.elapsed());
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    for (i, id) in ids.iter().enumerate() {
        let got = sub.recv_msg();
        assert_eq!(support::data_of(&got.body), format!("d{i}"));
        assert_eq!(got.header("Message-Id"), Some(id.to_string().as_str()));
    }
    let retained = conn.post("/pub/boot/kept", r#"{"data":"k","retain":true}"#);
    assert_eq!(retained.status, 202);
    let late = RawSubscriber::start();
    conn.subscribe("boot/kept", late.port);
    assert_eq!(late.recv_data(1), ["k"]);
    assert!(conn.metric("broker_messages_stored_total") >= 101);
    assert!(conn.metric("broker_log_syncs_total") >= 1);
    assert!(conn.metric("broker_log_segments") >= 1);
    println!(
        "  log in the guest: {} bytes, {} syncs",
        conn.metric("broker_log_bytes"),
        conn.metric("broker_log_syncs_total")
    );
    streams(broker, &mut conn, &ids);
    println!(
        "  {} connections for every other request (keep-alive)",
        conn.connects
    );
}

/// The console, a wildcard stream, a resume from the guest's log, and a
/// reader that leaves (found by a non-blocking read on lwIP, or by the next
/// keep-alive where the stack cannot do one).
fn streams(broker: SocketAddr, conn: &mut Conn, stored: &[u64]) {
    let console = conn.get("/");
    assert_eq!(console.status, 200);
    assert!(console.text().contains("EventSource"));
    assert!(conn.get("/api/v1/subscribers").text().starts_with('['));

    let mut live = StreamReader::sse(broker, "boot/%2B", &[]);
    let resume = stored[49].to_string();
    let mut replay = StreamReader::sse(broker, "boot/durable", &[("Last-Event-ID", &resume)]);
    for id in &stored[50..] {
        assert_eq!(replay.message().id, Some(*id), "replayed from the log");
    }
    // A new stream begins with the retained messages it matches.
    let kept = live.message();
    assert_eq!(kept.data, r#"{"data":"k","Topic":"boot/kept"}"#);
    let started = Instant::now();
    let answer = conn.post("/pub/boot/streamed", r#"{"data":"s","qos":1}"#);
    assert_eq!(answer.status, 202);
    let event = live.message();
    assert_eq!(event.data, r#"{"data":"s","Topic":"boot/streamed"}"#);
    println!(
        "  SSE: a publish reached a wildcard stream in {:?}",
        started.elapsed()
    );
    live.close();
    replay.close();
    // The keep-alive interval bounds how long a departed reader is kept.
    let gone = wait_until(Duration::from_secs(40), || {
        (conn.metric("broker_streams") == 0).then_some(())
    });
    assert!(gone.is_some(), "the streams were not cleaned up");
}
