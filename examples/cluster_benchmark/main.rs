//! Load across brokers bridged by NATS (PROTOCOL.md 6.7), or on one broker:
//! deliveries/s and latency, split into local and cross-broker deliveries.
//!
//! ```sh
//! cargo build --release --bin broker --example cluster_benchmark
//! nats-server -a 127.0.0.1 -p 4222 &
//! for p in 9001 9002 9003; do
//!     ./target/release/broker --bind 127.0.0.1 -p $p --nats nats://127.0.0.1:4222 &
//! done
//! ./target/release/examples/cluster_benchmark --brokers 127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003 \
//!     --pubs 3 --subs 6 --window 16 -m 60000
//! ./target/release/examples/cluster_benchmark --brokers 127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003 \
//!     --pubs 3 --subs 3 --rate 5000 --window 1000 -m 20000     # paced: the latency figure
//! ```
//! `bench/cluster.sh` runs the standard scenarios, and the same load on one broker.
//!
//! Subscriber `s` is a plain HTTP endpoint of this process (a listener on
//! 127.0.0.1 that answers every request `202`, reading pipelined deliveries
//! a socket read at a time) subscribed on broker `s % n` to topic
//! `s % topics`; publisher `p` sends from one keep-alive connection to broker
//! `p % n`, topic `p % topics`, with up to `--window` publishes in flight,
//! (`--pub-on I,J,..` and `--sub-on I,J,..` place them on those brokers
//! instead, by index in `--brokers`, in turn),
//! `-m` messages in all, as fast as answers come or paced to `--rate`
//! messages per second in all (open loop with a large window). Each message
//! carries its send time, publisher and number, padded to `--size` bytes.
//! A delivery is local when its publisher and subscriber are on the same
//! broker, cross-broker otherwise. Brokers must be on this machine (a
//! subscriber is reached at the address it subscribed from).
//!
//! Before measuring, a fence: every broker publishes a probe to every topic,
//! again every 100 ms, until each subscriber has one from every broker (a
//! subscription takes a moment to reach NATS), or `--fence` seconds pass.
//! After the last publish the run ends when all deliveries arrived or none
//! came for `--wait` seconds; the whole run is bounded by `--deadline`.
//!
//! Prints one JSON line: `sent` (answered 202), `pub_errors`, `expected`,
//! `delivered` (unique), `lost`, `dups`, `throughput` (unique deliveries per
//! second, first send to last delivery), `p50_us`/`p99_us`/`max_us` overall,
//! `local_*` and `cross_*` with their counts, `fence_ms`, the sums over the
//! brokers of what `/metrics` counted as dropped during the run
//! (`broker_messages_dropped`, `bridge_dropped`), and with `--pids` the CPU
//! seconds each of those processes used during the run (`cpu_s`).

mod calls;
mod subscriber;

use message_broker::client::Client;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use subscriber::{Sub, Tally};

const USAGE: &str = "flags: --brokers A,B,.. -m N --pubs P --subs S --topics T --size B \
                     --window W --rate R --wait S --fence S --deadline S --pids PID,.. \
                     --pub-on I,.. --sub-on I,..";
/// How often the fence publishes its probes.
const PROBE_EVERY: Duration = Duration::from_millis(100);

struct Args {
    brokers: Vec<String>,
    messages: usize,
    pubs: usize,
    subs: usize,
    topics: usize,
    size: usize,
    window: usize,
    rate: f64,
    wait: Duration,
    fence: Duration,
    deadline: Duration,
    pids: Vec<u32>,
    /// Brokers (indexes) publishers and subscribers go to, in turn.
    pub_on: Vec<usize>,
    sub_on: Vec<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        brokers: Vec::new(),
        messages: 60_000,
        pubs: 3,
        subs: 6,
        topics: 1,
        size: 64,
        window: 16,
        rate: 0.0,
        wait: Duration::from_secs(5),
        fence: Duration::from_secs(20),
        deadline: Duration::from_secs(120),
        pids: Vec::new(),
        pub_on: Vec::new(),
        sub_on: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value; {USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {v}: {e}");
        let n = || v.parse::<usize>().map_err(|e| bad(&e));
        let secs = || {
            v.parse::<f64>()
                .map_err(|e| bad(&e))
                .map(Duration::from_secs_f64)
        };
        match flag.as_str() {
            "--brokers" => a.brokers = v.split(',').map(str::to_owned).collect(),
            "-m" => a.messages = n()?,
            "--pubs" => a.pubs = n()?,
            "--subs" => a.subs = n()?,
            "--topics" => a.topics = n()?,
            "--size" => a.size = n()?,
            "--window" => a.window = n()?.max(1),
            "--rate" => a.rate = v.parse().map_err(|e| bad(&e))?,
            "--wait" => a.wait = secs()?,
            "--fence" => a.fence = secs()?,
            "--deadline" => a.deadline = secs()?,
            "--pub-on" => a.pub_on = list(&v).map_err(|e| bad(&e))?,
            "--sub-on" => a.sub_on = list(&v).map_err(|e| bad(&e))?,
            "--pids" => a.pids = list(&v).map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}; {USAGE}")),
        }
    }
    if a.brokers.is_empty() || a.brokers.len() > 64 {
        return Err(format!("--brokers needs 1 to 64 addresses; {USAGE}"));
    }
    let n = a.brokers.len();
    for on in [&mut a.pub_on, &mut a.sub_on] {
        if on.is_empty() {
            *on = (0..n).collect();
        }
        if on.iter().any(|&i| i >= n) {
            return Err(format!("--pub-on and --sub-on take indexes below {n}"));
        }
    }
    if a.pubs == 0 || a.subs == 0 || a.topics == 0 {
        return Err("--pubs, --subs and --topics must be at least 1".into());
    }
    Ok(a)
}

fn list<T: std::str::FromStr>(v: &str) -> Result<Vec<T>, T::Err> {
    v.split(',').map(str::parse).collect()
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(2),
        Err(e) => {
            eprintln!("cluster_benchmark: {e}");
            std::process::exit(1);
        }
    }
}

/// Runs the benchmark and prints its line; false when the deadline cut it
/// short.
fn run() -> Result<bool, String> {
    let args = parse_args()?;
    let n = args.brokers.len();
    let tally = Arc::new(Tally {
        epoch: Instant::now(),
        count: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
    });
    let run_id = format!("cluster-bench/{}", std::process::id());
    let topic = |i: usize| format!("{run_id}/{}", i % args.topics);

    let mut subs = Vec::new();
    for s in 0..args.subs {
        let on = args.sub_on[s % args.sub_on.len()];
        let (sub, port) = subscriber::start(on, &tally).map_err(|e| e.to_string())?;
        calls::subscribe(&args.brokers[on], &topic(s), port)?;
        subs.push(sub);
    }
    let fence_ms = fence(&args, &subs, &topic)?;

    let per_pub: Vec<usize> = (0..args.pubs)
        .map(|p| args.messages / args.pubs + usize::from(p < args.messages % args.pubs))
        .collect();
    let subs_of = |t: usize| (0..args.subs).filter(|s| s % args.topics == t).count();
    let expected: usize = (0..args.pubs)
        .map(|p| per_pub[p] * subs_of(p % args.topics))
        .sum();

    let drops_before = calls::drops(&args.brokers);
    let cpu_before: Vec<Option<f64>> = args.pids.iter().map(|&p| calls::cpu_s(p)).collect();
    let start = Instant::now();
    let start_ns = start.duration_since(tally.epoch).as_nanos() as u64;
    let publishers: Vec<_> = (0..args.pubs)
        .map(|p| {
            let job = Job {
                addr: args.brokers[args.pub_on[p % args.pub_on.len()]].clone(),
                topic: topic(p),
                p,
                count: per_pub[p],
                window: args.window,
                size: args.size,
                pace: (args.rate > 0.0).then_some((args.rate, args.pubs)),
                start,
            };
            let epoch = tally.epoch;
            thread::spawn(move || publish(&job, epoch))
        })
        .collect();
    let timed_out = !wait_for(&args, &tally, expected as u64, &publishers);
    let end_ns = tally.last_ns.load(Ordering::Relaxed);
    let cpu: Vec<String> = args
        .pids
        .iter()
        .zip(cpu_before)
        .map(|(&p, before)| match (calls::cpu_s(p), before) {
            (Some(a), Some(b)) => format!("{:.2}", a - b),
            _ => "null".into(),
        })
        .collect();
    let (mut sent, mut pub_errors) = (0, 0);
    for h in publishers {
        if timed_out && !h.is_finished() {
            continue; // its connection's timeout ends it; the process exits first
        }
        let (ok, failed) = h.join().unwrap_or((0, 1));
        sent += ok;
        pub_errors += failed;
    }
    let drops_after = calls::drops(&args.brokers);
    let dropped = |i: usize| drops_after[i].saturating_sub(drops_before[i]);

    let r = Results::of(&subs, &args.pub_on);
    let secs = end_ns.saturating_sub(start_ns) as f64 / 1e9;
    println!(
        "{{\"brokers\":{n},\"pubs\":{},\"subs\":{},\"topics\":{},\"window\":{},\"size\":{},\
         \"rate\":{},\"messages\":{},\"sent\":{sent},\"pub_errors\":{pub_errors},\
         \"expected\":{expected},\"delivered\":{},\"lost\":{},\"dups\":{},\"seconds\":{secs:.3},\
         \"throughput\":{:.0},{},{},{},\"fence_ms\":{fence_ms},\"broker_messages_dropped\":{},\
         \"bridge_dropped\":{},\"cpu_s\":[{}],\"timed_out\":{timed_out}}}",
        args.pubs,
        args.subs,
        args.topics,
        args.window,
        args.size,
        args.rate,
        args.messages,
        r.unique,
        expected.saturating_sub(r.unique),
        r.dups,
        r.unique as f64 / secs.max(1e-9),
        latency("", r.every),
        latency("local_", r.local),
        latency("cross_", r.cross),
        dropped(0),
        dropped(1),
        cpu.join(","),
    );
    Ok(!timed_out)
}

/// Publishes a probe from every broker to every topic, again every
/// [`PROBE_EVERY`], until each subscriber has one from every broker: its
/// milliseconds.
fn fence(args: &Args, subs: &[Arc<Sub>], topic: &dyn Fn(usize) -> String) -> Result<u128, String> {
    let started = Instant::now();
    let probers: Vec<Client> = args
        .brokers
        .iter()
        .map(|b| Client::builder(b.as_str()).listen_port(0).build())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let all = u64::MAX >> (64 - args.brokers.len());
    let missing = || {
        subs.iter()
            .filter(|s| s.probes.load(Ordering::Relaxed) != all)
            .count()
    };
    while missing() > 0 {
        if started.elapsed() > args.fence {
            return Err(format!(
                "fence: {} of {} subscribers lack a probe from some broker after {:?}",
                missing(),
                subs.len(),
                args.fence
            ));
        }
        for (b, client) in probers.iter().enumerate() {
            for t in 0..args.topics.min(args.subs) {
                client
                    .publish(&topic(t), &format!("probe,{b}"))
                    .map_err(|e| e.to_string())?;
            }
        }
        thread::sleep(PROBE_EVERY);
    }
    Ok(started.elapsed().as_millis())
}

/// Waits until every delivery arrived, or none came for `--wait` once the
/// publishers are done: false if `--deadline` came first.
fn wait_for<T>(args: &Args, tally: &Tally, expected: u64, publishers: &[JoinHandle<T>]) -> bool {
    let hard = tally.epoch + args.deadline;
    let mut last = (0, Instant::now());
    loop {
        let got = tally.count.load(Ordering::Relaxed);
        if got >= expected {
            return true;
        }
        if got != last.0 {
            last = (got, Instant::now());
        }
        if publishers.iter().all(JoinHandle::is_finished) && last.1.elapsed() > args.wait {
            return true;
        }
        if Instant::now() > hard {
            return false;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// What the subscribers got.
struct Results {
    unique: usize,
    dups: usize,
    /// Latencies (ns): all, local, cross-broker.
    every: Vec<u64>,
    local: Vec<u64>,
    cross: Vec<u64>,
}

impl Results {
    /// `pub_on`: the brokers publishers are on, in turn.
    fn of(subs: &[Arc<Sub>], pub_on: &[usize]) -> Results {
        let mut ids: Vec<(usize, u32, u32)> = Vec::new();
        let (mut local, mut cross, mut every) = (Vec::new(), Vec::new(), Vec::new());
        for (i, sub) in subs.iter().enumerate() {
            let seen = sub.seen.lock().unwrap_or_else(|e| e.into_inner());
            for &(p, seq, lat) in seen.iter() {
                ids.push((i, p, seq));
                every.push(lat);
                if pub_on[p as usize % pub_on.len()] == sub.broker {
                    local.push(lat);
                } else {
                    cross.push(lat);
                }
            }
        }
        let total = ids.len();
        ids.sort_unstable();
        ids.dedup();
        Results {
            unique: ids.len(),
            dups: total - ids.len(),
            every,
            local,
            cross,
        }
    }
}

/// `"{prefix}n"`, p50, p99 and max of latencies in ns, as JSON fields in µs.
fn latency(prefix: &str, mut v: Vec<u64>) -> String {
    v.sort_unstable();
    let us = |ns: Option<&u64>| ns.map_or(0.0, |&ns| ns as f64 / 1e3);
    let at = |q: f64| us(v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1))));
    format!(
        "\"{prefix}n\":{},\"{prefix}p50_us\":{:.1},\"{prefix}p99_us\":{:.1},\"{prefix}max_us\":{:.1}",
        v.len(),
        at(0.50),
        at(0.99),
        us(v.last())
    )
}

/// What one publisher sends.
struct Job {
    addr: String,
    topic: String,
    p: usize,
    count: usize,
    window: usize,
    size: usize,
    /// When paced, the total rate and the number of publishers: message
    /// `i` of publisher `p` is due at `start + (i * P + p) / R`, so that
    /// the publishers' messages are evenly spaced.
    pace: Option<(f64, usize)>,
    start: Instant,
}

/// Sends a publisher's messages: (answered 202, failed).
fn publish(job: &Job, epoch: Instant) -> (usize, usize) {
    let client = match Client::builder(job.addr.as_str()).listen_port(0).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("publisher {}: {e}", job.p);
            return (0, job.count);
        }
    };
    let mut publisher = client.publisher().window(job.window);
    let mut data = String::with_capacity(job.size.max(32));
    for i in 0..job.count {
        if let Some((rate, pubs)) = job.pace {
            let due = job.start + Duration::from_secs_f64((i * pubs + job.p) as f64 / rate);
            thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        data.clear();
        data.push_str(&format!("{},{},{i},", epoch.elapsed().as_nanos(), job.p));
        data.extend(std::iter::repeat_n(
            'x',
            job.size.saturating_sub(data.len()),
        ));
        if let Err(e) = publisher.send(&job.topic, &data) {
            eprintln!("publisher {}: message {i}: {e}", job.p);
            let failed = publisher.flush().len();
            return (i.saturating_sub(failed), job.count - i + failed);
        }
    }
    let failures = publisher.flush();
    if let Some(f) = failures.first() {
        eprintln!(
            "publisher {}: {} failed, first {}: {}",
            job.p,
            failures.len(),
            f.seq,
            f.error
        );
    }
    (job.count - failures.len(), failures.len())
}
