//! The client's subscriptions: the table of callbacks by pattern (with each
//! one's qos, to subscribe again after a failover or a broker restart), and
//! subscribing and unsubscribing at the broker.
//!
//! Owns the table; the wire calls go through [`super::call`]. Never runs a
//! callback (the dispatcher does, see [`super::listener`]).

use super::{Client, Error, Inner, Message, Qos, lock, qos};
use crate::http;
use crate::pattern;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

pub(super) type Callback = Arc<Mutex<Box<dyn FnMut(Message) + Send>>>;

/// One topic's subscription: its callback, and the qos to subscribe with
/// (again, after a broker restart).
pub(super) struct Subscription {
    callback: Callback,
    qos: Qos,
}

impl Inner {
    fn lock_subscriptions(&self) -> MutexGuard<'_, HashMap<String, Subscription>> {
        lock(&self.subscriptions)
    }

    /// The callbacks of every pattern `topic` matches, with the pattern.
    pub(super) fn callbacks_for(&self, topic: &str) -> Vec<(String, Callback)> {
        let subscriptions = self.lock_subscriptions();
        let mut found = Vec::new();
        if let Some(s) = subscriptions.get(topic) {
            found.push((topic.to_owned(), s.callback.clone()));
        }
        if self.wildcards.load(Ordering::SeqCst) > 0 {
            let wild = subscriptions
                .iter()
                .filter(|(p, _)| pattern::is_wildcard(p) && pattern::matches(p, topic));
            found.extend(wild.map(|(p, s)| (p.clone(), s.callback.clone())));
        }
        found
    }

    /// Counts `pattern` in or out of the wildcard patterns.
    fn count_wildcard(&self, pattern: &str, added: bool) {
        if pattern::is_wildcard(pattern) {
            if added {
                self.wildcards.fetch_add(1, Ordering::SeqCst);
            } else {
                self.wildcards.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Every topic subscribed to, with its qos.
    pub(super) fn topics(&self) -> Vec<(String, Qos)> {
        let subscriptions = self.lock_subscriptions();
        subscriptions
            .iter()
            .map(|(topic, s)| (topic.clone(), s.qos))
            .collect()
    }

    pub(super) fn send_subscribe(&self, topic: &str, qos: Qos) -> Result<(), Error> {
        let body = qos::subscribe_body(qos, self.listen_port);
        self.post(&format!("/sub/{}", http::percent_encode_path(topic)), &body)
    }

    /// The target and body that end this client's subscription to `pattern`.
    pub(super) fn unsubscribe_request(&self, pattern: &str) -> (String, String) {
        let target = format!("/unsub/{}", http::percent_encode_path(pattern));
        (target, format!("{{\"port\":\"{}\"}}", self.listen_port))
    }
}

impl Client {
    /// Subscribes to `topic` with qos 0 (as the Go client does): `callback`
    /// runs for each message of it, on the client's dispatcher thread, one
    /// at a time in arrival order. A second subscription to the same topic
    /// replaces the callback.
    ///
    /// # Errors
    /// As for [`Client::publish`]; on error the callback is not kept.
    ///
    /// # Examples
    /// ```no_run
    /// # use message_broker::client::{Client, Message};
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// client.subscribe("hello/world", |msg: Message| println!("{}", msg.data))?;
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn subscribe<F>(&self, topic: &str, callback: F) -> Result<(), Error>
    where
        F: FnMut(Message) + Send + 'static,
    {
        self.subscribe_qos(topic, Qos::AtMostOnce, callback)
    }

    /// Subscribes to `topic` as [`Client::subscribe`] does, with `qos`. With
    /// [`Qos::AtLeastOnce`] the subscription is durable: the broker keeps
    /// the messages this client has not answered (while it is down, too) and
    /// sends them again, in order, each with its [`Message::id`]; a message
    /// seen within the last [`DEDUPE_WINDOW`](super::DEDUPE_WINDOW) ids is answered and dropped
    /// before the callback. The client acknowledges a message once it is
    /// queued for the callback (when that queue is full it refuses it, and
    /// the broker sends it later). A re-subscription after a broker restart
    /// uses the same qos.
    ///
    /// # Errors
    /// As for [`Client::publish`]; on error the callback is not kept.
    ///
    /// # Examples
    /// ```no_run
    /// use message_broker::client::{Client, Message, Qos};
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// client.subscribe_qos("orders", Qos::AtLeastOnce, |msg: Message| {
    ///     println!("order event {:?}: {}", msg.id, msg.data);
    /// })?;
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn subscribe_qos<F>(&self, topic: &str, qos: Qos, callback: F) -> Result<(), Error>
    where
        F: FnMut(Message) + Send + 'static,
    {
        pattern::validate_pattern(topic).map_err(Error::InvalidTopic)?;
        let callback: Callback = Arc::new(Mutex::new(Box::new(callback)));
        let subscription = Subscription { callback, qos };
        // Registered first: the broker may deliver before its 202 reaches us.
        let previous = self
            .inner
            .lock_subscriptions()
            .insert(topic.to_owned(), subscription);
        if previous.is_none() {
            self.inner.count_wildcard(topic, true);
            if self.inner.lock_subscriptions().len() == 1 {
                *self.inner.lock_broker_seen() = Instant::now();
            }
        }
        let result = self.inner.send_subscribe(topic, qos);
        if result.is_err() {
            let mut subscriptions = self.inner.lock_subscriptions();
            match previous {
                Some(previous) => subscriptions.insert(topic.to_owned(), previous),
                None => {
                    self.inner.count_wildcard(topic, false);
                    subscriptions.remove(topic)
                }
            };
        }
        result
    }

    /// Ends the subscription to `pattern` (as given to
    /// [`Client::subscribe`]): the broker sends nothing more for it once
    /// this returns, and its callback is dropped. Unsubscribing from what
    /// was never subscribed is not an error.
    ///
    /// # Errors
    /// As for [`Client::publish`]; a Go broker, which knows no unsubscribe,
    /// answers [`Error::Status`] 404 (the callback is dropped anyway).
    ///
    /// # Examples
    /// ```no_run
    /// # use message_broker::client::{Client, Message};
    /// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
    /// client.subscribe("alerts/+", |msg: Message| println!("{}", msg.data))?;
    /// client.unsubscribe("alerts/+")?;
    /// # Ok::<(), message_broker::client::Error>(())
    /// ```
    pub fn unsubscribe(&self, pattern: &str) -> Result<(), Error> {
        pattern::validate_pattern(pattern).map_err(Error::InvalidTopic)?;
        if self.inner.lock_subscriptions().remove(pattern).is_some() {
            self.inner.count_wildcard(pattern, false);
        }
        let (target, body) = self.inner.unsubscribe_request(pattern);
        self.inner.post(&target, body.as_bytes())
    }
}
