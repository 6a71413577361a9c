//! What the broker does with one accepted connection: runs the shared request
//! loop with the broker's routes, the access token check and the counters.
//!
//! Never holds a registry lock across I/O.

use super::Shared;
use super::conns::Activity;
use super::metrics;
use super::registry::{Publishing, Registry, Wakes};
use super::route::{self, Action};
use super::routing::Qos;
use super::stream::Format;
use super::tail;
use crate::deadline::{self, Socket};
use crate::http::{RequestHead, query_value};
use crate::log;
use crate::server::{self, BeforeRead, Reply, Traffic};
use crate::store::{Publish, StoreError};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Serves one connection until it closes.
pub(super) fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared, activity: &Activity) {
    log::debug!("connection from {peer}");
    let config = &shared.config;
    let settings = server::Settings {
        limits: config.limits,
        idle_timeout: config.idle_timeout,
        request_timeout: config.request_timeout,
        write_timeout: config.delivery_timeout,
    };
    // An IPv4 peer of a dual-stack listener shows as ::ffff:a.b.c.d; key and
    // call it back as the IPv4 address it is.
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let mut handler = Handler {
        shared,
        peer,
        activity,
        admitted: false,
        stream: None,
        wakes: Arc::default(),
        counted: Counted::default(),
    };
    let why = server::serve(stream, &settings, &mut handler);
    handler.flush_counts();
    // What the last requests queued, if no read came after them.
    Registry::wake(&mut lock(&handler.wakes));
    log::debug!("connection from {peer} closed: {why:?}");
    shared.registry.metrics.closed(why.as_ref().ok().copied());
}

struct Handler<'a> {
    shared: &'a Shared,
    peer: SocketAddr,
    activity: &'a Activity,
    /// The request being read began before the broker started stopping.
    admitted: bool,
    /// A streaming subscription to serve once the connection is ours.
    stream: Option<tail::Request>,
    /// Streams this connection's publishes queued for, to wake before the
    /// next read from the socket, once the pipelined burst in hand is
    /// handled (each stream then writes the burst at once). Shared with the
    /// request loop's `before_read`; only this connection's thread uses it.
    wakes: Arc<Mutex<Wakes>>,
    /// Counted here during a burst of requests, added to the shared
    /// counters before the connection waits (one atomic add each per burst,
    /// not per request, where many connections share them).
    counted: Counted,
}

#[derive(Default)]
struct Counted {
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Handler<'_> {
    fn flush_counts(&mut self) {
        let m = &self.shared.registry.metrics;
        let counted = std::mem::take(&mut self.counted);
        for (counter, n) in [
            (&m.requests, counted.requests),
            (&m.bytes_in, counted.bytes_in),
            (&m.bytes_out, counted.bytes_out),
        ] {
            if n > 0 {
                metrics::add(counter, n);
            }
        }
    }
}

impl server::Handler for Handler<'_> {
    fn begin(&mut self) -> bool {
        // Busy first, then the stop check: the drain waits for busy
        // connections, so a request either is admitted and waited for, or
        // sees the stop (both sequentially consistent).
        let open = self.activity.begin();
        self.admitted = !self.shared.stopping.load(Ordering::SeqCst);
        open
    }

    fn handle(&mut self, head: &RequestHead, body: &[u8]) -> Reply {
        self.counted.requests += 1;
        let action = match route::route(&head.method, head.path(), body) {
            Ok(action) => action,
            Err(reject) => {
                let mut reply = Reply::status(reject.status, reject.reason);
                if reject.status == 405 {
                    reply.headers = reject.allow;
                }
                return reply;
            }
        };
        if action.needs_token() && !authorized(head, self.shared.config.token.as_deref()) {
            // The query (with a token that did not match) is never logged.
            let mut reply = Reply::status(401, "missing or wrong access token");
            reply.headers = &[("WWW-Authenticate", "Bearer")];
            return reply;
        }
        if !self.admitted && !matches!(action, Action::Metrics) {
            // Stopping: nothing new is taken, and the peer is told so.
            let mut reply = Reply::status(503, "broker shutting down");
            reply.close = true;
            return reply;
        }
        if let Action::Stream { pattern } = action {
            let config = &self.shared.config;
            let most = config
                .max_streams
                .unwrap_or(config.max_connections / 2)
                .max(1);
            if self.shared.registry.stream_count() >= most {
                let why = format!("broker busy: {most} streams already (--max-streams)");
                return Reply::status(503, why);
            }
            return match stream_request(head, pattern) {
                Ok(request) => {
                    self.stream = Some(request);
                    Reply::take_over()
                }
                Err(reply) => reply,
            };
        }
        let key = match idempotency_key(head) {
            Ok(key) => key,
            Err(reject) => return reject,
        };
        let mut wakes = lock(&self.wakes);
        if !matches!(action, Action::Publish { .. }) {
            // A subscription may wait for the log: the burst's publishes
            // are not held up by it.
            Registry::wake(&mut wakes);
        }
        let reply = execute(action, key, self.peer, self.shared, &mut wakes);
        if wakes.len() >= MAX_WAKES {
            Registry::wake(&mut wakes);
        }
        reply
    }

    fn before_read(&mut self) -> Option<BeforeRead> {
        let wakes = self.wakes.clone();
        Some(Box::new(move || Registry::wake(&mut lock(&wakes))))
    }

    fn take_over(&mut self, socket: &mut Socket) -> io::Result<u64> {
        self.flush_counts();
        Registry::wake(&mut lock(&self.wakes));
        let Some(request) = self.stream.take() else {
            return Ok(0);
        };
        self.activity.streaming();
        tail::serve(socket, self.peer, &request, self.shared)
    }

    fn end(&mut self, traffic: Traffic) {
        self.counted.bytes_in += traffic.read;
        self.counted.bytes_out += traffic.written;
    }

    fn idle(&mut self) {
        // Before the burst's answers go out: a sleeping subscriber's
        // messages first (its thread is woken after the answers).
        Registry::lend(&lock(&self.wakes));
        self.flush_counts();
        self.activity.idle();
    }

    fn sent(&mut self) {
        self.activity.sent();
    }

    fn keep_going(&self) -> bool {
        !self.shared.stopping.load(Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the request carries `Authorization: Bearer TOKEN` for the
/// broker's token (always, if it has none), or, on a GET, `?token=TOKEN`
/// (PROTOCOL.md section 6.6). Compared in constant time.
fn authorized(head: &RequestHead, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(value) = head.headers.get("authorization") else {
        return head.method == "GET"
            && head
                .query()
                .and_then(|q| query_value(q, "token"))
                .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()));
    };
    let Some((scheme, given)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// `a == b`, taking the same time whatever the bytes (only the lengths show).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Most bytes in an `Idempotency-Key` (PROTOCOL.md section 6.2).
const MAX_KEY: usize = 128;

/// The `Idempotency-Key` header: 1 to 128 visible ASCII characters.
fn idempotency_key(head: &RequestHead) -> Result<Option<String>, Reply> {
    let Some(key) = head.headers.get("idempotency-key") else {
        return Ok(None);
    };
    if key.is_empty() || key.len() > MAX_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        let why = "Idempotency-Key must be 1 to 128 visible ASCII characters";
        return Err(Reply::status(400, why));
    }
    Ok(Some(key.to_owned()))
}

/// A `GET /sub/{pattern}`'s framing (from `Accept`) and where it resumes
/// (`Last-Event-ID`, else `?since=`).
fn stream_request(head: &RequestHead, pattern: String) -> Result<tail::Request, Reply> {
    let format = match head.headers.get("accept") {
        None => Format::Sse,
        Some(accept) if accept.contains("text/event-stream") => Format::Sse,
        Some(accept) if accept.contains("application/x-ndjson") => Format::Ndjson,
        Some(accept) if accept.contains("*/*") => Format::Sse,
        Some(_) => {
            let why = "a stream is text/event-stream or application/x-ndjson (Accept)";
            return Err(Reply::status(406, why));
        }
    };
    let since = head.query().and_then(|q| query_value(q, "since"));
    let resume = match head
        .headers
        .get("last-event-id")
        .map(str::to_owned)
        .or(since)
    {
        None => None,
        Some(id) => match id.trim().parse::<u64>() {
            Ok(id) => Some(id),
            Err(_) => {
                let why = "Last-Event-ID (or since) must be a message id";
                return Err(Reply::status(400, why));
            }
        },
    };
    Ok(tail::Request {
        pattern,
        format,
        resume,
    })
}

/// The console page, with its style and script inline.
const CONSOLE: &str = include_str!("console.html");

/// How long a request waits for the log, from when it was taken, before it
/// answers 503.
const STORE_WAIT: Duration = Duration::from_secs(10);

/// The answer to a request the log did not confirm: 507 when nothing was
/// stored, 503 when it may yet be.
fn not_stored(e: &StoreError) -> Reply {
    match e {
        StoreError::Failed(_) => Reply::status(507, e.to_string()),
        StoreError::TimedOut | StoreError::Stopping => Reply::status(503, e.to_string()),
    }
}

/// The answer to an accepted publish. It names the message's id when the
/// publisher can use it: a stored message, or one sent with a key. A plain
/// qos 0 publish gets the Go broker's answer, byte for byte (and the
/// header's cost stays off the fastest path).
fn published(registry: &Registry, id: u64, with_id: bool) -> Reply {
    metrics::add(&registry.metrics.published, 1);
    let mut reply = Reply::accepted();
    reply.message_id = with_id.then_some(id);
    reply
}

/// Streams a burst may leave unwoken before they are woken anyway.
const MAX_WAKES: usize = 4096;

fn execute(
    action: Action,
    key: Option<String>,
    peer: SocketAddr,
    shared: &Shared,
    wakes: &mut Wakes,
) -> Reply {
    let registry = &shared.registry;
    match action {
        Action::Publish {
            topic,
            data,
            qos,
            retain,
        } => {
            let with_id = qos == Qos::One || retain || key.is_some();
            let publish = Publish {
                topic,
                data,
                qos1: qos == Qos::One,
                retain,
                key,
            };
            return match registry.publish(publish, wakes) {
                Publishing::Done(id) => published(registry, id, with_id),
                Publishing::Storing(id, batch) => {
                    // One deadline from now: held answers wait one after
                    // the other, and must not each get the whole wait.
                    let deadline = deadline::after(STORE_WAIT);
                    let registry = registry.clone();
                    Reply::later(move || match registry.store.wait(&batch, deadline) {
                        Ok(()) => published(&registry, id, true),
                        Err(e) => not_stored(&e),
                    })
                }
            };
        }
        Action::Unsubscribe { pattern, port } => {
            let endpoint = SocketAddr::new(peer.ip(), port);
            if let Some(batch) = registry.unsubscribe(&pattern, endpoint)
                && let Err(e) = registry.store.wait(&batch, deadline::after(STORE_WAIT))
            {
                return not_stored(&e);
            }
            log::debug!("{endpoint} unsubscribed from {pattern:?}");
        }
        Action::Stream { .. } => return Reply::status(500, "stream not taken over"),
        Action::Console => {
            let mut reply = Reply::status(200, "");
            reply.body = CONSOLE.to_owned();
            reply.headers = &[("Content-Type", "text/html; charset=utf-8")];
            return reply;
        }
        Action::Topics | Action::Subscribers => {
            let mut reply = Reply::status(200, "");
            reply.body = if matches!(action, Action::Topics) {
                registry.topics_json()
            } else {
                registry.subscribers_json()
            };
            reply.headers = &[("Content-Type", "application/json")];
            return reply;
        }
        Action::Subscribe { topic, port, qos } => {
            let endpoint = SocketAddr::new(peer.ip(), port);
            match registry.subscribe(&topic, endpoint, qos) {
                Err(e) => {
                    log::warning!("subscription of {endpoint} to {topic:?} refused: {e}");
                    return Reply::status(503, format!("broker busy: {e}"));
                }
                Ok(Some(batch)) => {
                    let stored = registry.store.wait(&batch, deadline::after(STORE_WAIT));
                    let failed = matches!(stored, Err(StoreError::Failed(_)));
                    registry.subscription_settled(&topic, endpoint, &batch, failed);
                    if let Err(e) = stored {
                        return not_stored(&e);
                    }
                }
                Ok(None) => {}
            }
            log::debug!("{endpoint} subscribed to {topic:?} at {qos:?}");
        }
        Action::Heartbeat { port } => {
            registry.heartbeat(peer.ip(), port);
        }
        Action::Health if shared.stopping.load(Ordering::SeqCst) => {
            return Reply::status(503, "stopping");
        }
        Action::Health => return Reply::status(200, "ok"),
        Action::Metrics => {
            let mut reply = Reply::status(200, "");
            reply.body = shared.metrics_page();
            reply.headers = &[("Content-Type", "text/plain; version=0.0.4; charset=utf-8")];
            return reply;
        }
    }
    Reply::accepted()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(constant_time_eq(b"", b""));
    }
}
