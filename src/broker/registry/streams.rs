//! Streaming subscriptions in the registry: opening and closing them, and
//! the wake-ups a burst of publishes leaves for its streams and endpoints
//! (see `tail` for the connection that serves a stream). A part of the
//! registry: the same tables, under the same lock order.

use super::{Registry, body, lock};
use crate::broker::routing::{Qos, Target};
use crate::broker::session::Endpoint;
use crate::broker::stream::{Event, Format, Stream};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A subscriber with messages queued whose thread is still to be woken.
pub(crate) enum Wake {
    Stream(Arc<Stream>),
    Endpoint(Arc<Endpoint>),
}

/// What a burst of publishes is still to wake.
pub(crate) type Wakes = Vec<Wake>;

impl Registry {
    /// Wakes the streams and endpoints a burst of publishes left in
    /// `wakes`.
    pub(crate) fn wake(wakes: &mut Wakes) {
        for wake in wakes.drain(..) {
            match wake {
                Wake::Stream(stream) => stream.wake(),
                Wake::Endpoint(endpoint) => endpoint.wake(),
            }
        }
    }

    /// Writes on the parked connections of the endpoints in `wakes` what
    /// the burst queued for them, where their threads have slept long
    /// enough ([`Endpoint::lend`]); the wake-ups stay for
    /// [`Registry::wake`].
    pub(crate) fn lend(wakes: &Wakes) {
        for wake in wakes {
            if let Wake::Endpoint(endpoint) = wake {
                endpoint.lend();
            }
        }
    }

    /// Opens a streaming subscription of `peer` to `pattern`. With
    /// `retained`, the retained messages of the topics it matches are
    /// queued first. Returns the stream and the last stored message routed
    /// before it: a replay goes up to that one, the stream from after it.
    ///
    /// # Errors
    /// The broker is stopping.
    pub(crate) fn open_stream(
        &self,
        pattern: &str,
        peer: SocketAddr,
        format: Format,
        retained: bool,
    ) -> io::Result<(Arc<Stream>, u64)> {
        let mut routing = self.routing();
        if self.closed.load(Ordering::SeqCst) {
            return Err(io::Error::other("broker is stopping"));
        }
        let n = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let s = &self.settings;
        let stream = Arc::new(Stream::new(
            n,
            peer,
            format,
            s.queue_capacity,
            s.queue_bytes,
        ));
        if retained {
            for (topic, r) in routing.retained_matching(pattern) {
                stream.push(Event {
                    id: r.id,
                    body: body(topic, &r.data, r.id, Qos::Zero),
                    stored: false,
                });
            }
        }
        routing.add(pattern, Target::Stream(n), Qos::Zero);
        lock(&self.streams).insert(n, stream.clone());
        Ok((stream, routing.last_stored))
    }

    /// Streaming subscriptions open now.
    pub(crate) fn stream_count(&self) -> usize {
        lock(&self.streams).len()
    }

    /// Ends a streaming subscription (its reader left, overflowed, or the
    /// broker stops).
    pub(crate) fn close_stream(&self, stream: &Stream) {
        let mut routing = self.routing();
        routing.remove_target(Target::Stream(stream.id));
        lock(&self.streams).remove(&stream.id);
        stream.close();
    }
}
