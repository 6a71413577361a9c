//! What the console's JSON API shows (PROTOCOL.md section 6.6): the topics
//! (subscription patterns, and the most recently published topics) and the
//! subscribers, as JSON arrays. A part of the registry: it reads its tables
//! under the usual locks, and formats after letting go of them.

use super::{Registry, lock};
use crate::broker::routing::{Qos, Target};
use crate::json::write_string;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One row of `GET /api/v1/topics`.
#[derive(Debug, Default)]
struct TopicRow {
    subscribers: usize,
    messages: u64,
    retained: bool,
}

/// One row of `GET /api/v1/subscribers`.
#[derive(Debug)]
struct SubscriberRow {
    kind: &'static str,
    endpoint: String,
    patterns: Vec<String>,
    qos: Qos,
    state: &'static str,
    backlog: (usize, usize),
}

impl Registry {
    /// `GET /api/v1/topics`: `[{"topic","subscribers","messages","retained"}]`,
    /// in name order.
    pub(crate) fn topics_json(&self) -> String {
        let mut rows: BTreeMap<String, TopicRow> = BTreeMap::new();
        {
            let routing = self.routing();
            for (pattern, subs) in routing.subscriptions() {
                rows.entry(pattern).or_default().subscribers = subs.len();
            }
            for (topic, published) in routing.recent() {
                let row = rows.entry(topic.to_owned()).or_default();
                row.messages = published.messages;
                row.retained = routing.retained(topic).is_some();
            }
        }
        let mut out = String::from("[");
        for (i, (topic, row)) in rows.iter().enumerate() {
            out.push_str(if i == 0 {
                "{\"topic\":"
            } else {
                ",{\"topic\":"
            });
            write_string(&mut out, topic);
            let _ = write!(
                out,
                ",\"subscribers\":{},\"messages\":{},\"retained\":{}}}",
                row.subscribers, row.messages, row.retained
            );
        }
        out.push(']');
        out
    }

    /// `GET /api/v1/subscribers`: `[{"kind","endpoint","patterns","qos",
    /// "state","backlog_messages","backlog_bytes"}]`, callbacks first.
    pub(crate) fn subscribers_json(&self) -> String {
        let mut rows = Vec::new();
        {
            let routing = self.routing();
            let endpoints = lock(&self.endpoints);
            let mut addrs: Vec<_> = endpoints.keys().copied().collect();
            addrs.sort();
            for addr in addrs {
                let endpoint = &endpoints[&addr];
                let durable = endpoint.is_durable();
                rows.push(SubscriberRow {
                    kind: "callback",
                    endpoint: addr.to_string(),
                    patterns: routing.patterns_of(Target::Endpoint(addr)).to_vec(),
                    qos: if durable { Qos::One } else { Qos::Zero },
                    state: if endpoint.is_failing() {
                        "retrying"
                    } else {
                        "ok"
                    },
                    backlog: endpoint.depth(),
                });
            }
            let streams = lock(&self.streams);
            let mut ids: Vec<u64> = streams.keys().copied().collect();
            ids.sort_unstable();
            for id in ids {
                let stream = &streams[&id];
                rows.push(SubscriberRow {
                    kind: "stream",
                    endpoint: stream.peer.to_string(),
                    patterns: routing.patterns_of(Target::Stream(id)).to_vec(),
                    qos: Qos::Zero,
                    state: if stream.has_overflowed() {
                        "overflow"
                    } else {
                        "streaming"
                    },
                    backlog: stream.depth(),
                });
            }
        }
        let mut out = String::from("[");
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"kind\":\"{}\",\"endpoint\":", row.kind);
            write_string(&mut out, &row.endpoint);
            out.push_str(",\"patterns\":[");
            for (j, p) in row.patterns.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                write_string(&mut out, p);
            }
            let _ = write!(
                out,
                "],\"qos\":{},\"state\":\"{}\",\"backlog_messages\":{},\"backlog_bytes\":{}}}",
                row.qos as u8, row.state, row.backlog.0, row.backlog.1
            );
        }
        out.push(']');
        out
    }
}
