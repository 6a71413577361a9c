//! The request loop of one accepted HTTP/1.1 connection, shared by the broker
//! and by the client's callback listener: reads requests in order (pipelined
//! or not), hands each to a handler, writes the answers in order, and closes
//! on `Connection: close`, a framing error, the idle timeout or the peer's
//! close.
//!
//! Owns the socket of one peer; knows nothing of topics or subscribers.

use crate::deadline::{self, Socket, is_timeout};
use crate::http::{self, BodyFraming, HttpError, Limits, PLAIN_ACCEPTED, RequestHead, decimal};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Read buffer per connection: a pipelined burst of small requests is parsed
/// from one read.
const READ_BUFFER: usize = 16 * 1024;
/// Write buffer per connection (answers leave in writes of [`EARLY_FLUSH`]).
const WRITE_BUFFER: usize = 16 * 1024;
/// Answers to a pipelined burst leave once this much of them is ready
/// (about 20 plain 202s), not all at its end: the peer sends its next
/// requests while the rest of the burst is worked on. At W=64 that took
/// 1 → 1 from ~355,000 to ~495,000 deliveries/s; half of it cost 10 → 10
/// at W=16 about 7 % (more writes), this much nothing measurable.
const EARLY_FLUSH: usize = 1024;

/// Answers held back at most, in order, before the loop waits for them.
const MAX_LATER: usize = 128;

/// An answer that is not known yet (a publish waiting for its log sync):
/// the loop goes on reading pipelined requests, so that one sync covers
/// them all, and calls this before it writes the answers in order.
pub(crate) struct Later(pub(crate) Box<dyn FnOnce() -> Reply + Send>);

impl std::fmt::Debug for Later {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Later")
    }
}

/// A handler's answer to one request.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    /// The body, sent as it is.
    pub(crate) body: String,
    /// Extra headers (`Allow`, `Content-Type`), at most
    /// [`MAX_REPLY_HEADERS`].
    pub(crate) headers: &'static [(&'static str, &'static str)],
    /// Close the connection after this answer.
    pub(crate) close: bool,
    /// A `Message-Id` header (a publish's answer).
    pub(crate) message_id: Option<u64>,
    /// Set: the real answer comes from this; the rest is ignored.
    pub(crate) later: Option<Later>,
    /// Set: no answer is written; the connection is handed to
    /// [`Handler::take_over`] (a stream), then closed.
    pub(crate) take_over: bool,
}

impl Reply {
    /// An answer that `later` gives.
    pub(crate) fn later(later: impl FnOnce() -> Reply + Send + 'static) -> Reply {
        let mut reply = Reply::status(0, "");
        reply.later = Some(Later(Box::new(later)));
        reply
    }

    /// `202 Accepted` with an empty body.
    pub(crate) fn accepted() -> Reply {
        Reply::status(202, "")
    }

    /// `status` with a short plain-text reason (none if `text` is empty).
    pub(crate) fn status(status: u16, text: impl Into<String>) -> Reply {
        let mut body = text.into();
        if !body.is_empty() {
            body.push('\n');
        }
        let headers: &'static [(&'static str, &'static str)] = if status == 405 {
            &[("Allow", "POST")]
        } else {
            &[]
        };
        Reply {
            status,
            body,
            headers,
            close: false,
            message_id: None,
            later: None,
            take_over: false,
        }
    }

    /// No answer: the handler takes the connection over.
    pub(crate) fn take_over() -> Reply {
        let mut reply = Reply::status(0, "");
        reply.take_over = true;
        reply
    }
}

/// Timeouts and limits of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) limits: Limits,
    /// Close a connection that sends nothing for this long.
    pub(crate) idle_timeout: Duration,
    /// Answer 408 and close when a request has not fully arrived this long
    /// after its first byte (slowloris).
    pub(crate) request_timeout: Duration,
    /// Give up writing an answer after this long.
    pub(crate) write_timeout: Duration,
}

/// What a connection's owner does with it: [`serve`] calls `begin` when the
/// first byte of a request arrives, `handle` with the whole request, and
/// `end` once its answer is queued.
pub(crate) trait Handler {
    /// The first byte of a request arrived; `false` closes the connection
    /// without reading it (it was closed from outside meanwhile).
    fn begin(&mut self) -> bool {
        true
    }
    /// Answers one whole request.
    fn handle(&mut self, head: &RequestHead, body: &[u8]) -> Reply;
    /// The answer is queued; `traffic` is what crossed the socket since the
    /// last call.
    fn end(&mut self, _traffic: Traffic) {}
    /// Nothing of a next request has arrived: the answers so far are about
    /// to be written, then the connection waits, idle.
    fn idle(&mut self) {}
    /// The answers are written.
    fn sent(&mut self) {}
    /// Asked after each answer: `false` closes the connection.
    fn keep_going(&self) -> bool {
        true
    }
    /// The last request was answered with [`Reply::take_over`]: the
    /// connection is the handler's (every earlier answer is written) until
    /// this returns; then it is closed. Returns the bytes written.
    ///
    /// # Errors
    /// Transport errors (for logging only).
    fn take_over(&mut self, _socket: &mut Socket) -> io::Result<u64> {
        Ok(0)
    }
    /// What to run before each read from the socket (one that may wait for
    /// the peer), before held answers are waited for, and before the
    /// closing linger: work a burst of requests left for when the burst is
    /// read, which must not wait on anything else.
    fn before_read(&mut self) -> Option<BeforeRead> {
        None
    }
}

/// See [`Handler::before_read`].
pub(crate) type BeforeRead = Box<dyn FnMut() + Send>;

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// The peer closed it between requests.
    Peer,
    /// No request began within the idle timeout.
    Idle,
    /// After an answer: `Connection: close`, HTTP/1.0, or the owner stopping.
    Done,
    /// Closed from outside ([`Handler::begin`] said no).
    Evicted,
    /// A request broke a rule or a limit, or did not arrive in time: its
    /// status (400, 408, 413, 414, 417, 431, 505) was sent.
    Refused(u16),
    /// The peer went away in the middle of a request.
    Truncated,
    /// The handler took the connection over (a stream) and is done with it.
    Streamed,
}

/// Bytes read from and written to a connection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Traffic {
    pub(crate) read: u64,
    pub(crate) written: u64,
}

/// The socket of one connection: reads go through a `BufReader` over it, and
/// answers collect in `out`. Before a read that would wait on the peer, `out`
/// is sent, so no answer waits behind a request that has not fully arrived;
/// answers to a pipelined burst also leave as each [`EARLY_FLUSH`] of them is
/// ready.
struct Conn {
    socket: Socket,
    out: Vec<u8>,
    traffic: Traffic,
    /// While a request is being read: when it must have arrived. Set at
    /// the first read the request waits for (the bytes of a pipelined burst
    /// are read by then: a request that needs no read sets no clock).
    deadline: Option<Instant>,
    /// A request is being read.
    in_request: bool,
    request_timeout: Duration,
    idle_timeout: Duration,
    write_timeout: Duration,
    /// A write failed (or timed out): the peer is not reading, and nothing
    /// more is sent on this connection.
    write_failed: bool,
    /// Answers held back, in order, behind one that is not known yet.
    held: Vec<Held>,
    before_read: Option<BeforeRead>,
}

impl Conn {
    /// Waits for the held answers, in order, and queues them in `out`.
    fn settle(&mut self) -> io::Result<()> {
        if !self.held.is_empty() {
            // Held answers may wait for the log: nothing the burst left
            // for later waits with them.
            self.run_before_read();
        }
        for answer in self.held.drain(..) {
            answer.write(&mut self.out)?;
        }
        Ok(())
    }

    /// Writes `out`; what was written leaves it, even if a later part fails.
    fn send(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            if self.write_failed {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            match self
                .socket
                .write_by(&self.out, deadline::after(self.write_timeout))
            {
                Ok(0) => self.write_failed = true,
                Ok(n) => {
                    self.traffic.written += n as u64;
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.write_failed = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Runs the handler's [`Handler::before_read`] work.
    fn run_before_read(&mut self) {
        if let Some(before_read) = self.before_read.as_mut() {
            before_read();
        }
    }

    fn take_traffic(&mut self) -> Traffic {
        std::mem::take(&mut self.traffic)
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Held answers wait only for requests that have already arrived:
        // before a read that may wait on the peer, they are settled and sent.
        // The request being read is not charged for that wait.
        self.run_before_read();
        if !self.held.is_empty() {
            let started = Instant::now();
            self.settle()?;
            self.deadline = self.deadline.map(|d| d + started.elapsed());
        }
        self.send()?;
        // Between requests the idle timeout, then a silent close; during
        // one, its deadline, then a 408 (which the watchdog, if it is the
        // one that cuts the read, sends itself: after it nothing can be).
        let (deadline, farewell) = match self.deadline {
            None if !self.in_request => (deadline::after(self.idle_timeout), None),
            None => {
                let deadline = deadline::after(self.request_timeout);
                self.deadline = Some(deadline);
                (deadline, Some(timeout_answer()))
            }
            Some(deadline) => (deadline, Some(timeout_answer())),
        };
        let n = self.socket.read_by_else(buf, deadline, farewell)?;
        self.traffic.read += n as u64;
        Ok(n)
    }
}

/// Serves `stream` until it closes, handing each request to `handler`;
/// returns why it closed.
///
/// # Errors
/// Transport errors other than the timeouts (for logging only).
pub(crate) fn serve(
    stream: TcpStream,
    settings: &Settings,
    handler: &mut dyn Handler,
) -> io::Result<Close> {
    // An optimization: a stack without it still serves.
    let _ = stream.set_nodelay(true);
    let conn = Conn {
        socket: Socket::new(stream),
        out: Vec::with_capacity(WRITE_BUFFER),
        traffic: Traffic::default(),
        deadline: None,
        in_request: false,
        request_timeout: settings.request_timeout,
        idle_timeout: settings.idle_timeout,
        write_timeout: settings.write_timeout,
        write_failed: false,
        held: Vec::new(),
        before_read: handler.before_read(),
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, conn);
    let limits = &settings.limits;
    let why = loop {
        // Idle until the first byte of the next request, every answer sent.
        if reader.buffer().is_empty() {
            reader.get_mut().settle()?;
            handler.idle();
            reader.get_mut().send()?;
            handler.sent();
            match reader.fill_buf() {
                Ok([]) => break Close::Peer,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => break Close::Idle,
                Err(e) => return Err(e),
            }
        }
        if !handler.begin() {
            break Close::Evicted;
        }
        reader.get_mut().in_request = true;
        let head = match http::read_request_head(&mut reader, limits) {
            Ok(Some(head)) => head,
            Ok(None) => break Close::Peer,
            Err(e) => {
                reader.get_mut().settle()?;
                return answer_error(reader.get_mut(), e, handler);
            }
        };
        if head.expect_continue {
            reader.get_mut().settle()?;
            if matches!(head.framing, BodyFraming::Length(n) if n > limits.max_body) {
                return answer_error(reader.get_mut(), HttpError::PayloadTooLarge, handler);
            }
            reader
                .get_mut()
                .out
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            reader.get_mut().send()?;
        }
        let body = match http::read_body(&mut reader, head.framing, limits) {
            Ok(body) => body,
            Err(e) => {
                reader.get_mut().settle()?;
                return answer_error(reader.get_mut(), e, handler);
            }
        };
        let conn = reader.get_mut();
        conn.deadline = None;
        conn.in_request = false;
        let reply = handler.handle(&head, &body);
        if reply.take_over {
            let conn = reader.get_mut();
            conn.settle()?;
            conn.send()?;
            handler.end(conn.take_traffic());
            let written = handler.take_over(&mut conn.socket);
            conn.traffic.written += written?;
            break Close::Streamed;
        }
        let close = reply.close || !head.keep_alive || !handler.keep_going();
        // HTTP/1.0 peers close unless told the connection stays.
        let keep_10 = !close && head.version == http::Version::Http10;
        let conn = reader.get_mut();
        let answer = Held {
            reply,
            close,
            keep_10,
            head_only: head.method == "HEAD",
        };
        if answer.reply.later.is_some() || !conn.held.is_empty() {
            // In order: once one answer waits, the next ones wait behind it.
            conn.held.push(answer);
            if close || conn.held.len() >= MAX_LATER {
                conn.settle()?;
            }
        } else {
            answer.write(&mut conn.out)?;
        }
        if close {
            break Close::Done;
        }
        if conn.out.len() >= EARLY_FLUSH {
            conn.send()?;
        }
        handler.end(conn.take_traffic());
    };
    let conn = reader.get_mut();
    conn.settle()?;
    conn.send()?;
    handler.end(conn.take_traffic());
    // Before the linger, which may wait for the peer for a while.
    conn.run_before_read();
    linger_close(&mut conn.socket, LINGER);
    Ok(why)
}

/// An answer held back behind one that is not known yet.
struct Held {
    reply: Reply,
    close: bool,
    keep_10: bool,
    head_only: bool,
}

impl Held {
    fn write(self, out: &mut Vec<u8>) -> io::Result<()> {
        let reply = match self.reply.later {
            Some(Later(later)) => later(),
            None => self.reply,
        };
        write_reply(out, &reply, self.close, self.keep_10)?;
        if self.head_only {
            // A response to HEAD ends at its head (RFC 9110 section 9.3.2).
            out.truncate(out.len() - reply.body.len());
        }
        Ok(())
    }
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
fn linger_close(socket: &mut Socket, linger: Duration) {
    let _ = socket.get_ref().shutdown(std::net::Shutdown::Write);
    let deadline = deadline::after(linger);
    let mut sink = [0u8; 4096];
    while let Ok(n) = socket.read_by(&mut sink, deadline) {
        if n == 0 {
            break;
        }
    }
}

/// Writes `reply` to a connection we will not serve, giving up after
/// `write_timeout` (a peer that does not read must not hold the caller),
/// then closes it.
pub(crate) fn refuse(stream: TcpStream, reply: &Reply, write_timeout: Duration) {
    let mut out = Vec::new();
    let mut socket = Socket::new(stream);
    if write_reply(&mut out, reply, true, false).is_err()
        || socket.write_all_within(&out, write_timeout).is_err()
    {
        return;
    }
    linger_close(&mut socket, REFUSE_LINGER);
}

fn write_reply(
    writer: &mut impl Write,
    reply: &Reply,
    close: bool,
    keep_alive_10: bool,
) -> io::Result<()> {
    if reply.status == 202
        && reply.body.is_empty()
        && reply.headers.is_empty()
        && reply.message_id.is_none()
        && !close
        && !keep_alive_10
    {
        // A plain publish's answer, the most frequent of all.
        return writer.write_all(PLAIN_ACCEPTED);
    }
    // On the stack: a publish's answer allocates nothing.
    let mut digits = [0u8; 20];
    let id = reply.message_id.map(|id| decimal(id, &mut digits));
    let extra = [
        keep_alive_10.then_some(("Connection", "keep-alive")),
        id.map(|id| ("Message-Id", id)),
    ];
    let mut headers = [("", ""); MAX_REPLY_HEADERS + 2];
    let mut n = 0;
    let all = reply
        .headers
        .iter()
        .copied()
        .chain(extra.into_iter().flatten());
    for (slot, header) in headers.iter_mut().zip(all) {
        *slot = header;
        n += 1;
    }
    http::write_response(
        writer,
        reply.status,
        &headers[..n],
        reply.body.as_bytes(),
        close,
    )
}

/// Most headers a handler gives a [`Reply`] (`Allow`, `Content-Type`,
/// `WWW-Authenticate`: one at a time).
const MAX_REPLY_HEADERS: usize = 2;

/// The answer to a request that did not arrive in time. Ready before the
/// request begins, so that the watchdog can send it (see [`Conn`]'s `read`).
fn timeout_answer() -> &'static [u8] {
    static ANSWER: OnceLock<Vec<u8>> = OnceLock::new();
    ANSWER.get_or_init(|| {
        let mut out = Vec::new();
        let reply = Reply::status(408, "request not received in time");
        // Writing to a Vec cannot fail.
        let _ = write_reply(&mut out, &reply, true, false);
        out
    })
}

/// Sends the status for a framing error (408 for a request that did not
/// arrive in time), then ends the connection.
fn answer_error(conn: &mut Conn, e: HttpError, handler: &mut dyn Handler) -> io::Result<Close> {
    if conn.write_failed {
        // The peer stopped reading our answers: no status can reach it.
        handler.end(conn.take_traffic());
        return Err(match e {
            HttpError::Io(io) => io,
            other => io::Error::other(other.to_string()),
        });
    }
    let timed_out = matches!(&e, HttpError::Io(io) if is_timeout(io));
    if timed_out && conn.socket.said_farewell() {
        // The watchdog sent the 408 as it cut the read; the socket is shut.
        conn.traffic.written += timeout_answer().len() as u64;
        handler.end(conn.take_traffic());
        return Ok(Close::Refused(408));
    }
    let result = match e.status() {
        _ if timed_out => {
            conn.out.extend_from_slice(timeout_answer());
            conn.send().map(|()| Close::Refused(408))
        }
        Some(status) => {
            let reply = Reply::status(status, e.to_string());
            write_reply(&mut conn.out, &reply, true, false)
                .and_then(|()| conn.send())
                .map(|()| Close::Refused(status))
        }
        None => match e {
            HttpError::Io(io) => Err(io),
            _ => conn.send().map(|()| Close::Truncated),
        },
    };
    handler.end(conn.take_traffic());
    if matches!(result, Ok(Close::Refused(_))) {
        conn.run_before_read();
        linger_close(&mut conn.socket, LINGER);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_accepted_answer_is_what_write_response_writes() {
        let mut general = Vec::new();
        http::write_response(&mut general, 202, &[], b"", false).unwrap();
        assert_eq!(general, PLAIN_ACCEPTED);
        let mut fast = Vec::new();
        write_reply(&mut fast, &Reply::accepted(), false, false).unwrap();
        assert_eq!(fast, PLAIN_ACCEPTED);
        // Anything more takes the general way.
        let mut with_id = Vec::new();
        let mut reply = Reply::accepted();
        reply.message_id = Some(7);
        write_reply(&mut with_id, &reply, true, false).unwrap();
        let want = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\nMessage-Id: 7\r\n\r\n";
        assert_eq!(String::from_utf8(with_id).unwrap(), want);
    }
}
