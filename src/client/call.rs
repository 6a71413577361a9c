//! One call to the broker: a `POST` on the client's persistent connection
//! and its answer, within a deadline, retried on a fresh connection when the
//! connection was stale or (for a qos 1 publish) the answer was lost, and
//! sent to the next broker when the one in use could not even be reached
//! (see [`super::brokers`]).
//!
//! Owns the persistent connection's use; the framing is [`crate::http`]'s,
//! the socket [`crate::net`]'s. Never retries a request the broker may have
//! taken unless the request carries an `Idempotency-Key`, and then only at
//! that same broker, the one that knows the key.

use super::brokers::Failed;
use super::{Error, Inner, lock};
use crate::http::{HttpError, Response};
use crate::net::{self, Connection};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A request to the broker.
pub(super) struct Request<'a> {
    pub(super) target: &'a str,
    pub(super) body: &'a [u8],
    /// Sent as `Idempotency-Key`.
    pub(super) key: Option<&'a str>,
    /// Send it once more, on a fresh connection, if its answer is lost: only
    /// safe with a key, which the broker uses to take it once.
    pub(super) retry_lost: bool,
}

impl<'a> Request<'a> {
    /// A request that is never sent twice once the broker may have read it.
    pub(super) fn once(target: &'a str, body: &'a [u8]) -> Request<'a> {
        Request {
            target,
            body,
            key: None,
            retry_lost: false,
        }
    }
}

/// What a 202 said.
struct Answer {
    keep_alive: bool,
    message_id: Option<u64>,
}

impl Inner {
    /// A new connection to the broker at `index` of the list, resolved
    /// afresh, with the token; made by `deadline`.
    pub(super) fn connect(&self, index: usize, deadline: Instant) -> Result<Connection, Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Io(std::io::ErrorKind::TimedOut.into()));
        }
        let addr = resolve(self.brokers.addr(index))?;
        let mut conn = Connection::connect(addr, left)?;
        conn.authorize(self.token.as_deref());
        Ok(conn)
    }

    /// One request on the persistent connection; Ok only for a 202.
    pub(super) fn post(&self, target: &str, body: &[u8]) -> Result<(), Error> {
        self.call(&Request::once(target, body)).map(|_| ())
    }

    /// One request to the broker at `index` (in use or not), on a
    /// connection of its own, by `deadline`; Ok only for a 202. No retry.
    pub(super) fn post_to(
        &self,
        index: usize,
        target: &str,
        body: &[u8],
        deadline: Instant,
    ) -> Result<(), Error> {
        let mut conn = self.connect(index, deadline)?;
        send_and_read(&mut conn, &Request::once(target, body), deadline).map(|_| ())
    }

    /// Sends `request`; Ok for a 202, with its `Message-Id` if it had one.
    /// When the broker in use stops answering the client moves to the next
    /// one, and a request that did not reach the first is sent there once.
    pub(super) fn call(&self, request: &Request<'_>) -> Result<Option<u64>, Error> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let mut conn = lock(&self.conn);
        self.with_failover(|at| self.call_at(&mut conn, at.index, request))
    }

    /// Sends `request` to the broker at `index`, on the persistent
    /// connection if that one is there.
    fn call_at(
        &self,
        conn: &mut Option<(usize, Connection)>,
        index: usize,
        request: &Request<'_>,
    ) -> Result<Option<u64>, Failed> {
        // One deadline for the call, a retry on a stale connection included.
        let deadline = crate::deadline::after(self.timeout);
        let reused = matches!(conn.as_ref(), Some((i, c)) if *i == index && !c.is_stale());
        let first = self.exchange(conn, reused, index, request, deadline);
        match first {
            // The broker may have stored it and its answer got lost: the
            // same key makes the resend count once. The resend gets a
            // deadline of its own, as a timeout has spent the first. When
            // nothing reached the broker and there is another, failover
            // sends it there instead.
            Err(ref f)
                if request.retry_lost
                    && answer_lost(&f.error)
                    && (f.reached || !self.brokers.several()) =>
            {
                let e = &f.error;
                crate::log::debug!("client: no answer to {} ({e}); once more", request.target);
                let deadline = crate::deadline::after(self.timeout);
                let again = self.exchange(conn, false, index, request, deadline);
                // The first may have reached it, whatever the resend did.
                again.map_err(|f| Failed::reached(f.error))
            }
            // The broker closed the idle connection as we wrote: once more on
            // a fresh one, as HTTP clients do. Not after part of an answer
            // (`HttpError::UnexpectedEof`): that broker got the publish, and
            // sending it again would publish it twice.
            Err(Failed {
                error: Error::Io(ref e),
                ..
            }) if reused && net::is_peer_close(e) => {
                self.exchange(conn, false, index, request, deadline)
            }
            other => other,
        }
    }

    fn exchange(
        &self,
        conn: &mut Option<(usize, Connection)>,
        reuse: bool,
        index: usize,
        request: &Request<'_>,
        deadline: Instant,
    ) -> Result<Option<u64>, Failed> {
        let c = match conn {
            Some((_, c)) if reuse => c,
            _ => {
                let fresh = self.connect(index, deadline).map_err(Failed::unsent)?;
                &mut conn.insert((index, fresh)).1
            }
        };
        let result = send_and_read(c, request, deadline);
        match &result {
            Ok(answer) if answer.keep_alive => {}
            _ => *conn = None,
        }
        result
            .map(|answer| answer.message_id)
            .map_err(Failed::reached)
    }
}

/// Whether no answer came back: connecting, writing or reading failed (a
/// timeout included), or the answer was cut short. Not an answer the broker
/// did give, nor one that was not HTTP.
fn answer_lost(e: &Error) -> bool {
    matches!(e, Error::Io(_) | Error::Http(HttpError::UnexpectedEof))
}

/// The first socket address `broker` resolves to; a numeric address is taken
/// as it is, without a name lookup.
pub(super) fn resolve(broker: &str) -> Result<SocketAddr, Error> {
    if let Ok(addr) = broker.parse() {
        return Ok(addr);
    }
    broker
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| Error::Address(broker.to_owned()))
}

fn send_and_read(
    conn: &mut Connection,
    request: &Request<'_>,
    deadline: Instant,
) -> Result<Answer, Error> {
    let json = Some("application/json");
    let key = request.key.map(|k| ("Idempotency-Key", k));
    let sent = conn
        .send_with(request.target, json, key, request.body)
        .and_then(|()| conn.flush());
    // The broker may answer (413, say) and close before taking the whole
    // body: then its answer says more than our broken write. After any other
    // write error (a timeout) there is nothing to wait for.
    if let Err(e) = sent {
        if !net::is_peer_close(&e) {
            return Err(Error::Io(e));
        }
        return match conn.read_response_by(&net::response_limits(), deadline) {
            Ok(response) if response.status != 202 => Err(status_error(&response)),
            _ => Err(Error::Io(e)),
        };
    }
    let response = conn.read_response_by(&net::response_limits(), deadline)?;
    if response.status != 202 {
        return Err(status_error(&response));
    }
    Ok(Answer {
        keep_alive: response.keep_alive,
        message_id: message_id(&response),
    })
}

/// The answer's `Message-Id` (decimal u64); none from a Go broker. A value
/// that is not a number is taken as none: the publish did succeed.
fn message_id(response: &Response) -> Option<u64> {
    response.headers.get("Message-Id")?.trim().parse().ok()
}

pub(super) fn status_error(response: &Response) -> Error {
    Error::Status {
        status: response.status,
        reason: String::from_utf8_lossy(&response.body).trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::read_response;

    fn response(bytes: &[u8]) -> Response {
        read_response(&mut &bytes[..], &net::response_limits()).unwrap()
    }

    #[test]
    fn message_ids() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"HTTP/1.1 202 Accepted\r\nMessage-Id: 42\r\nContent-Length: 0\r\n\r\n", Some(42)),
            (b"HTTP/1.1 202 Accepted\r\nmessage-id:  7 \r\nContent-Length: 0\r\n\r\n", Some(7)),
            (b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", None),
            (b"HTTP/1.1 202 Accepted\r\nMessage-Id: x1\r\nContent-Length: 0\r\n\r\n", None),
            (b"HTTP/1.1 202 Accepted\r\nMessage-Id: -1\r\nContent-Length: 0\r\n\r\n", None),
            (
                b"HTTP/1.1 202 Accepted\r\nMessage-Id: 18446744073709551615\r\nContent-Length: 0\r\n\r\n",
                Some(u64::MAX),
            ),
            (
                b"HTTP/1.1 202 Accepted\r\nMessage-Id: 18446744073709551616\r\nContent-Length: 0\r\n\r\n",
                None,
            ),
        ];
        for &(bytes, want) in cases {
            assert_eq!(
                message_id(&response(bytes)),
                want,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn which_failures_lose_the_answer() {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, TimedOut};
        let lost = [
            Error::Io(TimedOut.into()),
            Error::Io(ConnectionAborted.into()),
            Error::Io(ConnectionRefused.into()),
            Error::Http(HttpError::UnexpectedEof),
        ];
        for e in &lost {
            assert!(answer_lost(e), "{e}");
        }
        let answered = [
            Error::Status {
                status: 503,
                reason: String::new(),
            },
            Error::Http(HttpError::BadRequest("malformed status line")),
            Error::Closed,
            Error::Address("nowhere".into()),
        ];
        for e in &answered {
            assert!(!answer_lost(e), "{e}");
        }
    }
}
