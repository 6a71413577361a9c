//! The subscription registry: which endpoints (IP and port) subscribe to which
//! topics, and each endpoint's delivery handle.
//!
//! Lock order, everywhere: `topics`, then `endpoints`, then an endpoint's own
//! queue. Locks are held only to look up or change the tables, never across
//! I/O or while waiting for queue room.

use crate::broker::delivery::{self, DropReason, Endpoint, Enqueued, Item, Settings};
use crate::broker::metrics::{self, Gauges, Loss, Metrics};
use crate::json;
use crate::log;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

/// Stack size of delivery threads: they hold buffers on the heap, and 256 KiB
/// lets a thousand of them fit in a small unikernel.
pub(crate) const DELIVERY_STACK: usize = 256 * 1024;

/// Topic to subscriber endpoints, and endpoint to its delivery handle.
pub(crate) struct Registry {
    topics: Mutex<HashMap<String, Vec<SocketAddr>>>,
    endpoints: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
    settings: Settings,
    /// Most endpoints at once (each has a thread).
    max_endpoints: usize,
    /// Set by [`Registry::close_all`]: no endpoint is started after it.
    closed: AtomicBool,
    pub(crate) metrics: Metrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub(crate) fn new(settings: Settings, max_endpoints: usize) -> Arc<Registry> {
        Arc::new(Registry {
            topics: Mutex::new(HashMap::new()),
            endpoints: Mutex::new(HashMap::new()),
            settings,
            max_endpoints,
            closed: AtomicBool::new(false),
            metrics: Metrics::default(),
        })
    }

    /// Subscribes `addr` to `topic`, starting the endpoint's delivery thread
    /// if it is new. Subscribing the same pair twice keeps one subscription.
    ///
    /// # Errors
    /// The endpoint would be one too many, its delivery thread could not be
    /// started (thread budget exhausted), or the broker is stopping.
    pub(crate) fn subscribe(self: &Arc<Self>, topic: &str, addr: SocketAddr) -> io::Result<()> {
        let mut topics = lock(&self.topics);
        let mut endpoints = lock(&self.endpoints);
        if self.closed.load(Ordering::SeqCst) {
            return Err(io::Error::other("broker is stopping"));
        }
        match endpoints.get(&addr) {
            Some(endpoint) => endpoint.touch(),
            None if endpoints.len() >= self.max_endpoints => {
                return Err(io::Error::other(format!(
                    "{} subscriber endpoints already",
                    endpoints.len()
                )));
            }
            None => {
                let endpoint = Arc::new(Endpoint::new(addr));
                let (ep, registry, settings) = (endpoint.clone(), self.clone(), self.settings);
                thread::Builder::new()
                    .name(format!("deliver {addr}"))
                    .stack_size(DELIVERY_STACK)
                    .spawn(move || delivery::run(ep, registry, settings))?;
                endpoints.insert(addr, endpoint);
                log::debug!("subscriber {addr} added");
            }
        }
        let subscribers = topics.entry(topic.to_owned()).or_default();
        if !subscribers.contains(&addr) {
            subscribers.push(addr);
        }
        Ok(())
    }

    /// Queues `data` for every current subscriber of `topic`; returns how
    /// many there were.
    pub(crate) fn publish(&self, topic: &str, data: &str) -> usize {
        let targets: Vec<Arc<Endpoint>> = {
            let topics = lock(&self.topics);
            let Some(addrs) = topics.get(topic) else {
                return 0;
            };
            let endpoints = lock(&self.endpoints);
            addrs
                .iter()
                .filter_map(|a| endpoints.get(a).cloned())
                .collect()
        };
        if targets.is_empty() {
            return 0;
        }
        let body: Arc<[u8]> = json::encode_object(&[("data", data), ("Topic", topic)])
            .into_bytes()
            .into();
        for endpoint in &targets {
            let item = Item::Message(body.clone());
            if endpoint.enqueue(item, &self.settings, &self.metrics) == Enqueued::Closed {
                // Dropped between the lookup and now.
                self.metrics.lost(Loss::SubscriberGone, 1);
            }
        }
        targets.len()
    }

    /// Answers a subscriber's heartbeat: queues a `POST /hb` to each endpoint
    /// at `ip` (only the one at `port` if given). Returns how many.
    pub(crate) fn heartbeat(&self, ip: IpAddr, port: Option<u16>) -> usize {
        let targets: Vec<Arc<Endpoint>> = lock(&self.endpoints)
            .values()
            .filter(|e| e.addr.ip() == ip && port.is_none_or(|p| e.addr.port() == p))
            .cloned()
            .collect();
        for endpoint in &targets {
            endpoint.enqueue(Item::Heartbeat, &self.settings, &self.metrics);
        }
        targets.len()
    }

    /// Drops a dead endpoint from every topic and frees its queue;
    /// `unanswered` messages were sent but not answered.
    pub(crate) fn remove(&self, endpoint: &Arc<Endpoint>, reason: &DropReason, unanswered: usize) {
        let mut topics = lock(&self.topics);
        let mut endpoints = lock(&self.endpoints);
        let lost = self.unlink(&mut topics, &mut endpoints, endpoint) + unanswered;
        self.count_drop(reason, lost);
        log::warning!(
            "subscriber {} dropped: {reason} ({lost} messages lost)",
            endpoint.addr
        );
    }

    fn count_drop(&self, reason: &DropReason, lost: usize) {
        metrics::add(&self.metrics.subscribers_dropped[reason.index()], 1);
        self.metrics.lost(Loss::SubscriberGone, lost);
    }

    /// Drops `endpoint` if it is still idle past the liveness timeout, checked
    /// under the locks so that a subscription arriving meanwhile keeps it.
    pub(crate) fn expire(&self, endpoint: &Arc<Endpoint>) -> bool {
        let Some(liveness) = self.settings.liveness else {
            return false;
        };
        let mut topics = lock(&self.topics);
        let mut endpoints = lock(&self.endpoints);
        if !endpoint.is_idle(liveness) {
            return false;
        }
        let lost = self.unlink(&mut topics, &mut endpoints, endpoint);
        self.count_drop(&DropReason::Idle, lost);
        log::info!("subscriber {} dropped: {}", endpoint.addr, DropReason::Idle);
        true
    }

    /// Returns how many queued messages were discarded.
    fn unlink(
        &self,
        topics: &mut HashMap<String, Vec<SocketAddr>>,
        endpoints: &mut HashMap<SocketAddr, Arc<Endpoint>>,
        endpoint: &Arc<Endpoint>,
    ) -> usize {
        let lost = endpoint.close();
        // A new endpoint may already sit at the same address: leave it be.
        if !endpoints
            .get(&endpoint.addr)
            .is_some_and(|e| Arc::ptr_eq(e, endpoint))
        {
            return lost;
        }
        endpoints.remove(&endpoint.addr);
        topics.retain(|_, addrs| {
            addrs.retain(|a| *a != endpoint.addr);
            !addrs.is_empty()
        });
        lost
    }

    /// Stops every endpoint (broker shutdown).
    pub(crate) fn close_all(&self) {
        let mut topics = lock(&self.topics);
        let mut endpoints = lock(&self.endpoints);
        self.closed.store(true, Ordering::SeqCst);
        for endpoint in endpoints.values() {
            self.metrics.lost(Loss::Shutdown, endpoint.close());
        }
        endpoints.clear();
        topics.clear();
    }

    /// Whether every queued message has been delivered (or given up).
    pub(crate) fn is_drained(&self) -> bool {
        lock(&self.endpoints).values().all(|e| e.depth().0 == 0)
    }

    /// Fills in the registry's gauges.
    pub(crate) fn gauges(&self, g: &mut Gauges) {
        let topics = lock(&self.topics);
        let endpoints = lock(&self.endpoints);
        g.topics = topics.len();
        g.subscribers = endpoints.len();
        for endpoint in endpoints.values() {
            let (messages, bytes) = endpoint.depth();
            g.queued_messages += messages;
            g.queued_bytes += bytes;
        }
    }
}
