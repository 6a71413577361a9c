//! One NATS connection after its handshake: subscribes what the broker
//! holds, then reads (on the bridge's thread) and writes (on a writer
//! thread of its own) until the connection fails or the bridge stops.
//!
//! The reader hands messages to the sink a read at a time, answers the
//! server's pings, and pings the server every [`PING_INTERVAL`], busy or
//! not. The writer writes subscriptions and pings first, then publishes in
//! chunks that end on a message, with what control came meanwhile between
//! them, so a ping never waits behind a long write.

use super::bridge::{self, Shared, State, add, lock};
use super::link::{LinkError, WRITE_TIMEOUT, timed_out};
use super::proto::{self, Msg, Parser, ServerOp};
use crate::log;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

/// The server is pinged this often, busy or not...
pub(super) const PING_INTERVAL: Duration = Duration::from_secs(2);
/// ...and given up when no `PONG` came for this long while a ping was
/// out and nothing of ours waited to be written (a server busy reading what
/// we write answers late, but it is alive; a write that makes no progress
/// fails by itself, after [`WRITE_TIMEOUT`]).
pub(super) const SILENT_AFTER: Duration = Duration::from_secs(5);
/// Pings out at once at most.
const MAX_PINGS_OUT: u64 = 2;
/// A write of publishes is cut where a message ends past this many bytes.
const WRITE_CHUNK: usize = 64 * 1024;
/// Bytes read at a time.
const READ_CHUNK: usize = 64 * 1024;
/// The same `-ERR` is logged at most this often.
const ERR_LOG_EVERY: Duration = Duration::from_secs(60);

/// Serves a connection after its handshake until it fails.
pub(super) fn serve(shared: &Shared, stream: &TcpStream, mut parser: Parser) -> LinkError {
    let generation = {
        let mut state = lock(shared);
        if state.stopping {
            return LinkError::Stopping;
        }
        state.connected = true;
        state.generation += 1;
        state.pings = 0;
        state.pongs = 0;
        state.interest.reconnected();
        add(&shared.counters.connects);
        let mut control = Vec::new();
        for (sid, subject) in state.interest.all() {
            proto::write_sub(&mut control, subject, sid);
        }
        state.control = control;
        state.generation
    };
    shared.writer.notify_all();
    let why = match stream.try_clone() {
        Ok(out) => thread::scope(|scope| {
            // Marks the connection down when the reader is done, also if
            // it panics: the writer (joined by the scope) then ends.
            let _down = Down { shared, stream };
            let writer = thread::Builder::new()
                .name("nats writer".into())
                .stack_size(super::link::STACK)
                .spawn_scoped(scope, || write(shared, out, generation));
            match writer {
                Ok(_) => read(shared, stream, &mut parser),
                Err(e) => LinkError::Io(e),
            }
        }),
        Err(e) => {
            drop(Down { shared, stream });
            LinkError::Io(e)
        }
    };
    if lock(shared).stopping {
        return LinkError::Stopping;
    }
    why
}

/// Marks the connection down when dropped: what was queued and not
/// written is counted as dropped, and its writer ends.
struct Down<'a> {
    shared: &'a Shared,
    stream: &'a TcpStream,
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        let mut state = lock(self.shared);
        state.connected = false;
        state.generation += 1;
        let lost = state.outbox_ends.len() as u64;
        self.shared
            .counters
            .dropped_down
            .fetch_add(lost, Ordering::Relaxed);
        state.outbox.clear();
        state.outbox_ends.clear();
        state.control.clear();
        drop(state);
        self.shared.writer.notify_all();
        self.shared.retry.notify_all();
    }
}

/// Reads the server until the connection fails.
fn read(shared: &Shared, mut stream: &TcpStream, parser: &mut Parser) -> LinkError {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut next_ping = Instant::now() + PING_INTERVAL;
    let mut last_pong = Instant::now();
    let mut errors = ErrLog::default();
    if let Err(e) = stream.set_read_timeout(Some(PING_INTERVAL / 2)) {
        return e.into();
    }
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return LinkError::Closed,
            Ok(n) => parser.feed(&buf[..n]),
            Err(e) if timed_out(&e) => {}
            Err(e) => return e.into(),
        }
        let mut msgs: Vec<Msg> = Vec::new();
        let failed = loop {
            match parser.next() {
                Ok(None) => break None,
                Ok(Some(ServerOp::Msg(m))) => msgs.push(m),
                Ok(Some(ServerOp::Ping)) => queue(shared, |s| s.control(proto::PONG)),
                Ok(Some(ServerOp::Pong)) => {
                    last_pong = Instant::now();
                    let mut state = lock(shared);
                    // A PONG to no PING of ours (a hostile or confused
                    // server) is not counted: it fences nothing.
                    if state.pongs < state.pings {
                        state.pongs += 1;
                        let pongs = state.pongs;
                        state.interest.ponged(pongs);
                    }
                }
                Ok(Some(ServerOp::Ok | ServerOp::Info(_))) => {}
                Ok(Some(ServerOp::Err(text))) => {
                    add(&shared.counters.server_errors);
                    errors.log(text);
                }
                Err(e) => {
                    add(&shared.counters.protocol_errors);
                    break Some(e);
                }
            }
        };
        deliver(shared, msgs);
        if let Some(e) = failed {
            return e.into();
        }
        let now = Instant::now();
        let state = lock(shared);
        if state.stopping {
            return LinkError::Stopping;
        }
        let out = state.pings.saturating_sub(state.pongs);
        if out > 0 && now - last_pong >= SILENT_AFTER && !state.writer_busy() {
            return LinkError::Silent;
        }
        if now >= next_ping {
            next_ping = now + PING_INTERVAL;
            if out < MAX_PINGS_OUT {
                if out == 0 {
                    last_pong = now; // the silence counts from this ping
                }
                drop(state);
                queue(shared, |s| s.control(proto::PING));
            }
        }
    }
}

/// Changes the state with `f` and wakes the writer.
fn queue(shared: &Shared, f: impl FnOnce(&mut MutexGuard<'_, State>)) {
    f(&mut lock(shared));
    shared.writer.notify_all();
}

fn deliver(shared: &Shared, msgs: Vec<Msg>) {
    if msgs.is_empty() {
        return;
    }
    let taken = bridge::take(shared, msgs);
    if !taken.is_empty() {
        (shared.sink)(taken);
    }
}

/// `-ERR`s seen, so that a server repeating one (say, a permission
/// violation on every publish) does not flood the log.
#[derive(Default)]
struct ErrLog {
    last: HashMap<String, (Instant, u64)>,
}

impl ErrLog {
    fn log(&mut self, text: String) {
        let now = Instant::now();
        if self.last.len() > 64 {
            self.last.clear(); // a server making up new texts forever
        }
        match self.last.get_mut(&text) {
            Some((at, quiet)) if now.duration_since(*at) < ERR_LOG_EVERY => *quiet += 1,
            Some((at, quiet)) => {
                log::warning!("nats: the server says: -ERR '{text}' (and {quiet} more times)");
                *at = now;
                *quiet = 0;
            }
            None => {
                log::warning!("nats: the server says: -ERR '{text}'");
                self.last.insert(text, (now, 0));
            }
        }
    }
}

/// The writer of connection `generation`.
fn write(shared: &Shared, mut stream: TcpStream, generation: u64) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let (mut control, mut outbox, mut ends) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        {
            let state = lock(shared);
            let mut state = shared
                .writer
                .wait_while(state, |s| {
                    !s.stopping
                        && s.generation == generation
                        && s.control.is_empty()
                        && s.outbox.is_empty()
                })
                .unwrap_or_else(|e| e.into_inner());
            if state.stopping || state.generation != generation {
                return;
            }
            std::mem::swap(&mut control, &mut state.control);
            std::mem::swap(&mut outbox, &mut state.outbox);
            std::mem::swap(&mut ends, &mut state.outbox_ends);
            state.writing = true;
        }
        let sent = write_batch(shared, &mut stream, &control, &outbox, &ends);
        let lost = (ends.len() - sent) as u64;
        let c = &shared.counters;
        c.sent.fetch_add(sent as u64, Ordering::Relaxed);
        c.dropped_down.fetch_add(lost, Ordering::Relaxed);
        lock(shared).writing = false;
        shared.retry.notify_all(); // a stopping bridge waits for the flush
        if lost > 0 {
            // The reader sees the connection end, and reconnects.
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        control.clear();
        outbox.clear();
        ends.clear();
        if outbox.capacity() > bridge::OUTBOX_BYTES / 4 {
            outbox = Vec::new(); // a burst's buffer is not kept
        }
    }
}

/// Writes `control`, then the publishes in `outbox` (ending at `ends`) in
/// chunks, with control queued meanwhile between them. Returns how many
/// publishes were written whole; fewer than all: the write failed.
fn write_batch(
    shared: &Shared,
    stream: &mut TcpStream,
    control: &[u8],
    outbox: &[u8],
    ends: &[usize],
) -> usize {
    if let Err(e) = stream.write_all(control) {
        log::debug!("nats: write failed: {e}");
        return 0;
    }
    let (mut start, mut sent) = (0, 0);
    while sent < ends.len() {
        // Whole messages, up to a chunk (at least one).
        let mut n = sent + 1;
        while n < ends.len() && ends[n] - start <= WRITE_CHUNK {
            n += 1;
        }
        if let Err(e) = stream.write_all(&outbox[start..ends[n - 1]]) {
            log::debug!("nats: write failed: {e}");
            return sent;
        }
        start = ends[n - 1];
        sent = n;
        let more = std::mem::take(&mut lock(shared).control);
        if !more.is_empty()
            && let Err(e) = stream.write_all(&more)
        {
            log::debug!("nats: write failed: {e}");
            return sent;
        }
    }
    sent
}
