//! Configuring a client, and starting it: [`Builder`] binds the listening
//! port and starts the client's threads (listener, dispatcher, heartbeat).
//!
//! Owns the defaults. Never contacts the broker.

use super::brokers::BrokerList;
use super::call::resolve;
use super::dedupe::Dedupe;
use super::{Client, DEDUPE_WINDOW, DEFAULT_LISTEN_PORT, Error, Inner, heartbeat, listener};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Configures a [`Client`]; made by [`Client::builder`].
///
/// ```no_run
/// use message_broker::client::Client;
/// use std::time::Duration;
/// let client = Client::builder("broker.local:9999")
///     .listen_port(0)
///     .timeout(Duration::from_secs(2))
///     .token("s3cret")
///     .build()?;
/// # Ok::<(), message_broker::client::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    brokers: Vec<String>,
    listen_port: u16,
    listen_ip: Option<IpAddr>,
    timeout: Duration,
    heartbeat_interval: Duration,
    resubscribe_after: Duration,
    token: Option<String>,
}

impl Builder {
    /// The defaults, for the brokers at `brokers`.
    pub(super) fn new(brokers: Vec<String>) -> Builder {
        Builder {
            brokers,
            listen_port: DEFAULT_LISTEN_PORT,
            listen_ip: None,
            timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(4),
            resubscribe_after: Duration::from_secs(10),
            token: None,
        }
    }

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
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// let client = Client::builder("127.0.0.1:9999").listen_port(10001).build()?;
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn listen_port(mut self, port: u16) -> Builder {
        self.listen_port = port;
        self
    }

    /// The address to listen on. Default: every interface of the broker
    /// address's family (`0.0.0.0` or `::`; of the first address that
    /// resolves, with several).
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// use std::net::Ipv4Addr;
    /// let client = Client::builder("127.0.0.1:9999")
    ///     .listen_ip(Ipv4Addr::LOCALHOST.into())
    ///     .build()?;
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn listen_ip(mut self, ip: IpAddr) -> Builder {
        self.listen_ip = Some(ip);
        self
    }

    /// Longest wait for one call to the broker: connecting and the answer
    /// share this deadline, a retry on a fresh connection included (a write
    /// the broker does not take gives up after as long again). A qos 1
    /// publish whose answer is lost is sent once more with a deadline of its
    /// own (see [`Client::publish_with`]). Default 5 s.
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// use std::time::Duration;
    /// let client = Client::builder("127.0.0.1:9999")
    ///     .timeout(Duration::from_secs(2))
    ///     .build()?;
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Builder {
        self.timeout = timeout;
        self
    }

    /// How often to send a heartbeat once subscribed. Default 4 s.
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// use std::time::Duration;
    /// let client = Client::builder("127.0.0.1:9999")
    ///     .heartbeat_interval(Duration::from_secs(1))
    ///     .build()?;
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn heartbeat_interval(mut self, interval: Duration) -> Builder {
        self.heartbeat_interval = interval;
        self
    }

    /// How long the broker may stay silent before the client subscribes
    /// again (each topic with its own qos); with several brokers, at the
    /// next one. Default 10 s.
    ///
    /// ```no_run
    /// use message_broker::client::Client;
    /// use std::time::Duration;
    /// let client = Client::builder("127.0.0.1:9999")
    ///     .resubscribe_after(Duration::from_secs(3))
    ///     .build()?;
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn resubscribe_after(mut self, after: Duration) -> Builder {
        self.resubscribe_after = after;
        self
    }

    /// Starts listening and the client's threads. Does not contact the broker.
    ///
    /// # Errors
    /// [`Error::NoBroker`] if the list of brokers is empty;
    /// [`Error::Address`] if the broker address does not resolve (with
    /// several: if none does; the others are logged and tried again when
    /// their turn comes); [`Error::Io`] if the listen port cannot be bound or
    /// a thread cannot start.
    ///
    /// # Examples
    /// ```no_run
    /// use message_broker::client::{Client, Error};
    /// match Client::builder("127.0.0.1:9999").listen_port(10000).build() {
    ///     Ok(client) => println!("listening on {}", client.listen_port()),
    ///     Err(Error::Io(e)) => eprintln!("port 10000 is taken? {e}"),
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// ```
    pub fn build(self) -> Result<Client, Error> {
        let broker = first_resolved(&self.brokers)?;
        let listen_ip = self.listen_ip.unwrap_or(match broker {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        let listener = TcpListener::bind((listen_ip, self.listen_port))?;
        let local = listener.local_addr()?;
        let inner = Arc::new(Inner {
            brokers: BrokerList::new(self.brokers),
            listen_port: local.port(),
            timeout: self.timeout,
            heartbeat_interval: self.heartbeat_interval,
            resubscribe_after: self.resubscribe_after,
            token: self.token,
            conn: Mutex::new(None),
            subscriptions: Mutex::new(HashMap::new()),
            wildcards: AtomicUsize::new(0),
            dedupe: Mutex::new(Dedupe::new(DEDUPE_WINDOW)),
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

/// The socket address of the first of `brokers` that resolves. With several,
/// each one that does not is logged: a typo shows at once, and a name that
/// is missing from the DNS while its broker is down does not stop the client.
fn first_resolved(brokers: &[String]) -> Result<SocketAddr, Error> {
    let (mut first, mut first_error) = (None, None);
    for broker in brokers {
        match resolve(broker) {
            Ok(addr) => {
                first.get_or_insert(addr);
            }
            Err(e) => {
                if brokers.len() > 1 {
                    crate::log::warning!("client: {e}; tried again when its turn comes");
                }
                first_error.get_or_insert(e);
            }
        }
    }
    first.ok_or_else(|| first_error.unwrap_or(Error::NoBroker))
}
