//! How a streaming subscription looks on the wire (PROTOCOL.md section
//! 6.3): server-sent events or NDJSON, byte for byte.
//!
//! Pure: values in, bytes appended to a buffer.

use super::stream::Format;
use std::io::Write;

/// The response head of a stream: no length, the body ends when the
/// connection does.
pub(crate) fn head(format: Format) -> &'static [u8] {
    match format {
        Format::Sse => {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
              X-Accel-Buffering: no\r\nConnection: close\r\n\r\n"
        }
        Format::Ndjson => {
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nCache-Control: no-cache\r\n\
              X-Accel-Buffering: no\r\nConnection: close\r\n\r\n"
        }
    }
}

/// A message; `body` is `{"data":"…","Topic":"…"}` (one line: JSON
/// escapes every line break).
pub(crate) fn message(out: &mut Vec<u8>, format: Format, id: u64, body: &[u8]) {
    match format {
        Format::Sse => {
            let _ = write!(out, "id: {id}\nevent: message\ndata: ");
            out.extend_from_slice(body);
            out.extend_from_slice(b"\n\n");
        }
        Format::Ndjson => {
            // `{"id":N,` then the body without its `{`.
            let _ = write!(out, "{{\"id\":{id},");
            out.extend_from_slice(body.get(1..).unwrap_or_default());
            out.push(b'\n');
        }
    }
}

/// The log no longer reaches back to where the reader resumes: it goes on
/// from `from`, the oldest message the log still has.
pub(crate) fn reset(out: &mut Vec<u8>, format: Format, from: u64) {
    let _ = match format {
        Format::Sse => write!(out, "event: reset\ndata: {{\"from\":{from}}}\n\n"),
        Format::Ndjson => writeln!(out, "{{\"reset\":true,\"from\":{from}}}"),
    };
}

/// The last event of a reader that fell behind: `next` is the first id it
/// did not get.
pub(crate) fn overflow(out: &mut Vec<u8>, format: Format, next: u64) {
    let _ = match format {
        Format::Sse => write!(out, "event: overflow\ndata: {{\"next\":{next}}}\n\n"),
        Format::Ndjson => writeln!(out, "{{\"overflow\":true,\"next\":{next}}}"),
    };
}

/// Traffic on a quiet stream, so that proxies and readers know it lives.
pub(crate) fn keep_alive(out: &mut Vec<u8>, format: Format) {
    out.extend_from_slice(match format {
        Format::Sse => b": keep-alive\n\n",
        Format::Ndjson => b"\n",
    });
}

#[cfg(test)]
mod tests {
    use super::{Format, keep_alive, message, overflow, reset};

    #[test]
    fn byte_exact() {
        let body = br#"{"data":"a\nb","Topic":"t/1"}"#;
        let mut out = Vec::new();
        message(&mut out, Format::Sse, 42, body);
        reset(&mut out, Format::Sse, 7);
        overflow(&mut out, Format::Sse, 43);
        keep_alive(&mut out, Format::Sse);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id: 42\nevent: message\ndata: {\"data\":\"a\\nb\",\"Topic\":\"t/1\"}\n\n\
             event: reset\ndata: {\"from\":7}\n\n\
             event: overflow\ndata: {\"next\":43}\n\n\
             : keep-alive\n\n"
        );
        let mut out = Vec::new();
        message(&mut out, Format::Ndjson, 42, body);
        reset(&mut out, Format::Ndjson, 7);
        overflow(&mut out, Format::Ndjson, 43);
        keep_alive(&mut out, Format::Ndjson);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\":42,\"data\":\"a\\nb\",\"Topic\":\"t/1\"}\n\
             {\"reset\":true,\"from\":7}\n\
             {\"overflow\":true,\"next\":43}\n\
             \n"
        );
    }
}
