//! Throughput paths under test at small sizes: pipelined publishing (a window
//! of requests in flight) loses nothing and keeps each publisher's order, and
//! a subscriber that is slow for a moment loses nothing.

mod support;

use message_broker::client::{Client, Message};
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{BrokerProcess, RawSubscriber};

#[test]
fn three_pipelined_publishers_window_64_deliver_everything_once_in_order() {
    let broker = BrokerProcess::start(&[]);
    let subscriber = Client::builder(broker.addr.to_string())
        .listen_port(0)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<Message>();
    subscriber
        .subscribe("fast", move |m| drop(tx.send(m)))
        .unwrap();

    let per_publisher = 3000;
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let addr = broker.addr.to_string();
            std::thread::spawn(move || {
                let client = Client::builder(addr).listen_port(0).build().unwrap();
                let mut publisher = client.publisher().window(64);
                for i in 0..per_publisher {
                    publisher.send("fast", &format!("{p}:{i}")).unwrap();
                }
                publisher.flush()
            })
        })
        .collect();
    for p in publishers {
        let failures = p.join().unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    let mut next: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0..3 * per_publisher {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("only {n} messages arrived"));
        let (p, i) = m.data.split_once(':').unwrap();
        let want = next.entry(p.to_owned()).or_default();
        assert_eq!(
            i.parse::<usize>().unwrap(),
            *want,
            "publisher {p} out of order or duplicated"
        );
        *want += 1;
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "a message arrived twice"
    );
}

#[test]
fn publisher_reports_failures_by_message_number() {
    let broker = BrokerProcess::start(&["--max-payload", "64"]);
    let client = Client::builder(broker.addr.to_string())
        .listen_port(0)
        .build()
        .unwrap();
    let mut publisher = client.publisher().window(8);
    assert_eq!(publisher.send("t", "ok").unwrap(), 0);
    assert_eq!(publisher.send("t", &"x".repeat(100)).unwrap(), 1); // 413, then the broker closes
    let failures = publisher.flush();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].seq, 1);
    assert!(matches!(
        failures[0].error,
        message_broker::client::Error::Status { status: 413, .. }
    ));
    // It reconnects for the next message.
    assert_eq!(publisher.send("t", "after").unwrap(), 2);
    assert!(publisher.flush().is_empty());
    assert!(publisher.send("", "x").is_err());
}

#[test]
fn subscriber_slow_for_a_moment_loses_nothing() {
    let broker = BrokerProcess::start(&[]);
    // Pauses 20 ms every 500 requests: its queue fills while publishing runs
    // at full speed, and publishers wait for room instead of dropping.
    let sub = RawSubscriber::start_slow(500, Duration::from_millis(20));
    support::subscribe(broker.addr, "slow", sub.port);
    let client = Client::builder(broker.addr.to_string())
        .listen_port(0)
        .build()
        .unwrap();
    let mut publisher = client.publisher().window(64);
    let n = 5000;
    for i in 0..n {
        publisher.send("slow", &i.to_string()).unwrap();
    }
    assert!(publisher.flush().is_empty());
    let got = sub.recv_data(n);
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert!(got == want, "messages lost or reordered");
}
