//! Pipelined publishing: up to a window of publishes in flight on one
//! connection of the publisher's own, each answer matched to its message by
//! order (HTTP/1.1 answers come back in request order).
//!
//! Owns that connection. Never retries a publish: a message whose answer was
//! lost is reported as failed, since the broker may or may not have taken it.
//! Follows the client to another broker (failover) between two messages
//! with nothing in flight; a connection that breaks moves the client on.

use super::brokers::{At, Failed};
use super::call::status_error;
use super::outbox::Outbox;
use super::{Error, Inner, Qos, publish_request};
use crate::http::HttpError;
use crate::net::{self, Connection};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Publishes in flight at once unless [`Publisher::window`] says otherwise.
pub const DEFAULT_WINDOW: usize = 64;

/// A publish that failed, named by the number [`Publisher::send`] gave it.
///
/// ```no_run
/// use message_broker::client::{Client, Failure};
/// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
/// let mut publisher = client.publisher();
/// let seq = publisher.send("hello/world", "MyData")?;
/// for Failure { seq: failed, error } in publisher.flush() {
///     assert_eq!(failed, seq);
///     eprintln!("not published: {error}");
/// }
/// # Ok::<(), message_broker::client::Error>(())
/// ```
#[derive(Debug)]
pub struct Failure {
    /// The message's number, counting from 0 for the publisher's first send.
    pub seq: u64,
    /// Why: the broker's status and reason, or the connection's failure.
    pub error: Error,
}

/// Publishes with up to `window` requests in flight; made by
/// [`Client::publisher`](super::Client::publisher).
///
/// ```no_run
/// use message_broker::client::Client;
/// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
/// let mut publisher = client.publisher().window(64);
/// for i in 0..10_000 {
///     publisher.send("hello/world", &format!("message {i}"))?;
/// }
/// for failure in publisher.flush() {
///     eprintln!("message {} failed: {}", failure.seq, failure.error);
/// }
/// # Ok::<(), message_broker::client::Error>(())
/// ```
///
/// Dropping a publisher sends what it has buffered without waiting for the
/// answers: call [`Publisher::flush`] to learn them.
pub struct Publisher {
    inner: Arc<Inner>,
    conn: Option<Pipe>,
    window: usize,
    qos: Qos,
    in_flight: VecDeque<u64>,
    next_seq: u64,
    failures: Vec<Failure>,
    /// The request being sent, reused from one send to the next.
    request: Vec<u8>,
}

/// One connection: answers are read here, requests leave through the outbox.
struct Pipe {
    conn: Connection,
    outbox: Outbox,
    /// The broker it goes to.
    at: At,
}

impl Pipe {
    /// A connection to the broker in use, or to the next one if that one
    /// cannot be reached (nothing has been sent yet).
    fn open(inner: &Inner) -> Result<Pipe, Error> {
        inner.with_failover(|at| Pipe::open_at(inner, at).map_err(Failed::unsent))
    }

    fn open_at(inner: &Inner, at: At) -> Result<Pipe, Error> {
        let conn = inner.connect(at.index, crate::deadline::after(inner.timeout))?;
        let outbox = Outbox::start(conn.try_clone_stream()?, inner.timeout)?;
        Ok(Pipe { conn, outbox, at })
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("window", &self.window)
            .field("in_flight", &self.in_flight.len())
            .field("failures", &self.failures.len())
            .finish()
    }
}

impl Publisher {
    pub(super) fn new(inner: Arc<Inner>) -> Publisher {
        Publisher {
            inner,
            conn: None,
            window: DEFAULT_WINDOW,
            qos: Qos::AtMostOnce,
            in_flight: VecDeque::new(),
            next_seq: 0,
            failures: Vec::new(),
            request: Vec::new(),
        }
    }

    /// Sets how many publishes may await their answer at once (at least 1;
    /// 1 is lock-step). Default 64.
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// let publisher = client.publisher().window(1);
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn window(mut self, window: usize) -> Publisher {
        self.window = window.max(1);
        self
    }

    /// Sets the QoS of every publish (default [`Qos::AtMostOnce`]). At
    /// [`Qos::AtLeastOnce`] each answer comes once the broker stored the
    /// message, and a broker with a log syncs a whole window with one write
    /// to the disk. Never retried: a lost answer is a failure of
    /// [`Publisher::flush`], and the message may or may not be stored.
    ///
    /// ```no_run
    /// use message_broker::client::{Client, Qos};
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// let mut publisher = client.publisher().window(64).qos(Qos::AtLeastOnce);
    /// publisher.send("orders", "paid")?;
    /// assert!(publisher.flush().is_empty(), "stored");
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn qos(mut self, qos: Qos) -> Publisher {
        self.qos = qos;
        self
    }

    /// Sends a publish without waiting for its answer (once the window is
    /// full, it first waits for the oldest answer). Returns the message's
    /// number; a later [`Publisher::flush`] names failures by it.
    ///
    /// # Errors
    /// [`Error::InvalidTopic`], [`Error::Closed`], or a failure to connect:
    /// the message was not sent and got no number.
    ///
    /// # Examples
    /// ```no_run
    /// use message_broker::client::Client;
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// let mut publisher = client.publisher();
    /// let first = publisher.send("hello/world", "one")?;
    /// let second = publisher.send("hello/world", "two")?;
    /// assert_eq!(second, first + 1);
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn send(&mut self, topic: &str, data: &str) -> Result<u64, Error> {
        let (target, body) = publish_request(topic, data, self.qos, false)?;
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        if self.in_flight.len() >= self.window {
            self.read_answers();
        }
        // With nothing in flight, a connection the broker closed (its idle
        // timeout) is replaced before it swallows a request, and one to a
        // broker the client has left, by one to where the client is now.
        let now = self.inner.brokers.current().index;
        if self.in_flight.is_empty()
            && self
                .conn
                .as_ref()
                .is_some_and(|p| p.at.index != now || p.conn.is_stale())
        {
            self.drop_pipe();
        }
        let pipe = match &mut self.conn {
            Some(pipe) => pipe,
            None => self.conn.insert(Pipe::open(&self.inner)?),
        };
        // Built outside the outbox's lock, so its thread is not held up.
        self.request.clear();
        let json = Some("application/json");
        pipe.conn.encode(&mut self.request, &target, json, &body)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push_back(seq);
        let queued = pipe.outbox.push(&self.request);
        if queued.is_err() {
            // The broker may have answered some requests before it closed
            // (after a 413, say): read those answers, then fail the rest.
            while !self.in_flight.is_empty() {
                self.read_one();
            }
        }
        Ok(seq)
    }

    /// Waits for the answer to every publish sent, then returns the failures
    /// since the last flush, in order. Empty: every message was accepted.
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// let mut publisher = client.publisher();
    /// publisher.send("hello/world", "MyData")?;
    /// let failures = publisher.flush();
    /// assert_eq!(publisher.in_flight(), 0);
    /// println!("{} failed", failures.len());
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn flush(&mut self) -> Vec<Failure> {
        while !self.in_flight.is_empty() {
            self.read_answers();
        }
        std::mem::take(&mut self.failures)
    }

    /// How many publishes await their answer.
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// let mut publisher = client.publisher().window(8);
    /// publisher.send("hello/world", "MyData")?;
    /// assert!(publisher.in_flight() <= 1);
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Reads the oldest outstanding answer, waiting for it, then every later
    /// answer that has already arrived.
    fn read_answers(&mut self) {
        self.read_one();
        while !self.in_flight.is_empty()
            && self.conn.as_ref().is_some_and(|p| p.conn.has_buffered())
        {
            self.read_one();
        }
    }

    /// Reads the oldest outstanding answer (sending what is buffered first).
    fn read_one(&mut self) {
        let Some(pipe) = self.conn.as_mut() else {
            return self.fail_all(&io::Error::from(io::ErrorKind::NotConnected));
        };
        match pipe.conn.read_response(&net::response_limits()) {
            Ok(response) => {
                let seq = self.in_flight.pop_front().unwrap_or_default();
                if response.status != 202 {
                    self.failures.push(Failure {
                        seq,
                        error: status_error(&response),
                    });
                }
                if !response.keep_alive {
                    // The broker closed: requests behind this one were not read.
                    let closed = io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "broker closed the connection",
                    );
                    self.fail_all(&closed);
                }
            }
            Err(e) => {
                // The broker stopped answering: the client moves on.
                if let HttpError::Io(_) | HttpError::UnexpectedEof = e {
                    self.inner.brokers.move_on(pipe.at, &e);
                }
                match e {
                    HttpError::Io(e) => self.fail_all(&e),
                    e => self.fail_all(&io::Error::other(e.to_string())),
                }
            }
        }
    }

    /// Gives the connection up, unsent requests with it.
    fn drop_pipe(&mut self) {
        if let Some(pipe) = self.conn.take() {
            pipe.outbox.abort();
        }
    }

    /// Every outstanding publish failed with `e`; the connection is dropped.
    fn fail_all(&mut self, e: &io::Error) {
        self.drop_pipe();
        for seq in self.in_flight.drain(..) {
            self.failures.push(Failure {
                seq,
                error: Error::Io(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}
