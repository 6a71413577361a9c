//! Every valid request of the protocol, split at every byte boundary into two
//! writes, is answered exactly as when it is sent in one write: the same
//! status lines, headers and bodies, byte for byte.
//!
//! The two parts go out as two `write` calls on a socket with `TCP_NODELAY`,
//! so they normally leave as two segments; nothing waits in between (the
//! broker may still read both at once, which must not matter either). Each
//! kind of request reuses one keep-alive connection for all its splits, so the
//! broker's connection thread is usually blocked in a read when the first part
//! arrives. Even so it often wakes late and reads both parts at once, so a
//! second variant (Linux) sends the second part only once the broker's
//! connection thread has read the first, watching it in /proc: no sleeps,
//! every wait bounded by [`WAIT`].

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;
use support::{BrokerProcess, RawSubscriber, WAIT, connect};

/// Longest line of a response head this test accepts.
const MAX_RESPONSE_LINE: u64 = 1024;
/// Longest response body this test accepts.
const MAX_RESPONSE_BODY: usize = 4096;

/// The Go client's publish, byte for byte (PROTOCOL.md section 4).
const GO_PUBLISH: &[u8] = b"POST /pub/split/go HTTP/1.1\r\n\
Host: 127.0.0.1:9999\r\n\
User-Agent: Go-http-client/1.1\r\n\
Content-Length: 25\r\n\
Accept-Encoding: gzip\r\n\
\r\n\
{\"data\":\"MyData\",\"qos\":0}";

/// A chunked publish with a chunk extension and a trailer.
const CHUNKED_PUBLISH: &[u8] = b"POST /pub/split/chunked HTTP/1.1\r\n\
Host: b\r\n\
Content-Type: application/json\r\n\
Transfer-Encoding: chunked\r\n\
\r\n\
9;name=value\r\n\
{\"data\":\"\r\n\
b\r\n\
in pieces\"}\r\n\
0\r\n\
X-Checksum: none\r\n\
\r\n";

/// The Go client's heartbeat: `http.Post(url, "application/json", nil)`.
const GO_HEARTBEAT: &[u8] = b"POST /hb HTTP/1.1\r\n\
Host: 127.0.0.1:9999\r\n\
User-Agent: Go-http-client/1.1\r\n\
Content-Length: 0\r\n\
Content-Type: application/json\r\n\
Accept-Encoding: gzip\r\n\
\r\n";

/// A publish that waits for `100 Continue` (here: does not wait, sends all).
const EXPECT_PUBLISH: &[u8] = b"POST /pub/split/expect HTTP/1.1\r\n\
Host: b\r\n\
Content-Length: 12\r\n\
Expect: 100-continue\r\n\
\r\n\
{\"data\":\"x\"}";

/// An HTTP/1.0 publish that asks to keep the connection.
const HTTP10_PUBLISH: &[u8] = b"POST /pub/split/http10 HTTP/1.0\r\n\
Host: b\r\n\
Connection: keep-alive\r\n\
Content-Length: 12\r\n\
\r\n\
{\"data\":\"x\"}";

/// `POST path` with a JSON `body`, as our client sends it.
fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One request (or a keep-alive run of requests) and the statuses it gets.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    statuses: &'static [u16],
}

fn cases(port: u16) -> Vec<Case> {
    let port_body = format!("{{\"port\":\"{port}\"}}");
    vec![
        Case {
            name: "publish with Content-Length (Go client)",
            bytes: GO_PUBLISH.to_vec(),
            statuses: &[202],
        },
        Case {
            name: "chunked publish",
            bytes: CHUNKED_PUBLISH.to_vec(),
            statuses: &[202],
        },
        Case {
            name: "subscribe with {\"port\":\"N\"}",
            bytes: post(
                "/sub/split/sub",
                &format!("{{\"qos\":0,\"port\":\"{port}\"}}"),
            ),
            statuses: &[202],
        },
        Case {
            name: "heartbeat with the port extension",
            bytes: post("/hb", &port_body),
            statuses: &[202],
        },
        Case {
            name: "empty heartbeat (Go client)",
            bytes: GO_HEARTBEAT.to_vec(),
            statuses: &[202],
        },
        Case {
            name: "Expect: 100-continue publish",
            bytes: EXPECT_PUBLISH.to_vec(),
            statuses: &[100, 202],
        },
        Case {
            name: "HTTP/1.0 keep-alive publish",
            bytes: HTTP10_PUBLISH.to_vec(),
            statuses: &[202],
        },
        Case {
            name: "keep-alive pair: publish then heartbeat",
            bytes: [GO_PUBLISH, GO_HEARTBEAT].concat(),
            statuses: &[202, 202],
        },
    ]
}

/// Reads one response as raw bytes (head and `Content-Length` body); `None`
/// on EOF, a timeout or a response this test does not expect.
fn read_raw(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    let mut length = 0;
    loop {
        let mut line = Vec::new();
        let n = reader
            .by_ref()
            .take(MAX_RESPONSE_LINE)
            .read_until(b'\n', &mut line)
            .ok()?;
        if n == 0 || line.last() != Some(&b'\n') {
            return None;
        }
        raw.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        if let Some((name, value)) = text.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    if length > MAX_RESPONSE_BODY {
        return None;
    }
    let start = raw.len();
    raw.resize(start + length, 0);
    reader.read_exact(&mut raw[start..]).ok()?;
    Some(raw)
}

/// The status of a raw response.
fn status_of(raw: &[u8]) -> Option<u16> {
    let line = raw.split(|&b| b == b'\n').next()?;
    String::from_utf8_lossy(line)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// A keep-alive connection with a reader over it.
struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = connect(addr);
        stream.set_nodelay(true).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Conn { stream, reader }
    }

    /// Writes each part with its own `write_all`, then reads `n` responses.
    fn exchange(&mut self, parts: &[&[u8]], n: usize) -> Result<Vec<Vec<u8>>, String> {
        for part in parts {
            self.stream
                .write_all(part)
                .map_err(|e| format!("write: {e}"))?;
        }
        (0..n)
            .map(|i| read_raw(&mut self.reader).ok_or(format!("no response {i}")))
            .collect()
    }

    /// Writes `first`, then (once `pace` says the broker has read it) `second`,
    /// then reads `n` responses. A failure of `pace` itself ends the test at
    /// once rather than costing a [`WAIT`] per split.
    fn exchange_split(
        &mut self,
        (first, second): (&[u8], &[u8]),
        n: usize,
        pace: Option<&Pace>,
    ) -> Result<Vec<Vec<u8>>, String> {
        let before = pace.map(|p| p.asleep().unwrap_or_else(|e| panic!("{e}")));
        self.stream
            .write_all(first)
            .map_err(|e| format!("write: {e}"))?;
        if let (Some(pace), Some(before)) = (pace, &before) {
            pace.woke_and_slept(before)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        self.exchange(&[second], n)
    }
}

#[test]
fn every_request_split_at_every_byte_is_answered_as_whole() {
    split_everywhere(false);
}

/// The same, but the second part leaves only once the broker has taken the
/// first out of its socket, so that every split reaches the parser as two
/// reads: without this the broker's thread often wakes up late and reads both
/// parts at once (on a 2-CPU machine, a line reader broken on purpose to
/// mishandle a line split over two reads failed 9 to 20 of the 1178 unpaced
/// splits, and 994 of the paced ones).
#[cfg(target_os = "linux")]
#[test]
fn every_request_split_at_every_byte_after_the_broker_read_the_first_part() {
    split_everywhere(true);
}

/// Watches the broker's connection threads in /proc (Linux) to tell when the
/// first part of a split has been read: a connection thread asleep before the
/// write (blocked reading the socket) that has since gone to sleep again has
/// woken up, read everything there was in one `recv` into its buffer, and
/// waited again. Every wait is bounded by [`WAIT`].
struct Pace {
    pid: u32,
}

/// A connection thread's voluntary context switches, by thread id.
type Switches = Vec<(String, u64)>;

impl Pace {
    /// The connection threads (named `conn {peer}`): id, asleep, voluntary switches.
    fn threads(&self) -> Vec<(String, bool, u64)> {
        let dir = format!("/proc/{}/task", self.pid);
        let Ok(tasks) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        tasks
            .filter_map(|task| {
                let tid = task.ok()?.file_name().into_string().ok()?;
                let comm = std::fs::read_to_string(format!("{dir}/{tid}/comm")).ok()?;
                if !comm.starts_with("conn ") {
                    return None;
                }
                let status = std::fs::read_to_string(format!("{dir}/{tid}/status")).ok()?;
                let field = |name: &str| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::trim)
                };
                let asleep = field("State:")?.starts_with('S');
                let switches = field("voluntary_ctxt_switches:")?.parse().ok()?;
                Some((tid, asleep, switches))
            })
            .collect()
    }

    /// Waits until every connection thread is asleep; their switch counts then.
    fn asleep(&self) -> Result<Switches, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let threads = self.threads();
            if !threads.is_empty() && threads.iter().all(|&(_, asleep, _)| asleep) {
                return Ok(threads.into_iter().map(|(t, _, n)| (t, n)).collect());
            }
            if Instant::now() >= deadline {
                return Err(format!("connection threads not asleep: {threads:?}"));
            }
            std::thread::yield_now();
        }
    }

    /// Waits until one of the threads in `before` has slept again since, or
    /// has ended (the broker closed the connection after the first part).
    fn woke_and_slept(&self, before: &Switches) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let now = self.threads();
            let again = before.iter().any(|(tid, was)| {
                now.iter()
                    .find(|(t, _, _)| t == tid)
                    .is_none_or(|(_, _, n)| n > was)
            });
            if again {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("no connection thread woke up: {now:?}"));
            }
            std::thread::yield_now();
        }
    }
}

/// Sends every case whole, then split at every byte boundary (`paced`: the
/// second part only once the broker has read the first), and compares the answers.
fn split_everywhere(paced: bool) {
    let started = Instant::now();
    let broker = BrokerProcess::start(&[]);
    // Subscriptions and heartbeats name this endpoint; it answers the broker's calls.
    let subscriber = RawSubscriber::start();
    let pace = paced.then(|| Pace { pid: broker.pid() });
    let mut failures = Vec::new();
    let mut splits = 0;
    for case in cases(subscriber.port) {
        let n = case.statuses.len();
        let mut conn = Conn::open(broker.addr);
        let whole = without_ids(
            conn.exchange(&[&case.bytes], n)
                .unwrap_or_else(|e| panic!("{}: sent whole: {e}", case.name)),
        );
        let statuses: Vec<Option<u16>> = whole.iter().map(|r| status_of(r)).collect();
        let want: Vec<Option<u16>> = case.statuses.iter().map(|&s| Some(s)).collect();
        assert_eq!(statuses, want, "{}: sent whole", case.name);
        for at in 1..case.bytes.len() {
            splits += 1;
            match conn
                .exchange_split(case.bytes.split_at(at), n, pace.as_ref())
                .map(without_ids)
            {
                Ok(got) if got == whole => {}
                Ok(got) => failures.push(format!(
                    "{} split at {at}: {:?}, sent whole: {:?}",
                    case.name,
                    got.iter()
                        .map(|r| String::from_utf8_lossy(r))
                        .collect::<Vec<_>>(),
                    whole
                        .iter()
                        .map(|r| String::from_utf8_lossy(r))
                        .collect::<Vec<_>>(),
                )),
                Err(e) => {
                    failures.push(format!("{} split at {at}: {e}", case.name));
                    conn = Conn::open(broker.addr); // the old one is in an unknown state
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {splits} splits differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{splits} splits in {:?}", started.elapsed());
}

/// The answers with their `Message-Id` headers taken out: every publish
/// gets a new id, the rest must be byte for byte the same.
fn without_ids(answers: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    answers
        .into_iter()
        .map(|a| {
            let text = String::from_utf8_lossy(&a).into_owned();
            let kept: Vec<&str> = text
                .split_inclusive("\r\n")
                .filter(|line| !line.starts_with("Message-Id: "))
                .collect();
            kept.concat().into_bytes()
        })
        .collect()
}

/// The polite `Expect: 100-continue` client: the head, then the body only
/// after `100 Continue`, on one connection, several times.
#[test]
fn expect_continue_body_after_the_interim_answer() {
    let broker = BrokerProcess::start(&[]);
    let mut conn = Conn::open(broker.addr);
    let head_len = EXPECT_PUBLISH
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap()
        + 4;
    let (head, body) = EXPECT_PUBLISH.split_at(head_len);
    for _ in 0..3 {
        let interim = conn.exchange(&[head], 1).unwrap();
        assert_eq!(interim, [b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()]);
        let last = conn.exchange(&[body], 1).unwrap();
        assert_eq!(
            last.iter().map(|r| status_of(r)).collect::<Vec<_>>(),
            [Some(202)]
        );
    }
}
