//! Brokers that are not a plain `BrokerProcess` (under a file-size limit,
//! or expected to exit), and pipelined qos 1 publishing.
#![allow(dead_code)]

use super::*;
use crate::support::{BrokerProcess, WAIT, read_resp, wait_until};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::{self};
use std::time::Duration;

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
    process: BrokerProcess,
    pub addr: SocketAddr,
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
        command.args(["--bind", "127.0.0.1", "-p", "0"]).args(extra);
        let process = BrokerProcess::start_command(command);
        LimitedBroker {
            addr: process.addr,
            process,
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.process.log()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
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
