//! Operating the broker process: SIGTERM/SIGINT drain, `/healthz`,
//! `/metrics`, `broker healthcheck`, `BROKER_*` variables, the request
//! deadline and the access token. Every test runs the real binary.

mod support;

use assert_cmd::Command;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};
use support::{
    BrokerProcess, RawSubscriber, WAIT, closed_by_peer, connect, exchange, metric, post, publish,
    read_resp, subscribe, wait_until,
};

fn get(addr: SocketAddr, path: &str) -> support::Resp {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn sigterm_drains_queued_messages_then_exits_0_and_frees_the_port() {
    let mut broker = BrokerProcess::start(&[]);
    // Slow: 100 ms pause every 10 messages, so 200 take about 2 s.
    let sub = RawSubscriber::start_slow(10, Duration::from_millis(100));
    subscribe(broker.addr, "t", sub.addr().port());
    // An idle keep-alive connection must not hold the stop up.
    let idle = connect(broker.addr);
    let sent: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    for data in &sent {
        publish(broker.addr, "t", data);
    }
    assert!(
        metric(broker.addr, "broker_queued_messages") > 0,
        "nothing queued: the test proves nothing"
    );
    let stopped = Instant::now();
    broker.signal("TERM");
    let status = broker
        .wait_exit(Duration::from_secs(8))
        .expect("exits within the drain timeout");
    assert!(status.success(), "{status:?}: {:?}", broker.log());
    assert!(stopped.elapsed() < Duration::from_secs(7));
    assert_eq!(
        sub.recv_data(200),
        sent,
        "every queued message delivered, in order"
    );
    assert!(closed_by_peer(&mut BufReader::new(idle)));
    // The port is free at once.
    let again = BrokerProcess::start_on(broker.addr.port(), &[]);
    assert_eq!(get(again.addr, "/healthz").status, 200);
}

#[test]
fn sigint_with_a_stuck_subscriber_ends_at_the_drain_timeout() {
    let mut broker = BrokerProcess::start(&["--drain-timeout", "1s"]);
    // Accepts, never reads or answers.
    let stuck = TcpListener::bind("127.0.0.1:0").unwrap();
    subscribe(broker.addr, "t", stuck.local_addr().unwrap().port());
    for i in 0..20 {
        publish(broker.addr, "t", &format!("m{i}"));
    }
    let stopped = Instant::now();
    broker.signal("INT");
    let status = broker.wait_exit(WAIT).expect("exits");
    assert!(status.success(), "{status:?}");
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "left before the drain timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "drain timeout not kept: {took:?}"
    );
    broker.wait_for_log("drain timeout reached");
}

#[test]
fn requests_in_flight_at_sigterm_are_answered_and_health_turns_503() {
    let mut broker = BrokerProcess::start(&[]);
    // A publish whose head arrived (the broker says 100 Continue) ...
    let publisher = connect(broker.addr);
    (&publisher)
        .write_all(b"POST /pub/t HTTP/1.1\r\nHost: b\r\nExpect: 100-continue\r\nContent-Length: 12\r\n\r\n")
        .unwrap();
    let mut pub_reader = BufReader::new(publisher.try_clone().unwrap());
    assert_eq!(read_resp(&mut pub_reader).unwrap().status, 100);
    // ... and a health check half sent.
    let health = connect(broker.addr);
    (&health).write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    // Both begun: a scrape shows them busy, besides the scrape itself.
    let busy = wait_until(WAIT, || {
        (metric(broker.addr, "broker_connections_busy") == 3).then_some(())
    });
    assert!(busy.is_some());
    broker.signal("TERM");
    broker.wait_for_log("stopping");
    (&publisher).write_all(br#"{"data":"x"}"#).unwrap();
    let answer = read_resp(&mut pub_reader).unwrap();
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert_eq!(answer.header("connection"), Some("close"));
    (&health).write_all(b"Host: b\r\n\r\n").unwrap();
    let mut health_reader = BufReader::new(health);
    assert_eq!(read_resp(&mut health_reader).unwrap().status, 503);
    let status = broker.wait_exit(WAIT).expect("exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn healthz_and_the_healthcheck_command() {
    let mut broker = BrokerProcess::start(&[]);
    let ok = get(broker.addr, "/healthz");
    assert_eq!((ok.status, ok.text().as_str()), (200, "ok\n"));
    let wrong = exchange(
        broker.addr,
        b"POST /healthz HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("GET")));
    let port = broker.addr.port().to_string();
    let check = || {
        let mut cmd = Command::cargo_bin("broker").unwrap();
        cmd.timeout(WAIT);
        cmd
    };
    check()
        .args(["healthcheck", "-p", &port])
        .assert()
        .success();
    check()
        .arg("healthcheck")
        .env("BROKER_PORT", &port)
        .assert()
        .success();
    broker.kill();
    let out = check().args(["healthcheck", "-p", &port]).assert().code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn metrics_follow_the_traffic() {
    let broker = BrokerProcess::start(&[]);
    let sub = RawSubscriber::start();
    subscribe(broker.addr, "t", sub.addr().port());
    let published = metric(broker.addr, "broker_messages_published_total");
    let delivered = metric(broker.addr, "broker_messages_delivered_total");
    let received = metric(broker.addr, "broker_received_bytes_total");
    for i in 0..7 {
        publish(broker.addr, "t", &format!("m{i}"));
    }
    sub.recv_data(7);
    assert_eq!(
        metric(broker.addr, "broker_messages_published_total"),
        published + 7
    );
    let all_delivered = wait_until(WAIT, || {
        (metric(broker.addr, "broker_messages_delivered_total") == delivered + 7).then_some(())
    });
    assert!(
        all_delivered.is_some(),
        "delivered counter did not reach +7"
    );
    assert!(metric(broker.addr, "broker_received_bytes_total") > received);
    assert_eq!(metric(broker.addr, "broker_subscribers"), 1);
    assert_eq!(metric(broker.addr, "broker_topics"), 1);
    assert_eq!(metric(broker.addr, "broker_queued_messages"), 0);
    assert_eq!(metric(broker.addr, "broker_thread_budget"), 2048);
    let page = get(broker.addr, "/metrics");
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(
        page.text()
            .contains("broker_messages_dropped_total{reason=\"queue_full\"} 0")
    );
}

#[test]
fn a_request_trickling_in_gets_408_at_the_request_deadline() {
    let broker = BrokerProcess::start(&["--request-timeout", "1s"]);
    let slow = connect(broker.addr);
    let started = Instant::now();
    let writer = slow.try_clone().unwrap();
    // One header byte every 100 ms: each read is quick, the request never ends.
    let trickle = thread::spawn(move || {
        let mut writer = writer;
        let _ = writer.write_all(b"POST /pub/t HTTP/1.1\r\nX: ");
        for _ in 0..60 {
            if writer.write_all(b"a").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    // Meanwhile another client is served.
    publish(broker.addr, "t", "fine");
    let mut reader = BufReader::new(slow);
    let answer = read_resp(&mut reader).expect("an answer");
    assert_eq!(answer.status, 408, "{}", answer.text());
    assert_eq!(answer.header("connection"), Some("close"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    trickle.join().unwrap();
    let counted = wait_until(WAIT, || {
        let sample = "broker_connections_closed_total{reason=\"request_timeout\"}";
        (metric(broker.addr, sample) == 1).then_some(())
    });
    assert!(counted.is_some(), "the 408 close is counted");
}

#[test]
fn an_idle_connection_is_closed_silently_and_counted() {
    let broker = BrokerProcess::start(&["--idle-timeout", "300ms"]);
    let idle = connect(broker.addr);
    let started = Instant::now();
    assert!(
        closed_by_peer(&mut BufReader::new(idle)),
        "closed, with no answer"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    let counted = wait_until(WAIT, || {
        let sample = "broker_connections_closed_total{reason=\"idle_timeout\"}";
        (metric(broker.addr, sample) == 1).then_some(())
    });
    assert!(counted.is_some(), "the idle close is counted");
}

#[test]
fn variables_configure_and_flags_win() {
    let broker = BrokerProcess::start_with_env(0, &[], &[("BROKER_MAX_PAYLOAD", "10")]);
    assert_eq!(
        post(broker.addr, "/pub/t", r#"{"data":"0123456789"}"#).status,
        413
    );
    let broker = BrokerProcess::start_with_env(
        0,
        &["--max-payload", "100"],
        &[("BROKER_MAX_PAYLOAD", "10")],
    );
    assert_eq!(
        post(broker.addr, "/pub/t", r#"{"data":"0123456789"}"#).status,
        202
    );
    let out = Command::cargo_bin("broker")
        .unwrap()
        .env("BROKER_QUEUE_BYTES", "lots")
        .timeout(WAIT)
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("BROKER_QUEUE_BYTES"), "{err}");
}

fn authorized_post(addr: SocketAddr, path: &str, body: &str, auth: Option<&str>) -> support::Resp {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: b\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(addr, request.as_bytes())
}

#[test]
fn with_a_token_only_bearers_publish_subscribe_and_heartbeat() {
    let broker = BrokerProcess::start_with_env(0, &[], &[("BROKER_TOKEN", "s3cret")]);
    let sub = RawSubscriber::start();
    let sub_body = format!(r#"{{"port":"{}"}}"#, sub.addr().port());
    let good = Some("Bearer s3cret");
    for auth in [
        None,
        Some("Bearer s3creT"),
        Some("Bearer s3cret2"),
        Some("Basic s3cret"),
    ] {
        for (path, body) in [
            ("/pub/t", r#"{"data":"x"}"#),
            ("/sub/t", sub_body.as_str()),
            ("/hb", ""),
        ] {
            let answer = authorized_post(broker.addr, path, body, auth);
            assert_eq!(answer.status, 401, "{path} with {auth:?}");
            assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
        }
    }
    assert_eq!(
        authorized_post(broker.addr, "/sub/t", &sub_body, good).status,
        202
    );
    assert_eq!(
        authorized_post(
            broker.addr,
            "/pub/t",
            r#"{"data":"x"}"#,
            Some("bearer s3cret")
        )
        .status,
        202
    );
    assert_eq!(sub.recv_data(1), ["x"]);
    assert_eq!(
        get(broker.addr, "/healthz").status,
        200,
        "operations need no token"
    );
}

#[test]
fn past_max_subscribers_a_subscription_gets_503() {
    let broker = BrokerProcess::start(&["--max-subscribers", "1"]);
    let (a, b) = (RawSubscriber::start(), RawSubscriber::start());
    subscribe(broker.addr, "t", a.addr().port());
    let refused = post(
        broker.addr,
        "/sub/t",
        &format!(r#"{{"port":"{}"}}"#, b.addr().port()),
    );
    assert_eq!(refused.status, 503, "{}", refused.text());
    publish(broker.addr, "t", "only a");
    assert_eq!(a.recv_data(1), ["only a"]);
}

#[test]
fn the_client_carries_the_token() {
    use message_broker::client::{Client, Error};
    let broker = BrokerProcess::start(&["--token", "s3cret"]);
    let addr = broker.addr.to_string();
    let with = Client::builder(addr.clone())
        .listen_port(0)
        .token("s3cret")
        .build()
        .unwrap();
    let messages = support::subscribe_channel(&with, "t");
    let mut publisher = with.publisher();
    publisher.send("t", "pipelined").unwrap();
    assert!(publisher.flush().is_empty());
    with.publish("t", "plain").unwrap();
    let got: Vec<String> = (0..2)
        .map(|_| messages.recv_timeout(WAIT).unwrap().data)
        .collect();
    assert_eq!(got, ["pipelined", "plain"]);

    let without = Client::builder(addr).listen_port(0).build().unwrap();
    match without.publish("t", "x") {
        Err(Error::Status { status: 401, .. }) => {}
        other => panic!("expected 401, got {other:?}"),
    }
}

/// As in a container without an init: the broker is PID 1 of a PID
/// namespace of its own, where a signal without a handler does nothing.
/// SIGTERM still stops it, with status 0. Needs `unshare` and the right to
/// make a PID namespace (root here, and in CI); says so and skips without.
#[test]
fn as_pid_1_sigterm_still_stops_it() {
    use std::io::BufRead;
    use std::process::{Command as Process, Stdio};
    let spawned = Process::new("unshare")
        .args(["--pid", "--fork", "--", env!("CARGO_BIN_EXE_broker")])
        .args(["--bind", "127.0.0.1", "-p", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut unshare) = spawned else {
        eprintln!("skipped: no unshare");
        return;
    };
    let stderr = BufReader::new(unshare.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The ready line, or the first line that is not the broker's (unshare's
    // complaint), within the deadline.
    let ready = std::iter::from_fn(|| rx.recv_timeout(WAIT).ok())
        .find(|l| l.contains("listening on") || !l.starts_with("broker: "))
        .unwrap_or_default();
    if !ready.contains("listening on") {
        let _ = unshare.kill();
        eprintln!("skipped: cannot make a PID namespace here: {ready}");
        return;
    }
    let addr: SocketAddr = ready
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(get(addr, "/healthz").status, 200);
    // The broker is unshare's one child; its PID out here.
    let id = unshare.id();
    let children = std::fs::read_to_string(format!("/proc/{id}/task/{id}/children")).unwrap();
    let broker_pid = children
        .split_whitespace()
        .next()
        .expect("the broker")
        .to_owned();
    let status = Process::new("kill")
        .args(["-TERM", &broker_pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = wait_until(WAIT, || unshare.try_wait().ok().flatten());
    let Some(exited) = exited else {
        let _ = unshare.kill();
        panic!("PID 1 ignored SIGTERM");
    };
    assert!(exited.success(), "{exited:?}");
}

// The deadline tests above again, with the watchdog instead of kernel socket
// timeouts (as on Unikraft's lwIP).
crate::in_watchdog_mode_too!(
    a_request_trickling_in_gets_408_at_the_request_deadline,
    an_idle_connection_is_closed_silently_and_counted,
    sigint_with_a_stuck_subscriber_ends_at_the_drain_timeout,
);
