//! A std-only driver for headless Chromium over the DevTools protocol on a
//! pipe (`--remote-debugging-pipe`): launch, open a page, evaluate
//! JavaScript, wait for a condition, take a screenshot.
//!
//! Every read from the browser has a deadline (a reader thread feeds a
//! channel read with `recv_timeout`), and the browser's whole process group
//! is killed when the [`Browser`] is dropped, so a wedged browser fails a
//! test instead of hanging it. `--dump-dom` is no use here: it never returns
//! while a page holds an `EventSource`.
#![allow(dead_code)]

use message_broker::json::{parse_object, write_string};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// How long one protocol command may wait for its answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message read from the browser (a 1000x700 PNG in base64 is
/// well under a megabyte); a larger one ends the reading.
const MAX_MESSAGE: u64 = 64 << 20;
/// Chromium's flags besides the pipe and the profile directory.
const FLAGS: &str = "--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --no-first-run --no-default-browser-check --disable-extensions \
    --disable-background-networking --disable-component-update --disable-sync \
    --mute-audio --hide-scrollbars";
/// Runs before any script of each new document: collects uncaught errors
/// and unhandled rejections into `window.__pageErrors` (see [`Page::errors`]).
const ERROR_TRAP: &str = "window.__pageErrors = [];\
    addEventListener('error', e => __pageErrors.push(String(e.message)));\
    addEventListener('unhandledrejection', e => __pageErrors.push(String(e.reason)));";

/// A headless Chromium driven over fds 3 and 4. Dropping it kills its
/// process group and removes its profile directory, pass or fail.
pub struct Browser {
    child: Child,
    to_browser: ChildStdin,
    from_browser: Receiver<String>,
    next_id: u64,
    dir: PathBuf,
}

/// One tab of a [`Browser`], attached in flat mode (its commands carry a
/// `sessionId`).
pub struct Page<'a> {
    browser: &'a mut Browser,
    session: String,
}

impl Browser {
    /// Starts `chromium` (or `chromium-browser`) from `PATH` with a fresh
    /// profile in the temp directory; `None` when neither is on `PATH`.
    ///
    /// Chromium reads NUL-terminated JSON commands from fd 3 and writes its
    /// answers and events to fd 4; std cannot set up fds other than 0-2
    /// without unsafe code, so `sh` maps them onto our stdin/stdout pipes:
    /// `exec chromium FLAGS --remote-debugging-pipe --user-data-dir=DIR
    /// about:blank 3<&0 4>&1 0</dev/null 1>/dev/null`.
    ///
    /// # Panics
    ///
    /// When a browser is found but cannot be started or does not answer
    /// `Browser.getVersion` within [`CALL_TIMEOUT`] (its log is in the message).
    pub fn launch() -> Option<Browser> {
        static LAUNCHED: AtomicUsize = AtomicUsize::new(0);
        let binary = ["chromium", "chromium-browser"].iter().find_map(|name| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })?;
        let n = LAUNCHED.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cdp-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the browser profile directory");
        let log = File::create(dir.join("chromium.log")).expect("create the browser log");
        let script = format!(
            "exec \"$0\" {FLAGS} --remote-debugging-pipe --user-data-dir=\"$1\" about:blank \
             3<&0 4>&1 0</dev/null 1>/dev/null"
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&binary)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            // Its own group, so Drop can kill the renderers with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let (tx, from_browser) = mpsc::channel();
        thread::spawn(move || read_messages(stdout.expect("piped stdout"), tx));
        let mut browser = Browser {
            child,
            to_browser: stdin.expect("piped stdin"),
            from_browser,
            next_id: 0,
            dir,
        };
        if let Err(e) = browser.call("Browser.getVersion", "{}", None, CALL_TIMEOUT) {
            panic!("chromium did not answer: {e}");
        }
        Some(browser)
    }

    /// Opens a new tab on `url` and waits (up to [`CALL_TIMEOUT`]) until its
    /// document has loaded.
    ///
    /// # Errors
    ///
    /// A protocol error, a navigation error (such as a refused connection),
    /// or no load within the deadline.
    pub fn open(&mut self, url: &str) -> Result<Page<'_>, String> {
        let reply = self.call(
            "Target.createTarget",
            r#"{"url":"about:blank"}"#,
            None,
            CALL_TIMEOUT,
        )?;
        let target = string_at(&reply, &["result", "targetId"])?;
        let params = format!(r#"{{"targetId":{},"flatten":true}}"#, quote(&target));
        let reply = self.call("Target.attachToTarget", &params, None, CALL_TIMEOUT)?;
        let session = string_at(&reply, &["result", "sessionId"])?;
        let mut page = Page {
            browser: self,
            session,
        };
        // Without Page.enable the script below is not run.
        page.call("Page.enable", "{}")?;
        page.call(
            "Page.addScriptToEvaluateOnNewDocument",
            &format!(r#"{{"source":{}}}"#, quote(ERROR_TRAP)),
        )?;
        let reply = page.call("Page.navigate", &format!(r#"{{"url":{}}}"#, quote(url)))?;
        if let Some(error) = field(&reply, &["result", "errorText"]).and_then(unquote) {
            return Err(format!("open {url}: {error}"));
        }
        let loaded = "location.href !== 'about:blank' && document.readyState === 'complete'";
        page.wait_for(loaded, CALL_TIMEOUT)?;
        Ok(page)
    }

    /// Sends one command and waits up to `limit` for its answer, skipping
    /// events and late answers to earlier commands; the whole answer.
    fn call(
        &mut self,
        method: &str,
        params: &str,
        session: Option<&str>,
        limit: Duration,
    ) -> Result<String, String> {
        self.next_id += 1;
        let id = self.next_id.to_string();
        let session = session.map_or(String::new(), |s| format!(r#","sessionId":{}"#, quote(s)));
        let command = format!(r#"{{"id":{id},"method":"{method}","params":{params}{session}}}"#);
        self.to_browser
            .write_all(command.as_bytes())
            .and_then(|()| self.to_browser.write_all(b"\0"))
            .and_then(|()| self.to_browser.flush())
            .map_err(|e| format!("{method}: writing to chromium: {e}{}", self.log_tail()))?;
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = match self.from_browser.recv_timeout(left) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("{method}: no answer within {limit:?}"));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "{method}: chromium closed the pipe{}",
                        self.log_tail()
                    ));
                }
            };
            if field(&message, &["id"]) != Some(id.as_str()) {
                continue;
            }
            if let Some(error) = field(&message, &["error"]) {
                return Err(format!("{method}: {error}"));
            }
            return Ok(message);
        }
    }

    /// The last lines of Chromium's stderr, for error messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "\nchromium log:\n{}",
            lines[lines.len().saturating_sub(10)..].join("\n")
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group, by its id (the browser's pid): the browser and the
        // renderer, GPU and zygote processes it started.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A child of the group may still be exiting and writing to it.
        let deadline = Instant::now() + Duration::from_secs(2);
        while std::fs::remove_dir_all(&self.dir).is_err() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Page<'_> {
    /// Evaluates the expression `js` (awaiting it if it is a promise) and
    /// returns its value as JSON text: `true`, `3`, `"text"`, `[1,2]`;
    /// `null` for `undefined`.
    ///
    /// # Errors
    ///
    /// The exception it threw, a protocol error, or no answer within
    /// [`CALL_TIMEOUT`].
    pub fn eval(&mut self, js: &str) -> Result<String, String> {
        self.eval_within(js, CALL_TIMEOUT)
    }

    /// Polls the expression `condition` until it is truthy, for at most
    /// `limit`.
    ///
    /// # Errors
    ///
    /// When it is not true by then; the message has the last value or
    /// exception seen.
    pub fn wait_for(&mut self, condition: &str, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let js = format!("!!({condition})");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let last =
                match self.eval_within(&js, left.clamp(Duration::from_millis(100), CALL_TIMEOUT)) {
                    Ok(value) if value == "true" => return Ok(()),
                    Ok(value) => value,
                    Err(e) => e,
                };
            if Instant::now() >= deadline {
                return Err(format!(
                    "not true within {limit:?}: {condition} (last: {last})"
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The uncaught errors and unhandled rejections of the page so far, as
    /// a JSON array of strings (`[]` when none).
    ///
    /// # Errors
    ///
    /// As [`Page::eval`].
    pub fn errors(&mut self) -> Result<String, String> {
        self.eval("JSON.stringify(window.__pageErrors || ['error trap missing'])")
            .map(|v| unquote(&v).unwrap_or(v))
    }

    /// A PNG of the page laid out at `width` x `height` CSS pixels, scale 1.
    ///
    /// # Errors
    ///
    /// A protocol error, no answer in time, or data that is not base64.
    pub fn screenshot_png(&mut self, width: u32, height: u32) -> Result<Vec<u8>, String> {
        let metrics = format!(
            r#"{{"width":{width},"height":{height},"deviceScaleFactor":1,"mobile":false}}"#
        );
        self.call("Emulation.setDeviceMetricsOverride", &metrics)?;
        let reply = self.call("Page.captureScreenshot", r#"{"format":"png"}"#)?;
        base64_decode(&string_at(&reply, &["result", "data"])?)
    }

    fn eval_within(&mut self, js: &str, limit: Duration) -> Result<String, String> {
        let params = format!(
            r#"{{"expression":{},"returnByValue":true,"awaitPromise":true}}"#,
            quote(js)
        );
        let reply = self
            .browser
            .call("Runtime.evaluate", &params, Some(&self.session), limit)?;
        if let Some(details) = field(&reply, &["result", "exceptionDetails"]) {
            let text = field(details, &["exception", "description"])
                .or_else(|| field(details, &["text"]))
                .unwrap_or(details);
            return Err(format!(
                "{js}: {}",
                unquote(text).unwrap_or_else(|| text.to_owned())
            ));
        }
        Ok(field(&reply, &["result", "result", "value"])
            .unwrap_or("null")
            .to_owned())
    }

    fn call(&mut self, method: &str, params: &str) -> Result<String, String> {
        self.browser
            .call(method, params, Some(&self.session), CALL_TIMEOUT)
    }
}

/// Reads NUL-terminated messages until the pipe closes or one is too long.
fn read_messages(from_browser: impl Read, tx: Sender<String>) {
    let mut reader = BufReader::new(from_browser);
    loop {
        let mut message = Vec::new();
        match reader
            .by_ref()
            .take(MAX_MESSAGE + 1)
            .read_until(0, &mut message)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if message.pop() != Some(0) {
            return; // torn or oversized: the caller sees a closed pipe
        }
        if tx
            .send(String::from_utf8_lossy(&message).into_owned())
            .is_err()
        {
            return;
        }
    }
}

/// `s` as a JSON string literal.
fn quote(s: &str) -> String {
    let mut out = String::new();
    write_string(&mut out, s);
    out
}

/// The string a JSON string literal stands for (`None` if `raw` is not one).
pub fn unquote(raw: &str) -> Option<String> {
    let object = parse_object(format!(r#"{{"v":{raw}}}"#).as_bytes()).ok()?;
    object.get_str("v").map(str::to_owned)
}

/// The string at `path` in the JSON object `json`.
fn string_at(json: &str, path: &[&str]) -> Result<String, String> {
    field(json, path)
        .and_then(unquote)
        .ok_or_else(|| format!("no string at {path:?} in {json:.300}"))
}

/// The raw JSON text of the value at `path` (object keys, outermost first)
/// in `json`. Keys are compared as written: the protocol's are plain ASCII.
pub fn field<'a>(json: &'a str, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(json.trim(), |object, key| member(object, key))
}

/// The value of `key` among the members of `object` (not nested ones).
fn member<'a>(object: &'a str, key: &str) -> Option<&'a str> {
    let b = object.as_bytes();
    let ws = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    if b.first() != Some(&b'{') {
        return None;
    }
    let mut i = ws(1);
    while b.get(i) == Some(&b'"') {
        let key_end = value_end(b, i)?;
        let colon = ws(key_end);
        if b.get(colon) != Some(&b':') {
            return None;
        }
        let start = ws(colon + 1);
        let end = value_end(b, start)?;
        if object.get(i + 1..key_end - 1) == Some(key) {
            return Some(&object[start..end]);
        }
        i = ws(end);
        if b.get(i) == Some(&b',') {
            i = ws(i + 1);
        }
    }
    None
}

/// Where the JSON value that starts at `i` ends (assumes valid JSON).
fn value_end(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *b.get(i)? {
            b'"' => {
                i += 1;
                while *b.get(i)? != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            _ if depth == 0 => {
                // A number or literal: up to the next delimiter.
                while b.get(i).is_some_and(|c| !b",}] \t\r\n".contains(c)) {
                    i += 1;
                }
                return Some(i);
            }
            _ => i += 1,
        }
        if depth == 0 {
            return Some(i);
        }
    }
}

/// Decodes standard base64 (padding optional).
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text.as_bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return Err(format!("not base64: byte {c}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_finds_top_level_members_only() {
        let reply = r#"{"method":"x","params":{"id":7},"id":3,"result":{"result":{"type":"string","value":"a\"}b"}}}"#;
        assert_eq!(field(reply, &["id"]), Some("3"));
        assert_eq!(field(reply, &["params", "id"]), Some("7"));
        assert_eq!(
            field(reply, &["result", "result", "value"]),
            Some(r#""a\"}b""#)
        );
        assert_eq!(field(reply, &["result", "missing"]), None);
        assert_eq!(
            field(r#"{"v":[1,{"a":2}], "w" : true }"#, &["w"]),
            Some("true")
        );
        assert_eq!(unquote(r#""a\"}b\u00e9""#).as_deref(), Some("a\"}bé"));
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        for (text, bytes) in [
            ("", &b""[..]),
            ("TQ==", b"M"),
            ("TWE=", b"Ma"),
            ("TWFu", b"Man"),
            ("TWE", b"Ma"),
        ] {
            assert_eq!(base64_decode(text).unwrap(), bytes, "{text}");
        }
        assert!(base64_decode("TW!u").is_err());
    }
}
