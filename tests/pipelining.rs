//! HTTP/1.1 as a Go peer and curl use it (PROTOCOL.md section 4): pipelined
//! requests, chunked bodies, `Expect: 100-continue`, persistent connections.

mod support;

use std::io::{BufRead, BufReader, Write};
use support::{BrokerProcess, RawSubscriber, closed_by_peer, connect, read_resp};

fn publish_request(topic: &str, data: &str) -> String {
    let body = format!("{{\"data\":\"{data}\",\"qos\":0}}");
    format!(
        "POST /pub/{topic} HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn hundred_pipelined_publishes_answered_and_delivered_in_order() {
    let broker = BrokerProcess::start(&[]);
    let sub = RawSubscriber::start();
    support::subscribe(broker.addr, "pipe", sub.port);

    // Every tenth request is bad, so the order of the answers shows.
    let mut burst = String::new();
    for i in 0..100 {
        if i % 10 == 9 {
            burst.push_str(&format!(
                "POST /unknown/{i} HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n"
            ));
        } else {
            burst.push_str(&publish_request("pipe", &format!("m{i}")));
        }
    }
    let mut stream = connect(broker.addr);
    stream.write_all(burst.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for i in 0..100 {
        let resp = read_resp(&mut reader).unwrap_or_else(|| panic!("answer {i}"));
        let want = if i % 10 == 9 { 404 } else { 202 };
        assert_eq!(resp.status, want, "answer {i}");
    }
    let want: Vec<String> = (0..100)
        .filter(|i| i % 10 != 9)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(sub.recv_data(want.len()), want);
}

#[test]
fn chunked_publish_with_extensions_and_trailers() {
    let broker = BrokerProcess::start(&[]);
    let sub = RawSubscriber::start();
    support::subscribe(broker.addr, "chunks", sub.port);
    let request = "POST /pub/chunks HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n\
                   5;ext=1\r\n{\"dat\r\n\
                   F\r\na\":\"chunked\",\"q\r\n\
                   5\r\nos\":0\r\n\
                   1\r\n}\r\n\
                   0\r\nX-Trailer: yes\r\n\r\n";
    let resp = support::exchange(broker.addr, request.as_bytes());
    assert_eq!(resp.status, 202, "{}", resp.text());
    assert_eq!(sub.recv_data(1), ["chunked"]);
}

#[test]
fn expect_100_continue_gets_continue_then_202() {
    let broker = BrokerProcess::start(&[]);
    let sub = RawSubscriber::start();
    support::subscribe(broker.addr, "expect", sub.port);
    let body = r#"{"data":"after continue"}"#;
    let head = format!(
        "POST /pub/expect HTTP/1.1\r\nHost: b\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = connect(broker.addr);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    stream.write_all(head.as_bytes()).unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "\r\n");
    stream.write_all(body.as_bytes()).unwrap();
    assert_eq!(read_resp(&mut reader).unwrap().status, 202);
    assert_eq!(sub.recv_data(1), ["after continue"]);
}

#[test]
fn expect_100_continue_over_the_limit_gets_413_without_continue() {
    let broker = BrokerProcess::start(&["--max-payload", "100"]);
    let head =
        "POST /pub/t HTTP/1.1\r\nHost: b\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n";
    let mut stream = connect(broker.addr);
    stream.write_all(head.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let resp = read_resp(&mut reader).unwrap();
    assert_eq!(resp.status, 413);
    assert!(closed_by_peer(&mut reader));
}

#[test]
fn connection_close_and_http10_keep_alive() {
    let broker = BrokerProcess::start(&[]);
    let body = r#"{"data":"x"}"#;
    let close = format!(
        "POST /pub/t HTTP/1.1\r\nHost: b\r\nConnection: close\r\nContent-Length: 12\r\n\r\n{body}"
    );
    let mut stream = connect(broker.addr);
    stream.write_all(close.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert_eq!(read_resp(&mut reader).unwrap().status, 202);
    assert!(closed_by_peer(&mut reader), "Connection: close closes");

    // HTTP/1.0 closes unless asked to keep alive.
    let plain10 = format!("POST /pub/t HTTP/1.0\r\nContent-Length: 12\r\n\r\n{body}");
    let mut stream = connect(broker.addr);
    stream.write_all(plain10.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert_eq!(read_resp(&mut reader).unwrap().status, 202);
    assert!(closed_by_peer(&mut reader), "HTTP/1.0 closes by default");

    let keep10 = format!(
        "POST /pub/t HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 12\r\n\r\n{body}"
    );
    let mut stream = connect(broker.addr);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for _ in 0..3 {
        stream.write_all(keep10.as_bytes()).unwrap();
        assert_eq!(read_resp(&mut reader).unwrap().status, 202);
    }
}

#[test]
fn answer_is_not_held_back_by_a_stray_crlf_after_the_request() {
    let broker = BrokerProcess::start(&[]);
    let mut request = publish_request("t", "x");
    request.push_str("\r\n"); // RFC 9112 2.2: a server should ignore it
    let mut stream = connect(broker.addr);
    stream.write_all(request.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert_eq!(
        read_resp(&mut reader).expect("answered at once").status,
        202
    );
    stream
        .write_all(publish_request("t", "y").as_bytes())
        .unwrap();
    assert_eq!(read_resp(&mut reader).expect("second answer").status, 202);
}

#[test]
fn every_answer_arrives_before_a_requested_close_despite_unread_input() {
    let broker = BrokerProcess::start(&[]);
    // Enough answers to overflow the socket buffers, so some are still
    // queued in the broker when it closes.
    let n = 20_000;
    let mut burst = String::new();
    for i in 0..n - 1 {
        burst.push_str(&publish_request("burst", &format!("m{i}")));
    }
    let body = r#"{"data":"last"}"#;
    burst.push_str(&format!(
        "POST /pub/burst HTTP/1.1\r\nHost: b\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    // Bytes after the closing request stay unread: closing on them would
    // reset the connection and destroy answers not yet read.
    // More than the broker's read buffer, so some stay in the kernel.
    for _ in 0..2000 {
        burst.push_str(&publish_request("burst", "never"));
    }
    let mut stream = connect(broker.addr);
    let reader_stream = stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || stream.write_all(burst.as_bytes()));
    // A slow peer: it starts reading a moment late.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut reader = BufReader::new(reader_stream);
    for i in 0..n {
        let resp = read_resp(&mut reader).unwrap_or_else(|| panic!("answer {i} of {n} lost"));
        assert_eq!(resp.status, 202, "answer {i}");
    }
    assert!(closed_by_peer(&mut reader));
    let _ = writer.join();
}
