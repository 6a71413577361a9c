//! The registry ties the broker's parts together: the routing table, one
//! session (and delivery thread) per subscriber endpoint, and the store.
//! Publishers and subscriptions come in here; stored messages come back
//! from the store's writer, in id order, through [`Registry::sink`].
//!
//! Streaming subscriptions have no thread of their own: their queue is read
//! by the connection that holds them (`tail`).
//!
//! Lock order, everywhere: `routing`, then `endpoints`, then `streams`,
//! then an endpoint's or a stream's own queue. Locks are held only to look up or change the tables, never
//! across I/O, while waiting for queue room, or while calling the store.

use super::delivery::DropReason;
use super::metrics::{self, Gauges, Loss, Metrics};
use super::routing::{Qos, Retained, Routing, Subscription, Target};
use super::session::{Body, Endpoint, Enqueued, Item, Message, Settings};
use super::stream::{Event, Stream};
use super::worker;

mod cluster;
mod listing;
mod restore;
mod streams;

use crate::json;
use crate::log;
use crate::store::{self, Batch, Published, Record, Store, Stored};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread;
pub(crate) use streams::{Wake, Wakes};

/// Stack size of delivery threads: they hold buffers on the heap, and 256 KiB
/// lets a thousand of them fit in a small unikernel.
pub(crate) const DELIVERY_STACK: usize = 256 * 1024;

/// Topics to endpoints, endpoints to their sessions, and the store.
pub(crate) struct Registry {
    routing: Mutex<Routing>,
    endpoints: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
    pub(crate) settings: Settings,
    /// Most endpoints at once (each has a thread).
    max_endpoints: usize,
    /// Set by [`Registry::close_all`]: no endpoint is started after it.
    closed: AtomicBool,
    pub(crate) metrics: Metrics,
    pub(crate) store: Arc<Store>,
    /// Durable subscriptions whose record is being written: a repeat waits
    /// for the same batch. After `endpoints` in the lock order.
    storing: Mutex<HashMap<(String, SocketAddr), Arc<Batch>>>,
    /// Streaming subscriptions by number. After `endpoints` in the lock
    /// order.
    streams: Mutex<HashMap<u64, Arc<Stream>>>,
    next_stream: AtomicU64,
    /// The cluster bridge, with `--nats`. After everything in the lock
    /// order.
    bridge: OnceLock<Arc<crate::nats::bridge::Bridge>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    /// Where [`body`] writes a body before it becomes its `Arc`.
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    /// The subscriptions matching the message being routed, reused.
    static MATCHING: std::cell::RefCell<Vec<Subscription>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The `POST /msg` body of a message at a QoS: qos 1 adds `"id"`. Written
/// into this thread's scratch buffer, then copied into one allocation:
/// the body is freed by another thread (the delivery thread's), and
/// allocations freed across threads contend on the allocator's locks, so
/// it is one, not several.
fn body(topic: &str, data: &str, id: u64, qos: Qos) -> Body {
    SCRATCH.with_borrow_mut(|out| {
        out.clear();
        out.push_str("{\"data\":");
        json::write_string(out, data);
        out.push_str(",\"Topic\":");
        json::write_string(out, topic);
        if qos == Qos::One {
            out.push_str(",\"id\":");
            out.push_str(crate::http::decimal(id, &mut [0; 20]));
        }
        out.push('}');
        let body: Body = Arc::from(out.as_bytes());
        if out.capacity() > 64 * 1024 {
            *out = String::new(); // a large message's buffer is not kept
        }
        body
    })
}

impl Registry {
    pub(crate) fn new(
        settings: Settings,
        max_endpoints: usize,
        store: Arc<Store>,
    ) -> Arc<Registry> {
        Arc::new(Registry {
            routing: Mutex::new(Routing::default()),
            endpoints: Mutex::new(HashMap::new()),
            settings,
            max_endpoints,
            closed: AtomicBool::new(false),
            metrics: Metrics::default(),
            store,
            storing: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            next_stream: AtomicU64::new(1),
            bridge: OnceLock::new(),
        })
    }

    /// Where the store sends the records that became durable.
    pub(crate) fn sink(self: &Arc<Self>) -> store::Sink {
        // Weak: the store's writer must not keep the registry alive.
        let registry: Weak<Registry> = Arc::downgrade(self);
        Box::new(move |records: &[Record]| {
            let Some(registry) = registry.upgrade() else {
                return;
            };
            for record in records {
                if let Record::Message(s) = record {
                    registry.route_stored(s);
                }
            }
        })
    }

    fn start_thread(self: &Arc<Self>, endpoint: &Arc<Endpoint>) -> io::Result<()> {
        let (ep, registry) = (endpoint.clone(), self.clone());
        thread::Builder::new()
            .name(format!("deliver {}", endpoint.addr))
            .stack_size(DELIVERY_STACK)
            .spawn(move || worker::run(ep, registry))?;
        Ok(())
    }

    /// Subscribes `addr` to `topic`, starting the endpoint's session if it
    /// is new; a new subscription first gets the topic's retained message.
    /// Returns the batch to wait on when a durable subscription must be
    /// stored.
    ///
    /// # Errors
    /// The endpoint would be one too many, its delivery thread could not be
    /// started (thread budget exhausted), or the broker is stopping.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        topic: &str,
        addr: SocketAddr,
        qos: Qos,
    ) -> io::Result<Option<Arc<Batch>>> {
        let (new, stored) = self.subscribe_locked(topic, addr, qos)?;
        // The thread is started outside the locks: a slow start (seen under
        // Unikraft) holds up this subscription only, not every other one.
        if let Some(endpoint) = new
            && let Err(e) = self.start_thread(&endpoint)
        {
            let mut routing = self.routing();
            let mut endpoints = lock(&self.endpoints);
            let (_, current) = unlink(&mut routing, &mut endpoints, &endpoint);
            if current && qos == Qos::One {
                self.store.append(Record::End { endpoint: addr });
            }
            return Err(e);
        }
        Ok(stored)
    }

    /// [`Registry::subscribe`] under the locks: the new endpoint, if one was
    /// made (its thread still to start), and the batch to wait on.
    fn subscribe_locked(&self, topic: &str, addr: SocketAddr, qos: Qos) -> io::Result<Subscribed> {
        let mut routing = self.routing();
        let mut endpoints = lock(&self.endpoints);
        if self.closed.load(Ordering::SeqCst) {
            return Err(io::Error::other("broker is stopping"));
        }
        let (endpoint, new) = match endpoints.get(&addr) {
            Some(endpoint) => (endpoint.clone(), None),
            None if endpoints.len() >= self.max_endpoints => {
                return Err(io::Error::other(format!(
                    "{} subscriber endpoints already",
                    endpoints.len()
                )));
            }
            None => {
                let endpoint = Arc::new(Endpoint::new(addr, qos == Qos::One));
                endpoints.insert(addr, endpoint.clone());
                log::debug!("subscriber {addr} added");
                (endpoint.clone(), Some(endpoint))
            }
        };
        if qos == Qos::One {
            endpoint.make_durable();
        }
        endpoint.kick();
        let before = routing.add(topic, Target::Endpoint(addr), qos);
        if before.is_none() {
            for (retained_topic, r) in routing.retained_matching(topic) {
                let qos = r.qos.min(qos);
                let item = Item::Message(Message {
                    body: body(retained_topic, &r.data, r.id, qos),
                    id: r.id,
                    qos,
                });
                endpoint.enqueue(item, &self.settings, &self.metrics, false);
            }
        }
        let key = (topic.to_owned(), addr);
        if qos == Qos::One && before == Some(Qos::One) {
            // Answered once the first request's record is written.
            return Ok((new, lock(&self.storing).get(&key).cloned()));
        }
        if qos == Qos::One {
            // Under the lock, in order with any End record of this address.
            let record = Record::Subscribe {
                endpoint: addr,
                topic: topic.to_owned(),
                from: routing.last_stored,
            };
            let batch = self.store.append(record);
            if let Some(batch) = &batch {
                lock(&self.storing).insert(key, batch.clone());
            }
            return Ok((new, batch));
        }
        Ok((new, None))
    }

    /// Publishes: gives the message its id (or finds its idempotency key)
    /// and queues it for every subscriber, or hands it to the store, which
    /// routes it once stored: then the answer waits on the batch. Streams
    /// whose reader waits are added to `wakes`, for the caller to
    /// [`Registry::wake`] once its burst of publishes is done.
    pub(crate) fn publish(&self, p: store::Publish, wakes: &mut Wakes) -> Publishing {
        match self.store.publish(&p) {
            Published::Duplicate(id, None) => Publishing::Done(id),
            // The first copy is not stored yet: answer when it is.
            Published::Duplicate(id, Some(batch)) => Publishing::Storing(id, batch),
            Published::New(id, Some(batch)) => Publishing::Storing(id, batch),
            Published::New(id, None) if p.is_stored() => {
                let qos = if p.qos1 { Qos::One } else { Qos::Zero };
                self.route_kept(&p.topic, &p.data, id, qos, p.retain, Some(wakes));
                self.forward(&p.topic, &p.data);
                Publishing::Done(id)
            }
            Published::New(id, None) => {
                self.route(&p.topic, &p.data, id, Qos::Zero, true, Some(wakes));
                self.forward(&p.topic, &p.data);
                Publishing::Done(id)
            }
        }
    }

    /// A stored message, in id order: becomes retained if it is, and goes to
    /// the subscribers.
    fn route_stored(&self, s: &Stored) {
        let qos = if s.qos1 { Qos::One } else { Qos::Zero };
        self.route_kept(&s.topic, &s.data, s.id, qos, s.retain, None);
        self.forward(&s.topic, &s.data);
    }

    /// Routes a message that is kept (stored, or retained): never waits
    /// for queue room, and moves the retained message and `last_stored`.
    fn route_kept(
        &self,
        topic: &str,
        data: &str,
        id: u64,
        qos: Qos,
        retain: bool,
        wakes: Option<&mut Wakes>,
    ) {
        if retain || self.store.is_durable() {
            let mut routing = self.routing();
            routing.last_stored = routing.last_stored.max(id);
            if retain {
                let data = data.to_owned();
                routing.retain(topic, Retained { id, data, qos });
            }
        }
        self.route(topic, data, id, qos, false, wakes);
    }

    /// Queues a message for every current subscriber of `topic`. Streams to
    /// wake go to `wakes` if given, else are woken now.
    fn route(
        &self,
        topic: &str,
        data: &str,
        id: u64,
        qos: Qos,
        may_wait: bool,
        mut wakes: Option<&mut Wakes>,
    ) {
        // In the log: a stream's replay may have sent it already.
        let kept = !may_wait && self.store.is_durable();
        let Some(Targets { endpoints, streams }) = self.targets(topic, qos) else {
            return;
        };
        let mut bodies: [Option<Body>; 2] = [None, None];
        for stream in streams {
            let body = bodies[0]
                .get_or_insert_with(|| body(topic, data, id, Qos::Zero))
                .clone();
            let event = Event {
                id,
                body,
                stored: kept,
            };
            let pushed = stream.push_quietly(event);
            if !pushed.accepted {
                self.metrics.lost(Loss::StreamOverflow, 1);
            }
            if pushed.wake {
                match wakes.as_deref_mut() {
                    Some(wakes) => wakes.push(Wake::Stream(stream)),
                    None => stream.wake(),
                }
            }
        }
        for (endpoint, qos) in endpoints {
            let body = bodies[qos as usize]
                .get_or_insert_with(|| body(topic, data, id, qos))
                .clone();
            let item = Item::Message(Message { body, id, qos });
            let (outcome, wake) =
                endpoint.enqueue_quietly(item, &self.settings, &self.metrics, may_wait);
            match outcome {
                Enqueued::Closed => self.metrics.lost(Loss::SubscriberGone, 1),
                Enqueued::OverBacklog => self.end_session(&endpoint, &DropReason::Backlog),
                Enqueued::Queued | Enqueued::DroppedOldest => {}
            }
            if wake {
                match wakes.as_deref_mut() {
                    Some(wakes) => wakes.push(Wake::Endpoint(endpoint)),
                    None => endpoint.wake(),
                }
            }
        }
    }

    /// Who gets a message on `topic` at `qos` (counting the publish for the
    /// console); `None` if no one.
    fn targets(&self, topic: &str, qos: Qos) -> Option<Targets> {
        MATCHING.with_borrow_mut(|subs| {
            let targets = self.targets_of(topic, qos, subs);
            if subs.capacity() > 1024 {
                // A large fan-out's list is not kept.
                *subs = Vec::new();
            }
            targets
        })
    }

    /// [`Registry::targets`], with `subs` to gather the matching
    /// subscriptions in.
    fn targets_of(&self, topic: &str, qos: Qos, subs: &mut Vec<Subscription>) -> Option<Targets> {
        let mut routing = self.routing();
        routing.count_publish(topic);
        routing.matching(topic, subs);
        if subs.is_empty() {
            return None;
        }
        let endpoints = lock(&self.endpoints);
        // Streams are locked only for a message one of them takes.
        let to_streams = subs.iter().any(|s| matches!(s.target, Target::Stream(_)));
        let streams = to_streams.then(|| lock(&self.streams));
        let mut targets = Targets {
            endpoints: Vec::with_capacity(subs.len()),
            streams: Vec::new(),
        };
        for s in subs.iter() {
            match s.target {
                Target::Endpoint(addr) => {
                    if let Some(e) = endpoints.get(&addr) {
                        targets.endpoints.push((e.clone(), s.qos.min(qos)));
                    }
                }
                Target::Stream(n) => {
                    if let Some(stream) = streams.as_ref().and_then(|streams| streams.get(&n)) {
                        targets.streams.push(stream.clone());
                    }
                }
            }
        }
        Some(targets)
    }

    /// Removes the subscription of `addr` to `pattern` (nothing if it had
    /// none); an endpoint left with none is dropped with its queue. Returns
    /// the batch to wait on when a durable subscription's removal must be
    /// stored.
    pub(crate) fn unsubscribe(&self, pattern: &str, addr: SocketAddr) -> Option<Arc<Batch>> {
        let mut routing = self.routing();
        let mut endpoints = lock(&self.endpoints);
        let target = Target::Endpoint(addr);
        let unsubscribe = || Record::Unsubscribe {
            endpoint: addr,
            topic: pattern.to_owned(),
        };
        let endpoint = endpoints.get(&addr).cloned();
        if !routing.remove(pattern, target) {
            // Nothing here, but the log may still hold it (an earlier
            // attempt's record failed, and the retry must store it): the
            // record is harmless where it matches nothing.
            return self.store.append(unsubscribe());
        }
        let endpoint = endpoint?;
        let durable = endpoint.is_durable();
        // Under the lock: in order with the subscription records.
        let batch = if routing.holds(target) {
            durable.then(|| self.store.append(unsubscribe()))
        } else {
            // What it still had queued goes too: it asked for no more.
            let (_, current) = unlink(&mut routing, &mut endpoints, &endpoint);
            metrics::add(
                &self.metrics.subscribers_dropped[DropReason::Unsubscribed.index()],
                1,
            );
            log::debug!("subscriber {addr} dropped: {}", DropReason::Unsubscribed);
            (durable && current).then(|| self.store.append(Record::End { endpoint: addr }))
        };
        batch.flatten()
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
            endpoint.kick();
            endpoint.enqueue(Item::Heartbeat, &self.settings, &self.metrics, true);
        }
        targets.len()
    }

    /// Records that `endpoint` answered `answered`: a qos 1 session's
    /// position moves on (not waited for: a lost position only means a
    /// message is sent again).
    pub(crate) fn answered(&self, endpoint: &Endpoint, answered: &[Item]) {
        let last = answered.iter().rev().find_map(|i| match i {
            Item::Message(m) if m.qos == Qos::One => Some(m.id),
            _ => None,
        });
        if let Some(id) = last {
            self.store.append(Record::Ack {
                endpoint: endpoint.addr,
                id,
            });
        }
    }

    /// Drops a dead qos 0 endpoint from every topic and frees its queue;
    /// `unanswered` messages were sent but not answered. Returns false, and
    /// drops nothing, if a qos 1 subscription made it durable meanwhile.
    pub(crate) fn remove(
        &self,
        endpoint: &Arc<Endpoint>,
        reason: &DropReason,
        unanswered: usize,
    ) -> bool {
        let (lost, _) = {
            let mut routing = self.routing();
            let mut endpoints = lock(&self.endpoints);
            if endpoint.is_durable() {
                return false;
            }
            unlink(&mut routing, &mut endpoints, endpoint)
        };
        let lost = lost + unanswered;
        self.count_drop(reason, lost);
        log::warning!(
            "subscriber {} dropped: {reason} ({lost} messages lost)",
            endpoint.addr
        );
        true
    }

    /// Ends a qos 1 session for good (expired, or past its backlog).
    pub(crate) fn end_session(&self, endpoint: &Arc<Endpoint>, reason: &DropReason) {
        let lost = {
            let mut routing = self.routing();
            let mut endpoints = lock(&self.endpoints);
            if endpoint.is_closed() {
                return;
            }
            let (lost, current) = unlink(&mut routing, &mut endpoints, endpoint);
            if current {
                // Under the lock: a subscription from the same address
                // cannot slip its record in before this one.
                self.store.append(Record::End {
                    endpoint: endpoint.addr,
                });
            }
            lost
        };
        self.count_drop(reason, lost);
        log::warning!(
            "session of {} ended: {reason} ({lost} messages lost)",
            endpoint.addr
        );
    }

    fn count_drop(&self, reason: &DropReason, lost: usize) {
        metrics::add(&self.metrics.subscribers_dropped[reason.index()], 1);
        self.metrics.lost(Loss::SubscriberGone, lost);
    }

    /// Drops `endpoint` if it is still idle past its limit (liveness, or
    /// session expiry for qos 1), checked under the locks so that a
    /// subscription arriving meanwhile keeps it.
    pub(crate) fn expire(&self, endpoint: &Arc<Endpoint>) -> bool {
        let durable = endpoint.is_durable();
        let lost = {
            let mut routing = self.routing();
            let mut endpoints = lock(&self.endpoints);
            if !endpoint.is_idle(&self.settings) {
                return false;
            }
            let (lost, current) = unlink(&mut routing, &mut endpoints, endpoint);
            if durable && current {
                self.store.append(Record::End {
                    endpoint: endpoint.addr,
                });
            }
            lost
        };
        if durable {
            let reason = DropReason::SessionExpired;
            self.count_drop(&reason, lost);
            log::warning!(
                "session of {} ended: {reason} ({lost} messages lost)",
                endpoint.addr
            );
        } else {
            self.count_drop(&DropReason::Idle, lost);
            log::info!("subscriber {} dropped: {}", endpoint.addr, DropReason::Idle);
        }
        true
    }

    /// The record of a durable subscription was written, or `failed`. A
    /// subscription that was not stored is taken back (and its endpoint, if
    /// that leaves it none), so that the subscriber's retry stores it. One
    /// that timed out stays: its record may yet be written.
    pub(crate) fn subscription_settled(
        &self,
        topic: &str,
        addr: SocketAddr,
        batch: &Arc<Batch>,
        failed: bool,
    ) {
        let mut routing = self.routing();
        let mut endpoints = lock(&self.endpoints);
        let key = (topic.to_owned(), addr);
        let mut storing = lock(&self.storing);
        let ours = storing.get(&key).is_some_and(|b| Arc::ptr_eq(b, batch));
        if !ours {
            return; // settled already, by another request for it
        }
        storing.remove(&key);
        drop(storing);
        if !failed {
            return;
        }
        routing.remove(topic, Target::Endpoint(addr));
        if !routing.holds(Target::Endpoint(addr))
            && let Some(endpoint) = endpoints.get(&addr).cloned()
        {
            unlink(&mut routing, &mut endpoints, &endpoint);
        }
    }

    /// Stops every endpoint (broker shutdown). Durable sessions stay in
    /// the log, and what they are owed is not lost.
    pub(crate) fn close_all(&self) {
        let mut routing = self.routing();
        let mut endpoints = lock(&self.endpoints);
        self.closed.store(true, Ordering::SeqCst);
        for endpoint in endpoints.values() {
            let durable = endpoint.is_durable() && self.store.is_durable();
            let dropped = endpoint.close();
            if !durable {
                self.metrics.lost(Loss::Shutdown, dropped);
            }
        }
        endpoints.clear();
        for stream in lock(&self.streams).drain() {
            stream.1.close();
        }
        routing.clear();
    }

    /// Whether every queued message has been delivered (or given up). What
    /// qos 1 sessions are owed does not count with a log: it is kept there.
    pub(crate) fn is_drained(&self) -> bool {
        let kept = self.store.is_durable();
        lock(&self.endpoints)
            .values()
            .all(|e| e.depth().0 == 0 || (kept && e.is_durable()))
    }

    /// Fills in the registry's gauges.
    pub(crate) fn gauges(&self, g: &mut Gauges) {
        let routing = self.routing();
        let endpoints = lock(&self.endpoints);
        g.topics = routing.topic_count();
        g.retained = routing.retained_count();
        g.subscribers = endpoints.len();
        let streams = lock(&self.streams);
        g.streams = streams.len();
        for stream in streams.values() {
            let (messages, bytes) = stream.depth();
            g.queued_messages += messages;
            g.queued_bytes += bytes;
        }
        for endpoint in endpoints.values() {
            let (messages, bytes) = endpoint.depth();
            g.queued_messages += messages;
            g.queued_bytes += bytes;
            if endpoint.is_durable() {
                g.sessions += 1;
                g.backlog_messages += messages;
                g.backlog_bytes += bytes;
            }
        }
    }
}

/// Closes `endpoint` and takes it out of the tables if it is still the one
/// at its address; returns how many queued messages were discarded, and
/// whether it was.
fn unlink(
    routing: &mut Routing,
    endpoints: &mut HashMap<SocketAddr, Arc<Endpoint>>,
    endpoint: &Arc<Endpoint>,
) -> (usize, bool) {
    let lost = endpoint.close();
    // A new endpoint may already sit at the same address: leave it be.
    let current = endpoints
        .get(&endpoint.addr)
        .is_some_and(|e| Arc::ptr_eq(e, endpoint));
    if current {
        endpoints.remove(&endpoint.addr);
        routing.remove_target(Target::Endpoint(endpoint.addr));
    }
    (lost, current)
}

/// What a subscription under the locks left to do: the new endpoint whose
/// thread is to start, and the batch its record is in.
type Subscribed = (Option<Arc<Endpoint>>, Option<Arc<Batch>>);

/// The subscribers a message goes to: endpoints with the QoS of the
/// delivery, and streams.
struct Targets {
    endpoints: Vec<(Arc<Endpoint>, Qos)>,
    streams: Vec<Arc<Stream>>,
}

/// Where a publish stands once [`Registry::publish`] returns.
pub(crate) enum Publishing {
    /// Accepted (queued, or held in memory) with this id.
    Done(u64),
    /// Accepted once this batch of the log is written.
    Storing(u64, Arc<Batch>),
}
