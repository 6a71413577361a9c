//! Answers that arrive in odd splits, against the real broker binary: a
//! subscriber played by raw sockets answers a batch of deliveries one byte
//! at a time, all in one write, in 7-byte chunks that cut across answers, or
//! only half of it before closing. The broker must retire exactly the
//! deliveries answered: no loss, no duplicate, no reorder, no false drop,
//! and after a failure a qos 1 resend from the first unanswered one. With
//! two batches in flight (the next written before the last is answered),
//! the same holds across both.

mod support;

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};
use support::durable::{get, message_id, metric_value, pub_body, subscribe_qos, wait_metric};
use support::{BrokerProcess, Resp, WAIT, connect, read_resp, wait_until};

/// What the endpoint answers to each delivery (44 bytes: not a multiple of
/// 7, so 7-byte chunks end inside answers).
const ANSWER: &[u8] = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
/// How long the endpoint waits for more of a batch before answering what it
/// has. The broker writes a batch in one go, so the rest is already there;
/// a split batch would only make the answers come in two goes.
const POLL: Duration = Duration::from_millis(30);
/// Publishes sent ahead of their answers.
const WINDOW: usize = 64;

/// How the endpoint writes the answers to a batch it has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every answer of the batch in one write.
    AllAtOnce,
    /// The answers of the batch concatenated, written in chunks of this
    /// size (1: a byte per write, and with TCP_NODELAY per segment).
    Chunks(usize),
    /// On its first connection, the first batch of several deliveries gets
    /// answers for its first half only, then the connection is closed;
    /// anything else is answered all at once.
    HalfThenClose,
}

/// A delivery the endpoint read.
#[derive(Debug, Clone)]
struct Arrival {
    /// The connection, numbered from 0 in accept order.
    conn: usize,
    /// The batch (as the endpoint read it), numbered from 0 over all.
    batch: usize,
    data: String,
    /// The body's `id` and the `Message-Id` header (qos 1 deliveries).
    id: Option<u64>,
    header_id: Option<u64>,
    answered: bool,
}

struct Shared {
    mode: Mode,
    log: Mutex<Vec<Arrival>>,
    changed: Condvar,
    accepted: AtomicUsize,
    /// Held by the first batch until [`Endpoint::release`], so that what is
    /// published meanwhile queues up and goes out in full batches.
    gate: Mutex<Option<mpsc::Receiver<()>>>,
}

/// A subscriber endpoint on 127.0.0.1 played by the test.
struct Endpoint {
    port: u16,
    shared: Arc<Shared>,
    release: mpsc::Sender<()>,
}

impl Endpoint {
    fn start(mode: Mode) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (release, gate) = mpsc::channel();
        let shared = Arc::new(Shared {
            mode,
            log: Mutex::default(),
            changed: Condvar::new(),
            accepted: AtomicUsize::new(0),
            gate: Mutex::new(Some(gate)),
        });
        let accepting = shared.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let conn = accepting.accepted.fetch_add(1, Ordering::SeqCst);
                let shared = accepting.clone();
                thread::spawn(move || {
                    let _ = serve(conn, stream, &shared);
                });
            }
        });
        Endpoint {
            port,
            shared,
            release,
        }
    }

    /// Lets the first batch be answered.
    fn release(&self) {
        self.release.send(()).unwrap();
    }

    /// Waits until `done` holds for the log; returns the deliveries so far.
    fn wait(&self, what: &str, done: impl Fn(&[Arrival]) -> bool) -> Vec<Arrival> {
        let deadline = Instant::now() + WAIT;
        let mut log = self.shared.log.lock().unwrap();
        while !done(&log) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{what}: not within {WAIT:?}; {log:?}");
            log = self.shared.changed.wait_timeout(log, left).unwrap().0;
        }
        log.clone()
    }
}

/// Serves one connection from the broker until it ends.
fn serve(conn: usize, stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(WAIT))?;
    stream.set_write_timeout(Some(WAIT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(batch) = read_batch(&mut reader)? {
        let cut = shared.mode == Mode::HalfThenClose && conn == 0 && batch.len() > 1;
        let answered = if cut { batch.len() / 2 } else { batch.len() };
        {
            let mut log = shared.log.lock().unwrap();
            let number = log.last().map_or(0, |a| a.batch + 1);
            for (i, (header_id, body)) in batch.iter().enumerate() {
                let object = message_broker::json::parse_object(body.as_bytes()).expect("JSON");
                log.push(Arrival {
                    conn,
                    batch: number,
                    data: object.get_str("data").expect("data").to_owned(),
                    id: object.get("id").and_then(|v| v.as_u64()),
                    header_id: *header_id,
                    answered: i < answered,
                });
            }
        }
        shared.changed.notify_all();
        if let Some(gate) = shared.gate.lock().unwrap().take() {
            gate.recv_timeout(WAIT).expect("released by the test");
        }
        let answers = ANSWER.repeat(answered);
        match shared.mode {
            Mode::Chunks(size) => {
                for chunk in answers.chunks(size) {
                    writer.write_all(chunk)?;
                    writer.flush()?;
                }
            }
            Mode::AllAtOnce | Mode::HalfThenClose => writer.write_all(&answers)?,
        }
        if cut {
            return Ok(()); // closes, with the whole batch read: a FIN, not a reset
        }
    }
    Ok(())
}

/// One request (its `Message-Id` header and body); `None` at the end.
type Request = (Option<u64>, String);

/// Reads at least one request, then every further one that arrives within
/// [`POLL`] of the last; `None` once the broker closes the connection.
fn read_batch(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Vec<Request>>> {
    let mut batch = Vec::new();
    loop {
        let Some(request) = read_request(reader)? else {
            return Ok(None);
        };
        batch.push(request);
        if !reader.buffer().is_empty() {
            continue;
        }
        reader.get_ref().set_read_timeout(Some(POLL))?;
        let more = match reader.fill_buf() {
            Ok(bytes) => !bytes.is_empty(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) => return Err(e),
        };
        reader.get_ref().set_read_timeout(Some(WAIT))?;
        if !more {
            return Ok(Some(batch));
        }
    }
}

/// Reads one request with a Content-Length body; `None` at the end.
fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let (mut len, mut id) = (0, None);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    assert!(line.starts_with("POST /msg "), "a delivery: {line:?}");
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break; // the blank line
        };
        match name.to_ascii_lowercase().as_str() {
            "content-length" => len = value.trim().parse().expect("Content-Length"),
            "message-id" => id = Some(value.trim().parse().expect("Message-Id")),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Some((id, String::from_utf8(body).expect("UTF-8 body"))))
}

/// Publishes each of `data` to `topic` with `qos` on one keep-alive
/// connection, [`WINDOW`] requests ahead of the answers; each must be 202.
fn publish_pipelined(broker: SocketAddr, topic: &str, data: &[String], qos: u8) -> Vec<Resp> {
    let mut writer = connect(broker);
    let mut reader = BufReader::new(writer.try_clone().unwrap());
    let mut answers: Vec<Resp> = Vec::with_capacity(data.len());
    let mut sent = 0;
    while answers.len() < data.len() {
        while sent < data.len() && sent - answers.len() < WINDOW {
            let body = pub_body(&data[sent], qos, false);
            let request = format!(
                "POST /pub/{topic} HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            writer.write_all(request.as_bytes()).unwrap();
            sent += 1;
        }
        let resp = read_resp(&mut reader).expect("an answer to each publish");
        assert_eq!(
            resp.status,
            202,
            "publish {}: {}",
            answers.len(),
            resp.text()
        );
        answers.push(resp);
    }
    answers
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i:03}")).collect()
}

/// The `broker_subscribers_dropped_total` samples that are not 0, by reason.
fn drops(broker: SocketAddr) -> Vec<(String, u64)> {
    let page = get(broker, "/metrics").text();
    let prefix = "broker_subscribers_dropped_total{reason=\"";
    let samples: Vec<(String, u64)> = page
        .lines()
        .filter_map(|l| l.strip_prefix(prefix)?.split_once("\"} "))
        .map(|(reason, value)| (reason.to_owned(), value.parse().unwrap()))
        .collect();
    assert!(samples.len() >= 8, "drop reasons on the page:\n{page}");
    samples.into_iter().filter(|(_, v)| *v > 0).collect()
}

/// Waits until `broker_messages_delivered_total` is `n`; fails at once if
/// the endpoint is dropped meanwhile.
fn wait_delivered(broker: &BrokerProcess, n: u64) {
    let mut last = None;
    let reached = wait_until(WAIT, || {
        let dropped = drops(broker.addr);
        assert_eq!(dropped, [], "the endpoint was dropped: {:?}", broker.log());
        last = metric_value(broker.addr, "broker_messages_delivered_total");
        (last == Some(n)).then_some(())
    });
    assert!(
        reached.is_some(),
        "delivered {last:?}, not {n}, in {WAIT:?}"
    );
}

/// Publishes `n` qos 0 messages while the endpoint holds its first batch,
/// then lets it answer in `mode`: each must arrive once, in order, on the
/// one connection, be counted delivered, and the endpoint must stay. At
/// least one batch must have had several deliveries (all but the first
/// are full ones of the queued messages), or the test proves nothing.
fn answers_in_odd_splits_retire_everything(mode: Mode, n: usize) {
    let broker = BrokerProcess::start(&[]);
    let endpoint = Endpoint::start(mode);
    subscribe_qos(broker.addr, "odd", endpoint.port, 0);
    let data = names(0..n);
    publish_pipelined(broker.addr, "odd", &data, 0);
    endpoint.release();
    wait_delivered(&broker, n as u64);
    let msgs = endpoint.wait("every delivery", |m| m.len() >= n);
    let got: Vec<&str> = msgs.iter().map(|a| a.data.as_str()).collect();
    assert!(
        got == data,
        "{mode:?}: lost, repeated or reordered: {got:?}"
    );
    assert!(msgs.iter().all(|a| a.conn == 0), "{mode:?}: reconnected");
    assert_eq!(metric_value(broker.addr, "broker_subscribers"), Some(1));
    let batched = msgs.windows(2).any(|w| w[0].batch == w[1].batch);
    assert!(
        batched,
        "{mode:?}: no batch of several deliveries: {msgs:?}"
    );
}

/// (1) Answers written one byte per write and segment.
#[test]
fn answers_one_byte_at_a_time() {
    answers_in_odd_splits_retire_everything(Mode::Chunks(1), 200);
}

/// (2) The answers to a whole batch in one write.
#[test]
fn answers_to_a_whole_batch_at_once() {
    answers_in_odd_splits_retire_everything(Mode::AllAtOnce, 300);
}

/// (3) Answers concatenated and cut into 7-byte writes: most writes end
/// inside an answer, and some carry the end of one and the start of the next.
#[test]
fn answers_in_chunks_across_answer_boundaries() {
    answers_in_odd_splits_retire_everything(Mode::Chunks(7), 300);
}

/// Publishes `m000` alone and, while the endpoint holds it, `m001..m020`
/// (queued behind it, so sent as one batch of 20 once `m000` is answered);
/// then lets the endpoint answer 10 of those 20 and close. The publish
/// answers, once the endpoint has read the batch.
fn cut_a_batch_in_half(broker: SocketAddr, endpoint: &Endpoint, qos: u8) -> Vec<Resp> {
    let mut answers = publish_pipelined(broker, "half", &names(0..1), qos);
    endpoint.wait("the first delivery", |m| m.len() == 1);
    answers.extend(publish_pipelined(broker, "half", &names(1..21), qos));
    endpoint.release();
    let msgs = endpoint.wait("the batch of 20", |m| m.len() >= 21);
    let cut: Vec<&Arrival> = msgs.iter().filter(|a| a.batch == 1).collect();
    assert_eq!(cut.len(), 20, "the broker's second batch: {msgs:?}");
    assert!(cut.iter().all(|a| a.conn == 0), "{msgs:?}");
    answers
}

/// (4a) qos 1: after a connection that answered only the first half of a
/// batch, the broker resends from the first unanswered delivery, in order,
/// on a new connection: each message arrives at least once, no gap, and
/// only the unanswered ones twice.
#[test]
fn qos1_resends_from_the_first_unanswered_of_a_half_answered_batch() {
    let broker = BrokerProcess::start(&[]);
    let endpoint = Endpoint::start(Mode::HalfThenClose);
    subscribe_qos(broker.addr, "half", endpoint.port, 1);
    let mut answers = cut_a_batch_in_half(broker.addr, &endpoint, 1);
    // The session goes on after the resend.
    answers.extend(publish_pipelined(broker.addr, "half", &names(21..26), 1));
    let ids: Vec<u64> = answers.iter().map(message_id).collect();
    let data = names(0..26);
    wait_delivered(&broker, 26);
    let msgs = endpoint.wait("every message answered", |m| {
        m.iter().filter(|a| a.answered).count() >= 26
    });

    for a in &msgs {
        let i = data.iter().position(|d| *d == a.data).expect("published");
        assert_eq!((a.id, a.header_id), (Some(ids[i]), Some(ids[i])), "{a:?}");
    }
    let first_conn: Vec<&Arrival> = msgs.iter().filter(|a| a.conn == 0).collect();
    let answered = first_conn.iter().filter(|a| a.answered).count();
    assert_eq!(answered, 11, "m000 and half of the batch of 20");
    let first: Vec<&str> = first_conn.iter().map(|a| a.data.as_str()).collect();
    assert!(first == data[..21], "first connection: {first:?}");
    // Everything after the close: exactly from the first unanswered one on.
    let resent: Vec<&Arrival> = msgs.iter().filter(|a| a.conn > 0).collect();
    assert_eq!(
        resent.first().and_then(|a| a.id),
        Some(ids[answered]),
        "the first delivery after the close is the one after the last answered"
    );
    let later: Vec<&str> = resent.iter().map(|a| a.data.as_str()).collect();
    assert!(later == data[answered..], "after the close: {later:?}");
    assert!(resent.iter().all(|a| a.answered));
    let redelivered = metric_value(broker.addr, "broker_messages_redelivered_total");
    assert_eq!(redelivered, Some(10));
    assert_eq!(drops(broker.addr), [], "a qos 1 endpoint is kept");
}

/// (4b) qos 0: the same half-answered batch drops the endpoint, with the
/// answered deliveries counted delivered and only the unanswered lost.
#[test]
fn qos0_endpoint_closing_mid_batch_loses_only_the_unanswered() {
    let broker = BrokerProcess::start(&[]);
    let endpoint = Endpoint::start(Mode::HalfThenClose);
    subscribe_qos(broker.addr, "half", endpoint.port, 0);
    cut_a_batch_in_half(broker.addr, &endpoint, 0);
    let dropped = r#"broker_subscribers_dropped_total{reason="io"}"#;
    wait_metric(broker.addr, dropped, 1, WAIT);
    assert_eq!(drops(broker.addr), [("io".to_owned(), 1)]);
    let line = broker.wait_for_log(&format!("subscriber 127.0.0.1:{} dropped", endpoint.port));
    assert!(line.contains("(10 messages lost)"), "{line}");
    let sample = |name: &str| metric_value(broker.addr, name);
    assert_eq!(sample("broker_messages_delivered_total"), Some(11));
    let lost = r#"broker_messages_dropped_total{reason="subscriber_gone"}"#;
    assert_eq!(sample(lost), Some(10));
    assert_eq!(sample("broker_subscribers"), Some(0));
    let msgs = endpoint.wait("the deliveries", |m| m.len() >= 21);
    assert_eq!(msgs.len(), 21, "{msgs:?}");
    for (i, (a, data)) in msgs.iter().zip(names(0..21)).enumerate() {
        assert_eq!((a.data.as_str(), a.answered), (data.as_str(), i < 11));
    }
    let connections = endpoint.shared.accepted.load(Ordering::SeqCst);
    assert_eq!(connections, 1, "the broker came back to a dropped endpoint");
}

/// A subscriber endpoint that the test drives by hand: it reads deliveries
/// and answers them only when told to.
struct Manual {
    listener: TcpListener,
    port: u16,
}

impl Manual {
    fn start() -> Manual {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        Manual { listener, port }
    }

    /// The broker's next connection, within [`WAIT`].
    fn accept(&self) -> BufReader<TcpStream> {
        let stream = wait_until(WAIT, || match self.listener.accept() {
            Ok((stream, _)) => Some(stream),
            Err(e) if e.kind() == ErrorKind::WouldBlock => None,
            Err(e) => panic!("accept: {e}"),
        })
        .expect("the broker connects");
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        BufReader::new(stream)
    }
}

/// Reads `n` deliveries; their data and `Message-Id`s.
fn read_deliveries(reader: &mut BufReader<TcpStream>, n: usize) -> Vec<(String, Option<u64>)> {
    (0..n)
        .map(|i| {
            let (id, body) = read_request(reader)
                .unwrap_or_else(|e| panic!("delivery {i} of {n}: {e}"))
                .unwrap_or_else(|| panic!("delivery {i} of {n}: the broker closed"));
            let object = message_broker::json::parse_object(body.as_bytes()).expect("JSON");
            (object.get_str("data").expect("data").to_owned(), id)
        })
        .collect()
}

fn answer(reader: &mut BufReader<TcpStream>, n: usize) {
    reader.get_mut().write_all(&ANSWER.repeat(n)).unwrap();
}

/// `m000` goes out alone and its answer is held back while `m001..m100`
/// queue behind it; once it is answered, the broker takes a full batch
/// (`m001..m064`), writes it, and writes the rest (`m065..m100`) before any
/// answer to that batch: the endpoint reads all 100 without answering one.
/// Returns the endpoint's connection with those 100 read, unanswered.
fn two_batches_in_flight(broker: SocketAddr, endpoint: &Manual, qos: u8) -> BufReader<TcpStream> {
    publish_pipelined(broker, "ahead", &names(0..1), qos);
    let mut conn = endpoint.accept();
    assert_eq!(read_deliveries(&mut conn, 1)[0].0, "m000");
    publish_pipelined(broker, "ahead", &names(1..101), qos);
    answer(&mut conn, 1);
    let next = read_deliveries(&mut conn, 100);
    let data: Vec<&str> = next.iter().map(|(d, _)| d.as_str()).collect();
    assert!(data == names(1..101), "both batches, in order: {data:?}");
    conn
}

/// (5) The window: the next batch goes out before the answers to the one
/// before, and answers to both in one write retire all of them, once.
#[test]
fn the_next_batch_goes_out_before_the_last_is_answered() {
    let broker = BrokerProcess::start(&[]);
    let endpoint = Manual::start();
    subscribe_qos(broker.addr, "ahead", endpoint.port, 0);
    let mut conn = two_batches_in_flight(broker.addr, &endpoint, 0);
    answer(&mut conn, 100);
    wait_delivered(&broker, 101);
    assert_eq!(metric_value(broker.addr, "broker_subscribers"), Some(1));
    // Nothing is sent twice: the next delivery is the next message.
    publish_pipelined(broker.addr, "ahead", &names(101..102), 0);
    assert_eq!(read_deliveries(&mut conn, 1)[0].0, "m101");
}

/// (6a) qos 1, a subscriber that closes with two batches in flight and ten
/// of them answered: the broker resends, on its next connection, every
/// unanswered delivery of both batches from the first one on, in order,
/// with their ids.
#[test]
fn qos1_closing_with_two_batches_in_flight_gets_both_again() {
    let broker = BrokerProcess::start(&[]);
    let endpoint = Manual::start();
    subscribe_qos(broker.addr, "ahead", endpoint.port, 1);
    let mut conn = two_batches_in_flight(broker.addr, &endpoint, 1);
    answer(&mut conn, 10);
    drop(conn);
    let mut again = endpoint.accept();
    let resent = read_deliveries(&mut again, 90);
    let data: Vec<&str> = resent.iter().map(|(d, _)| d.as_str()).collect();
    assert!(data == names(11..101), "resent from m011 on: {data:?}");
    assert!(resent.iter().all(|(_, id)| id.is_some()), "{resent:?}");
    assert!(resent.windows(2).all(|w| w[0].1 < w[1].1), "ids in order");
    answer(&mut again, 90);
    wait_delivered(&broker, 101);
    let redelivered = metric_value(broker.addr, "broker_messages_redelivered_total");
    assert_eq!(redelivered, Some(90));
}

/// (6b) qos 0, the same: the endpoint is dropped, the eleven answered count
/// as delivered and the 90 unanswered of both batches as lost.
#[test]
fn qos0_closing_with_two_batches_in_flight_loses_only_the_unanswered() {
    let broker = BrokerProcess::start(&[]);
    let endpoint = Manual::start();
    subscribe_qos(broker.addr, "ahead", endpoint.port, 0);
    let mut conn = two_batches_in_flight(broker.addr, &endpoint, 0);
    answer(&mut conn, 10);
    drop(conn);
    let line = broker.wait_for_log(&format!("subscriber 127.0.0.1:{} dropped", endpoint.port));
    assert!(line.contains("(90 messages lost)"), "{line}");
    let lost = r#"broker_messages_dropped_total{reason="subscriber_gone"}"#;
    assert_eq!(metric_value(broker.addr, lost), Some(90));
    let delivered = metric_value(broker.addr, "broker_messages_delivered_total");
    assert_eq!(delivered, Some(11));
    assert_eq!(metric_value(broker.addr, "broker_subscribers"), Some(0));
}

/// A subscriber that closes its connection each time it has answered: the
/// next message goes out on that connection (from the publisher's thread,
/// when the delivery thread has slept a while, see `session::LEND_AFTER`),
/// meets the close, and is sent again once on a new connection. Each of
/// five rounds arrives once, in order, nothing is lost, the endpoint stays.
fn closed_while_idle_then_published(qos: u8) {
    let broker = BrokerProcess::start(&[]);
    let endpoint = Manual::start();
    subscribe_qos(broker.addr, "idle", endpoint.port, qos);
    for round in 0..5 {
        publish_pipelined(broker.addr, "idle", &names(round..round + 1), qos);
        let mut conn = endpoint.accept();
        let got = read_deliveries(&mut conn, 1);
        assert_eq!(got[0].0, names(round..round + 1)[0], "round {round}");
        answer(&mut conn, 1);
        wait_delivered(&broker, round as u64 + 1);
        drop(conn); // closed while idle
    }
    assert_eq!(metric_value(broker.addr, "broker_subscribers"), Some(1));
    let page = get(broker.addr, "/metrics").text();
    let lost: Vec<&str> = page
        .lines()
        .filter(|l| l.starts_with("broker_messages_dropped_total{") && !l.ends_with(" 0"))
        .collect();
    assert_eq!(lost, Vec::<&str>::new(), "{:?}", broker.log());
}

#[test]
fn qos0_subscriber_closing_while_idle_gets_the_next_message_on_a_new_connection() {
    closed_while_idle_then_published(0);
}

#[test]
fn qos1_subscriber_closing_while_idle_gets_the_next_message_on_a_new_connection() {
    closed_while_idle_then_published(1);
}
