//! `SIGTERM` and `SIGINT` as a graceful stop. The standard library has no
//! signal API, so this module calls the C library directly: it is the only
//! `unsafe` code in the crate, and it is Linux-only (elsewhere
//! [`install`] says it is unsupported and the broker runs without it).
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
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The listening socket to shut down, or -1.
static LISTENER: AtomicI32 = AtomicI32::new(-1);
/// Handlers running now, between reading `LISTENER` and using it.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Whether `SIGTERM` or `SIGINT` arrived.
pub(crate) fn stop_requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Forgets the listening socket before it is closed: no handler will touch
/// its descriptor number, which may then be reused.
pub(crate) fn forget_listener() {
    LISTENER.store(-1, Ordering::SeqCst);
    // A handler on another thread may have read the number just before:
    // wait for it to finish (it does two system calls, no waiting).
    while IN_HANDLER.load(Ordering::SeqCst) > 0 {
        std::thread::yield_now();
    }
}

/// Installs the handler for `SIGTERM` and `SIGINT`; a signal then wakes the
/// accept loop on `listener`.
#[cfg(target_os = "linux")]
pub(crate) fn install(listener: &TcpListener) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    LISTENER.store(listener.as_raw_fd(), Ordering::SeqCst);
    for signum in [linux::SIGTERM, linux::SIGINT] {
        // SAFETY: `on_signal` has the C handler signature and only does
        // async-signal-safe work (see `linux::on_signal`).
        if unsafe { linux::signal(signum, linux::on_signal) } == linux::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Signals are handled on Linux only.
#[cfg(not(target_os = "linux"))]
pub(crate) fn install(_listener: &TcpListener) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Makes a write past the process's file size limit (`RLIMIT_FSIZE`) fail
/// with `EFBIG`, which the log answers with 507, instead of `SIGXFSZ`
/// killing the broker.
#[cfg(target_os = "linux")]
pub(crate) fn ignore_file_size_limit() {
    // SAFETY: `on_file_size` has the C handler signature and does nothing.
    let installed = unsafe { linux::signal(linux::SIGXFSZ, linux::on_file_size) };
    if installed == linux::SIG_ERR {
        crate::log::warning!("cannot catch SIGXFSZ: a file size limit will stop the broker");
    }
}

/// Elsewhere the default action stays.
#[cfg(not(target_os = "linux"))]
pub(crate) fn ignore_file_size_limit() {}

#[cfg(target_os = "linux")]
mod linux {
    use super::{IN_HANDLER, LISTENER, REQUESTED};
    use std::os::raw::c_int;
    use std::sync::atomic::Ordering;

    pub(super) const SIGINT: c_int = 2;
    pub(super) const SIGTERM: c_int = 15;
    pub(super) const SIGXFSZ: c_int = 25;
    const SHUT_RD: c_int = 0;
    /// `SIG_ERR`, `(sighandler_t) -1`.
    pub(super) const SIG_ERR: usize = usize::MAX;

    unsafe extern "C" {
        pub(super) fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
        fn shutdown(fd: c_int, how: c_int) -> c_int;
        fn _exit(status: c_int) -> !;
        fn __errno_location() -> *mut c_int;
    }

    /// Catching the signal (rather than its default, which ends the
    /// process) is all it takes for the write to fail with `EFBIG`.
    pub(super) extern "C" fn on_file_size(_signum: c_int) {}

    pub(super) extern "C" fn on_signal(_signum: c_int) {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            // SAFETY: `_exit` is async-signal-safe and takes no pointers.
            unsafe { _exit(1) }
        }
        IN_HANDLER.fetch_add(1, Ordering::SeqCst);
        let fd = LISTENER.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: `shutdown` is async-signal-safe, and `fd` is still the
            // listener: `forget_listener` waits for this handler before the
            // listener is closed. errno is saved and restored so that the
            // code the signal interrupted sees its own; `__errno_location`
            // returns this thread's errno, valid for the thread's life.
            unsafe {
                let errno = __errno_location();
                let saved = *errno;
                shutdown(fd, SHUT_RD);
                *errno = saved;
            }
        }
        IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    }
}
