//! The broker: accepts connections, routes requests, keeps the subscription
//! registry and delivers messages (PROTOCOL.md sections 1 to 4).
//!
//! - `conns`: the table of open connections, and room-making when it is full.
//! - `conn`: one thread per accepted connection, reading requests in order.
//! - `route`: what a request means, or its error status (pure).
//! - `routing`: who gets a message: patterns to subscriptions, retained
//!   messages (plain data), over `tree`, the patterns' tree of levels.
//! - `stream`: a streaming subscription's queue; `events`: its framing
//!   (pure); `tail`: the connection serving it.
//! - `session`: one endpoint's queue, signs of life and what it is owed.
//! - `delivery`: the transport that writes batches to an endpoint.
//! - `worker`: an endpoint's thread: session to delivery, retries.
//! - `registry`: ties routing, sessions and the store (`crate::store`).
//! - `metrics`: counters, and the `GET /metrics` page.
//!
//! ```no_run
//! use message_broker::broker::{Broker, Config};
//!
//! # fn main() -> std::io::Result<()> {
//! let broker = Broker::bind(Config::default())?; // port 9999, all interfaces
//! eprintln!("listening on {}", broker.local_addr());
//! broker.run() // serves until stopped
//! # }
//! ```

mod conn;
mod conns;
mod delivery;
mod events;
mod metrics;
mod registry;
mod route;
mod routing;
mod session;
mod stream;
mod tail;
mod tree;
mod worker;

pub use crate::store::Fsync;

use crate::http::Limits;
use crate::log;
use registry::Registry;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The port the broker listens on unless told otherwise, as the Go broker.
pub const DEFAULT_PORT: u16 = 9999;

/// Stack size of connection threads: requests are parsed without recursion
/// and buffered on the heap.
const CONNECTION_STACK: usize = 256 * 1024;

/// How the broker runs. `Config::default()` is what `broker` with no flags uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on. Default `0.0.0.0` (all IPv4 interfaces); `::`
    /// listens on IPv6 (and, where the system allows, IPv4 too).
    pub bind: IpAddr,
    /// Port to listen on; 0 takes a free one. Default 9999.
    pub port: u16,
    /// Request size limits; the payload limit defaults to 1 MiB.
    pub limits: Limits,
    /// A keep-alive connection idle this long is closed. Default 60 s.
    pub idle_timeout: Duration,
    /// A request not fully received this long after its first byte gets 408
    /// and its connection is closed (slowloris). Default 10 s.
    pub request_timeout: Duration,
    /// A subscriber with no successful delivery and no heartbeat for this long
    /// is dropped; `None` never drops an idle subscriber. Default 10 s.
    pub liveness_timeout: Option<Duration>,
    /// Longest wait for one delivery (connect, write, answer). Default 5 s.
    pub delivery_timeout: Duration,
    /// Messages queued per subscriber before the oldest is dropped. Default 1024.
    pub queue_capacity: usize,
    /// Bytes of messages queued per subscriber before the oldest is dropped.
    /// Default 8 MiB.
    pub queue_bytes: usize,
    /// How long a publish waits for room in a full subscriber queue before
    /// dropping that subscriber's oldest message. Default 50 ms.
    pub enqueue_wait: Duration,
    /// Connections served at once (one thread each). When all are taken, the
    /// longest-idle keep-alive connection is closed to make room; if none is
    /// idle, the new one gets 503 and is closed. Default 1024.
    pub max_connections: usize,
    /// Subscriber endpoints (IP and port) at once (one delivery thread each);
    /// past it a subscription gets 503. Default 1024.
    pub max_subscribers: usize,
    /// Streaming subscriptions at once (each holds a connection, never
    /// closed to make room); past it a stream gets 503. `None`, the
    /// default: half of `max_connections`.
    pub max_streams: Option<usize>,
    /// On stop, how long subscriber queues get to drain. Default 5 s.
    pub drain_timeout: Duration,
    /// When set, every request but `/healthz` and `/metrics` needs
    /// `Authorization: Bearer TOKEN` (a GET may give `?token=TOKEN`
    /// instead, as a browser's `EventSource` cannot set headers), else 401.
    /// Default none.
    pub token: Option<String>,
    /// What the broker logs on stderr. Default info: start, stop, dropped
    /// subscribers; nothing per message.
    pub log_level: log::Level,
    /// Where the log is kept (created if missing; one broker per
    /// directory). `None`, the default, keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// When the log is synced to the disk. Default [`Fsync::Batch`].
    pub fsync: Fsync,
    /// A qos 1 endpoint with no sign of life (answer, heartbeat,
    /// subscription) this long, and then unreachable (a failed delivery, or
    /// a heartbeat sent to ask), is dropped with its session. Default 1 h.
    pub session_expiry: Duration,
    /// A qos 1 endpoint owed more than this many bytes is dropped with its
    /// session. Default 64 MiB.
    pub backlog_bytes: usize,
    /// Log segments that no session needs are deleted once older than
    /// this. Default 1 h.
    pub retention: Duration,
    /// A log segment past this size is closed and a new one begun.
    /// Default 16 MiB.
    pub segment_bytes: u64,
    /// How long an `Idempotency-Key` is remembered. Default 2 min.
    pub dedupe_window: Duration,
    /// A streaming subscription with nothing to send gets a keep-alive
    /// this often. Default 15 s.
    pub stream_keepalive: Duration,
    /// NATS servers to share topics with other brokers through
    /// (`nats://[USER:PASS@|TOKEN@]HOST:PORT`, comma-separated, tried in
    /// turn; PROTOCOL.md section 6.7). Default none: this broker alone.
    pub nats: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: DEFAULT_PORT,
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            liveness_timeout: Some(Duration::from_secs(10)),
            delivery_timeout: Duration::from_secs(5),
            queue_capacity: 1024,
            queue_bytes: 8 * 1024 * 1024,
            enqueue_wait: Duration::from_millis(50),
            max_connections: 1024,
            max_subscribers: 1024,
            max_streams: None,
            drain_timeout: Duration::from_secs(5),
            token: None,
            log_level: log::Level::Info,
            data_dir: None,
            fsync: Fsync::Batch,
            session_expiry: Duration::from_secs(3600),
            backlog_bytes: 64 * 1024 * 1024,
            retention: Duration::from_secs(3600),
            segment_bytes: 16 * 1024 * 1024,
            dedupe_window: Duration::from_secs(120),
            stream_keepalive: Duration::from_secs(15),
            nats: None,
        }
    }
}

/// What every connection thread shares.
struct Shared {
    config: Config,
    registry: Arc<Registry>,
    stopping: AtomicBool,
    /// Set by [`Broker::stop_on_signals`]: a signal stops this broker.
    on_signals: AtomicBool,
    /// Connections being served now.
    conns: Arc<conns::Conns>,
}

impl Drop for Shared {
    /// A broker dropped without running still writes what its log holds
    /// pending and lets go of its data directory (`run` did it already
    /// otherwise: this does nothing then).
    fn drop(&mut self) {
        self.registry.store.close();
    }
}

impl Shared {
    /// The `GET /metrics` page.
    fn metrics_page(&self) -> String {
        let mut gauges = metrics::Gauges {
            connections_open: self.conns.open(),
            connections_busy: self.conns.busy(),
            thread_budget: self.config.max_connections + self.config.max_subscribers,
            stopping: self.stopping.load(Ordering::SeqCst),
            ..metrics::Gauges::default()
        };
        self.registry.gauges(&mut gauges);
        let log = &self.registry.store.metrics;
        let mut page = self.registry.metrics.render(&gauges, log);
        if let Some(bridge) = self.registry.bridge() {
            metrics::render_bridge(&mut page, bridge);
        }
        page
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
            || (self.on_signals.load(Ordering::SeqCst) && crate::signal::stop_requested())
    }
}

/// A bound broker, ready to serve.
pub struct Broker {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Broker {
    /// Binds the listening socket.
    ///
    /// # Errors
    /// A timeout of the configuration is zero, the address cannot be bound
    /// (for example, the port is in use), or the data directory cannot be
    /// opened, read or locked (another broker uses it).
    ///
    /// # Examples
    /// ```no_run
    /// use message_broker::broker::{Broker, Config};
    /// let broker = Broker::bind(Config { port: 0, ..Config::default() })?;
    /// println!("{}", broker.local_addr());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind(config: Config) -> io::Result<Broker> {
        for (name, timeout) in [
            ("idle_timeout", config.idle_timeout),
            ("request_timeout", config.request_timeout),
            ("delivery_timeout", config.delivery_timeout),
        ] {
            if timeout.is_zero() {
                let why = format!("Config::{name} must be more than 0");
                return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
            }
        }
        log::set_level(config.log_level);
        let listener = TcpListener::bind((config.bind, config.port))?;
        let local_addr = listener.local_addr()?;
        let settings = session::Settings {
            queue_capacity: config.queue_capacity.max(1),
            queue_bytes: config.queue_bytes,
            enqueue_wait: config.enqueue_wait,
            timeout: config.delivery_timeout,
            liveness: config.liveness_timeout,
            session_expiry: config.session_expiry,
            backlog_bytes: config.backlog_bytes,
        };
        let registry = open_store(&config, settings)?;
        if let Some(servers) = &config.nats {
            start_bridge(&registry, servers, config.limits.max_body)?;
        }
        let shared = Arc::new(Shared {
            registry,
            conns: conns::Conns::new(config.max_connections.max(1)),
            config,
            stopping: AtomicBool::new(false),
            on_signals: AtomicBool::new(false),
        });
        Ok(Broker {
            listener,
            local_addr,
            shared,
        })
    }

    /// The address the broker listens on (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops this broker from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            shared: self.shared.clone(),
            wake: crate::net::loopback_for(self.local_addr),
        }
    }

    /// Stops this broker gracefully on `SIGTERM` or `SIGINT` (a second
    /// signal exits at once with status 1). Under Unikraft no signal ever
    /// arrives: the VM is stopped from outside.
    ///
    /// # Errors
    /// The handlers could not be installed.
    pub fn stop_on_signals(&self) -> io::Result<()> {
        // Before the handler: a signal must find this broker listening for it.
        self.shared.on_signals.store(true, Ordering::SeqCst);
        let installed = crate::signal::install(&self.listener);
        if installed.is_err() {
            self.shared.on_signals.store(false, Ordering::SeqCst);
        }
        installed
    }

    /// Serves until [`Stopper::stop`] is called (or a signal arrives, after
    /// [`Broker::stop_on_signals`]), then stops gracefully: no new
    /// connections, requests in flight answered, subscriber queues given up
    /// to [`Config::drain_timeout`] to drain.
    ///
    /// # Errors
    /// Never for a peer's fault; only if the listener itself fails for good.
    pub fn run(self) -> io::Result<()> {
        // Decided (and, for the watchdog, said) before the first connection.
        crate::deadline::kernel_timeouts();
        log::info!(
            "listening on {} (message-broker {})",
            self.local_addr,
            env!("CARGO_PKG_VERSION")
        );
        for stream in self.listener.incoming() {
            if self.shared.is_stopping() {
                break;
            }
            match stream {
                Ok(stream) => self.start_connection(stream),
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly
                    // rather than spin, and keep serving the connections we have.
                    log::warning!("accept failed: {e}");
                    thread::sleep(Duration::from_millis(10));
                }
            }
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        crate::signal::forget_listener();
        drop(self.listener);
        drain(&self.shared);
        log::info!("stopped");
        Ok(())
    }

    /// Serves on a thread of its own.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn spawn(self) -> io::Result<Running> {
        let stopper = self.stopper();
        let local_addr = self.local_addr;
        let thread = thread::Builder::new()
            .name("broker accept".into())
            .spawn(move || self.run())?;
        Ok(Running {
            stopper,
            local_addr,
            thread: Some(thread),
        })
    }

    fn start_connection(&self, stream: TcpStream) {
        let Ok(peer) = stream.peer_addr() else {
            return; // the peer is already gone
        };
        let metrics = &self.shared.registry.metrics;
        metrics::add(&metrics.connections_total, 1);
        let Ok(handle) = stream.try_clone() else {
            metrics::add(&metrics.connections_refused, 1);
            return refuse(stream, "broker busy: out of file descriptors");
        };
        let (ticket, how) = match self.shared.conns.admit(handle) {
            Ok(admitted) => admitted,
            Err(conns::Full::AllBusy) => {
                metrics::add(&metrics.connections_refused, 1);
                log::debug!("connection from {peer} refused: every connection is busy");
                return refuse(stream, "broker busy: too many connections");
            }
        };
        if how == conns::Admitted::Evicted {
            metrics::add(&metrics.connections_evicted, 1);
            log::debug!("closed the longest-idle connection to make room for {peer}");
        }
        let spare = stream.try_clone();
        let shared = self.shared.clone();
        let started = thread::Builder::new()
            .name(format!("conn {peer}"))
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                conn::serve(stream, peer, &shared, &ticket.activity);
                drop(ticket);
            });
        if let Err(e) = started {
            metrics::add(&metrics.connections_refused, 1);
            log::warning!("connection from {peer} refused: cannot start a thread: {e}");
            if let Ok(stream) = spare {
                refuse(stream, "broker busy: no thread for this connection");
            }
        }
    }
}

/// Opens the store (the log, with a data directory), and the registry over
/// what it holds.
fn open_store(config: &Config, settings: session::Settings) -> io::Result<Arc<Registry>> {
    let max = config.max_subscribers.max(1);
    let Some(dir) = &config.data_dir else {
        let store = crate::store::Store::memory(config.dedupe_window);
        let registry = Registry::new(settings, max, store.clone());
        store.start(registry.sink(), None)?;
        return Ok(registry);
    };
    let started = Instant::now();
    let options = crate::store::Options {
        dir: dir.clone(),
        fsync: config.fsync,
        segment_bytes: config.segment_bytes.max(4096),
        retention: config.retention,
        backlog_bytes: config.backlog_bytes,
    };
    let (store, mut found) = crate::store::Store::open(options, config.dedupe_window)?;
    let registry = Registry::new(settings, max, store.clone());
    let (messages, sessions) = (found.messages, found.state.sessions.len());
    let retained = found.state.retained.len();
    registry.restore(&mut found);
    store.start(registry.sink(), Some(found)).map_err(|e| {
        let why = format!("cannot open data directory {}: {e}", dir.display());
        io::Error::new(e.kind(), why)
    })?;
    log::info!(
        "log: recovered {messages} messages, {sessions} sessions, {retained} retained from {} in {} ms",
        dir.display(),
        started.elapsed().as_millis()
    );
    Ok(registry)
}

/// Starts the cluster bridge to the NATS `servers` (PROTOCOL.md 6.7).
fn start_bridge(registry: &Arc<Registry>, servers: &str, max_data: usize) -> io::Result<()> {
    use crate::nats::bridge::{Bridge, OUTBOX_BYTES, Options};
    let servers = crate::nats::url::parse_servers(servers)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
    let origin = crate::nats::origin();
    log::info!(
        "nats: sharing topics through {} as {origin}",
        list.join(", ")
    );
    let options = Options {
        servers,
        origin,
        max_data,
        outbox_bytes: OUTBOX_BYTES,
    };
    // Weak: the bridge's thread must not keep the registry alive.
    let weak = Arc::downgrade(registry);
    let sink = Box::new(move |messages| {
        if let Some(registry) = weak.upgrade() {
            registry.publish_from_cluster(messages);
        }
    });
    registry.attach(Arc::new(Bridge::start(options, sink)?));
    Ok(())
}

/// Waits, up to the drain timeout, for requests in flight to be answered
/// and subscriber queues to empty; then closes every queue.
fn drain(shared: &Shared) {
    let deadline = Instant::now().checked_add(shared.config.drain_timeout);
    if let Some(bridge) = shared.registry.bridge() {
        // Nothing more comes in from the cluster while the queues drain;
        // what the requests in flight publish still goes out.
        bridge.stop_receiving();
    }
    log::info!("stopping: draining subscriber queues");
    loop {
        if shared.conns.busy() == 0 && shared.registry.is_drained() {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            log::warning!("stopping: drain timeout reached, dropping what is still queued");
            break;
        }
        // Shutdown only, bounded by the deadline: a poll is simplest.
        thread::sleep(Duration::from_millis(5));
    }
    if let Some(bridge) = shared.registry.bridge() {
        bridge.stop(); // after a bounded flush of what it holds
    }
    shared.registry.close_all();
    shared.registry.store.close();
}

/// Answers 503 to a connection we will not serve, and closes it.
fn refuse(stream: TcpStream, reason: &str) {
    // Bounded: a peer that does not read must not hold the accept loop.
    let reply = crate::server::Reply::status(503, reason);
    crate::server::refuse(stream, &reply, Duration::from_millis(50));
}

/// Stops a broker: it stops accepting, closes subscriber queues, and
/// [`Broker::run`] returns.
#[derive(Clone)]
pub struct Stopper {
    shared: Arc<Shared>,
    wake: SocketAddr,
}

impl Stopper {
    /// Asks the broker to stop; returns at once.
    pub fn stop(&self) {
        if !self.shared.stopping.swap(true, Ordering::SeqCst) {
            // accept() has no timeout: a connection of our own wakes it.
            let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
        }
    }
}

/// A broker serving on its own thread; dropping it stops the broker.
pub struct Running {
    stopper: Stopper,
    local_addr: SocketAddr,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Running {
    /// The address the broker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the broker and waits for its accept loop to end; the port is
    /// free when this returns.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stopper.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
