//! Benchmarks of streaming subscriptions and of the pattern tree, against a
//! broker already running (`-a ADDR`); each prints one JSON line.
//!
//! ```sh
//! # N SSE streams on one topic, one publisher with W publishes in flight:
//! cargo run --release --example stream_benchmark -- streams -a 127.0.0.1:9999 \
//!     --streams 1000 -m 400 --window 16 --broker-pid "$(pidof broker)"
//! # The publish rate with S subscriptions of one endpoint on distinct topics:
//! cargo run --release --example stream_benchmark -- subscriptions -a 127.0.0.1:9999 \
//!     --subscriptions 100000 -m 100000 --window 64
//! ```
//!
//! `streams` opens the streams (read in turn by `--readers` threads, default
//! 4, counting `id:` lines),
//! publishes `-m` messages to their topic and waits for every delivery:
//! `deliveries_per_s` over all streams, and the broker's resident memory
//! (`broker_rss_kib` at the end, `broker_peak_kib` its high-water mark).
//! `subscriptions` subscribes one endpoint (a client of its own) to
//! `--subscriptions` distinct topics `bench/sub/I`, then publishes `-m`
//! messages to `bench/sub/0` (or `--topic T`: one nobody subscribes to
//! measures the routing alone): `publish_per_s`, acknowledged publishes per
//! second.

use message_broker::client::Client;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

struct Args {
    mode: String,
    addr: String,
    streams: usize,
    subscriptions: usize,
    messages: usize,
    window: usize,
    size: usize,
    broker_pid: Option<u32>,
    /// `streams`: threads reading them.
    readers: usize,
    /// `subscriptions`: publish here instead of to `bench/sub/0`.
    topic: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or("streams or subscriptions")?;
    let mut a = Args {
        mode,
        addr: "127.0.0.1:9999".into(),
        streams: 1000,
        subscriptions: 100_000,
        messages: 400,
        window: 16,
        size: 64,
        broker_pid: None,
        readers: 4,
        topic: None,
    };
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let n = || v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "-a" => a.addr = v.clone(),
            "--streams" => a.streams = n()?,
            "--readers" => a.readers = n()?.max(1),
            "--subscriptions" => a.subscriptions = n()?,
            "-m" => a.messages = n()?,
            "--window" => a.window = n()?,
            "--size" => a.size = n()?,
            "--broker-pid" => a.broker_pid = Some(n()? as u32),
            "--topic" => a.topic = Some(v.clone()),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse()?;
    match args.mode.as_str() {
        "streams" => streams(&args),
        "subscriptions" => subscriptions(&args),
        other => Err(format!("unknown mode {other}").into()),
    }
}

/// Opens an SSE stream, non-blocking once its request is sent.
fn open_stream(addr: &str, topic: &str) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET /sub/{topic} HTTP/1.1\r\nHost: b\r\nAccept: text/event-stream\r\n\r\n"
    )?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Counts the events (`\nid: `) of `streams` into `seen`, polling them in
/// turn (a few such threads read a thousand streams without a thread and a
/// wake-up each), until `stop`.
fn read_streams(streams: Vec<TcpStream>, seen: Arc<AtomicU64>, stop: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 64 * 1024];
    // "\nid: " may span two reads: each stream keeps its last 4 bytes.
    let mut tails = vec![[0u8; 4]; streams.len()];
    while stop.load(Ordering::Relaxed) == 0 {
        let mut idle = true;
        for (mut s, tail) in streams.iter().zip(tails.iter_mut()) {
            while let Ok(n) = s.read(&mut buf[4..]) {
                if n == 0 {
                    break;
                }
                idle = false;
                buf[..4].copy_from_slice(tail);
                let chunk = &buf[..n + 4];
                let ids = chunk.windows(5).filter(|w| w == b"\nid: ").count();
                seen.fetch_add(ids as u64, Ordering::Relaxed);
                tail.copy_from_slice(&chunk[chunk.len() - 4..]);
            }
        }
        if idle {
            thread::sleep(Duration::from_micros(200));
        }
    }
}

fn streams(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let topic = format!("bench/streams/{}", std::process::id());
    let seen = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicU64::new(0));
    let mut groups: Vec<Vec<TcpStream>> = (0..a.readers).map(|_| Vec::new()).collect();
    for i in 0..a.streams {
        groups[i % a.readers].push(open_stream(&a.addr, &topic)?);
    }
    let readers: Vec<_> = groups
        .into_iter()
        .map(|g| {
            let (seen, stop) = (seen.clone(), stop.clone());
            thread::spawn(move || read_streams(g, seen, stop))
        })
        .collect();
    // Every stream is registered once a fence message reached them all.
    let client = Client::builder(a.addr.as_str()).listen_port(0).build()?;
    let fence = a.streams as u64;
    let ready = Instant::now();
    while seen.load(Ordering::Relaxed) < fence {
        if ready.elapsed() > Duration::from_secs(60) {
            return Err("streams not ready after 60 s".into());
        }
        client.publish(&topic, "fence")?;
        thread::sleep(Duration::from_millis(200));
    }
    let base = seen.load(Ordering::Relaxed);
    let expected = (a.messages * a.streams) as u64;
    let data = "x".repeat(a.size);
    let started = Instant::now();
    let mut publisher = client.publisher().window(a.window);
    for _ in 0..a.messages {
        publisher.send(&topic, &data)?;
    }
    if let Some(f) = publisher.flush().first() {
        return Err(format!("publish {} failed: {}", f.seq, f.error).into());
    }
    let mut last = (seen.load(Ordering::Relaxed), Instant::now());
    loop {
        let now = seen.load(Ordering::Relaxed) - base;
        if now >= expected || last.1.elapsed() > Duration::from_secs(5) {
            break;
        }
        if now != last.0 {
            last = (now, Instant::now());
        }
        thread::sleep(Duration::from_millis(5));
    }
    let got = seen.load(Ordering::Relaxed) - base;
    let secs = started.elapsed().as_secs_f64();
    stop.store(1, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    let (rss, peak) = memory(a.broker_pid);
    println!(
        "{{\"mode\":\"streams\",\"streams\":{},\"messages\":{},\"window\":{},\"expected\":{expected},\
         \"delivered\":{got},\"lost\":{},\"seconds\":{secs:.3},\"deliveries_per_s\":{:.0},\
         \"broker_rss_kib\":{rss},\"broker_peak_kib\":{peak}}}",
        a.streams,
        a.messages,
        a.window,
        expected.saturating_sub(got),
        got as f64 / secs
    );
    Ok(())
}

fn subscriptions(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let subscriber = Client::builder(a.addr.as_str()).listen_port(0).build()?;
    let delivered = Arc::new(AtomicU64::new(0));
    for i in 0..a.subscriptions {
        let d = delivered.clone();
        subscriber.subscribe(&format!("bench/sub/{i}"), move |_| {
            d.fetch_add(1, Ordering::Relaxed);
        })?;
    }
    let client = Client::builder(a.addr.as_str()).listen_port(0).build()?;
    let data = "x".repeat(a.size);
    let mut publisher = client.publisher().window(a.window);
    let topic = a.topic.as_deref().unwrap_or("bench/sub/0");
    let started = Instant::now();
    for _ in 0..a.messages {
        publisher.send(topic, &data)?;
    }
    if let Some(f) = publisher.flush().first() {
        return Err(format!("publish {} failed: {}", f.seq, f.error).into());
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"mode\":\"subscriptions\",\"subscriptions\":{},\"topic\":\"{topic}\",\"messages\":{},\
         \"window\":{},\"seconds\":{secs:.3},\"publish_per_s\":{:.0}}}",
        a.subscriptions,
        a.messages,
        a.window,
        a.messages as f64 / secs
    );
    Ok(())
}

/// The broker's resident and peak resident memory, in KiB (0 if unknown).
fn memory(pid: Option<u32>) -> (u64, u64) {
    let Some(status) = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
    else {
        return (0, 0);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
