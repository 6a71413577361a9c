//! A Go peer, built as the Go original's client package is (Go's net/http
//! client and server), against our broker: publish, subscribe, delivery to a
//! Go HTTP server, heartbeat. Needs the `go` tool; `.ci/run` installs it and
//! sets `REQUIRE_GO=1`, so in CI a missing `go` fails instead of skipping.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::BrokerProcess;

fn go_available() -> bool {
    Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn go_net_http_client_and_server_against_our_broker() {
    if !go_available() {
        assert!(
            std::env::var_os("REQUIRE_GO").is_none(),
            "REQUIRE_GO is set but `go` is not installed"
        );
        eprintln!("skipped: no `go` tool (install golang-go, or run .ci/run)");
        return;
    }
    let broker = BrokerProcess::start(&[]);
    let program = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/go/interop.go");
    let cache = std::env::temp_dir().join("message-broker-go-cache");
    // Output goes to files: a pipe read only after exit could fill and stall.
    let out_path = std::env::temp_dir().join(format!("go-interop-{}.out", std::process::id()));
    let out_file = std::fs::File::create(&out_path).unwrap();
    let started = Instant::now();
    let mut child = Command::new("go")
        .args(["run", program, "-a", &broker.addr.to_string(), "-m", "2000"])
        .env("GOCACHE", &cache)
        .env("GO111MODULE", "off")
        .stdout(out_file.try_clone().unwrap())
        .stderr(out_file)
        .spawn()
        .expect("start go");
    // Compiling plus the run: bounded, then killed.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!("the Go peer did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let ok = output.lines().any(|l| l.starts_with("ok "));
    assert!(status.success() && ok, "Go peer failed:\n{output}");
    eprintln!("Go peer: {}", output.trim());
}
