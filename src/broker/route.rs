//! Turns one request (method, path, body) into what the broker must do, or
//! into the error status PROTOCOL.md section 1 gives for it.
//!
//! Pure: no sockets, no registry, no locks.

use super::routing::Qos;
use crate::http::percent_decode;
use crate::json::{self, Object, Value};
use crate::pattern;

/// A valid broker request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// `POST /pub/{topic}`.
    Publish {
        topic: String,
        data: String,
        qos: Qos,
        retain: bool,
    },
    /// `POST /sub/{pattern}`.
    Subscribe { topic: String, port: u16, qos: Qos },
    /// `GET /sub/{pattern}`: a streaming subscription (extension); how it
    /// is framed and where it resumes come from the request's headers.
    Stream { pattern: String },
    /// `DELETE /sub/{pattern}` or `POST /unsub/{pattern}` (extension).
    Unsubscribe { pattern: String, port: u16 },
    /// `POST /hb`, with the optional port extension.
    Heartbeat { port: Option<u16> },
    /// `GET /healthz` (extension).
    Health,
    /// `GET /metrics` (extension).
    Metrics,
    /// `GET /`: the console page (extension).
    Console,
    /// `GET /api/v1/topics` (extension).
    Topics,
    /// `GET /api/v1/subscribers` (extension).
    Subscribers,
}

impl Action {
    /// Whether `--token` guards it: the protocol's requests do, the
    /// operations endpoints do not.
    pub(crate) fn needs_token(&self) -> bool {
        !matches!(self, Action::Health | Action::Metrics)
    }
}

/// A request the broker refuses, with its status and a short reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reject {
    pub(crate) status: u16,
    pub(crate) reason: String,
    /// For a 405: the `Allow` header, the method the path takes.
    pub(crate) allow: &'static [(&'static str, &'static str)],
}

impl Reject {
    fn new(status: u16, reason: impl Into<String>) -> Reject {
        Reject {
            status,
            reason: reason.into(),
            allow: &[("Allow", "POST")],
        }
    }

    fn bad(reason: impl Into<String>) -> Reject {
        Reject::new(400, reason)
    }
}

enum Endpoint {
    Publish,
    Subscribe,
    Unsubscribe,
    Heartbeat,
}

/// What `/sub/{pattern}` takes.
const SUB_METHODS: &[(&str, &str)] = &[("Allow", "GET, POST, DELETE")];

/// Routes a request whose body has been read in full.
///
/// # Errors
/// 404 for an unknown path, 405 for another method than the path takes
/// (POST, GET for the operations endpoints), 400 for a bad topic or body.
pub(crate) fn route(method: &str, path: &str, body: &[u8]) -> Result<Action, Reject> {
    let operations = match path {
        "/healthz" => Some(Action::Health),
        "/metrics" => Some(Action::Metrics),
        "/" => Some(Action::Console),
        "/api/v1/topics" => Some(Action::Topics),
        "/api/v1/subscribers" => Some(Action::Subscribers),
        _ => None,
    };
    if let Some(action) = operations {
        if method != "GET" {
            let mut reject = Reject::new(405, "method not allowed");
            reject.allow = &[("Allow", "GET")];
            return Err(reject);
        }
        return Ok(action);
    }
    let (endpoint, raw_topic) = if let Some(rest) = path.strip_prefix("/pub/") {
        (Endpoint::Publish, rest)
    } else if let Some(rest) = path.strip_prefix("/sub/") {
        match method {
            "GET" => {
                let pattern = decode_pattern(rest)?;
                return Ok(Action::Stream { pattern });
            }
            "DELETE" => (Endpoint::Unsubscribe, rest),
            "POST" => (Endpoint::Subscribe, rest),
            _ => {
                let mut reject = Reject::new(405, "method not allowed");
                reject.allow = SUB_METHODS;
                return Err(reject);
            }
        }
    } else if let Some(rest) = path.strip_prefix("/unsub/") {
        (Endpoint::Unsubscribe, rest)
    } else if path == "/hb" {
        (Endpoint::Heartbeat, "")
    } else {
        return Err(Reject::new(404, "not found"));
    };
    if !matches!(
        (method, &endpoint),
        ("POST", _) | ("DELETE", Endpoint::Unsubscribe)
    ) {
        return Err(Reject::new(405, "method not allowed"));
    }
    match endpoint {
        Endpoint::Publish => {
            let topic = decode_topic(raw_topic)?;
            let mut object = parse_body(body)?;
            let qos = qos(&object)?;
            let retain = match object.get("retain") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(Reject::bad("\"retain\" must be true or false")),
            };
            let data = match object.take("data") {
                Some(Value::String(s)) => s,
                Some(Value::Null) | None => return Err(Reject::bad("missing key \"data\"")),
                Some(_) => return Err(Reject::bad("\"data\" must be a string")),
            };
            Ok(Action::Publish {
                topic,
                data,
                qos,
                retain,
            })
        }
        Endpoint::Subscribe => {
            let topic = decode_pattern(raw_topic)?;
            let object = parse_body(body)?;
            let qos = qos(&object)?;
            match port(&object)? {
                Some(port) => Ok(Action::Subscribe { topic, port, qos }),
                None => Err(Reject::bad("missing key \"port\"")),
            }
        }
        Endpoint::Unsubscribe => {
            let pattern = decode_pattern(raw_topic)?;
            match port(&parse_body(body)?)? {
                Some(port) => Ok(Action::Unsubscribe { pattern, port }),
                None => Err(Reject::bad("missing key \"port\"")),
            }
        }
        Endpoint::Heartbeat if body.iter().all(u8::is_ascii_whitespace) => {
            Ok(Action::Heartbeat { port: None })
        }
        Endpoint::Heartbeat => Ok(Action::Heartbeat {
            port: port(&parse_body(body)?)?,
        }),
    }
}

/// A publish's topic: no level may be a wildcard.
fn decode_topic(raw: &str) -> Result<String, Reject> {
    let topic = decode(raw)?;
    pattern::validate_topic(&topic).map_err(Reject::bad)?;
    Ok(topic)
}

/// A subscription's pattern (PROTOCOL.md section 6.5).
fn decode_pattern(raw: &str) -> Result<String, Reject> {
    let topic = decode(raw)?;
    pattern::validate_pattern(&topic).map_err(Reject::bad)?;
    Ok(topic)
}

fn decode(raw: &str) -> Result<String, Reject> {
    let bytes = percent_decode(raw).map_err(|_| Reject::bad("bad percent-encoding in topic"))?;
    String::from_utf8(bytes).map_err(|_| Reject::bad("topic is not valid UTF-8"))
}

fn parse_body(body: &[u8]) -> Result<Object, Reject> {
    json::parse_object(body).map_err(|e| Reject::bad(e.to_string()))
}

/// `qos` may be missing or null (0); when present it must be the integer 0
/// or 1 (PROTOCOL.md section 6.2).
fn qos(object: &Object) -> Result<Qos, Reject> {
    match object.get("qos").map(|v| (v, v.as_i64())) {
        None | Some((Value::Null, _)) | Some((_, Some(0))) => Ok(Qos::Zero),
        Some((_, Some(1))) => Ok(Qos::One),
        Some((_, Some(_))) => Err(Reject::bad("\"qos\" must be 0 or 1")),
        Some(_) => Err(Reject::bad("\"qos\" must be an integer")),
    }
}

/// The `port` key: a JSON string (as the Go client sends it) or a number.
fn port(object: &Object) -> Result<Option<u16>, Reject> {
    let parsed = match object.get("port") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        Some(v @ Value::Number(_)) => v.as_u64(),
        Some(_) => return Err(Reject::bad("\"port\" must be a string or a number")),
    };
    match parsed {
        Some(p @ 1..=65535) => Ok(Some(p as u16)),
        _ => Err(Reject::bad("\"port\" must be from 1 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::{Action, Qos, route};

    fn publish(topic: &str, data: &str) -> Result<Action, u16> {
        Ok(Action::Publish {
            topic: topic.into(),
            data: data.into(),
            qos: Qos::Zero,
            retain: false,
        })
    }

    #[test]
    fn table() {
        let sub = |topic: &str, port| {
            Ok(Action::Subscribe {
                topic: topic.into(),
                port,
                qos: Qos::Zero,
            })
        };
        let stored = Ok(Action::Publish {
            topic: "t".into(),
            data: "x".into(),
            qos: Qos::One,
            retain: true,
        });
        let cases: &[(&str, &str, &str, Result<Action, u16>)] = &[
            (
                "POST",
                "/pub/hello/world",
                r#"{"data":"MyData","qos":0}"#,
                publish("hello/world", "MyData"),
            ),
            ("POST", "/pub/a%20b", r#"{"data":""}"#, publish("a b", "")),
            (
                "POST",
                "/pub/t",
                r#"{"DATA":"x","qos":null}"#,
                publish("t", "x"),
            ),
            (
                "POST",
                "/pub/t",
                r#"{"data":"x","extra":[1,{"a":2}]}"#,
                publish("t", "x"),
            ),
            ("POST", "/pub/t", r#"{"data":1}"#, Err(400)),
            ("POST", "/pub/t", r#"{"qos":0}"#, Err(400)),
            ("POST", "/pub/t", r#"{"data":"x","qos":"0"}"#, Err(400)),
            ("POST", "/pub/t", r#"{"data":"x","qos":1.5}"#, Err(400)),
            ("POST", "/pub/t", r#"{"data":"x","qos":2}"#, Err(400)),
            ("POST", "/pub/t", r#"{"data":"x","qos":-1}"#, Err(400)),
            (
                "POST",
                "/pub/t",
                r#"{"data":"x","qos":1,"retain":true}"#,
                stored,
            ),
            (
                "POST",
                "/pub/t",
                r#"{"data":"x","retain":null}"#,
                publish("t", "x"),
            ),
            ("POST", "/pub/t", r#"{"data":"x","retain":"yes"}"#, Err(400)),
            ("POST", "/pub/t", r#"{"data":"x","retain":1}"#, Err(400)),
            (
                "POST",
                "/sub/t",
                r#"{"qos":1,"port":"7"}"#,
                Ok(Action::Subscribe {
                    topic: "t".into(),
                    port: 7,
                    qos: Qos::One,
                }),
            ),
            ("POST", "/sub/t", r#"{"qos":2,"port":"7"}"#, Err(400)),
            ("POST", "/pub/t", "not json", Err(400)),
            ("POST", "/pub/t", "", Err(400)),
            ("POST", "/pub/", r#"{"data":"x"}"#, Err(400)),
            ("POST", "/pub/%zz", r#"{"data":"x"}"#, Err(400)),
            ("POST", "/pub/%ff", r#"{"data":"x"}"#, Err(400)),
            ("POST", "/pub/a%00b", r#"{"data":"x"}"#, Err(400)),
            ("GET", "/pub/t", "", Err(405)),
            ("POST", "/nope", "", Err(404)),
            ("POST", "/pub", "", Err(404)),
            (
                "POST",
                "/sub/t",
                r#"{"qos":0,"port":"10000"}"#,
                sub("t", 10000),
            ),
            ("POST", "/sub/t", r#"{"port":10001}"#, sub("t", 10001)),
            ("POST", "/sub/t", r#"{"Port":"1"}"#, sub("t", 1)),
            ("POST", "/sub/t", r#"{"port":"0"}"#, Err(400)),
            ("POST", "/sub/t", r#"{"port":"65536"}"#, Err(400)),
            ("POST", "/sub/t", r#"{"port":"-1"}"#, Err(400)),
            ("POST", "/sub/t", r#"{"port":true}"#, Err(400)),
            ("POST", "/sub/t", r#"{"qos":0}"#, Err(400)),
            ("PUT", "/sub/t", "", Err(405)),
            (
                "GET",
                "/sub/a/+/%23",
                "",
                Ok(Action::Stream {
                    pattern: "a/+/#".into(),
                }),
            ),
            ("GET", "/sub/a/#/b", "", Err(400)),
            ("GET", "/sub/a+", "", Err(400)),
            ("POST", "/sub/a%23", r#"{"port":"7"}"#, Err(400)),
            ("POST", "/sub/%2B", r#"{"port":"7"}"#, sub("+", 7)),
            ("POST", "/pub/a/+", r#"{"data":"x"}"#, Err(400)),
            ("POST", "/pub/%23", r#"{"data":"x"}"#, Err(400)),
            (
                "POST",
                "/pub/a+b/c#",
                r#"{"data":"x"}"#,
                publish("a+b/c#", "x"),
            ),
            (
                "DELETE",
                "/sub/a/%23",
                r#"{"port":"7"}"#,
                Ok(Action::Unsubscribe {
                    pattern: "a/#".into(),
                    port: 7,
                }),
            ),
            (
                "POST",
                "/unsub/t",
                r#"{"port":7}"#,
                Ok(Action::Unsubscribe {
                    pattern: "t".into(),
                    port: 7,
                }),
            ),
            ("DELETE", "/sub/t", "", Err(400)),
            ("DELETE", "/sub/t", r#"{"qos":0}"#, Err(400)),
            ("POST", "/unsub/a/#/b", r#"{"port":7}"#, Err(400)),
            ("GET", "/unsub/t", "", Err(405)),
            ("DELETE", "/pub/t", "", Err(405)),
            ("GET", "/", "", Ok(Action::Console)),
            ("POST", "/", "", Err(405)),
            ("GET", "/api/v1/topics", "", Ok(Action::Topics)),
            ("GET", "/api/v1/subscribers", "", Ok(Action::Subscribers)),
            ("GET", "/api/v1/nope", "", Err(404)),
            ("POST", "/hb", "", Ok(Action::Heartbeat { port: None })),
            (
                "POST",
                "/hb",
                r#"{"port":"10000"}"#,
                Ok(Action::Heartbeat { port: Some(10000) }),
            ),
            ("POST", "/hb", "{", Err(400)),
            ("GET", "/hb", "", Err(405)),
            ("GET", "/healthz", "", Ok(Action::Health)),
            ("GET", "/metrics", "", Ok(Action::Metrics)),
            ("POST", "/metrics", "", Err(405)),
            ("GET", "/healthz/x", "", Err(404)),
        ];
        for (method, path, body, want) in cases {
            let got = route(method, path, body.as_bytes()).map_err(|r| r.status);
            assert_eq!(&got, want, "{method} {path} {body}");
        }
    }
}
