//! The embeddable client: publish, and subscribe with a callback that runs on
//! a thread of the client's. It works against this broker and the Go one.
//!
//! A client listens on a port of its own (10000 unless told otherwise, 0 for
//! any free one) where the broker calls it back with `POST /msg` and
//! `POST /hb`. Once subscribed it sends a heartbeat every 4 s and subscribes
//! again if the broker stays silent for 10 s, so it survives a broker restart.
//!
//! ```no_run
//! use message_broker::client::{Client, Message};
//!
//! # fn main() -> Result<(), message_broker::client::Error> {
//! let client = Client::builder("127.0.0.1:9999").listen_port(10000).build()?;
//! client.subscribe("hello/world", |msg: Message| {
//!     println!("{}: {}", msg.topic, msg.data);
//! })?;
//! client.publish("hello/world", "MyData")?;
//! # Ok(())
//! # }
//! ```
//!
//! Dropping the client (or calling [`Client::close`]) stops its threads and
//! frees its port.

mod error;
mod heartbeat;
mod listener;
mod outbox;
mod publisher;

pub use error::Error;
pub use publisher::{DEFAULT_WINDOW, Failure, Publisher};

use crate::http;
use crate::json;
use crate::net::{self, Connection};
use crate::topic;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The port a client listens on unless told otherwise, as the Go client.
pub const DEFAULT_LISTEN_PORT: u16 = 10000;

/// A message the broker delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published to.
    pub topic: String,
    /// What the publisher sent.
    pub data: String,
}

impl Message {
    /// Bytes it holds (topic and data), for the dispatch queue's bound.
    fn size(&self) -> usize {
        self.topic.len() + self.data.len()
    }
}

type Callback = Arc<Mutex<Box<dyn FnMut(Message) + Send>>>;

/// Configures a [`Client`]; made by [`Client::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    broker: String,
    listen_port: u16,
    listen_ip: Option<IpAddr>,
    timeout: Duration,
    heartbeat_interval: Duration,
    resubscribe_after: Duration,
    token: Option<String>,
}

impl Builder {
    /// Sends `Authorization: Bearer TOKEN` with every request, for a broker
    /// started with `--token TOKEN`. Default none.
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// let client = Client::builder("127.0.0.1:9999").token("s3cret").build()?;
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn token(mut self, token: impl Into<String>) -> Builder {
        self.token = Some(token.into());
        self
    }

    /// The port to listen on for the broker's calls. Default 10000; 0 takes a
    /// free port (see [`Client::listen_port`]).
    pub fn listen_port(mut self, port: u16) -> Builder {
        self.listen_port = port;
        self
    }

    /// The address to listen on. Default: every interface of the broker
    /// address's family (`0.0.0.0` or `::`).
    pub fn listen_ip(mut self, ip: IpAddr) -> Builder {
        self.listen_ip = Some(ip);
        self
    }

    /// Longest wait for one call to the broker: connecting and the answer
    /// share this deadline, a retry on a fresh connection included (a write
    /// the broker does not take gives up after as long again). Default 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Builder {
        self.timeout = timeout;
        self
    }

    /// How often to send a heartbeat once subscribed. Default 4 s.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Builder {
        self.heartbeat_interval = interval;
        self
    }

    /// How long the broker may stay silent before the client subscribes
    /// again. Default 10 s.
    pub fn resubscribe_after(mut self, after: Duration) -> Builder {
        self.resubscribe_after = after;
        self
    }

    /// Starts listening and the client's threads. Does not contact the broker.
    ///
    /// # Errors
    /// [`Error::Address`] if the broker address does not resolve;
    /// [`Error::Io`] if the listen port cannot be bound or a thread cannot start.
    pub fn build(self) -> Result<Client, Error> {
        let broker = resolve(&self.broker)?;
        let listen_ip = self.listen_ip.unwrap_or(match broker {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        let listener = TcpListener::bind((listen_ip, self.listen_port))?;
        let local = listener.local_addr()?;
        let inner = Arc::new(Inner {
            broker: self.broker,
            listen_port: local.port(),
            timeout: self.timeout,
            heartbeat_interval: self.heartbeat_interval,
            resubscribe_after: self.resubscribe_after,
            token: self.token,
            conn: Mutex::new(None),
            callbacks: Mutex::new(HashMap::new()),
            broker_seen: Mutex::new(Instant::now()),
            broker_calls: AtomicU64::new(0),
            accepted: Mutex::new(HashMap::new()),
            next_conn_id: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            dispatch_full: AtomicBool::new(false),
            dispatch_bytes: AtomicUsize::new(0),
        });
        let mut client = Client {
            inner: inner.clone(),
            wake: crate::net::loopback_for(local),
            stop_heartbeat: None,
            threads: Vec::new(),
        };
        // On any failure below, dropping `client` stops what was started.
        let (tx, rx) = mpsc::sync_channel(listener::DISPATCH_QUEUE);
        let i = inner.clone();
        client.spawn("client listener", move || {
            listener::accept_loop(listener, i, tx)
        })?;
        let i = inner.clone();
        client.spawn("client dispatcher", move || listener::dispatch_loop(i, rx))?;
        let (stop_tx, stop_rx) = mpsc::channel();
        client.stop_heartbeat = Some(stop_tx);
        client.spawn("client heartbeat", move || heartbeat::run(inner, stop_rx))?;
        Ok(client)
    }
}

/// What the client's threads share.
struct Inner {
    /// The broker's address as given: resolved again for each new
    /// connection, so a broker that comes back at a new address is found.
    broker: String,
    listen_port: u16,
    timeout: Duration,
    heartbeat_interval: Duration,
    resubscribe_after: Duration,
    token: Option<String>,
    /// The persistent connection to the broker, for every request.
    conn: Mutex<Option<Connection>>,
    callbacks: Mutex<HashMap<String, Callback>>,
    /// When the broker was last seen calling us (message or heartbeat),
    /// as far as the heartbeat thread has noticed.
    broker_seen: Mutex<Instant>,
    /// Calls from the broker so far; counted by the listener.
    broker_calls: AtomicU64,
    /// The broker's connections to our listener, to shut down on close.
    accepted: Mutex<HashMap<u64, TcpStream>>,
    next_conn_id: AtomicU64,
    stopping: AtomicBool,
    /// Set while the dispatch queue is full (so the warning is logged once).
    dispatch_full: AtomicBool,
    /// Bytes of the messages in the dispatch queue.
    dispatch_bytes: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// A new connection to the broker, resolved afresh, with the token;
    /// made by `deadline`.
    fn connect(&self, deadline: Instant) -> Result<Connection, Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Io(std::io::ErrorKind::TimedOut.into()));
        }
        let mut conn = Connection::connect(resolve(&self.broker)?, left)?;
        conn.authorize(self.token.as_deref());
        Ok(conn)
    }

    fn lock_callbacks(&self) -> MutexGuard<'_, HashMap<String, Callback>> {
        lock(&self.callbacks)
    }

    fn lock_broker_seen(&self) -> MutexGuard<'_, Instant> {
        lock(&self.broker_seen)
    }

    fn lock_accepted(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        lock(&self.accepted)
    }

    fn topics(&self) -> Vec<String> {
        self.lock_callbacks().keys().cloned().collect()
    }

    fn send_subscribe(&self, topic: &str) -> Result<(), Error> {
        let body = format!("{{\"qos\":0,\"port\":\"{}\"}}", self.listen_port);
        self.post(
            &format!("/sub/{}", http::percent_encode_path(topic)),
            body.as_bytes(),
        )
    }

    fn send_heartbeat(&self) -> Result<(), Error> {
        // The port is our extension: it names this client among others at
        // the same IP. A Go broker ignores it.
        let body = format!("{{\"port\":\"{}\"}}", self.listen_port);
        self.post("/hb", body.as_bytes())
    }

    /// One request on the persistent connection; Ok only for a 202.
    fn post(&self, target: &str, body: &[u8]) -> Result<(), Error> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        // One deadline for the whole call, retry included.
        let deadline = crate::deadline::after(self.timeout);
        let mut conn = lock(&self.conn);
        let reused = matches!(conn.as_ref(), Some(c) if !c.is_stale());
        let first = self.exchange(&mut conn, reused, target, body, deadline);
        match first {
            // The broker closed the idle connection as we wrote: once more on
            // a fresh one, as HTTP clients do. Not after part of an answer
            // (`HttpError::UnexpectedEof`): that broker got the publish, and
            // sending it again would publish it twice.
            Err(Error::Io(ref e)) if reused && net::is_peer_close(e) => {
                self.exchange(&mut conn, false, target, body, deadline)
            }
            other => other,
        }
    }

    fn exchange(
        &self,
        conn: &mut Option<Connection>,
        reuse: bool,
        target: &str,
        body: &[u8],
        deadline: Instant,
    ) -> Result<(), Error> {
        let c = match conn {
            Some(c) if reuse => c,
            _ => conn.insert(self.connect(deadline)?),
        };
        let result = send_and_read(c, target, body, deadline);
        match &result {
            Ok(keep_alive) if *keep_alive => {}
            _ => *conn = None,
        }
        result.map(|_| ())
    }
}

/// The target and body of a publish, as the Go client sends them.
fn publish_request(topic: &str, data: &str) -> Result<(String, Vec<u8>), Error> {
    topic::validate(topic).map_err(Error::InvalidTopic)?;
    let mut body = String::with_capacity(data.len() + 20);
    body.push_str("{\"data\":");
    json::write_string(&mut body, data);
    body.push_str(",\"qos\":0}");
    Ok((
        format!("/pub/{}", http::percent_encode_path(topic)),
        body.into_bytes(),
    ))
}

/// The first socket address `broker` resolves to; a numeric address is taken
/// as it is, without a name lookup.
fn resolve(broker: &str) -> Result<SocketAddr, Error> {
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
    target: &str,
    body: &[u8],
    deadline: Instant,
) -> Result<bool, Error> {
    let sent = conn
        .send(target, Some("application/json"), body)
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
    Ok(response.keep_alive)
}

fn status_error(response: &crate::http::Response) -> Error {
    Error::Status {
        status: response.status,
        reason: String::from_utf8_lossy(&response.body).trim().to_owned(),
    }
}

/// A publish/subscribe client. See the [module docs](self).
pub struct Client {
    inner: Arc<Inner>,
    wake: SocketAddr,
    stop_heartbeat: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Client {
    /// Starts configuring a client of the broker at `broker` (`"host:port"`).
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// println!("the broker calls us back on port {}", client.listen_port());
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn builder(broker: impl Into<String>) -> Builder {
        Builder {
            broker: broker.into(),
            listen_port: DEFAULT_LISTEN_PORT,
            listen_ip: None,
            timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(4),
            resubscribe_after: Duration::from_secs(10),
            token: None,
        }
    }

    /// The port this client listens on for the broker's calls.
    pub fn listen_port(&self) -> u16 {
        self.inner.listen_port
    }

    /// Publishes `data` to `topic`; returns once the broker accepted it (202),
    /// which means it is queued for every current subscriber.
    ///
    /// # Errors
    /// [`Error::InvalidTopic`] before sending anything; [`Error::Status`] with
    /// the broker's reason if it refused; [`Error::Io`] if it could not be
    /// reached within the timeout; [`Error::Closed`] after [`Client::close`].
    ///
    /// # Examples
    /// ```no_run
    /// # use message_broker::client::Client;
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// client.publish("hello/world", "MyData")?;
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn publish(&self, topic: &str, data: &str) -> Result<(), Error> {
        let (target, body) = publish_request(topic, data)?;
        self.inner.post(&target, &body)
    }

    /// A publisher that keeps up to 64 publishes in flight on a connection of
    /// its own, for throughput; see [`Publisher`].
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.inner.clone())
    }

    /// Subscribes to `topic`: `callback` runs for each message of it, on the
    /// client's dispatcher thread, one at a time in arrival order. A second
    /// subscription to the same topic replaces the callback.
    ///
    /// # Errors
    /// As for [`Client::publish`]; on error the callback is not kept.
    ///
    /// # Examples
    /// ```no_run
    /// # use message_broker::client::{Client, Message};
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// client.subscribe("hello/world", |msg: Message| println!("{}", msg.data))?;
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn subscribe<F>(&self, topic: &str, callback: F) -> Result<(), Error>
    where
        F: FnMut(Message) + Send + 'static,
    {
        topic::validate(topic).map_err(Error::InvalidTopic)?;
        let callback: Callback = Arc::new(Mutex::new(Box::new(callback)));
        // Registered first: the broker may deliver before its 202 reaches us.
        let previous = self
            .inner
            .lock_callbacks()
            .insert(topic.to_owned(), callback);
        if previous.is_none() && self.inner.lock_callbacks().len() == 1 {
            *self.inner.lock_broker_seen() = Instant::now();
        }
        let result = self.inner.send_subscribe(topic);
        if result.is_err() {
            let mut callbacks = self.inner.lock_callbacks();
            match previous {
                Some(previous) => callbacks.insert(topic.to_owned(), previous),
                None => callbacks.remove(topic),
            };
        }
        result
    }

    /// Stops the client's threads and frees its port. Dropping the client
    /// does the same.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn spawn(&mut self, name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), Error> {
        let handle = thread::Builder::new().name(name.into()).spawn(f)?;
        self.threads.push(handle);
        Ok(())
    }

    fn shutdown(&mut self) {
        if self.inner.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stop_heartbeat = None;
        // accept() has no timeout: a connection of our own wakes it.
        let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
        for (_, stream) in self.inner.lock_accepted().drain() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        let me = thread::current().id();
        for handle in self.threads.drain(..) {
            // A callback that drops its own client must not wait for itself.
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("broker", &self.inner.broker)
            .field("listen_port", &self.inner.listen_port)
            .finish()
    }
}
