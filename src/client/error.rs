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
    /// The broker answered with a status other than 202.
    Status {
        /// The HTTP status code, e.g. 400.
        status: u16,
        /// The broker's reason, from the response body.
        reason: String,
    },
    /// The topic cannot be sent (empty, or with a control character).
    InvalidTopic(&'static str),
    /// The broker address did not resolve to any socket address.
    Address(String),
    /// The client was closed.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "broker connection failed: {e}"),
            Error::Http(e) => write!(f, "broker sent an invalid response: {e}"),
            Error::Status { status, reason } if reason.is_empty() => {
                write!(f, "broker answered {status}")
            }
            Error::Status { status, reason } => write!(f, "broker answered {status}: {reason}"),
            Error::InvalidTopic(why) => write!(f, "invalid topic: {why}"),
            Error::Address(addr) => write!(f, "cannot resolve broker address {addr:?}"),
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
