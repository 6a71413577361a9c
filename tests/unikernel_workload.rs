//! The workload `scripts/unikernel-check.sh` drives against a broker that
//! runs as under the Unikraft ELF loader (system calls outside Unikraft's
//! list failing, signals stubbed, about 28 threads at most). Ignored in a
//! plain `cargo test`: it needs `UNIKERNEL_BROKER=ADDR`, set by the script.

mod support;

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;
use support::{RawSubscriber, connect, exchange, post, publish_request, read_resp, subscribe};

/// More clients at once than the runtime has threads for.
const CLIENTS: usize = 60;
/// Subscriber endpoints tried; more than the Kraftfile's `--max-subscribers`.
const SUBSCRIBERS: usize = 12;

/// 300 messages in order to one subscriber over one keep-alive connection.
fn round_trip(broker: SocketAddr, sub: &RawSubscriber, tag: &str) {
    let stream = connect(broker);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let sent: Vec<String> = (0..300).map(|i| format!("{tag}{i}")).collect();
    for data in &sent {
        (&stream).write_all(&publish_request("load", data)).unwrap();
        assert_eq!(read_resp(&mut reader).expect("answer").status, 202);
    }
    assert_eq!(sub.recv_data(sent.len()), sent);
}

/// What one of many simultaneous clients saw.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Outcome {
    Served,
    Refused503,
    /// Closed (to make room, or refused without an answer) before it got all
    /// its answers: clean, the client can retry.
    Closed,
}

/// Connects and starts a publish (`Expect: 100-continue`), so that the
/// whole crowd holds its places at once; once everyone has its first answer
/// (100, or 503, or a close), sends the body.
fn crowd_member(broker: SocketAddr, i: usize, all_answered: &Barrier) -> Outcome {
    let body = format!(r#"{{"data":"c{i}"}}"#);
    let head = format!(
        "POST /pub/crowd HTTP/1.1\r\nHost: b\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let first = std::net::TcpStream::connect_timeout(&broker, support::WAIT)
        .ok()
        .and_then(|stream| {
            stream.set_read_timeout(Some(support::WAIT)).unwrap();
            (&stream).write_all(head.as_bytes()).ok()?;
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let answer = read_resp(&mut reader)?; // None: EOF or reset, not a timeout
            Some((stream, reader, answer.status))
        });
    all_answered.wait();
    match first {
        None => Outcome::Closed,
        Some((_, _, 503)) => Outcome::Refused503,
        Some((stream, mut reader, 100)) => {
            (&stream).write_all(body.as_bytes()).unwrap();
            let status = read_resp(&mut reader)
                .expect("an answer to the body")
                .status;
            assert_eq!(status, 202, "client {i}");
            Outcome::Served
        }
        Some((_, _, status)) => panic!("client {i}: unexpected {status}"),
    }
}

#[test]
#[ignore = "run by scripts/unikernel-check.sh against a broker under emulation"]
fn unikernel_workload() {
    let broker: SocketAddr = std::env::var("UNIKERNEL_BROKER")
        .expect("UNIKERNEL_BROKER=ADDR")
        .parse()
        .unwrap();
    let sub = RawSubscriber::start();
    subscribe(broker, "load", sub.addr().port());
    round_trip(broker, &sub, "a");

    // A crowd larger than the thread budget, all at once.
    let (tx, rx) = mpsc::channel();
    let all_answered = Arc::new(Barrier::new(CLIENTS));
    for i in 0..CLIENTS {
        let (tx, all_answered) = (tx.clone(), all_answered.clone());
        thread::spawn(move || tx.send(crowd_member(broker, i, &all_answered)).unwrap());
    }
    drop(tx);
    let mut outcomes = std::collections::HashMap::new();
    for _ in 0..CLIENTS {
        let outcome = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("every client ends: none hangs");
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    eprintln!("crowd of {CLIENTS}: {outcomes:?}");
    let served = outcomes.get(&Outcome::Served).copied().unwrap_or(0);
    assert!(served > 0, "{outcomes:?}");
    assert!(
        served < CLIENTS,
        "the crowd never exceeded the budget: {outcomes:?}"
    );

    // More subscriber endpoints than allowed: the extra ones get 503.
    let extra: Vec<RawSubscriber> = (0..SUBSCRIBERS).map(|_| RawSubscriber::start()).collect();
    let mut statuses = Vec::new();
    for s in &extra {
        let body = format!(r#"{{"port":"{}"}}"#, s.addr().port());
        statuses.push(post(broker, "/sub/other", &body).status);
    }
    eprintln!("subscriptions: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 503),
        "{statuses:?}"
    );

    // Garbage is answered, not fatal.
    for bad in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"POST /pub/x HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
    ] {
        let answer = exchange(broker, bad);
        assert_eq!(answer.status, 400, "{}", answer.text());
    }

    // Still serving, in order, after all of it.
    round_trip(broker, &sub, "b");
    let health = exchange(broker, b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n");
    assert_eq!(health.status, 200);
}
