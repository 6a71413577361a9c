//! The transport to one subscriber endpoint: one persistent connection,
//! batches of requests written in one go and their answers read in order
//! (PROTOCOL.md sections 2 and 6.2), and the reason when it fails.
//!
//! It knows nothing of queues, sessions or topics: it must not import
//! `registry`, `routing`'s table or `store`; it sends the items it is given.

use super::routing::Qos;
use super::session::Item;
use crate::http::Response;
use crate::net::{self, Connection};
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

/// A failed exchange: how many items were answered before it, and why.
struct Failure {
    acked: usize,
    reason: DropReason,
    /// Nothing came back at all, as when the peer had closed the idle
    /// connection just before we wrote: worth one retry on a fresh one.
    silent: bool,
}

/// Sends `batch` in order; on failure, returns why and how many items were
/// answered before it.
pub(crate) fn send_batch(
    conn: &mut Option<Connection>,
    addr: SocketAddr,
    batch: &[Item],
    timeout: Duration,
) -> Result<(), (DropReason, usize)> {
    let mut done = 0;
    let mut retried = false;
    while done < batch.len() {
        let reused = matches!(conn.as_ref(), Some(c) if !c.is_stale());
        let c = match conn {
            Some(c) if reused => c,
            _ => conn.insert(
                Connection::connect(addr, timeout)
                    .map_err(|e| (DropReason::ConnectFailed(e.to_string()), done))?,
            ),
        };
        match exchange(c, &batch[done..]) {
            Ok((acked, keep_alive)) => {
                done += acked;
                if !keep_alive {
                    *conn = None;
                }
            }
            Err(failure) => {
                *conn = None;
                done += failure.acked;
                if !(failure.silent && reused && !retried) {
                    return Err((failure.reason, done));
                }
                retried = true;
            }
        }
    }
    Ok(())
}

/// Writes `items` in one go, then reads their answers in order. Stops early
/// (returning how many were answered) if the endpoint asks to close.
fn exchange(conn: &mut Connection, items: &[Item]) -> Result<(usize, bool), Failure> {
    let io = |acked, e: std::io::Error| Failure {
        acked,
        silent: acked == 0,
        reason: reason_for_io(&e),
    };
    for item in items {
        let sent = match item {
            Item::Message(m) if m.qos == Qos::One => {
                let mut digits = [0u8; 20];
                let header = Some(("Message-Id", crate::server::decimal(m.id, &mut digits)));
                conn.send_with("/msg", Some("application/json"), header, &m.body)
            }
            Item::Message(m) => conn.send("/msg", Some("application/json"), &m.body),
            Item::Heartbeat => conn.send("/hb", None, b""),
        };
        sent.map_err(|e| io(0, e))?;
    }
    conn.flush().map_err(|e| io(0, e))?;
    let limits = net::response_limits();
    for (i, _) in items.iter().enumerate() {
        let response: Response = conn.read_response(&limits).map_err(|e| Failure {
            acked: i,
            silent: i == 0 && is_silent_close(&e),
            reason: match e {
                crate::http::HttpError::Io(io) => reason_for_io(&io),
                crate::http::HttpError::UnexpectedEof => {
                    DropReason::Io("closed before answering".into())
                }
                other => DropReason::BadResponse(other.to_string()),
            },
        })?;
        if !(200..300).contains(&response.status) {
            return Err(Failure {
                acked: i,
                silent: false,
                reason: DropReason::Refused(response.status),
            });
        }
        if !response.keep_alive {
            return Ok((i + 1, false));
        }
    }
    Ok((items.len(), true))
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
