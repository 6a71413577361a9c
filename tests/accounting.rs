//! What `/metrics` counts when things go wrong: messages answered just before
//! a subscriber fails, and a peer that stops reading its answers.

mod support;

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use support::{BrokerProcess, WAIT, connect, metric, publish, read_request, subscribe, wait_until};

const ACCEPTED: &[u8] = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";

#[test]
fn messages_answered_before_a_subscriber_fails_are_counted_delivered() {
    let broker = BrokerProcess::start(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    subscribe(broker.addr, "t", port);
    let (got_first, first) = mpsc::channel();
    let (go, proceed) = mpsc::channel::<()>();
    let subscriber = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let m1 = read_request(&mut reader);
        got_first.send(m1).unwrap();
        proceed.recv_timeout(WAIT).unwrap();
        writer.write_all(ACCEPTED).unwrap(); // m1: delivered
        let m2 = read_request(&mut reader);
        let m3 = read_request(&mut reader); // same batch as m2
        writer.write_all(ACCEPTED).unwrap(); // m2: delivered
        // Then the subscriber dies without answering m3.
        writer.shutdown(std::net::Shutdown::Both).unwrap();
        (m2, m3)
    });
    publish(broker.addr, "t", "m1");
    assert!(first.recv_timeout(WAIT).unwrap().contains("m1"));
    // m2 and m3 queue while m1 waits for its answer: the next batch.
    publish(broker.addr, "t", "m2");
    publish(broker.addr, "t", "m3");
    go.send(()).unwrap();
    let (m2, m3) = subscriber.join().unwrap();
    assert!(m2.contains("m2") && m3.contains("m3"));
    // Delivered and lost are counted before the subscriber is removed.
    wait_until(WAIT, || {
        (metric(broker.addr, "broker_subscribers") == 0).then_some(())
    })
    .expect("the subscriber is dropped");
    let delivered = metric(broker.addr, "broker_messages_delivered_total");
    let lost = metric(
        broker.addr,
        "broker_messages_dropped_total{reason=\"subscriber_gone\"}",
    );
    assert_eq!(
        (delivered, lost),
        (2, 1),
        "(delivered, lost): m1 and m2 were answered 202, m3 was not. Log: {:?}",
        broker.log()
    );
}

/// A peer that pipelines requests and never reads the answers: once the
/// broker has not been able to write for its write timeout it closes the
/// connection, as a transport error. No 408: the peer was not slow to send,
/// the broker had stopped reading while its answers could not leave.
#[test]
fn a_peer_that_never_reads_is_closed_as_an_error_not_answered_408() {
    let broker = BrokerProcess::start(&["--delivery-timeout", "1s"]);
    let peer = connect(broker.addr);
    // 20,000 metrics pages of about 4 KiB: far more than socket buffers hold.
    let burst = b"GET /metrics HTTP/1.1\r\nHost: b\r\n\r\n".repeat(20_000);
    let mut writer = peer.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let _ = writer.write_all(&burst); // fails once the broker closes
    });
    let error = "broker_connections_closed_total{reason=\"error\"}";
    let closed = wait_until(WAIT, || (metric(broker.addr, error) == 1).then_some(()));
    assert!(closed.is_some(), "closed when its answers could not leave");
    let timeout = "broker_connections_closed_total{reason=\"request_timeout\"}";
    assert_eq!(metric(broker.addr, timeout), 0, "no 408");
    drop(peer);
    sender.join().unwrap();
}
