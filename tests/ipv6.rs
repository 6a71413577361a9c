//! IPv6: the broker on ::1 calls subscribers back at their IPv6 address, and
//! endpoints at one IP are told apart by port.

mod support;

use message_broker::client::Client;
use support::{BrokerProcess, RawSubscriber, WAIT};

#[test]
fn ipv6_broker_delivers_to_ipv6_raw_subscribers_and_the_client() {
    let broker = BrokerProcess::start(&["--bind", "::1"]);
    assert!(broker.addr.is_ipv6(), "{}", broker.addr);
    let first = RawSubscriber::start_on("[::1]:0");
    let second = RawSubscriber::start_on("[::1]:0");
    support::subscribe(broker.addr, "six", first.port);
    support::subscribe(broker.addr, "six", second.port);

    let client = Client::builder(broker.addr.to_string())
        .listen_port(0)
        .build()
        .unwrap();
    let rx = support::subscribe_channel(&client, "six");
    client.publish("six", "over v6").unwrap();

    assert_eq!(first.recv_data(1), ["over v6"]);
    assert_eq!(second.recv_data(1), ["over v6"]);
    assert_eq!(rx.recv_timeout(WAIT).unwrap().data, "over v6");
    first.assert_no_msg(std::time::Duration::from_millis(300)); // once each
}
