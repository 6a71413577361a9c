//! Shared helpers for the integration tests: a real broker process on a free
//! port, raw HTTP over TCP, and a subscriber played by a raw listener.
//! Every wait here has a deadline.
#![allow(dead_code)]

pub mod durable;
pub mod nats;
pub mod patterns;
pub mod streams;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Subscribes `client` to `topic`; its messages arrive on the returned channel.
pub fn subscribe_channel(
    client: &message_broker::client::Client,
    topic: &str,
) -> Receiver<message_broker::client::Message> {
    let (tx, rx) = mpsc::channel();
    client
        .subscribe(topic, move |m| {
            let _ = tx.send(m);
        })
        .expect("subscribe");
    rx
}

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A `broker` process listening on 127.0.0.1; killed when dropped.
pub struct BrokerProcess {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl BrokerProcess {
    /// Starts `broker --bind 127.0.0.1 -p 0` plus `extra` flags.
    pub fn start(extra: &[&str]) -> BrokerProcess {
        Self::start_on(0, extra)
    }

    /// Starts the broker on a given port (0: a free one).
    pub fn start_on(port: u16, extra: &[&str]) -> BrokerProcess {
        Self::start_with_env(port, extra, &[])
    }

    /// Starts the broker on `port` with `extra` flags and environment
    /// variables `env`.
    pub fn start_with_env(port: u16, extra: &[&str], env: &[(&str, &str)]) -> BrokerProcess {
        let port = port.to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_broker"));
        command
            .args(["--bind", "127.0.0.1", "-p", &port])
            .args(extra)
            .envs(env.iter().copied());
        Self::start_command(command)
    }

    /// Starts `command` (a broker, or a wrapper that execs one) and waits
    /// for its ready line; stderr is kept as its log.
    pub fn start_command(mut command: Command) -> BrokerProcess {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start broker");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(WAIT) {
            Ok(addr) => addr.parse().expect("address in the ready line"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("broker did not get ready: {:?}", log.lock().unwrap());
            }
        };
        let broker = BrokerProcess { child, addr, log };
        if watchdog_forced() {
            // Said in this test's output, where in_watchdog_mode looks for it.
            eprintln!("{}", broker.wait_for_log(WATCHDOG_LINE));
        }
        broker
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends a signal (`TERM`, `INT`) to the process with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `limit` for the process to exit; its status, if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        wait_until(limit, || self.child.try_wait().ok().flatten())
    }

    /// Kills the process and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The stderr lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a stderr line contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let found = wait_until(WAIT, || self.log().into_iter().find(|l| l.contains(needle)));
        found.unwrap_or_else(|| panic!("no log line with {needle:?} in {:?}", self.log()))
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it returns `Some`, or `limit` passes.
pub fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A connection with read and write deadlines.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect to broker");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// One parsed HTTP response (a minimal parser of the test's own, so the
/// broker is judged by something other than its own code).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response with a Content-Length body (all the broker sends).
pub fn read_resp(reader: &mut impl BufRead) -> Option<Resp> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.to_owned(), v.trim().to_owned()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = resp
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    resp.body = vec![0; len];
    reader.read_exact(&mut resp.body).ok()?;
    Some(resp)
}

/// Sends raw bytes on a new connection and reads one response.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Resp {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    read_resp(&mut BufReader::new(stream)).expect("a response")
}

/// Whether the server closed `reader`'s connection: EOF or a reset within
/// the stream's read timeout, with nothing more sent. A timeout means open.
pub fn closed_by_peer(reader: &mut BufReader<TcpStream>) -> bool {
    let mut rest = [0u8; 1];
    match reader.read(&mut rest) {
        Ok(0) => true,
        Ok(_) => panic!("unexpected bytes after the answer"),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            false
        }
        Err(_) => true,
    }
}

/// `POST path` with a JSON body on a new connection.
pub fn post(addr: SocketAddr, path: &str, body: &str) -> Resp {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(addr, request.as_bytes())
}

/// Subscribes `port` (at 127.0.0.1) to `topic`; panics unless 202.
pub fn subscribe(broker: SocketAddr, topic: &str, port: u16) {
    let resp = post(
        broker,
        &format!("/sub/{topic}"),
        &format!("{{\"qos\":0,\"port\":\"{port}\"}}"),
    );
    assert_eq!(resp.status, 202, "subscribe: {}", resp.text());
}

/// Publishes `data` to `topic`; panics unless 202.
pub fn publish(broker: SocketAddr, topic: &str, data: &str) {
    let resp = post(
        broker,
        &format!("/pub/{topic}"),
        &format!("{{\"data\":\"{data}\",\"qos\":0}}"),
    );
    assert_eq!(resp.status, 202, "publish: {}", resp.text());
}

/// A request the broker sent to a [`RawSubscriber`].
#[derive(Debug, Clone)]
pub struct Delivered {
    pub request_line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Delivered {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A subscriber played by a raw TCP listener: it answers every request 202
/// and reports it. Only `POST /msg` requests are reported by `recv_msg`.
pub struct RawSubscriber {
    pub port: u16,
    rx: Receiver<Delivered>,
    listener_addr: SocketAddr,
}

impl RawSubscriber {
    pub fn start() -> RawSubscriber {
        Self::start_on("127.0.0.1:0")
    }

    /// A raw subscriber listening on `addr` (e.g. `[::1]:0`).
    pub fn start_on(addr: &str) -> RawSubscriber {
        Self::start_with(addr, 0, Duration::ZERO)
    }

    /// A subscriber that is slow for a moment now and then: before answering
    /// every `every`-th request it pauses for `pause`.
    pub fn start_slow(every: usize, pause: Duration) -> RawSubscriber {
        Self::start_with("127.0.0.1:0", every, pause)
    }

    fn start_with(addr: &str, every: usize, pause: Duration) -> RawSubscriber {
        let listener = TcpListener::bind(addr).unwrap();
        let listener_addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let tx = tx.clone();
                thread::spawn(move || serve_raw(stream, tx, every, pause));
            }
        });
        RawSubscriber {
            port: listener_addr.port(),
            rx,
            listener_addr,
        }
    }

    /// The next `POST /msg` delivered, skipping heartbeats.
    pub fn recv_msg(&self) -> Delivered {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let d = self
                .rx
                .recv_timeout(left)
                .expect("a delivery within the deadline");
            if d.request_line.starts_with("POST /msg ") {
                return d;
            }
        }
    }

    /// The next `POST /msg` within `limit`, skipping heartbeats; `None`
    /// if none came.
    pub fn try_recv_msg(&self, limit: Duration) -> Option<Delivered> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let d = self.rx.recv_timeout(left).ok()?;
            if d.request_line.starts_with("POST /msg ") {
                return Some(d);
            }
        }
    }

    /// The next request of any kind.
    pub fn recv_any(&self) -> Delivered {
        self.rx
            .recv_timeout(WAIT)
            .expect("a request within the deadline")
    }

    /// The data fields of the next `n` messages.
    pub fn recv_data(&self, n: usize) -> Vec<String> {
        (0..n).map(|_| data_of(&self.recv_msg().body)).collect()
    }

    /// Asserts nothing but heartbeats arrives for `quiet`.
    pub fn assert_no_msg(&self, quiet: Duration) {
        let deadline = Instant::now() + quiet;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(d) if d.request_line.starts_with("POST /msg ") => {
                    panic!("unexpected delivery {d:?}")
                }
                _ => {}
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener_addr
    }
}

/// The `data` string of a delivered body, parsed with the crate's decoder.
pub fn data_of(body: &str) -> String {
    let object = message_broker::json::parse_object(body.as_bytes()).expect("JSON body");
    object
        .get("data")
        .and_then(|v| v.as_str())
        .expect("data")
        .to_owned()
}

fn serve_raw(stream: TcpStream, tx: mpsc::Sender<Delivered>, every: usize, pause: Duration) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for served in 1.. {
        if every > 0 && served % every == 0 {
            thread::sleep(pause); // a slow subscriber, not a synchronisation
        }
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.to_owned(), v.trim().to_owned()));
            }
        }
        let len = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap_or(0));
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let delivered = Delivered {
            request_line: request_line.trim_end().to_owned(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        if tx.send(delivered).is_err() {
            return;
        }
        if writer
            .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// Closes both directions of a stream, ignoring errors.
pub fn hang_up(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
}

impl BrokerProcess {
    /// The broker's process id (tests that watch its threads in /proc use it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The value of one sample (its name with labels, as printed) on the
/// broker's `GET /metrics` page.
pub fn metric(addr: SocketAddr, sample: &str) -> u64 {
    let page = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(page.status, 200);
    sample_in(&page.text(), sample)
}

/// The value of one sample (its name with labels, as printed) on a
/// `/metrics` page.
pub fn sample_in(text: &str, sample: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {sample} in\n{text}"))
        .parse()
        .unwrap()
}

/// Reads one request (head and Content-Length body) sent to a peer played
/// by the test; returns its body.
pub fn read_request(reader: &mut impl BufRead) -> String {
    let mut len = 0;
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "a request");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

/// The variable that makes the broker and the client bound their socket
/// calls with the watchdog instead of kernel socket timeouts.
pub const WATCHDOG_VARIABLE: &str = "BROKER_SOCKET_TIMEOUTS";
/// What the broker (and the client library) log when the watchdog is on.
pub const WATCHDOG_LINE: &str = "socket deadlines: enforced by a watchdog thread";

/// Whether this test process runs with the watchdog forced.
pub fn watchdog_forced() -> bool {
    std::env::var(WATCHDOG_VARIABLE).is_ok_and(|v| v == "watchdog")
}

/// Runs the test `name` of this test binary again, in a child process with
/// the watchdog forced (as on a network stack without socket timeouts, such
/// as Unikraft's lwIP): every broker it starts, and the client library in
/// it, bound their socket calls with the watchdog. Fails if that test fails,
/// does not run, or ran without the watchdog.
pub fn in_watchdog_mode(name: &str) {
    let exe = std::env::current_exe().expect("this test binary");
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(WATCHDOG_VARIABLE, "watchdog")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the test again");
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = wait_until(Duration::from_secs(120), || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    assert!(
        status.is_some_and(|s| s.success()) && text.contains("1 passed"),
        "{name} with the watchdog: {status:?}\n{text}"
    );
    assert!(
        text.contains(WATCHDOG_LINE),
        "{name} ran without the watchdog:\n{text}"
    );
}

/// Adds, for each deadline test named, a test `watchdog::NAME` that runs it
/// again with the watchdog forced (see [`in_watchdog_mode`]).
#[macro_export]
macro_rules! in_watchdog_mode_too {
    ($($name:ident),+ $(,)?) => {
        mod watchdog {
            $(
                #[test]
                fn $name() {
                    super::support::in_watchdog_mode(stringify!($name));
                }
            )+
        }
    };
}

/// A keep-alive `POST /pub/{topic}` of `data`, as raw bytes.
pub fn publish_request(topic: &str, data: &str) -> Vec<u8> {
    let body = format!(r#"{{"data":"{data}"}}"#);
    format!(
        "POST /pub/{topic} HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The status of `METHOD path` (no body) on a new connection.
pub fn get_status(addr: SocketAddr, path: &str, method: &str) -> u16 {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n");
    exchange(addr, request.as_bytes()).status
}
