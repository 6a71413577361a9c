//! The `broker` command: parses flags, binds, serves. See `broker --help`.

use message_broker::broker::Broker;
use message_broker::cli::{self, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match cli::parse(&args) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("broker {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("broker: {e}\nTry 'broker --help' for more information.");
            return ExitCode::from(2);
        }
    };
    let (bind, port) = (config.bind, config.port);
    let broker = match Broker::bind(config) {
        Ok(broker) => broker,
        Err(e) => {
            eprintln!(
                "broker: cannot listen on {}: {e}",
                std::net::SocketAddr::new(bind, port)
            );
            return ExitCode::FAILURE;
        }
    };
    match broker.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker: {e}");
            ExitCode::FAILURE
        }
    }
}
