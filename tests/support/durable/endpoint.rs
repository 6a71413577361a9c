//! A subscriber endpoint played by the test: answers each delivery as the
//! test says, records what arrived, goes down and comes back on one port.
#![allow(dead_code)]

use crate::support::{WAIT, wait_until};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

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
