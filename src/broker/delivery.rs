//! The transport to one subscriber endpoint: one persistent connection,
//! batches of requests written in one go, the next written before the
//! answers to the last are read, answers read in order (PROTOCOL.md
//! sections 2 and 6.2), and the reason when it fails.
//!
//! It knows nothing of queues, sessions or topics: it must not import
//! `registry`, `routing`'s table or `store`; it sends the items it is given.

use super::routing::Qos;
use super::session::{BATCH_MAX, Item};
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
    /// It unsubscribed from its last pattern.
    Unsubscribed,
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
            DropReason::Unsubscribed => 8,
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
            DropReason::Unsubscribed => f.write_str("unsubscribed from its last pattern"),
        }
    }
}

/// Bytes of bodies in flight past which no further batch is written before
/// answers are read.
pub(crate) const WINDOW_BYTES: usize = 1 << 20;

/// One endpoint's connection and the requests written on it whose answers
/// have not come yet, oldest first. The worker writes the next batch before
/// it reads the answers to the one before, so the subscriber finds its next
/// requests at hand while it answers: a window of up to two batches
/// (2 × [`BATCH_MAX`] requests), or [`WINDOW_BYTES`] of bodies.
pub(crate) struct Pipeline {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<Connection>,
    sent: VecDeque<Item>,
    /// Bytes of the bodies in `sent`.
    sent_bytes: usize,
    /// The oldest request in flight went out on a connection that had sat
    /// idle, and nothing has answered since: a close without a byte of
    /// answer is the peer having closed it while idle, worth one resend.
    may_resend: bool,
    /// Why a lent write failed ([`Pipeline::write_lent`]), for the delivery
    /// thread's next [`Pipeline::read`].
    lent_error: Option<DropReason>,
}

impl Pipeline {
    pub(crate) fn new(addr: SocketAddr, timeout: Duration) -> Pipeline {
        Pipeline {
            addr,
            timeout,
            conn: None,
            sent: VecDeque::new(),
            sent_bytes: 0,
            may_resend: false,
            lent_error: None,
        }
    }

    /// Whether it holds an open connection with nothing in flight: worth
    /// parking while the delivery thread sleeps.
    pub(crate) fn is_idle_open(&self) -> bool {
        self.sent.is_empty() && self.is_open()
    }

    /// Whether a publisher's thread may write on it now: it is open, no
    /// lent write failed, and the window has room.
    pub(crate) fn may_lend(&self) -> bool {
        self.lent_error.is_none() && self.has_room() && self.is_open()
    }

    /// Connected, with no stray bytes read from the peer.
    fn is_open(&self) -> bool {
        matches!(&self.conn, Some(c) if !c.has_buffered())
    }

    /// Writes `batch` (emptying it) on the open connection, from a
    /// publisher's thread while the delivery thread sleeps: the message
    /// reaches the subscriber without waiting for that thread to wake. It
    /// never connects and never waits for an answer; the batch counts as in
    /// flight, and a failure is left for the delivery thread's next
    /// [`Pipeline::read`], which resends once on a new connection (the
    /// connection sat idle) or reports it.
    pub(crate) fn write_lent(&mut self, batch: &mut Vec<Item>) {
        let from = self.sent.len();
        self.sent_bytes += batch.iter().map(Item::size).sum::<usize>();
        self.sent.extend(batch.drain(..));
        if from == 0 {
            // It sat idle: a close without an answer is worth a resend.
            self.may_resend = true;
        }
        if self.conn.is_none() {
            self.lent_error = Some(DropReason::Io("not connected".into()));
        } else if let Err(reason) = self.write_from(from) {
            self.lent_error = Some(reason);
        }
    }

    /// A pipeline to the same endpoint, not connected: what the delivery
    /// thread holds while its own is parked.
    pub(crate) fn unconnected(&self) -> Pipeline {
        Pipeline::new(self.addr, self.timeout)
    }

    /// Requests written and not yet answered.
    pub(crate) fn in_flight(&self) -> usize {
        self.sent.len()
    }

    /// Whether another batch may go out before the answers in flight are
    /// read: at most one batch is in flight, and few enough bytes.
    pub(crate) fn has_room(&self) -> bool {
        self.sent.len() <= BATCH_MAX && self.sent_bytes < WINDOW_BYTES
    }

    /// Writes `batch` (emptying it) after the requests in flight. On an
    /// error the batch counts as in flight (see [`Pipeline::take_unanswered`]).
    pub(crate) fn write(&mut self, batch: &mut Vec<Item>) -> Result<(), DropReason> {
        let from = self.sent.len();
        self.sent_bytes += batch.iter().map(Item::size).sum::<usize>();
        self.sent.extend(batch.drain(..));
        if from == 0 {
            let reused = matches!(&self.conn, Some(c) if !c.is_stale());
            if !reused {
                self.conn = None;
            }
            self.may_resend = reused;
        }
        match self.write_from(from) {
            Err(_) if from == 0 && self.may_resend => self.resend(),
            other => other,
        }
    }

    /// Reads the answers to the oldest `n` requests in flight, moving each
    /// answered one to `answered`, in order.
    pub(crate) fn read(&mut self, n: usize, answered: &mut Vec<Item>) -> Result<(), DropReason> {
        if let Some(reason) = self.lent_error.take() {
            if self.may_resend {
                self.resend()?;
            } else {
                return Err(reason);
            }
        }
        let limits = net::response_limits();
        for _ in 0..n.min(self.sent.len()) {
            let response = loop {
                let Some(conn) = self.conn.as_mut() else {
                    return Err(DropReason::Io("not connected".into()));
                };
                match conn.read_status(&limits) {
                    Ok(response) => break response,
                    Err(e) if self.may_resend && is_silent_close(&e) => self.resend()?,
                    Err(e) => {
                        self.conn = None;
                        return Err(reason_for_http(e));
                    }
                }
            };
            self.may_resend = false;
            if !(200..300).contains(&response.status) {
                self.conn = None;
                return Err(DropReason::Refused(response.status));
            }
            let item = self.sent.pop_front().expect("a request in flight");
            self.sent_bytes -= item.size();
            answered.push(item);
            if !response.keep_alive {
                // The peer closes after this answer: the rest in flight were
                // never read, so they go again on a new connection.
                self.conn = None;
                if !self.sent.is_empty() {
                    self.write_from(0)?;
                }
            }
        }
        Ok(())
    }

    /// After a failure: the requests in flight, oldest first, into `into`.
    pub(crate) fn take_unanswered(&mut self, into: &mut Vec<Item>) {
        into.extend(self.sent.drain(..));
        self.sent_bytes = 0;
        self.conn = None;
        self.lent_error = None;
    }

    /// Writes everything in flight again on a new connection, once.
    fn resend(&mut self) -> Result<(), DropReason> {
        self.may_resend = false;
        self.conn = None;
        self.write_from(0)
    }

    /// Writes the requests in flight from `from` on (all of them on a new
    /// connection, made here if there is none).
    fn write_from(&mut self, from: usize) -> Result<(), DropReason> {
        let from = if self.conn.is_some() { from } else { 0 };
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(
                Connection::connect(self.addr, self.timeout)
                    .map_err(|e| DropReason::ConnectFailed(e.to_string()))?,
            ),
        };
        let written = self
            .sent
            .range(from..)
            .try_for_each(|item| send_item(conn, item))
            .and_then(|()| conn.flush());
        written.map_err(|e| {
            self.conn = None;
            reason_for_io(&e)
        })
    }
}

/// Buffers one request for `item`.
fn send_item(conn: &mut Connection, item: &Item) -> std::io::Result<()> {
    match item {
        Item::Message(m) if m.qos == Qos::One => {
            let mut digits = [0u8; 20];
            let header = Some(("Message-Id", crate::http::decimal(m.id, &mut digits)));
            conn.send_with("/msg", Some("application/json"), header, &m.body)
        }
        Item::Message(m) => conn.send("/msg", Some("application/json"), &m.body),
        Item::Heartbeat => conn.send("/hb", None, b""),
    }
}

fn reason_for_http(e: crate::http::HttpError) -> DropReason {
    match e {
        crate::http::HttpError::Io(io) => reason_for_io(&io),
        crate::http::HttpError::UnexpectedEof => DropReason::Io("closed before answering".into()),
        other => DropReason::BadResponse(other.to_string()),
    }
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
