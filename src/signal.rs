//! `SIGTERM` and `SIGINT` as a graceful stop. The standard library has no
//! signal API, so this module calls the C library directly: it is the only
//! `unsafe` code in the crate.
//!
//! The handler does only async-signal-safe work: it sets a flag and shuts
//! down the listening socket, which wakes the accept loop blocked on it (on
//! Linux, `accept` then fails with `EINVAL`); the accept loop sees the flag
//! and stops. A second signal exits at once with status 1.
//!
//! Under Unikraft `rt_sigaction` succeeds but no signal is ever delivered;
//! the VM is stopped from outside, and nothing here is needed.
#![allow(unsafe_code)]

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;
const SHUT_RD: c_int = 0;
/// `SIG_ERR`, `(sighandler_t) -1`.
const SIG_ERR: usize = usize::MAX;

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The listening socket to shut down, or -1.
static LISTENER: AtomicI32 = AtomicI32::new(-1);

unsafe extern "C" {
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    fn shutdown(fd: c_int, how: c_int) -> c_int;
    fn _exit(status: c_int) -> !;
    fn __errno_location() -> *mut c_int;
}

extern "C" fn on_signal(_signum: c_int) {
    if REQUESTED.swap(true, Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe and takes no pointers.
        unsafe { _exit(1) }
    }
    let fd = LISTENER.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: `shutdown` is async-signal-safe; on a stale descriptor it
        // fails harmlessly. errno is saved and restored so that the code the
        // signal interrupted sees its own; `__errno_location` returns this
        // thread's errno, valid for the thread's life.
        unsafe {
            let errno = __errno_location();
            let saved = *errno;
            shutdown(fd, SHUT_RD);
            *errno = saved;
        }
    }
}

/// Installs the handler for `SIGTERM` and `SIGINT`; a signal then wakes the
/// accept loop on `listener`.
pub(crate) fn install(listener: &TcpListener) -> io::Result<()> {
    LISTENER.store(listener.as_raw_fd(), Ordering::SeqCst);
    for signum in [SIGTERM, SIGINT] {
        // SAFETY: `on_signal` has the C handler signature and only does
        // async-signal-safe work (see above).
        if unsafe { signal(signum, on_signal) } == SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Forgets the listening socket (it is about to be closed, and its number
/// may be reused).
pub(crate) fn forget_listener() {
    LISTENER.store(-1, Ordering::SeqCst);
}

/// Whether `SIGTERM` or `SIGINT` arrived.
pub(crate) fn stop_requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
