//! The console page (`GET /`, PROTOCOL.md section 6.6) in a real headless
//! Chromium against the real broker: the status dot, the topics and
//! subscribers tables, the live tail over `EventSource`, the publish form,
//! and `?token=`. Without `chromium` on `PATH` the tests say "skipped" and
//! pass, unless `REQUIRE_BROWSER=1` (then they fail). `WRITE_SCREENSHOT=1`
//! writes the screenshot to `docs/console.png`.

mod support;

#[path = "support/cdp.rs"]
mod cdp;

use cdp::{Browser, Page};
use message_broker::json::write_string;
use std::path::Path;
use support::{BrokerProcess, RawSubscriber, WAIT, data_of, exchange, publish, subscribe};

/// The page's polls of `/api/v1/*` succeed.
const STATUS_OK: &str = "document.getElementById('status').dataset.state === 'ok'";

/// A browser, or `None` (said on stdout) when there is none and none is
/// required.
fn browser() -> Option<Browser> {
    let browser = Browser::launch();
    if browser.is_none() {
        let required = std::env::var("REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(!required, "REQUIRE_BROWSER=1 but no chromium on PATH");
        println!("skipped: no chromium");
    }
    browser
}

/// `s` as a JavaScript string literal.
fn js(s: &str) -> String {
    let mut out = String::new();
    write_string(&mut out, s);
    out
}

/// Sets the value of the input or textarea `id`.
fn fill(page: &mut Page, id: &str, value: &str) {
    let set = format!("document.getElementById('{id}').value = {}", js(value));
    page.eval(&set).unwrap();
}

fn click(page: &mut Page, id: &str) {
    page.eval(&format!("document.getElementById('{id}').click()"))
        .unwrap();
}

/// Whether a row of the tail contains `text`.
fn tail_has(text: &str) -> String {
    format!(
        "[...document.querySelectorAll('#tail .tail-row')].some(r => r.textContent.includes({}))",
        js(text)
    )
}

/// Starts the tail on `pattern` and waits until its stream is open. The
/// broker subscribes a stream before it sends the response head, so every
/// message published after `onopen` reaches it.
fn start_tail(page: &mut Page, pattern: &str) {
    fill(page, "tail-pattern", pattern);
    click(page, "tail-start");
    let open = "document.getElementById('tail').dataset.state === 'open'";
    page.wait_for(open, WAIT).unwrap();
}

/// Publishes through the page's form and waits for its `202`.
fn publish_from_page(page: &mut Page, topic: &str, data: &str) {
    fill(page, "pub-topic", topic);
    fill(page, "pub-data", data);
    click(page, "pub-send");
    let accepted = "document.getElementById('pub-result').textContent.startsWith('202')";
    page.wait_for(accepted, WAIT).unwrap();
}

/// A 1000x700 PNG of the page: to `docs/console.png` with
/// `WRITE_SCREENSHOT=1`, else to a temp directory removed afterwards.
fn screenshot(page: &mut Page) {
    let png = page.screenshot_png(1000, 700).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    if std::env::var("WRITE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console.png");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &png).unwrap();
        println!("wrote {}", path.display());
        return;
    }
    let dir = std::env::temp_dir().join(format!("console-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("console.png");
    std::fs::write(&path, &png).unwrap();
    let back = std::fs::read(&path);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(back.unwrap(), png);
}

#[test]
fn the_console_tails_publishes_and_lists_topics_and_subscribers() {
    let Some(mut browser) = browser() else { return };
    let broker = BrokerProcess::start(&[]);
    let mut page = browser.open(&format!("http://{}/", broker.addr)).unwrap();
    page.wait_for(STATUS_OK, WAIT).unwrap();

    start_tail(&mut page, "console/+");
    publish(broker.addr, "console/test", "hello from the test");
    page.wait_for(&tail_has("hello from the test"), WAIT)
        .unwrap();
    let listed = "document.getElementById('topics').textContent.includes('console/test')";
    page.wait_for(listed, WAIT).unwrap();

    // Peer data is shown as text, never parsed as markup.
    publish(broker.addr, "console/test", "<img src=x onerror=alert(1)>");
    page.wait_for(&tail_has("<img src=x"), WAIT).unwrap();
    let images = page.eval("document.querySelectorAll('#tail img').length");
    assert_eq!(images.unwrap(), "0");

    // The form reaches a callback subscriber, and the tail.
    let subscriber = RawSubscriber::start();
    subscribe(broker.addr, "console/form", subscriber.port);
    publish_from_page(&mut page, "console/form", "from the page form");
    assert_eq!(data_of(&subscriber.recv_msg().body), "from the page form");
    page.wait_for(&tail_has("from the page form"), WAIT)
        .unwrap();

    // Both kinds of subscriber are listed: the callback and the tail.
    let endpoint = format!("127.0.0.1:{}", subscriber.port);
    let both = format!(
        "(t => t.includes('callback') && t.includes({}) && t.includes('console/+'))\
         (document.getElementById('subscribers').textContent)",
        js(&endpoint)
    );
    page.wait_for(&both, WAIT).unwrap();

    assert_eq!(page.errors().unwrap(), "[]", "errors in the page");
    screenshot(&mut page);
}

#[test]
fn with_a_token_the_console_works_from_its_query() {
    let Some(mut browser) = browser() else { return };
    let broker = BrokerProcess::start(&["--token", "s3cret"]);
    let url = format!("http://{}/?token=s3cret", broker.addr);
    let mut page = browser.open(&url).unwrap();
    page.wait_for(STATUS_OK, WAIT).unwrap();

    start_tail(&mut page, "console/+");
    let body = r#"{"data":"hello with the token"}"#;
    let request = format!(
        "POST /pub/console/token HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer s3cret\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(broker.addr, request.as_bytes());
    assert_eq!(answer.status, 202, "publish: {}", answer.text());
    page.wait_for(&tail_has("hello with the token"), WAIT)
        .unwrap();

    // The form sends the token as a bearer header; a qos 1 publish is
    // answered with its Message-Id, which the page shows.
    fill(&mut page, "pub-qos", "1");
    publish_from_page(&mut page, "console/form", "form with the token");
    page.wait_for(&tail_has("form with the token"), WAIT)
        .unwrap();
    let result = page.eval("document.getElementById('pub-result').textContent");
    assert!(
        result.as_deref().unwrap().contains("Message-Id "),
        "{result:?}"
    );
    assert_eq!(page.errors().unwrap(), "[]", "errors in the page");
}
