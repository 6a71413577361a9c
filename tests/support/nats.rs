//! A real `nats-server` on free loopback ports (killed by pid when dropped),
//! and a raw NATS client of the test's own, so the broker's bridge is judged
//! by something other than its own code. Every wait has a deadline.
#![allow(dead_code)]

use super::{WAIT, wait_until};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `nats-server` can be run here. Without it the cluster tests
/// skip, unless `REQUIRE_NATS` is set (as CI does): then they fail.
pub fn available(test: &str) -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("REQUIRE_NATS").is_none(),
            "{test}: REQUIRE_NATS is set but nats-server is not installed"
        );
        eprintln!("{test}: skipped: nats-server is not installed (apt install nats-server)");
    }
    found
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A `nats-server` process on 127.0.0.1.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    /// Its cluster (route) port, when it is part of a cluster.
    pub cluster_port: Option<u16>,
    routes: Vec<u16>,
    /// Extra arguments (credentials).
    extra: Vec<String>,
}

impl NatsServer {
    /// A single server on a free port that wants `--user USER --pass PASS`.
    pub fn with_user(user: &str, pass: &str) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            cluster_port: None,
            routes: Vec::new(),
            extra: vec!["--user".into(), user.into(), "--pass".into(), pass.into()],
        };
        server.restart();
        server
    }

    /// A single server on a free port.
    pub fn start() -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            cluster_port: None,
            routes: Vec::new(),
            extra: Vec::new(),
        };
        server.restart();
        server
    }

    /// `n` servers routed to each other in one cluster.
    pub fn cluster(n: usize) -> Vec<NatsServer> {
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut servers: Vec<NatsServer> = cluster_ports
            .iter()
            .map(|&cp| NatsServer {
                child: None,
                port: free_port(),
                cluster_port: Some(cp),
                routes: cluster_ports.iter().copied().filter(|&p| p != cp).collect(),
                extra: Vec::new(),
            })
            .collect();
        for server in &mut servers {
            server.restart();
        }
        servers
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts it on the same ports and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let mut command = Command::new("nats-server");
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(cp) = self.cluster_port {
            let routes: Vec<String> = self
                .routes
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            command.args([
                "--cluster_name",
                "mbtest",
                "--cluster",
                &format!("nats://127.0.0.1:{cp}"),
                "--routes",
                &routes.join(","),
            ]);
        }
        command.args(&self.extra);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let port = self.port;
        let up = wait_until(WAIT, || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
            stream.set_read_timeout(Some(WAIT)).ok()?;
            let mut info = [0u8; 4];
            stream.read_exact(&mut info).ok()?;
            (&info == b"INFO").then_some(())
        });
        assert!(up.is_some(), "nats-server on {port} did not answer");
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A message as a NATS subscriber sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsMsg {
    pub subject: String,
    pub sid: u64,
    /// The header block of an `HMSG`, as text.
    pub headers: Option<String>,
    pub payload: Vec<u8>,
}

/// A raw NATS client (headers on, echo off).
pub struct RawNats {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl RawNats {
    /// Connects to the server on `port` and completes the handshake.
    pub fn connect(port: u16) -> RawNats {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to nats-server");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let mut nats = RawNats {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        };
        let info = nats.line().expect("INFO");
        assert!(info.starts_with("INFO "), "{info}");
        nats.send(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1,\"echo\":false}\r\n",
        );
        nats.flush();
        nats
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to nats-server");
    }

    pub fn sub(&mut self, subject: &str, sid: u64) {
        self.send(format!("SUB {subject} {sid}\r\n").as_bytes());
        self.flush();
    }

    pub fn publish(&mut self, subject: &str, payload: &[u8]) {
        let mut op = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
        op.extend_from_slice(payload);
        op.extend_from_slice(b"\r\n");
        self.send(&op);
    }

    /// A `PING`, and waits for its `PONG`: the server has processed
    /// everything sent before it. Messages read meanwhile are dropped, so
    /// call it before messages are expected.
    pub fn flush(&mut self) {
        self.send(b"PING\r\n");
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let line = self.line().expect("PONG");
            if line == "PONG" {
                return;
            }
            assert!(!line.starts_with("-ERR"), "{line}");
        }
        panic!("no PONG");
    }

    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        self.reader.read_line(&mut line).ok()?;
        if line.is_empty() {
            return None;
        }
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// The next message within `limit`, answering pings; `None` if none.
    pub fn next_msg(&mut self, limit: Duration) -> Option<NatsMsg> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let line = self.line()?;
            let args: Vec<&str> = line.split_whitespace().collect();
            match args.first().copied() {
                Some("PING") => self.send(b"PONG\r\n"),
                Some("MSG") => {
                    let size: usize = args.last()?.parse().ok()?;
                    let payload = self.exact(size + 2);
                    return Some(NatsMsg {
                        subject: args[1].to_owned(),
                        sid: args[2].parse().ok()?,
                        headers: None,
                        payload: payload[..size].to_vec(),
                    });
                }
                Some("HMSG") => {
                    let total: usize = args.last()?.parse().ok()?;
                    let head: usize = args[args.len() - 2].parse().ok()?;
                    let bytes = self.exact(total + 2);
                    return Some(NatsMsg {
                        subject: args[1].to_owned(),
                        sid: args[2].parse().ok()?,
                        headers: Some(String::from_utf8_lossy(&bytes[..head]).into_owned()),
                        payload: bytes[head..total].to_vec(),
                    });
                }
                _ => {}
            }
        }
    }

    fn exact(&mut self, n: usize) -> Vec<u8> {
        self.reader.get_ref().set_read_timeout(Some(WAIT)).unwrap();
        let mut bytes = vec![0u8; n];
        self.reader.read_exact(&mut bytes).expect("message payload");
        bytes
    }
}

/// The subject of a topic, as PROTOCOL.md 6.7 says, by the test's own
/// encoder.
pub fn subject_of(topic: &str) -> String {
    let mut subject = String::from("mb");
    for level in topic.split('/') {
        subject.push('.');
        if level.is_empty() {
            subject.push('%');
        }
        for b in level.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                subject.push(b as char);
            } else {
                subject.push_str(&format!("%{b:02X}"));
            }
        }
    }
    subject
}

/// The threads of a process, from /proc.
pub fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}
