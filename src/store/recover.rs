//! Start-up: reads every segment of the data directory in order, cuts a
//! torn or corrupt tail (and says so), rebuilds the [`State`] and the
//! backlog each durable session is still owed.
//!
//! Two passes: the first checks every record and builds the state; the
//! second rereads only the segments that hold messages some session has not
//! answered, so a long log that everyone has read costs one pass.

use super::record::{Cut, Record, Stored};
use super::state::State;
use crate::log;
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// One segment file.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    /// The highest message id in it (0: none).
    pub(crate) last_id: u64,
    /// When it was last written, in ms since the epoch.
    pub(crate) written_ms: u64,
}

/// The name of segment `seq`.
pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.log"))
}

/// What start-up found.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    pub(crate) state: State,
    /// Per session, the messages it is owed, oldest first.
    pub(crate) backlogs: HashMap<SocketAddr, Vec<Stored>>,
    /// Sessions whose backlog was past the limit: they end.
    pub(crate) over_backlog: Vec<SocketAddr>,
    pub(crate) segments: Vec<Segment>,
    /// Message records read.
    pub(crate) messages: u64,
    /// Bytes cut off torn or corrupt tails.
    pub(crate) cut_bytes: u64,
}

/// Reads the log in `dir`, cutting bad tails in place.
///
/// # Errors
/// The directory or a segment cannot be read, or a cut cannot be written.
pub(crate) fn recover(dir: &Path, backlog_bytes: usize) -> io::Result<Recovered> {
    let mut found = Recovered {
        segments: list(dir)?,
        ..Recovered::default()
    };
    for segment in &mut found.segments {
        let bytes = fs::read(&segment.path)?;
        let mut at = 0;
        while at < bytes.len() {
            match Record::decode(&bytes[at..]) {
                Ok((record, used)) => {
                    if let Record::Message(s) = &record {
                        segment.last_id = segment.last_id.max(s.id);
                        found.messages += 1;
                    }
                    found.state.apply(&record);
                    at += used;
                }
                Err(why) => {
                    // The writer grows a segment with zeros ahead of its
                    // records: an all-zero rest is its clean end.
                    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                    if end > at {
                        cut(&segment.path, at, end, why)?;
                        found.cut_bytes += (end - at) as u64;
                    }
                    break;
                }
            }
        }
        segment.bytes = at as u64;
    }
    owed(&mut found, backlog_bytes)?;
    Ok(found)
}

/// Segment files in `dir`, oldest first.
pub(super) fn list(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let written_ms = entry
            .metadata()?
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        segments.push(Segment {
            seq,
            path: entry.path(),
            bytes: 0,
            last_id: 0,
            written_ms,
        });
    }
    segments.sort_by_key(|s| s.seq);
    Ok(segments)
}

/// Truncates `path` at `at`, saying what was cut (up to `end`, where its
/// zero-filled rest begins) and why.
fn cut(path: &Path, at: usize, end: usize, why: Cut) -> io::Result<()> {
    log::warning!(
        "log: {}: cut {} bytes at offset {at}: {why}",
        path.display(),
        end - at
    );
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(at as u64)?;
    file.sync_all()
}

/// The second pass: each session's backlog.
fn owed(found: &mut Recovered, backlog_bytes: usize) -> io::Result<()> {
    let floor = found.state.floor();
    let mut sizes: HashMap<SocketAddr, usize> = HashMap::new();
    for segment in found.segments.iter().filter(|s| s.last_id > floor) {
        let bytes = fs::read(&segment.path)?;
        let mut at = 0;
        while let Ok((record, used)) = Record::decode(&bytes[at.min(bytes.len())..]) {
            at += used;
            let Record::Message(s) = record else { continue };
            if !s.qos1 {
                continue;
            }
            for (endpoint, session) in &found.state.sessions {
                if !session.owes(&s.topic, s.id) {
                    continue;
                }
                let size = sizes.entry(*endpoint).or_default();
                *size += s.data.len() + s.topic.len();
                if *size > backlog_bytes {
                    if !found.over_backlog.contains(endpoint) {
                        found.over_backlog.push(*endpoint);
                    }
                    continue;
                }
                found.backlogs.entry(*endpoint).or_default().push(s.clone());
            }
        }
    }
    for endpoint in &found.over_backlog {
        found.backlogs.remove(endpoint);
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
