//! Go peers on Go's net/http, both ways round:
//! - a Go client built as the Go original's client package is, against our
//!   broker (`tests/go/interop.go`);
//! - our Rust client against a broker on Go's net/http (`tests/go/broker.go`).
//!
//! Needs the `go` tool; `.ci/run` installs it and sets `REQUIRE_GO=1`, so in
//! CI a missing `go` fails instead of skipping.

mod support;

use message_broker::client::Client;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use support::{BrokerProcess, WAIT};

/// Compiling plus running a Go program may take this long.
const GO_LIMIT: Duration = Duration::from_secs(180);

fn go_available() -> bool {
    if Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    assert!(
        std::env::var_os("REQUIRE_GO").is_none(),
        "REQUIRE_GO is set but `go` is not installed"
    );
    eprintln!("skipped: no `go` tool (install golang-go, or run .ci/run)");
    false
}

/// One of `tests/go/*.go`, built with `go build` and run as its own process
/// (not under `go run`, whose child would outlive a kill). Output goes to a
/// file: a pipe read only at the end could fill and stall the program.
/// Killed when dropped.
struct GoProgram {
    child: Child,
    output: PathBuf,
    binary: PathBuf,
}

impl GoProgram {
    fn start(file: &str, args: &[&str]) -> GoProgram {
        let source = format!("{}/tests/go/{file}", env!("CARGO_MANIFEST_DIR"));
        let stem = format!(
            "go-{file}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        );
        let stem: String = stem
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let binary = std::env::temp_dir().join(&stem);
        let output = std::env::temp_dir().join(format!("{stem}.out"));
        let built = Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg(&source)
            .env(
                "GOCACHE",
                std::env::temp_dir().join("message-broker-go-cache"),
            )
            .env("GO111MODULE", "off")
            .output()
            .expect("run go build");
        assert!(
            built.status.success(),
            "go build {file}: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        let out = File::create(&output).unwrap();
        let child = Command::new(&binary)
            .args(args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start the Go program");
        GoProgram {
            child,
            output,
            binary,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Waits for the program to exit; its status and output.
    fn wait(&mut self) -> (bool, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.success(), self.output());
            }
            assert!(
                started.elapsed() < GO_LIMIT,
                "Go program still running: {}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for GoProgram {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.output);
        let _ = std::fs::remove_file(&self.binary);
    }
}

#[test]
fn go_net_http_client_and_server_against_our_broker() {
    if !go_available() {
        return;
    }
    let broker = BrokerProcess::start(&[]);
    run_go_peer(&broker);
}

#[test]
fn a_go_callback_and_a_go_stream_get_the_same_messages() {
    if !go_available() {
        return;
    }
    let broker = BrokerProcess::start(&[]);
    let mut go = GoProgram::start("stream.go", &["-a", &broker.addr.to_string(), "-m", "500"]);
    let (ok, output) = go.wait();
    assert!(
        ok && output.lines().any(|l| l.starts_with("ok ")),
        "Go peers failed:\n{output}"
    );
}

/// Runs `tests/go/interop.go` against `broker`: it must say `ok`.
fn run_go_peer(broker: &BrokerProcess) {
    let mut go = GoProgram::start(
        "interop.go",
        &["-a", &broker.addr.to_string(), "-m", "2000"],
    );
    let (ok, output) = go.wait();
    assert!(
        ok && output.lines().any(|l| l.starts_with("ok ")),
        "Go peer failed:\n{output}"
    );
    eprintln!("Go peer: {}", output.trim());
}

/// A broker with a data directory changes nothing for a Go client, which
/// sends qos 0: it works as before, and none of its messages is stored.
#[test]
fn go_client_against_our_broker_with_a_data_directory() {
    if !go_available() {
        return;
    }
    let dir = support::durable::TempDir::new("go-data-dir");
    let broker = BrokerProcess::start(&["--data-dir", &dir.arg("data")]);
    run_go_peer(&broker);
    assert_eq!(
        support::metric(broker.addr, "broker_messages_stored_total"),
        0
    );
    assert!(support::metric(broker.addr, "broker_messages_delivered_total") >= 2000);
}

#[test]
fn our_client_against_a_go_net_http_broker() {
    if !go_available() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let go = GoProgram::start("broker.go", &["-p", &port.to_string()]);
    let ready = support::wait_until(GO_LIMIT, || {
        go.output().contains("listening on").then_some(())
    });
    assert!(ready.is_some(), "Go broker did not start: {}", go.output());

    let client = Client::builder(format!("127.0.0.1:{port}"))
        .listen_port(0)
        .heartbeat_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let rx = support::subscribe_channel(&client, "from/go");
    for i in 0..500 {
        client
            .publish("from/go", &format!("<{i}> & \"rust\""))
            .unwrap();
    }
    for i in 0..500 {
        let m = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("message {i} did not arrive"));
        assert_eq!(
            (m.topic.as_str(), m.data.as_str()),
            ("from/go", format!("<{i}> & \"rust\"").as_str())
        );
    }
}
