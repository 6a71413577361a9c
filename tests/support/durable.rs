//! Helpers for the durability tests (`tests/durable.rs`,
//! `tests/durable_crash.rs`): a subscriber endpoint that answers as the test
//! says and can be taken down and brought back on the same port, qos 1
//! publishing that returns the `Message-Id`, a temporary data directory
//! removed on drop, the log's segment framing (`u32 LE` length, `u32 LE`
//! CRC-32C, payload), and brokers started under a file-size limit or
//! expected to exit. Every wait here has a deadline.
//!
//! It reaches the shared helpers as `crate::support`, so it works both
//! included on its own (`#[path = "support/durable.rs"] mod durable;`) and
//! as `support::durable`.
#![allow(dead_code)]

use crate::support::{Resp, WAIT, exchange, read_resp, wait_until};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Temporary directories

/// A directory under `std::env::temp_dir()` with a name no other test uses;
/// removed with everything in it when dropped. Declare it before the
/// brokers that use it, so that they are killed before it goes.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "mb-{tag}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside it (not created).
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `join(name)` as a string, for a `--data-dir` flag. The broker
    /// creates the directory itself (SPEC: "created if missing").
    pub fn arg(&self, name: &str) -> String {
        path_arg(&self.join(name))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A path as a command-line argument.
pub fn path_arg(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temp path").to_owned()
}

/// Copies the files of `from` into a new directory `to`, except `lock`
/// (a copy of a data directory as a crash would have left it, minus the
/// lock, which a crashed broker no longer holds).
pub fn copy_data_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "lock" || !entry.file_type().unwrap().is_file() {
            continue;
        }
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

// ---------------------------------------------------------------------------
// The log's segment files (SPEC "Segment files")

/// The segment files of a data directory (`NNNNNNNNNNNNNNNNNNNN.log`, 20
/// digits), oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.strip_suffix(".log").is_some_and(|digits| {
                digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())
            })
        })
        .collect();
    found.sort();
    found
}

/// One record of a segment: where it starts and its whole length (the
/// 8-byte frame header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub start: usize,
    pub len: usize,
}

impl Frame {
    pub const HEADER: usize = 8;

    pub fn end(&self) -> usize {
        self.start + self.len
    }

    pub fn payload_len(&self) -> usize {
        self.len - Self::HEADER
    }
}

/// Splits a whole segment into its records; panics unless every byte
/// belongs to a record with a correct CRC-32C, or to the zero-filled rest
/// that the broker grows a segment with ahead of its records (the test
/// must understand the framing before it tears it).
pub fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() && bytes[at..].iter().any(|&b| b != 0) {
        assert!(
            at + Frame::HEADER <= bytes.len(),
            "{} bytes after the last whole record at {at}: not the framing of SPEC.md \
             (u32 LE length, u32 LE CRC-32C, payload; no file header, zeros at the end)",
            bytes.len() - at
        );
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let end = at + Frame::HEADER + len;
        assert!(
            end <= bytes.len(),
            "record at {at} claims {len} bytes, the file ends at {}",
            bytes.len()
        );
        assert_eq!(
            crc32c(&bytes[at + Frame::HEADER..end]),
            crc,
            "record at {at}: the CRC-32C does not match its payload"
        );
        found.push(Frame {
            start: at,
            len: Frame::HEADER + len,
        });
        at = end;
    }
    found
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: the
/// test's own, so the broker's framing is judged by other code.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// ---------------------------------------------------------------------------
// Talking to the broker

/// A `POST` with a JSON `body` and extra header lines, on a new connection.
pub fn post_with(addr: SocketAddr, path: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    exchange(addr, request.as_bytes())
}

/// `GET path` on a new connection.
pub fn get(addr: SocketAddr, path: &str) -> Resp {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The `Message-Id` of a publish answer; panics if it is missing or not a
/// decimal u64.
pub fn message_id(resp: &Resp) -> u64 {
    let value = resp
        .header("message-id")
        .unwrap_or_else(|| panic!("no Message-Id on {resp:?}"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("Message-Id {value:?} is not a decimal u64"))
}

/// The JSON body of a publish of `data` (plain ASCII, no escaping needed).
pub fn pub_body(data: &str, qos: u8, retain: bool) -> String {
    if retain {
        format!(r#"{{"data":"{data}","qos":{qos},"retain":true}}"#)
    } else {
        format!(r#"{{"data":"{data}","qos":{qos}}}"#)
    }
}

/// Publishes `data` with `qos`; panics unless 202. Its `Message-Id`.
pub fn publish_qos(addr: SocketAddr, topic: &str, data: &str, qos: u8) -> u64 {
    let resp = post_with(
        addr,
        &format!("/pub/{topic}"),
        &pub_body(data, qos, false),
        &[],
    );
    assert_eq!(
        resp.status,
        202,
        "publish {data:?} to {topic}: {}",
        resp.text()
    );
    message_id(&resp)
}

/// Publishes `data` with qos 1; panics unless 202. Its `Message-Id`.
pub fn publish_qos1(addr: SocketAddr, topic: &str, data: &str) -> u64 {
    publish_qos(addr, topic, data, 1)
}

/// Subscribes the endpoint 127.0.0.1:`port` to `topic` with `qos`; panics
/// unless 202.
pub fn subscribe_qos(addr: SocketAddr, topic: &str, port: u16, qos: u8) {
    let resp = post_with(
        addr,
        &format!("/sub/{topic}"),
        &format!(r#"{{"qos":{qos},"port":"{port}"}}"#),
        &[],
    );
    assert_eq!(
        resp.status,
        202,
        "subscribe {port} to {topic}: {}",
        resp.text()
    );
}

/// A durable (qos 1) subscription of 127.0.0.1:`port` to `topic`.
pub fn subscribe_qos1(addr: SocketAddr, topic: &str, port: u16) {
    subscribe_qos(addr, topic, port, 1);
}

/// The value of one sample on `GET /metrics`, if the page has it (a
/// labelled sample is named as printed: `name{label="v"}`).
pub fn metric_value(addr: SocketAddr, sample: &str) -> Option<u64> {
    let page = get(addr, "/metrics");
    assert_eq!(page.status, 200, "GET /metrics");
    let text = page.text();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))?
        .trim();
    value
        .parse()
        .ok()
        .or_else(|| value.parse::<f64>().ok().map(|v| v as u64))
}

/// Waits until the sample is `want`; panics with the last value seen.
pub fn wait_metric(addr: SocketAddr, sample: &str, want: u64, limit: Duration) {
    let mut last = None;
    let reached = wait_until(limit, || {
        last = metric_value(addr, sample);
        (last == Some(want)).then_some(())
    });
    assert!(
        reached.is_some(),
        "{sample} did not become {want} within {limit:?}; last seen {last:?}"
    );
}

/// A port on 127.0.0.1 that nothing listens on (it was free a moment ago):
/// connecting to it is refused.
pub fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------
// A subscriber endpoint played by the test

/// A request the broker sent to an [`Endpoint`], and what it was answered.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    pub request_line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The status answered; 0 if the endpoint held it unanswered.
    pub status: u16,
    /// Which connection it came on (numbered from 0 in accept order).
    pub conn: usize,
    /// The body's `data` and `id`, decoded once on arrival.
    data: Option<String>,
    id: Option<u64>,
}

impl Arrival {
    pub fn is_msg(&self) -> bool {
        self.request_line.starts_with("POST /msg ")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn new(
        conn: usize,
        request_line: String,
        headers: Vec<(String, String)>,
        body: String,
    ) -> Arrival {
        let object = message_broker::json::parse_object(body.as_bytes()).ok();
        let data = object
            .as_ref()
            .and_then(|o| o.get_str("data"))
            .map(str::to_owned);
        let id = object
            .as_ref()
            .and_then(|o| o.get("id"))
            .and_then(|v| v.as_u64());
        Arrival {
            at: Instant::now(),
            request_line,
            headers,
            body,
            status: 202,
            conn,
            data,
            id,
        }
    }

    /// The `data` of a delivery; panics if the body has none.
    pub fn data(&self) -> &str {
        self.data
            .as_deref()
            .unwrap_or_else(|| panic!("no data in the delivery {:?}", self.body))
    }

    /// The `Topic` of a delivery.
    pub fn topic(&self) -> Option<String> {
        let object = message_broker::json::parse_object(self.body.as_bytes()).ok()?;
        object.get_str("Topic").map(str::to_owned)
    }

    /// The `id` key of the body (qos 1 deliveries have it).
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// The `Message-Id` header (qos 1 deliveries have it).
    pub fn message_id(&self) -> Option<u64> {
        self.header("message-id").and_then(|v| v.parse().ok())
    }

    /// The id of a qos 1 delivery; panics unless the body's `id` and the
    /// `Message-Id` header are there and agree.
    pub fn qos1_id(&self) -> u64 {
        let (body, header) = (self.id(), self.message_id());
        assert!(
            body.is_some() && body == header,
            "a qos 1 delivery carries the same id in its body and its Message-Id header: {self:?}"
        );
        body.unwrap()
    }

    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// How an [`Endpoint`] answers one `POST /msg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// This status, empty body, connection kept.
    Status(u16),
    /// No answer ever: the connection stays open and silent.
    Hold,
}

/// Decides the answer to a `POST /msg`, given it and how many `/msg`
/// requests came before it.
pub type Policy = dyn Fn(&Arrival, usize) -> Answer + Send + Sync;

/// Every request, and the `/msg` ones apart (waits look at those often).
#[derive(Default)]
struct Log {
    all: Vec<Arrival>,
    msgs: Vec<Arrival>,
}

impl Log {
    fn push(&mut self, arrival: Arrival) {
        if arrival.is_msg() {
            self.msgs.push(arrival.clone());
        }
        self.all.push(arrival);
    }
}

struct Shared {
    arrivals: Mutex<Log>,
    changed: Condvar,
    policy: Box<Policy>,
    /// Connections accepted so far, over every time it was up.
    accepted: AtomicUsize,
}

struct Running {
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: JoinHandle<()>,
}

/// A subscriber endpoint on 127.0.0.1: records every request the broker
/// sends (heartbeats answered 202, `/msg` as its policy says) and can go
/// down (listener closed, connections cut: connecting is refused) and come
/// back on the same port.
pub struct Endpoint {
    pub port: u16,
    shared: Arc<Shared>,
    running: Option<Running>,
}

impl Endpoint {
    /// An endpoint answering every request 202.
    pub fn start() -> Endpoint {
        Self::start_with(|_, _| Answer::Status(202))
    }

    /// An endpoint answering `/msg` requests as `policy` says.
    pub fn start_with(
        policy: impl Fn(&Arrival, usize) -> Answer + Send + Sync + 'static,
    ) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            arrivals: Mutex::new(Log::default()),
            changed: Condvar::new(),
            policy: Box::new(policy),
            accepted: AtomicUsize::new(0),
        });
        let running = Some(serve(listener, shared.clone()));
        Endpoint {
            port,
            shared,
            running,
        }
    }

    /// Closes the listener and every connection: from now on the broker's
    /// connections to this port are refused.
    pub fn down(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        running.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which sees `stop` and drops the listener.
        let _ = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], self.port)), WAIT);
        let _ = running.accept.join();
        for conn in running.conns.lock().unwrap().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port.
    pub fn up(&mut self) {
        assert!(self.running.is_none(), "the endpoint is already up");
        let port = self.port;
        let listener = wait_until(WAIT, || TcpListener::bind(("127.0.0.1", port)).ok())
            .unwrap_or_else(|| panic!("port {port} could not be bound again"));
        self.running = Some(serve(listener, self.shared.clone()));
    }

    /// Every request so far.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.shared.arrivals.lock().unwrap().all.clone()
    }

    /// Every `POST /msg` so far, in arrival order.
    pub fn msgs(&self) -> Vec<Arrival> {
        self.shared.arrivals.lock().unwrap().msgs.clone()
    }

    /// Waits until `done` holds for the `/msg` requests so far; returns
    /// them. Panics after `limit`, saying `what` and what did arrive.
    pub fn wait_msgs(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&[Arrival]) -> bool,
    ) -> Vec<Arrival> {
        let deadline = Instant::now() + limit;
        let mut arrivals = self.shared.arrivals.lock().unwrap();
        loop {
            if done(&arrivals.msgs) {
                return arrivals.msgs.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let data: Vec<&str> = arrivals
                    .msgs
                    .iter()
                    .map(|a| a.data.as_deref().unwrap_or("?"))
                    .collect();
                panic!(
                    "port {}: {what}: not within {limit:?}; {} deliveries arrived: {data:?}",
                    self.port,
                    data.len()
                );
            }
            arrivals = self.shared.changed.wait_timeout(arrivals, left).unwrap().0;
        }
    }

    /// Waits until every one of `wanted` was delivered and answered 2xx at
    /// least once; returns every `/msg` so far.
    pub fn wait_data(&self, limit: Duration, wanted: &[String]) -> Vec<Arrival> {
        self.wait_msgs(limit, "every message delivered", |msgs| {
            let got: std::collections::HashSet<&str> = msgs
                .iter()
                .filter(|a| a.accepted())
                .filter_map(|a| a.data.as_deref())
                .collect();
            wanted.iter().all(|w| got.contains(w.as_str()))
        })
    }

    /// Waits for at least `n` `/msg` requests; returns them all.
    pub fn wait_count(&self, limit: Duration, n: usize) -> Vec<Arrival> {
        self.wait_msgs(limit, &format!("{n} deliveries"), |msgs| msgs.len() >= n)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.down();
    }
}

fn serve(listener: TcpListener, shared: Arc<Shared>) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let conns = Arc::new(Mutex::new(Vec::new()));
    let accept = {
        let (stop, conns) = (stop.clone(), conns.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return; // drops the listener
                }
                let Ok(stream) = stream else { continue };
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                let conn = shared.accepted.fetch_add(1, Ordering::SeqCst);
                conns.lock().unwrap().push(clone);
                let shared = shared.clone();
                thread::spawn(move || serve_conn(conn, stream, &shared));
            }
        })
    };
    Running {
        stop,
        conns,
        accept,
    }
}

/// Serves one connection from the broker until it closes (or the endpoint
/// goes down and shuts it).
fn serve_conn(conn: usize, stream: TcpStream, shared: &Shared) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let Some((request_line, headers, body)) = read_one_request(&mut reader) else {
            return;
        };
        let mut arrival = Arrival::new(conn, request_line, headers, body);
        let answer = if arrival.is_msg() {
            let before = shared.arrivals.lock().unwrap().msgs.len();
            (shared.policy)(&arrival, before)
        } else {
            Answer::Status(202)
        };
        arrival.status = match answer {
            Answer::Status(status) => status,
            Answer::Hold => 0,
        };
        shared.arrivals.lock().unwrap().push(arrival);
        shared.changed.notify_all();
        match answer {
            Answer::Status(status) => {
                let head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\n\r\n",
                    reason(status)
                );
                if writer.write_all(head.as_bytes()).is_err() {
                    return;
                }
            }
            Answer::Hold => {
                // Silent until the broker gives up or the endpoint goes down.
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
                return;
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

type Request = (String, Vec<(String, String)>, String);

/// Reads one request with a Content-Length body; `None` at the end.
fn read_one_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((
        request_line.trim_end().to_owned(),
        headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// The first delivery of each distinct `data`, in arrival order.
pub fn first_arrivals(msgs: &[Arrival]) -> Vec<Arrival> {
    let mut seen = std::collections::HashSet::new();
    msgs.iter()
        .filter(|a| seen.insert(a.data().to_owned()))
        .cloned()
        .collect()
}

/// The data delivered more than once, with how many times, in order of
/// first arrival.
pub fn duplicates(msgs: &[Arrival]) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for a in msgs {
        let data = a.data();
        match index.get(data) {
            Some(&i) => counts[i].1 += 1,
            None => {
                index.insert(data, counts.len());
                counts.push((data.to_owned(), 1));
            }
        }
    }
    counts.retain(|(_, n)| *n > 1);
    counts
}

/// Checks qos 1 deliveries: each carries the same id in its body and its
/// header, and every delivery of the same data carries the same id.
pub fn check_ids(msgs: &[Arrival]) {
    let mut ids: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for a in msgs {
        let id = a.qos1_id();
        let first = *ids.entry(a.data().to_owned()).or_insert(id);
        assert_eq!(first, id, "{:?} redelivered with another id", a.data());
    }
}

// ---------------------------------------------------------------------------
// Brokers that are not a plain `BrokerProcess`

/// Runs `broker --bind 127.0.0.1 -p 0 ARGS`, expecting it to exit within
/// `limit`; its exit status and stderr. Panics (after killing it) if it
/// keeps running.
pub fn run_broker_to_exit(args: &[&str], limit: Duration) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_broker"))
        .args(["--bind", "127.0.0.1", "-p", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start broker");
    let stderr = child.stderr.take().unwrap();
    let text = thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = wait_until(limit, || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the broker did not exit within {limit:?}: {}",
            text.join().unwrap_or_default()
        );
    };
    (status, text.join().unwrap_or_default())
}

/// A broker whose files may grow to at most `fsize` bytes each
/// (RLIMIT_FSIZE, set with util-linux `prlimit` where it exists, else
/// bash's `ulimit -f` in 1024-byte blocks). Killed when dropped.
pub struct LimitedBroker {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl LimitedBroker {
    pub fn start(fsize: u64, extra: &[&str]) -> LimitedBroker {
        let broker = env!("CARGO_BIN_EXE_broker");
        let mut command = if has_prlimit() {
            let mut c = Command::new("prlimit");
            c.arg(format!("--fsize={fsize}")).arg("--").arg(broker);
            c
        } else {
            // bash counts -f in 1024-byte blocks (sh may count 512).
            let mut c = Command::new("bash");
            c.arg("-c")
                .arg(format!("ulimit -f {} && exec \"$0\" \"$@\"", fsize / 1024))
                .arg(broker);
            c
        };
        let mut child = command
            .args(["--bind", "127.0.0.1", "-p", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the limited broker");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let Ok(addr) = rx.recv_timeout(WAIT) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "limited broker did not get ready: {:?}",
                log.lock().unwrap()
            );
        };
        LimitedBroker {
            child,
            addr: addr.parse().expect("address in the ready line"),
            log,
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Panics with a useful reason if the process is gone (a broker that
    /// does not ignore SIGXFSZ is killed by the first write past the limit).
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.exited() {
            use std::os::unix::process::ExitStatusExt;
            let why = match status.signal() {
                Some(25) => " (SIGXFSZ: the broker must ignore it to see EFBIG and answer 507)",
                _ => "",
            };
            panic!("the broker died: {status:?}{why}; log: {:?}", self.log());
        }
    }
}

impl Drop for LimitedBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn has_prlimit() -> bool {
    Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ---------------------------------------------------------------------------
// Pipelined qos 1 publishing on one keep-alive connection

/// What one pipelined publisher got: the sequence numbers answered 202, in
/// order, with their `Message-Id`s, and the first other outcome, if any.
#[derive(Debug, Default)]
pub struct Published {
    pub answered: Vec<(usize, u64)>,
    pub stopped_by: Option<String>,
}

/// Publishes `data(0..count)` with qos 1 to `topic` on one keep-alive
/// connection, `window` requests ahead of the answers (read in order).
/// Calls `on_answer` right after each 202 is read. Stops at the first
/// answer that is not a 202, or when the connection fails (the broker was
/// killed): what was answered so far is the result.
pub fn publish_pipelined(
    addr: SocketAddr,
    topic: &str,
    count: usize,
    window: usize,
    data: impl Fn(usize) -> String,
    on_answer: impl Fn(),
) -> Published {
    let mut out = Published::default();
    let stream = match TcpStream::connect_timeout(&addr, WAIT) {
        Ok(s) => s,
        Err(e) => {
            out.stopped_by = Some(format!("connect: {e}"));
            return out;
        }
    };
    let _ = stream.set_read_timeout(Some(WAIT));
    let _ = stream.set_write_timeout(Some(WAIT));
    let Ok(read_half) = stream.try_clone() else {
        out.stopped_by = Some("try_clone".into());
        return out;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    let (mut sent, mut read) = (0, 0);
    while read < count {
        while sent < count && sent - read < window {
            let body = pub_body(&data(sent), 1, false);
            let request = format!(
                "POST /pub/{topic} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = writer.write_all(request.as_bytes()) {
                out.stopped_by = Some(format!("write {sent}: {e}"));
                return out;
            }
            sent += 1;
        }
        let Some(resp) = read_resp(&mut reader) else {
            out.stopped_by = Some(format!("no answer to {read}"));
            return out;
        };
        if resp.status != 202 {
            out.stopped_by = Some(format!("{read}: {} {}", resp.status, resp.text()));
            return out;
        }
        out.answered.push((read, message_id(&resp)));
        on_answer();
        read += 1;
    }
    out
}
