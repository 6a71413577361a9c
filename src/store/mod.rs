//! Storage for at-least-once delivery (PROTOCOL.md sections 6.2 and 6.4):
//! message ids, idempotency keys, and, with a data directory, the log.
//!
//! - `crc32c`: the checksum of every record.
//! - `record`: the records and their framing (pure).
//! - `state`: what the records add up to: sessions, positions, retained
//!   messages, keys (pure).
//! - `recover`: start-up: read the segments, cut bad tails, rebuild.
//! - `replay`: the stored messages after an id, for a stream that resumes.
//! - `writer`: the thread that appends, group-commits and rotates.
//!
//! Owns the files and the order of stored messages: an id is given out
//! under the same lock that queues its record, so the log, the ids and the
//! order in which stored messages reach the broker's `sink` all agree.
//! It must not import anything from `broker`: the broker hands it a sink
//! for the records that became durable, and reads its counters.

mod crc32c;
mod keys;
mod record;
mod recover;
mod replay;
mod state;
mod writer;

pub(crate) use record::{Record, Stored};
pub(crate) use recover::Recovered;
pub(crate) use replay::{Replay, Start};
pub(crate) use writer::Batch;

use std::fmt;
use std::fs::{self, File, TryLockError};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// When the log is flushed to the disk (`fdatasync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    /// After every stored message, one at a time.
    Always,
    /// Once per batch of whatever arrived while the last sync ran (group
    /// commit); publishers wait for it. The default.
    #[default]
    Batch,
    /// Never: written to the operating system before the answer, so a
    /// crash of the broker loses nothing, but a crash of the machine loses
    /// the last moments.
    Never,
}

impl Fsync {
    /// `always`, `batch` or `never`.
    pub fn parse(s: &str) -> Option<Fsync> {
        match s {
            "always" => Some(Fsync::Always),
            "batch" => Some(Fsync::Batch),
            "never" => Some(Fsync::Never),
            _ => None,
        }
    }
}

/// How the log behaves; see `broker::Config` for the meanings.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) dir: PathBuf,
    pub(crate) fsync: Fsync,
    pub(crate) segment_bytes: u64,
    pub(crate) retention: Duration,
    pub(crate) backlog_bytes: usize,
}

/// Why a record is not known to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// The write or the sync failed: nothing was stored (507).
    Failed(String),
    /// The log did not answer by the deadline: the record may still be
    /// stored later (503; a retry with the same key is safe).
    TimedOut,
    /// The broker is stopping: nothing was stored (503).
    Stopping,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Failed(e) => write!(f, "could not store the message: {e}"),
            StoreError::Stopping => f.write_str("broker shutting down: not stored"),
            StoreError::TimedOut => f.write_str(
                "the log did not answer in time; the message may still be stored \
                 (a retry with the same Idempotency-Key is safe)",
            ),
        }
    }
}

/// Where records that became durable go, in log order (the broker routes
/// the messages among them).
pub(crate) type Sink = Box<dyn Fn(&[Record]) + Send + Sync>;

/// Counters and gauges of the log, for `GET /metrics`.
#[derive(Debug, Default)]
pub(crate) struct StoreMetrics {
    pub(crate) bytes: AtomicU64,
    pub(crate) segments: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) sync_nanos: AtomicU64,
    pub(crate) cut_bytes: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) stored: AtomicU64,
    pub(crate) duplicates: AtomicU64,
}

/// What [`Store::publish`] did.
#[derive(Debug)]
pub(crate) enum Published {
    /// The key was seen in the window: the first message's id; nothing new.
    Duplicate(u64, Option<Arc<Batch>>),
    /// A new message with this id; stored once the batch (if any) is done.
    New(u64, Option<Arc<Batch>>),
}

/// What a publish carries.
#[derive(Debug, Clone)]
pub(crate) struct Publish {
    pub(crate) topic: String,
    pub(crate) data: String,
    pub(crate) qos1: bool,
    pub(crate) retain: bool,
    pub(crate) key: Option<String>,
}

impl Publish {
    /// Whether it must be stored before it is answered.
    pub(crate) fn is_stored(&self) -> bool {
        self.qos1 || self.retain
    }
}

/// Records waiting for the writer, and the keys in their window.
struct Inner {
    pending: writer::Pending,
    keys: keys::Keys,
    closing: bool,
}

/// Ids, keys and (with a data directory) the log.
pub(crate) struct Store {
    next_id: AtomicU64,
    inner: Mutex<Inner>,
    work: Condvar,
    sink: OnceLock<Sink>,
    dedupe_window: Duration,
    /// `None`: in memory.
    disk: Option<Options>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The lock on the data directory, held until [`Store::close`].
    dir_lock: Mutex<Option<File>>,
    pub(crate) metrics: StoreMetrics,
}

/// A batch that failed before it began: the broker is stopping.
fn stopping() -> Arc<Batch> {
    let batch = Batch::default();
    batch.finish(Err(StoreError::Stopping));
    Arc::new(batch)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first id to give out: past every id ever stored, and past the clock
/// in microseconds, so ids are not reused across restarts even without a
/// data directory.
fn first_id(max_stored: u64) -> u64 {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64);
    clock.max(max_stored.saturating_add(1))
}

impl Store {
    fn new(
        disk: Option<Options>,
        lock_file: Option<File>,
        dedupe_window: Duration,
        max_id: u64,
    ) -> Store {
        Store {
            next_id: AtomicU64::new(first_id(max_id)),
            inner: Mutex::new(Inner {
                pending: writer::Pending::new(disk.as_ref().map(|d| d.fsync)),
                keys: keys::Keys::default(),
                closing: false,
            }),
            work: Condvar::new(),
            sink: OnceLock::new(),
            dedupe_window,
            disk,
            writer: Mutex::new(None),
            dir_lock: Mutex::new(lock_file),
            metrics: StoreMetrics::default(),
        }
    }

    /// A store without a data directory: everything in memory.
    pub(crate) fn memory(dedupe_window: Duration) -> Arc<Store> {
        Arc::new(Store::new(None, None, dedupe_window, 0))
    }

    /// Opens (creating it if missing) and locks the data directory, and
    /// reads the log in it. Call [`Store::start`] before anything is
    /// stored.
    ///
    /// # Errors
    /// The directory cannot be created, opened, read or locked (another
    /// broker uses it).
    pub(crate) fn open(
        options: Options,
        dedupe_window: Duration,
    ) -> io::Result<(Arc<Store>, Recovered)> {
        let dir = &options.dir;
        let opening = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot open data directory {}: {e}", dir.display()),
            )
        };
        fs::create_dir_all(dir).map_err(opening)?;
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(opening)?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let why = format!(
                    "data directory {} is in use by another broker",
                    dir.display()
                );
                return Err(io::Error::new(io::ErrorKind::AddrInUse, why));
            }
            Err(TryLockError::Error(e)) => return Err(opening(e)),
        }
        // A file size limit must fail a write (and answer 507), not kill us.
        crate::signal::ignore_file_size_limit();
        let recovered = recover::recover(dir, options.backlog_bytes).map_err(opening)?;
        let store = Store::new(
            Some(options),
            Some(lock_file),
            dedupe_window,
            recovered.state.max_id,
        );
        {
            let mut inner = lock(&store.inner);
            let now = (Instant::now(), recover::now_ms());
            let mut keys: Vec<_> = recovered.state.keys.iter().collect();
            keys.sort_by_key(|(_, (_, time_ms))| *time_ms);
            for ((topic, key), (id, time_ms)) in keys {
                let age = Duration::from_millis(now.1.saturating_sub(*time_ms));
                if age < dedupe_window {
                    let at = now.0.checked_sub(age).unwrap_or(now.0);
                    inner.keys.remember(topic, key, *id, at, None);
                }
            }
        }
        let m = &store.metrics;
        m.cut_bytes.store(recovered.cut_bytes, Ordering::Relaxed);
        Ok((Arc::new(store), recovered))
    }

    /// Where durable records go; starts the writer (with a data directory).
    /// `recovered` is what [`Store::open`] read.
    ///
    /// # Errors
    /// The writer could not open its segment or start its thread.
    pub(crate) fn start(
        self: &Arc<Self>,
        sink: Sink,
        recovered: Option<Recovered>,
    ) -> io::Result<()> {
        let _ = self.sink.set(sink);
        let (Some(options), Some(recovered)) = (&self.disk, recovered) else {
            return Ok(());
        };
        let thread = writer::spawn(self.clone(), options.clone(), recovered)?;
        *lock(&self.writer) = Some(thread);
        Ok(())
    }

    /// The stored messages after `after` up to `until`, read back from the
    /// log for a stream that resumes; `None` without a data directory.
    ///
    /// # Errors
    /// The data directory cannot be read.
    pub(crate) fn replay(&self, after: u64, until: u64) -> io::Result<Option<(Start, Replay)>> {
        match &self.disk {
            Some(options) => Replay::open(&options.dir, after, until).map(Some),
            None => Ok(None),
        }
    }

    /// The next id to be given out: every id before it is taken.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed)
    }

    /// Whether there is a data directory.
    pub(crate) fn is_durable(&self) -> bool {
        self.disk.is_some()
    }

    /// Gives `p` its id, or finds its key in the window. With a data
    /// directory a message that must be stored goes into the log, and the
    /// sink routes it once written; the caller routes the others (in
    /// memory, "stored" means held in the subscribers' queues).
    pub(crate) fn publish(&self, p: &Publish) -> Published {
        if p.key.is_none() && !(p.is_stored() && self.disk.is_some()) {
            // No lock: ids only need to be unique and growing; only those
            // of the log must follow its order (below).
            if p.is_stored() {
                self.metrics.stored.fetch_add(1, Ordering::Relaxed);
            }
            return Published::New(self.next_id.fetch_add(1, Ordering::Relaxed), None);
        }
        let mut inner = lock(&self.inner);
        if inner.closing && self.disk.is_some() {
            // The writer is gone or going: answered at once, not stored.
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            return Published::New(id, Some(stopping()));
        }
        let now = Instant::now();
        if let Some(key) = &p.key
            && let Some(seen) = inner.keys.find(&p.topic, key, now, self.dedupe_window)
        {
            self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
            return Published::Duplicate(seen.id, seen.batch.clone());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if !p.is_stored() || self.disk.is_none() {
            if let Some(key) = &p.key {
                inner.keys.remember(&p.topic, key, id, now, None);
            }
            if p.is_stored() {
                self.metrics.stored.fetch_add(1, Ordering::Relaxed);
            }
            return Published::New(id, None);
        }
        let record = Record::Message(Stored {
            id,
            time_ms: recover::now_ms(),
            qos1: p.qos1,
            retain: p.retain,
            topic: p.topic.clone(),
            data: p.data.clone(),
            key: p.key.clone(),
        });
        // No wake-up here: the writer is woken by the first one to wait, so
        // that a pipelined burst goes into one batch.
        let batch = inner.pending.push(record);
        if let Some(key) = &p.key {
            inner
                .keys
                .remember(&p.topic, key, id, now, Some(batch.clone()));
        }
        Published::New(id, Some(batch))
    }

    /// Appends a session record (subscribe, ack, end); in memory there is
    /// nothing to keep. [`Store::wait`] for a record that must be durable;
    /// the others are written with the next batch, or within a second.
    pub(crate) fn append(&self, record: Record) -> Option<Arc<Batch>> {
        self.disk.as_ref()?;
        let mut inner = lock(&self.inner);
        if inner.closing {
            return Some(stopping());
        }
        Some(inner.pending.push(record))
    }

    /// Waits until `batch` is written (and synced, as `--fsync` says).
    ///
    /// # Errors
    /// The write or the sync failed, or `deadline` passed first.
    pub(crate) fn wait(&self, batch: &Batch, deadline: Instant) -> Result<(), StoreError> {
        // Taking the lock orders this wake-up after the writer's check.
        drop(lock(&self.inner));
        self.work.notify_one();
        batch.wait(deadline)
    }

    /// Writes what is pending and stops the writer (broker shutdown).
    pub(crate) fn close(&self) {
        lock(&self.inner).closing = true;
        self.work.notify_all();
        if let Some(thread) = lock(&self.writer).take() {
            let _ = thread.join();
        }
        // Closing the file lets go of the lock: the next broker may start.
        lock(&self.dir_lock).take();
    }

    /// A batch failed: its keys must not dedupe a retry.
    fn forget_keys(&self, records: &[Record]) {
        let mut inner = lock(&self.inner);
        for r in records {
            if let Record::Message(s) = r
                && let Some(key) = &s.key
            {
                inner.keys.forget(&s.topic, key, s.id);
            }
        }
    }
}
