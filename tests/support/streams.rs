//! A streaming subscription read from a raw socket (`GET /sub/...`), with a
//! parser of its own for server-sent events and NDJSON, so the broker's
//! framing is judged byte for byte by something other than its own code.
#![allow(dead_code)]

use super::WAIT;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One server-sent event, as its lines said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sse {
    pub id: Option<u64>,
    pub event: Option<String>,
    pub data: String,
    /// A comment-only block (`: keep-alive`).
    pub comment: Option<String>,
}

/// An open stream: its response head, then its body as it comes.
pub struct StreamReader {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
}

impl StreamReader {
    /// `GET path` with `headers`; reads the response head.
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> StreamReader {
        let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for (n, v) in headers {
            request.push_str(&format!("{n}: {v}\r\n"));
        }
        request.push_str("\r\n");
        (&stream).write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut head = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).expect("header");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').expect("header line");
            head.push((n.to_owned(), v.trim().to_owned()));
        }
        StreamReader {
            status,
            headers: head,
            reader,
        }
    }

    /// An SSE stream of `pattern` (already percent-encoded), with extra
    /// headers; panics unless it is a 200 with the SSE content type.
    pub fn sse(addr: SocketAddr, pattern: &str, headers: &[(&str, &str)]) -> StreamReader {
        let mut all = vec![("Accept", "text/event-stream")];
        all.extend_from_slice(headers);
        let s = StreamReader::open(addr, &format!("/sub/{pattern}"), &all);
        assert_eq!(s.status, 200, "{:?}", s.headers);
        assert_eq!(s.header("content-type"), Some("text/event-stream"));
        s
    }

    /// An NDJSON stream, as [`StreamReader::sse`].
    pub fn ndjson(addr: SocketAddr, pattern: &str, headers: &[(&str, &str)]) -> StreamReader {
        let mut all = vec![("Accept", "application/x-ndjson")];
        all.extend_from_slice(headers);
        let s = StreamReader::open(addr, &format!("/sub/{pattern}"), &all);
        assert_eq!(s.status, 200, "{:?}", s.headers);
        assert_eq!(s.header("content-type"), Some("application/x-ndjson"));
        s
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets how long one read may wait.
    pub fn set_timeout(&self, limit: Duration) {
        self.reader.get_ref().set_read_timeout(Some(limit)).unwrap();
    }

    /// Reads exactly `n` raw bytes of the body.
    pub fn raw(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf).expect("stream bytes");
        buf
    }

    /// One line of the body, `\n` included; `None` at the end of the stream.
    pub fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line),
            Err(e) => panic!("stream read failed: {e} (after {line:?})"),
        }
    }

    /// The next server-sent event (or comment block); `None` at the end.
    pub fn event(&mut self) -> Option<Sse> {
        let mut event = Sse::default();
        let mut any = false;
        loop {
            let line = self.line()?;
            assert!(line.ends_with('\n'), "a torn line {line:?}");
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if any {
                    return Some(event);
                }
                continue;
            }
            any = true;
            if let Some(c) = line.strip_prefix(':') {
                event.comment = Some(c.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("id: ") {
                event.id = Some(v.parse().expect("numeric id"));
            } else if let Some(v) = line.strip_prefix("event: ") {
                event.event = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                event.data.push_str(v);
            } else {
                panic!("not an SSE line: {line:?}");
            }
        }
    }

    /// The next `message` event, skipping keep-alives; panics on another
    /// kind of event or the end of the stream.
    pub fn message(&mut self) -> Sse {
        loop {
            let e = self.event().expect("a message, not the end of the stream");
            if e.comment.is_some() && e.event.is_none() {
                continue;
            }
            assert_eq!(e.event.as_deref(), Some("message"), "{e:?}");
            return e;
        }
    }

    /// Whether the broker closed the stream within `limit` (what it still
    /// sends meanwhile is read and dropped).
    pub fn closes_within(&mut self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        let mut sink = [0u8; 4096];
        while Instant::now() < until {
            self.set_timeout(Duration::from_millis(100));
            match self.reader.read(&mut sink) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    }

    /// Closes the connection (the reader leaves).
    pub fn close(self) {
        let _ = self.reader.get_ref().shutdown(std::net::Shutdown::Both);
    }

    /// The socket, for tests that must stop reading without closing.
    pub fn socket(&self) -> &TcpStream {
        self.reader.get_ref()
    }
}

/// `{"data":"…","Topic":"…"}` for plain ASCII values.
pub fn body(topic: &str, data: &str) -> String {
    format!("{{\"data\":\"{data}\",\"Topic\":\"{topic}\"}}")
}
