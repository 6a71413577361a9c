//! The client's callback side: the listener the broker calls back on
//! (`POST /msg`, `POST /hb`), and the dispatcher thread that runs the
//! subscription callbacks, one message at a time, in arrival order.
//!
//! A delivery with an id (qos 1) that the client has seen recently is
//! answered 202 and dropped before its callback (see [`super::dedupe`]).
//!
//! Owns the listening socket and the accepted connections. A callback that
//! panics is reported and skipped; it never takes the client down.

use super::{Inner, Message, lock};
use crate::http::{Limits, RequestHead};
use crate::json;
use crate::server::{self, Reply};
use std::net::{TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread;
use std::time::Duration;

/// Messages waiting for their callback. Past this, new messages are dropped
/// (and a warning logged): holding the broker's delivery instead would make
/// it time out and drop this client altogether. A message with an id (qos 1)
/// is refused with a 503 instead: the broker keeps it and sends it again.
pub(super) const DISPATCH_QUEUE: usize = 4096;
/// The same bound in bytes (topic and data) of the messages waiting.
pub(super) const DISPATCH_BYTES: usize = 64 * 1024 * 1024;

/// Stack size of the listener's connection threads.
const CONNECTION_STACK: usize = 256 * 1024;

/// Accepts the broker's connections until the client closes.
pub(super) fn accept_loop(listener: TcpListener, inner: Arc<Inner>, messages: SyncSender<Message>) {
    for stream in listener.incoming() {
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            thread::sleep(Duration::from_millis(10)); // out of descriptors: back off
            continue;
        };
        let id = inner.next_conn_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            inner.lock_accepted().insert(id, clone);
        }
        let spare = stream.try_clone();
        let (conn_inner, messages) = (inner.clone(), messages.clone());
        let started = thread::Builder::new()
            .name("client callback conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                serve(stream, &conn_inner, &messages);
                conn_inner.lock_accepted().remove(&id);
            });
        if started.is_err() {
            inner.lock_accepted().remove(&id);
            if let Ok(stream) = spare {
                server::refuse(stream, &Reply::status(503, "client busy"), inner.timeout);
            }
        }
    }
}

fn serve(stream: TcpStream, inner: &Inner, messages: &SyncSender<Message>) {
    let settings = server::Settings {
        limits: Limits {
            // A delivery carries the broker's payload plus the topic and JSON
            // quoting: allow for the broker's default limit, escaped.
            max_body: 8 * 1024 * 1024,
            ..Limits::default()
        },
        idle_timeout: Duration::from_secs(300),
        request_timeout: REQUEST_TIMEOUT,
        write_timeout: inner.timeout,
    };
    let _ = server::serve(stream, &settings, &mut Callbacks { inner, messages });
}

/// Longest time a delivery from the broker may take to arrive in full.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener's side of one broker connection.
struct Callbacks<'a> {
    inner: &'a Inner,
    messages: &'a SyncSender<Message>,
}

impl server::Handler for Callbacks<'_> {
    fn handle(&mut self, head: &RequestHead, body: &[u8]) -> Reply {
        handle(head, body, self.inner, self.messages)
    }

    fn keep_going(&self) -> bool {
        !self.inner.stopping.load(Ordering::Relaxed)
    }
}

fn handle(head: &RequestHead, body: &[u8], inner: &Inner, messages: &SyncSender<Message>) -> Reply {
    let path = head.path();
    if path != "/msg" && path != "/hb" {
        return Reply::status(404, "not found");
    }
    if head.method != "POST" {
        return Reply::status(405, "method not allowed");
    }
    // Anything from the broker shows it is alive and knows us; the heartbeat
    // thread turns the count into a time (no clock read per message here).
    inner.broker_calls.fetch_add(1, Ordering::Relaxed);
    if path == "/hb" {
        return Reply::accepted();
    }
    let mut message = match decode(body) {
        Ok(message) => message,
        Err(reason) => return Reply::status(400, reason),
    };
    if message.id.is_none() {
        message.id = header_id(head);
    }
    // A duplicate still gets its 202, or the broker would send it again.
    if let Some(id) = message.id
        && !lock(&inner.dedupe).first_time(id)
    {
        return Reply::accepted();
    }
    let id = message.id;
    let size = message.size();
    let before = inner.dispatch_bytes.fetch_add(size, Ordering::SeqCst);
    let sent = if before > 0 && before + size > DISPATCH_BYTES {
        Err(TrySendError::Full(message))
    } else {
        messages.try_send(message)
    };
    match sent {
        Ok(()) => {
            inner.dispatch_full.store(false, Ordering::Relaxed);
            Reply::accepted()
        }
        Err(TrySendError::Full(m)) => {
            inner.dispatch_bytes.fetch_sub(size, Ordering::SeqCst);
            if !inner.dispatch_full.swap(true, Ordering::Relaxed) {
                crate::log::warning!(
                    "client: callbacks are {DISPATCH_QUEUE} messages or {} MiB behind; dropping new messages, refusing those with an id (first: topic {:?})",
                    DISPATCH_BYTES >> 20,
                    m.topic
                );
            }
            match id {
                Some(id) => {
                    lock(&inner.dedupe).forget(id);
                    Reply::status(503, "client busy")
                }
                None => Reply::accepted(),
            }
        }
        Err(TrySendError::Disconnected(_)) => {
            inner.dispatch_bytes.fetch_sub(size, Ordering::SeqCst);
            if let Some(id) = id {
                lock(&inner.dedupe).forget(id);
            }
            Reply::status(503, "client closing")
        }
    }
}

/// Decodes `{"data":"…","Topic":"…"}` with an optional `"id":N` (qos 1);
/// keys match in any case, as in Go. An `id` that is not a u64 is taken as
/// none: refusing the message would only make the broker send it again.
fn decode(body: &[u8]) -> Result<Message, String> {
    let mut object = json::parse_object(body).map_err(|e| e.to_string())?;
    let id = object.get("id").and_then(json::Value::as_u64);
    let mut field = |key: &str| match object.take(key) {
        Some(json::Value::String(s)) => Ok(s),
        _ => Err(format!("missing string key \"{key}\"")),
    };
    Ok(Message {
        topic: field("topic")?,
        data: field("data")?,
        id,
    })
}

/// The `Message-Id` header of a qos 1 delivery, for a body without `id`
/// (the body's wins when both are there).
fn header_id(head: &RequestHead) -> Option<u64> {
    head.headers.get("Message-Id")?.trim().parse().ok()
}

/// Runs callbacks for messages as they arrive, until the client closes.
pub(super) fn dispatch_loop(inner: Arc<Inner>, messages: Receiver<Message>) {
    loop {
        let message = match messages.recv_timeout(Duration::from_millis(200)) {
            // Closing: what is still queued is dropped, not run.
            Ok(_) if inner.stopping.load(Ordering::SeqCst) => return,
            Ok(message) => {
                inner
                    .dispatch_bytes
                    .fetch_sub(message.size(), Ordering::SeqCst);
                message
            }
            Err(RecvTimeoutError::Timeout) if !inner.stopping.load(Ordering::SeqCst) => continue,
            Err(_) => return,
        };
        // Every pattern the topic matches has its callback run (none: not,
        // or no longer, subscribed; dropped, as the Go client does).
        for (pattern, callback) in inner.callbacks_for(&message.topic) {
            let mut callback = callback.lock().unwrap_or_else(|e| e.into_inner());
            let message = message.clone();
            if catch_unwind(AssertUnwindSafe(|| (*callback)(message))).is_err() {
                crate::log::warning!("client: the callback for {pattern:?} panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_go_and_lowercase_keys() {
        let m = decode(br#"{"data":"x","Topic":"t"}"#).unwrap();
        assert_eq!((m.topic.as_str(), m.data.as_str(), m.id), ("t", "x", None));
        let m = decode(br#"{"topic":"t2","DATA":"y"}"#).unwrap();
        assert_eq!((m.topic.as_str(), m.data.as_str()), ("t2", "y"));
        assert!(decode(br#"{"data":"x"}"#).is_err());
        assert!(decode(br#"{"data":1,"topic":"t"}"#).is_err());
        assert!(decode(b"nope").is_err());
    }

    #[test]
    fn decodes_the_id_of_a_qos_1_delivery() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (br#"{"data":"a","Topic":"t","id":5}"#, Some(5)),
            (br#"{"id":0,"data":"a","Topic":"t"}"#, Some(0)),
            (
                br#"{"data":"a","Topic":"t","ID":18446744073709551615}"#,
                Some(u64::MAX),
            ),
            (
                br#"{"data":"a","Topic":"t","id":18446744073709551616}"#,
                None,
            ),
            (br#"{"data":"a","Topic":"t","id":-1}"#, None),
            (br#"{"data":"a","Topic":"t","id":1.5}"#, None),
            (br#"{"data":"a","Topic":"t","id":"5"}"#, None),
            (br#"{"data":"a","Topic":"t","id":null}"#, None),
        ];
        for &(body, want) in cases {
            let m = decode(body).unwrap();
            assert_eq!(m.id, want, "{}", String::from_utf8_lossy(body));
            assert_eq!((m.topic.as_str(), m.data.as_str()), ("t", "a"));
        }
    }
}
