//! Packaging: the Dockerfile and Kraftfile say what the container image and
//! the unikernel need, the Dockerfile builds what CI builds, and the static
//! binary (when `STATIC_BROKER` names it, as `.ci/run` does) is a
//! position-independent executable without an interpreter that serves from
//! an empty root.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use support::{RawSubscriber, WAIT, publish, subscribe};

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Lines that are not comments, continuation lines joined.
fn instructions(dockerfile: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The static build command: the Dockerfile's `RUN ... cargo build ...`.
fn build_command(dockerfile: &str) -> String {
    instructions(dockerfile)
        .into_iter()
        .find_map(|l| {
            l.strip_prefix("RUN ")
                .filter(|c| c.contains("cargo build"))
                .map(str::to_owned)
        })
        .expect("a RUN cargo build line")
}

#[test]
fn dockerfile_is_multi_stage_from_scratch_with_only_the_binary() {
    let dockerfile = read("Dockerfile");
    let lines = instructions(&dockerfile);
    let from: Vec<&String> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(from.len(), 2, "a build stage and a final stage: {from:?}");
    assert!(from[0].contains(" AS build"), "{}", from[0]);
    assert_eq!(from[1], "FROM scratch");
    let final_stage: Vec<&String> = lines.iter().skip_while(|l| *l != "FROM scratch").collect();
    let copies: Vec<&&String> = final_stage
        .iter()
        .filter(|l| l.starts_with("COPY "))
        .collect();
    assert_eq!(
        copies.len(),
        2,
        "the image holds the binary and an empty data directory: {copies:?}"
    );
    assert!(copies[0].ends_with("/x86_64-unknown-linux-gnu/release/broker /broker"));
    // Owned by the broker's user, so that a named volume there is writable.
    assert_eq!(
        *copies[1],
        "COPY --from=build --chown=65532:65532 /data /data"
    );
    for wanted in [
        "VOLUME /data",
        "USER 65532:65532",
        "EXPOSE 9999",
        r#"ENTRYPOINT ["/broker"]"#,
        r#"CMD ["-p", "9999"]"#,
    ] {
        assert!(
            final_stage.iter().any(|l| *l == wanted),
            "missing {wanted:?}"
        );
    }
    let health = final_stage
        .iter()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK");
    // Exec form, no shell: the image has none.
    assert!(
        health.contains(r#"CMD ["/broker", "healthcheck""#),
        "{health}"
    );
    assert!(
        !final_stage.iter().any(|l| l.starts_with("RUN ")),
        "no RUN in scratch"
    );
}

#[test]
fn dockerfile_builds_what_ci_builds() {
    let command = build_command(&read("Dockerfile"));
    assert_eq!(
        command,
        r#"RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target x86_64-unknown-linux-gnu --bin broker"#
    );
    assert!(
        read(".ci/run").lines().any(|l| l.trim() == command),
        ".ci/run must run the Dockerfile's build command verbatim: {command}"
    );
}

/// The top-level `key: value` pairs of a Kraftfile.
fn kraftfile_keys(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with(' ') && l.contains(':'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn key<'a>(keys: &[(&str, &'a str)], name: &str) -> &'a str {
    keys.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {name} in {keys:?}"))
}

/// The value of `flag` in a Kraftfile's `cmd`.
fn cmd_value(cmd: &str, flag: &str) -> usize {
    let quoted = format!("\"{flag}\", \"");
    let at = cmd
        .find(&quoted)
        .unwrap_or_else(|| panic!("cmd lacks {flag}"))
        + quoted.len();
    cmd[at..].split('"').next().unwrap().parse().unwrap()
}

fn targets(text: &str) -> Vec<&str> {
    text.lines()
        .skip_while(|l| !l.starts_with("targets:"))
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .collect()
}

/// Threads the broker runs with these limits: one accepts, one is the
/// deadline watchdog (Unikraft's lwIP has no socket timeouts), and each
/// connection and each subscriber endpoint has one.
fn threads(cmd: &str) -> usize {
    2 + cmd_value(cmd, "--max-connections") + cmd_value(cmd, "--max-subscribers")
}

#[test]
fn kraftfile_base_runs_the_dockerfile_rootfs_on_the_prebuilt_runtime() {
    let text = read("Kraftfile.base");
    let keys = kraftfile_keys(&text);
    assert_eq!(key(&keys, "spec"), "v0.6");
    assert_eq!(key(&keys, "runtime"), "base:latest");
    assert_eq!(key(&keys, "rootfs"), "./Dockerfile");
    let cmd = key(&keys, "cmd");
    assert!(cmd.starts_with(r#"["/broker", "-p", "9999""#), "{cmd}");
    // Inside the runtime's 30 threads, with room to spare.
    assert!(threads(cmd) <= 28, "{cmd}");
    assert!(targets(&text).contains(&"qemu/x86_64"));
}

/// The `# limit` Kconfig lines of the Kraftfile, as `NAME=VALUE`.
fn kraftfile_limits(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_suffix("# limit"))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| format!("{}={}", k.trim(), v.trim().trim_matches('\'')))
        .collect()
}

#[test]
fn kraftfile_builds_the_elfloader_with_raised_limits_around_the_dockerfile_rootfs() {
    let text = read("Kraftfile");
    let keys = kraftfile_keys(&text);
    assert_eq!(key(&keys, "spec"), "v0.6");
    assert_eq!(key(&keys, "rootfs"), "./Dockerfile");
    assert!(
        text.contains("app-elfloader.git"),
        "the ELF loader template"
    );
    let limits = kraftfile_limits(&text);
    let value = |name: &str| -> usize {
        let prefix = format!("{name}=");
        limits
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name} limit in {limits:?}"))
            .parse()
            .unwrap()
    };
    let cmd = key(&keys, "cmd");
    assert!(cmd.starts_with(r#"["/broker", "-p", "9999""#), "{cmd}");
    // The PID table holds every thread (one entry is the kernel's).
    assert!(
        threads(cmd) < value("CONFIG_LIBPOSIX_PROCESS_MAX_PID"),
        "{cmd}"
    );
    // A connection holds two descriptors (its socket and the handle that
    // closes it), a subscriber endpoint two (reader and writer); lwIP's
    // connections must fit in the descriptor table, or lwIP does not build.
    let fds = 2 * (cmd_value(cmd, "--max-connections") + cmd_value(cmd, "--max-subscribers"));
    assert!(fds < value("CONFIG_LIBNOLIBC_FD_SETSIZE"), "{cmd}");
    assert!(value("CONFIG_LWIP_NUM_TCPCON") <= value("CONFIG_LIBNOLIBC_FD_SETSIZE"));
    assert!(
        cmd_value(cmd, "--max-connections") + cmd_value(cmd, "--max-subscribers")
            <= value("CONFIG_LWIP_NUM_TCPCON")
    );
    assert!(targets(&text).contains(&"qemu/x86_64"));
}

#[test]
fn the_boot_test_builds_its_kernel_with_the_kraftfiles_limits() {
    let ours = kraftfile_limits(&read("Kraftfile"));
    assert_eq!(ours.len(), 3, "{ours:?}");
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/unikernel-boot.sh"))
        .arg("--print-kconfig")
        .output()
        .expect("run scripts/unikernel-boot.sh --print-kconfig");
    assert!(out.status.success(), "{out:?}");
    let theirs: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(theirs, ours);
}

/// `STATIC_BROKER`, or `None` (with a note) when the static build was not
/// made; `.ci/run` makes it and sets the variable, so CI always checks.
fn static_broker() -> Option<PathBuf> {
    match std::env::var_os("STATIC_BROKER") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            eprintln!("STATIC_BROKER not set: build the static binary (see README) to check it");
            None
        }
    }
}

/// ELF type and whether there is a PT_INTERP program header, read with std.
fn elf_type_and_interp(bytes: &[u8]) -> (u16, bool) {
    assert_eq!(&bytes[..4], b"\x7fELF", "an ELF file");
    assert_eq!(bytes[4], 2, "64-bit");
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let e_type = u16_at(16);
    let (phoff, phentsize, phnum) = (
        u64_at(32) as usize,
        u16_at(54) as usize,
        u16_at(56) as usize,
    );
    let interp = (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) == 3 // PT_INTERP
    });
    (e_type, interp)
}

#[test]
fn static_binary_is_pie_without_interpreter() {
    let Some(path) = static_broker() else { return };
    let bytes = std::fs::read(&path).unwrap();
    let (e_type, interp) = elf_type_and_interp(&bytes);
    assert_eq!(
        e_type, 3,
        "ET_DYN: position-independent (the ELF loader refuses ET_EXEC)"
    );
    assert!(!interp, "no PT_INTERP: static, no dynamic loader");
    eprintln!("static broker: {} bytes", bytes.len());
}

#[test]
fn static_binary_serves_from_an_empty_chroot() {
    let Some(path) = static_broker() else { return };
    let root = std::env::temp_dir().join(format!("broker-chroot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(&path, root.join("broker")).unwrap();
    // Nothing else in the root: no /etc, /proc, /sys, /dev, no libraries.
    let mut child = Command::new("chroot")
        .arg(&root)
        .args(["/broker", "--bind", "127.0.0.1", "-p", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run chroot (needs root)");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready = rx.recv_timeout(WAIT);
    let addr = ready
        .as_deref()
        .ok()
        .and_then(|l| l.split("listening on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok());
    let Some(addr) = addr else {
        let _ = child.kill();
        panic!("the chrooted broker did not start: {ready:?}");
    };
    let sub = RawSubscriber::start();
    subscribe(addr, "t", sub.addr().port());
    publish(addr, "t", "from an empty root");
    assert_eq!(sub.recv_data(1), ["from an empty root"]);
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(&root).unwrap();
}
