//! The bridge's connection to a NATS server: connect, handshake (`INFO`,
//! `CONNECT`, `PING`/`PONG`), then a reader (this thread) and a writer
//! thread until the connection fails; then the next server, after a
//! backoff. Every read and write has a deadline, so a silent or stuck
//! server is given up on, and every buffer is bounded.

use super::bridge::{self, Shared, add, lock};
use super::proto::{self, Connect, Msg, Parser, ServerOp};
use super::url::Server;
use crate::log;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

/// Stack of the bridge's threads.
pub(super) const STACK: usize = 256 * 1024;
/// A server's largest message until its `INFO` says (NATS's default).
pub(super) const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// Room for a message's NATS headers past the broker's payload limit: a
/// larger message is a protocol error (whatever the server's `INFO`
/// claims), so a server cannot make the bridge buffer more.
const HEADER_ROOM: usize = 64 * 1024;
/// Time to connect, and then to complete the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A quiet connection is pinged this often...
const PING_INTERVAL: Duration = Duration::from_secs(2);
/// ...and given up after this many pings without a `PONG`.
const MAX_PINGS_OUT: u32 = 2;
/// A write that makes no progress this long fails the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Backoff between connection attempts: doubled from the first to the
/// last, and back to the first after a connection that lasted.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_LAST: Duration = Duration::from_secs(2);
/// A connection up this long resets the backoff.
const LASTED: Duration = Duration::from_secs(10);
/// Bytes read at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Why a connection ended or could not be made.
#[derive(Debug)]
pub(super) enum LinkError {
    Io(io::Error),
    /// The server closed the connection.
    Closed,
    /// The server sent something that is not the protocol.
    Protocol(proto::ProtoError),
    /// The handshake did not go as the protocol says.
    Handshake(&'static str),
    /// `-ERR` during the handshake (bad credentials, most likely).
    Refused(String),
    /// No `PONG` to our pings.
    Silent,
    /// The broker is stopping.
    Stopping,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Io(e) => write!(f, "{e}"),
            LinkError::Closed => f.write_str("closed by the server"),
            LinkError::Protocol(e) => write!(f, "protocol error: {e}"),
            LinkError::Handshake(what) => write!(f, "handshake failed: {what}"),
            LinkError::Refused(text) => write!(f, "refused: {text}"),
            LinkError::Silent => write!(f, "no answer to {MAX_PINGS_OUT} pings"),
            LinkError::Stopping => f.write_str("stopping"),
        }
    }
}

impl From<io::Error> for LinkError {
    fn from(e: io::Error) -> LinkError {
        LinkError::Io(e)
    }
}

impl From<proto::ProtoError> for LinkError {
    fn from(e: proto::ProtoError) -> LinkError {
        LinkError::Protocol(e)
    }
}

/// The bridge's thread: connects to the servers in turn until stopped.
pub(super) fn run(shared: &Shared) {
    let servers = &shared.opts.servers;
    let mut backoff = BACKOFF_FIRST;
    // Whether the last attempt was logged as a warning: an outage is
    // logged once, not at every retry.
    let mut quiet = false;
    for server in servers.iter().cycle() {
        if lock(shared).stopping {
            return;
        }
        match connect(shared, server) {
            Ok((stream, parser)) => {
                log::info!("nats: connected to {server}");
                quiet = false;
                let since = Instant::now();
                let why = serve(shared, &stream, parser);
                if matches!(why, LinkError::Stopping) {
                    return;
                }
                add(&shared.counters.failures);
                log::warning!("nats: connection to {server} lost: {why}; reconnecting");
                if since.elapsed() >= LASTED {
                    backoff = BACKOFF_FIRST;
                }
            }
            Err(LinkError::Stopping) => return,
            Err(why) => {
                add(&shared.counters.failures);
                if let LinkError::Protocol(_) = why {
                    add(&shared.counters.protocol_errors);
                }
                if quiet {
                    log::debug!("nats: cannot connect to {server}: {why}");
                } else {
                    log::warning!(
                        "nats: cannot connect to {server}: {why}; messages for the \
                         cluster are dropped until a server answers (retrying)"
                    );
                    quiet = true;
                }
            }
        }
        lock(shared).socket = None;
        let state = lock(shared);
        let (state, _) = shared
            .retry
            .wait_timeout_while(state, backoff, |s| !s.stopping)
            .unwrap_or_else(|e| e.into_inner());
        drop(state);
        backoff = (backoff * 2).min(BACKOFF_LAST);
    }
}

/// Connects to `server` and completes the handshake: the stream, and the
/// parser holding whatever came after the server's `PONG`.
fn connect(shared: &Shared, server: &Server) -> Result<(TcpStream, Parser), LinkError> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let addrs: Vec<_> = (server.host.as_str(), server.port)
        .to_socket_addrs()?
        .collect();
    let addr = addrs
        .first()
        .ok_or(LinkError::Handshake("the name has no address"))?;
    let mut stream = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    {
        let mut state = lock(shared);
        if state.stopping {
            return Err(LinkError::Stopping);
        }
        state.socket = Some(stream.try_clone()?);
    }
    let mut parser = Parser::new(shared.opts.max_data.saturating_add(HEADER_ROOM));
    let info = match next_op(&mut stream, &mut parser, deadline)? {
        ServerOp::Info(info) => info,
        _ => return Err(LinkError::Handshake("the server did not begin with INFO")),
    };
    // What the server takes from us.
    let max_payload = info.max_payload.map_or(DEFAULT_MAX_PAYLOAD, |n| {
        usize::try_from(n).unwrap_or(usize::MAX)
    });
    let mut hello = Vec::new();
    let connect = Connect {
        name: "message-broker",
        version: env!("CARGO_PKG_VERSION"),
        auth: &server.auth,
        // Our own messages are not wanted back; `Mb-Origin` is checked too.
        echo: false,
    };
    proto::write_connect(&mut hello, &connect);
    hello.extend_from_slice(proto::PING);
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.write_all(&hello)?;
    loop {
        match next_op(&mut stream, &mut parser, deadline)? {
            ServerOp::Pong => break,
            ServerOp::Ping => stream.write_all(proto::PONG)?,
            ServerOp::Err(text) => return Err(LinkError::Refused(text)),
            ServerOp::Ok | ServerOp::Info(_) => {}
            ServerOp::Msg(_) => return Err(LinkError::Handshake("MSG before PONG")),
        }
    }
    lock(shared).max_payload = max_payload;
    Ok((stream, parser))
}

/// The next operation from the server, reading by `deadline`.
fn next_op(
    stream: &mut TcpStream,
    parser: &mut Parser,
    deadline: Instant,
) -> Result<ServerOp, LinkError> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(op) = parser.next()? {
            return Ok(op);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LinkError::Handshake("no answer in time"));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => return Err(LinkError::Closed),
            Ok(n) => parser.feed(&buf[..n]),
            Err(e) if timed_out(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Serves a connection after its handshake until it fails: subscribes
/// what the broker holds, starts the writer, and reads.
fn serve(shared: &Shared, stream: &TcpStream, mut parser: Parser) -> LinkError {
    let generation = {
        let mut state = lock(shared);
        if state.stopping {
            return LinkError::Stopping;
        }
        state.connected = true;
        state.generation += 1;
        add(&shared.counters.connects);
        let mut control = std::mem::take(&mut state.control);
        control.clear();
        for (sid, subject) in state.interest.all() {
            proto::write_sub(&mut control, subject, sid);
        }
        state.control = control;
        state.generation
    };
    let why = match stream.try_clone() {
        Ok(out) => thread::scope(|scope| {
            let writer = thread::Builder::new()
                .name("nats writer".into())
                .stack_size(STACK)
                .spawn_scoped(scope, || write(shared, out, generation));
            let why = match writer {
                Ok(_) => read(shared, stream, &mut parser),
                Err(e) => LinkError::Io(e),
            };
            disconnect(shared, stream);
            why
        }),
        Err(e) => {
            disconnect(shared, stream);
            LinkError::Io(e)
        }
    };
    if lock(shared).stopping {
        return LinkError::Stopping;
    }
    why
}

/// Marks the connection down and ends its writer (joined by the scope).
/// What was queued and not written is counted as dropped.
fn disconnect(shared: &Shared, stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
    let mut state = lock(shared);
    state.connected = false;
    state.generation += 1;
    let lost = std::mem::take(&mut state.outbox_messages);
    shared
        .counters
        .dropped_down
        .fetch_add(lost, std::sync::atomic::Ordering::Relaxed);
    state.outbox.clear();
    state.control.clear();
    drop(state);
    shared.writer.notify_all();
}

/// Reads the server until the connection fails: answers pings, pings a
/// quiet server, and hands messages to the sink a read at a time.
fn read(shared: &Shared, mut stream: &TcpStream, parser: &mut Parser) -> LinkError {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut pings_out = 0;
    if let Err(e) = stream.set_read_timeout(Some(PING_INTERVAL)) {
        return e.into();
    }
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return LinkError::Closed,
            Ok(n) => n,
            Err(e) if timed_out(&e) => {
                if pings_out >= MAX_PINGS_OUT {
                    return LinkError::Silent;
                }
                pings_out += 1;
                send_control(shared, proto::PING);
                continue;
            }
            Err(e) => return e.into(),
        };
        parser.feed(&buf[..n]);
        let mut msgs: Vec<Msg> = Vec::new();
        loop {
            match parser.next() {
                Ok(None) => break,
                Ok(Some(ServerOp::Msg(m))) => msgs.push(m),
                Ok(Some(ServerOp::Ping)) => send_control(shared, proto::PONG),
                Ok(Some(ServerOp::Pong)) => pings_out = 0,
                Ok(Some(ServerOp::Ok | ServerOp::Info(_))) => {}
                Ok(Some(ServerOp::Err(text))) => {
                    add(&shared.counters.server_errors);
                    log::warning!("nats: the server says: -ERR '{text}'");
                }
                Err(e) => {
                    add(&shared.counters.protocol_errors);
                    deliver(shared, msgs);
                    return e.into();
                }
            }
        }
        deliver(shared, msgs);
        if lock(shared).stopping {
            return LinkError::Stopping;
        }
    }
}

fn deliver(shared: &Shared, msgs: Vec<Msg>) {
    if msgs.is_empty() {
        return;
    }
    let taken = bridge::take(shared, msgs);
    if !taken.is_empty() {
        (shared.sink)(taken);
    }
}

fn send_control(shared: &Shared, op: &[u8]) {
    lock(shared).control.extend_from_slice(op);
    shared.writer.notify_all();
}

/// The writer of connection `generation`: writes what is queued, control
/// first, until the connection is over or a write fails.
fn write(shared: &Shared, mut stream: TcpStream, generation: u64) {
    let (mut control, mut outbox) = (Vec::new(), Vec::new());
    loop {
        let messages = {
            let state = lock(shared);
            let state = shared
                .writer
                .wait_while(state, |s| {
                    !s.stopping
                        && s.generation == generation
                        && s.control.is_empty()
                        && s.outbox.is_empty()
                })
                .unwrap_or_else(|e| e.into_inner());
            let mut state = state;
            if state.stopping || state.generation != generation {
                return;
            }
            std::mem::swap(&mut control, &mut state.control);
            std::mem::swap(&mut outbox, &mut state.outbox);
            std::mem::take(&mut state.outbox_messages)
        };
        let written = stream
            .write_all(&control)
            .and_then(|()| stream.write_all(&outbox));
        if let Err(e) = written {
            log::debug!("nats: write failed: {e}");
            shared
                .counters
                .dropped_down
                .fetch_add(messages, std::sync::atomic::Ordering::Relaxed);
            // The reader sees the connection end, and reconnects.
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        shared
            .counters
            .sent
            .fetch_add(messages, std::sync::atomic::Ordering::Relaxed);
        control.clear();
        outbox.clear();
        if outbox.capacity() > bridge::OUTBOX_BYTES / 4 {
            outbox = Vec::new(); // a burst's buffer is not kept
        }
    }
}
