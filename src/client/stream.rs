//! A streaming subscription (PROTOCOL.md section 6.3) for programs that
//! cannot listen on a port: one held connection to the broker, read as
//! NDJSON, and a new one after any break, resuming with `Last-Event-ID`
//! where the last one stopped. With several brokers it follows the client
//! to the one in use; ids are per broker, so on another broker it starts
//! afresh, without `Last-Event-ID`.
//!
//! Owns its connection; shares nothing with the client's other threads but
//! its settings, the broker in use and its closing.

use super::brokers::{At, Failed};
use super::call::resolve;
use super::{Error, Inner, Message};
use crate::deadline::{self, Socket};
use crate::http::{self, Limits, percent_encode_path};
use crate::json::{self, Value};
use std::io::{self, BufRead, BufReader, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The longest line a stream may send: a message at the broker's default
/// payload limit, escaped, with room to spare.
const MAX_LINE: usize = 8 * 1024 * 1024;

/// A connection that sends nothing at all (not even a keep-alive) this long
/// is taken as broken.
const SILENCE: Duration = Duration::from_secs(45);

/// The longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A streaming subscription: an iterator of messages that never ends while
/// the client is open, reconnecting (and resuming from the log) when the
/// connection breaks. Made by [`Client::stream`](super::Client::stream).
///
/// With several brokers, a stream whose broker cannot be reached moves the
/// client to the next one (backing off as it goes round), and a stream
/// follows the client when it moves for another reason. Message ids are the
/// broker's own, so at another broker the stream starts afresh (its
/// retained messages, then new ones), without resuming from an id of the
/// old one: what was published meanwhile is not replayed.
///
/// ```no_run
/// use message_broker::client::Client;
/// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
/// for msg in client.stream("sensors/#")? {
///     println!("{} {}: {}", msg.id.unwrap_or(0), msg.topic, msg.data);
/// }
/// # Ok::<(), message_broker::client::Error>(())
/// ```
pub struct Stream {
    inner: Arc<Inner>,
    pattern: String,
    conn: Option<BufReader<Reader>>,
    /// The id of the last message read: where the next connection to the
    /// broker that numbered it (`last_from`) resumes.
    last_id: Option<u64>,
    /// The index of the broker `last_id` comes from.
    last_from: Option<usize>,
    /// The broker of the connection (the last one tried, without one).
    at: At,
    backoff: Duration,
    /// No attempt to reconnect before this.
    retry_at: Instant,
    /// When the connection last sent anything.
    heard: Instant,
    line: Vec<u8>,
}

/// The socket, with a deadline for each read.
struct Reader {
    socket: Socket,
    deadline: Instant,
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.read_by(buf, self.deadline)
    }
}

impl Stream {
    /// Opens the stream; the first connection must succeed, so that a
    /// pattern or a token the broker refuses is an error here.
    pub(super) fn open(
        inner: Arc<Inner>,
        pattern: &str,
        since: Option<u64>,
    ) -> Result<Stream, Error> {
        crate::pattern::validate_pattern(pattern).map_err(Error::InvalidTopic)?;
        let at = inner.brokers.current();
        let mut stream = Stream {
            inner,
            pattern: pattern.to_owned(),
            conn: None,
            last_id: since,
            last_from: since.map(|_| at.index),
            at,
            backoff: Duration::from_millis(100),
            retry_at: Instant::now(),
            heard: Instant::now(),
            line: Vec::new(),
        };
        let (conn, at) = stream.connect_any()?;
        (stream.conn, stream.at) = (Some(conn), at);
        Ok(stream)
    }

    /// The id of the last message this stream gave out (or the one it was
    /// told to resume after), as numbered by the broker that sent it.
    pub fn last_id(&self) -> Option<u64> {
        self.last_id
    }

    /// The next message, waiting at most `wait` (reconnecting meanwhile if
    /// need be); `None` if none came, or the client was closed.
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// use std::time::Duration;
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// let mut stream = client.stream("hello/world")?;
    /// match stream.next_within(Duration::from_secs(1)) {
    ///     Some(msg) => println!("{}", msg.data),
    ///     None => println!("nothing within a second"),
    /// }
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn next_within(&mut self, wait: Duration) -> Option<Message> {
        let until = deadline::after(wait);
        loop {
            if self.inner.stopping.load(Ordering::SeqCst) {
                return None;
            }
            // Short steps: a closed client is noticed within one.
            let step = until.min(deadline::after(Duration::from_millis(250)));
            self.follow_the_client();
            if self.conn.is_none() {
                if Instant::now() < self.retry_at {
                    let wake = self.retry_at.min(step);
                    std::thread::sleep(wake.saturating_duration_since(Instant::now()));
                } else {
                    self.reconnect();
                }
            } else {
                match self.read_line(step) {
                    Ok(Some(message)) => return Some(message),
                    Ok(None) => {}
                    Err(e) => {
                        crate::log::debug!("client: stream of {:?} broke: {e}", self.pattern);
                        self.conn = None;
                        // A line cut by the break is not the next one's start.
                        self.line.clear();
                    }
                }
            }
            if Instant::now() >= until {
                return None;
            }
        }
    }

    /// Drops the connection to a broker the client has left (after a failed
    /// call or heartbeat, say): the next read connects where it is now.
    fn follow_the_client(&mut self) {
        let now = self.inner.brokers.current();
        if self.conn.is_some() && now.index != self.at.index {
            let addr = self.inner.brokers.addr(now.index);
            crate::log::debug!("client: stream of {:?} moves to {addr}", self.pattern);
            self.conn = None;
            self.line.clear();
            self.retry_at = Instant::now();
        }
    }

    fn reconnect(&mut self) {
        match self.connect_any() {
            Ok((conn, at)) => {
                self.conn = Some(conn);
                self.at = at;
                self.heard = Instant::now();
                self.backoff = Duration::from_millis(100);
            }
            Err(e) => {
                crate::log::debug!("client: stream of {:?}: {e}", self.pattern);
                self.at = self.inner.brokers.current();
                self.retry_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// A new connection, to the broker in use or, if that one cannot be
    /// reached, to the next.
    fn connect_any(&self) -> Result<(BufReader<Reader>, At), Error> {
        // A GET is safe to send twice: every failure is retried.
        let attempt = |at: At| self.connect(at).map(|conn| (conn, at));
        self.inner
            .with_failover(|at| attempt(at).map_err(Failed::unsent))
    }

    /// A new connection to the broker `at`, past the response head.
    fn connect(&self, at: At) -> Result<BufReader<Reader>, Error> {
        let inner = &self.inner;
        let addr = resolve(inner.brokers.addr(at.index))?;
        let tcp = TcpStream::connect_timeout(&addr, inner.timeout)?;
        let _ = tcp.set_nodelay(true);
        let mut request = format!(
            "GET /sub/{} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/x-ndjson\r\n",
            percent_encode_path(&self.pattern)
        );
        if let Some(token) = &inner.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        match self.last_id {
            Some(id) if self.last_from == Some(at.index) => {
                request.push_str(&format!("Last-Event-ID: {id}\r\n"));
            }
            Some(id) => crate::log::info!(
                "client: stream of {:?} starts afresh at {}: id {id} is another broker's",
                self.pattern,
                inner.brokers.addr(at.index)
            ),
            None => {}
        }
        request.push_str("\r\n");
        let mut socket = Socket::new(tcp);
        socket.write_all_within(request.as_bytes(), inner.timeout)?;
        let reader = Reader {
            socket,
            deadline: deadline::after(inner.timeout),
        };
        let mut conn = BufReader::new(reader);
        let (_, status, _, _) = http::read_response_head(&mut conn, &Limits::default())?;
        if status != 200 {
            let mut reason = Vec::new();
            let _ = conn.take(1024).read_to_end(&mut reason);
            return Err(Error::Status {
                status,
                reason: String::from_utf8_lossy(&reason).trim().to_owned(),
            });
        }
        Ok(conn)
    }

    /// Reads lines until a message, or `by`: `Ok(None)` when none came.
    ///
    /// # Errors
    /// The connection broke, went silent past [`SILENCE`], sent a line past
    /// [`MAX_LINE`], or the broker ended the stream (`overflow`).
    fn read_line(&mut self, by: Instant) -> io::Result<Option<Message>> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        loop {
            conn.get_mut().deadline = by;
            let available = match conn.fill_buf() {
                Ok([]) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(bytes) => bytes,
                Err(e) if deadline::is_timeout(&e) => {
                    return if self.heard.elapsed() > SILENCE {
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "stream went silent",
                        ))
                    } else {
                        Ok(None)
                    };
                }
                Err(e) => return Err(e),
            };
            // Any byte is a sign of life (keep-alives included).
            self.heard = Instant::now();
            let (chunk, complete) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (&available[..=at], true),
                None => (available, false),
            };
            if self.line.len() + chunk.len() > MAX_LINE {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            self.line.extend_from_slice(chunk);
            let used = chunk.len();
            conn.consume(used);
            if !complete {
                continue;
            }
            let line = std::mem::take(&mut self.line);
            if let Some(message) = event(&line, &self.pattern)? {
                self.last_id = message.id;
                self.last_from = Some(self.at.index);
                return Ok(Some(message));
            }
        }
    }
}

/// One NDJSON line of the stream of `pattern`: a message, or nothing (a
/// keep-alive, a reset).
fn event(line: &[u8], pattern: &str) -> io::Result<Option<Message>> {
    {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
        let object = json::parse_object(line).map_err(|e| bad(e.to_string()))?;
        if object.get("overflow").is_some() {
            return Err(bad("the stream overflowed: resuming".into()));
        }
        if object.get("reset").is_some() {
            let from = object.get("from").and_then(Value::as_u64).unwrap_or(0);
            crate::log::warning!(
                "client: stream of {pattern:?}: the broker's log begins at {from}; older messages are gone"
            );
            return Ok(None);
        }
        let (Some(id), Some(topic), Some(data)) = (
            object.get("id").and_then(Value::as_u64),
            object.get_str("Topic"),
            object.get_str("data"),
        ) else {
            return Err(bad("a stream line without id, Topic and data".into()));
        };
        Ok(Some(Message {
            topic: topic.to_owned(),
            data: data.to_owned(),
            id: Some(id),
        }))
    }
}

impl Iterator for Stream {
    type Item = Message;

    /// The next message, however long it takes; `None` once the client is
    /// closed.
    fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(message) = self.next_within(Duration::from_secs(3600)) {
                return Some(message);
            }
            if self.inner.stopping.load(Ordering::SeqCst) {
                return None;
            }
        }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("pattern", &self.pattern)
            .field("last_id", &self.last_id)
            .finish()
    }
}
