//! The `broker` command: parses flags and `BROKER_*` variables, binds,
//! serves until SIGTERM or SIGINT. See `broker --help`.

use message_broker::broker::{Broker, Config};
use message_broker::cli::{self, Command};
use message_broker::http::{self, Limits};
use std::io::{BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match cli::parse_with_env(&args, |name| std::env::var(name).ok()) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Healthcheck(config)) => return healthcheck(&config),
        Ok(Command::Help) => {
            print!("{}", cli::help());
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
    let addr = SocketAddr::new(config.bind, config.port);
    let broker = match Broker::bind(config) {
        Ok(broker) => broker,
        // The data directory's errors name it; the others are the listener's.
        Err(e) if e.to_string().contains("data directory") => {
            eprintln!("broker: cannot start: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("broker: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = broker.stop_on_signals() {
        eprintln!("broker: warning: cannot handle SIGTERM/SIGINT: {e}");
    }
    match broker.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `broker healthcheck`: `GET /healthz` on the broker's port (on loopback if
/// it listens on every interface); 0 for a 200, else 1 with the reason.
fn healthcheck(config: &Config) -> ExitCode {
    let ip = match config.bind {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(ip, config.port);
    match ask_health(addr) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("broker healthcheck: {addr} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("broker healthcheck: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ask_health(addr: SocketAddr) -> Result<u16, Box<dyn std::error::Error>> {
    const TIMEOUT: Duration = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let response = http::read_response(&mut BufReader::new(stream), &Limits::default())?;
    Ok(response.status)
}
