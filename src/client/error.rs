//! The client's error type.

use crate::http::HttpError;
use std::fmt;
use std::io;

/// Why a client call failed.
///
/// ```no_run
/// use message_broker::client::{Client, Error};
/// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
/// match client.publish("hello/world", "MyData") {
///     Ok(()) => {}
///     Err(Error::Status { status: 413, .. }) => eprintln!("message too large"),
///     Err(Error::Status { status: 507, .. }) => eprintln!("broker could not store it"),
///     Err(e) => eprintln!("publish failed: {e}"),
/// }
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Connecting, writing or reading failed (refused, reset, timed out).
    Io(io::Error),
    /// The broker's answer was not valid HTTP.
    Http(HttpError),
    /// The broker answered with a status other than 202. 507 means it
    /// could not store a qos 1 or retained message (its disk is full, say):
    /// nothing was stored.
    Status {
        /// The HTTP status code, e.g. 400.
        status: u16,
        /// The broker's reason, from the response body.
        reason: String,
    },
    /// The topic or pattern cannot be sent: empty, with a control character,
    /// a publish's level that is exactly `+` or `#`, or a pattern with `+` or
    /// `#` inside a level or `#` not last.
    InvalidTopic(&'static str),
    /// The `Idempotency-Key` cannot be sent: it must be 1 to
    /// [`MAX_IDEMPOTENCY_KEY`](super::MAX_IDEMPOTENCY_KEY) visible ASCII
    /// characters.
    InvalidIdempotencyKey(&'static str),
    /// The broker address did not resolve to any socket address.
    Address(String),
    /// [`Client::builder`](super::Client::builder) was given an empty list
    /// of brokers.
    NoBroker,
    /// The client was closed.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "broker connection failed: {e}"),
            Error::Http(e) => write!(f, "broker sent an invalid response: {e}"),
            Error::Status {
                status: 507,
                reason,
            } if reason.is_empty() => f.write_str("broker could not store the message (507)"),
            Error::Status {
                status: 507,
                reason,
            } => write!(f, "broker could not store the message (507): {reason}"),
            Error::Status { status, reason } if reason.is_empty() => {
                write!(f, "broker answered {status}")
            }
            Error::Status { status, reason } => write!(f, "broker answered {status}: {reason}"),
            Error::InvalidTopic(why) => write!(f, "invalid topic: {why}"),
            Error::InvalidIdempotencyKey(why) => write!(f, "invalid idempotency key: {why}"),
            Error::Address(addr) => write!(f, "cannot resolve broker address {addr:?}"),
            Error::NoBroker => f.write_str("no broker address given"),
            Error::Closed => f.write_str("client is closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Http(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<HttpError> for Error {
    fn from(e: HttpError) -> Error {
        match e {
            HttpError::Io(io) => Error::Io(io),
            other => Error::Http(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn status_texts() {
        let status = |status, reason: &str| Error::Status {
            status,
            reason: reason.into(),
        };
        let cases = [
            (status(413, ""), "broker answered 413"),
            (status(400, "bad qos"), "broker answered 400: bad qos"),
            (status(507, ""), "broker could not store the message (507)"),
            (
                status(507, "no space left on device"),
                "broker could not store the message (507): no space left on device",
            ),
            (
                Error::InvalidIdempotencyKey("empty"),
                "invalid idempotency key: empty",
            ),
            (Error::NoBroker, "no broker address given"),
        ];
        for (error, want) in cases {
            assert_eq!(error.to_string(), want);
        }
    }
}
