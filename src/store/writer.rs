//! The log writer: one thread that owns the active segment. It takes every
//! record queued since its last write, writes them in one go and syncs once
//! (group commit), then hands them to the broker's sink and wakes whoever
//! waits on the batch. It also starts a new segment past the size limit
//! (writing the state at its head) and deletes segments nobody needs.
//!
//! The active segment is grown ahead of the records in zero-filled steps of
//! [`GROW`]: a sync of a write inside the file's length flushes the data
//! alone, while one that lengthens the file must also commit its new size
//! to the file system's journal, which costs about half as much again.
//! Recovery reads an all-zero tail as the clean end of a segment.

use super::recover::{Recovered, Segment, now_ms, segment_path};
use super::state::State;
use super::{Fsync, Options, Record, Store, StoreError, lock};
use crate::log;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often the writer looks for segments to delete.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The active segment grows, zero-filled, by this much ahead of the records.
const GROW: u64 = 1024 * 1024;

/// The records of one write; whoever queued one waits on it.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    result: Mutex<Option<Result<(), StoreError>>>,
    done: Condvar,
}

impl Batch {
    /// Waits until the batch is written; see `Store::wait`, which also
    /// wakes the writer.
    pub(super) fn wait(&self, deadline: Instant) -> Result<(), StoreError> {
        let mut result = lock(&self.result);
        loop {
            if let Some(r) = result.as_ref() {
                return r.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::TimedOut);
            }
            result = self
                .done
                .wait_timeout(result, left)
                .map(|(r, _)| r)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    pub(super) fn finish(&self, r: Result<(), StoreError>) {
        *lock(&self.result) = Some(r);
        self.done.notify_all();
    }
}

/// Records queued for the next write.
pub(super) struct Pending {
    bytes: Vec<u8>,
    /// Where each record's frame ends in `bytes`.
    ends: Vec<usize>,
    records: Vec<Record>,
    batch: Arc<Batch>,
}

impl Pending {
    pub(super) fn new(_fsync: Option<Fsync>) -> Pending {
        Pending {
            bytes: Vec::new(),
            ends: Vec::new(),
            records: Vec::new(),
            batch: Arc::new(Batch::default()),
        }
    }

    pub(super) fn push(&mut self, record: Record) -> Arc<Batch> {
        record.encode(&mut self.bytes);
        self.ends.push(self.bytes.len());
        self.records.push(record);
        self.batch.clone()
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn take(&mut self) -> Pending {
        std::mem::replace(self, Pending::new(None))
    }
}

/// Starts the writer thread over what recovery found.
pub(super) fn spawn(
    store: Arc<Store>,
    options: Options,
    recovered: Recovered,
) -> io::Result<JoinHandle<()>> {
    // Placeholder until the first segment of this run is begun.
    let file = File::open(&options.dir)?;
    let mut writer = Writer {
        options,
        state: recovered.state,
        segments: recovered.segments,
        file,
        length: 0,
        head: 0,
        unsnapshotted: false,
        last_sweep: Instant::now(),
    };
    // Every run writes to a segment of its own, which begins with the whole
    // state: a segment torn while it was begun (a crash in a rotation)
    // never stands alone behind older ones that could be deleted.
    if let Err(e) = writer.begin_segment(&store) {
        // A full disk must not keep the broker from starting: it appends to
        // the last segment, and deletes none until a new one has begun.
        let Some(last) = writer.segments.last() else {
            return Err(e);
        };
        log::warning!(
            "log: cannot begin a new segment ({e}); appending to {} and deleting none until one begins",
            last.path.display()
        );
        writer.file = File::options().read(true).write(true).open(&last.path)?;
        writer.length = writer.file.metadata()?.len();
        writer.unsnapshotted = true;
    }
    writer.gauges(&store);
    thread::Builder::new()
        .name("log writer".into())
        .spawn(move || writer.run(&store))
}

struct Writer {
    options: Options,
    state: State,
    /// Oldest first; the last is the one written to.
    segments: Vec<Segment>,
    file: File,
    /// The active file's length: its records, then zeros.
    length: u64,
    /// Bytes of the state snapshot at the active segment's head (not
    /// counted against `--segment-bytes`).
    head: u64,
    /// The active segment does not begin with the state (start-up could not
    /// begin one): nothing before it may be deleted.
    unsnapshotted: bool,
    last_sweep: Instant,
}

impl Writer {
    fn run(&mut self, store: &Store) {
        loop {
            let (taken, closing) = {
                let mut inner = lock(&store.inner);
                if inner.pending.is_empty() && !inner.closing {
                    inner = store
                        .work
                        .wait_timeout(inner, SWEEP_EVERY)
                        .map(|(i, _)| i)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                (inner.pending.take(), inner.closing)
            };
            if !taken.is_empty() {
                self.write(store, taken);
            }
            if self.last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep(store);
            }
            if closing && lock(&store.inner).pending.is_empty() {
                return;
            }
        }
    }

    /// Writes one batch; on success the records are applied and sunk.
    fn write(&mut self, store: &Store, batch: Pending) {
        let result = self
            .rotate_if_full(store)
            .and_then(|()| self.append(store, &batch));
        match result {
            Ok(()) => {
                let mut messages = 0;
                let last = self.segments.len() - 1;
                for r in &batch.records {
                    if let Record::Message(s) = r {
                        messages += 1;
                        self.segments[last].last_id = self.segments[last].last_id.max(s.id);
                    }
                    self.state.apply(r);
                }
                self.segments[last].written_ms = now_ms();
                store.metrics.stored.fetch_add(messages, Ordering::Relaxed);
                if let Some(sink) = store.sink.get() {
                    sink(&batch.records);
                }
                batch.batch.finish(Ok(()));
            }
            Err(e) => {
                store.metrics.write_errors.fetch_add(1, Ordering::Relaxed);
                log::warning!("log: write failed, answering 507: {e}");
                store.forget_keys(&batch.records);
                batch.batch.finish(Err(StoreError::Failed(e.to_string())));
            }
        }
        self.gauges(store);
    }

    /// Writes the batch's bytes and syncs as `--fsync` says; on failure the
    /// segment is cut back to where it was.
    fn append(&mut self, store: &Store, batch: &Pending) -> io::Result<()> {
        let durable = batch
            .records
            .iter()
            .any(|r| !matches!(r, Record::Ack { .. }));
        let at = self.active().bytes;
        self.grow(at + batch.bytes.len() as u64);
        let written = match self.options.fsync {
            Fsync::Always => {
                let mut start = 0;
                batch.ends.iter().try_for_each(|&end| {
                    let offset = at + start as u64;
                    self.file.write_all_at(&batch.bytes[start..end], offset)?;
                    start = end;
                    self.sync(store)
                })
            }
            Fsync::Batch => self
                .file
                .write_all_at(&batch.bytes, at)
                .and_then(|()| if durable { self.sync(store) } else { Ok(()) }),
            Fsync::Never => self.file.write_all_at(&batch.bytes, at),
        };
        match written {
            Ok(()) => {
                self.active_mut().bytes += batch.bytes.len() as u64;
                self.length = self.length.max(self.active().bytes);
                Ok(())
            }
            Err(e) => {
                // Nothing half-written stays: the next record must follow a
                // whole one. If even this fails, recovery cuts it.
                let _ = self.file.set_len(at);
                self.length = at;
                Err(e)
            }
        }
    }

    /// Zero-fills the active file ahead of `end` by up to [`GROW`]. If
    /// that fails (a full disk, a file size limit), the write goes on
    /// without it and meets the error itself, if it must.
    fn grow(&mut self, end: u64) {
        if end <= self.length {
            return;
        }
        // Not past the segment's size limit (after its head): it closes there.
        let limit = end.max(self.head + self.options.segment_bytes);
        let target = end.next_multiple_of(GROW).min(limit);
        if target <= self.length {
            return;
        }
        let zeros = vec![0u8; (target - self.length) as usize];
        if self.file.write_all_at(&zeros, self.length).is_ok() {
            self.length = target;
        } else {
            let _ = self.file.set_len(self.length);
        }
    }

    fn sync(&self, store: &Store) -> io::Result<()> {
        let started = Instant::now();
        self.file.sync_data()?;
        let m = &store.metrics;
        m.syncs.fetch_add(1, Ordering::Relaxed);
        m.sync_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Past the size limit, begins a new segment.
    fn rotate_if_full(&mut self, store: &Store) -> io::Result<()> {
        if self.active().bytes.saturating_sub(self.head) < self.options.segment_bytes {
            return Ok(());
        }
        self.begin_segment(store)
    }

    /// Closes the active segment (cut back to its records) and begins the
    /// next one with a snapshot of the state at its head, synced, with its
    /// directory entry, before anything is written after it.
    fn begin_segment(&mut self, store: &Store) -> io::Result<()> {
        if let Some(active) = self.segments.last() {
            let file = File::options().write(true).open(&active.path)?;
            file.set_len(active.bytes).and_then(|()| file.sync_data())?;
            self.length = active.bytes;
        }
        let seq = self.segments.last().map_or(1, |s| s.seq + 1);
        let path = segment_path(&self.options.dir, seq);
        let mut head = Vec::new();
        self.state
            .prune_keys(now_ms().saturating_sub(key_window_ms(store)));
        for record in self.state.snapshot(store.next_id.load(Ordering::Relaxed)) {
            record.encode(&mut head);
        }
        let file = File::options()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let written = file.write_all_at(&head, 0).and_then(|()| file.sync_data());
        if let Err(e) = written.and_then(|()| sync_dir(&self.options)) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.file = file;
        self.length = head.len() as u64;
        self.head = head.len() as u64;
        self.unsnapshotted = false;
        self.segments.push(Segment {
            seq,
            path,
            bytes: head.len() as u64,
            last_id: 0,
            written_ms: now_ms(),
        });
        Ok(())
    }

    /// Deletes the segments that no session needs and that are older than
    /// the retention.
    fn sweep(&mut self, store: &Store) {
        self.last_sweep = Instant::now();
        if self.unsnapshotted {
            // Once a second, until there is room for the state again.
            if self.begin_segment(store).is_ok() {
                log::info!("log: a new segment began with the state; old ones may go again");
            }
            self.gauges(store);
            return;
        }
        let floor = self.state.floor();
        let oldest = now_ms().saturating_sub(self.options.retention.as_millis() as u64);
        // Oldest first, and only an unbroken run of them: the state each
        // later segment begins with stands for everything before it.
        let mut deleted = 0;
        for segment in &self.segments[..self.segments.len() - 1] {
            let unneeded = segment.last_id <= floor && segment.written_ms <= oldest;
            if !unneeded || fs::remove_file(&segment.path).is_err() {
                break;
            }
            log::debug!("log: deleted {}", segment.path.display());
            deleted += 1;
        }
        self.segments.drain(..deleted);
        self.gauges(store);
    }

    fn gauges(&self, store: &Store) {
        let bytes: u64 = self.segments.iter().map(|s| s.bytes).sum();
        store.metrics.bytes.store(bytes, Ordering::Relaxed);
        store
            .metrics
            .segments
            .store(self.segments.len() as u64, Ordering::Relaxed);
    }
}

fn key_window_ms(store: &Store) -> u64 {
    store.dedupe_window.as_millis() as u64
}

/// Makes a new file's directory entry durable.
fn sync_dir(options: &Options) -> io::Result<()> {
    File::open(&options.dir)?.sync_all()
}
