//! Minimal leveled logging to stderr: one line per event.
//!
//! Owns the process-wide log level. Never logs per message at `info`.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

/// How much the broker says on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Only failures the operator must act on.
    Error = 0,
    /// Also dropped subscribers, refused connections and similar.
    Warn = 1,
    /// Also start-up and shutdown (the default).
    Info = 2,
    /// Also every connection and subscription.
    Debug = 3,
}

impl Level {
    /// Parses `error`, `warn`, `info` or `debug`.
    ///
    /// ```
    /// use message_broker::log::Level;
    /// assert_eq!(Level::parse("debug"), Some(Level::Debug));
    /// assert_eq!(Level::parse("loud"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "error" => Some(Level::Error),
            "warn" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the process-wide level.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether a line at `level` would be written.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line, `broker: <level>: <text>`, if `level` is enabled.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    if enabled(level) {
        // One write_fmt on a locked handle keeps lines from interleaving.
        let _ = writeln!(std::io::stderr().lock(), "broker: {}: {args}", level.name());
    }
}

#[allow(unused_macros)]
#[doc(hidden)]
macro_rules! error { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($a)*)) } }
macro_rules! warning { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($a)*)) } }
macro_rules! info { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($a)*)) } }
macro_rules! debug { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($a)*)) } }
#[allow(unused_imports, unused_macros)]
pub(crate) use {debug, error, info, warning};
