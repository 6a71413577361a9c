//! The NATS client protocol, pure: the incremental parser of what a server
//! sends (`INFO`, `MSG`, `HMSG`, `PING`, `PONG`, `+OK`, `-ERR`) and the
//! encoders of what the client sends.
//!
//! - here: the operations, the errors and the [`Parser`]'s framing;
//! - `line`: one control line, its operation and arguments;
//! - `header`: reading a message's header block ([`header`]);
//! - `write`: `CONNECT`, `PUB`, `HPUB`, `SUB`, `UNSUB`, `PING`, `PONG`.
//!
//! **Owns:** the framing of server operations and its limits ([`MAX_LINE`]
//! for a control line, the caller's `max_payload` for a message, checked on
//! the control line before any payload is buffered).
//!
//! **Must never:** own a socket, a thread or a lock; panic on any input; or
//! buffer more than one control line or one message (plus its CRLF).

use std::fmt;

mod header;
mod line;
mod write;

use line::{Line, parse_line};

pub(crate) use header::header;
pub(crate) use write::{Connect, PING, PONG, write_connect, write_hpub, write_sub, write_unsub};

/// The longest control line (an `INFO` with its JSON, a `MSG` line), CRLF
/// included. A line is refused as soon as more than this many bytes of it
/// are buffered.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Capacity the buffer keeps when empty; more (left by a large message) is
/// given back.
const KEEP_CAPACITY: usize = 2 * MAX_LINE;

/// An operation from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerOp {
    /// `INFO {json}`: the server's settings.
    Info(Info),
    /// `MSG` or `HMSG`: a message for one of our subscriptions.
    Msg(Msg),
    /// `PING`: answer with [`PONG`].
    Ping,
    /// `PONG`: the answer to our `PING`.
    Pong,
    /// `+OK` (verbose mode only).
    Ok,
    /// `-ERR`: the text, quotes stripped.
    Err(String),
}

/// What the bridge needs of `INFO`; other fields are ignored, and a field
/// of the wrong type reads as absent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Info {
    /// Largest message (headers included) the server accepts.
    pub(crate) max_payload: Option<u64>,
    /// Whether the server takes `HPUB` and sends `HMSG`.
    pub(crate) headers: bool,
    /// Whether CONNECT must carry credentials.
    pub(crate) auth_required: bool,
    /// The server's id, for logs.
    pub(crate) server_id: Option<String>,
}

/// A message delivered on a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Msg {
    /// The subject it was published to. Bytes that are not UTF-8 (a NATS
    /// client may publish such a subject) are written `%XX`, so the message
    /// is not lost to the connection and the subject fails to decode as a
    /// topic instead.
    pub(crate) subject: String,
    /// Our subscription id.
    pub(crate) sid: u64,
    /// The reply subject, if any (same treatment as `subject`).
    pub(crate) reply: Option<String>,
    /// For `HMSG`, the raw header block including the `NATS/1.0` line and
    /// the blank line that ends it; read it with [`header`].
    pub(crate) headers: Option<Vec<u8>>,
    /// The payload, raw.
    pub(crate) payload: Vec<u8>,
}

/// Why the bytes from the server are not the protocol. After any of these
/// the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProtoError {
    /// A control line longer than [`MAX_LINE`].
    LineTooLong,
    /// An operation we do not know; its first 32 bytes.
    UnknownOp(String),
    /// Wrong number or form of arguments, with what is wrong.
    BadArgs(&'static str),
    /// A message larger than the parser's `max_payload`.
    PayloadTooLarge {
        /// The declared size (headers included).
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A payload not followed by CRLF.
    MissingCrlf,
    /// `INFO` whose argument is not a JSON object.
    BadInfo,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::LineTooLong => write!(f, "control line longer than {MAX_LINE} bytes"),
            ProtoError::UnknownOp(op) => write!(f, "unknown operation '{op}'"),
            ProtoError::BadArgs(why) => write!(f, "bad arguments: {why}"),
            ProtoError::PayloadTooLarge { size, max } => {
                write!(
                    f,
                    "message of {size} bytes is larger than the {max} allowed"
                )
            }
            ProtoError::MissingCrlf => f.write_str("message payload not followed by CRLF"),
            ProtoError::BadInfo => f.write_str("INFO is not a JSON object"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// Incremental parser over bytes read from the socket.
///
/// A control line ends at `\n`, an `\r` before it being dropped: servers
/// always send CRLF, and accepting a bare LF there costs nothing (the
/// server itself is as lenient). A payload must be followed by exactly CRLF.
///
/// Bound: when [`Parser::next`] has answered `Ok(None)`,
/// [`Parser::buffered`] is at most `MAX_LINE.max(max_payload + 2)`, so a
/// caller that drains `next` after each read holds at most that plus one
/// read.
pub(crate) struct Parser {
    /// Bytes read; those before `start` are parsed.
    buf: Vec<u8>,
    /// The first byte not yet parsed.
    start: usize,
    /// How many bytes from `start` are known to hold no `\n`, so a line
    /// arriving in pieces is scanned once.
    scanned: usize,
    /// A message whose control line is parsed, waiting for its payload.
    pending: Option<line::Pending>,
    /// The largest message accepted.
    max_payload: usize,
}

impl Parser {
    /// A parser accepting messages up to `max_payload` bytes, headers
    /// included (use the server's `INFO` value, or the broker's own limit).
    pub(crate) fn new(max_payload: usize) -> Parser {
        Parser {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            pending: None,
            max_payload,
        }
    }

    /// Appends bytes read from the socket.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            // Once per read, not once per operation: only the tail moves.
            self.buf.drain(..self.start);
            self.start = 0;
            if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete operation, `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// A [`ProtoError`] as soon as the bytes cannot be the protocol; after
    /// one the connection must be dropped (the parser's state is then
    /// unspecified, though it never panics).
    pub(crate) fn next(&mut self) -> Result<Option<ServerOp>, ProtoError> {
        if self.pending.is_some() {
            return self.take_payload();
        }
        let Some(end) = self.find_newline()? else {
            return Ok(None);
        };
        let line = self
            .buf
            .get(self.start..self.start + end)
            .unwrap_or_default();
        let parsed = parse_line(line, self.max_payload);
        self.start += end + 1;
        self.scanned = 0;
        match parsed? {
            Line::Op(op) => Ok(Some(op)),
            Line::Msg(pending) => {
                self.pending = Some(pending);
                self.take_payload()
            }
        }
    }

    /// Bytes buffered and not yet parsed (for tests of the bound).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The offset from `start` of the `\n` ending the control line, if it
    /// is buffered.
    fn find_newline(&mut self) -> Result<Option<usize>, ProtoError> {
        let unparsed = self.buf.get(self.start..).unwrap_or_default();
        // A line of MAX_LINE bytes has its `\n` at offset MAX_LINE - 1.
        let window = unparsed.len().min(MAX_LINE);
        let from = self.scanned.min(window);
        let tail = unparsed.get(from..window).unwrap_or_default();
        if let Some(i) = tail.iter().position(|&b| b == b'\n') {
            return Ok(Some(from + i));
        }
        if unparsed.len() > MAX_LINE {
            return Err(ProtoError::LineTooLong);
        }
        self.scanned = window;
        Ok(None)
    }

    /// The pending message, once its payload and CRLF are buffered.
    fn take_payload(&mut self) -> Result<Option<ServerOp>, ProtoError> {
        let Some(total) = self.pending.as_ref().map(|p| p.total) else {
            return Ok(None);
        };
        let unparsed = self.buf.get(self.start..).unwrap_or_default();
        let Some(body) = unparsed.get(..total) else {
            return Ok(None);
        };
        match unparsed.get(total..total.saturating_add(2)) {
            Some(b"\r\n") => {}
            Some(_) => return Err(ProtoError::MissingCrlf),
            None if unparsed.get(total).is_some_and(|&b| b != b'\r') => {
                return Err(ProtoError::MissingCrlf);
            }
            None => return Ok(None),
        }
        let Some(p) = self.pending.take() else {
            return Ok(None);
        };
        let (headers, payload) = match p.header_len {
            Some(h) => {
                let (headers, payload) = body.split_at(h.min(body.len()));
                (Some(headers.to_vec()), payload.to_vec())
            }
            None => (None, body.to_vec()),
        };
        self.start += total + 2;
        Ok(Some(ServerOp::Msg(Msg {
            subject: p.subject,
            sid: p.sid,
            reply: p.reply,
            headers,
            payload,
        })))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz_tests;
