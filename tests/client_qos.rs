//! The client's side of at-least-once delivery (PROTOCOL.md section 6.2),
//! against fake brokers and peers over real loopback sockets: the bytes of a
//! qos 1 publish, its one resend after a lost answer, a 507, the qos of a
//! subscription (and of its re-subscription), and the listener dropping
//! deliveries it has seen by their id.
//!
//! A fake broker runs a script over the requests it reads and reports each
//! one; waits are channel receives with a deadline, never sleeps.

mod support;

use message_broker::client::{Client, Error, Message, PublishOptions, Qos};
use message_broker::json::{self, Value};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use support::{WAIT, read_resp};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The client's timeout in these tests.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A request the fake broker read.
#[derive(Debug, Clone)]
struct Req {
    /// `POST /pub/t HTTP/1.1`
    line: String,
    headers: Vec<(String, String)>,
    body: String,
    /// Which connection it came on, counting from 0.
    conn: usize,
    /// Which request it was, counting from 0 over all connections.
    n: usize,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn target(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }

    fn json(&self) -> json::Object {
        json::parse_object(self.body.as_bytes()).expect("a JSON body")
    }
}

/// What the fake broker does with a request.
enum Act {
    /// Writes these bytes and reads the next request.
    Answer(&'static str),
    /// Closes the connection without a byte of answer.
    Close,
    /// Keeps the connection open and silent until the client gives it up.
    Hold,
}

const ACCEPTED: &str = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";

type Script = dyn Fn(&Req) -> Act + Send + Sync;

/// A broker played by a script, on 127.0.0.1:0.
struct FakeBroker {
    addr: SocketAddr,
    requests: Receiver<Req>,
    stop: Arc<AtomicBool>,
    accepter: Option<JoinHandle<Vec<JoinHandle<()>>>>,
}

impl FakeBroker {
    fn start(script: impl Fn(&Req) -> Act + Send + Sync + 'static) -> FakeBroker {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let counter = Arc::new(AtomicUsize::new(0));
        let s = stop.clone();
        let accepter = thread::spawn(move || {
            let mut handles = Vec::new();
            for (conn, stream) in listener.incoming().enumerate() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (tx, script, counter) = (tx.clone(), script.clone(), counter.clone());
                handles.push(thread::spawn(move || {
                    let _ = serve(stream, conn, &*script, &counter, &tx);
                }));
            }
            handles
        });
        FakeBroker {
            addr,
            requests,
            stop,
            accepter: Some(accepter),
        }
    }

    /// A broker that answers 202 to everything.
    fn accepting() -> FakeBroker {
        FakeBroker::start(|_| Act::Answer(ACCEPTED))
    }

    /// The next request it read, within the deadline.
    fn next(&self) -> Req {
        self.requests
            .recv_timeout(WAIT)
            .expect("a request to the fake broker in time")
    }

    /// The next request for `target`, skipping others (heartbeats).
    fn next_to(&self, target: &str) -> Req {
        loop {
            let req = self.next();
            if req.target() == target {
                return req;
            }
        }
    }

    /// Stops accepting, waits for every connection to end (the client must
    /// be gone, or have closed them), and returns every request it read.
    fn finish(mut self) -> Vec<Req> {
        self.stop.store(true, Ordering::SeqCst);
        // accept() has no timeout: a connection of our own wakes it.
        let _ = TcpStream::connect_timeout(&self.addr, WAIT);
        let handles = self.accepter.take().unwrap().join().unwrap();
        for handle in handles {
            handle.join().unwrap();
        }
        self.requests.try_iter().collect()
    }
}

/// Plays the script on one connection until it ends.
fn serve(
    stream: TcpStream,
    conn: usize,
    script: &Script,
    counter: &AtomicUsize,
    tx: &Sender<Req>,
) -> io::Result<()> {
    // Every read ends by the deadline: a client that never closes cannot
    // keep `finish` waiting.
    stream.set_read_timeout(Some(WAIT))?;
    stream.set_write_timeout(Some(WAIT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    while let Some((line, headers, body)) = read_request(&mut reader)? {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let req = Req {
            line,
            headers,
            body,
            conn,
            n,
        };
        let act = script(&req);
        let _ = tx.send(req);
        match act {
            Act::Answer(bytes) => stream.write_all(bytes.as_bytes())?,
            Act::Close => {
                stream.shutdown(Shutdown::Write)?;
                return drain(&mut reader);
            }
            Act::Hold => return drain(&mut reader),
        }
    }
    Ok(())
}

/// Reads until the client closes (or the read deadline passes).
fn drain(reader: &mut impl Read) -> io::Result<()> {
    let mut sink = [0u8; 4096];
    while reader.read(&mut sink)? > 0 {}
    Ok(())
}

type Head = (String, Vec<(String, String)>, String);

/// One request (line, headers, `Content-Length` body); `None` if the peer
/// closed before sending one.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut line = String::new();
    if reader.take(8192).read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.take(8192).read_line(&mut h)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').ok_or(io::ErrorKind::InvalidData)?;
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(Ok(0), |(_, v)| v.parse().map_err(io::Error::other))?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8(body).map_err(io::Error::other)?;
    Ok(Some((line.trim_end().to_owned(), headers, body)))
}

fn client_of(broker: &FakeBroker) -> Client {
    Client::builder(broker.addr.to_string())
        .listen_ip(LOOPBACK)
        .listen_port(0)
        .timeout(TIMEOUT)
        .build()
        .expect("client")
}

fn number(object: &json::Object, key: &str) -> Option<u64> {
    object.get(key).and_then(Value::as_u64)
}

fn assert_visible_key(key: Option<&str>) -> String {
    let key = key.expect("an Idempotency-Key header");
    assert!(
        (1..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()),
        "{key:?}"
    );
    key.to_owned()
}

#[test]
fn a_qos_1_publish_sends_qos_retain_and_a_key_and_returns_the_message_id() {
    let broker = FakeBroker::start(|_| {
        Act::Answer("HTTP/1.1 202 Accepted\r\nMessage-Id: 42\r\nContent-Length: 0\r\n\r\n")
    });
    let client = client_of(&broker);
    let options = PublishOptions::at_least_once().retain(true);
    assert_eq!(
        client.publish_with("a/b", "hello", &options).unwrap(),
        Some(42)
    );
    let req = broker.next();
    assert_eq!(req.line, "POST /pub/a/b HTTP/1.1");
    assert_eq!(req.body, r#"{"data":"hello","qos":1,"retain":true}"#);
    let body = req.json();
    assert_eq!(body.get_str("data"), Some("hello"));
    assert_eq!(number(&body, "qos"), Some(1));
    assert_eq!(body.get("retain"), Some(&Value::Bool(true)));
    let made_up = assert_visible_key(req.header("Idempotency-Key"));

    // The caller's key is sent as it is; each made-up key is new.
    let options = PublishOptions::at_least_once().idempotency_key("order-17");
    assert_eq!(client.publish_with("a/b", "x", &options).unwrap(), Some(42));
    let req = broker.next();
    assert_eq!(req.header("Idempotency-Key"), Some("order-17"));
    assert_eq!(req.body, r#"{"data":"x","qos":1}"#);
    client
        .publish_with("a/b", "y", &PublishOptions::at_least_once())
        .unwrap();
    let other = assert_visible_key(broker.next().header("Idempotency-Key"));
    assert_ne!(made_up, other);
}

#[test]
fn a_qos_0_publish_is_the_go_clients_and_tolerates_no_message_id() {
    let broker = FakeBroker::accepting();
    let client = client_of(&broker);
    // No Message-Id, as from the Go broker.
    let id = client.publish_with("hello/world", "MyData", &PublishOptions::default());
    assert_eq!(id.unwrap(), None);
    let req = broker.next();
    assert_eq!(req.body, r#"{"data":"MyData","qos":0}"#);
    assert_eq!(req.header("Idempotency-Key"), None);
    client.publish("hello/world", "MyData").unwrap();
    assert_eq!(broker.next().body, r#"{"data":"MyData","qos":0}"#);
    // Retained at qos 0: the retain key, no key header unless given.
    let options = PublishOptions::new().retain(true);
    client.publish_with("hello/world", "", &options).unwrap();
    let req = broker.next();
    assert_eq!(req.body, r#"{"data":"","qos":0,"retain":true}"#);
    assert_eq!(req.header("Idempotency-Key"), None);
}

#[test]
fn a_bad_idempotency_key_is_refused_before_sending() {
    let broker = FakeBroker::accepting();
    let client = client_of(&broker);
    for key in ["", "two words", "line\r\nX-Evil: 1", &"k".repeat(129)] {
        let options = PublishOptions::at_least_once().idempotency_key(key);
        let result = client.publish_with("t", "x", &options);
        assert!(
            matches!(result, Err(Error::InvalidIdempotencyKey(_))),
            "{key:?}: {result:?}"
        );
    }
    let options = PublishOptions::at_least_once().idempotency_key("k".repeat(128));
    client.publish_with("t", "x", &options).unwrap();
    drop(client);
    assert_eq!(broker.finish().len(), 1, "only the valid key was sent");
}

#[test]
fn a_lost_answer_is_sent_again_once_with_the_same_key() {
    let broker = FakeBroker::start(|req| match req.n {
        0 => Act::Close,
        _ => Act::Answer("HTTP/1.1 202 Accepted\r\nMessage-Id: 7\r\nContent-Length: 0\r\n\r\n"),
    });
    let client = client_of(&broker);
    let options = PublishOptions::at_least_once();
    assert_eq!(client.publish_with("t", "once", &options).unwrap(), Some(7));
    drop(client);
    let reqs = broker.finish();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_ne!(
        reqs[0].conn, reqs[1].conn,
        "the resend is on a new connection"
    );
    let key = assert_visible_key(reqs[0].header("Idempotency-Key"));
    assert_eq!(reqs[1].header("Idempotency-Key"), Some(key.as_str()));
    assert_eq!(reqs[0].body, reqs[1].body);
    assert_eq!(reqs[1].body, r#"{"data":"once","qos":1}"#);
}

#[test]
fn a_caller_key_is_kept_on_the_resend() {
    let broker = FakeBroker::start(|req| match req.n {
        0 => Act::Close,
        _ => Act::Answer("HTTP/1.1 202 Accepted\r\nMessage-Id: 8\r\nContent-Length: 0\r\n\r\n"),
    });
    let client = client_of(&broker);
    let options = PublishOptions::at_least_once().idempotency_key("mine-1");
    assert_eq!(client.publish_with("t", "x", &options).unwrap(), Some(8));
    drop(client);
    let reqs = broker.finish();
    let keys: Vec<_> = reqs.iter().map(|r| r.header("Idempotency-Key")).collect();
    assert_eq!(keys, [Some("mine-1"), Some("mine-1")]);
}

#[test]
fn an_answer_that_times_out_is_waited_for_once_more() {
    let broker = FakeBroker::start(|req| match req.n {
        0 => Act::Hold,
        _ => Act::Answer("HTTP/1.1 202 Accepted\r\nMessage-Id: 9\r\nContent-Length: 0\r\n\r\n"),
    });
    let client = Client::builder(broker.addr.to_string())
        .listen_ip(LOOPBACK)
        .listen_port(0)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let options = PublishOptions::at_least_once();
    assert_eq!(client.publish_with("t", "slow", &options).unwrap(), Some(9));
    drop(client);
    let reqs = broker.finish();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].header("Idempotency-Key"),
        reqs[1].header("Idempotency-Key")
    );
}

#[test]
fn two_lost_answers_fail_after_exactly_two_attempts() {
    let broker = FakeBroker::start(|_| Act::Close);
    let client = client_of(&broker);
    let result = client.publish_with("t", "x", &PublishOptions::at_least_once());
    assert!(matches!(result, Err(Error::Io(_))), "{result:?}");
    drop(client);
    let reqs = broker.finish();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_eq!(
        reqs[0].header("Idempotency-Key"),
        reqs[1].header("Idempotency-Key")
    );
}

#[test]
fn a_qos_0_publish_with_a_lost_answer_is_sent_once() {
    let broker = FakeBroker::start(|_| Act::Close);
    let client = client_of(&broker);
    let result = client.publish_with("t", "x", &PublishOptions::default());
    assert!(matches!(result, Err(Error::Io(_))), "{result:?}");
    // Even with a key and retain: only qos 1 is sent again.
    let options = PublishOptions::new().retain(true).idempotency_key("k");
    assert!(client.publish_with("t", "y", &options).is_err());
    assert!(client.publish("t", "z").is_err());
    drop(client);
    let reqs = broker.finish();
    let bodies: Vec<_> = reqs.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(
        bodies,
        [
            r#"{"data":"x","qos":0}"#,
            r#"{"data":"y","qos":0,"retain":true}"#,
            r#"{"data":"z","qos":0}"#
        ]
    );
}

#[test]
fn a_507_says_the_broker_could_not_store_the_message() {
    let broker = FakeBroker::start(|_| {
        Act::Answer(
            "HTTP/1.1 507 Insufficient Storage\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\ndisk full\r\n",
        )
    });
    let client = client_of(&broker);
    let error = client
        .publish_with("t", "x", &PublishOptions::at_least_once())
        .unwrap_err();
    assert!(
        matches!(error, Error::Status { status: 507, .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("could not store the message"), "{text}");
    assert!(text.contains("disk full"), "{text}");
    drop(client);
    assert_eq!(broker.finish().len(), 1, "an answer is not sent again");
}

/// Posts a delivery to the client's listener on `stream`, as the broker
/// does; returns the status of the answer.
fn deliver(stream: &mut BufReader<TcpStream>, body: &str, message_id: Option<u64>) -> u16 {
    let header = message_id.map_or(String::new(), |id| format!("Message-Id: {id}\r\n"));
    let request = format!(
        "POST /msg HTTP/1.1\r\nHost: c\r\nContent-Type: application/json\r\n{header}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.get_mut().write_all(request.as_bytes()).unwrap();
    read_resp(stream).expect("an answer from the client").status
}

fn listener_conn(client: &Client) -> BufReader<TcpStream> {
    let stream = support::connect(SocketAddr::new(LOOPBACK, client.listen_port()));
    BufReader::new(stream)
}

/// The next `n` messages the callback got, each within the deadline.
fn received(rx: &Receiver<Message>, n: usize) -> Vec<(String, Option<u64>)> {
    (0..n)
        .map(|_| {
            let m = rx.recv_timeout(WAIT).expect("a message in time");
            (m.data, m.id)
        })
        .collect()
}

fn subscribed(client: &Client, topic: &str, qos: Qos) -> Receiver<Message> {
    let (tx, rx) = mpsc::channel();
    client
        .subscribe_qos(topic, qos, move |m| {
            let _ = tx.send(m);
        })
        .expect("subscribe");
    rx
}

#[test]
fn subscribe_qos_sends_the_qos_and_duplicates_are_dropped_by_id() {
    let broker = FakeBroker::accepting();
    let client = client_of(&broker);
    let rx = subscribed(&client, "t", Qos::AtLeastOnce);
    let req = broker.next_to("/sub/t");
    let body = req.json();
    assert_eq!(number(&body, "qos"), Some(1));
    let port = client.listen_port().to_string();
    assert_eq!(body.get_str("port"), Some(port.as_str()));
    // subscribe stays qos 0, byte for byte as the Go client.
    let _plain = subscribed(&client, "u", Qos::AtMostOnce);
    let req = broker.next_to("/sub/u");
    assert_eq!(req.body, format!(r#"{{"qos":0,"port":"{port}"}}"#));

    let mut conn = listener_conn(&client);
    let a5 = r#"{"data":"a","Topic":"t","id":5}"#;
    assert_eq!(deliver(&mut conn, a5, Some(5)), 202);
    assert_eq!(
        deliver(&mut conn, a5, Some(5)),
        202,
        "a duplicate is answered"
    );
    // Another connection, as after the broker's reconnect: same window.
    let mut again = listener_conn(&client);
    assert_eq!(deliver(&mut again, a5, Some(5)), 202);
    let b6 = r#"{"data":"b","Topic":"t","id":6}"#;
    assert_eq!(deliver(&mut conn, b6, Some(6)), 202);
    assert_eq!(deliver(&mut conn, b6, None), 202, "the body's id is enough");
    // The callbacks run in arrival order: once the last one shows, every
    // duplicate before it has been dropped.
    let last = r#"{"data":"end","Topic":"t","id":100}"#;
    assert_eq!(deliver(&mut conn, last, None), 202);
    let want = [("a", Some(5)), ("b", Some(6)), ("end", Some(100))];
    let want: Vec<_> = want.iter().map(|(d, id)| (d.to_string(), *id)).collect();
    assert_eq!(received(&rx, 3), want);
}

#[test]
fn deliveries_without_an_id_are_never_dropped_and_a_header_id_counts() {
    let broker = FakeBroker::accepting();
    let client = client_of(&broker);
    let rx = subscribed(&client, "t", Qos::AtLeastOnce);
    broker.next_to("/sub/t");
    let mut conn = listener_conn(&client);
    let plain = r#"{"data":"plain","Topic":"t"}"#;
    assert_eq!(deliver(&mut conn, plain, None), 202);
    assert_eq!(deliver(&mut conn, plain, None), 202);
    // Only the header names the id.
    let headed = r#"{"data":"headed","Topic":"t"}"#;
    assert_eq!(deliver(&mut conn, headed, Some(9)), 202);
    assert_eq!(deliver(&mut conn, headed, Some(9)), 202);
    assert_eq!(deliver(&mut conn, plain, None), 202);
    let got = received(&rx, 4);
    let want = [
        ("plain", None),
        ("plain", None),
        ("headed", Some(9)),
        ("plain", None),
    ];
    let want: Vec<_> = want.iter().map(|(d, id)| (d.to_string(), *id)).collect();
    assert_eq!(got, want);
}

#[test]
fn resubscribing_after_broker_silence_keeps_each_topics_qos() {
    let broker = FakeBroker::accepting();
    let client = Client::builder(broker.addr.to_string())
        .listen_ip(LOOPBACK)
        .listen_port(0)
        .timeout(TIMEOUT)
        .resubscribe_after(Duration::from_millis(200))
        .build()
        .unwrap();
    let _one = subscribed(&client, "one", Qos::AtLeastOnce);
    let _zero = subscribed(&client, "zero", Qos::AtMostOnce);
    let qos_of = |req: Req| number(&req.json(), "qos");
    assert_eq!(qos_of(broker.next_to("/sub/one")), Some(1));
    assert_eq!(qos_of(broker.next_to("/sub/zero")), Some(0));
    // The fake broker never calls back: the client subscribes again, each
    // topic with its own qos, in whatever order.
    let mut again = Vec::new();
    while again.len() < 2 {
        let req = broker.next();
        if req.target().starts_with("/sub/") {
            again.push((req.target().to_owned(), qos_of(req)));
        }
    }
    again.sort();
    assert_eq!(
        again,
        [
            ("/sub/one".to_owned(), Some(1)),
            ("/sub/zero".to_owned(), Some(0))
        ]
    );
}

#[test]
fn a_delivery_with_an_id_the_client_cannot_queue_is_refused_then_taken() {
    let broker = FakeBroker::accepting();
    let client = client_of(&broker);
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let (tx, rx) = mpsc::channel();
    client
        .subscribe_qos("t", Qos::AtLeastOnce, move |m: Message| {
            if m.data == "block" {
                // Holds the dispatcher until the test lets it go.
                let _ = gate_rx.recv_timeout(WAIT);
            }
            let _ = tx.send(m);
        })
        .unwrap();
    broker.next_to("/sub/t");
    let mut conn = listener_conn(&client);
    assert_eq!(
        deliver(&mut conn, r#"{"data":"block","Topic":"t","id":1}"#, None),
        202
    );
    // While the callback holds the dispatcher, fill its queue: a qos 0
    // message would be dropped now, one with an id is refused instead.
    let mut id = 2;
    let refused = loop {
        let body = format!(r#"{{"data":"fill","Topic":"t","id":{id}}}"#);
        let status = deliver(&mut conn, &body, None);
        if status != 202 {
            break status;
        }
        id += 1;
        assert!(id < 10_000, "the dispatch queue never filled");
    };
    assert_eq!(refused, 503, "a qos 1 delivery is refused, not dropped");
    gate_tx.send(()).unwrap();
    // Every message taken comes through, in order...
    let seen = received(&rx, id as usize - 1);
    let ids: Vec<_> = seen.iter().map(|(_, id)| id.unwrap()).collect();
    assert_eq!(ids, (1..id).collect::<Vec<_>>());
    // ...and the refused one, sent again as the broker would, is taken: it
    // was not remembered as seen.
    let body = format!(r#"{{"data":"resent","Topic":"t","id":{id}}}"#);
    assert_eq!(deliver(&mut conn, &body, None), 202);
    let last = rx.recv_timeout(WAIT).expect("the resent message");
    assert_eq!((last.data.as_str(), last.id), ("resent", Some(id)));
}
