//! The broker embedded in a program (`Broker::bind` / `spawn` / `stop`), as
//! `examples/server.rs` and the benchmark use it.

mod support;

use message_broker::broker::{Broker, Config};
use std::io::{BufReader, Write};
use support::{RawSubscriber, closed_by_peer, connect, read_resp};

fn request(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn stop_frees_the_port_and_open_connections_get_503() {
    let broker = Broker::bind(Config {
        bind: "127.0.0.1".parse().unwrap(),
        port: 0,
        ..Config::default()
    })
    .unwrap();
    let addr = broker.local_addr();
    let running = broker.spawn().unwrap();
    let sub = RawSubscriber::start();
    support::subscribe(addr, "t", sub.port);
    support::publish(addr, "t", "before");
    assert_eq!(sub.recv_data(1), ["before"]);

    let mut open = connect(addr);
    let mut reader = BufReader::new(open.try_clone().unwrap());
    open.write_all(&request("/pub/t", r#"{"data":"x"}"#))
        .unwrap();
    assert_eq!(read_resp(&mut reader).unwrap().status, 202);
    sub.recv_msg();

    running.stop();
    std::net::TcpListener::bind(addr).expect("port free once stop returns");

    // A connection that was open: its next request is refused, then closed.
    let sub_request = format!("{{\"port\":\"{}\"}}", sub.port);
    open.write_all(&request("/sub/after", &sub_request))
        .unwrap();
    let resp = read_resp(&mut reader).unwrap();
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(closed_by_peer(&mut reader));
    sub.assert_no_msg(std::time::Duration::from_millis(300));
}

/// An embedded broker lets go of its data directory when it stops, and
/// when it is dropped without ever running: the next one on the directory
/// starts.
#[test]
fn data_directory_is_released_by_a_stop_and_by_a_drop() {
    use message_broker::broker::{Broker, Config};
    let tmp = support::durable::TempDir::new("embedded");
    let config = Config {
        bind: "127.0.0.1".parse().unwrap(),
        port: 0,
        data_dir: Some(tmp.join("data")),
        ..Config::default()
    };
    let running = Broker::bind(config.clone()).unwrap().spawn().unwrap();
    let second = Broker::bind(config.clone());
    assert!(second.is_err(), "the directory is locked while one runs");
    running.stop();
    let unused = Broker::bind(config.clone()).expect("released by the stop");
    drop(unused);
    Broker::bind(config).expect("released by a drop without a run");
}
