//! Stuck and dead peers against the real broker binary: a subscriber that
//! never reads, hundreds of idle connections, a connection limit, and a
//! subscriber process killed mid-stream. None of them may hold up publishers
//! or the other subscribers.

mod support;

use message_broker::client::Client;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};
use support::{BrokerProcess, RawSubscriber, Resp, WAIT, connect, data_of, read_resp};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A kept-alive connection to the broker, one request at a time.
struct Session {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Session {
    fn open(broker: SocketAddr) -> Session {
        Session::on(connect(broker))
    }

    /// A session on a connection already open (with read and write timeouts).
    fn on(stream: TcpStream) -> Session {
        let reader = BufReader::new(stream.try_clone().unwrap());
        Session { stream, reader }
    }

    /// Publishes `data` (plain ASCII, no JSON escaping needed) and reads the answer.
    fn publish(&mut self, topic: &str, data: &str) -> Resp {
        self.try_publish(topic, data)
            .expect("an answer to the publish")
    }

    /// As [`Session::publish`]; `None` if the connection is closed.
    fn try_publish(&mut self, topic: &str, data: &str) -> Option<Resp> {
        let body = format!("{{\"data\":\"{data}\",\"qos\":0}}");
        let request = format!(
            "POST /pub/{topic} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(request.as_bytes()).ok()?;
        read_resp(&mut self.reader)
    }
}

/// (1) A subscriber that accepts the connection and never reads holds up
/// neither the publishers nor the healthy subscriber, and is dropped after
/// the (default, 5 s) delivery timeout with its reason logged.
#[test]
fn subscriber_that_never_reads_holds_up_nobody() {
    let broker = BrokerProcess::start(&[]);
    let stuck = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let stuck_port = stuck.local_addr().unwrap().port();
    let (held_tx, held) = mpsc::channel();
    thread::spawn(move || {
        // Accept, keep the stream, never read from it.
        for stream in stuck.incoming() {
            if held_tx.send(stream).is_err() {
                return;
            }
        }
    });
    let healthy = RawSubscriber::start();
    support::subscribe(broker.addr, "flood", stuck_port);
    support::subscribe(broker.addr, "flood", healthy.port);

    let data = |i: usize| format!("{i:04}-{}", "x".repeat(1019)); // 1 KiB
    let started = Instant::now();
    let mut session = Session::open(broker.addr);
    for i in 0..1000 {
        let resp = session.publish("flood", &data(i));
        assert_eq!(resp.status, 202, "publish {i}: {}", resp.text());
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "1,000 publishes took {took:?}"
    );
    for i in 0..1000 {
        let got = data_of(&healthy.recv_msg().body);
        assert!(
            got == data(i),
            "healthy subscriber: message {i} missing or out of order"
        );
    }

    let mut stuck_conn = held
        .recv_timeout(WAIT)
        .expect("the broker connects to the stuck subscriber")
        .unwrap();
    let line = broker.wait_for_log(&format!("subscriber 127.0.0.1:{stuck_port} dropped"));
    assert!(line.contains("delivery timed out"), "{line}");
    // Dropped means disconnected: what the broker had sent is followed by
    // the end of the stream.
    stuck_conn.set_read_timeout(Some(WAIT)).unwrap();
    let mut sink = Vec::new();
    let read = stuck_conn.read_to_end(&mut sink);
    assert!(read.is_ok(), "the broker closed the connection: {read:?}");

    // The broker still serves the topic, and only the healthy subscriber.
    assert_eq!(session.publish("flood", "after").status, 202);
    assert_eq!(healthy.recv_data(1), ["after"]);
    assert!(
        held.recv_timeout(Duration::from_millis(300)).is_err(),
        "the broker connected again to a dropped subscriber"
    );
}

/// (2) Hundreds of idle connections, some with half a request, leave a new
/// connection's publish answered at once.
#[test]
fn idle_connections_do_not_delay_a_new_publish() {
    let broker = BrokerProcess::start(&[]);
    let sub = RawSubscriber::start();
    support::subscribe(broker.addr, "idle", sub.port);
    let half = b"POST /pub/idle HTTP/1.1\r\nHost: b\r\nContent-Le";
    // In batches smaller than the listen backlog (a burst larger than it has
    // connections wait for the kernel's 1 s SYN retry), each followed by a
    // probe: accepted after its batch (first in, first out), so once it is
    // answered, the whole batch is open and served.
    let mut idle: Vec<TcpStream> = Vec::new();
    for batch in 0..3 {
        for i in 0..100 {
            let mut stream = connect(broker.addr);
            if i % 2 == 1 {
                stream.write_all(half).unwrap();
            }
            idle.push(stream);
        }
        let probe = support::post(broker.addr, "/pub/probe", r#"{"data":"probe"}"#);
        assert_eq!(probe.status, 202, "probe after batch {batch}");
    }

    // A fresh connection, with 300 idle ones open.
    let started = Instant::now();
    let resp = support::post(broker.addr, "/pub/idle", r#"{"data":"fresh"}"#);
    let took = started.elapsed();
    assert_eq!(resp.status, 202, "{}", resp.text());
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    assert_eq!(sub.recv_data(1), ["fresh"]);

    // The idle ones are still served: finish a half request, and use a
    // silent one.
    let mut finished = Session::on(idle[1].try_clone().unwrap());
    let body = r#"{"data":"late"}"#;
    let rest = format!("ngth: {}\r\n\r\n{body}", body.len());
    finished.stream.write_all(rest.as_bytes()).unwrap();
    let resp = read_resp(&mut finished.reader).expect("an answer to the finished request");
    assert_eq!(resp.status, 202, "{}", resp.text());
    let mut silent = Session::on(idle[298].try_clone().unwrap());
    assert_eq!(silent.publish("idle", "quiet").status, 202);
    assert_eq!(sub.recv_data(2), ["late", "quiet"]);
}

/// What became of a connection made past the connection limit.
#[derive(Debug, PartialEq, Eq)]
enum Past {
    /// 503 with `Connection: close`, then closed.
    Refused503,
    /// Closed (or reset) without an answer.
    Closed,
    /// Served: a publish on it got 202.
    Served,
}

/// Connects past the limit and sends a publish: the broker must answer it
/// (503 and close, or 202) or close the connection, never leave it hanging.
fn connect_past_limit(broker: SocketAddr) -> Past {
    let mut stream = connect(broker);
    // The broker may refuse before reading the request: a failed write is
    // one of the outcomes, not an error of the test.
    let body = r#"{"data":"past the limit"}"#;
    let request = format!(
        "POST /pub/t HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(request.as_bytes());
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // A timeout here means the connection was left open and silent.
    match reader.fill_buf() {
        Ok([]) => return Past::Closed,
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("a connection past the limit was neither answered nor closed")
        }
        Err(_) => return Past::Closed,
    }
    let resp = read_resp(&mut reader).expect("a whole answer");
    match resp.status {
        202 => Past::Served,
        503 => {
            let connection = resp.header("connection").unwrap_or("");
            assert!(
                connection.eq_ignore_ascii_case("close"),
                "503 without Connection: close: {resp:?}"
            );
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            assert!(support::closed_by_peer(&mut reader), "closed after the 503");
            Past::Refused503
        }
        other => panic!("unexpected answer {other} past the limit: {resp:?}"),
    }
}

/// Opens a connection and starts a publish that waits for its body
/// (`Expect: 100-continue`): once `100 Continue` is read, the broker is
/// known to be in the middle of this request. Returns the session and the
/// body still to send.
fn start_request(broker: SocketAddr, data: &str) -> (Session, String) {
    let mut session = Session::open(broker);
    let body = format!("{{\"data\":\"{data}\"}}");
    let head = format!(
        "POST /pub/t HTTP/1.1\r\nHost: b\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    session.stream.write_all(head.as_bytes()).unwrap();
    let interim = read_resp(&mut session.reader).expect("100 Continue");
    assert_eq!(interim.status, 100, "{interim:?}");
    (session, body)
}

/// (2) With `--max-connections 20` all taken by requests in progress (stuck
/// peers that sent a request head and hold back the body), new connections
/// get 503 with `Connection: close` (or are closed), while the 20 keep
/// working; once one of them closes, a new connection is served again.
#[test]
fn past_max_connections_new_ones_get_503_and_open_ones_keep_working() {
    let broker = BrokerProcess::start(&["--max-connections", "20"]);
    let mut busy: Vec<(Session, String)> = (0..20)
        .map(|i| start_request(broker.addr, &format!("held-{i}")))
        .collect();

    for attempt in 0..3 {
        let past = connect_past_limit(broker.addr);
        assert!(
            past == Past::Refused503 || past == Past::Closed,
            "connection {} past the limit: {past:?}",
            21 + attempt
        );
    }

    // The 20 still work: their requests complete, and the connections carry
    // another one.
    for i in [0, 19] {
        let (session, body) = &mut busy[i];
        session.stream.write_all(body.as_bytes()).unwrap();
        let resp = read_resp(&mut session.reader).expect("an answer");
        assert_eq!(resp.status, 202, "connection {i}: {}", resp.text());
        assert_eq!(session.publish("t", "again").status, 202, "connection {i}");
    }

    // One closes: its place is free for a new connection.
    drop(busy.remove(5));
    let served = support::wait_until(WAIT, || {
        (connect_past_limit(broker.addr) == Past::Served).then_some(())
    });
    assert!(
        served.is_some(),
        "no new connection served after one closed"
    );
}

/// (2) With `--max-connections 20` all taken by idle connections (no byte
/// sent), a new connection is never left hanging: it gets 503 and the 20
/// keep working, or (when the broker makes room by closing the longest-idle
/// connection) it is served and at most one of the 20 was closed.
#[test]
fn past_max_connections_of_idle_ones_a_new_connection_is_never_left_hanging() {
    let broker = BrokerProcess::start(&["--max-connections", "20"]);
    let idle: Vec<TcpStream> = (0..20).map(|_| connect(broker.addr)).collect();
    let past = connect_past_limit(broker.addr);
    let working = idle
        .iter()
        .filter(|stream| {
            let mut session = Session::on(stream.try_clone().unwrap());
            session
                .try_publish("t", "x")
                .is_some_and(|r| r.status == 202)
        })
        .count();
    match past {
        Past::Refused503 | Past::Closed => assert_eq!(working, 20),
        Past::Served => assert_eq!(working, 19, "only the longest-idle one makes room"),
    }
}

/// The environment variable that makes [`subscriber_process`] run: the
/// broker's address.
const SUBSCRIBER_OF: &str = "STUCK_PEERS_SUBSCRIBER_OF";

/// Not a test on its own: the subscriber process of
/// `killed_subscriber_is_dropped_and_the_others_keep_receiving`, which runs
/// this test binary again with only this function and [`SUBSCRIBER_OF`] set.
/// A real [`Client`] in a process of its own, so that it can be killed with
/// SIGKILL; re-running the test binary needs no extra program (the
/// `examples/client` binary would need a `cargo run`, python3 is not a
/// dependency of the project). Prints `PORT n` once subscribed, then
/// `GOT data` per message; exits after [`WAIT`] without a message.
#[test]
#[ignore = "the subscriber process of another test; does nothing run alone"]
fn subscriber_process() {
    let Ok(broker) = std::env::var(SUBSCRIBER_OF) else {
        return;
    };
    let client = Client::builder(broker)
        .listen_ip(LOOPBACK)
        .listen_port(0)
        .build()
        .unwrap();
    let rx = support::subscribe_channel(&client, "stream");
    println!("PORT {}", client.listen_port());
    while let Ok(m) = rx.recv_timeout(WAIT) {
        println!("GOT {}", m.data);
    }
}

/// A child process, killed when dropped (also when the test fails).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (3) A subscriber process killed (SIGKILL) mid-stream is dropped with its
/// reason logged; the broker keeps serving, another subscriber misses
/// nothing, and later publishes are not delivered to the dead one's address.
#[test]
fn killed_subscriber_is_dropped_and_the_others_keep_receiving() {
    let broker = BrokerProcess::start(&[]);
    let healthy = RawSubscriber::start();
    support::subscribe(broker.addr, "stream", healthy.port);

    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "subscriber_process", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(SUBSCRIBER_OF, broker.addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the subscriber process");
    let mut child = Killed(child);
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let next_line = |what: &str| {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line: String = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the subscriber process printed no {what}"));
            // libtest's "test subscriber_process ... " may open the line.
            if let Some((_, rest)) = line.split_once(what) {
                return rest.to_owned();
            }
        }
    };
    let port: u16 = next_line("PORT ").parse().unwrap();

    // Publish until told to stop, paced so that the healthy subscriber keeps
    // up (its queue never overflows, so it must get every message).
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (stop, count, addr) = (stop.clone(), count.clone(), broker.addr);
        thread::spawn(move || {
            let mut session = Session::open(addr);
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                let n = count.load(Ordering::SeqCst);
                let started = Instant::now();
                let resp = session.publish("stream", &n.to_string());
                assert_eq!(resp.status, 202, "publish {n}: {}", resp.text());
                slowest = slowest.max(started.elapsed());
                count.store(n + 1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(1)); // pacing
            }
            slowest
        })
    };

    // Mid-stream: the process has received some messages, more are coming.
    for _ in 0..20 {
        next_line("GOT ");
    }
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    let line = broker.wait_for_log(&format!("subscriber 127.0.0.1:{port} dropped"));
    assert!(line.contains("dropped: "), "the reason is logged: {line}");
    // The broker keeps taking publishes after the drop.
    let at_drop = count.load(Ordering::SeqCst);
    let more = support::wait_until(WAIT, || {
        (count.load(Ordering::SeqCst) >= at_drop + 50).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    let slowest = publisher.join().expect("every publish got 202");
    assert!(more.is_some(), "publishing stalled after the drop");
    assert!(
        slowest < Duration::from_secs(1),
        "a publish took {slowest:?}"
    );
    // The healthy subscriber got every message, in order.
    let published = count.load(Ordering::SeqCst);
    for i in 0..published {
        let got = data_of(&healthy.recv_msg().body);
        assert_eq!(
            got,
            i.to_string(),
            "healthy subscriber, message {i} of {published}"
        );
    }

    // The dead subscriber's address hears nothing more: a new listener on
    // its port gets no delivery of later publishes.
    let bindable = support::wait_until(WAIT, || TcpListener::bind((LOOPBACK, port)).ok());
    drop(bindable.expect("the killed subscriber's port is free again"));
    let reborn = RawSubscriber::start_on(&format!("127.0.0.1:{port}"));
    let mut session = Session::open(broker.addr);
    for i in 0..20 {
        assert_eq!(session.publish("stream", &format!("late-{i}")).status, 202);
    }
    let late: Vec<String> = (0..20).map(|i| format!("late-{i}")).collect();
    assert_eq!(healthy.recv_data(20), late);
    reborn.assert_no_msg(Duration::from_millis(500));
    let drops = broker
        .log()
        .iter()
        .filter(|l| l.contains(&format!("subscriber 127.0.0.1:{port} dropped")))
        .count();
    assert_eq!(drops, 1, "dropped once");
    // Its queue is freed: the broker counts one subscriber, the healthy one,
    // nothing queued (once the healthy one's last answer is back), and the
    // drop with its reason.
    let queued = "broker_queued_messages";
    let drained = support::wait_until(WAIT, || {
        (support::metric(broker.addr, queued) == 0).then_some(())
    });
    drained.expect("nothing stays queued");
    let value = |sample: &str| support::metric(broker.addr, sample);
    assert_eq!(value("broker_subscribers"), 1);
    assert_eq!(value("broker_queued_bytes"), 0);
    let dropped: u64 = ["connect_failed", "timeout", "io", "refused", "bad_response"]
        .iter()
        .map(|r| {
            value(&format!(
                "broker_subscribers_dropped_total{{reason=\"{r}\"}}"
            ))
        })
        .sum();
    assert_eq!(dropped, 1);
}

// The deadline tests above again, with the watchdog instead of kernel socket
// timeouts (as on Unikraft's lwIP).
crate::in_watchdog_mode_too!(
    subscriber_that_never_reads_holds_up_nobody,
    idle_connections_do_not_delay_a_new_publish,
    past_max_connections_of_idle_ones_a_new_connection_is_never_left_hanging,
);
