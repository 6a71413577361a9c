//! The client facing a hostile broker: small servers that answer garbage,
//! nothing, a 500, half a response, an endless response, interim (1xx)
//! responses forever, or refuse the connection. Every client call
//! (`publish`, `subscribe`, the first call after `build`, a publisher's
//! `send` + `flush`) must fail with an error within its timeout plus a margin:
//! never hang, never panic, never report success. And a hostile peer calling
//! the client's own listener must not stop valid deliveries.
//!
//! Each call runs on a thread of its own and is awaited with a deadline, so a
//! hang fails the test instead of stalling it.

mod support;

use message_broker::client::{Client, Error};
use message_broker::http::HttpError;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};
use support::{read_request, read_resp};

/// The client's timeout in these tests.
const TIMEOUT: Duration = Duration::from_millis(500);
/// How long a client call may take before it counts as a hang: the timeout
/// plus a margin for a loaded machine (connect, write and read are each
/// bounded by the timeout, and an idle-closed connection is retried once).
const LIMIT: Duration = Duration::from_secs(3);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// What a hostile server does once it has read a request.
#[derive(Clone, Copy, Debug)]
enum Then {
    /// Nothing more: the connection stays open and silent.
    Hold,
    /// Closes cleanly (the client sees the end of the stream, not a reset).
    Close,
    /// Answers each further request the same way, on the same connection.
    Repeat,
    /// Writes these bytes again and again, as fast as the client reads.
    Endless(&'static [u8]),
    /// Writes these bytes again and again, this many ms apart.
    Trickle(&'static [u8], u64),
}

/// A hostile server's script: after reading a request, it writes `answer`,
/// then does `then`.
#[derive(Clone, Copy, Debug)]
struct Script {
    answer: &'static [u8],
    then: Then,
}

const fn script(answer: &'static [u8], then: Then) -> Script {
    Script { answer, then }
}

const ACCEPTED: &[u8] = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
/// A well-behaved broker: 202 to everything.
const ACCEPT_ALL: Script = script(ACCEPTED, Then::Repeat);
/// (a) Bytes that are not HTTP.
const GARBAGE: Script = script(b"\x00\xffSSH-2.0-nonsense\x7f\r\n\r\n", Then::Close);
/// (b) Reads the request, never answers.
const SILENT: Script = script(b"", Then::Hold);
/// (c) A 500 to every request.
const ERROR_500: Script = script(
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\noops\n",
    Then::Repeat,
);
/// (d) Responses cut short by a close.
const STATUS_LINE_THEN_CLOSE: Script = script(b"HTTP/1.1 202 Accepted\r\n", Then::Close);
const HALF_STATUS_LINE_THEN_CLOSE: Script = script(b"HTTP/1.1 202 Acc", Then::Close);
const HALF_BODY_THEN_CLOSE: Script = script(
    b"HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\nhalf",
    Then::Close,
);
const HALF_CHUNKED_BODY_THEN_CLOSE: Script = script(
    b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    Then::Close,
);
/// (d) Closes without a byte of answer.
const CLOSE_WITHOUT_ANSWER: Script = script(b"", Then::Close);
/// (e) Endless responses.
const ENDLESS_HEADERS: Script = script(
    b"HTTP/1.1 202 Accepted\r\n",
    Then::Endless(b"X-Flood: 0123456789abcdef0123456789abcdef\r\n"),
);
const ENDLESS_HEADER_LINE: Script = script(
    b"HTTP/1.1 202 Accepted\r\nX-Flood: ",
    Then::Endless(&[b'a'; 4096]),
);
const ENDLESS_STATUS_LINE: Script = script(b"HTTP/1.1 202 ", Then::Endless(&[b'A'; 4096]));
const ENDLESS_CHUNKED_BODY: Script = script(
    b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n",
    Then::Endless(b"10\r\n0123456789abcdef\r\n"),
);
const ENDLESS_BODY_UNTIL_CLOSE: Script = script(
    b"HTTP/1.1 202 Accepted\r\n\r\n",
    Then::Endless(&[b'z'; 4096]),
);
const HUGE_CONTENT_LENGTH: Script = script(
    b"HTTP/1.1 202 Accepted\r\nContent-Length: 999999999999999\r\n\r\n",
    Then::Endless(&[b'z'; 4096]),
);
const TRICKLED_BODY: Script = script(
    b"HTTP/1.1 202 Accepted\r\nContent-Length: 1000\r\n\r\n",
    Then::Trickle(b"z", 20),
);
const TRICKLED_HEADERS: Script = script(b"HTTP/1.1 202 Accepted\r\n", Then::Trickle(b"X", 20));
/// (f) Interim responses forever: as fast as the client reads, and slowly.
const INTERIM_FOREVER: Script = script(b"", Then::Endless(b"HTTP/1.1 100 Continue\r\n\r\n"));
const INTERIM_TRICKLE: Script = script(b"", Then::Trickle(b"HTTP/1.1 102 Processing\r\n\r\n", 100));

/// The server's side of one connection.
struct Peer {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
}

impl Peer {
    /// Reads one request (head and `Content-Length` body); `false` if the
    /// client closed before sending one.
    fn read_request(&mut self) -> io::Result<bool> {
        let mut content_length = 0;
        let mut first = true;
        loop {
            let mut line = String::new();
            // The client's request heads are small; a bound all the same.
            if (&mut self.reader).take(8192).read_line(&mut line)? == 0 {
                return match first {
                    true => Ok(false),
                    false => Err(io::ErrorKind::UnexpectedEof.into()),
                };
            }
            first = false;
            match line.trim_end().split_once(':') {
                None if line.trim_end().is_empty() => break,
                Some((name, value)) if name.eq_ignore_ascii_case("content-length") => {
                    content_length = value.trim().parse().map_err(io::Error::other)?;
                }
                _ => {}
            }
        }
        self.reader.read_exact(&mut vec![0; content_length])?;
        self.requests.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(io::Error::other("server stopped"));
        }
        self.stream.write_all(bytes)
    }

    /// Keeps the connection open, reading and discarding, until the client
    /// closes it (or the server stops).
    fn drain(&mut self) -> io::Result<()> {
        self.stream
            .set_read_timeout(Some(Duration::from_millis(100)))?;
        let deadline = Instant::now() + support::WAIT;
        let mut sink = [0u8; 16 * 1024];
        while Instant::now() < deadline && !self.stop.load(Ordering::SeqCst) {
            match self.reader.read(&mut sink) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Plays `script` for one request, and for each further one if it
    /// says `Repeat`.
    fn play(&mut self, script: Script) -> io::Result<()> {
        if !self.read_request()? {
            return Ok(());
        }
        self.write(script.answer)?;
        match script.then {
            Then::Hold => self.drain(),
            Then::Close => {
                self.stream.shutdown(Shutdown::Write)?;
                self.drain()
            }
            Then::Repeat => loop {
                if !self.read_request()? {
                    return Ok(());
                }
                self.write(script.answer)?;
            },
            Then::Endless(bytes) => loop {
                self.write(bytes)?;
            },
            Then::Trickle(bytes, ms) => loop {
                self.write(bytes)?;
                thread::sleep(Duration::from_millis(ms)); // pacing, not synchronisation
            },
        }
    }
}

/// A server on 127.0.0.1:0 that answers the first `good_first` requests of
/// each connection with 202, then plays its script. Stops when dropped.
struct HostileBroker {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// A listener that never accepts, kept open while it is wanted.
    never_accepting: Option<TcpListener>,
}

impl HostileBroker {
    fn start(script: Script) -> HostileBroker {
        Self::start_after(0, script)
    }

    fn start_after(good_first: usize, script: Script) -> HostileBroker {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (s, c, r) = (stop.clone(), connections.clone(), requests.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (stop, requests) = (s.clone(), r.clone());
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(support::WAIT));
                    let _ = stream.set_write_timeout(Some(support::WAIT));
                    let Ok(clone) = stream.try_clone() else {
                        return;
                    };
                    let reader = BufReader::new(clone);
                    let mut peer = Peer {
                        reader,
                        stream,
                        stop,
                        requests,
                    };
                    for _ in 0..good_first {
                        if !matches!(peer.read_request(), Ok(true)) || peer.write(ACCEPTED).is_err()
                        {
                            return;
                        }
                    }
                    let _ = peer.play(script);
                });
            }
        });
        HostileBroker {
            addr,
            stop,
            connections,
            requests,
            never_accepting: None,
        }
    }

    /// (b) A listener that never accepts: connections complete in the
    /// kernel's backlog, and nothing ever reads them.
    fn never_accepting() -> HostileBroker {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        HostileBroker {
            addr: listener.local_addr().unwrap(),
            stop: Arc::new(AtomicBool::new(true)),
            connections: Arc::new(AtomicUsize::new(0)),
            requests: Arc::new(AtomicUsize::new(0)),
            never_accepting: Some(listener),
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for HostileBroker {
    fn drop(&mut self) {
        if self.never_accepting.is_none() && !self.stop.swap(true, Ordering::SeqCst) {
            // accept() has no timeout: a connection of our own wakes it.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        }
    }
}

/// (g) An address where nothing listens: bound, noted, released.
fn refusing_addr() -> SocketAddr {
    TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The error a call must end with.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// A read or write timeout.
    Timeout,
    /// An I/O error of this kind (refused, closed before any answer).
    Io(io::ErrorKind),
    /// The broker's status.
    Status(u16),
    /// A malformed or cut-short answer.
    Http(fn(&HttpError) -> bool),
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Expect {
    /// Whether a `publish` or `subscribe` error is the expected one.
    fn call(self, e: &Error) -> bool {
        match (self, e) {
            (Expect::Timeout, Error::Io(e)) => is_timeout(e),
            (Expect::Io(kind), Error::Io(e)) => e.kind() == kind,
            (Expect::Status(want), Error::Status { status, .. }) => *status == want,
            (Expect::Http(check), Error::Http(e)) => check(e),
            _ => false,
        }
    }

    /// Whether a publisher's failure is the expected one. The publisher
    /// reports a malformed answer as the connection's failure: an
    /// [`Error::Io`] of kind `Other` carrying the HTTP error's text.
    fn pipelined(self, e: &Error) -> bool {
        match (self, e) {
            (Expect::Http(_), Error::Io(e)) => e.kind() == io::ErrorKind::Other,
            _ => self.call(e),
        }
    }
}

fn bad_request(e: &HttpError) -> bool {
    matches!(e, HttpError::BadRequest(_))
}

fn unexpected_eof(e: &HttpError) -> bool {
    matches!(e, HttpError::UnexpectedEof)
}

fn headers_too_large(e: &HttpError) -> bool {
    matches!(e, HttpError::HeadersTooLarge)
}

fn payload_too_large(e: &HttpError) -> bool {
    matches!(e, HttpError::PayloadTooLarge)
}

/// A call running on a thread of its own.
struct Pending {
    what: String,
    rx: Receiver<Result<(), String>>,
}

fn spawn(what: String, f: impl FnOnce() -> Result<(), String> + Send + 'static) -> Pending {
    let (tx, rx) = mpsc::channel();
    let named = thread::Builder::new().name(what.clone());
    named.spawn(move || tx.send(f())).unwrap();
    Pending { what, rx }
}

impl Pending {
    /// Waits until `deadline`; fails the test if the call failed its check,
    /// panicked, or is still running.
    fn check(self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => panic!("{}: {why}", self.what),
            Err(RecvTimeoutError::Timeout) => {
                panic!("{}: still running after {LIMIT:?}", self.what)
            }
            Err(RecvTimeoutError::Disconnected) => panic!("{}: panicked", self.what),
        }
    }
}

fn client(broker: SocketAddr) -> Client {
    Client::builder(broker.to_string())
        .listen_ip(LOOPBACK)
        .listen_port(0)
        .timeout(TIMEOUT)
        .build()
        .expect("build: it does not contact the broker")
}

/// `result` must be the expected error.
fn expect_err(what: &str, result: Result<(), Error>, expect: Expect) -> Result<(), String> {
    match result {
        Err(e) if expect.call(&e) => Ok(()),
        other => Err(format!("{what}: want {expect:?}, got {other:?}")),
    }
}

/// Where a check's calls go.
#[derive(Clone, Copy)]
enum Server {
    Plays(Script),
    NeverAccepts,
    Refuses,
}

impl Server {
    /// A fresh server (kept until dropped) and its address.
    fn start(self) -> (SocketAddr, Option<HostileBroker>) {
        let broker = match self {
            Server::Plays(script) => HostileBroker::start(script),
            Server::NeverAccepts => HostileBroker::never_accepting(),
            Server::Refuses => return (refusing_addr(), None),
        };
        (broker.addr, Some(broker))
    }
}

/// For each case, against a server of its own per call, all at once:
/// `publish`; `subscribe`; `build` (which must not connect), then the first
/// calls, then `close`; and a publisher's `send` x 3 + `flush` each fail
/// with the expected error within [`LIMIT`].
fn check(cases: &[(&str, Server, Expect)]) {
    let started = Instant::now();
    let mut pending = Vec::new();
    let mut servers = Vec::new();
    for &(name, server, expect) in cases {
        let (addr, s) = server.start();
        servers.push(s);
        pending.push(spawn(format!("{name}: publish"), move || {
            expect_err("publish", client(addr).publish("hostile", "x"), expect)
        }));

        let (addr, s) = server.start();
        servers.push(s);
        pending.push(spawn(format!("{name}: subscribe"), move || {
            let subscribed = client(addr).subscribe("hostile", |_| {});
            expect_err("subscribe", subscribed, expect)
        }));

        let (addr, s) = server.start();
        let connections = s.as_ref().map(|s| s.connections.clone());
        servers.push(s);
        pending.push(spawn(format!("{name}: build"), move || {
            let c = client(addr);
            match connections.map_or(0, |n| n.load(Ordering::SeqCst)) {
                0 => {}
                n => return Err(format!("build made {n} connections to the broker")),
            }
            expect_err("first subscribe", c.subscribe("hostile", |_| {}), expect)?;
            expect_err("first publish", c.publish("hostile", "x"), expect)?;
            c.close();
            Ok(())
        }));

        let (addr, s) = server.start();
        servers.push(s);
        pending.push(spawn(format!("{name}: publisher"), move || {
            let c = client(addr);
            let mut publisher = c.publisher().window(8);
            let mut sent = Vec::new();
            for i in 0..3 {
                match publisher.send("hostile", &format!("m{i}")) {
                    Ok(seq) => sent.push(seq),
                    Err(e) if expect.call(&e) => {}
                    Err(e) => return Err(format!("send {i}: want {expect:?}, got {e:?}")),
                }
            }
            let failures = publisher.flush();
            let failed: Vec<u64> = failures.iter().map(|f| f.seq).collect();
            if failed != sent {
                return Err(format!("sent {sent:?}, failed {failed:?}: {failures:?}"));
            }
            match failures.iter().find(|f| !expect.pipelined(&f.error)) {
                Some(f) => Err(format!("want {expect:?}, got {f:?}")),
                None => Ok(()),
            }
        }));
    }
    for p in pending {
        p.check(started + LIMIT);
    }
}

#[test]
fn a_garbage_answer_is_an_invalid_response() {
    check(&[("garbage", Server::Plays(GARBAGE), Expect::Http(bad_request))]);
}

#[test]
fn a_broker_that_never_answers_times_out() {
    check(&[
        (
            "reads, never answers",
            Server::Plays(SILENT),
            Expect::Timeout,
        ),
        ("never accepts", Server::NeverAccepts, Expect::Timeout),
    ]);
}

#[test]
fn a_500_is_a_status_error_with_its_reason() {
    check(&[("500", Server::Plays(ERROR_500), Expect::Status(500))]);
    let broker = HostileBroker::start(ERROR_500);
    match client(broker.addr).publish("t", "x") {
        Err(Error::Status {
            status: 500,
            reason,
        }) => assert_eq!(reason, "oops"),
        other => panic!("want a 500, got {other:?}"),
    }
}

#[test]
fn a_response_cut_short_is_an_error() {
    let eof = Expect::Http(unexpected_eof);
    let aborted = Expect::Io(io::ErrorKind::ConnectionAborted);
    check(&[
        (
            "status line, then close",
            Server::Plays(STATUS_LINE_THEN_CLOSE),
            eof,
        ),
        (
            "half a status line, then close",
            Server::Plays(HALF_STATUS_LINE_THEN_CLOSE),
            eof,
        ),
        (
            "half a body, then close",
            Server::Plays(HALF_BODY_THEN_CLOSE),
            eof,
        ),
        (
            "half a chunked body, then close",
            Server::Plays(HALF_CHUNKED_BODY_THEN_CLOSE),
            eof,
        ),
        (
            "close, no answer",
            Server::Plays(CLOSE_WITHOUT_ANSWER),
            aborted,
        ),
    ]);
}

#[test]
fn an_endless_response_is_cut_at_a_limit_or_the_timeout() {
    check(&[
        (
            "endless headers",
            Server::Plays(ENDLESS_HEADERS),
            Expect::Http(headers_too_large),
        ),
        (
            "endless header line",
            Server::Plays(ENDLESS_HEADER_LINE),
            Expect::Http(headers_too_large),
        ),
        (
            "endless status line",
            Server::Plays(ENDLESS_STATUS_LINE),
            Expect::Http(bad_request),
        ),
        (
            "endless chunked body",
            Server::Plays(ENDLESS_CHUNKED_BODY),
            Expect::Http(payload_too_large),
        ),
        (
            "endless body until close",
            Server::Plays(ENDLESS_BODY_UNTIL_CLOSE),
            Expect::Http(payload_too_large),
        ),
        (
            "huge Content-Length",
            Server::Plays(HUGE_CONTENT_LENGTH),
            Expect::Http(payload_too_large),
        ),
        (
            "trickled body",
            Server::Plays(TRICKLED_BODY),
            Expect::Timeout,
        ),
        (
            "trickled headers",
            Server::Plays(TRICKLED_HEADERS),
            Expect::Timeout,
        ),
    ]);
}

#[test]
fn interim_responses_forever_are_an_error() {
    let too_many =
        |e: &HttpError| matches!(e, HttpError::BadRequest(why) if why.contains("interim"));
    check(&[
        (
            "100 Continue forever",
            Server::Plays(INTERIM_FOREVER),
            Expect::Http(too_many),
        ),
        (
            "102 Processing every 100 ms",
            Server::Plays(INTERIM_TRICKLE),
            Expect::Timeout,
        ),
    ]);
}

#[test]
fn a_refused_connection_is_an_error() {
    let refused = Expect::Io(io::ErrorKind::ConnectionRefused);
    check(&[("refused", Server::Refuses, refused)]);
}

/// On a kept-alive connection (the first request answered 202), a hostile
/// answer to the second request fails within the limit, and that publish
/// reaches the broker once: a response cut short proves the broker got the
/// publish, so the client must not send it again on a fresh connection
/// (which would publish it twice). Only a connection closed before any
/// answer is retried, once, as HTTP clients do with a kept-alive connection
/// the server closed while idle.
#[test]
fn a_hostile_answer_on_a_reused_connection_is_not_sent_again() {
    let eof = Expect::Http(unexpected_eof);
    let cases: &[(&str, Script, Option<Expect>, usize)] = &[
        ("garbage", GARBAGE, Some(Expect::Http(bad_request)), 2),
        ("silent", SILENT, Some(Expect::Timeout), 2),
        ("500", ERROR_500, Some(Expect::Status(500)), 2),
        (
            "endless headers",
            ENDLESS_HEADERS,
            Some(Expect::Http(headers_too_large)),
            2,
        ),
        (
            "100 Continue forever",
            INTERIM_FOREVER,
            Some(Expect::Http(bad_request)),
            2,
        ),
        (
            "status line, then close",
            STATUS_LINE_THEN_CLOSE,
            Some(eof),
            2,
        ),
        (
            "half a status line, then close",
            HALF_STATUS_LINE_THEN_CLOSE,
            Some(eof),
            2,
        ),
        (
            "half a body, then close",
            HALF_BODY_THEN_CLOSE,
            Some(eof),
            2,
        ),
        (
            "half a chunked body, then close",
            HALF_CHUNKED_BODY_THEN_CLOSE,
            Some(eof),
            2,
        ),
        // Retried on a fresh connection, whose first request gets 202.
        ("close, no answer", CLOSE_WITHOUT_ANSWER, None, 3),
    ];
    let started = Instant::now();
    let mut pending = Vec::new();
    for &(name, script, expect, requests) in cases {
        pending.push(spawn(format!("reused, {name}"), move || {
            let broker = HostileBroker::start_after(1, script);
            let c = client(broker.addr);
            c.publish("t", "first")
                .map_err(|e| format!("first publish: {e:?}"))?;
            let second = c.publish("t", "second");
            match expect {
                Some(expect) => expect_err("second publish", second, expect)?,
                None => second.map_err(|e| format!("second publish: {e:?}"))?,
            }
            match broker.requests() {
                n if n == requests => Ok(()),
                n => Err(format!("the broker got {n} requests, want {requests}")),
            }
        }));
    }
    for p in pending {
        p.check(started + LIMIT);
    }
}

// The client's listener, called by a hostile "broker".

/// Sends `bytes` to the client's listener on a fresh connection, shuts our
/// writing side if `then_close`, and reads the answer: `Some(status)`, or
/// `None` if the client closed without one.
fn call_listener(port: u16, bytes: &[u8], then_close: bool) -> Option<u16> {
    let stream = TcpStream::connect_timeout(&SocketAddr::new(LOOPBACK, port), LIMIT).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    // The client may answer and close before taking every byte: a failed
    // write is one of the outcomes, not an error of the test.
    let _ = (&stream).write_all(bytes);
    if then_close {
        let _ = stream.shutdown(Shutdown::Write);
    }
    read_resp(&mut BufReader::new(stream)).map(|r| r.status)
}

fn msg(body: &str) -> Vec<u8> {
    format!(
        "POST /msg HTTP/1.1\r\nHost: c\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn valid(topic: &str, data: &str) -> Vec<u8> {
    msg(&format!(r#"{{"data":"{data}","Topic":"{topic}"}}"#))
}

#[test]
fn hostile_calls_to_the_listener_do_not_stop_valid_deliveries() {
    let broker = HostileBroker::start(ACCEPT_ALL);
    let c = client(broker.addr);
    let rx = support::subscribe_channel(&c, "t"); // the broker answers 202
    let port = c.listen_port();

    // A connection that sends half a request head and then nothing: it
    // must not hold up the others.
    let slow = TcpStream::connect((LOOPBACK, port)).unwrap();
    (&slow)
        .write_all(b"POST /msg HTTP/1.1\r\nContent-Le")
        .unwrap();

    let mut chunked_9_mib = b"POST /msg HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..9 * 16 {
        chunked_9_mib.extend_from_slice(b"10000\r\n");
        chunked_9_mib.extend_from_slice(&[b'"'; 0x10000]);
        chunked_9_mib.extend_from_slice(b"\r\n");
    }
    chunked_9_mib.extend_from_slice(b"0\r\n\r\n");
    let many_headers = format!(
        "POST /msg HTTP/1.1\r\n{}Content-Length: 0\r\n\r\n",
        "X-A: b\r\n".repeat(200)
    );
    // (what, bytes, the status wanted or None for a close without answer)
    let cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        ("garbage", b"\x16\x03\x01\x02\x00garbage\r\n\r\n".to_vec(), Some(400)),
        ("binary without a line end", vec![0xAB; 64 * 1024], Some(400)),
        ("endless request line", [b"POST /".as_slice(), &[b'a'; 64 * 1024]].concat(), Some(414)),
        ("oversize Content-Length", b"POST /msg HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n".to_vec(), Some(413)),
        ("oversize chunked body", chunked_9_mib, Some(413)),
        ("too many headers", many_headers.into_bytes(), Some(431)),
        ("body not JSON", msg("{not json"), Some(400)),
        ("no topic", msg(r#"{"data":"x"}"#), Some(400)),
        ("data not a string", msg(r#"{"data":5,"Topic":"t"}"#), Some(400)),
        ("unknown path", b"POST /nope HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_vec(), Some(404)),
        ("GET /msg", b"GET /msg HTTP/1.1\r\n\r\n".to_vec(), Some(405)),
        ("truncated body", {
            let mut m = valid("t", "never complete");
            m.truncate(m.len() - 5);
            m
        }, None),
        ("truncated head", b"POST /msg HTTP/1.1\r\nContent-Len".to_vec(), None),
        ("conflicting framing", b"POST /msg HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), Some(400)),
    ];
    for (i, (what, bytes, want)) in cases.into_iter().enumerate() {
        let started = Instant::now();
        // A request that never completes ends with our close: the client
        // could otherwise only wait for the rest.
        let got = call_listener(port, &bytes, want.is_none());
        assert_eq!(got, want, "{what}");
        let took = started.elapsed();
        assert!(took < LIMIT, "{what}: took {took:?}");
        // The client answered what it could, and still delivers.
        let data = format!("after-{i}");
        let status = call_listener(port, &valid("t", &data), false);
        assert_eq!(status, Some(202), "a valid delivery after {what}");
        let m = rx.recv_timeout(LIMIT);
        assert_eq!(
            m.map(|m| m.data).ok(),
            Some(data),
            "the callback after {what}"
        );
    }

    // A 400 from the handler (not a framing error) keeps the connection:
    // the next request on it is served.
    let stream = TcpStream::connect((LOOPBACK, port)).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    (&stream).write_all(&msg("[1,2]")).unwrap();
    assert_eq!(read_resp(&mut reader).map(|r| r.status), Some(400));
    (&stream).write_all(&valid("t", "same connection")).unwrap();
    assert_eq!(read_resp(&mut reader).map(|r| r.status), Some(202));
    assert_eq!(rx.recv_timeout(LIMIT).unwrap().data, "same connection");

    // Nothing hostile reached the callback.
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    drop(slow);
    spawn("close".into(), move || {
        c.close();
        Ok(())
    })
    .check(Instant::now() + LIMIT);
}

/// One deadline covers a whole call, its retry included: a broker that
/// takes a publish on the kept-alive connection, stalls, closes without a
/// word (so the client retries on a fresh connection), then never answers
/// the retry, costs the caller one timeout, not two.
#[test]
fn a_retried_call_keeps_its_one_deadline() {
    let timeout = Duration::from_millis(1000);
    let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (first, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(first.try_clone().unwrap());
        read_request(&mut reader); // a first publish, answered
        (&first).write_all(ACCEPTED).unwrap();
        read_request(&mut reader); // the second: a stall, then a close
        thread::sleep(Duration::from_millis(700)); // the hostile behaviour itself
        let _ = first.shutdown(Shutdown::Both);
        let (_silent, _) = listener.accept().unwrap();
        thread::sleep(Duration::from_secs(5)); // holds the retry unanswered
    });
    let client = Client::builder(addr.to_string())
        .listen_port(0)
        .timeout(timeout)
        .build()
        .unwrap();
    client.publish("t", "one").unwrap();
    let started = Instant::now();
    let result = client.publish("t", "two");
    let took = started.elapsed();
    assert!(result.is_err(), "{result:?}");
    assert!(
        took < Duration::from_millis(1400),
        "a retry must not restart the clock: {took:?}"
    );
}

/// Callbacks stuck while a "broker" floods the listener with 1 MiB
/// messages: the client queues at most 64 MiB of them (and drops the rest,
/// answering 202 all the same), rather than all it is sent.
#[test]
fn a_flood_while_callbacks_are_stuck_is_bounded_in_bytes() {
    let broker = HostileBroker::start(ACCEPT_ALL);
    let c = client(broker.addr);
    let (entered_tx, entered) = mpsc::channel();
    let (release_tx, release) = mpsc::channel::<()>();
    let (got_tx, got) = mpsc::channel();
    c.subscribe("t", move |m| {
        if m.data == "first" {
            entered_tx.send(()).unwrap();
            release.recv_timeout(Duration::from_secs(30)).unwrap();
        }
        got_tx.send(m.data).unwrap();
    })
    .unwrap();
    let port = c.listen_port();
    assert_eq!(call_listener(port, &valid("t", "first"), false), Some(202));
    entered.recv_timeout(LIMIT).expect("the callback runs");
    let big = "x".repeat(1 << 20);
    for _ in 0..100 {
        assert_eq!(call_listener(port, &valid("t", &big), false), Some(202));
    }
    release_tx.send(()).unwrap();
    // In order: once "last" is through, everything queued before it is.
    assert_eq!(call_listener(port, &valid("t", "last"), false), Some(202));
    let mut big_ones = 0;
    loop {
        match got
            .recv_timeout(LIMIT)
            .expect("messages, then last")
            .as_str()
        {
            "first" => {}
            "last" => break,
            _ => big_ones += 1,
        }
    }
    assert!((60..=64).contains(&big_ones), "{big_ones} MiB were queued");
}

// The client's deadline tests above again, with the watchdog instead of
// kernel socket timeouts (as on Unikraft's lwIP).
crate::in_watchdog_mode_too!(
    a_broker_that_never_answers_times_out,
    an_endless_response_is_cut_at_a_limit_or_the_timeout,
    a_retried_call_keeps_its_one_deadline,
    hostile_calls_to_the_listener_do_not_stop_valid_deliveries,
);
