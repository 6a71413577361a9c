//! The broker, embedded: the equivalent of the Go `go run examples/server/server.go`.
//!
//! ```sh
//! cargo run --example server            # port 9999
//! cargo run --example server -- 10001   # another port
//! ```

use message_broker::broker::{Broker, Config};

fn main() -> std::io::Result<()> {
    let port = match std::env::args().nth(1) {
        Some(p) => p
            .parse()
            .map_err(|_| std::io::Error::other(format!("not a port: {p}")))?,
        None => message_broker::broker::DEFAULT_PORT,
    };
    let broker = Broker::bind(Config {
        port,
        ..Config::default()
    })?;
    broker.run()
}
