//! Reading the log back for a stream that resumes (PROTOCOL.md section 6.3):
//! the stored messages after an id, oldest first, straight from the segment
//! files, while the writer goes on appending to the newest one.
//!
//! Every segment is opened when the replay begins, so one that the writer
//! deletes meanwhile is still read to its end. Reads one frame at a time:
//! a replay holds one message in memory, whatever the log's size.

use super::record::{self, Record, Stored};
use super::recover;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// Read buffer per segment being replayed.
const READ_BUFFER: usize = 64 * 1024;

/// The largest frame a replay reads; a longer one ends the replay (it can
/// only be corruption, or a record of a later version).
const MAX_FRAME: usize = 64 * 1024 * 1024;

/// The stored messages after an id, oldest first.
#[derive(Debug)]
pub(crate) struct Replay {
    segments: VecDeque<BufReader<File>>,
    after: u64,
    until: u64,
    /// The first message, read ahead to learn where a reset begins.
    peeked: Option<Stored>,
    payload: Vec<u8>,
}

/// Where a replay begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// The log reaches back to the id asked for: nothing is missing.
    Continuous,
    /// It does not: the oldest message it still has is this one.
    Reset(u64),
}

impl Replay {
    /// Opens the log in `dir` for the messages after `after`, up to and
    /// including `until`.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub(crate) fn open(dir: &Path, after: u64, until: u64) -> io::Result<(Start, Replay)> {
        let mut segments = VecDeque::new();
        for segment in recover::list(dir)? {
            match File::open(&segment.path) {
                Ok(file) => segments.push_back(BufReader::with_capacity(READ_BUFFER, file)),
                // Deleted since it was listed: it held nothing anyone needs.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Out of descriptors, say: not a silent gap, an error (the
                // stream then says `reset`).
                Err(e) => return Err(e),
            }
        }
        let mut replay = Replay {
            segments,
            after,
            until,
            peeked: None,
            payload: Vec::new(),
        };
        // Each segment begins with the ids given out before it: the log
        // reaches back to `after` if its oldest segment began at or before.
        let begun = match replay.segments.front_mut() {
            Some(first) => match read_frame(first, &mut replay.payload) {
                Some(Record::Ids { max }) => max,
                _ => 0,
            },
            None => until,
        };
        // `begun` is the first id of this segment's time: ids before it
        // were given out before it began.
        if begun <= after.saturating_add(1) {
            return Ok((Start::Continuous, replay));
        }
        replay.after = 0;
        replay.peeked = replay.read();
        let from = replay
            .peeked
            .as_ref()
            .map_or(begun.saturating_add(1), |s| s.id);
        Ok((Start::Reset(from), replay))
    }

    fn read(&mut self) -> Option<Stored> {
        while let Some(segment) = self.segments.front_mut() {
            match read_frame(segment, &mut self.payload) {
                Some(Record::Message(s)) if s.id > self.until => {
                    self.segments.clear();
                }
                Some(Record::Message(s)) if s.id > self.after => return Some(s),
                Some(_) => {}
                None => {
                    self.segments.pop_front();
                }
            }
        }
        None
    }
}

impl Iterator for Replay {
    type Item = Stored;

    fn next(&mut self) -> Option<Stored> {
        self.peeked.take().or_else(|| self.read())
    }
}

/// The next record of a segment, or `None` at its end: the file's end, its
/// zero-filled rest, a torn tail, or anything else that is not a record.
fn read_frame(reader: &mut impl Read, payload: &mut Vec<u8>) -> Option<Record> {
    let mut header = [0u8; record::HEADER];
    reader.read_exact(&mut header).ok()?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 || len > MAX_FRAME {
        return None;
    }
    payload.clear();
    payload.extend_from_slice(&header);
    payload.resize(record::HEADER + len, 0);
    reader.read_exact(&mut payload[record::HEADER..]).ok()?;
    let (record, _) = Record::decode(payload).ok()?;
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::{Replay, Start};
    use crate::store::record::{Record, Stored};
    use crate::store::recover::segment_path;
    use std::fs;

    fn message(id: u64) -> Record {
        Record::Message(Stored {
            id,
            time_ms: 0,
            qos1: true,
            retain: false,
            topic: format!("t/{id}"),
            data: "x".repeat(id as usize % 7),
            key: None,
        })
    }

    fn segment(dir: &std::path::Path, seq: u64, begun: u64, ids: &[u64]) {
        let mut bytes = Vec::new();
        Record::Ids { max: begun }.encode(&mut bytes);
        for &id in ids {
            message(id).encode(&mut bytes);
            Record::Ack {
                endpoint: "127.0.0.1:1".parse().unwrap(),
                id,
            }
            .encode(&mut bytes);
        }
        // The writer's zero-filled rest, and a torn frame in the last one.
        bytes.extend_from_slice(&[0; 100]);
        fs::write(segment_path(dir, seq), bytes).unwrap();
    }

    fn ids(replay: Replay) -> Vec<u64> {
        replay.map(|s| s.id).collect()
    }

    #[test]
    fn replays_after_an_id_up_to_a_bound_and_says_when_it_cannot() {
        let dir = std::env::temp_dir().join(format!("mb-replay-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        segment(&dir, 1, 10, &[11, 12, 15]);
        segment(&dir, 2, 15, &[16, 20]);
        let open = |after, until| Replay::open(&dir, after, until).unwrap();

        let (start, replay) = open(12, 100);
        assert_eq!(start, Start::Continuous);
        assert_eq!(ids(replay), [15, 16, 20]);
        assert_eq!(ids(open(10, 16).1), [11, 12, 15, 16], "not past until");
        assert_eq!(ids(open(20, 100).1), Vec::<u64>::new());

        let (start, replay) = open(3, 100);
        assert_eq!(start, Start::Reset(11), "the log begins after 10");
        assert_eq!(ids(replay), [11, 12, 15, 16, 20]);

        // A torn frame ends its segment; the next one is still read.
        let first = segment_path(&dir, 1);
        let mut bytes = fs::read(&first).unwrap();
        let mut ack = Vec::new();
        Record::Ack {
            endpoint: "127.0.0.1:1".parse().unwrap(),
            id: 15,
        }
        .encode(&mut ack);
        // Into the middle of message 15's frame, before its ack.
        let torn = bytes.len() - 100 - ack.len() - 5;
        bytes.truncate(torn);
        fs::write(&first, bytes).unwrap();
        assert_eq!(ids(open(10, 100).1), [11, 12, 16, 20]);

        fs::remove_file(&first).unwrap();
        fs::remove_file(segment_path(&dir, 2)).unwrap();
        let (start, replay) = open(3, 100);
        assert_eq!(
            start,
            Start::Reset(101),
            "an empty log has nothing up to until"
        );
        assert_eq!(ids(replay), Vec::<u64>::new());
        fs::remove_dir_all(&dir).unwrap();
    }
}
