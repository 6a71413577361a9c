//! The bridge's connections to NATS: the servers in turn, with a backoff,
//! until stopped; for each, connect and handshake (`INFO`, `CONNECT`,
//! `PING`/`PONG`), then `pump` serves it until it fails. Every read and
//! write has a deadline, so a silent or stuck server is given up on.

use super::bridge::{Shared, add, lock};
use super::proto::{self, Connect, Parser, ServerOp};
use super::pump;
use super::url::Server;
use crate::log;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
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
/// A write that makes no progress this long fails the connection.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Backoff between connection attempts: doubled from the first to the
/// last, and back to the first after a connection that lasted.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_LAST: Duration = Duration::from_secs(2);
/// A connection up this long resets the backoff.
const LASTED: Duration = Duration::from_secs(10);

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
            LinkError::Silent => write!(
                f,
                "no answer to pings for {} s",
                pump::SILENT_AFTER.as_secs()
            ),
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
                let why = pump::serve(shared, &stream, parser);
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
    let mut stream = connect_any(&addrs, deadline)?;
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
    if !info.headers {
        return Err(LinkError::Handshake(
            "the server does not take headers (nats-server 2.2 or later is needed)",
        ));
    }
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

/// A connection to the first of `addrs` that takes one by `deadline`.
fn connect_any(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, LinkError> {
    let mut last = LinkError::Handshake("the name has no address");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e.into(),
        }
    }
    Err(last)
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

pub(super) fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
