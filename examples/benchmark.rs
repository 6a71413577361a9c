//! End-to-end benchmark, with the Go original's flags and output keys.
//!
//! ```sh
//! cargo run --release --example benchmark                 # broker in-process
//! cargo run --release --example benchmark -- -a 127.0.0.1:9999 -m 20000
//! ```
//!
//! One publisher sends `-m` messages lock-step (each publish waits for the
//! broker's 202) to one subscriber, pausing `-c` ns between them, then waits up
//! to `-d` s for the last one. Prints one JSON line: the Go keys
//! (`e2e_packet_lat` in ns, `sent`, `rcv`, `avge2e` ns, `msgmsec`, `exp_time`
//! ms), measured with a monotonic clock, and ours (`lost`, `throughput`
//! delivered/s, `p50_us`, `p99_us`, `max_us`). `--no-lat` leaves out the
//! per-message latency list.

use message_broker::broker::{Broker, Config};
use message_broker::client::{Client, Message};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Args {
    addr: Option<String>,
    messages: usize,
    cooldown_ns: u64,
    max_wait_s: u64,
    latencies: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: None,
        messages: 10_000,
        cooldown_ns: 0,
        max_wait_s: 10,
        latencies: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "-a" => args.addr = Some(value()?),
            "-m" => args.messages = value()?.parse().map_err(|e| format!("-m: {e}"))?,
            "-c" => args.cooldown_ns = value()?.parse().map_err(|e| format!("-c: {e}"))?,
            "-d" => args.max_wait_s = value()?.parse().map_err(|e| format!("-d: {e}"))?,
            "--no-lat" => args.latencies = false,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; flags: -a ADDR -m N -c NS -d S --no-lat"
                ));
            }
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let _running; // keeps an in-process broker alive until the end
    let addr = match &args.addr {
        Some(addr) => addr.clone(),
        None => {
            let broker = Broker::bind(Config {
                bind: "127.0.0.1".parse()?,
                port: 0,
                log_level: message_broker::log::Level::Warn,
                ..Config::default()
            })?;
            let addr = broker.local_addr().to_string();
            _running = broker.spawn()?;
            addr
        }
    };
    let client = Client::builder(addr).listen_port(0).build()?;
    let epoch = Instant::now();
    let (tx, rx) = mpsc::channel::<(usize, u64)>();
    let topic = format!("benchmark/id/{}", std::process::id());
    client.subscribe(&topic, move |msg: Message| {
        let now = epoch.elapsed().as_nanos() as u64;
        let mut parts = msg.data.split(',');
        let sent: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(now);
        let seq: usize = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX);
        let _ = tx.send((seq, now.saturating_sub(sent)));
    })?;

    let start = epoch.elapsed().as_nanos() as u64;
    for i in 0..args.messages {
        let now = epoch.elapsed().as_nanos() as u64;
        client.publish(&topic, &format!("{now},{i}"))?;
        if args.cooldown_ns > 0 {
            std::thread::sleep(Duration::from_nanos(args.cooldown_ns));
        }
    }
    let mut e2e = vec![0u64; args.messages];
    let mut received = 0;
    let mut end = start;
    let deadline = Instant::now() + Duration::from_secs(args.max_wait_s);
    while received < args.messages {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        let Ok((seq, lat)) = rx.recv_timeout(left) else {
            break;
        };
        if let Some(slot) = e2e.get_mut(seq) {
            if *slot == 0 {
                received += 1;
            }
            *slot = lat.max(1);
            end = epoch.elapsed().as_nanos() as u64;
        }
    }
    report(&args, &e2e, received, end - start);
    Ok(())
}

fn report(args: &Args, e2e: &[u64], received: usize, elapsed_ns: u64) {
    let mut got: Vec<u64> = e2e.iter().copied().filter(|&l| l > 0).collect();
    got.sort_unstable();
    let pct = |p: f64| {
        got.get(((got.len() as f64 * p) as usize).min(got.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let avg = if got.is_empty() {
        0
    } else {
        got.iter().sum::<u64>() / got.len() as u64
    };
    let exp_ms = elapsed_ns as f64 / 1e6;
    let lat = if args.latencies {
        let list: Vec<String> = e2e.iter().map(u64::to_string).collect();
        format!("\"e2e_packet_lat\":[{}],", list.join(","))
    } else {
        String::new()
    };
    println!(
        "{{{lat}\"sent\":{},\"rcv\":{received},\"avge2e\":{avg},\"msgmsec\":{:.3},\"exp_time\":{exp_ms:.3},\
         \"lost\":{},\"throughput\":{:.0},\"p50_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1}}}",
        args.messages,
        received as f64 / exp_ms.max(1e-9),
        args.messages - received,
        received as f64 / (exp_ms / 1e3).max(1e-9),
        pct(0.50) as f64 / 1e3,
        pct(0.99) as f64 / 1e3,
        got.last().copied().unwrap_or(0) as f64 / 1e3,
    );
}
