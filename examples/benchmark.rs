//! End-to-end benchmark, with the Go original's flags and output keys.
//!
//! ```sh
//! cargo run --release --example benchmark                 # broker in-process
//! cargo run --release --example benchmark -- -a 127.0.0.1:9999 -m 20000
//! cargo run --release --example benchmark -- -a 127.0.0.1:9999 --pubs 10 --subs 10 \
//!     --topics 10 --window 16 -m 200000 --no-lat --broker-pid "$(pidof broker)"
//! ```
//!
//! Publishers send `-m` messages in all (split among `--pubs`), publisher `p`
//! to topic `p % topics`; subscriber `s` subscribes to topic `s % topics`.
//! Each publisher keeps up to `--window` publishes in flight (1: lock-step,
//! each publish waits for its 202), pausing `-c` ns between publishes or
//! pacing itself to `--rate` messages per second. The run waits up to `-d` s
//! for the last delivery, then prints one JSON line: the Go keys
//! (`e2e_packet_lat` in ns unless `--no-lat`, `sent`, `rcv`, `avge2e` ns,
//! `msgmsec`, `exp_time` ms) measured with a monotonic clock, and ours:
//! `expected` deliveries, `lost`, `dup`, `throughput` (deliveries/s),
//! `p50_us`, `p99_us`, `max_us`, and with `--broker-pid` the broker's
//! `broker_rss_kib` (at the end) and `broker_cpu_s` (during the run).
//!
//! `--qos 1` publishes and subscribes at qos 1 (each publish answered once
//! stored); `--data-dir DIR` gives the in-process broker (no `-a`) a log.
//!
//! `--startup PATH` instead starts the broker binary at PATH 10 times and
//! prints how long each took from spawn to its ready line (`startup_us`).

use message_broker::broker::{Broker, Config};
use message_broker::client::{Client, Message, Qos};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "flags: -a ADDR -m N -c NS -d S --pubs P --subs S --topics T --size B \
                     --window W --rate R --qos Q --data-dir DIR --broker-pid PID --no-lat";

struct Args {
    addr: Option<String>,
    messages: usize,
    cooldown_ns: u64,
    max_wait_s: u64,
    pubs: usize,
    subs: usize,
    topics: usize,
    size: usize,
    window: usize,
    rate: f64,
    broker_pid: Option<u32>,
    latencies: bool,
    qos: Qos,
    data_dir: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        addr: None,
        messages: 10_000,
        cooldown_ns: 0,
        max_wait_s: 10,
        pubs: 1,
        subs: 1,
        topics: 1,
        size: 0,
        window: 1,
        rate: 0.0,
        broker_pid: None,
        latencies: true,
        qos: Qos::AtMostOnce,
        data_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-lat" {
            a.latencies = false;
            continue;
        }
        let v = it.next().ok_or(format!("{flag} needs a value; {USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {v}: {e}");
        match flag.as_str() {
            "-a" => a.addr = Some(v.clone()),
            "-m" => a.messages = v.parse().map_err(|e| bad(&e))?,
            "-c" => a.cooldown_ns = v.parse().map_err(|e| bad(&e))?,
            "-d" => a.max_wait_s = v.parse().map_err(|e| bad(&e))?,
            "--pubs" => a.pubs = v.parse().map_err(|e| bad(&e))?,
            "--subs" => a.subs = v.parse().map_err(|e| bad(&e))?,
            "--topics" => a.topics = v.parse().map_err(|e| bad(&e))?,
            "--size" => a.size = v.parse().map_err(|e| bad(&e))?,
            "--window" => a.window = v.parse().map_err(|e| bad(&e))?,
            "--rate" => a.rate = v.parse().map_err(|e| bad(&e))?,
            "--broker-pid" => a.broker_pid = Some(v.parse().map_err(|e| bad(&e))?),
            "--qos" => {
                a.qos = match v.as_str() {
                    "0" => Qos::AtMostOnce,
                    "1" => Qos::AtLeastOnce,
                    _ => return Err(bad(&"0 or 1")),
                }
            }
            "--data-dir" => a.data_dir = Some(v.clone().into()),
            _ => return Err(format!("unknown flag {flag}; {USAGE}")),
        }
    }
    if a.pubs == 0 || a.subs == 0 || a.topics == 0 {
        return Err("--pubs, --subs and --topics must be at least 1".into());
    }
    Ok(a)
}

/// One delivery seen by a subscriber: (subscriber, publisher, sequence, latency ns).
type Seen = (usize, usize, usize, u64);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut argv = std::env::args().skip(1);
    if argv.next().as_deref() == Some("--startup") {
        return startup(
            &argv
                .next()
                .ok_or("--startup needs the broker binary's path")?,
        );
    }
    let args = parse_args()?;
    let _running; // keeps an in-process broker alive until the end
    let addr = match &args.addr {
        Some(addr) => addr.clone(),
        None => {
            let broker = Broker::bind(Config {
                bind: "127.0.0.1".parse()?,
                port: 0,
                log_level: message_broker::log::Level::Warn,
                data_dir: args.data_dir.clone(),
                ..Config::default()
            })?;
            let addr = broker.local_addr().to_string();
            _running = broker.spawn()?;
            addr
        }
    };
    let epoch = Instant::now();
    let run = format!("benchmark/id/{}", std::process::id());
    let topic = |i: usize| format!("{run}/{}", i % args.topics);

    let (tx, rx) = mpsc::channel::<Seen>();
    let mut subscribers = Vec::new();
    for s in 0..args.subs {
        let client = Client::builder(addr.clone()).listen_port(0).build()?;
        let tx: Sender<Seen> = tx.clone();
        client.subscribe_qos(&topic(s), args.qos, move |msg: Message| {
            let now = epoch.elapsed().as_nanos() as u64;
            let mut f = msg.data.splitn(4, ',');
            let mut num = || {
                f.next()
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or(u64::MAX)
            };
            let (sent, p, seq) = (num(), num(), num());
            let _ = tx.send((s, p as usize, seq as usize, now.saturating_sub(sent)));
        })?;
        subscribers.push(client);
    }
    drop(tx);
    let per_pub: Vec<usize> = (0..args.pubs)
        .map(|p| args.messages / args.pubs + usize::from(p < args.messages % args.pubs))
        .collect();
    // Deliveries expected: each message once for every subscriber of its topic.
    let subs_of = |t: usize| (0..args.subs).filter(|s| s % args.topics == t).count();
    let expected: usize = (0..args.pubs)
        .map(|p| per_pub[p] * subs_of(p % args.topics))
        .sum();

    let cpu_before = args.broker_pid.and_then(broker_cpu_s);
    let start = epoch.elapsed().as_nanos() as u64;
    let publishers: Vec<_> = (0..args.pubs)
        .map(|p| {
            let (addr, topic, n) = (addr.clone(), topic(p), per_pub[p]);
            let (window, rate, cooldown, size, qos) = (
                args.window,
                args.rate,
                args.cooldown_ns,
                args.size,
                args.qos,
            );
            thread::spawn(move || {
                let pace = Pace {
                    window,
                    rate,
                    cooldown_ns: cooldown,
                    size,
                    qos,
                };
                publish(&addr, &topic, p, n, &pace, epoch)
            })
        })
        .collect();
    let (seen, end) = collect(&rx, expected, Duration::from_secs(args.max_wait_s), epoch);
    for p in publishers {
        if let Err(e) = p.join().map_err(|_| "publisher panicked".to_string())? {
            eprintln!("publisher error: {e}");
        }
    }
    let broker = args.broker_pid.map(|pid| {
        let cpu = broker_cpu_s(pid).zip(cpu_before).map(|(a, b)| a - b);
        (broker_rss_kib(pid), cpu)
    });
    report(&args, &seen, expected, end.saturating_sub(start), broker);
    Ok(())
}

/// How a publisher sends.
struct Pace {
    window: usize,
    rate: f64,
    cooldown_ns: u64,
    size: usize,
    qos: Qos,
}

fn publish(
    addr: &str,
    topic: &str,
    p: usize,
    n: usize,
    pace: &Pace,
    epoch: Instant,
) -> Result<(), String> {
    let Pace {
        window,
        rate,
        cooldown_ns,
        size,
        qos,
    } = *pace;
    let client = Client::builder(addr)
        .listen_port(0)
        .build()
        .map_err(|e| e.to_string())?;
    let mut publisher = client.publisher().window(window).qos(qos);
    let started = Instant::now();
    for i in 0..n {
        if rate > 0.0 {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let mut data = format!("{},{p},{i},", epoch.elapsed().as_nanos());
        data.extend(std::iter::repeat_n('x', size.saturating_sub(data.len())));
        publisher.send(topic, &data).map_err(|e| e.to_string())?;
        if cooldown_ns > 0 {
            thread::sleep(Duration::from_nanos(cooldown_ns));
        }
    }
    match publisher.flush().first() {
        Some(f) => Err(format!("message {} failed: {}", f.seq, f.error)),
        None => Ok(()),
    }
}

/// Deliveries until `expected` arrived or `wait` passed since the last one;
/// the time of the last delivery.
fn collect(
    rx: &Receiver<Seen>,
    expected: usize,
    wait: Duration,
    epoch: Instant,
) -> (Vec<Seen>, u64) {
    let mut seen = Vec::with_capacity(expected);
    let mut end = 0;
    // Publishing itself may take long: the wait counts from the last arrival.
    while seen.len() < expected {
        match rx.recv_timeout(wait) {
            Ok(s) => {
                seen.push(s);
                end = epoch.elapsed().as_nanos() as u64;
            }
            Err(_) => break,
        }
    }
    (seen, end)
}

fn report(
    args: &Args,
    seen: &[Seen],
    expected: usize,
    elapsed_ns: u64,
    broker: Option<(Option<u64>, Option<f64>)>,
) {
    let mut unique: Vec<(usize, usize, usize)> =
        seen.iter().map(|&(sub, p, s, _)| (sub, p, s)).collect();
    unique.sort_unstable();
    let total = unique.len();
    unique.dedup();
    let dup = total - unique.len();
    let mut lat: Vec<u64> = seen.iter().map(|s| s.3).collect();
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let avg = lat
        .iter()
        .sum::<u64>()
        .checked_div(lat.len() as u64)
        .unwrap_or(0);
    let exp_ms = elapsed_ns as f64 / 1e6;
    let rcv = seen.len();
    let mut out = String::from("{");
    if args.latencies {
        let list: Vec<String> = seen.iter().map(|s| s.3.to_string()).collect();
        out.push_str(&format!("\"e2e_packet_lat\":[{}],", list.join(",")));
    }
    out.push_str(&format!(
        "\"sent\":{},\"rcv\":{rcv},\"avge2e\":{avg},\"msgmsec\":{:.3},\"exp_time\":{exp_ms:.3},\
         \"expected\":{expected},\"lost\":{},\"dup\":{dup},\"throughput\":{:.0},\
         \"p50_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1},\
         \"pubs\":{},\"subs\":{},\"topics\":{},\"window\":{},\"size\":{},\"rate\":{}",
        args.messages,
        rcv as f64 / exp_ms.max(1e-9),
        expected.saturating_sub(unique.len()),
        rcv as f64 / (exp_ms / 1e3).max(1e-9),
        pct(0.50) as f64 / 1e3,
        pct(0.99) as f64 / 1e3,
        lat.last().copied().unwrap_or(0) as f64 / 1e3,
        args.pubs,
        args.subs,
        args.topics,
        args.window,
        args.size,
        args.rate,
    ));
    if let Some((rss, cpu)) = broker {
        let num = |v: Option<String>| v.unwrap_or_else(|| "null".into());
        out.push_str(&format!(
            ",\"broker_rss_kib\":{},\"broker_cpu_s\":{}",
            num(rss.map(|r| r.to_string())),
            num(cpu.map(|c| format!("{c:.3}")))
        ));
    }
    out.push('}');
    println!("{out}");
}

/// Resident set size of a process, from /proc (Linux).
fn broker_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU seconds of a process, from /proc (Linux; 100 ticks/s).
fn broker_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Times exec to ready line of the broker binary at `path`, 10 times.
fn startup(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::{BufRead, BufReader};
    let mut times = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let mut child = std::process::Command::new(path)
            .args(["--bind", "127.0.0.1", "-p", "0"])
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let ready = BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("listening on"));
        times.push(started.elapsed().as_micros());
        child.kill()?;
        child.wait()?;
        if !ready {
            return Err("the broker exited without its ready line".into());
        }
    }
    times.sort_unstable();
    let list: Vec<String> = times.iter().map(u128::to_string).collect();
    println!(
        "{{\"startup_us\":[{}],\"startup_p50_us\":{}}}",
        list.join(","),
        times[times.len() / 2]
    );
    Ok(())
}
