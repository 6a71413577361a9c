//! The `broker` command line, run as a user would.

use assert_cmd::Command;

fn broker() -> Command {
    let mut cmd = Command::cargo_bin("broker").unwrap();
    cmd.timeout(std::time::Duration::from_secs(10));
    cmd
}

#[test]
fn help_lists_every_flag_with_its_default() {
    let out = broker()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for needle in [
        "Usage: broker",
        "-p, --port",
        "9999",
        "--bind",
        "0.0.0.0",
        "--max-payload",
        "--max-connections",
        "--liveness-timeout",
        "--version",
    ] {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
    broker().arg("-h").assert().success();
}

#[test]
fn version() {
    let out = broker()
        .arg("--version")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("broker {}\n", env!("CARGO_PKG_VERSION"))
    );
    broker().arg("-V").assert().success();
}

#[test]
fn bad_flags_exit_2_and_say_what_is_wrong() {
    for (args, says) in [
        (&["--frobnicate"][..], "unknown option '--frobnicate'"),
        (&["-p"], "'-p' needs a value"),
        (&["-p", "99999"], "invalid value '99999' for '-p'"),
        (&["--bind", "not-an-ip"], "not an IP address"),
    ] {
        let out = broker()
            .args(args)
            .assert()
            .code(2)
            .get_output()
            .stderr
            .clone();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(says), "{args:?}: {text}");
        assert!(
            text.contains("--help"),
            "{args:?}: points at --help: {text}"
        );
    }
}

#[test]
fn port_in_use_exits_1_with_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = broker()
        .args(["--bind", "127.0.0.1", "-p", &port])
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{text}"
    );
}
