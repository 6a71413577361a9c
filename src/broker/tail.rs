//! One streaming subscription (PROTOCOL.md section 6.3), served on the
//! connection that asked for it: the response head, a replay from the log
//! when the reader resumes, then its stream's events as they come, with a
//! keep-alive when it is quiet, until the reader leaves, falls behind
//! (`overflow`), or the broker stops.
//!
//! Holds the connection's thread for the stream's life; never holds a
//! registry lock while writing.

use super::Shared;
use super::events;
use super::metrics;
use super::stream::{Format, Next, Stream};
use crate::deadline::{self, Socket};
use crate::json;
use crate::log;
use crate::pattern;
use crate::store::Start;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often a quiet stream looks whether its reader left or the broker
/// stops, between keep-alives.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Bytes of replayed events gathered before they are written.
const FLUSH_AT: usize = 64 * 1024;

/// A streaming subscription as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request {
    pub(super) pattern: String,
    pub(super) format: Format,
    /// `Last-Event-ID` or `?since=`: replay the stored messages after it.
    pub(super) resume: Option<u64>,
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The reader closed its connection.
    Left,
    /// The reader fell behind.
    Overflow,
    /// The broker is stopping.
    Stopping,
}

/// The stream's socket and what waits to be written to it.
struct Out<'a> {
    socket: &'a mut Socket,
    buf: Vec<u8>,
    written: u64,
    timeout: Duration,
}

impl Out<'_> {
    fn flush(&mut self) -> io::Result<()> {
        let mut at = 0;
        while at < self.buf.len() {
            let n = self
                .socket
                .write_by(&self.buf[at..], deadline::after(self.timeout))?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            at += n;
        }
        self.written += at as u64;
        self.buf.clear();
        Ok(())
    }
}

/// Ends the stream in the registry however `serve` returns.
struct Opened<'a> {
    shared: &'a Shared,
    stream: &'a Stream,
}

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        self.shared.registry.close_stream(self.stream);
    }
}

/// Serves `request` on `socket` until the stream ends; returns the bytes
/// written.
///
/// # Errors
/// The stream could not be opened (the broker is stopping: answered 503),
/// or a write failed or timed out (the reader is gone or not reading).
pub(super) fn serve(
    socket: &mut Socket,
    peer: SocketAddr,
    request: &Request,
    shared: &Shared,
) -> io::Result<u64> {
    let registry = &shared.registry;
    let format = request.format;
    let retained = request.resume.is_none();
    let (stream, until) = registry.open_stream(&request.pattern, peer, format, retained)?;
    let _opened = Opened {
        shared,
        stream: &stream,
    };
    metrics::add(&registry.metrics.streams_opened, 1);
    log::debug!("{peer} streams {:?} as {}", request.pattern, format.name());
    let mut out = Out {
        socket,
        buf: events::head(format).to_vec(),
        written: 0,
        timeout: shared.config.delivery_timeout,
    };
    // Stored messages up to `until` come from the replay, not the stream.
    let mut replayed_to = 0;
    if let Some(after) = request.resume {
        replay(&mut out, request, after, until, shared)?;
        replayed_to = until;
    }
    out.flush()?;
    let end = forward(&mut out, &stream, replayed_to, shared)?;
    log::debug!("stream of {peer} ended: {end:?}");
    Ok(out.written)
}

/// Writes the stored messages after `after` (up to `until`) that match.
fn replay(
    out: &mut Out<'_>,
    request: &Request,
    after: u64,
    until: u64,
    shared: &Shared,
) -> io::Result<()> {
    let store = &shared.registry.store;
    let format = request.format;
    let found = store.replay(after, until).unwrap_or_else(|e| {
        log::warning!("log: cannot replay for a stream: {e}");
        None
    });
    let Some((start, messages)) = found else {
        // No log (or none readable): nothing to replay; say so if ids were
        // given out since.
        let next = store.next_id();
        if next > after.saturating_add(1) {
            events::reset(&mut out.buf, format, next);
        }
        return Ok(());
    };
    if let Start::Reset(from) = start {
        events::reset(&mut out.buf, format, from);
    }
    let mut sent = 0;
    for s in messages.filter(|s| pattern::matches(&request.pattern, &s.topic)) {
        let body = json::encode_object(&[("data", &s.data), ("Topic", &s.topic)]);
        events::message(&mut out.buf, format, s.id, body.as_bytes());
        sent += 1;
        if out.buf.len() >= FLUSH_AT {
            out.flush()?;
        }
    }
    metrics::add(&shared.registry.metrics.delivered, sent);
    Ok(())
}

/// Writes the stream's events as they come until it ends.
fn forward(
    out: &mut Out<'_>,
    stream: &Stream,
    replayed_to: u64,
    shared: &Shared,
) -> io::Result<End> {
    let format = stream.format;
    let keep_alive = shared.config.stream_keepalive;
    let mut next_keep_alive = deadline::after(keep_alive);
    let mut heard = 0;
    loop {
        if shared.is_stopping() {
            return Ok(End::Stopping);
        }
        let wake = next_keep_alive.min(deadline::after(CHECK_EVERY));
        match stream.next(wake) {
            Next::Events(batch) => {
                let mut sent = 0;
                for event in batch {
                    if event.stored && event.id <= replayed_to {
                        continue;
                    }
                    events::message(&mut out.buf, format, event.id, &event.body);
                    sent += 1;
                }
                out.flush()?;
                metrics::add(&shared.registry.metrics.delivered, sent);
                next_keep_alive = deadline::after(keep_alive);
            }
            Next::Overflow(next) => {
                metrics::add(&shared.registry.metrics.streams_overflowed, 1);
                log::info!("stream of {} overflowed at id {next}", stream.peer);
                events::overflow(&mut out.buf, format, next);
                out.flush()?;
                return Ok(End::Overflow);
            }
            Next::Quiet if Instant::now() >= next_keep_alive => {
                events::keep_alive(&mut out.buf, format);
                out.flush()?;
                next_keep_alive = deadline::after(keep_alive);
            }
            Next::Quiet if reader_left(out.socket, &mut heard) => return Ok(End::Left),
            Next::Quiet => {}
            Next::Closed => return Ok(End::Stopping),
        }
    }
}

/// Most a reader may send after its request (read and dropped: nothing
/// can be answered on a stream); more ends its stream.
const MAX_CHATTER: u64 = 64 * 1024;

/// Whether the reader closed its side (or sent more than [`MAX_CHATTER`] in
/// all, counted in `heard`), looked at without waiting: what it sent is
/// read, at most 64 KiB a look, and dropped. Where the socket cannot be made
/// non-blocking, the next write finds out instead.
fn reader_left(socket: &Socket, heard: &mut u64) -> bool {
    let tcp = socket.get_ref();
    if tcp.set_nonblocking(true).is_err() {
        return false;
    }
    let mut sink = [0u8; 4096];
    let mut reader = tcp;
    let mut left = false;
    for _ in 0..16 {
        match reader.read(&mut sink) {
            Ok(0) => left = true,
            Ok(n) => {
                *heard += n as u64;
                left = *heard > MAX_CHATTER;
                if !left {
                    continue;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => left = true,
        }
        break;
    }
    let _ = tcp.set_nonblocking(false);
    left
}
