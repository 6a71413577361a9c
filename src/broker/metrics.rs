//! The broker's counters, and `GET /metrics` in the Prometheus text format
//! (version 0.0.4).
//!
//! Counters are relaxed atomics bumped where things happen; gauges (open
//! connections, subscribers, topics, queue depth) are read from their owners
//! when the page is built.

use crate::nats::bridge::Bridge;
use crate::server::Close;
use crate::store::StoreMetrics;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a queued message was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// The subscriber's queue was full: its oldest message made room.
    QueueFull,
    /// The subscriber was dropped with the message still queued or unanswered.
    SubscriberGone,
    /// The broker stopped before the message could be delivered.
    Shutdown,
    /// A stream's reader fell behind: its stream ends with `overflow`.
    StreamOverflow,
}

impl Loss {
    const ALL: [Loss; 4] = [
        Loss::QueueFull,
        Loss::SubscriberGone,
        Loss::Shutdown,
        Loss::StreamOverflow,
    ];

    fn label(self) -> &'static str {
        match self {
            Loss::QueueFull => "queue_full",
            Loss::SubscriberGone => "subscriber_gone",
            Loss::Shutdown => "shutdown",
            Loss::StreamOverflow => "stream_overflow",
        }
    }
}

/// Labels of [`crate::broker::delivery::DropReason`], in the order of
/// [`Metrics::subscribers_dropped`].
pub(crate) const DROP_REASONS: [&str; 9] = [
    "connect_failed",
    "timeout",
    "io",
    "refused",
    "bad_response",
    "idle",
    "session_expired",
    "backlog",
    "unsubscribed",
];

/// Why client connections closed, in the order of `connections_closed`.
const CLOSE_REASONS: [&str; 9] = [
    "peer",
    "done",
    "idle_timeout",
    "evicted",
    "request_timeout",
    "bad_request",
    "truncated",
    "error",
    "stream_end",
];

/// Every counter of one broker.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections_total: AtomicU64,
    /// Connections answered 503 (or closed unanswered) at the door.
    pub(crate) connections_refused: AtomicU64,
    /// Idle keep-alive connections closed to make room for a new one.
    pub(crate) connections_evicted: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    dropped: [AtomicU64; 4],
    pub(crate) subscribers_dropped: [AtomicU64; 9],
    /// qos 1 messages sent again after a failed delivery.
    pub(crate) redelivered: AtomicU64,
    connections_closed: [AtomicU64; 9],
    /// Streaming subscriptions opened.
    pub(crate) streams_opened: AtomicU64,
    /// Streams ended because their reader fell behind.
    pub(crate) streams_overflowed: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) delivered_bytes: AtomicU64,
}

/// Values read from the broker's tables when the page is built.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gauges {
    pub(crate) connections_open: usize,
    pub(crate) connections_busy: usize,
    pub(crate) subscribers: usize,
    pub(crate) topics: usize,
    pub(crate) queued_messages: usize,
    pub(crate) queued_bytes: usize,
    pub(crate) thread_budget: usize,
    pub(crate) stopping: bool,
    pub(crate) retained: usize,
    /// qos 1 endpoints, and what they are owed.
    pub(crate) sessions: usize,
    pub(crate) backlog_messages: usize,
    pub(crate) backlog_bytes: usize,
    /// Streaming subscriptions open.
    pub(crate) streams: usize,
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// Counts a closed client connection: why it closed, or `None` for a
    /// transport error.
    pub(crate) fn closed(&self, why: Option<Close>) {
        let at = match why {
            Some(Close::Peer) => 0,
            Some(Close::Done) => 1,
            Some(Close::Idle) => 2,
            Some(Close::Evicted) => 3,
            Some(Close::Refused(408)) => 4,
            Some(Close::Refused(_)) => 5,
            Some(Close::Truncated) => 6,
            None => 7,
            Some(Close::Streamed) => 8,
        };
        add(&self.connections_closed[at], 1);
    }

    /// Counts `n` messages lost for `why`.
    pub(crate) fn lost(&self, why: Loss, n: usize) {
        if n > 0 {
            add(&self.dropped[why as usize], n as u64);
        }
    }

    /// The page for `GET /metrics`.
    pub(crate) fn render(&self, g: &Gauges, log: &StoreMetrics) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let n = |v: usize| v as u64;
        #[rustfmt::skip]
        let single = [
            ("up", "gauge", "1 while serving, 0 while stopping.", u64::from(!g.stopping)),
            ("connections_open", "gauge", "Client connections being served.", n(g.connections_open)),
            ("connections_busy", "gauge", "Connections in the middle of a request (a scrape counts itself).", n(g.connections_busy)),
            ("connections_total", "counter", "Client connections accepted.", get(&self.connections_total)),
            ("connections_refused_total", "counter", "Connections turned away with 503 (limit or no thread).", get(&self.connections_refused)),
            ("connections_evicted_total", "counter", "Idle keep-alive connections closed to make room.", get(&self.connections_evicted)),
            ("requests_total", "counter", "Whole requests handled, any status (not those refused while being read).", get(&self.requests)),
            ("subscribers", "gauge", "Subscriber endpoints (IP and port).", n(g.subscribers)),
            ("topics", "gauge", "Subscription patterns with at least one subscriber.", n(g.topics)),
            ("messages_published_total", "counter", "Messages accepted with 202.", get(&self.published)),
            ("messages_delivered_total", "counter", "Messages a subscriber answered 2xx, or written to a stream.", get(&self.delivered)),
            ("queued_messages", "gauge", "Messages waiting in subscriber queues.", n(g.queued_messages)),
            ("queued_bytes", "gauge", "Bytes waiting in subscriber queues.", n(g.queued_bytes)),
            ("received_bytes_total", "counter", "Bytes read from client connections.", get(&self.bytes_in)),
            ("sent_bytes_total", "counter", "Bytes written to client connections.", get(&self.bytes_out)),
            ("delivered_bytes_total", "counter", "Message bodies delivered to subscribers, in bytes.", get(&self.delivered_bytes)),
            ("threads", "gauge", "Connection and delivery threads running.", n(g.connections_open + g.subscribers)),
            ("thread_budget", "gauge", "Most connection and delivery threads (--max-connections + --max-subscribers).", n(g.thread_budget)),
            ("messages_stored_total", "counter", "qos 1 and retained messages stored (in the log, or in memory without one).", get(&log.stored)),
            ("messages_redelivered_total", "counter", "qos 1 messages sent again after a failed delivery.", get(&self.redelivered)),
            ("publish_duplicates_total", "counter", "Publishes answered with an earlier message's id (Idempotency-Key).", get(&log.duplicates)),
            ("sessions", "gauge", "qos 1 subscriber endpoints (durable sessions).", n(g.sessions)),
            ("sessions_backlog_messages", "gauge", "Messages queued for qos 1 endpoints.", n(g.backlog_messages)),
            ("sessions_backlog_bytes", "gauge", "Bytes queued for qos 1 endpoints.", n(g.backlog_bytes)),
            ("streams", "gauge", "Streaming subscriptions open (GET /sub).", n(g.streams)),
            ("streams_opened_total", "counter", "Streaming subscriptions opened.", get(&self.streams_opened)),
            ("streams_overflowed_total", "counter", "Streams ended with an overflow event (reader too slow).", get(&self.streams_overflowed)),
            ("retained_messages", "gauge", "Topics with a retained message.", n(g.retained)),
            ("log_bytes", "gauge", "Bytes in the log's segments (0 without --data-dir).", get(&log.bytes)),
            ("log_segments", "gauge", "Segment files in the log.", get(&log.segments)),
            ("log_syncs_total", "counter", "fdatasync calls on the log.", get(&log.syncs)),
            ("log_cut_bytes_total", "counter", "Bytes of torn or corrupt records cut off at start.", get(&log.cut_bytes)),
            ("log_write_errors_total", "counter", "Log writes that failed (each answered 507).", get(&log.write_errors)),
        ];
        let mut page = String::with_capacity(4096);
        for (name, kind, help, value) in single {
            family(&mut page, name, kind, help);
            let _ = writeln!(page, "broker_{name} {value}");
        }
        let help = "Time spent in fdatasync on the log.";
        family(&mut page, "log_sync_seconds_total", "counter", help);
        let seconds = get(&log.sync_nanos) as f64 / 1e9;
        let _ = writeln!(page, "broker_log_sync_seconds_total {seconds:.6}");
        let help = "qos 1 sessions ended, by reason.";
        family(&mut page, "sessions_expired_total", "counter", help);
        for (reason, at) in [("expiry", 6), ("backlog", 7)] {
            let value = get(&self.subscribers_dropped[at]);
            let _ = writeln!(
                page,
                "broker_sessions_expired_total{{reason=\"{reason}\"}} {value}"
            );
        }
        family(
            &mut page,
            "messages_dropped_total",
            "counter",
            "Messages lost, by reason.",
        );
        for loss in Loss::ALL {
            let value = get(&self.dropped[loss as usize]);
            let _ = writeln!(
                page,
                "broker_messages_dropped_total{{reason=\"{}\"}} {value}",
                loss.label()
            );
        }
        let help = "Client connections closed, by reason.";
        family(&mut page, "connections_closed_total", "counter", help);
        for (reason, counter) in CLOSE_REASONS.iter().zip(&self.connections_closed) {
            let value = get(counter);
            let _ = writeln!(
                page,
                "broker_connections_closed_total{{reason=\"{reason}\"}} {value}"
            );
        }
        let help = "Subscriber endpoints dropped, by reason.";
        family(&mut page, "subscribers_dropped_total", "counter", help);
        for (reason, counter) in DROP_REASONS.iter().zip(&self.subscribers_dropped) {
            let value = get(counter);
            let _ = writeln!(
                page,
                "broker_subscribers_dropped_total{{reason=\"{reason}\"}} {value}"
            );
        }
        page
    }
}

/// The cluster bridge's part of the page (with `--nats`).
pub(crate) fn render_bridge(page: &mut String, bridge: &Bridge) {
    let status = bridge.status();
    let c = bridge.counters();
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    #[rustfmt::skip]
    let single = [
        ("bridge_connected", "gauge", "1 while connected to a NATS server, else 0.", u64::from(status.connected)),
        ("bridge_subscriptions", "gauge", "NATS subjects subscribed for this broker's subscribers.", status.subscriptions as u64),
        ("bridge_queued_bytes", "gauge", "Bytes of messages waiting to be written to NATS.", status.queued_bytes as u64),
        ("bridge_connects_total", "counter", "Connections to a NATS server made (handshake done).", get(&c.connects)),
        ("bridge_failures_total", "counter", "Connections to NATS that failed or were lost.", get(&c.failures)),
        ("bridge_sent_total", "counter", "Messages written to NATS.", get(&c.sent)),
        ("bridge_received_total", "counter", "Messages from NATS given to this broker's subscribers.", get(&c.received)),
        ("bridge_server_errors_total", "counter", "-ERR messages from the NATS server.", get(&c.server_errors)),
        ("bridge_protocol_errors_total", "counter", "Connections dropped for bytes that are not the NATS protocol.", get(&c.protocol_errors)),
    ];
    for (name, kind, help, value) in single {
        family(page, name, kind, help);
        let _ = writeln!(page, "broker_{name} {value}");
    }
    let help =
        "Messages not sent to NATS, by reason: down (no connection), full (queue), too_large.";
    family(page, "bridge_dropped_total", "counter", help);
    for (reason, counter) in [
        ("down", &c.dropped_down),
        ("full", &c.dropped_full),
        ("too_large", &c.dropped_large),
    ] {
        let _ = writeln!(
            page,
            "broker_bridge_dropped_total{{reason=\"{reason}\"}} {}",
            get(counter)
        );
    }
    let help =
        "Messages from NATS refused, by reason: subject (not a topic), utf8 (data), too_large.";
    family(page, "bridge_refused_total", "counter", help);
    for (reason, counter) in [
        ("subject", &c.refused_subject),
        ("utf8", &c.refused_utf8),
        ("too_large", &c.refused_large),
    ] {
        let _ = writeln!(
            page,
            "broker_bridge_refused_total{{reason=\"{reason}\"}} {}",
            get(counter)
        );
    }
}

/// The `# HELP` and `# TYPE` lines of a metric family.
fn family(page: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        page,
        "# HELP broker_{name} {help}\n# TYPE broker_{name} {kind}"
    );
}

#[cfg(test)]
mod tests {
    use super::{Gauges, Loss, Metrics, add};

    #[test]
    fn page_has_every_family_once_with_help_and_type() {
        let m = Metrics::default();
        add(&m.published, 3);
        m.lost(Loss::QueueFull, 2);
        let page = m.render(
            &Gauges {
                connections_open: 4,
                ..Gauges::default()
            },
            &Default::default(),
        );
        assert!(page.contains("broker_messages_published_total 3\n"));
        assert!(page.contains("broker_messages_dropped_total{reason=\"queue_full\"} 2\n"));
        assert!(page.contains("broker_connections_open 4\n"));
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let family = name.split('{').next().unwrap();
            assert!(page.contains(&format!("# TYPE {family} ")), "{family}");
        }
    }
}
