//! Sends a pipelining publisher's requests from a thread of its own: while it
//! writes, new requests collect in a buffer, so a fast publisher's requests
//! leave in large writes and a slow one's leave at once.
//!
//! Owns the write side of one connection. Never reads.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    closed: bool,
    /// Why writing stopped, once it has.
    failed: Option<(io::ErrorKind, String)>,
    /// The thread waits for bytes: only then is it worth a notification.
    idle: bool,
}

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
/// sends what is pending (within the socket's write timeout), then stops.
pub(super) struct Outbox {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Outbox {
    /// Starts the writing thread on `stream` (which should have a write timeout).
    pub(super) fn start(stream: TcpStream) -> io::Result<Outbox> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = thread::Builder::new()
            .name("client publisher writer".into())
            .spawn(move || drain(&s, &stream))?;
        Ok(Outbox {
            shared,
            thread: Some(thread),
        })
    }

    /// Appends bytes for the thread to send.
    ///
    /// # Errors
    /// Writing has failed; the connection is useless.
    pub(super) fn push(
        &self,
        write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut state = self.shared.lock();
        if let Some((kind, message)) = &state.failed {
            return Err(io::Error::new(*kind, message.clone()));
        }
        write(&mut state.pending)?;
        if state.idle {
            self.shared.wake.notify_one();
        }
        Ok(())
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn drain(shared: &Shared, mut stream: &TcpStream) {
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
        if let Err(e) = stream.write_all(&sending) {
            shared.lock().failed = Some((e.kind(), e.to_string()));
            return;
        }
        sending.clear();
    }
}
