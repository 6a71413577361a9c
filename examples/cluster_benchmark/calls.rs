//! Requests of the benchmark's own to a broker, outside the measured load:
//! a subscription for one of its endpoints, and the drop counters of
//! `/metrics`; and the CPU time of a process, from /proc.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Largest answer read from a broker (a `/metrics` page).
const MAX_ANSWER: u64 = 4 * 1024 * 1024;
/// Socket timeout of each call.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Subscribes the endpoint 127.0.0.1:`port` to `topic` on `broker`.
///
/// # Errors
/// The call failed, or the broker did not answer `202`.
pub fn subscribe(broker: &str, topic: &str, port: u16) -> Result<(), String> {
    let body = format!("{{\"qos\":0,\"port\":\"{port}\"}}");
    let answer = call(
        broker,
        &format!(
            "POST /sub/{topic} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )?;
    if answer.starts_with("HTTP/1.1 202") {
        Ok(())
    } else {
        let status = answer.lines().next().unwrap_or("no answer");
        Err(format!("subscribe on {broker}: {status}"))
    }
}

/// Summed over `brokers`: `broker_messages_dropped_total` and
/// `broker_bridge_dropped_total`, all reasons (a broker that does not
/// answer counts 0).
pub fn drops(brokers: &[String]) -> [u64; 2] {
    let mut sums = [0, 0];
    for b in brokers {
        let request = "GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n";
        let Ok(page) = call(b, request) else {
            continue;
        };
        for line in page.lines() {
            let i = if line.starts_with("broker_messages_dropped_total") {
                0
            } else if line.starts_with("broker_bridge_dropped_total") {
                1
            } else {
                continue;
            };
            let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            sums[i] += value.unwrap_or(0.0) as u64;
        }
    }
    sums
}

/// One request on a connection of its own, and the answer up to its close.
fn call(broker: &str, request: &str) -> Result<String, String> {
    let go = || -> std::io::Result<String> {
        let mut s = TcpStream::connect(broker)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        s.write_all(request.as_bytes())?;
        let mut answer = String::new();
        s.take(MAX_ANSWER).read_to_string(&mut answer)?;
        Ok(answer)
    };
    go().map_err(|e| format!("{broker}: {e}"))
}

/// User plus system CPU seconds of a process (Linux; 100 ticks a second).
pub fn cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}
