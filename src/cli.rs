//! The `broker` command line: flags to a [`Config`], or to a help or version
//! request. Pure: it reads the arguments it is given, nothing else.

use crate::broker::{Config, DEFAULT_PORT};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// The `--help` text.
pub const HELP: &str = "\
broker: a small publish/subscribe broker, wire-compatible with the Go Message-Broker

Usage: broker [OPTIONS]

Publishers send POST /pub/{topic} with {\"data\":\"...\"}; subscribers send
POST /sub/{topic} with {\"port\":\"N\"} and are called back on that port with
POST /msg. See README.md for the protocol.

Options:
  -p, --port PORT              TCP port to listen on; 0 takes a free one [default: 9999]
  -b, --bind ADDR              IP address to listen on; :: for IPv6 [default: 0.0.0.0]
      --max-payload BYTES      largest request body accepted, else 413 [default: 1048576]
      --max-connections N      connections served at once; more get 503 [default: 1024]
      --enqueue-wait MS        how long a publish waits for room in a full subscriber
                               queue before dropping its oldest message [default: 50]
      --log-level LEVEL        error, warn, info or debug, to stderr [default: info]
      --liveness-timeout SECS  drop a subscriber with no delivery and no heartbeat
                               for this long; 0 never drops one [default: 10]
  -h, --help                   print this help and exit
  -V, --version                print the version and exit

The broker logs to stderr; it says `listening on ADDR` when it is ready.
";

/// What the command line asks for.
#[derive(Debug, Clone)]
pub enum Command {
    /// Run the broker with this configuration.
    Run(Config),
    /// Print [`HELP`].
    Help,
    /// Print the version.
    Version,
}

/// A command-line mistake; the binary prints it and exits with status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

/// Parses the arguments after the program name. Flags take their value as
/// the next argument or after `=` (`-p 9999`, `--port=9999`), and, as Go's
/// flag package allows, with one dash or two.
///
/// # Errors
/// An unknown flag, a missing value or a value that does not parse.
///
/// # Examples
/// ```
/// use message_broker::cli::{parse, Command};
/// let Command::Run(config) = parse(&["-p", "10001"]).unwrap() else { panic!() };
/// assert_eq!(config.port, 10001);
/// assert!(parse(&["--nope"]).is_err());
/// ```
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Command, CliError> {
    let mut config = Config {
        port: DEFAULT_PORT,
        ..Config::default()
    };
    let mut args = args.iter().map(AsRef::as_ref);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if arg.starts_with('-') => (flag, Some(value)),
            _ => (arg, None),
        };
        let name = flag.trim_start_matches('-');
        if !flag.starts_with('-') || name.is_empty() || flag.len() - name.len() > 2 {
            return Err(CliError(format!("unexpected argument '{arg}'")));
        }
        let mut value = |what: &str| -> Result<&str, CliError> {
            inline
                .or_else(|| args.next())
                .ok_or_else(|| CliError(format!("'{flag}' needs a value ({what})")))
        };
        match name {
            "h" | "help" => return Ok(Command::Help),
            "V" | "version" => return Ok(Command::Version),
            "p" | "port" => config.port = number(flag, value("a port, 0-65535")?)?,
            "b" | "bind" => config.bind = ip(flag, value("an IP address")?)?,
            "max-payload" => config.limits.max_body = number(flag, value("a size in bytes")?)?,
            "max-connections" => config.max_connections = number(flag, value("a count")?)?,
            "enqueue-wait" => {
                config.enqueue_wait = Duration::from_millis(number(flag, value("milliseconds")?)?)
            }
            "log-level" => {
                let v = value("error, warn, info or debug")?;
                config.log_level = crate::log::Level::parse(v).ok_or_else(|| {
                    CliError(format!(
                        "invalid value '{v}' for '{flag}': use error, warn, info or debug"
                    ))
                })?;
            }
            "liveness-timeout" => {
                let secs: u64 = number(flag, value("seconds")?)?;
                config.liveness_timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            _ => return Err(CliError(format!("unknown option '{flag}'"))),
        }
    }
    Ok(Command::Run(config))
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, CliError> {
    value
        .parse()
        .map_err(|_| CliError(format!("invalid value '{value}' for '{flag}'")))
}

fn ip(flag: &str, value: &str) -> Result<IpAddr, CliError> {
    // Numeric only: the broker never does a name lookup.
    let trimmed = value.trim_start_matches('[').trim_end_matches(']');
    trimmed.parse().map_err(|_| {
        CliError(format!(
            "invalid value '{value}' for '{flag}': not an IP address"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::{Command, parse};
    use std::time::Duration;

    fn run(args: &[&str]) -> crate::broker::Config {
        match parse(args) {
            Ok(Command::Run(config)) => config,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn flags() {
        assert_eq!(run(&[]).port, 9999);
        assert_eq!(run(&["-p", "1"]).port, 1);
        assert_eq!(run(&["--port=2"]).port, 2);
        assert_eq!(run(&["-port", "3"]).port, 3);
        assert_eq!(run(&["-b", "::1"]).bind.to_string(), "::1");
        assert_eq!(run(&["--bind=[::]"]).bind.to_string(), "::");
        assert_eq!(run(&["--max-payload", "10"]).limits.max_body, 10);
        assert_eq!(run(&["--liveness-timeout", "0"]).liveness_timeout, None);
        assert_eq!(
            run(&["--enqueue-wait", "7"]).enqueue_wait,
            Duration::from_millis(7)
        );
        assert_eq!(
            run(&["--log-level", "debug"]).log_level,
            crate::log::Level::Debug
        );
        assert!(matches!(parse(&["-h"]), Ok(Command::Help)));
        assert!(matches!(parse(&["--version"]), Ok(Command::Version)));
    }

    #[test]
    fn mistakes() {
        for args in [
            &["-p"][..],
            &["-p", "65536"],
            &["-p", "x"],
            &["--bind", "localhost"],
            &["--nope"],
            &["stray"],
            &["---p", "1"],
            &["-"],
            &["--log-level", "loud"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
