//! Sends a pipelining publisher's requests from a thread of its own: while it
//! writes, new requests collect in a buffer, so a fast publisher's requests
//! leave in large writes. A request that comes after a pause, while that
//! thread is idle, is written at once by the caller, without waking it: a
//! paced or lock-step publisher's requests leave with no hand-over delay.
//!
//! Owns the write side of one connection. Never reads.

use super::lock;
use crate::deadline::Socket;
use std::io;
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    closed: bool,
    /// Why writing stopped, once it has.
    failed: Option<(io::ErrorKind, String)>,
    /// The thread waits for bytes: only then is it worth a notification.
    idle: bool,
    /// When the last request was pushed.
    last_push: Option<Instant>,
}

/// Requests closer together than this count as a burst, sent by the thread.
const BURST_GAP: Duration = Duration::from_micros(20);

/// Larger pending bytes are always left to the thread, so that a slow
/// reader at the other end never blocks the caller.
const DIRECT_MAX: usize = 16 * 1024;

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The write side of a connection, drained by its own thread. Dropping it
/// does not wait: the thread sends what is pending, then ends (each write
/// bounded by the write timeout; [`Outbox::abort`] ends it at once).
pub(super) struct Outbox {
    shared: Arc<Shared>,
    socket: Mutex<Socket>,
    timeout: Duration,
}

impl Outbox {
    /// Starts the writing thread on `stream`; each write gives up after
    /// `timeout`.
    pub(super) fn start(stream: TcpStream, timeout: Duration) -> io::Result<Outbox> {
        let shared = Arc::new(Shared::default());
        let (s, writer) = (shared.clone(), Socket::new(stream.try_clone()?));
        thread::Builder::new()
            .name("client publisher writer".into())
            .spawn(move || drain(&s, writer, timeout))?;
        let socket = Mutex::new(Socket::new(stream));
        Ok(Outbox {
            shared,
            socket,
            timeout,
        })
    }

    /// Appends `bytes` for the thread to send (or, after a pause, sends them).
    ///
    /// # Errors
    /// Writing has failed; the connection is useless.
    pub(super) fn push(&self, bytes: &[u8]) -> io::Result<()> {
        let now = Instant::now();
        let mut state = self.shared.lock();
        if let Some((kind, message)) = &state.failed {
            return Err(io::Error::new(*kind, message.clone()));
        }
        let in_burst = state
            .last_push
            .is_some_and(|t| now.duration_since(t) < BURST_GAP);
        state.last_push = Some(now);
        state.pending.extend_from_slice(bytes);
        if !state.idle {
            return Ok(()); // the thread is at work and will take these bytes
        }
        if in_burst || state.pending.len() > DIRECT_MAX {
            self.shared.wake.notify_one();
            return Ok(());
        }
        // After a pause, with the thread idle: write here, under the lock so
        // that nothing pushed meanwhile can overtake these bytes.
        let sent = lock(&self.socket).write_all_within(&state.pending, self.timeout);
        state.pending.clear();
        if let Err(e) = sent {
            state.failed = Some((e.kind(), e.to_string()));
            return Err(e);
        }
        Ok(())
    }
}

impl Outbox {
    /// Gives the connection up: what is pending is not sent, and the
    /// thread's current write fails at once.
    pub(super) fn abort(&self) {
        self.shared.lock().pending.clear();
        let _ = lock(&self.socket)
            .get_ref()
            .shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

fn drain(shared: &Shared, mut socket: Socket, timeout: Duration) {
    let mut sending = Vec::new();
    loop {
        {
            let mut state = shared.lock();
            while state.pending.is_empty() && !state.closed {
                state.idle = true;
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                state.idle = false;
            }
            if state.pending.is_empty() {
                return; // closed, and everything sent
            }
            std::mem::swap(&mut state.pending, &mut sending);
        }
        if let Err(e) = socket.write_all_within(&sending, timeout) {
            shared.lock().failed = Some((e.kind(), e.to_string()));
            return;
        }
        sending.clear();
    }
}
