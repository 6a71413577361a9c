//! Throughput paths under test at small sizes: pipelined publishing (a window
//! of requests in flight) loses nothing and keeps each publisher's order, and
//! a subscriber that is slow for a moment loses nothing.

mod support;

use message_broker::client::Client;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::{BrokerProcess, RawSubscriber};

#[test]
fn three_pipelined_publishers_window_64_deliver_everything_once_in_order() {
    let broker = BrokerProcess::start(&[]);
    let subscriber = Client::builder(broker.addr.to_string())
        .listen_port(0)
        .build()
        .unwrap();
    let rx = support::subscribe_channel(&subscriber, "fast");

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
    // A publisher waits up to 5 s for room (not the default 50 ms): on a
    // loaded machine the delivery thread may not run for longer than the
    // subscriber's pause, and what this tests is waiting, not the deadline.
    let broker = BrokerProcess::start(&["--enqueue-wait", "5000"]);
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
    let dropped = r#"broker_messages_dropped_total{reason="queue_full"}"#;
    assert_eq!(
        support::metric(broker.addr, dropped),
        0,
        "{:?}",
        broker.log()
    );
    let got = sub.recv_data(n);
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert!(got == want, "messages lost or reordered");
}

/// A broker on this thread's terms: embedded, so its idle timeout can be short.
fn embedded(
    config: impl FnOnce(&mut message_broker::broker::Config),
) -> message_broker::broker::Running {
    let mut c = message_broker::broker::Config {
        bind: "127.0.0.1".parse().unwrap(),
        port: 0,
        ..Default::default()
    };
    config(&mut c);
    message_broker::broker::Broker::bind(c)
        .unwrap()
        .spawn()
        .unwrap()
}

#[test]
fn publisher_reconnects_after_the_broker_closed_its_idle_connection() {
    let broker = embedded(|c| c.idle_timeout = Duration::from_millis(300));
    let client = Client::builder(broker.local_addr().to_string())
        .listen_port(0)
        .build()
        .unwrap();
    let mut publisher = client.publisher().window(8);
    publisher.send("t", "before").unwrap();
    assert!(publisher.flush().is_empty());
    // Longer than the idle timeout: the broker closes the connection.
    std::thread::sleep(Duration::from_millis(900));
    publisher.send("t", "after").unwrap();
    let failures = publisher.flush();
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn paced_publisher_reports_only_what_the_broker_refused_or_never_read() {
    let broker = embedded(|c| c.limits.max_body = 1000);
    let sub = RawSubscriber::start();
    support::subscribe(broker.local_addr(), "t", sub.port);
    let client = Client::builder(broker.local_addr().to_string())
        .listen_port(0)
        .build()
        .unwrap();
    let mut publisher = client.publisher().window(64);
    for i in 0..5 {
        publisher.send("t", &format!("ok{i}")).unwrap();
    }
    publisher.send("t", &"x".repeat(5000)).unwrap(); // number 5: 413, then the broker closes
    // Paced past the broker's 2 s linger, so that writes fail on the closed connection.
    for i in 6..30 {
        std::thread::sleep(Duration::from_millis(100));
        publisher.send("t", &format!("late{i}")).unwrap();
    }
    let failures = publisher.flush();
    assert_eq!(sub.recv_data(5), ["ok0", "ok1", "ok2", "ok3", "ok4"]);
    assert_eq!(
        failures.first().map(|f| f.seq),
        Some(5),
        "accepted messages reported as failed: {failures:?}"
    );
    assert!(matches!(
        failures[0].error,
        message_broker::client::Error::Status { status: 413, .. }
    ));
    let mut seqs: Vec<u64> = failures.iter().map(|f| f.seq).collect();
    seqs.dedup();
    assert_eq!(seqs.len(), failures.len(), "a message reported twice");
}

#[test]
fn flush_against_a_broker_that_reads_slowly_and_never_answers_ends_by_the_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::Read;
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let mut buf = vec![0u8; 64 * 1024];
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => std::thread::sleep(Duration::from_millis(100)), // a slow reader
            }
        }
    });
    let client = Client::builder(addr.to_string())
        .listen_port(0)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let mut publisher = client.publisher().window(64);
    let big = "y".repeat(256 * 1024);
    let started = std::time::Instant::now();
    for _ in 0..63 {
        publisher.send("t", &big).unwrap();
    }
    let failures = publisher.flush();
    assert_eq!(failures.len(), 63);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
