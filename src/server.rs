//! The request loop of one accepted HTTP/1.1 connection, shared by the broker
//! and by the client's callback listener: reads requests in order (pipelined
//! or not), hands each to a handler, writes the answers in order, and closes
//! on `Connection: close`, a framing error, the idle timeout or the peer's
//! close.
//!
//! Owns the socket of one peer; knows nothing of topics or subscribers.

use crate::http::{self, BodyFraming, HttpError, Limits, RequestHead};
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Read buffer per connection: a pipelined burst of small requests is parsed
/// from one read.
const READ_BUFFER: usize = 16 * 1024;
/// Write buffer per connection: answers to a burst leave in one write.
const WRITE_BUFFER: usize = 16 * 1024;

/// A handler's answer to one request.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    /// Short reason for an error status; empty for success.
    pub(crate) text: String,
    /// Close the connection after this answer.
    pub(crate) close: bool,
}

impl Reply {
    /// `202 Accepted` with an empty body.
    pub(crate) fn accepted() -> Reply {
        Reply::status(202, "")
    }

    pub(crate) fn status(status: u16, text: impl Into<String>) -> Reply {
        Reply {
            status,
            text: text.into(),
            close: false,
        }
    }
}

/// Timeouts and limits of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) limits: Limits,
    /// Close a connection that sends nothing for this long.
    pub(crate) idle_timeout: Duration,
    /// Give up writing an answer after this long.
    pub(crate) write_timeout: Duration,
}

/// The socket of one connection: reads go through a `BufReader` over it, and
/// answers collect in `out`. Before a read that would wait on the peer, `out`
/// is sent: answers to a pipelined burst leave in one write, and no answer
/// waits behind a request that has not fully arrived.
struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
}

impl Conn {
    fn send(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            (&self.stream).write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.send()?;
        (&self.stream).read(buf)
    }
}

/// Serves `stream` until it closes. `handle` gets each request head and its
/// whole body; `keep_going` is asked before keeping a connection open.
///
/// # Errors
/// Transport errors other than the idle timeout (for logging only).
pub(crate) fn serve(
    stream: TcpStream,
    settings: &Settings,
    keep_going: &dyn Fn() -> bool,
    handle: &mut dyn FnMut(&RequestHead, &[u8]) -> Reply,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(settings.idle_timeout))?;
    stream.set_write_timeout(Some(settings.write_timeout))?;
    let conn = Conn {
        stream,
        out: Vec::with_capacity(WRITE_BUFFER),
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, conn);
    let limits = &settings.limits;
    loop {
        let head = match http::read_request_head(&mut reader, limits) {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(e) => return answer_error(reader.get_mut(), e),
        };
        if head.expect_continue {
            if matches!(head.framing, BodyFraming::Length(n) if n > limits.max_body) {
                return answer_error(reader.get_mut(), HttpError::PayloadTooLarge);
            }
            reader
                .get_mut()
                .out
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            reader.get_mut().send()?;
        }
        let body = match http::read_body(&mut reader, head.framing, limits) {
            Ok(body) => body,
            Err(e) => return answer_error(reader.get_mut(), e),
        };
        let reply = handle(&head, &body);
        let close = reply.close || !head.keep_alive || !keep_going();
        // HTTP/1.0 peers close unless told the connection stays.
        let keep_10 = !close && head.version == http::Version::Http10;
        let conn = reader.get_mut();
        write_reply(&mut conn.out, &reply, close, keep_10)?;
        if close {
            break;
        }
        if conn.out.len() >= WRITE_BUFFER {
            conn.send()?;
        }
    }
    let conn = reader.get_mut();
    conn.send()?;
    linger_close(&conn.stream, LINGER);
    Ok(())
}

/// How long a connection thread waits, after its last answer, for the peer
/// to read the answers and close: reading (and discarding) what it sends.
const LINGER: Duration = Duration::from_secs(2);

/// The same for a connection refused on the accept thread, which must not
/// be held up for long.
const REFUSE_LINGER: Duration = Duration::from_millis(50);

/// Closes our side after the last answer, then reads what the peer still
/// sends until it closes too, for at most `linger`. Closing a socket with
/// unread input makes the kernel send a reset, which destroys answers the
/// peer has not read yet.
fn linger_close(stream: &TcpStream, linger: Duration) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = std::time::Instant::now() + linger;
    let mut sink = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match (&*stream).read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Writes `reply` to a connection we will not serve, then closes it.
pub(crate) fn refuse(stream: &mut TcpStream, reply: &Reply) {
    let mut out = Vec::new();
    if write_reply(&mut out, reply, true, false).is_err() || stream.write_all(&out).is_err() {
        return;
    }
    linger_close(stream, REFUSE_LINGER);
}

fn write_reply(
    writer: &mut impl Write,
    reply: &Reply,
    close: bool,
    keep_alive_10: bool,
) -> io::Result<()> {
    let allow: &[(&str, &str)] = if reply.status == 405 {
        &[("Allow", "POST")]
    } else if keep_alive_10 {
        &[("Connection", "keep-alive")]
    } else {
        &[]
    };
    let body = if reply.text.is_empty() {
        String::new()
    } else {
        format!("{}\n", reply.text)
    };
    http::write_response(writer, reply.status, allow, body.as_bytes(), close)
}

/// Sends the status for a framing error, then ends the connection.
fn answer_error(conn: &mut Conn, e: HttpError) -> io::Result<()> {
    if let Some(status) = e.status() {
        write_reply(
            &mut conn.out,
            &Reply::status(status, e.to_string()),
            true,
            false,
        )?;
        conn.send()?;
        linger_close(&conn.stream, LINGER);
    }
    match e {
        HttpError::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        HttpError::Io(io) => Err(io),
        _ => conn.send(),
    }
}
