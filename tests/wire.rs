//! The wire format a Go peer sees: the Go client's exact publish bytes, and a
//! subscriber played by a raw TCP listener (PROTOCOL.md sections 1, 2 and 4).

mod support;

use message_broker::json;
use std::io::{BufReader, Write};
use support::{BrokerProcess, RawSubscriber, connect, read_resp};

const GO_PUBLISH: &[u8] = b"POST /pub/hello/world HTTP/1.1\r\n\
Host: 127.0.0.1:9999\r\n\
User-Agent: Go-http-client/1.1\r\n\
Content-Length: 25\r\n\
Accept-Encoding: gzip\r\n\
\r\n\
{\"data\":\"MyData\",\"qos\":0}";

#[test]
fn go_publish_bytes_reach_a_raw_subscriber_as_go_delivery() {
    let broker = BrokerProcess::start(&[]);
    let sub = RawSubscriber::start();
    // The Go client's subscribe request, byte for byte but for the port.
    let body = format!("{{\"qos\":0,\"port\":\"{}\"}}", sub.port);
    let subscribe = format!(
        "POST /sub/hello/world HTTP/1.1\r\nHost: 127.0.0.1:9999\r\nUser-Agent: Go-http-client/1.1\r\n\
         Content-Length: {}\r\nAccept-Encoding: gzip\r\n\r\n{body}",
        body.len()
    );
    let mut stream = connect(broker.addr);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    stream.write_all(subscribe.as_bytes()).unwrap();
    assert_eq!(read_resp(&mut reader).unwrap().status, 202);

    // Same connection, as the Go client reuses it.
    stream.write_all(GO_PUBLISH).unwrap();
    let resp = read_resp(&mut reader).unwrap();
    assert_eq!(resp.status, 202);
    assert!(resp.body.is_empty());

    let msg = sub.recv_msg();
    assert_eq!(msg.request_line, "POST /msg HTTP/1.1");
    assert_eq!(msg.header("content-type"), Some("application/json"));
    assert_eq!(
        msg.header("host"),
        Some(format!("127.0.0.1:{}", sub.port).as_str())
    );
    let object = json::parse_object(msg.body.as_bytes()).unwrap();
    let keys: Vec<&str> = object.iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        ["data", "Topic"],
        "Go's key names, Topic with a capital T"
    );
    assert_eq!(object.get("data").and_then(|v| v.as_str()), Some("MyData"));
    assert_eq!(
        object.get("Topic").and_then(|v| v.as_str()),
        Some("hello/world")
    );
}

#[test]
fn subscribing_twice_delivers_once_and_port_may_be_a_number() {
    let broker = BrokerProcess::start(&[]);
    let sub = RawSubscriber::start();
    support::subscribe(broker.addr, "t", sub.port);
    let resp = support::post(broker.addr, "/sub/t", &format!("{{\"port\":{}}}", sub.port));
    assert_eq!(resp.status, 202);
    support::publish(broker.addr, "t", "once");
    support::publish(broker.addr, "t", "twice");
    assert_eq!(sub.recv_data(2), ["once", "twice"]);
    sub.assert_no_msg(std::time::Duration::from_millis(300));
}

#[test]
fn percent_encoded_and_unicode_topics_and_escaped_data() {
    let broker = BrokerProcess::start(&[]);
    let sub = RawSubscriber::start();
    support::subscribe(broker.addr, "caf%C3%A9/a%20b", sub.port);
    let data = r#"<tag> & \"quoted\" \\ \u00e9 \ud83d\ude00"#;
    support::publish(broker.addr, "caf%C3%A9/a%20b", data);
    let msg = sub.recv_msg();
    let object = json::parse_object(msg.body.as_bytes()).unwrap();
    assert_eq!(
        object.get("Topic").and_then(|v| v.as_str()),
        Some("café/a b")
    );
    assert_eq!(
        object.get("data").and_then(|v| v.as_str()),
        Some("<tag> & \"quoted\" \\ é 😀")
    );
}

#[test]
fn heartbeat_is_answered_with_a_heartbeat_to_the_subscriber() {
    let broker = BrokerProcess::start(&[]);
    let sub = RawSubscriber::start();
    let other = RawSubscriber::start();
    support::subscribe(broker.addr, "t", sub.port);
    support::subscribe(broker.addr, "t", other.port);
    // Our extension names the port: only that endpoint is called.
    let resp = support::post(
        broker.addr,
        "/hb",
        &format!("{{\"port\":\"{}\"}}", sub.port),
    );
    assert_eq!(resp.status, 202);
    let hb = sub.recv_any();
    assert_eq!(hb.request_line, "POST /hb HTTP/1.1");
    // The Go client's empty heartbeat reaches every endpoint at its IP.
    let resp = support::exchange(
        broker.addr,
        b"POST /hb HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(resp.status, 202);
    assert_eq!(other.recv_any().request_line, "POST /hb HTTP/1.1");
    assert_eq!(sub.recv_any().request_line, "POST /hb HTTP/1.1");
}
