//! Subscribe to `hello/world`, publish to it, print what arrives.
//!
//! ```sh
//! cargo run --release --bin broker &            # a broker on 9999
//! cargo run --example client                    # or: -- 127.0.0.1:9999
//! ```

use message_broker::client::{Client, Message};
use std::sync::mpsc;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9999".into());
    // Port 0: any free port, so this runs beside other clients.
    let client = Client::builder(broker).listen_port(0).build()?;
    println!("listening for the broker on port {}", client.listen_port());

    let (tx, rx) = mpsc::channel();
    client.subscribe("hello/world", move |msg: Message| {
        println!("RECEIVED on {}: {}", msg.topic, msg.data);
        let _ = tx.send(());
    })?;
    for i in 0..10 {
        client.publish("hello/world", &format!("MyData {i}"))?;
    }
    for _ in 0..10 {
        rx.recv_timeout(Duration::from_secs(5))?;
    }
    Ok(())
}
