//! Streaming subscriptions (PROTOCOL.md section 6.3) against the real broker
//! binary, read from raw sockets: the framing byte for byte, keep-alives,
//! clean-up when the reader leaves, replay with `Last-Event-ID` (no gap, no
//! duplicate), a reset when the log no longer reaches back, retained
//! messages first, and a reader that stops reading.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::durable::{TempDir, message_id, post_with, pub_body, publish_qos1, wait_metric};
use support::streams::{StreamReader, body};
use support::{BrokerProcess, WAIT, get_status, metric, wait_until};

/// Publishes qos 0 data with a fresh `Idempotency-Key`, so that the answer
/// names the message's id.
fn publish_id(addr: std::net::SocketAddr, topic: &str, data: &str) -> u64 {
    static KEY: AtomicU64 = AtomicU64::new(0);
    let key = format!("k{}", KEY.fetch_add(1, Ordering::Relaxed));
    let resp = post_with(
        addr,
        &format!("/pub/{topic}"),
        &pub_body(data, 0, false),
        &[("Idempotency-Key", &key)],
    );
    assert_eq!(resp.status, 202, "{}", resp.text());
    message_id(&resp)
}

#[test]
fn sse_framing_is_byte_exact_with_keep_alives_after_the_interval() {
    let broker = BrokerProcess::start(&["--stream-keepalive", "300ms"]);
    let mut s = StreamReader::sse(broker.addr, "s/t", &[]);
    assert_eq!(s.header("cache-control"), Some("no-cache"));
    let id = publish_id(broker.addr, "s/t", "hello");
    let want = format!(
        "id: {id}\nevent: message\ndata: {}\n\n",
        body("s/t", "hello")
    );
    assert_eq!(String::from_utf8(s.raw(want.len())).unwrap(), want);
    let quiet_since = Instant::now();
    let keep_alive = ": keep-alive\n\n";
    assert_eq!(
        String::from_utf8(s.raw(keep_alive.len())).unwrap(),
        keep_alive
    );
    let waited = quiet_since.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "keep-alive after {waited:?}, before the interval"
    );
    // Escapes stay on one data line.
    let id = publish_id(broker.addr, "s/t", "a\\nb\\\"c");
    let e = s.message();
    assert_eq!(e.id, Some(id));
    assert_eq!(e.data, r#"{"data":"a\nb\"c","Topic":"s/t"}"#);
}

#[test]
fn ndjson_framing_is_byte_exact() {
    let broker = BrokerProcess::start(&["--stream-keepalive", "200ms"]);
    let mut s = StreamReader::ndjson(broker.addr, "n/%2B", &[]);
    let id = publish_id(broker.addr, "n/x", "one");
    let want = format!("{{\"id\":{id},\"data\":\"one\",\"Topic\":\"n/x\"}}\n");
    assert_eq!(s.line().unwrap(), want);
    assert_eq!(s.line().unwrap(), "\n", "an empty line is the keep-alive");
}

#[test]
fn a_reader_that_leaves_is_cleaned_up() {
    let broker = BrokerProcess::start(&["--stream-keepalive", "200ms"]);
    let a = StreamReader::sse(broker.addr, "gone/%23", &[]);
    let b = StreamReader::ndjson(broker.addr, "gone/x", &[]);
    wait_metric(broker.addr, "broker_streams", 2, WAIT);
    assert_eq!(metric(broker.addr, "broker_topics"), 2);
    a.close();
    b.close();
    wait_metric(broker.addr, "broker_streams", 0, WAIT);
    assert_eq!(metric(broker.addr, "broker_topics"), 0);
    assert_eq!(metric(broker.addr, "broker_streams_opened_total"), 2);
    // Publishing to where they were costs nothing and finds no one.
    publish_id(broker.addr, "gone/x", "after");
    assert_eq!(metric(broker.addr, "broker_queued_messages"), 0);
}

#[test]
fn last_event_id_replays_from_the_log_without_gap_or_duplicate() {
    let dir = TempDir::new("stream-replay");
    let broker = BrokerProcess::start(&["--data-dir", &dir.arg("data")]);
    let mut s = StreamReader::sse(broker.addr, "r/%2B", &[]);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(publish_qos1(
            broker.addr,
            &format!("r/{i}"),
            &format!("m{i}"),
        ));
    }
    for id in &ids[..3] {
        assert_eq!(s.message().id, Some(*id));
    }
    s.close();
    // Published while away, and one that does not match.
    for i in 5..8 {
        ids.push(publish_qos1(
            broker.addr,
            &format!("r/{i}"),
            &format!("m{i}"),
        ));
    }
    publish_qos1(broker.addr, "other/1", "x");
    let resume = ids[2].to_string();
    let mut s = StreamReader::sse(broker.addr, "r/%2B", &[("Last-Event-ID", &resume)]);
    let live = publish_qos1(broker.addr, "r/9", "live");
    ids.push(live);
    for (i, id) in ids[3..].iter().enumerate() {
        let e = s.message();
        assert_eq!(e.id, Some(*id), "event {i} after the resume");
    }
    // ?since= does the same, and the header wins over it.
    let since = format!("r/%2B?since={}", ids[0]);
    let mut q = StreamReader::sse(
        broker.addr,
        &since,
        &[("Last-Event-ID", &ids[6].to_string())],
    );
    assert_eq!(
        q.message().id,
        Some(ids[7]),
        "Last-Event-ID wins over since"
    );
    let mut q = StreamReader::ndjson(broker.addr, &since, &[]);
    assert!(
        q.line()
            .unwrap()
            .starts_with(&format!("{{\"id\":{},", ids[1]))
    );
}

#[test]
fn a_log_that_no_longer_reaches_back_says_reset() {
    let dir = TempDir::new("stream-reset");
    let broker = BrokerProcess::start(&[
        "--data-dir",
        &dir.arg("data"),
        "--segment-bytes",
        "4096",
        "--retention",
        "0s",
    ]);
    let first = publish_qos1(broker.addr, "z/1", "first");
    let filler = "x".repeat(900);
    for _ in 0..30 {
        publish_qos1(broker.addr, "z/2", &filler);
    }
    // The oldest segments go once no session needs them (checked each
    // second), the one after `first` among them.
    let gone = wait_until(WAIT, || {
        (support::durable::metric_value(broker.addr, "broker_log_segments")? <= 2).then_some(())
    });
    assert!(gone.is_some(), "old segments were not deleted");
    let mut s = StreamReader::sse(
        broker.addr,
        "z/%23",
        &[("Last-Event-ID", &first.to_string())],
    );
    let reset = s.event().unwrap();
    assert_eq!(reset.event.as_deref(), Some("reset"), "{reset:?}");
    let from: u64 = reset
        .data
        .strip_prefix("{\"from\":")
        .and_then(|d| d.strip_suffix('}'))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("reset data {:?}", reset.data));
    assert!(from > first);
    let e = s.message();
    assert_eq!(e.id, Some(from), "the replay begins at the reset's id");

    // Without a log nothing can be replayed: said the same way.
    let memory = BrokerProcess::start(&[]);
    let old = publish_id(memory.addr, "m/1", "old");
    publish_id(memory.addr, "m/1", "newer");
    let mut s = StreamReader::ndjson(memory.addr, "m/1", &[("Last-Event-ID", &old.to_string())]);
    let line = s.line().unwrap();
    assert!(line.starts_with("{\"reset\":true,\"from\":"), "{line:?}");
}

#[test]
fn retained_messages_come_first_in_id_order() {
    let broker = BrokerProcess::start(&[]);
    let mut ids = Vec::new();
    for (topic, data) in [("k/2", "two"), ("k/1", "one"), ("j/1", "other")] {
        let resp = post_with(
            broker.addr,
            &format!("/pub/{topic}"),
            &pub_body(data, 0, true),
            &[],
        );
        assert_eq!(resp.status, 202);
        ids.push(message_id(&resp));
    }
    let mut s = StreamReader::sse(broker.addr, "k/%2B", &[]);
    let live = publish_id(broker.addr, "k/3", "live");
    let got: Vec<_> = (0..3).map(|_| s.message()).collect();
    assert_eq!(got[0].id, Some(ids[0]));
    assert_eq!(got[0].data, body("k/2", "two"));
    assert_eq!(got[1].id, Some(ids[1]));
    assert_eq!(got[2].id, Some(live));
}

#[test]
fn a_reader_that_stops_reading_gets_overflow_and_publishers_go_on() {
    let broker = BrokerProcess::start(&[
        "--queue-messages",
        "8",
        "--queue-bytes",
        "1000000",
        "--delivery-timeout",
        "10s",
    ]);
    let mut s = StreamReader::sse(broker.addr, "o/1", &[]);
    // The reader reads nothing: once the kernel's buffers are full (tens of
    // megabytes on loopback), its queue fills and the stream overflows.
    let data = "y".repeat(100_000);
    let dropped = "broker_messages_dropped_total{reason=\"stream_overflow\"}";
    let started = Instant::now();
    let mut published = Vec::new();
    while metric(broker.addr, dropped) == 0 {
        assert!(published.len() < 3000, "no overflow after 300 MB");
        for _ in 0..20 {
            published.push(publish_id(broker.addr, "o/1", &data));
        }
    }
    let took = started.elapsed();
    // What waits for the reader is bounded by the queue limits, whatever
    // was published: at most 8 events of 100 kB here.
    assert!(metric(broker.addr, "broker_queued_bytes") <= 1_000_000);
    let status = std::fs::read_to_string(format!("/proc/{}/status", broker.pid())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        rss_kib < 64 * 1024,
        "broker RSS {rss_kib} KiB after {} MB published",
        published.len() / 10
    );
    // The reader now reads: what was queued, then the overflow, then the end.
    let mut last = None;
    let overflow = loop {
        let e = s.event().expect("events, then overflow");
        match e.event.as_deref() {
            Some("message") => last = e.id,
            Some("overflow") => break e,
            _ => {}
        }
    };
    let next: u64 = overflow
        .data
        .strip_prefix("{\"next\":")
        .and_then(|d| d.strip_suffix('}'))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("overflow data {:?}", overflow.data));
    assert!(published.contains(&next));
    assert!(
        last.is_none_or(|l| next > l),
        "next {next} after the last read {last:?}"
    );
    assert!(s.closes_within(WAIT), "the stream ends after overflow");
    wait_metric(broker.addr, "broker_streams", 0, WAIT);
    assert_eq!(metric(broker.addr, "broker_streams_overflowed_total"), 1);
    eprintln!(
        "{} publishes of 100 kB with a stalled stream took {took:?}",
        published.len()
    );
}

#[test]
fn bad_stream_requests_get_their_status() {
    let broker = BrokerProcess::start(&[]);
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);
    let cases: &[Case] = &[
        ("/sub/a/%23/b", &[], 400),
        ("/sub/a%2B", &[], 400),
        ("/sub/", &[], 400),
        ("/sub/%zz", &[], 400),
        ("/sub/t", &[("Accept", "image/png")], 406),
        ("/sub/t", &[("Last-Event-ID", "x7")], 400),
        ("/sub/t?since=-1", &[], 400),
        (
            "/sub/t",
            &[("Last-Event-ID", "99999999999999999999999")],
            400,
        ),
    ];
    for (path, headers, want) in cases {
        let s = StreamReader::open(broker.addr, path, headers);
        assert_eq!(s.status, *want, "GET {path} {headers:?}");
    }
    // Accept */* (curl's default) gets SSE.
    let s = StreamReader::open(broker.addr, "/sub/t", &[("Accept", "*/*")]);
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    assert_eq!(get_status(broker.addr, "/sub/t", "PUT"), 405);
}

#[test]
fn a_stream_is_never_evicted_to_make_room() {
    let broker = BrokerProcess::start(&["--max-connections", "2"]);
    let mut s = StreamReader::sse(broker.addr, "e/1", &[]);
    wait_metric(broker.addr, "broker_streams", 1, WAIT);
    // Fill the second place with an idle keep-alive connection, then ask
    // for a third: the idle one goes, the stream stays.
    // (The place of the connection that read the metrics is free once the
    // broker has seen it close: until then this one may get a 503.)
    let mut idle = wait_until(WAIT, || {
        let mut c = support::connect(broker.addr);
        std::io::Write::write_all(&mut c, b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n").unwrap();
        let mut c = std::io::BufReader::new(c);
        (support::read_resp(&mut c)?.status == 200).then_some(c)
    })
    .expect("a place next to the stream");
    let id = publish_id(broker.addr, "e/1", "still here");
    assert_eq!(s.message().id, Some(id));
    assert!(
        support::closed_by_peer(&mut idle),
        "the idle connection made room"
    );
}

#[test]
fn what_a_reader_sends_is_ignored_and_its_close_still_ends_the_stream() {
    let broker = BrokerProcess::start(&["--stream-keepalive", "30s"]);
    let mut s = StreamReader::sse(broker.addr, "g/1", &[]);
    // Garbage, a pipelined request: neither is read as a request.
    let mut junk = b"\x00\xffGET /metrics HTTP/1.1\r\n\r\n".to_vec();
    junk.extend(std::iter::repeat_n(b'x', 30 * 1024));
    std::io::Write::write_all(&mut s.socket(), &junk).unwrap();
    let id = publish_id(broker.addr, "g/1", "still streaming");
    assert_eq!(s.message().id, Some(id));
    wait_metric(broker.addr, "broker_streams", 1, WAIT);
    // Its close is noticed within a second or so, not at the next keep-alive.
    s.close();
    wait_metric(broker.addr, "broker_streams", 0, WAIT);
}

#[test]
fn a_reader_that_sends_without_end_loses_its_stream() {
    let broker = BrokerProcess::start(&["--stream-keepalive", "30s"]);
    let s = StreamReader::sse(broker.addr, "g/2", &[]);
    wait_metric(broker.addr, "broker_streams", 1, WAIT);
    let socket = s.socket().try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'z'; 64 * 1024];
        // Until the broker gives up on it (bounded: 64 MiB at most).
        for _ in 0..1024 {
            if std::io::Write::write_all(&mut &socket, &chunk).is_err() {
                return true;
            }
        }
        false
    });
    wait_metric(broker.addr, "broker_streams", 0, WAIT);
    s.close();
    assert!(writer.join().unwrap(), "the broker closed the stream");
}

#[test]
fn a_stream_is_not_held_back_by_the_publishers_next_request_still_arriving() {
    let broker = BrokerProcess::start(&["--request-timeout", "60s", "--stream-keepalive", "60s"]);
    let mut s = StreamReader::sse(broker.addr, "h/1", &[]);
    wait_metric(broker.addr, "broker_streams", 1, WAIT);
    let publisher = support::connect(broker.addr);
    let body = pub_body("first", 0, false);
    let first = format!(
        "POST /pub/h/1 HTTP/1.1\r\nHost: b\r\nIdempotency-Key: held-1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // The first publish whole, and the head of a second one in the same write.
    let second_head = "POST /pub/h/1 HTTP/1.1\r\nHost: b\r\nContent-Length: 100\r\n\r\n{\"da";
    std::io::Write::write_all(&mut &publisher, format!("{first}{second_head}").as_bytes()).unwrap();
    let mut answers = std::io::BufReader::new(publisher.try_clone().unwrap());
    let id = message_id(&support::read_resp(&mut answers).expect("the first answer"));
    // The stream gets it while the second request is still arriving.
    assert_eq!(s.message().id, Some(id));
    drop(publisher);
}

/// Review finding: a replay that cannot open every segment (out of file
/// descriptors here) must say `reset`, never skip messages silently.
#[test]
fn a_replay_short_of_descriptors_says_reset_rather_than_skip() {
    let dir = TempDir::new("stream-fds");
    let data = dir.arg("data");
    let mut command = std::process::Command::new("sh");
    command.args([
        "-c",
        "ulimit -n 48 && exec \"$0\" --bind 127.0.0.1 -p 0 --data-dir \"$1\" --segment-bytes 4096",
        env!("CARGO_BIN_EXE_broker"),
        &data,
    ]);
    let broker = BrokerProcess::start_command(command);
    let payload = "x".repeat(3000);
    // About one segment file each: more files than descriptors.
    let ids: Vec<u64> = (0..80)
        .map(|_| publish_qos1(broker.addr, "fd/t", &payload))
        .collect();
    let after = ids[0].to_string();
    let mut s = StreamReader::ndjson(broker.addr, "fd/t", &[("Last-Event-ID", &after)]);
    let live = publish_qos1(broker.addr, "fd/t", "live");
    let (mut got, mut reset) = (Vec::new(), false);
    while got.last() != Some(&live) {
        let line = s.line().expect("events until the live one");
        if line.starts_with("{\"reset\":true") {
            reset = true;
        } else if let Some(rest) = line.strip_prefix("{\"id\":") {
            got.push(rest.split(',').next().unwrap().parse::<u64>().unwrap());
        }
    }
    let missing = ids[1..].iter().filter(|id| !got.contains(id)).count();
    assert!(
        missing == 0 || reset,
        "{missing} messages skipped without a reset"
    );
}

#[test]
fn streams_past_max_streams_get_503_and_leave_room_for_others() {
    let broker = BrokerProcess::start(&["--max-connections", "8", "--max-streams", "2"]);
    let a = StreamReader::sse(broker.addr, "m/1", &[]);
    let _b = StreamReader::sse(broker.addr, "m/2", &[]);
    wait_metric(broker.addr, "broker_streams", 2, WAIT);
    let refused = StreamReader::open(broker.addr, "/sub/m/3", &[("Accept", "text/event-stream")]);
    assert_eq!(refused.status, 503);
    // Ordinary requests still find a place.
    publish_id(broker.addr, "m/1", "x");
    a.close();
    wait_metric(broker.addr, "broker_streams", 1, WAIT);
    let _c = StreamReader::sse(broker.addr, "m/3", &[]);
}
