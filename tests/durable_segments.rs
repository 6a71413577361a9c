//! The log's segments end to end (PROTOCOL.md 6.4; `src/store/writer.rs`),
//! against the real broker binary with 4096-byte segments: the writer
//! starts a new segment once the active one passes `--segment-bytes`, with
//! the state (retained messages, idempotency keys, durable sessions) at its
//! head, and once a second deletes the closed segments that every session
//! has answered and that are older than `--retention`.
//!
//! - rotation and deletion: a subscriber that answers everything leaves one
//!   or two segments, and the gauges agree with the files on disk;
//! - a session that is behind keeps every segment it is owed, until it
//!   comes back and answers;
//! - the snapshot at a segment's head carries the session, the retained
//!   message and the idempotency key across a SIGKILL once the segment that
//!   held them is deleted;
//! - `--retention` keeps segments nobody needs.

mod support;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::durable::{
    Arrival, Endpoint, Frame, TempDir, check_ids, crc32c, first_arrivals, message_id, metric_value,
    post_with, pub_body, publish_qos1, segments, subscribe_qos1,
};
use support::{BrokerProcess, WAIT, wait_until};

/// The smallest segment the broker allows.
const SEGMENT_BYTES: usize = 4096;
/// Messages per test: about ten segments' worth at [`DATA_LEN`] bytes.
const MESSAGES: usize = 300;
/// The length of each message's data.
const DATA_LEN: usize = 100;
/// How long a test watches the log to see that nothing is deleted: past
/// two of the writer's once-a-second sweeps.
const HOLD: Duration = Duration::from_millis(2500);

/// A broker on a data directory with 4096-byte segments and `retention`.
fn start(dir: &str, retention: &str) -> BrokerProcess {
    let segment_bytes = SEGMENT_BYTES.to_string();
    BrokerProcess::start(&[
        "--data-dir",
        dir,
        "--segment-bytes",
        &segment_bytes,
        "--retention",
        retention,
    ])
}

/// `n` distinct data strings of [`DATA_LEN`] bytes, in publish order.
fn payloads(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut d = format!("{prefix}-{i:04}-");
            d.extend(std::iter::repeat_n('x', DATA_LEN.saturating_sub(d.len())));
            d
        })
        .collect()
}

/// Publishes every one of `data` with qos 1, one after the other; their ids.
fn publish_all(addr: SocketAddr, topic: &str, data: &[String]) -> Vec<u64> {
    data.iter().map(|d| publish_qos1(addr, topic, d)).collect()
}

/// The `data` of each first arrival, in order.
fn first_data(msgs: &[Arrival]) -> Vec<String> {
    first_arrivals(msgs)
        .iter()
        .map(|a| a.data().to_owned())
        .collect()
}

/// Waits until every one of `data` reached `sub`; asserts the first
/// arrivals are exactly `data`, in order, each with one id.
fn assert_delivered_in_order(sub: &Endpoint, data: &[String]) {
    let msgs = sub.wait_data(WAIT, data);
    assert_eq!(first_data(&msgs), data, "lost or out of order");
    check_ids(&msgs);
}

/// A segment's number, from its name.
fn seq(path: &Path) -> u64 {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.strip_suffix(".log")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a segment: {}", path.display()))
}

/// The first segment a new data directory gets.
fn first_segment(dir: &Path) -> PathBuf {
    dir.join(format!("{:020}.log", 1))
}

/// The bytes of whole records at the start of a segment file (the rest must
/// be the zeros the broker grows the active segment with). `None` if the
/// file is gone or a record is cut short or fails its CRC: the writer may
/// be writing it, so the caller looks again.
fn record_bytes(path: &Path) -> Option<u64> {
    let bytes = fs::read(path).ok()?;
    let mut at = 0;
    while at + Frame::HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        if len == 0 && crc == 0 {
            break; // the zero-filled rest: no record has an empty payload
        }
        let end = at + Frame::HEADER + len;
        if end > bytes.len() || crc32c(&bytes[at + Frame::HEADER..end]) != crc {
            return None;
        }
        at = end;
    }
    bytes[at..].iter().all(|&b| b == 0).then_some(at as u64)
}

/// What the broker's gauges say of its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gauges {
    segments: u64,
    bytes: u64,
}

fn gauges(addr: SocketAddr) -> Gauges {
    Gauges {
        segments: metric_value(addr, "broker_log_segments").expect("broker_log_segments"),
        bytes: metric_value(addr, "broker_log_bytes").expect("broker_log_bytes"),
    }
}

/// Waits until the gauges satisfy `done` and agree with the files on disk:
/// `broker_log_segments` is the number of segment files and
/// `broker_log_bytes` the bytes of the records in them. The gauges are read
/// before and after the files, so a write or a sweep in between shows and
/// the test looks again. Returns the gauges and the files.
fn wait_log(
    addr: SocketAddr,
    dir: &Path,
    what: &str,
    done: impl Fn(Gauges) -> bool,
) -> (Gauges, Vec<PathBuf>) {
    let mut last = String::from("nothing read");
    let settled = wait_until(WAIT, || {
        let before = gauges(addr);
        if !done(before) {
            last = format!("gauges {before:?}");
            return None;
        }
        let files = segments(dir);
        let on_disk: Option<u64> = files.iter().map(|f| record_bytes(f)).sum();
        let after = gauges(addr);
        last = format!("gauges {before:?} then {after:?}; {files:?} holding {on_disk:?} bytes");
        let agree = before == after
            && files.len() as u64 == before.segments
            && on_disk == Some(before.bytes);
        agree.then_some((before, files))
    });
    settled.unwrap_or_else(|| panic!("{what}: not within {WAIT:?}; last seen: {last}"))
}

/// Watches the log for [`HOLD`] and panics if any of `kept` is deleted or
/// `broker_log_segments` falls below their number. A bounded wait on
/// purpose: what is tested is that nothing happens, through at least two
/// of the writer's sweeps, so the test has to watch for that long.
fn assert_kept(addr: SocketAddr, kept: &[PathBuf], why: &str) {
    let _: Option<()> = wait_until(HOLD, || {
        let segments = gauges(addr).segments;
        assert!(
            segments >= kept.len() as u64,
            "{why}: broker_log_segments fell to {segments}, below the {} segments kept",
            kept.len()
        );
        let gone: Vec<&PathBuf> = kept.iter().filter(|p| !p.exists()).collect();
        assert!(gone.is_empty(), "{why}: deleted {gone:?}");
        None
    });
}

/// Asserts `files` are segments 1..=n with none missing: none was deleted.
fn assert_none_deleted(files: &[PathBuf]) {
    let seqs: Vec<u64> = files.iter().map(|f| seq(f)).collect();
    let all: Vec<u64> = (1..=files.len() as u64).collect();
    assert_eq!(seqs, all, "segments missing");
}

// ---------------------------------------------------------------------------

/// About ten segments' worth of qos 1 messages to a subscriber that answers
/// them all: the log rotates (the newest segment's number shows how many
/// there were), the subscriber gets everything in order, and the sweeps
/// leave one or two segments, the gauges agreeing with the files.
#[test]
fn answered_segments_are_rotated_and_deleted() {
    let tmp = TempDir::new("rotate");
    let dir = tmp.join("data");
    let broker = start(&tmp.arg("data"), "0");
    let sub = Endpoint::start();
    subscribe_qos1(broker.addr, "rot", sub.port);

    let data = payloads("rot", MESSAGES);
    let ids = publish_all(broker.addr, "rot", &data);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids do not grow");
    // The data alone is 30,000 bytes: at least seven full segments.
    let newest = segments(&dir).last().map(|p| seq(p)).unwrap_or(0);
    let least = (MESSAGES * DATA_LEN / SEGMENT_BYTES) as u64;
    assert!(
        newest > least,
        "segment {newest} is the newest after {MESSAGES} messages of {DATA_LEN} bytes"
    );
    assert_delivered_in_order(&sub, &data);

    // The sweep runs every second; the subscriber answered everything.
    let (log, files) = wait_log(broker.addr, &dir, "answered segments deleted", |g| {
        g.segments <= 2
    });
    println!("{newest} segments written, {files:?} left, {log:?}");
    assert!(log.bytes > 0, "broker_log_bytes {log:?}");
    assert!(
        !first_segment(&dir).exists(),
        "segment 1 is still there: {files:?}"
    );
    assert!(
        files.iter().all(|f| seq(f) >= newest),
        "an old segment is left: {files:?} (newest at the end of the publishing: {newest})"
    );
}

/// A qos 1 subscriber that is down while about ten segments' worth is
/// published holds every one of them through several sweeps; when it comes
/// back on the same port it gets all of them in order, and then the
/// segments go.
#[test]
fn a_session_that_is_behind_keeps_its_segments() {
    let tmp = TempDir::new("behind");
    let dir = tmp.join("data");
    let broker = start(&tmp.arg("data"), "0");
    let mut sub = Endpoint::start();
    subscribe_qos1(broker.addr, "behind", sub.port);
    sub.down();

    let data = payloads("behind", MESSAGES);
    publish_all(broker.addr, "behind", &data);
    let (log, files) = wait_log(broker.addr, &dir, "the log after publishing", |_| true);
    println!(
        "{} segments while the subscriber is down: {log:?}",
        files.len()
    );
    assert!(
        files.len() > MESSAGES * DATA_LEN / SEGMENT_BYTES,
        "only {} segments for {MESSAGES} messages of {DATA_LEN} bytes",
        files.len()
    );
    // Each holds messages the session has not answered (from segment 1 on).
    assert_none_deleted(&files);
    assert_kept(broker.addr, &files, "a session is behind");

    sub.up();
    // A heartbeat from the subscriber cuts the broker's backoff short
    // (PROTOCOL.md 6.2); without it the next retry may be seconds away.
    let hb = post_with(
        broker.addr,
        "/hb",
        &format!(r#"{{"port":"{}"}}"#, sub.port),
        &[],
    );
    assert!((200..300).contains(&hb.status), "heartbeat: {hb:?}");
    assert_delivered_in_order(&sub, &data);

    let (log, left) = wait_log(broker.addr, &dir, "segments deleted once answered", |g| {
        g.segments <= 2
    });
    println!("{left:?} left once answered: {log:?}");
    assert!(!first_segment(&dir).exists(), "segment 1 is still there");
}

/// The state at the head of a segment outlives the segment its records
/// were in: a durable session, a retained message and an idempotency key
/// written to segment 1, which is then deleted, are all there after a
/// SIGKILL and a restart on the same directory.
#[test]
fn snapshot_carries_session_retained_and_key_across_deleted_segments_and_a_crash() {
    let tmp = TempDir::new("snapshot");
    let dir = tmp.join("data");
    let dir_arg = tmp.arg("data");
    let mut broker = start(&dir_arg, "0");
    let sub = Endpoint::start();
    subscribe_qos1(broker.addr, "a", sub.port);

    let resp = post_with(broker.addr, "/pub/r", &pub_body("kept-r", 1, true), &[]);
    assert_eq!(resp.status, 202, "retained publish: {}", resp.text());
    let retained_id = message_id(&resp);
    let keyed = |addr: SocketAddr| {
        post_with(
            addr,
            "/pub/a",
            &pub_body("keyed-a", 1, false),
            &[("Idempotency-Key", "k1")],
        )
    };
    let resp = keyed(broker.addr);
    assert_eq!(resp.status, 202, "keyed publish: {}", resp.text());
    let keyed_id = message_id(&resp);

    let data = payloads("a", MESSAGES / 2);
    publish_all(broker.addr, "a", &data);
    let mut all = vec!["keyed-a".to_owned()];
    all.extend(data.iter().cloned());
    assert_delivered_in_order(&sub, &all);
    // Segment 1 held the subscription, the retained message and the key;
    // it goes once the session has answered past it.
    let (log, files) = wait_log(broker.addr, &dir, "segment 1 deleted", |_| {
        !first_segment(&dir).exists()
    });
    println!("before the kill: {files:?}, {log:?}");
    assert!(
        seq(files.last().expect("a segment")) >= 4,
        "not several rotations: {files:?}"
    );
    broker.kill();
    let keyed_before = sub.msgs().iter().filter(|m| m.data() == "keyed-a").count();

    // A new broker port; the session is the subscriber's endpoint.
    let broker = start(&dir_arg, "0");
    let line = broker.wait_for_log("log: recovered");
    assert!(
        line.contains(" 1 sessions, 1 retained "),
        "the recovered state: {line}"
    );

    // (a) The session survived: no subscribe again.
    publish_qos1(broker.addr, "a", "after-restart");
    sub.wait_data(WAIT, &["after-restart".to_owned()]);

    // (b) A new subscription gets the retained message, with its id.
    let newcomer = Endpoint::start();
    subscribe_qos1(broker.addr, "r", newcomer.port);
    let got = newcomer.wait_count(WAIT, 1);
    assert_eq!(got[0].data(), "kept-r", "the retained message: {got:?}");
    assert_eq!(got[0].qos1_id(), retained_id, "retained with another id");

    // (c) The key is still in its window: the first id, nothing stored.
    let resp = keyed(broker.addr);
    assert_eq!(resp.status, 202, "keyed publish again: {}", resp.text());
    assert_eq!(message_id(&resp), keyed_id, "the retry got a new id");
    publish_qos1(broker.addr, "a", "marker");
    let msgs = sub.wait_data(WAIT, &["marker".to_owned()]);
    let keyed_after = msgs.iter().filter(|m| m.data() == "keyed-a").count();
    assert_eq!(
        keyed_after, keyed_before,
        "the keyed message was delivered again after the restart"
    );
    assert_eq!(
        metric_value(broker.addr, "broker_publish_duplicates_total"),
        Some(1)
    );
}

/// With no subscriber at all nobody needs any segment, but `--retention 1h`
/// keeps them: every one stays through several sweeps.
#[test]
fn retention_keeps_segments_nobody_needs() {
    let tmp = TempDir::new("retention");
    let dir = tmp.join("data");
    let broker = start(&tmp.arg("data"), "1h");

    let data = payloads("kept", MESSAGES);
    publish_all(broker.addr, "kept", &data);
    let (log, files) = wait_log(broker.addr, &dir, "the log after publishing", |_| true);
    println!("{} segments: {log:?}", files.len());
    assert!(files.len() > 5, "only {} segments: {files:?}", files.len());
    assert_none_deleted(&files);
    assert_kept(broker.addr, &files, "within the retention");
    let (_, still) = wait_log(broker.addr, &dir, "the log after the sweeps", |_| true);
    assert!(still.len() > 5, "{still:?}");
    assert_none_deleted(&still);
    // A closed segment is its records alone, not the zeros the active one
    // grows with: the files stay near --segment-bytes.
    for closed in &still[..still.len() - 1] {
        let len = fs::metadata(closed).unwrap().len();
        assert_eq!(Some(len), record_bytes(closed), "{}", closed.display());
        assert!(
            len < 2 * SEGMENT_BYTES as u64,
            "{}: {len} bytes",
            closed.display()
        );
    }
}
