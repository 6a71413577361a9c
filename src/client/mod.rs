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
//!
//! # Several brokers
//!
//! Given several addresses (brokers that share their topics, as a cluster
//! over NATS does), the client uses one at a time, the first to begin with.
//! When it stops answering (a call is refused, reset or times out, or it
//! stays silent past [`Builder::resubscribe_after`], 10 s by default) the
//! client moves to the next address, round robin, subscribes there again
//! (each subscription with its qos), and every later call, heartbeat and
//! stream goes there; then it unsubscribes at the broker it left, in case
//! that one is still up (a broker too loaded to answer in time is left too,
//! and would go on delivering every message a second time). That is tried
//! again at every heartbeat tick, at most 1 s per tick, until the broker
//! takes it or refuses connections (down: its qos 0 subscriptions ended with
//! it; a qos 1 one is durable and still tried), and given up on an hour
//! after leaving, the broker's default session expiry. Until then what the
//! broker left delivers reaches the callbacks: a delivery cannot be told
//! from one of the broker in use (brokers call back from any port, and may
//! share an IP address). With the defaults, a subscribed client leaves a
//! broker that went down at its next heartbeat, within about 5 s (plus the
//! 5 s timeout if the broker's host does not even refuse the connection). A
//! call that could not even reach the broker is sent to the next one at
//! once; one that may have reached it is not sent again elsewhere (see
//! [`Client::publish_with`]). Message ids ([`Message::id`]) are each
//! broker's own. A single address behaves as above: the client subscribes
//! again at the same broker.
//!
//! ```no_run
//! use message_broker::client::{Client, Message};
//!
//! # fn main() -> Result<(), message_broker::client::Error> {
//! let client = Client::builder(["10.0.0.1:9999", "10.0.0.2:9999"])
//!     .listen_port(0)
//!     .build()?;
//! client.subscribe("hello/world", |msg: Message| println!("{}", msg.data))?;
//! client.publish("hello/world", "MyData")?;
//! println!("using {}", client.broker());
//! # Ok(())
//! # }
//! ```
//!
//! # At-least-once delivery
//!
//! Against this broker, [`Client::subscribe_qos`] with [`Qos::AtLeastOnce`]
//! makes a durable subscription: the broker keeps each message until the
//! client has answered it, and resends after a failure, so a message can
//! come twice; the client drops such duplicates by their id, within the last
//! [`DEDUPE_WINDOW`] ids, before the callback. [`Client::publish_with`] with
//! [`PublishOptions::at_least_once`] returns once the broker has stored the
//! message, and sends it once more if the answer is lost, with an
//! `Idempotency-Key` that makes the broker take it once.
//!
//! ```no_run
//! use message_broker::client::{Client, Message, PublishOptions, Qos};
//!
//! # fn main() -> Result<(), message_broker::client::Error> {
//! let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
//! client.subscribe_qos("orders", Qos::AtLeastOnce, |msg: Message| {
//!     println!("message {:?}: {}", msg.id, msg.data);
//! })?;
//! let id = client.publish_with("orders", "paid", &PublishOptions::at_least_once())?;
//! println!("stored as {id:?}");
//! # Ok(())
//! # }
//! ```

mod brokers;
mod builder;
mod call;
mod dedupe;
mod error;
mod heartbeat;
mod leave;
mod listener;
mod outbox;
mod publisher;
mod qos;
mod stream;
mod subscriptions;

pub use brokers::Brokers;
pub use builder::Builder;
pub use dedupe::DEDUPE_WINDOW;
pub use error::Error;
pub use publisher::{DEFAULT_WINDOW, Failure, Publisher};
pub use qos::{MAX_IDEMPOTENCY_KEY, PublishOptions, Qos};
pub use stream::Stream;

use crate::http;
use crate::net::Connection;
use crate::pattern;
use brokers::BrokerList;
use call::Request;
use dedupe::Dedupe;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use subscriptions::Subscription;

/// The port a client listens on unless told otherwise, as the Go client.
pub const DEFAULT_LISTEN_PORT: u16 = 10000;

/// A message the broker delivered.
///
/// ```no_run
/// use message_broker::client::{Client, Message};
/// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
/// client.subscribe("hello/world", |msg: Message| match msg.id {
///     Some(id) => println!("{} (message {id}): {}", msg.topic, msg.data),
///     None => println!("{}: {}", msg.topic, msg.data),
/// })?;
/// # Ok::<(), message_broker::client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published to (the topic itself, also when the
    /// subscription is a wildcard pattern).
    pub topic: String,
    /// What the publisher sent.
    pub data: String,
    /// The broker's number for it (`Message-Id`), on a qos 1 delivery and
    /// on every message of a [`Stream`]: the same for every subscriber,
    /// growing, never reused. `None` on a qos 0 callback delivery and from
    /// the Go broker.
    pub id: Option<u64>,
}

impl Message {
    /// Bytes it holds (topic and data), for the dispatch queue's bound.
    fn size(&self) -> usize {
        self.topic.len() + self.data.len()
    }
}

/// What the client's threads share.
struct Inner {
    /// The brokers' addresses, and the one in use.
    brokers: BrokerList,
    listen_port: u16,
    timeout: Duration,
    heartbeat_interval: Duration,
    resubscribe_after: Duration,
    token: Option<String>,
    /// The persistent connection for every request, with the index of the
    /// broker it goes to.
    conn: Mutex<Option<(usize, Connection)>>,
    subscriptions: Mutex<HashMap<String, Subscription>>,
    /// How many of `subscriptions` are wildcard patterns: without any, a
    /// message finds its callback by its topic alone.
    wildcards: AtomicUsize,
    /// The latest ids delivered, to drop a qos 1 message sent twice.
    dedupe: Mutex<Dedupe>,
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
    fn lock_broker_seen(&self) -> MutexGuard<'_, Instant> {
        lock(&self.broker_seen)
    }

    fn lock_accepted(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        lock(&self.accepted)
    }

    fn send_heartbeat(&self) -> Result<(), Error> {
        // The port is our extension: it names this client among others at
        // the same IP. A Go broker ignores it.
        let body = format!("{{\"port\":\"{}\"}}", self.listen_port);
        self.post("/hb", body.as_bytes())
    }
}

/// The target and body of a publish; with qos 0 and no retain, as the Go
/// client sends them.
fn publish_request(
    topic: &str,
    data: &str,
    qos: Qos,
    retain: bool,
) -> Result<(String, Vec<u8>), Error> {
    pattern::validate_topic(topic).map_err(Error::InvalidTopic)?;
    Ok((
        format!("/pub/{}", http::percent_encode_path(topic)),
        qos::publish_body(data, qos, retain),
    ))
}

/// A publish/subscribe client. See the [module docs](self).
///
/// ```no_run
/// use message_broker::client::{Client, Message};
/// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
/// client.subscribe("hello/world", |msg: Message| println!("{}", msg.data))?;
/// client.publish("hello/world", "MyData")?;
/// client.close();
/// # Ok::<(), message_broker::client::Error>(())
/// ```
pub struct Client {
    inner: Arc<Inner>,
    wake: SocketAddr,
    stop_heartbeat: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Client {
    /// Starts configuring a client of the broker at `brokers`
    /// (`"host:port"`), or of several brokers (a list of them, used in turn:
    /// see [Several brokers](self#several-brokers)). An empty list is an
    /// [`Error::NoBroker`] at [`Builder::build`].
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// println!("the broker calls us back on port {}", client.listen_port());
    /// let replicated = Client::builder(["10.0.0.1:9999", "10.0.0.2:9999"]).build()?;
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn builder(brokers: impl Brokers) -> Builder {
        Builder::new(brokers.into_brokers())
    }

    /// The address of the broker the client uses now, as given to
    /// [`Client::builder`].
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// let client = Client::builder(["10.0.0.1:9999", "10.0.0.2:9999"]).build()?;
    /// assert_eq!(client.broker(), "10.0.0.1:9999");
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn broker(&self) -> &str {
        self.inner.brokers.addr(self.inner.brokers.current().index)
    }

    /// The port this client listens on for the broker's calls.
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// assert_ne!(client.listen_port(), 0);
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn listen_port(&self) -> u16 {
        self.inner.listen_port
    }

    /// Publishes `data` to `topic`; returns once the broker accepted it (202),
    /// which means it is queued for every current subscriber.
    ///
    /// With several brokers: if the broker in use cannot be reached (nothing
    /// was sent), the publish goes to the next one, once, and the client
    /// stays there. If it was sent and its answer lost (the connection broke
    /// or timed out), it is not sent again, as that broker may have taken
    /// it: the error comes back, and the client moves on for later calls.
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
        let (target, body) = publish_request(topic, data, Qos::AtMostOnce, false)?;
        self.inner.post(&target, &body)
    }

    /// Publishes `data` to `topic` as `options` say; returns the broker's
    /// `Message-Id` for it, or `None` from a broker that sends none (the Go
    /// broker).
    ///
    /// With [`Qos::AtLeastOnce`] (or `retain`) the broker answers once it has
    /// stored the message. If that answer is lost (the connection fails or
    /// closes before the answer, or the timeout passes) a qos 1 publish is
    /// sent once more, on a fresh connection with a timeout of its own, with
    /// the same `Idempotency-Key`, so that the broker takes it once: the
    /// call can then take twice the [timeout](Builder::timeout). Without a
    /// key in `options` the client makes one up for a qos 1 publish. A qos 0
    /// publish is never sent twice (except, as for [`Client::publish`], when
    /// an idle connection turns out closed before the broker read it).
    ///
    /// With several brokers, a publish that could not reach the broker in
    /// use goes to the next one, once, whatever its qos. The resend of a
    /// lost answer goes to the same broker only (the key counts at the
    /// broker that saw it); if that fails too, the error comes back: sending
    /// it again, to any broker, may store it twice.
    ///
    /// # Errors
    /// [`Error::InvalidTopic`] or [`Error::InvalidIdempotencyKey`] before
    /// sending anything; [`Error::Status`] with the broker's reason if it
    /// refused (507: it could not store the message; 400 from a broker that
    /// knows no qos 1); [`Error::Io`] if no answer came back (for qos 1: to
    /// the resend either); [`Error::Closed`] after [`Client::close`].
    ///
    /// # Examples
    /// ```no_run
    /// use message_broker::client::{Client, Error, PublishOptions};
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// let options = PublishOptions::at_least_once().idempotency_key("invoice-17");
    /// match client.publish_with("billing", "sent", &options) {
    ///     Ok(id) => println!("stored as message {id:?}"),
    ///     Err(Error::Status { status: 507, .. }) => eprintln!("broker disk full"),
    ///     Err(e) => eprintln!("publish failed, maybe stored: {e}"),
    /// }
    /// # Ok::<(), Error>(())
    /// ```
    pub fn publish_with(
        &self,
        topic: &str,
        data: &str,
        options: &PublishOptions,
    ) -> Result<Option<u64>, Error> {
        let (target, body) = publish_request(topic, data, options.qos, options.retain)?;
        let at_least_once = options.qos == Qos::AtLeastOnce;
        let made_up;
        let key = match &options.idempotency_key {
            Some(key) => {
                qos::validate_key(key).map_err(Error::InvalidIdempotencyKey)?;
                Some(key.as_str())
            }
            None if at_least_once => {
                made_up = qos::new_key();
                Some(made_up.as_str())
            }
            None => None,
        };
        self.inner.call(&Request {
            target: &target,
            body: &body,
            key,
            retry_lost: at_least_once,
        })
    }

    /// A publisher that keeps up to 64 publishes in flight on a connection of
    /// its own, for throughput; see [`Publisher`]. Its publishes are qos 0.
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// let mut publisher = client.publisher();
    /// publisher.send("hello/world", "MyData")?;
    /// assert!(publisher.flush().is_empty());
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.inner.clone())
    }

    /// Subscribes to `pattern` over a connection the client holds (a
    /// streaming subscription): no listening port is needed, so it works
    /// behind NAT or a firewall. Read the messages from the [`Stream`], an
    /// iterator; each has its id. After a break the stream reconnects and
    /// resumes after the last id it gave out, from the broker's log (what
    /// the log keeps: qos 1 and retained messages). A new stream begins
    /// with the retained messages of the topics it matches.
    ///
    /// # Errors
    /// [`Error::InvalidTopic`] for a bad pattern; [`Error::Status`] if the
    /// broker refuses the stream (401 without the token; 404 from a Go
    /// broker); [`Error::Io`] if it cannot be reached.
    ///
    /// # Examples
    /// ```no_run
    /// use message_broker::client::Client;
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// for msg in client.stream("sensors/+/temperature")? {
    ///     println!("{}: {}", msg.topic, msg.data);
    /// }
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn stream(&self, pattern: &str) -> Result<Stream, Error> {
        Stream::open(self.inner.clone(), pattern, None)
    }

    /// As [`Client::stream`], first replaying the stored messages after id
    /// `after` (a [`Message::id`] seen earlier) from the broker's log.
    ///
    /// # Errors
    /// As [`Client::stream`].
    ///
    /// # Examples
    /// ```no_run
    /// use message_broker::client::Client;
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// let last_seen = 1_796_063_850_630_306;
    /// let mut stream = client.stream_after("orders", last_seen)?;
    /// println!("{:?}", stream.next());
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn stream_after(&self, pattern: &str, after: u64) -> Result<Stream, Error> {
        Stream::open(self.inner.clone(), pattern, Some(after))
    }

    /// Stops the client's threads and frees its port. Dropping the client
    /// does the same.
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// let client = Client::builder("127.0.0.1:9999").listen_port(10000).build()?;
    /// client.close();
    /// // Port 10000 is free again.
    /// let _again = Client::builder("127.0.0.1:9999").listen_port(10000).build()?;
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
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
            .field("broker", &self.broker())
            .field("listen_port", &self.inner.listen_port)
            .finish()
    }
}
