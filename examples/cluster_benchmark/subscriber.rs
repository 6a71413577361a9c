//! The benchmark's subscribers: plain HTTP endpoints that answer every
//! request `202`, a socket read's worth at a time (the broker pipelines its
//! deliveries), and record each message's publisher, number and latency.
//! No broker client code: only what a webhook needs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Largest request head and body taken from a broker.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;
/// A delivery connection quiet this long is closed.
const IDLE: Duration = Duration::from_secs(60);
const ACCEPTED: &[u8] = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";

/// One delivery: (publisher, sequence, latency ns).
pub type Seen = (u32, u32, u64);

/// A subscriber: where it is, and what it got.
pub struct Sub {
    /// The index of the broker it subscribed on.
    pub broker: usize,
    pub seen: Mutex<Vec<Seen>>,
    /// Bit b: a probe from broker b arrived.
    pub probes: AtomicU64,
}

/// What every subscriber adds to.
pub struct Tally {
    /// The clock of the send times in the messages.
    pub epoch: Instant,
    /// Measured deliveries, and when the last came (ns since `epoch`).
    pub count: AtomicU64,
    pub last_ns: AtomicU64,
}

/// A new subscriber of broker `broker`, listening on 127.0.0.1: it and
/// its port.
///
/// # Errors
/// The port could not be bound.
pub fn start(broker: usize, tally: &Arc<Tally>) -> std::io::Result<(Arc<Sub>, u16)> {
    let sub = Arc::new(Sub {
        broker,
        seen: Mutex::new(Vec::new()),
        probes: AtomicU64::new(0),
    });
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let (s, t) = (sub.clone(), tally.clone());
    thread::spawn(move || accept(&listener, &s, &t));
    Ok((sub, port))
}

/// A thread per connection the broker opens, for the life of the process.
fn accept(listener: &TcpListener, sub: &Arc<Sub>, tally: &Arc<Tally>) {
    for stream in listener.incoming().flatten() {
        let (sub, tally) = (sub.clone(), tally.clone());
        let _ = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || serve(stream, &sub, &tally));
    }
}

/// Answers a broker's requests, recording the messages; ends at the first
/// error, at something that is not HTTP, or when idle too long.
fn serve(mut stream: TcpStream, sub: &Sub, tally: &Tally) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE));
    let mut chunk = vec![0u8; 64 * 1024];
    let (mut buf, mut answers, mut batch) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = tally.epoch.elapsed().as_nanos() as u64;
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        loop {
            match next_request(&buf[at..]) {
                Ok(Some((body, end))) => {
                    record(&buf[at + body..at + end], now, sub, &mut batch);
                    answers.extend_from_slice(ACCEPTED);
                    at += end;
                }
                Ok(None) => break,
                Err(()) => return,
            }
        }
        buf.drain(..at);
        if !batch.is_empty() {
            let k = batch.len() as u64;
            sub.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(&mut batch);
            tally.last_ns.fetch_max(now, Ordering::Relaxed);
            tally.count.fetch_add(k, Ordering::Relaxed);
        }
        if !answers.is_empty() && stream.write_all(&answers).is_err() {
            return;
        }
        answers.clear();
    }
}

/// The next whole request in `buf`: where its body begins and ends (the
/// bytes it takes); `None` until it is all there; an error past the limits
/// or for what is not HTTP.
fn next_request(buf: &[u8]) -> Result<Option<(usize, usize)>, ()> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(())
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| ())?;
    let mut length = 0;
    for line in head.split("\r\n").skip(1) {
        let (name, value) = line.split_once(':').ok_or(())?;
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().map_err(|_| ())?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(()); // the broker sends a length
        }
    }
    if length > MAX_BODY {
        return Err(());
    }
    let body = head_end + 4;
    Ok((buf.len() >= body + length).then_some((body, body + length)))
}

/// Records a message's data, `SEND_NS,PUB,SEQ,…` (into `batch`) or a
/// probe, `probe,B`; a heartbeat has none.
fn record(body: &[u8], now: u64, sub: &Sub, batch: &mut Vec<Seen>) {
    const KEY: &[u8] = b"\"data\":\"";
    let Some(at) = body
        .windows(KEY.len())
        .position(|w| w.eq_ignore_ascii_case(KEY))
    else {
        return;
    };
    let data = &body[at + KEY.len()..];
    let data = &data[..data.iter().position(|&b| b == b'"').unwrap_or(data.len())];
    let mut fields = data
        .split(|&b| b == b',')
        .map(|f| std::str::from_utf8(f).unwrap_or(""));
    let first = fields.next().unwrap_or("");
    let mut num = || fields.next().and_then(|f| f.parse::<u64>().ok());
    if first == "probe" {
        if let Some(b) = num().filter(|&b| b < 64) {
            sub.probes.fetch_or(1 << b, Ordering::Relaxed);
        }
    } else if let (Ok(sent), Some(p), Some(seq)) = (first.parse::<u64>(), num(), num()) {
        batch.push((p as u32, seq as u32, now.saturating_sub(sent)));
    }
}
