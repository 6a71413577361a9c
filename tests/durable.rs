//! At-least-once delivery and the crash-safe log (PROTOCOL.md 6.2 and 6.4,
//! issue 9), against the real broker binary: a qos 1 subscriber that goes
//! away and comes back, one that fails for a while (backoff), a torn or
//! corrupt log tail, a full disk, idempotent publishing, retained messages,
//! session expiry and backlog limits, one broker per data directory, and
//! the `Message-Id` and the new request errors.

mod support;

use std::fs;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};
use support::durable::{
    Answer, Arrival, Endpoint, Frame, LimitedBroker, TempDir, check_ids, first_arrivals, get,
    message_id, metric_value, post_with, pub_body, publish_qos1, subscribe_qos, subscribe_qos1,
    wait_metric,
};
use support::{BrokerProcess, RawSubscriber, WAIT};

/// The `data` of each first arrival, in order.
fn first_data(msgs: &[Arrival]) -> Vec<String> {
    first_arrivals(msgs)
        .iter()
        .map(|a| a.data().to_owned())
        .collect()
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Asserts a qos 1 publish (`data` on `topic`) is answered 202 with an id.
fn assert_serves(addr: SocketAddr, topic: &str) -> u64 {
    assert_eq!(get(addr, "/healthz").status, 200, "/healthz");
    publish_qos1(addr, topic, "still-serving")
}

// (a) ------------------------------------------------------------------------

/// A qos 1 subscriber whose port refuses connections for 3 s misses
/// nothing: what was published meanwhile arrives in order once it listens
/// again on the same port, and the 1 s liveness timeout (which would drop a
/// qos 0 subscriber) does not drop it.
#[test]
fn qos1_subscriber_away_for_3s_gets_everything_in_order_despite_liveness_1s() {
    let broker = BrokerProcess::start(&["--liveness-timeout", "1"]);
    let mut sub = Endpoint::start();
    subscribe_qos1(broker.addr, "away", sub.port);
    let before = names("before", 10);
    for d in &before {
        publish_qos1(broker.addr, "away", d);
    }
    sub.wait_data(WAIT, &before);

    sub.down();
    let went = Instant::now();
    let during = names("during", 100);
    for d in &during {
        publish_qos1(broker.addr, "away", d);
    }
    // Away three liveness timeouts long: the passing time is what is tested.
    thread::sleep(Duration::from_secs(3).saturating_sub(went.elapsed()));
    sub.up();

    let all: Vec<String> = before.iter().chain(&during).cloned().collect();
    // The broker's backoff may be up to about 3.2 s into its next wait.
    let msgs = sub.wait_data(Duration::from_secs(15), &all);
    assert_eq!(first_data(&msgs), all, "lost or out of order");
    check_ids(&msgs);
    let ids: Vec<u64> = first_arrivals(&msgs).iter().map(Arrival::qos1_id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids do not grow: {ids:?}"
    );
    assert_eq!(metric_value(broker.addr, "broker_sessions"), Some(1));
    let dropped = broker
        .log()
        .into_iter()
        .find(|l| l.contains(&format!("127.0.0.1:{}", sub.port)) && l.contains("dropped"));
    assert!(
        dropped.is_none(),
        "a qos 1 endpoint was dropped: {dropped:?}"
    );
}

// (b) ------------------------------------------------------------------------

/// A subscriber that answers 500 to the first five attempts gets every
/// message, in order, and the broker waits longer between each attempt
/// (100 ms doubling; the first retry waits too: the subscribe that came
/// before any failure must not cut it short). Attempts are told apart by
/// the first message's id,
/// which every attempt resends first, so pipelined requests of one attempt
/// do not count as attempts.
#[test]
fn failing_subscriber_is_retried_with_growing_backoff_and_gets_everything_in_order() {
    const FAILED_ATTEMPTS: usize = 5;
    let broker = BrokerProcess::start(&[]);
    // (the first message's id, attempts at it, whether the last one failed)
    let state: Mutex<(Option<u64>, usize, bool)> = Mutex::new((None, 0, true));
    let sub = Endpoint::start_with(move |a, _| {
        let mut s = state.lock().unwrap();
        let id = a.id();
        let first = *s.0.get_or_insert(id.unwrap_or(0));
        if id == Some(first) {
            s.1 += 1;
            s.2 = s.1 <= FAILED_ATTEMPTS;
        }
        // A request pipelined behind a failed first message fails too, so
        // that nothing is acknowledged out of order.
        Answer::Status(if s.2 { 500 } else { 202 })
    });
    subscribe_qos1(broker.addr, "flaky", sub.port);
    let sent = names("m", 10);
    for d in &sent {
        publish_qos1(broker.addr, "flaky", d);
    }
    // 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s of backoff.
    let msgs = sub.wait_data(Duration::from_secs(15), &sent);

    let delivered: Vec<&Arrival> = msgs.iter().filter(|a| a.accepted()).collect();
    let mut seen = std::collections::HashSet::new();
    let order: Vec<&str> = delivered
        .iter()
        .map(|a| a.data())
        .filter(|d| seen.insert(*d))
        .collect();
    assert_eq!(order, sent, "answered deliveries out of order");
    check_ids(&msgs);

    let first_id = msgs[0].qos1_id();
    let attempts: Vec<Instant> = msgs
        .iter()
        .filter(|a| a.id() == Some(first_id))
        .map(|a| a.at)
        .collect();
    assert!(
        attempts.len() > FAILED_ATTEMPTS,
        "{} attempts at the first message",
        attempts.len()
    );
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    println!("gaps between attempts: {gaps:?}");
    for (i, gap) in gaps.iter().enumerate() {
        assert!(
            *gap >= Duration::from_millis(40),
            "attempt {} came {gap:?} after the one before: no backoff ({gaps:?})",
            i + 2
        );
    }
    assert!(
        gaps[3] >= gaps[0] * 2,
        "the backoff does not grow: 4th gap {:?}, 1st {:?} ({gaps:?})",
        gaps[3],
        gaps[0]
    );
}

// (c) ------------------------------------------------------------------------

/// A data directory with a log of some qos 1 messages and a session, left
/// as a SIGKILL leaves it (the subscriber is gone: restarted brokers'
/// retries to it are refused).
fn write_log(tmp: &TempDir) -> std::path::PathBuf {
    let dir = tmp.join("data");
    let mut broker = BrokerProcess::start(&["--data-dir", &support::durable::path_arg(&dir)]);
    let sub = Endpoint::start();
    subscribe_qos1(broker.addr, "torn", sub.port);
    let sent = names("m", 20);
    for d in &sent {
        publish_qos1(broker.addr, "torn", d);
    }
    sub.wait_data(WAIT, &sent);
    publish_qos1(broker.addr, "torn", "last");
    broker.kill();
    dir
}

/// The last segment of `dir`, its bytes and its records.
fn last_segment(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>, Vec<Frame>) {
    let segments = support::durable::segments(dir);
    let last = segments
        .last()
        .unwrap_or_else(|| panic!("no NNNNNNNNNNNNNNNNNNNN.log segment in {}", dir.display()))
        .clone();
    let bytes = fs::read(&last).unwrap();
    let frames = support::durable::frames(&bytes);
    assert!(
        frames.len() >= 3,
        "only {} records in {}",
        frames.len(),
        last.display()
    );
    (last, bytes, frames)
}

/// Offsets into a record of `len` bytes to tear it at: every one if few,
/// else about 40 spread evenly, always with 0 (nothing to cut), 1, 4, 8
/// and len - 1.
fn tear_offsets(len: usize) -> Vec<usize> {
    let mut offsets: Vec<usize> = if len <= 41 {
        (0..len).collect()
    } else {
        (0..40).map(|i| i * (len - 1) / 39).collect()
    };
    offsets.extend([0, 1, 4, 8, len - 1].into_iter().filter(|&o| o < len));
    offsets.sort_unstable();
    offsets.dedup();
    offsets
}

/// How many bytes from `start` the broker cuts: up to the last byte that
/// is not zero.
fn cut_len(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1)
}

/// The log line of a cut, if any.
fn cut_line(log: &[String]) -> Option<String> {
    log.iter().find(|l| l.contains(" cut ")).cloned()
}

/// One torn copy: starts, cuts exactly the torn bytes (or nothing at a
/// record boundary), serves, and a retained qos 1 message written after
/// the cut survives the next restart (so the cut was made in the file, not
/// just skipped over).
fn check_torn_copy(copy: &std::path::Path, record_start: usize, torn: usize) {
    let dir = support::durable::path_arg(copy);
    let mut broker = BrokerProcess::start(&["--data-dir", &dir]);
    broker.wait_for_log("log: recovered");
    let log = broker.log();
    if torn == 0 {
        assert!(
            cut_line(&log).is_none(),
            "cut at a record boundary: {log:?}"
        );
    } else {
        let line = cut_line(&log).unwrap_or_else(|| panic!("torn {torn}: no cut in {log:?}"));
        let said = format!("cut {torn} bytes at offset {record_start}");
        assert!(
            line.contains(&said),
            "torn {torn}: {line:?} does not say {said:?}"
        );
    }
    assert_eq!(
        metric_value(broker.addr, "broker_log_cut_bytes_total"),
        Some(torn as u64),
        "broker_log_cut_bytes_total"
    );
    assert_serves(broker.addr, "torn");
    let resp = post_with(
        broker.addr,
        "/pub/kept",
        &pub_body("after-cut", 1, true),
        &[],
    );
    assert_eq!(resp.status, 202, "retained publish: {}", resp.text());
    let id = message_id(&resp);
    broker.kill();

    let again = BrokerProcess::start(&["--data-dir", &dir]);
    let sub = Endpoint::start();
    subscribe_qos1(again.addr, "kept", sub.port);
    // The log's own session (on "torn") may have had this very port: its
    // messages may come too, so the one on "kept" is looked for.
    let kept = |msgs: &[Arrival]| -> Option<Arrival> {
        msgs.iter()
            .find(|a| a.topic().as_deref() == Some("kept"))
            .cloned()
    };
    let msgs = sub.wait_msgs(WAIT, "a message on kept", |m| kept(m).is_some());
    let msg = kept(&msgs).unwrap();
    assert_eq!(
        msg.data(),
        "after-cut",
        "torn {torn}: written after the cut, lost"
    );
    assert_eq!(msg.qos1_id(), id);
}

/// The log's last record torn at each offset (a crash in the middle of a
/// write), once at the end of the file and once followed by the zeros the
/// broker grows a segment with: the broker starts, says `cut` with the
/// bytes cut and where, counts them, and serves.
#[test]
fn torn_last_record_is_cut_at_every_offset_and_the_broker_serves() {
    let tmp = TempDir::new("torn");
    let dir = write_log(&tmp);
    let (segment, bytes, frames) = last_segment(&dir);
    let last = *frames.last().unwrap();
    let name = segment.file_name().unwrap().to_owned();
    let offsets = tear_offsets(last.len);
    println!("last record: {last:?}; tearing at {offsets:?}");
    // Four at a time: each is two broker starts.
    for batch in offsets.chunks(4) {
        thread::scope(|scope| {
            for &offset in batch {
                // What the broker cuts ends at the torn part's last byte
                // that is not zero: a zero rest is the segment's clean end.
                let torn = &bytes[..last.start + offset];
                let cut = cut_len(torn, last.start);
                let copy = tmp.join(&format!("cut-{offset}"));
                support::durable::copy_data_dir(&dir, &copy);
                fs::write(copy.join(&name), torn).unwrap();
                scope.spawn(move || check_torn_copy(&copy, last.start, cut));
                // The same tear followed by the zeros the broker grows a
                // segment with.
                let copy = tmp.join(&format!("cut-zeros-{offset}"));
                support::durable::copy_data_dir(&dir, &copy);
                let mut zeros = torn.to_vec();
                zeros.resize(bytes.len().max(last.end() + 4096), 0);
                fs::write(copy.join(&name), &zeros).unwrap();
                // Torn only where the record's own bytes were not zeros.
                let whole = zeros[last.start..last.end()] == bytes[last.start..last.end()];
                let cut = if whole { 0 } else { cut };
                scope.spawn(move || check_torn_copy(&copy, last.start, cut));
            }
        });
    }
}

/// One byte flipped in the payload of a record in the middle of the log:
/// the broker cuts from that record on (`crc mismatch`) and serves.
#[test]
fn corrupt_middle_record_is_cut_as_crc_mismatch_and_the_broker_serves() {
    let tmp = TempDir::new("flip");
    let dir = write_log(&tmp);
    let (segment, mut bytes, frames) = last_segment(&dir);
    let middle = frames[frames.len() / 2..]
        .iter()
        .find(|f| f.payload_len() > 0)
        .copied()
        .expect("a record with a payload");
    bytes[middle.start + Frame::HEADER + middle.payload_len() / 2] ^= 0x5a;
    fs::write(&segment, &bytes).unwrap();

    let broker = BrokerProcess::start(&["--data-dir", &support::durable::path_arg(&dir)]);
    broker.wait_for_log("log: recovered");
    let log = broker.log();
    let line = cut_line(&log).unwrap_or_else(|| panic!("no cut in {log:?}"));
    assert!(line.contains("crc mismatch"), "{line}");
    // From the bad record to the last byte that is not zero.
    let end = middle.start + cut_len(&bytes, middle.start);
    let said = format!(
        "cut {} bytes at offset {}",
        end - middle.start,
        middle.start
    );
    assert!(line.contains(&said), "{line:?} does not say {said:?}");
    assert_eq!(
        metric_value(broker.addr, "broker_log_cut_bytes_total"),
        Some((end - middle.start) as u64)
    );
    assert_serves(broker.addr, "torn");
}

// (d) ------------------------------------------------------------------------

/// Files limited to 64 KiB (RLIMIT_FSIZE): qos 1 publishes are answered
/// 507 once the log cannot grow, nothing answered 202 is lost, qos 0 goes
/// on, and the broker stays up.
#[test]
fn full_disk_answers_507_loses_nothing_acknowledged_and_qos0_goes_on() {
    const FSIZE: u64 = 64 * 1024;
    let tmp = TempDir::new("full");
    let dir = tmp.arg("data");
    let mut broker =
        LimitedBroker::start(FSIZE, &["--data-dir", &dir, "--segment-bytes", "1048576"]);
    let durable_sub = Endpoint::start();
    subscribe_qos1(broker.addr, "full", durable_sub.port);
    let light = RawSubscriber::start();
    subscribe_qos(broker.addr, "light", light.port, 0);

    let big = "x".repeat(1000);
    let mut acknowledged = Vec::new();
    let mut refused = None;
    // 1,000 KB is far past the limit: a 507 must come before.
    for i in 0..1000 {
        let d = format!("q{i}-{big}");
        let resp = post_with(broker.addr, "/pub/full", &pub_body(&d, 1, false), &[]);
        match resp.status {
            202 => acknowledged.push((d, message_id(&resp))),
            507 => {
                refused = Some(resp);
                break;
            }
            other => {
                broker.assert_alive();
                panic!("publish {i}: {other} {}", resp.text());
            }
        }
    }
    broker.assert_alive();
    let refused = refused.expect("no 507 within 1,000 publishes of 1 KB past a 64 KiB limit");
    assert!(!refused.text().is_empty(), "507 without a reason");
    assert!(
        refused
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{refused:?}"
    );
    assert!(!acknowledged.is_empty(), "507 from the first publish on");
    println!(
        "{} qos 1 publishes of 1 KB stored, then 507: {}",
        acknowledged.len(),
        refused.text()
    );

    // qos 0 does not touch the log.
    for i in 0..5 {
        support::publish(broker.addr, "light", &format!("light-{i}"));
    }
    assert_eq!(light.recv_data(5), names("light", 5));

    let owed: Vec<String> = acknowledged.iter().map(|(d, _)| d.clone()).collect();
    let msgs = durable_sub.wait_data(WAIT, &owed);
    check_ids(&msgs);
    for (d, id) in &acknowledged {
        let got = msgs.iter().find(|a| a.data() == d.as_str()).unwrap();
        assert_eq!(got.qos1_id(), *id);
    }
    assert_eq!(first_data(&msgs)[..owed.len()], owed[..], "out of order");
    broker.assert_alive();
    assert_eq!(get(broker.addr, "/healthz").status, 200);
    assert!(
        metric_value(broker.addr, "broker_log_write_errors_total").is_some_and(|n| n >= 1),
        "broker_log_write_errors_total"
    );
}

// (e) ------------------------------------------------------------------------

fn publish_keyed(addr: SocketAddr, topic: &str, data: &str, key: &str) -> support::Resp {
    post_with(
        addr,
        &format!("/pub/{topic}"),
        &pub_body(data, 1, false),
        &[("Idempotency-Key", key)],
    )
}

/// The same `Idempotency-Key` twice on a topic: one message, one id; on
/// another topic the key makes a new message.
#[test]
fn idempotency_key_publishes_once_per_topic() {
    let broker = BrokerProcess::start(&[]);
    let sub = Endpoint::start();
    subscribe_qos1(broker.addr, "idem", sub.port);
    let other = Endpoint::start();
    subscribe_qos1(broker.addr, "other", other.port);

    let first = publish_keyed(broker.addr, "idem", "once", "key-1");
    assert_eq!(first.status, 202, "{}", first.text());
    let again = publish_keyed(broker.addr, "idem", "once", "key-1");
    assert_eq!(again.status, 202, "{}", again.text());
    assert_eq!(
        message_id(&again),
        message_id(&first),
        "a retry got a new id"
    );
    let elsewhere = publish_keyed(broker.addr, "other", "elsewhere", "key-1");
    assert_eq!(elsewhere.status, 202);
    assert_ne!(message_id(&elsewhere), message_id(&first));
    publish_qos1(broker.addr, "idem", "marker");

    let msgs = sub.wait_data(WAIT, &["marker".to_owned()]);
    let got: Vec<&str> = msgs.iter().map(Arrival::data).collect();
    assert_eq!(got, ["once", "marker"], "the retry was delivered");
    assert_eq!(msgs[0].qos1_id(), message_id(&first));
    let msgs = other.wait_data(WAIT, &["elsewhere".to_owned()]);
    assert_eq!(msgs[0].qos1_id(), message_id(&elsewhere));
    assert_eq!(
        metric_value(broker.addr, "broker_publish_duplicates_total"),
        Some(1)
    );
}

/// The key is in the log with its message: a retry after a kill -9 and a
/// restart on the same directory gets the first id and stores nothing.
#[test]
fn idempotency_key_holds_across_a_crash() {
    let tmp = TempDir::new("idem");
    let dir = tmp.arg("data");
    let mut broker = BrokerProcess::start(&["--data-dir", &dir]);
    let first = publish_keyed(broker.addr, "idem", "once", "key-crash");
    assert_eq!(first.status, 202, "{}", first.text());
    broker.kill();

    let broker = BrokerProcess::start(&["--data-dir", &dir]);
    let sub = Endpoint::start();
    subscribe_qos1(broker.addr, "idem", sub.port);
    let again = publish_keyed(broker.addr, "idem", "once", "key-crash");
    assert_eq!(again.status, 202, "{}", again.text());
    assert_eq!(
        message_id(&again),
        message_id(&first),
        "the retry got a new id"
    );
    let marker = publish_qos1(broker.addr, "idem", "marker");
    assert!(marker > message_id(&first), "ids reused after the restart");
    let msgs = sub.wait_count(WAIT, 1);
    assert_eq!(
        msgs[0].data(),
        "marker",
        "the retry was stored and delivered"
    );
    assert_eq!(
        metric_value(broker.addr, "broker_publish_duplicates_total"),
        Some(1)
    );
}

// (f) ------------------------------------------------------------------------

/// A retained message goes first to each new subscription with its
/// original id, not again to a resumed session; `"data":""` clears it.
#[test]
fn retained_message_goes_first_to_new_subscriptions_until_cleared() {
    let broker = BrokerProcess::start(&[]);
    let resp = post_with(broker.addr, "/pub/ret", &pub_body("kept", 1, true), &[]);
    assert_eq!(resp.status, 202, "{}", resp.text());
    let kept = message_id(&resp);
    assert_eq!(
        metric_value(broker.addr, "broker_retained_messages"),
        Some(1)
    );

    let a = Endpoint::start();
    subscribe_qos1(broker.addr, "ret", a.port);
    publish_qos1(broker.addr, "ret", "after");
    let msgs = a.wait_count(WAIT, 2);
    assert_eq!(msgs[0].data(), "kept");
    assert_eq!(msgs[0].qos1_id(), kept, "retained with another id");
    assert_eq!(msgs[1].data(), "after");

    // Subscribing again resumes the session: no second copy.
    subscribe_qos1(broker.addr, "ret", a.port);
    publish_qos1(broker.addr, "ret", "after-resume");
    let msgs = a.wait_data(WAIT, &["after-resume".to_owned()]);
    let copies = msgs.iter().filter(|m| m.data() == "kept").count();
    assert_eq!(copies, 1, "the retained message came again on a resume");

    let clear = post_with(broker.addr, "/pub/ret", &pub_body("", 1, true), &[]);
    assert_eq!(clear.status, 202, "{}", clear.text());
    assert_eq!(
        metric_value(broker.addr, "broker_retained_messages"),
        Some(0)
    );
    let b = Endpoint::start();
    subscribe_qos1(broker.addr, "ret", b.port);
    publish_qos1(broker.addr, "ret", "marker");
    let msgs = b.wait_count(WAIT, 1);
    assert_eq!(
        msgs[0].data(),
        "marker",
        "a cleared retained message was sent"
    );
}

/// Retained messages are in the log: after a kill -9 a new subscriber gets
/// them (a qos 1 one with its id; a qos 0 one too, stored like qos 1), and
/// a clear survives a restart as well.
#[test]
fn retained_message_and_its_clearing_survive_a_restart() {
    let tmp = TempDir::new("retained");
    let dir = tmp.arg("data");
    let mut broker = BrokerProcess::start(&["--data-dir", &dir]);
    let resp = post_with(broker.addr, "/pub/ret1", &pub_body("kept1", 1, true), &[]);
    assert_eq!(resp.status, 202, "{}", resp.text());
    let kept = message_id(&resp);
    let resp = post_with(broker.addr, "/pub/ret0", &pub_body("kept0", 0, true), &[]);
    assert_eq!(resp.status, 202, "{}", resp.text());
    broker.kill();

    let mut broker = BrokerProcess::start(&["--data-dir", &dir]);
    let a = Endpoint::start();
    subscribe_qos1(broker.addr, "ret1", a.port);
    let msgs = a.wait_count(WAIT, 1);
    assert_eq!(msgs[0].data(), "kept1");
    assert_eq!(
        msgs[0].qos1_id(),
        kept,
        "retained with another id after the restart"
    );
    let b = Endpoint::start();
    subscribe_qos1(broker.addr, "ret0", b.port);
    assert_eq!(b.wait_count(WAIT, 1)[0].data(), "kept0");

    let clear = post_with(broker.addr, "/pub/ret1", &pub_body("", 1, true), &[]);
    assert_eq!(clear.status, 202, "{}", clear.text());
    broker.kill();

    let broker = BrokerProcess::start(&["--data-dir", &dir]);
    let c = Endpoint::start();
    subscribe_qos1(broker.addr, "ret1", c.port);
    publish_qos1(broker.addr, "ret1", "marker");
    let msgs = c.wait_count(WAIT, 1);
    assert_eq!(
        msgs[0].data(),
        "marker",
        "the clear was lost in the restart"
    );
}

// (g), (h) ---------------------------------------------------------------------

/// A qos 1 endpoint that refuses connections is dropped after
/// `--session-expiry`, and counted.
#[test]
fn unreachable_qos1_endpoint_expires_after_the_session_expiry() {
    let broker = BrokerProcess::start(&["--session-expiry", "1s"]);
    let port = support::durable::refused_port();
    let subscribed = Instant::now();
    subscribe_qos1(broker.addr, "gone", port);
    assert_eq!(metric_value(broker.addr, "broker_sessions"), Some(1));
    publish_qos1(broker.addr, "gone", "never-delivered");
    wait_metric(
        broker.addr,
        r#"broker_sessions_expired_total{reason="expiry"}"#,
        1,
        WAIT,
    );
    assert!(
        subscribed.elapsed() >= Duration::from_millis(900),
        "expired after {:?}, before the 1 s expiry",
        subscribed.elapsed()
    );
    wait_metric(broker.addr, "broker_sessions", 0, WAIT);
    assert_eq!(
        metric_value(
            broker.addr,
            r#"broker_sessions_expired_total{reason="backlog"}"#
        ),
        Some(0)
    );
}

/// A qos 1 endpoint whose unanswered backlog passes `--backlog-bytes` is
/// dropped and counted; the publishes are all accepted.
#[test]
fn qos1_endpoint_past_the_backlog_limit_is_dropped() {
    let broker = BrokerProcess::start(&["--backlog-bytes", "2000"]);
    let port = support::durable::refused_port();
    subscribe_qos1(broker.addr, "heavy", port);
    let payload = "y".repeat(100);
    for i in 0..100 {
        publish_qos1(broker.addr, "heavy", &format!("{i:03}{payload}")[..100]);
    }
    wait_metric(
        broker.addr,
        r#"broker_sessions_expired_total{reason="backlog"}"#,
        1,
        WAIT,
    );
    wait_metric(broker.addr, "broker_sessions", 0, WAIT);
    assert_eq!(
        metric_value(
            broker.addr,
            r#"broker_sessions_expired_total{reason="expiry"}"#
        ),
        Some(0)
    );
}

// (i) ------------------------------------------------------------------------

/// One broker per data directory: a second one exits 1 saying so, and the
/// first goes on serving.
#[test]
fn second_broker_on_the_same_data_dir_exits_1() {
    let tmp = TempDir::new("lock");
    let dir = tmp.arg("data");
    let broker = BrokerProcess::start(&["--data-dir", &dir]);
    let (status, stderr) = support::durable::run_broker_to_exit(&["--data-dir", &dir], WAIT);
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    assert!(stderr.contains("in use by another broker"), "{stderr}");
    assert_serves(broker.addr, "locked");
}

/// A data directory that cannot be made (its path is a regular file):
/// exit 1, `cannot open data directory`.
#[test]
fn unusable_data_dir_exits_1() {
    let tmp = TempDir::new("nodir");
    let file = tmp.join("file");
    fs::write(&file, b"not a directory").unwrap();
    for dir in [file.clone(), file.join("below")] {
        let (status, stderr) = support::durable::run_broker_to_exit(
            &["--data-dir", &support::durable::path_arg(&dir)],
            WAIT,
        );
        assert_eq!(
            status.code(),
            Some(1),
            "{}: {status:?}: {stderr}",
            dir.display()
        );
        assert!(stderr.contains("cannot open data directory"), "{stderr}");
    }
}

// (j) ------------------------------------------------------------------------

/// Every publish answer carries a `Message-Id`, qos 0 too, growing, and
/// never reused by the next broker process, even without a data directory.
#[test]
fn message_ids_grow_and_are_not_reused_after_a_restart_without_a_data_dir() {
    let mut broker = BrokerProcess::start(&[]);
    // A plain qos 0 publish gets the Go broker's answer: no Message-Id.
    let plain = post_with(broker.addr, "/pub/ids", &pub_body("-", 0, false), &[]);
    assert_eq!(plain.status, 202);
    assert_eq!(plain.header("Message-Id"), None, "a plain qos 0 answer");
    // With a key, qos 0 is numbered from the same counter.
    let keyed = |data: &str, key: &str| {
        let body = pub_body(data, 0, false);
        message_id(&post_with(
            broker.addr,
            "/pub/ids",
            &body,
            &[("Idempotency-Key", key)],
        ))
    };
    let first = keyed("a", "k-a");
    let second = keyed("b", "k-b");
    assert!(second > first, "{first} then {second}");
    let third = publish_qos1(broker.addr, "ids", "c");
    assert!(third > second, "{second} then {third}");
    broker.kill();
    let broker = BrokerProcess::start(&[]);
    let fourth = publish_qos1(broker.addr, "ids", "d");
    assert!(
        fourth > third,
        "the restarted broker reused ids: {third} then {fourth}"
    );
}

/// qos other than 0 and 1, a retain that is not a bool and a bad
/// `Idempotency-Key` are 400s with a reason; a 128-byte key is fine.
#[test]
fn bad_qos_retain_and_idempotency_keys_are_400() {
    let broker = BrokerProcess::start(&[]);
    let bad_bodies = [
        r#"{"data":"x","qos":2}"#,
        r#"{"data":"x","qos":-1}"#,
        r#"{"data":"x","retain":"yes"}"#,
        r#"{"data":"x","retain":1}"#,
    ];
    for body in bad_bodies {
        let resp = post_with(broker.addr, "/pub/t", body, &[]);
        assert_eq!(resp.status, 400, "{body}: {}", resp.text());
        assert!(!resp.text().is_empty(), "{body}: 400 without a reason");
    }
    let long = "k".repeat(129);
    for key in ["", long.as_str(), "a b", "tab\tinside", "caf\u{e9}"] {
        let resp = publish_keyed(broker.addr, "t", "x", key);
        assert_eq!(resp.status, 400, "key {key:?}: {}", resp.text());
    }
    let resp = publish_keyed(broker.addr, "t", "x", &"k".repeat(128));
    assert_eq!(resp.status, 202, "a 128-byte key: {}", resp.text());
    let resp = publish_keyed(broker.addr, "t", "x", "!~visible~!");
    assert_eq!(resp.status, 202, "{}", resp.text());
    assert_eq!(get(broker.addr, "/healthz").status, 200);
}
