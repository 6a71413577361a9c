//! The bridge against a NATS server that misbehaves, played by a raw
//! listener: garbage, `-ERR`, huge `MSG` sizes, silence before and after
//! the handshake, and its own messages sent back. The broker stays up, says
//! what happened in its metrics and log, reconnects, and its memory stays
//! bounded. Needs no `nats-server`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};
use support::{BrokerProcess, RawSubscriber, WAIT, metric, publish, subscribe, wait_until};

const INFO: &[u8] = b"INFO {\"server_id\":\"fake\",\"version\":\"2.9.10\",\"proto\":1,\"headers\":true,\"max_payload\":1048576}\r\n";

/// A listener that hands over every connection it accepts.
struct FakeNats {
    port: u16,
    conns: Receiver<TcpStream>,
}

impl FakeNats {
    fn start() -> FakeNats {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, conns) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                stream.set_read_timeout(Some(WAIT)).unwrap();
                stream.set_write_timeout(Some(WAIT)).unwrap();
                if tx.send(stream).is_err() {
                    return;
                }
            }
        });
        FakeNats { port, conns }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The broker's next connection, within `limit`.
    fn next(&self, limit: Duration) -> TcpStream {
        self.conns
            .recv_timeout(limit)
            .expect("the bridge (re)connects")
    }
}

/// Plays a good server through the handshake: INFO, then the bridge's
/// CONNECT and PING, then PONG.
fn handshake(stream: &TcpStream) -> BufReader<TcpStream> {
    (&*stream).write_all(INFO).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let connect = line(&mut reader);
    assert!(connect.starts_with("CONNECT {"), "{connect}");
    assert!(connect.contains("\"headers\":true"), "{connect}");
    assert_eq!(line(&mut reader), "PING");
    (&*stream).write_all(b"PONG\r\n").unwrap();
    reader
}

/// The next line that is not a `PING` from the bridge, answering each.
fn op(reader: &mut BufReader<TcpStream>) -> String {
    loop {
        let l = line(reader);
        if l != "PING" {
            return l;
        }
        reader.get_ref().write_all(b"PONG\r\n").unwrap();
    }
}

fn line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("a line from the bridge");
    line.trim_end().to_owned()
}

fn healthy(broker: &BrokerProcess) {
    let resp = support::exchange(
        broker.addr,
        b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn garbage_instead_of_info_is_a_protocol_error_and_the_bridge_reconnects() {
    let fake = FakeNats::start();
    let broker = BrokerProcess::start(&["--nats", &fake.url()]);
    for _ in 0..3 {
        let stream = fake.next(WAIT);
        let _ = (&stream).write_all(b"HELLO\x00\xff GARBAGE\r\n");
    }
    healthy(&broker);
    assert_eq!(metric(broker.addr, "broker_bridge_connected"), 0);
    assert!(metric(broker.addr, "broker_bridge_failures_total") >= 2);
    assert!(metric(broker.addr, "broker_bridge_protocol_errors_total") >= 2);
    broker.wait_for_log("nats: cannot connect to 127.0.0.1:");
}

#[test]
fn an_err_at_connect_is_logged_and_retried() {
    let fake = FakeNats::start();
    let broker = BrokerProcess::start(&["--nats", &fake.url()]);
    for _ in 0..2 {
        let stream = fake.next(WAIT);
        (&stream).write_all(INFO).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        assert!(line(&mut reader).starts_with("CONNECT "));
        (&stream)
            .write_all(b"-ERR 'Authorization Violation'\r\n")
            .unwrap();
    }
    broker.wait_for_log("Authorization Violation");
    healthy(&broker);
}

#[test]
fn huge_msg_sizes_are_refused_before_they_are_buffered() {
    let fake = FakeNats::start();
    let broker = BrokerProcess::start(&["--nats", &fake.url()]);
    let before = rss_kib(broker.pid());
    for op in [
        &b"MSG mb.a 1 99999999999999999999999\r\n"[..],
        b"MSG mb.a 1 600000000\r\n",
        b"HMSG mb.a 1 12 600000000\r\n",
        b"HMSG mb.a 1 100 50\r\nNATS/1.0\r\n\r\n",
    ] {
        let stream = fake.next(WAIT);
        let _reader = handshake(&stream);
        // Claim a huge message, then send a good part of it.
        (&stream).write_all(op).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..512 {
            if (&stream).write_all(&chunk).is_err() {
                break; // the bridge hung up, as it should
            }
        }
    }
    let _ = fake.next(WAIT); // and it came back
    healthy(&broker);
    assert!(metric(broker.addr, "broker_bridge_protocol_errors_total") >= 4);
    // 32 MiB were offered four times: none of it was kept.
    let after = rss_kib(broker.pid());
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn a_silent_server_is_given_up_before_and_after_the_handshake() {
    let fake = FakeNats::start();
    let broker = BrokerProcess::start(&["--nats", &fake.url()]);
    // Silent from the start: the handshake has a deadline.
    let first = fake.next(WAIT);
    let _second = fake.next(WAIT);
    drop(first);
    // Silent after the handshake: pings go unanswered.
    let stream = fake.next(WAIT);
    let mut reader = handshake(&stream);
    let started = Instant::now();
    let mut pings = 0;
    loop {
        let mut l = String::new();
        match reader.read_line(&mut l) {
            Ok(0) | Err(_) => break, // the bridge gave up
            Ok(_) if l.trim_end() == "PING" => pings += 1,
            Ok(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never gave up");
    }
    assert!(pings >= 2, "{pings} pings before giving up");
    let _ = fake.next(WAIT);
    healthy(&broker);
    broker.wait_for_log("no answer to pings");
}

#[test]
fn the_brokers_own_messages_coming_back_are_ignored() {
    let fake = FakeNats::start();
    let broker = BrokerProcess::start(&["--nats", &fake.url()]);
    let stream = fake.next(WAIT);
    let mut reader = handshake(&stream);
    let sub = RawSubscriber::start();
    subscribe(broker.addr, "echo", sub.port);
    assert_eq!(op(&mut reader), "SUB mb.echo 1");
    publish(broker.addr, "echo", "mine");
    assert!(sub.recv_msg().body.contains("\"mine\""));
    // The HPUB the broker sent, its origin, and the same bytes back.
    let hpub = op(&mut reader);
    let args: Vec<&str> = hpub.split(' ').collect();
    assert_eq!(args[..2], ["HPUB", "mb.echo"], "{hpub}");
    let total: usize = args[3].parse().unwrap();
    let mut body = vec![0u8; total + 2];
    std::io::Read::read_exact(&mut reader, &mut body).unwrap();
    let head: usize = args[2].parse().unwrap();
    let headers = String::from_utf8_lossy(&body[..head]).into_owned();
    assert!(headers.contains("Mb-Origin: "), "{headers}");
    let mut echo = format!("HMSG mb.echo 1 {head} {total}\r\n").into_bytes();
    echo.extend_from_slice(&body);
    // Its own message is dropped; another broker's comes through.
    let other = "NATS/1.0\r\nMb-Origin: someone-else\r\n\r\n";
    let theirs = format!(
        "HMSG mb.echo 1 {} {}\r\n{other}theirs\r\n",
        other.len(),
        other.len() + 6
    );
    echo.extend_from_slice(theirs.as_bytes());
    (&stream).write_all(&echo).unwrap();
    let next = sub.recv_msg();
    assert!(next.body.contains("\"theirs\""), "{}", next.body);
    sub.assert_no_msg(Duration::from_millis(300));
    let received = wait_until(WAIT, || {
        (metric(broker.addr, "broker_bridge_received_total") == 1).then_some(())
    });
    assert!(received.is_some());
}

#[test]
fn a_server_that_trickles_bytes_but_never_answers_pings_is_given_up() {
    let fake = FakeNats::start();
    let broker = BrokerProcess::start(&["--nats", &fake.url()]);
    let stream = fake.next(WAIT);
    let mut reader = handshake(&stream);
    (&stream).write_all(b"MSG mb.a 1 100\r\n").unwrap();
    let trickle = stream.try_clone().unwrap();
    thread::spawn(move || {
        // A byte now and then, never a whole message, never a PONG.
        for _ in 0..60 {
            if (&trickle).write_all(b"x").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(500));
        }
    });
    let started = Instant::now();
    let mut pings = 0;
    loop {
        let mut l = String::new();
        match reader.read_line(&mut l) {
            Ok(0) | Err(_) => break,
            Ok(_) if l.trim_end() == "PING" => pings += 1,
            Ok(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(25), "never gave up");
    }
    assert!(pings >= 1, "{pings} pings");
    let _ = fake.next(WAIT);
    broker.wait_for_log("no answer to pings");
}

/// PONGs that answer no PING of the bridge's (a confused or hostile
/// server) are not counted: no panic, the connection stays, and the
/// bridge goes on subscribing.
#[test]
fn pongs_that_answer_no_ping_are_ignored() {
    let fake = FakeNats::start();
    let broker = BrokerProcess::start(&["--nats", &fake.url()]);
    let stream = fake.next(WAIT);
    let mut reader = handshake(&stream);
    // Five PONGs nobody asked for, then a PING of ours: its PONG comes
    // back only once the bridge has read the five.
    (&stream).write_all(&b"PONG\r\n".repeat(5)).unwrap();
    (&stream).write_all(b"PING\r\n").unwrap();
    assert_eq!(op(&mut reader), "PONG");
    let sub = RawSubscriber::start();
    subscribe(broker.addr, "pong", sub.port);
    assert_eq!(op(&mut reader), "SUB mb.pong 1");
    let log = broker.log();
    assert!(log.iter().all(|l| !l.contains("panicked")), "{log:?}");
    assert_eq!(metric(broker.addr, "broker_bridge_connects_total"), 1);
    assert_eq!(metric(broker.addr, "broker_bridge_connected"), 1);
}

#[test]
fn the_last_local_subscriber_leaving_unsubscribes_in_nats() {
    let fake = FakeNats::start();
    let broker = BrokerProcess::start(&["--nats", &fake.url()]);
    let stream = fake.next(WAIT);
    let mut reader = handshake(&stream);
    let mut op = || op(&mut reader);
    let (one, two) = (RawSubscriber::start(), RawSubscriber::start());
    subscribe(broker.addr, "u", one.port);
    assert_eq!(op(), "SUB mb.u 1");
    subscribe(broker.addr, "u", two.port);
    subscribe(broker.addr, "v/%23", two.port);
    // `v/#` is two subjects.
    let mut subs = vec![op(), op()];
    subs.sort();
    assert_eq!(subs, ["SUB mb.v 3", "SUB mb.v.> 2"]);
    let unsub = |port: u16, pattern: &str| {
        let path = format!("/unsub/{pattern}");
        let resp = support::post(broker.addr, &path, &format!("{{\"port\":\"{port}\"}}"));
        assert_eq!(resp.status, 202, "{}", resp.text());
    };
    // `u` is still held by `two`: nothing goes to NATS.
    unsub(one.port, "u");
    unsub(two.port, "u");
    assert_eq!(op(), "UNSUB 1");
    // The endpoint's last pattern: it goes, and `v/#` with it.
    unsub(two.port, "v/%23");
    let mut unsubs = vec![op(), op()];
    unsubs.sort();
    assert_eq!(unsubs, ["UNSUB 2", "UNSUB 3"], "{:?}", broker.log());
    assert_eq!(metric(broker.addr, "broker_bridge_subscriptions"), 0);
}

#[test]
fn a_server_without_headers_is_refused_with_a_clear_reason() {
    let fake = FakeNats::start();
    let broker = BrokerProcess::start(&["--nats", &fake.url()]);
    let stream = fake.next(WAIT);
    (&stream)
        .write_all(b"INFO {\"server_id\":\"old\",\"version\":\"2.1.0\",\"headers\":false}\r\n")
        .unwrap();
    broker.wait_for_log("does not take headers");
    assert_eq!(metric(broker.addr, "broker_bridge_connected"), 0);
}

#[test]
fn a_repeated_err_after_the_handshake_is_counted_and_logged_once() {
    let fake = FakeNats::start();
    let broker = BrokerProcess::start(&["--nats", &fake.url()]);
    let stream = fake.next(WAIT);
    let _reader = handshake(&stream);
    for _ in 0..200 {
        (&stream)
            .write_all(b"-ERR 'Permissions Violation for Publish to \"mb.x\"'\r\n")
            .unwrap();
    }
    let counted = wait_until(WAIT, || {
        (metric(broker.addr, "broker_bridge_server_errors_total") == 200).then_some(())
    });
    assert!(counted.is_some());
    let said = broker
        .log()
        .iter()
        .filter(|l| l.contains("Permissions Violation"))
        .count();
    assert_eq!(said, 1, "{:?}", broker.log());
    // Still connected: an -ERR the server does not close for is not fatal.
    assert_eq!(metric(broker.addr, "broker_bridge_connected"), 1);
}
