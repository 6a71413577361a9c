//! The broker's counters, and `GET /metrics` in the Prometheus text format
//! (version 0.0.4).
//!
//! Counters are relaxed atomics bumped where things happen; gauges (open
//! connections, subscribers, topics, queue depth) are read from their owners
//! when the page is built.

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
}

impl Loss {
    const ALL: [Loss; 3] = [Loss::QueueFull, Loss::SubscriberGone, Loss::Shutdown];

    fn label(self) -> &'static str {
        match self {
            Loss::QueueFull => "queue_full",
            Loss::SubscriberGone => "subscriber_gone",
            Loss::Shutdown => "shutdown",
        }
    }
}

/// Labels of [`crate::broker::delivery::DropReason`], in the order of
/// [`Metrics::subscribers_dropped`].
pub(crate) const DROP_REASONS: [&str; 6] = [
    "connect_failed",
    "timeout",
    "io",
    "refused",
    "bad_response",
    "idle",
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
    dropped: [AtomicU64; 3],
    pub(crate) subscribers_dropped: [AtomicU64; 6],
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) delivered_bytes: AtomicU64,
}

/// Values read from the broker's tables when the page is built.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gauges {
    pub(crate) connections_open: usize,
    pub(crate) subscribers: usize,
    pub(crate) topics: usize,
    pub(crate) queued_messages: usize,
    pub(crate) queued_bytes: usize,
    pub(crate) thread_budget: usize,
    pub(crate) stopping: bool,
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// Counts `n` messages lost for `why`.
    pub(crate) fn lost(&self, why: Loss, n: usize) {
        if n > 0 {
            add(&self.dropped[why as usize], n as u64);
        }
    }

    /// The page for `GET /metrics`.
    pub(crate) fn render(&self, g: &Gauges) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut page = String::with_capacity(4096);
        let mut one = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(
                page,
                "# HELP broker_{name} {help}\n# TYPE broker_{name} {kind}"
            );
            for (labels, value) in samples {
                let _ = writeln!(page, "broker_{name}{labels} {value}");
            }
        };
        let threads = (g.connections_open + g.subscribers) as u64;
        one(
            "up",
            "gauge",
            "1 while serving, 0 while stopping.",
            &[("", u64::from(!g.stopping))],
        );
        one(
            "connections_open",
            "gauge",
            "Client connections being served.",
            &[("", g.connections_open as u64)],
        );
        one(
            "connections_total",
            "counter",
            "Client connections accepted.",
            &[("", get(&self.connections_total))],
        );
        one(
            "connections_refused_total",
            "counter",
            "Connections turned away with 503 (limit or no thread).",
            &[("", get(&self.connections_refused))],
        );
        one(
            "connections_evicted_total",
            "counter",
            "Idle keep-alive connections closed to make room.",
            &[("", get(&self.connections_evicted))],
        );
        one(
            "requests_total",
            "counter",
            "Requests answered, any status.",
            &[("", get(&self.requests))],
        );
        one(
            "subscribers",
            "gauge",
            "Subscriber endpoints (IP and port).",
            &[("", g.subscribers as u64)],
        );
        one(
            "topics",
            "gauge",
            "Topics with at least one subscriber.",
            &[("", g.topics as u64)],
        );
        one(
            "messages_published_total",
            "counter",
            "Messages accepted with 202.",
            &[("", get(&self.published))],
        );
        one(
            "messages_delivered_total",
            "counter",
            "Messages a subscriber answered 2xx.",
            &[("", get(&self.delivered))],
        );
        let dropped: Vec<(String, u64)> = Loss::ALL
            .iter()
            .map(|&l| {
                (
                    format!("{{reason=\"{}\"}}", l.label()),
                    get(&self.dropped[l as usize]),
                )
            })
            .collect();
        let dropped: Vec<(&str, u64)> = dropped.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        one(
            "messages_dropped_total",
            "counter",
            "Messages lost, by reason.",
            &dropped,
        );
        let gone: Vec<(String, u64)> = DROP_REASONS
            .iter()
            .zip(&self.subscribers_dropped)
            .map(|(r, c)| (format!("{{reason=\"{r}\"}}"), get(c)))
            .collect();
        let gone: Vec<(&str, u64)> = gone.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        one(
            "subscribers_dropped_total",
            "counter",
            "Subscriber endpoints dropped, by reason.",
            &gone,
        );
        one(
            "queued_messages",
            "gauge",
            "Messages waiting in subscriber queues.",
            &[("", g.queued_messages as u64)],
        );
        one(
            "queued_bytes",
            "gauge",
            "Bytes waiting in subscriber queues.",
            &[("", g.queued_bytes as u64)],
        );
        one(
            "received_bytes_total",
            "counter",
            "Bytes read from client connections.",
            &[("", get(&self.bytes_in))],
        );
        one(
            "sent_bytes_total",
            "counter",
            "Bytes written to client connections.",
            &[("", get(&self.bytes_out))],
        );
        one(
            "delivered_bytes_total",
            "counter",
            "Message bodies delivered to subscribers, in bytes.",
            &[("", get(&self.delivered_bytes))],
        );
        one(
            "threads",
            "gauge",
            "Connection and delivery threads running.",
            &[("", threads)],
        );
        one(
            "thread_budget",
            "gauge",
            "Most connection and delivery threads allowed (--max-connections + --max-subscribers).",
            &[("", g.thread_budget as u64)],
        );
        page
    }
}

#[cfg(test)]
mod tests {
    use super::{Gauges, Loss, Metrics, add};

    #[test]
    fn page_has_every_family_once_with_help_and_type() {
        let m = Metrics::default();
        add(&m.published, 3);
        m.lost(Loss::QueueFull, 2);
        let page = m.render(&Gauges {
            connections_open: 4,
            ..Gauges::default()
        });
        assert!(page.contains("broker_messages_published_total 3\n"));
        assert!(page.contains("broker_messages_dropped_total{reason=\"queue_full\"} 2\n"));
        assert!(page.contains("broker_connections_open 4\n"));
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<u64>().is_ok(), "{line}");
            let family = name.split('{').next().unwrap();
            assert!(page.contains(&format!("# TYPE {family} ")), "{family}");
        }
    }
}
