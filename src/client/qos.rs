//! At-least-once delivery, client side (PROTOCOL.md section 6.2): the
//! [`Qos`] levels, the [`PublishOptions`] of a publish, the publish body, and
//! the `Idempotency-Key` that makes a retried qos 1 publish count once.
//!
//! Pure: builds bodies and keys from values; never touches a socket.

use crate::json;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The delivery guarantee of a publish or a subscription (the wire's `qos`).
///
/// A message reaches a subscription with the lower of the two: a qos 1
/// publish to a qos 0 subscription is delivered at most once.
///
/// ```no_run
/// use message_broker::client::{Client, Message, Qos};
/// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
/// client.subscribe_qos("orders", Qos::AtLeastOnce, |msg: Message| {
///     println!("{:?}: {}", msg.id, msg.data);
/// })?;
/// # Ok::<(), message_broker::client::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Qos {
    /// `qos` 0, the Go broker's only level: a message is handed to the
    /// subscribers' queues once; a subscriber that is down misses it.
    #[default]
    AtMostOnce,
    /// `qos` 1: a publish is answered once the broker has stored it, and a
    /// delivery is retried until the subscriber answers 2xx. A subscriber may
    /// see a message twice; the client drops such duplicates by id (see
    /// [`DEDUPE_WINDOW`](super::DEDUPE_WINDOW)).
    AtLeastOnce,
}

impl Qos {
    /// The number sent as `qos` on the wire: 0 or 1.
    ///
    /// ```
    /// use message_broker::client::Qos;
    /// assert_eq!(Qos::AtLeastOnce.level(), 1);
    /// assert_eq!(Qos::default().level(), 0);
    /// ```
    pub fn level(self) -> u8 {
        match self {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
        }
    }
}

/// The longest `Idempotency-Key` the broker takes, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// How to publish, for [`Client::publish_with`](super::Client::publish_with).
/// The default is a plain qos 0 publish, as [`Client::publish`](super::Client::publish)
/// sends.
///
/// ```no_run
/// use message_broker::client::{Client, PublishOptions, Qos};
/// let client = Client::builder("127.0.0.1:9999").listen_port(0).build()?;
/// let options = PublishOptions::new()
///     .qos(Qos::AtLeastOnce)
///     .retain(true)
///     .idempotency_key("order-1234");
/// let id = client.publish_with("orders", "paid", &options)?;
/// println!("stored as message {id:?}");
/// # Ok::<(), message_broker::client::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOptions {
    /// qos 1: answered once stored, and retried once (with the same
    /// idempotency key) if the answer is lost. Default qos 0.
    pub qos: Qos,
    /// Also make this the topic's retained message, which every new
    /// subscription gets first (`"data":""` clears it). Default false.
    pub retain: bool,
    /// Sent as `Idempotency-Key`: a publish to the same topic with a key the
    /// broker has seen within its dedupe window (default 2 min) is not stored
    /// again. 1 to [`MAX_IDEMPOTENCY_KEY`] visible ASCII characters. For a
    /// qos 1 publish without one, the client makes one up. Default none.
    pub idempotency_key: Option<String>,
}

impl PublishOptions {
    /// The defaults: qos 0, no retain, no key.
    ///
    /// ```
    /// use message_broker::client::{PublishOptions, Qos};
    /// assert_eq!(PublishOptions::new().qos, Qos::AtMostOnce);
    /// ```
    pub fn new() -> PublishOptions {
        PublishOptions::default()
    }

    /// The options of a qos 1 publish, without retain or key.
    ///
    /// ```
    /// use message_broker::client::{PublishOptions, Qos};
    /// assert_eq!(PublishOptions::at_least_once().qos, Qos::AtLeastOnce);
    /// ```
    pub fn at_least_once() -> PublishOptions {
        PublishOptions::new().qos(Qos::AtLeastOnce)
    }

    /// Sets [`PublishOptions::qos`].
    ///
    /// ```
    /// use message_broker::client::{PublishOptions, Qos};
    /// let options = PublishOptions::new().qos(Qos::AtLeastOnce);
    /// assert_eq!(options.qos, Qos::AtLeastOnce);
    /// ```
    pub fn qos(mut self, qos: Qos) -> PublishOptions {
        self.qos = qos;
        self
    }

    /// Sets [`PublishOptions::retain`].
    ///
    /// ```
    /// use message_broker::client::PublishOptions;
    /// assert!(PublishOptions::new().retain(true).retain);
    /// ```
    pub fn retain(mut self, retain: bool) -> PublishOptions {
        self.retain = retain;
        self
    }

    /// Sets [`PublishOptions::idempotency_key`]; it is checked when published.
    ///
    /// ```
    /// use message_broker::client::PublishOptions;
    /// let options = PublishOptions::new().idempotency_key("order-1234");
    /// assert_eq!(options.idempotency_key.as_deref(), Some("order-1234"));
    /// ```
    pub fn idempotency_key(mut self, key: impl Into<String>) -> PublishOptions {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// Checks a caller's key: it goes into a header as it is, so anything but
/// 1-128 visible ASCII characters (0x21-0x7e) is refused before sending.
pub(super) fn validate_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("empty");
    }
    if key.len() > MAX_IDEMPOTENCY_KEY {
        return Err("longer than 128 bytes");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("not visible ASCII (0x21-0x7e)");
    }
    Ok(())
}

/// A key for a qos 1 publish the caller gave none: unique per process (a
/// random seed) and per publish (a counter), so that only a retry of the
/// same publish repeats it. At most 36 characters.
pub(super) fn new_key() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(seed);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("mb-{seed:016x}-{n:x}")
}

/// Random enough to tell processes apart: std's hasher keys come from the
/// operating system's randomness, mixed here with the wall clock (read for
/// its value, not to measure time) and the process id in case they do not.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let pid = u64::from(std::process::id());
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(nanos);
    hasher.write_u64(pid);
    hasher.finish() ^ nanos ^ (pid << 32)
}

/// `{"data":"…","qos":N}`, with `,"retain":true` when asked: a qos 0
/// publish without retain is byte for byte what the Go client sends.
pub(super) fn publish_body(data: &str, qos: Qos, retain: bool) -> Vec<u8> {
    let mut body = String::with_capacity(data.len() + 32);
    body.push_str("{\"data\":");
    json::write_string(&mut body, data);
    body.push_str(if qos == Qos::AtLeastOnce {
        ",\"qos\":1"
    } else {
        ",\"qos\":0"
    });
    if retain {
        body.push_str(",\"retain\":true");
    }
    body.push('}');
    body.into_bytes()
}

/// `{"qos":N,"port":"P"}`, the body of a subscribe.
pub(super) fn subscribe_body(qos: Qos, port: u16) -> Vec<u8> {
    format!("{{\"qos\":{},\"port\":\"{port}\"}}", qos.level()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_bodies() {
        let cases: &[(&str, Qos, bool, &str)] = &[
            (
                "MyData",
                Qos::AtMostOnce,
                false,
                r#"{"data":"MyData","qos":0}"#,
            ),
            ("x", Qos::AtLeastOnce, false, r#"{"data":"x","qos":1}"#),
            (
                "x",
                Qos::AtLeastOnce,
                true,
                r#"{"data":"x","qos":1,"retain":true}"#,
            ),
            (
                "",
                Qos::AtMostOnce,
                true,
                r#"{"data":"","qos":0,"retain":true}"#,
            ),
            ("a\"b", Qos::AtMostOnce, false, r#"{"data":"a\"b","qos":0}"#),
        ];
        for &(data, qos, retain, want) in cases {
            let body = publish_body(data, qos, retain);
            assert_eq!(std::str::from_utf8(&body).unwrap(), want);
            let parsed = json::parse_object(&body).unwrap();
            assert_eq!(parsed.get_str("data"), Some(data));
        }
    }

    #[test]
    fn subscribe_bodies() {
        let body = subscribe_body(Qos::AtMostOnce, 10000);
        assert_eq!(body, br#"{"qos":0,"port":"10000"}"#);
        let body = subscribe_body(Qos::AtLeastOnce, 7);
        assert_eq!(body, br#"{"qos":1,"port":"7"}"#);
    }

    #[test]
    fn keys_are_checked_at_the_limit_and_past_it() {
        let at_limit = "k".repeat(MAX_IDEMPOTENCY_KEY);
        let past_limit = "k".repeat(MAX_IDEMPOTENCY_KEY + 1);
        let cases: &[(&str, bool)] = &[
            ("a", true),
            ("order-1234_~!", true),
            (&at_limit, true),
            (&past_limit, false),
            ("", false),
            ("with space", false),
            ("line\r\nX-Injected: 1", false),
            ("tab\t", false),
            ("\u{7f}", false),
            ("caf\u{e9}", false),
        ];
        for &(key, ok) in cases {
            assert_eq!(validate_key(key).is_ok(), ok, "{key:?}");
        }
    }

    #[test]
    fn made_up_keys_are_valid_and_distinct() {
        let keys: Vec<String> = (0..1000).map(|_| new_key()).collect();
        for key in &keys {
            assert_eq!(validate_key(key), Ok(()), "{key}");
            assert!(key.len() <= 36, "{key}");
        }
        let distinct: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
    }
}
