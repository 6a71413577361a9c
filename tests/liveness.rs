//! Dead subscribers are removed and the living keep receiving; a client
//! survives a broker restart by itself (PROTOCOL.md sections 2 and 3).

mod support;

use message_broker::client::Client;
use std::time::{Duration, Instant};
use support::{BrokerProcess, RawSubscriber, WAIT};

#[test]
fn closed_subscriber_is_removed_and_others_keep_receiving() {
    let broker = BrokerProcess::start(&[]);
    let alive = RawSubscriber::start();
    let doomed = Client::builder(broker.addr.to_string())
        .listen_port(0)
        .build()
        .unwrap();
    let rx = support::subscribe_channel(&doomed, "news");
    support::subscribe(broker.addr, "news", alive.port);

    support::publish(broker.addr, "news", "first");
    assert_eq!(rx.recv_timeout(WAIT).unwrap().data, "first");
    assert_eq!(alive.recv_data(1), ["first"]);

    let doomed_port = doomed.listen_port();
    doomed.close(); // its listener is gone now
    for i in 0..5 {
        support::publish(broker.addr, "news", &format!("after-{i}"));
    }
    let line = broker.wait_for_log(&format!("subscriber 127.0.0.1:{doomed_port} dropped"));
    assert!(line.contains("dropped: "), "the reason is logged: {line}");
    assert_eq!(
        alive.recv_data(5),
        ["after-0", "after-1", "after-2", "after-3", "after-4"]
    );
    // Once dropped, it is gone from the topic: the next publishes do not try it.
    let drops_before = broker
        .log()
        .iter()
        .filter(|l| l.contains("dropped"))
        .count();
    support::publish(broker.addr, "news", "later");
    assert_eq!(alive.recv_data(1), ["later"]);
    let drops_after = broker
        .log()
        .iter()
        .filter(|l| l.contains("dropped"))
        .count();
    assert_eq!(drops_before, drops_after);
}

#[test]
fn subscriber_answering_an_error_is_removed() {
    let broker = BrokerProcess::start(&[]);
    // A listener that answers every request 500.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(WAIT));
            if stream.read(&mut buf).unwrap_or(0) > 0 {
                let _ = stream
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
            }
        }
    });
    support::subscribe(broker.addr, "t", port);
    support::publish(broker.addr, "t", "x");
    let line = broker.wait_for_log(&format!("subscriber 127.0.0.1:{port} dropped"));
    assert!(line.contains("500"), "{line}");
}

#[test]
fn silent_subscriber_is_dropped_after_the_liveness_timeout() {
    let broker = BrokerProcess::start(&["--liveness-timeout", "1"]);
    let sub = RawSubscriber::start();
    support::subscribe(broker.addr, "t", sub.port);
    let line = broker.wait_for_log(&format!("subscriber 127.0.0.1:{} dropped", sub.port));
    assert!(line.contains("heartbeat"), "{line}");
    support::publish(broker.addr, "t", "nobody hears this");
    sub.assert_no_msg(Duration::from_millis(300));
}

#[test]
fn client_receives_again_after_a_broker_restart_on_the_same_port() {
    let mut broker = BrokerProcess::start(&[]);
    let port = broker.addr.port();
    let client = Client::builder(broker.addr.to_string())
        .listen_port(0)
        .build()
        .unwrap();
    let rx = support::subscribe_channel(&client, "restart");
    support::publish(broker.addr, "restart", "before");
    assert_eq!(rx.recv_timeout(WAIT).unwrap().data, "before");

    broker.kill();
    let broker = BrokerProcess::start_on(port, &[]);
    let restarted = Instant::now();
    // Publish until the client, on its own, has subscribed again.
    let mut i = 0;
    let got = loop {
        assert!(
            restarted.elapsed() < Duration::from_secs(15),
            "no delivery within 15 s of the restart"
        );
        support::publish(broker.addr, "restart", &format!("after-{i}"));
        i += 1;
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(250)) {
            break m;
        }
    };
    assert!(got.data.starts_with("after-"), "{got:?}");
}
