//! The transport to one subscriber endpoint: one persistent connection,
//! batches of requests written in one go, the next written while the
//! answers to the last are read, answers read in order (PROTOCOL.md
//! sections 2 and 6.2), and the reason when it fails.
//!
//! It knows nothing of queues, sessions or topics: it must not import
//! `registry`, `routing`'s table or `store`; it sends the items it is given.

use super::routing::Qos;
use super::session::Item;
use crate::http::Response;
use crate::net::{self, Connection};
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Why an endpoint was dropped; logged once per endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The TCP connection could not be made.
    ConnectFailed(String),
    /// No answer within the delivery timeout.
    TimedOut,
    /// The connection broke.
    Io(String),
    /// The endpoint answered something other than 2xx.
    Refused(u16),
    /// The endpoint's answer was not HTTP.
    BadResponse(String),
    /// No delivery and no heartbeat for the liveness timeout.
    Idle,
    /// A qos 1 session showed no sign of life for the session expiry.
    SessionExpired,
    /// A qos 1 session's backlog passed its limit.
    Backlog,
}

impl DropReason {
    /// Its place in [`metrics::DROP_REASONS`].
    pub(crate) fn index(&self) -> usize {
        match self {
            DropReason::ConnectFailed(_) => 0,
            DropReason::TimedOut => 1,
            DropReason::Io(_) => 2,
            DropReason::Refused(_) => 3,
            DropReason::BadResponse(_) => 4,
            DropReason::Idle => 5,
            DropReason::SessionExpired => 6,
            DropReason::Backlog => 7,
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            DropReason::TimedOut => f.write_str("delivery timed out"),
            DropReason::Io(e) => write!(f, "connection broke: {e}"),
            DropReason::Refused(status) => write!(f, "answered {status}"),
            DropReason::BadResponse(e) => write!(f, "bad response: {e}"),
            DropReason::Idle => {
                f.write_str("no delivery and no heartbeat within the liveness timeout")
            }
            DropReason::SessionExpired => f.write_str("no sign of life within the session expiry"),
            DropReason::Backlog => f.write_str("backlog past its limit"),
        }
    }
}

/// One endpoint's connection and the items written on it whose answers
/// are still to come, oldest first. A new batch is written while the
/// answers to the one before are read, so the subscriber's round trip does
/// not stall the stream once per batch.
pub(crate) struct Pipe {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<Connection>,
    flight: VecDeque<Item>,
    /// What is in flight was written on an idle connection that had been
    /// used before, and nothing has been answered since: if the peer closes
    /// without a byte of answer, it had closed the idle connection before
    /// it saw them, and they are written again on a new one (once).
    maybe_stale: bool,
    /// A silent close was met and everything written again once already.
    retried: bool,
}

impl Pipe {
    pub(crate) fn new(addr: SocketAddr, timeout: Duration) -> Pipe {
        Pipe {
            addr,
            timeout,
            conn: None,
            flight: VecDeque::new(),
            maybe_stale: false,
            retried: false,
        }
    }

    /// Items written and not answered yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.flight.len()
    }

    /// Writes `items` after those in flight, on a new connection if there
    /// is none (or the idle one went stale).
    ///
    /// # Errors
    /// The connection could not be made or written to; the items stay in
    /// flight, for [`Pipe::unanswered`].
    pub(crate) fn write(&mut self, items: Vec<Item>) -> Result<(), DropReason> {
        let stale = self.flight.is_empty() && self.conn.as_ref().is_some_and(|c| c.is_stale());
        let start = self.flight.len();
        self.flight.extend(items);
        if self.conn.is_none() || stale {
            return self.reconnect();
        }
        if start == 0 {
            self.maybe_stale = true;
        }
        let written = self
            .conn
            .as_mut()
            .map_or(Ok(()), |c| send(c, self.flight.range(start..)));
        match written {
            Ok(()) => Ok(()),
            // Closed while idle, before it saw these: once, on a new one.
            Err(_) if self.maybe_stale && !self.retried => {
                self.retried = true;
                self.reconnect()
            }
            Err(e) => {
                self.conn = None;
                Err(reason_for_io(&e))
            }
        }
    }

    /// Reads the answers to the oldest `n` items in flight, moving each
    /// answered one to `answered`.
    ///
    /// # Errors
    /// The connection failed or an answer was not 2xx; what was answered
    /// before is in `answered`, the rest stays in flight.
    pub(crate) fn read(&mut self, n: usize, answered: &mut Vec<Item>) -> Result<(), DropReason> {
        let limits = net::response_limits();
        let mut left = n.min(self.flight.len());
        while left > 0 {
            let Some(conn) = self.conn.as_mut() else {
                self.reconnect()?;
                continue;
            };
            let response: Response = match conn.read_response(&limits) {
                Ok(response) => response,
                Err(e) if self.maybe_stale && !self.retried && is_silent_close(&e) => {
                    // It had closed the idle connection before it saw them.
                    self.retried = true;
                    self.reconnect()?;
                    continue;
                }
                Err(e) => {
                    self.conn = None;
                    return Err(match e {
                        crate::http::HttpError::Io(io) => reason_for_io(&io),
                        crate::http::HttpError::UnexpectedEof => {
                            DropReason::Io("closed before answering".into())
                        }
                        other => DropReason::BadResponse(other.to_string()),
                    });
                }
            };
            if !(200..300).contains(&response.status) {
                self.conn = None;
                return Err(DropReason::Refused(response.status));
            }
            self.maybe_stale = false;
            self.retried = false;
            answered.extend(self.flight.pop_front());
            left -= 1;
            if !response.keep_alive {
                // It closes after this answer: the rest go again on a new one.
                self.conn = None;
                if !self.flight.is_empty() {
                    self.reconnect()?;
                }
            }
        }
        Ok(())
    }

    /// After a failure: everything still in flight, oldest first; the
    /// connection is given up.
    pub(crate) fn unanswered(&mut self) -> Vec<Item> {
        self.conn = None;
        self.flight.drain(..).collect()
    }

    /// A new connection, with everything in flight written on it.
    fn reconnect(&mut self) -> Result<(), DropReason> {
        self.conn = None;
        let mut conn = Connection::connect(self.addr, self.timeout)
            .map_err(|e| DropReason::ConnectFailed(e.to_string()))?;
        send(&mut conn, self.flight.iter()).map_err(|e| reason_for_io(&e))?;
        self.conn = Some(conn);
        self.maybe_stale = false;
        Ok(())
    }
}

/// Writes `items` in one go.
fn send<'a>(conn: &mut Connection, items: impl Iterator<Item = &'a Item>) -> std::io::Result<()> {
    for item in items {
        match item {
            Item::Message(m) if m.qos == Qos::One => {
                let mut digits = [0u8; 20];
                let header = Some(("Message-Id", crate::server::decimal(m.id, &mut digits)));
                conn.send_with("/msg", Some("application/json"), header, &m.body)?;
            }
            Item::Message(m) => conn.send("/msg", Some("application/json"), &m.body)?,
            Item::Heartbeat => conn.send("/hb", None, b"")?,
        }
    }
    conn.flush()
}

/// The peer closed without a byte of answer: it had likely closed the idle
/// connection before it saw our request.
fn is_silent_close(e: &crate::http::HttpError) -> bool {
    match e {
        crate::http::HttpError::UnexpectedEof => true,
        crate::http::HttpError::Io(io) => net::is_peer_close(io),
        _ => false,
    }
}

fn reason_for_io(e: &std::io::Error) -> DropReason {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => DropReason::TimedOut,
        _ => DropReason::Io(e.to_string()),
    }
}
