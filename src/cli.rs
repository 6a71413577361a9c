//! The `broker` command line: flags and `BROKER_*` environment variables to
//! a [`Config`], or to a help, version or health-check request. Pure: it
//! reads the arguments and the variable lookup it is given, nothing else.
//!
//! Every option is one row of [`OPTIONS`]; the help text is made from it.

use crate::broker::Config;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// What the command line asks for.
#[derive(Debug, Clone)]
pub enum Command {
    /// Run the broker with this configuration.
    Run(Config),
    /// Ask the broker at this configuration's address for `GET /healthz`
    /// (`broker healthcheck [-p PORT] [-b ADDR]`): exit 0 if healthy, else 1.
    Healthcheck(Config),
    /// Print [`help`].
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

/// One option: its flags, its environment variable, and how it sets a
/// [`Config`] field.
pub struct Opt {
    /// One-letter flag, if any (`p` for `-p`).
    pub short: Option<&'static str>,
    /// Long flag without dashes (`port`).
    pub long: &'static str,
    /// The environment variable (`BROKER_PORT`).
    pub env: &'static str,
    /// What the value is, for the help text.
    pub value: &'static str,
    /// The default, as shown in the help text.
    pub default: &'static str,
    /// One line of help.
    pub help: &'static str,
    set: fn(&mut Config, &str) -> Result<(), String>,
}

/// Every option, in the order `--help` lists them.
#[rustfmt::skip]
pub const OPTIONS: &[Opt] = &[
    Opt { short: Some("p"), long: "port", env: "BROKER_PORT", value: "PORT", default: "9999",
        help: "TCP port to listen on; 0 takes a free one",
        set: |c, v| { c.port = number(v)?; Ok(()) } },
    Opt { short: Some("b"), long: "bind", env: "BROKER_BIND", value: "ADDR", default: "0.0.0.0",
        help: "IP address to listen on (numeric); :: for IPv6",
        set: |c, v| { c.bind = ip(v)?; Ok(()) } },
    Opt { short: None, long: "max-connections", env: "BROKER_MAX_CONNECTIONS", value: "N", default: "1024",
        help: "connections at once (a thread each); when full, the longest-idle one is closed, else 503",
        set: |c, v| { c.max_connections = positive(v)?; Ok(()) } },
    Opt { short: None, long: "max-subscribers", env: "BROKER_MAX_SUBSCRIBERS", value: "N", default: "1024",
        help: "subscriber endpoints at once (a delivery thread each); more get 503",
        set: |c, v| { c.max_subscribers = positive(v)?; Ok(()) } },
    Opt { short: None, long: "max-streams", env: "BROKER_MAX_STREAMS", value: "N", default: "half of --max-connections",
        help: "streaming subscriptions (GET /sub/PATTERN) at once, each holding a connection; more get 503",
        set: |c, v| { c.max_streams = Some(positive(v)?); Ok(()) } },
    Opt { short: None, long: "max-payload", env: "BROKER_MAX_PAYLOAD", value: "BYTES", default: "1048576",
        help: "largest request body, also when chunked; more gets 413 and a close",
        set: |c, v| { c.limits.max_body = number(v)?; Ok(()) } },
    Opt { short: None, long: "max-request-line", env: "BROKER_MAX_REQUEST_LINE", value: "BYTES", default: "8192",
        help: "longest request line; more gets 414 and a close",
        set: |c, v| { c.limits.max_request_line = positive(v)?; Ok(()) } },
    Opt { short: None, long: "max-header-bytes", env: "BROKER_MAX_HEADER_BYTES", value: "BYTES", default: "16384",
        help: "largest header section; more gets 431 and a close",
        set: |c, v| { c.limits.max_header_bytes = positive(v)?; Ok(()) } },
    Opt { short: None, long: "max-headers", env: "BROKER_MAX_HEADERS", value: "N", default: "100",
        help: "most header fields in a request; more gets 431 and a close",
        set: |c, v| { c.limits.max_headers = positive(v)?; Ok(()) } },
    Opt { short: None, long: "request-timeout", env: "BROKER_REQUEST_TIMEOUT", value: "DURATION", default: "10s",
        help: "time to receive a whole request after its first byte; then 408 and a close",
        set: |c, v| { c.request_timeout = nonzero(duration(v, 1000)?)?; Ok(()) } },
    Opt { short: None, long: "idle-timeout", env: "BROKER_IDLE_TIMEOUT", value: "DURATION", default: "60s",
        help: "close a keep-alive connection idle this long",
        set: |c, v| { c.idle_timeout = nonzero(duration(v, 1000)?)?; Ok(()) } },
    Opt { short: None, long: "queue-messages", env: "BROKER_QUEUE_MESSAGES", value: "N", default: "1024",
        help: "messages queued per subscriber; past it the oldest is dropped",
        set: |c, v| { c.queue_capacity = positive(v)?; Ok(()) } },
    Opt { short: None, long: "queue-bytes", env: "BROKER_QUEUE_BYTES", value: "BYTES", default: "8388608",
        help: "bytes queued per subscriber; past it the oldest is dropped",
        set: |c, v| { c.queue_bytes = number(v)?; Ok(()) } },
    Opt { short: None, long: "enqueue-wait", env: "BROKER_ENQUEUE_WAIT", value: "MS", default: "50",
        help: "how long a publish waits for room in a full queue before dropping the oldest",
        set: |c, v| { c.enqueue_wait = duration(v, 1)?; Ok(()) } },
    Opt { short: None, long: "delivery-timeout", env: "BROKER_DELIVERY_TIMEOUT", value: "DURATION", default: "5s",
        help: "one delivery (connect, write, answer); past it the subscriber is dropped",
        set: |c, v| { c.delivery_timeout = nonzero(duration(v, 1000)?)?; Ok(()) } },
    Opt { short: None, long: "liveness-timeout", env: "BROKER_LIVENESS_TIMEOUT", value: "SECS", default: "10",
        help: "drop a subscriber with no delivery and no heartbeat this long; 0 never does",
        set: |c, v| {
            let d = duration(v, 1000)?;
            c.liveness_timeout = (!d.is_zero()).then_some(d);
            Ok(())
        } },
    Opt { short: None, long: "drain-timeout", env: "BROKER_DRAIN_TIMEOUT", value: "DURATION", default: "5s",
        help: "on SIGTERM/SIGINT, how long subscriber queues get to drain",
        set: |c, v| { c.drain_timeout = duration(v, 1000)?; Ok(()) } },
    Opt { short: None, long: "token", env: "BROKER_TOKEN", value: "TOKEN", default: "none",
        help: "every request but /healthz and /metrics needs `Authorization: Bearer TOKEN` (GET also ?token=TOKEN), else 401",
        set: |c, v| {
            if v.is_empty() || v.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                return Err("a token is non-empty, without spaces or control characters".into());
            }
            c.token = Some(v.to_owned());
            Ok(())
        } },
    Opt { short: None, long: "data-dir", env: "BROKER_DATA_DIR", value: "DIR", default: "none",
        help: "keep qos 1 and retained messages and durable sessions in a log in DIR (created if missing); none: in memory",
        set: |c, v| {
            if v.is_empty() {
                return Err("a directory name is needed".into());
            }
            c.data_dir = Some(v.into());
            Ok(())
        } },
    Opt { short: None, long: "fsync", env: "BROKER_FSYNC", value: "MODE", default: "batch",
        help: "always (a sync per message), batch (one per group of messages) or never (a machine crash loses the last moments)",
        set: |c, v| { c.fsync = crate::broker::Fsync::parse(v).ok_or("use always, batch or never")?; Ok(()) } },
    Opt { short: None, long: "session-expiry", env: "BROKER_SESSION_EXPIRY", value: "DURATION", default: "1h",
        help: "drop a qos 1 subscriber (and what it is owed) unreachable after no sign of life this long",
        set: |c, v| { c.session_expiry = nonzero(duration(v, 1000)?)?; Ok(()) } },
    Opt { short: None, long: "backlog-bytes", env: "BROKER_BACKLOG_BYTES", value: "BYTES", default: "67108864",
        help: "drop a qos 1 subscriber owed more than this",
        set: |c, v| { c.backlog_bytes = positive(v)?; Ok(()) } },
    Opt { short: None, long: "retention", env: "BROKER_RETENTION", value: "DURATION", default: "1h",
        help: "delete log segments no subscriber needs once older than this",
        set: |c, v| { c.retention = duration(v, 1000)?; Ok(()) } },
    Opt { short: None, long: "segment-bytes", env: "BROKER_SEGMENT_BYTES", value: "BYTES", default: "16777216",
        help: "begin a new log segment file past this size (at least 4096)",
        set: |c, v| {
            let n: u64 = number(v)?;
            if n < 4096 {
                return Err("at least 4096".into());
            }
            c.segment_bytes = n;
            Ok(())
        } },
    Opt { short: None, long: "dedupe-window", env: "BROKER_DEDUPE_WINDOW", value: "DURATION", default: "2m",
        help: "how long an Idempotency-Key is remembered",
        set: |c, v| { c.dedupe_window = duration(v, 1000)?; Ok(()) } },
    Opt { short: None, long: "stream-keepalive", env: "BROKER_STREAM_KEEPALIVE", value: "DURATION", default: "15s",
        help: "a quiet stream (GET /sub/PATTERN) gets a keep-alive comment this often",
        set: |c, v| { c.stream_keepalive = nonzero(duration(v, 1000)?)?; Ok(()) } },
    Opt { short: None, long: "nats", env: "BROKER_NATS", value: "URLS", default: "none",
        help: "share topics with other brokers through NATS: nats://[USER:PASS@|TOKEN@]HOST:PORT[,...], tried in turn",
        set: |c, v| {
            crate::nats::url::parse_servers(v).map_err(|e| e.to_string())?;
            c.nats = Some(v.to_owned());
            Ok(())
        } },
    Opt { short: None, long: "log-level", env: "BROKER_LOG_LEVEL", value: "LEVEL", default: "info",
        help: "error, warn, info or debug, to stderr; nothing per message below debug",
        set: |c, v| {
            c.log_level = crate::log::Level::parse(v).ok_or("use error, warn, info or debug")?;
            Ok(())
        } },
];

/// The `--help` text, made from [`OPTIONS`].
pub fn help() -> String {
    let mut text = String::from(
        "broker: a small publish/subscribe broker, wire-compatible with the Go Message-Broker

Usage: broker [OPTIONS]
       broker healthcheck [-p PORT] [-b ADDR]   exit 0 if the broker there answers
                                                GET /healthz with 200, else 1

Publishers send POST /pub/{topic} with {\"data\":\"...\"}; subscribers send
POST /sub/{topic} with {\"port\":\"N\"} and are called back on that port with
POST /msg. GET /healthz and GET /metrics (Prometheus) are for operators.
See README.md for the protocol.

Options (each also as its environment variable; a flag wins over it):
",
    );
    for opt in OPTIONS {
        let flags = match opt.short {
            Some(s) => format!("-{s}, --{} {}", opt.long, opt.value),
            None => format!("    --{} {}", opt.long, opt.value),
        };
        let (env, default) = (opt.env, opt.default);
        text.push_str(&format!(
            "  {flags:<32} [env: {env}] [default: {default}]\n          {}\n",
            opt.help
        ));
    }
    text.push_str(
        "  -h, --help
          print this help and exit
  -V, --version
          print the version and exit

DURATION is a number of seconds, or a number with ms, s or m (500ms, 2m).
The broker logs to stderr; it says `listening on ADDR` when it is ready.
SIGTERM or SIGINT stops it gracefully (a second one exits at once).
Exit status: 0 after a stop, 1 if it cannot listen or cannot open (or lock)
its data directory, 2 for a bad option.
qos 1 publishes and retained messages are answered once stored: synced to the
log with --data-dir (507 if that fails), held in memory without one.
Every deadline uses the kernel's socket timeouts; where the network stack has
none (Unikraft's lwIP) a watchdog thread enforces them, as it does always with
BROKER_SOCKET_TIMEOUTS=watchdog.
",
    );
    text
}

/// Parses the arguments after the program name, without environment
/// variables. See [`parse_with_env`].
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
    parse_with_env(args, |_| None)
}

/// Parses the arguments after the program name over the `BROKER_*`
/// variables that `env` returns. Flags take their value as the next argument
/// or after `=` (`-p 9999`, `--port=9999`), and, as Go's flag package
/// allows, with one dash or two. A flag wins over its variable.
///
/// # Errors
/// An unknown flag, a missing value or a value (of a flag or a variable)
/// that does not parse.
///
/// # Examples
/// ```
/// use message_broker::cli::{parse_with_env, Command};
/// let env = |name: &str| (name == "BROKER_PORT").then(|| "7000".to_string());
/// let Command::Run(config) = parse_with_env(&[] as &[&str], env).unwrap() else { panic!() };
/// assert_eq!(config.port, 7000);
/// let Command::Run(config) = parse_with_env(&["-p", "7001"], env).unwrap() else { panic!() };
/// assert_eq!(config.port, 7001);
/// ```
pub fn parse_with_env<S: AsRef<str>>(
    args: &[S],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, CliError> {
    let mut config = Config::default();
    for opt in OPTIONS {
        if let Some(value) = env(opt.env) {
            (opt.set)(&mut config, &value).map_err(|why| {
                CliError(format!(
                    "invalid value {} for {}: {why}",
                    shown(opt, &value),
                    opt.env
                ))
            })?;
        }
    }
    let mut args = args.iter().map(AsRef::as_ref).peekable();
    let healthcheck = args.next_if_eq(&"healthcheck").is_some();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if arg.starts_with('-') => (flag, Some(value)),
            _ => (arg, None),
        };
        let name = flag.trim_start_matches('-');
        if !flag.starts_with('-') || name.is_empty() || flag.len() - name.len() > 2 {
            return Err(CliError(format!("unexpected argument '{arg}'")));
        }
        match name {
            "h" | "help" => return Ok(Command::Help),
            "V" | "version" => return Ok(Command::Version),
            _ => {}
        }
        let opt = OPTIONS
            .iter()
            .find(|o| o.long == name || o.short == Some(name))
            .ok_or_else(|| CliError(format!("unknown option '{flag}'")))?;
        let value = inline
            .or_else(|| args.next())
            .ok_or_else(|| CliError(format!("'{flag}' needs a value ({})", opt.value)))?;
        (opt.set)(&mut config, value).map_err(|why| {
            CliError(format!(
                "invalid value {} for '{flag}': {why}",
                shown(opt, value)
            ))
        })?;
    }
    Ok(if healthcheck {
        Command::Healthcheck(config)
    } else {
        Command::Run(config)
    })
}

/// A value as an error message may show it: quoted, but not at all for an
/// option that may hold a secret (a token, a NATS URL's password).
fn shown(opt: &Opt, value: &str) -> String {
    if matches!(opt.long, "token" | "nats") {
        "(not shown: it may hold a secret)".to_owned()
    } else {
        format!("'{value}'")
    }
}

fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| "not a number in range".to_owned())
}

fn positive(value: &str) -> Result<usize, String> {
    match number(value)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// `value` as a duration: a plain number is in `unit_ms` milliseconds;
/// `ms`, `s`, `m` and `h` suffixes say their unit.
fn duration(value: &str, unit_ms: u64) -> Result<Duration, String> {
    let (digits, unit) = if let Some(d) = value.strip_suffix("ms") {
        (d, 1)
    } else if let Some(d) = value.strip_suffix('s') {
        (d, 1000)
    } else if let Some(d) = value.strip_suffix('m') {
        (d, 60_000)
    } else if let Some(d) = value.strip_suffix('h') {
        (d, 3_600_000)
    } else {
        (value, unit_ms)
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| "not a duration (like 10, 500ms, 2s, 1m or 1h)".to_owned())?;
    n.checked_mul(unit)
        .map(Duration::from_millis)
        .ok_or_else(|| "too long".to_owned())
}

fn nonzero(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        Err("must be more than 0".into())
    } else {
        Ok(d)
    }
}

fn ip(value: &str) -> Result<IpAddr, String> {
    // Numeric only: the broker never does a name lookup.
    let trimmed = value.trim_start_matches('[').trim_end_matches(']');
    trimmed
        .parse()
        .map_err(|_| "not an IP address (names are not looked up)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::{Command, OPTIONS, help, parse, parse_with_env};
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
        assert_eq!(run(&["--max-headers", "5"]).limits.max_headers, 5);
        assert_eq!(run(&["--liveness-timeout", "0"]).liveness_timeout, None);
        assert_eq!(
            run(&["--liveness-timeout", "1500ms"]).liveness_timeout,
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            run(&["--enqueue-wait", "7"]).enqueue_wait,
            Duration::from_millis(7)
        );
        assert_eq!(
            run(&["--request-timeout", "2"]).request_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(
            run(&["--idle-timeout", "1m"]).idle_timeout,
            Duration::from_secs(60)
        );
        assert_eq!(run(&["--drain-timeout", "0"]).drain_timeout, Duration::ZERO);
        assert_eq!(run(&["--token", "abc"]).token.as_deref(), Some("abc"));
        assert_eq!(
            run(&["--log-level", "debug"]).log_level,
            crate::log::Level::Debug
        );
        assert!(matches!(parse(&["-h"]), Ok(Command::Help)));
        assert!(matches!(parse(&["--version"]), Ok(Command::Version)));
        let Ok(Command::Healthcheck(c)) = parse(&["healthcheck", "-p", "5"]) else {
            panic!("healthcheck")
        };
        assert_eq!(c.port, 5);
    }

    #[test]
    fn every_option_has_a_working_variable_and_the_flag_wins() {
        for opt in OPTIONS {
            assert_eq!(
                opt.env,
                format!("BROKER_{}", opt.long.to_uppercase().replace('-', "_"))
            );
            let value = match opt.long {
                "bind" => "127.0.0.2",
                "log-level" => "warn",
                "token" => "t",
                "fsync" => "never",
                "segment-bytes" => "5000",
                "nats" => "nats://127.0.0.1:4222",
                _ => "3",
            };
            let env = |name: &str| (name == opt.env).then(|| value.to_string());
            let from_env = format!("{:?}", parse_with_env(&[] as &[&str], env).unwrap());
            let from_flag = format!("{:?}", parse(&[format!("--{}={value}", opt.long)]).unwrap());
            assert_eq!(from_env, from_flag, "{}", opt.env);
            assert_ne!(
                from_env,
                format!("{:?}", parse(&[] as &[&str]).unwrap()),
                "{}",
                opt.env
            );
            assert!(help().contains(opt.env) && help().contains(&format!("--{}", opt.long)));
        }
        let env = |name: &str| (name == "BROKER_PORT").then(|| "x".to_string());
        let err = parse_with_env(&[] as &[&str], env).unwrap_err().to_string();
        assert!(err.contains("BROKER_PORT"), "{err}");
        // A secret is never echoed, from a flag or a variable.
        for bad in ["nats://alice:s3cret@127.0.0.1:99999", "tls://s3cret@h:4222"] {
            let err = parse(&["--nats", bad]).unwrap_err().to_string();
            assert!(!err.contains("s3cret") && err.contains("--nats"), "{err}");
            let env = |name: &str| (name == "BROKER_NATS").then(|| bad.to_string());
            let err = parse_with_env(&[] as &[&str], env).unwrap_err().to_string();
            assert!(
                !err.contains("s3cret") && err.contains("BROKER_NATS"),
                "{err}"
            );
        }
        let err = parse(&["--token", "s3cret and space"])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
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
            &["--request-timeout", "0"],
            &["--max-connections", "0"],
            &["--idle-timeout", "5y"],
            &["--fsync", "sometimes"],
            &["--segment-bytes", "4095"],
            &["--data-dir", ""],
            &["--nats", "tls://127.0.0.1:4222"],
            &["--nats", "nats://127.0.0.1:x"],
            &["--session-expiry", "0"],
            &["--backlog-bytes", "0"],
            &["--token", ""],
            &["--token", "a b"],
            &["-p", "1", "healthcheck"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
