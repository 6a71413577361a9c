//! Every row of PROTOCOL.md section 1's error table, one case each, over raw
//! bytes against a real broker process.

mod support;

use std::io::{BufReader, Write};
use support::{BrokerProcess, Resp, closed_by_peer, connect, read_resp};

/// Sends `request` on a fresh connection; returns the answer and whether the
/// broker closed the connection after it.
fn send(broker: &BrokerProcess, request: &[u8]) -> (Resp, bool) {
    let mut stream = connect(broker.addr);
    stream.write_all(request).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let resp = read_resp(&mut reader).expect("a response");
    // Ask for the connection to stay open: it closes only if the broker wants.
    stream
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    (resp, closed_by_peer(&mut reader))
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn error_table() {
    let broker = BrokerProcess::start(&["--max-payload", "64"]);
    let long_line = format!("POST /pub/{} HTTP/1.1\r\nHost: b\r\n\r\n", "a".repeat(9000));
    let big_header = format!(
        "POST /pub/t HTTP/1.1\r\nHost: b\r\nX-Big: {}\r\n\r\n",
        "a".repeat(17000)
    );
    let cases: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        ("body is not JSON", post("/pub/t", "hello"), 400, false),
        ("pub misses data", post("/pub/t", r#"{"qos":0}"#), 400, false),
        ("sub misses port", post("/sub/t", r#"{"qos":0}"#), 400, false),
        ("data has the wrong type", post("/pub/t", r#"{"data":5}"#), 400, false),
        ("port is 0", post("/sub/t", r#"{"port":"0"}"#), 400, false),
        ("port out of range", post("/sub/t", r#"{"port":"70000"}"#), 400, false),
        ("empty topic", post("/pub/", r#"{"data":"x"}"#), 400, false),
        ("control character in topic", post("/pub/a%01b", r#"{"data":"x"}"#), 400, false),
        ("topic not UTF-8", post("/pub/%C3%28", r#"{"data":"x"}"#), 400, false),
        ("bad percent-encoding", post("/pub/a%2", r#"{"data":"x"}"#), 400, false),
        ("unknown path", post("/nothing/here", ""), 404, false),
        ("GET on a known path", b"GET /pub/t HTTP/1.1\r\nHost: b\r\n\r\n".to_vec(), 405, false),
        ("body over the payload limit", post("/pub/t", &format!(r#"{{"data":"{}"}}"#, "x".repeat(60))), 413, true),
        ("request line too large", long_line.into_bytes(), 414, true),
        ("headers too large", big_header.into_bytes(), 431, true),
        (
            "Content-Length and Transfer-Encoding",
            b"POST /pub/t HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (
            "conflicting Content-Lengths",
            b"POST /pub/t HTTP/1.1\r\nHost: b\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec(),
            400,
            true,
        ),
        (
            "unknown transfer coding",
            b"POST /pub/t HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            400,
            true,
        ),
        ("HTTP/2.0", b"POST /pub/t HTTP/2.0\r\nHost: b\r\n\r\n".to_vec(), 505, true),
    ];
    for (name, request, status, closes) in cases {
        let (resp, closed) = send(&broker, &request);
        assert_eq!(resp.status, status, "{name}: {}", resp.text());
        assert!(
            !resp.text().trim().is_empty(),
            "{name}: an error has a reason in its body"
        );
        assert!(
            resp.header("content-type")
                .is_some_and(|v| v.starts_with("text/plain")),
            "{name}"
        );
        if status == 405 {
            assert_eq!(resp.header("allow"), Some("POST"), "{name}");
        }
        assert_eq!(
            closed, closes,
            "{name}: connection closed after the answer?"
        );
    }
    // The same broker still serves.
    support::publish(broker.addr, "t", "still here");
}

/// One publish on `stream`, answered.
fn publish_on(stream: &std::net::TcpStream, data: &str) -> u16 {
    let mut s = stream.try_clone().unwrap();
    s.write_all(&post("/pub/t", &format!(r#"{{"data":"{data}"}}"#)))
        .unwrap();
    read_resp(&mut BufReader::new(stream.try_clone().unwrap()))
        .unwrap()
        .status
}

#[test]
fn when_full_the_longest_idle_connection_makes_room_else_503() {
    let broker = BrokerProcess::start(&["--max-connections", "2"]);
    let oldest = connect(broker.addr);
    let newer = connect(broker.addr);
    assert_eq!(publish_on(&oldest, "a"), 202);
    assert_eq!(publish_on(&newer, "b"), 202);
    // Full: a third connection is served; the longest-idle one is closed.
    let third = connect(broker.addr);
    assert_eq!(publish_on(&third, "c"), 202);
    assert!(closed_by_peer(&mut BufReader::new(oldest)));
    assert_eq!(publish_on(&newer, "d"), 202);

    // Both places busy (each in the middle of a request, which the broker
    // shows by its 100 Continue): a fourth gets 503 and a close.
    let head =
        b"POST /pub/t HTTP/1.1\r\nHost: b\r\nExpect: 100-continue\r\nContent-Length: 12\r\n\r\n";
    let mut readers = Vec::new();
    for stream in [&newer, &third] {
        stream.try_clone().unwrap().write_all(head).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        assert_eq!(read_resp(&mut reader).unwrap().status, 100);
        readers.push(reader);
    }
    let (resp, closed) = send(&broker, &post("/pub/t", r#"{"data":"x"}"#));
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(closed);
    // The busy ones finish their requests undisturbed.
    for (stream, mut reader) in [&newer, &third].into_iter().zip(readers) {
        stream
            .try_clone()
            .unwrap()
            .write_all(br#"{"data":"y"}"#)
            .unwrap();
        assert_eq!(read_resp(&mut reader).unwrap().status, 202);
    }
}
