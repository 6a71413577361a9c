//! The records of the log and their framing (PROTOCOL.md section 6.4): each
//! record is `u32 LE payload length`, `u32 LE CRC-32C of the payload`, the
//! payload. A payload is a kind byte and its fields: integers little-endian,
//! strings as a `u32 LE` length and UTF-8 bytes.
//!
//! Pure: bytes in, values out. A frame that does not check out is a
//! [`Cut`] with its reason, never a panic: the bytes may be a torn write.

use super::crc32c;
use std::fmt;
use std::net::SocketAddr;

/// Bytes of a frame before its payload.
pub(crate) const HEADER: usize = 8;

/// The largest payload a frame may claim; a larger length is corruption.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

/// A message kept in the log: a qos 1 or retained publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) id: u64,
    /// When it was published, in milliseconds since the Unix epoch (for
    /// retention and the dedupe window across restarts).
    pub(crate) time_ms: u64,
    /// Published with qos 1: owed to durable sessions. (A retained qos 0
    /// message is stored for its retention only.)
    pub(crate) qos1: bool,
    pub(crate) retain: bool,
    pub(crate) topic: String,
    pub(crate) data: String,
    /// Its `Idempotency-Key`, if it came with one.
    pub(crate) key: Option<String>,
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// A stored publish: goes to the sessions of its topic.
    Message(Stored),
    /// A snapshot of a retained message, written at the head of a segment
    /// so that older segments can go: sets the retained message only.
    Retained(Stored),
    /// A snapshot of an idempotency key still in its window.
    Key {
        topic: String,
        key: String,
        id: u64,
        time_ms: u64,
    },
    /// A durable subscription of `endpoint` to `topic`; it gets the
    /// messages after id `from`.
    Subscribe {
        endpoint: SocketAddr,
        topic: String,
        from: u64,
    },
    /// `endpoint` answered every message up to `id`.
    Ack { endpoint: SocketAddr, id: u64 },
    /// `endpoint`'s session ended (expired, past its backlog, or left
    /// with no subscription).
    End { endpoint: SocketAddr },
    /// `endpoint` unsubscribed from `topic` (a pattern); its other
    /// subscriptions stay.
    Unsubscribe { endpoint: SocketAddr, topic: String },
    /// Ids up to `max` were given out (in a snapshot: ids are never reused,
    /// even once the segments holding them are deleted).
    Ids { max: u64 },
    /// In a snapshot: the last qos 1 message of a topic sessions hold (what
    /// they may still be owed).
    Last { topic: String, id: u64 },
}

/// Why the bytes at some offset are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The file ends inside the frame (a write cut short by a crash).
    Torn,
    /// The length field is more than [`MAX_PAYLOAD`] (or too small).
    BadLength,
    /// The payload's checksum does not match.
    CrcMismatch,
    /// The checksum matches but the payload is not a record we know.
    BadRecord,
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cut::Torn => "torn record",
            Cut::BadLength => "bad length",
            Cut::CrcMismatch => "crc mismatch",
            Cut::BadRecord => "bad record",
        })
    }
}

impl Record {
    /// Appends this record's frame to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER]);
        match self {
            Record::Message(s) => stored(out, 1, s),
            Record::Retained(s) => stored(out, 2, s),
            Record::Key {
                topic,
                key,
                id,
                time_ms,
            } => {
                out.push(3);
                string(out, topic);
                string(out, key);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&time_ms.to_le_bytes());
            }
            Record::Subscribe {
                endpoint,
                topic,
                from,
            } => {
                out.push(4);
                string(out, &endpoint.to_string());
                string(out, topic);
                out.extend_from_slice(&from.to_le_bytes());
            }
            Record::Ack { endpoint, id } => {
                out.push(5);
                string(out, &endpoint.to_string());
                out.extend_from_slice(&id.to_le_bytes());
            }
            Record::End { endpoint } => {
                out.push(6);
                string(out, &endpoint.to_string());
            }
            Record::Ids { max } => {
                out.push(7);
                out.extend_from_slice(&max.to_le_bytes());
            }
            Record::Last { topic, id } => {
                out.push(8);
                string(out, topic);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Record::Unsubscribe { endpoint, topic } => {
                out.push(9);
                string(out, &endpoint.to_string());
                string(out, topic);
            }
        }
        let len = (out.len() - start - HEADER) as u32;
        let crc = crc32c::checksum(&out[start + HEADER..]);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    }

    /// Reads the frame at the start of `bytes`: the record and the bytes it
    /// took, or why it is not one.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(Record, usize), Cut> {
        if bytes.len() < HEADER {
            return Err(Cut::Torn);
        }
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if len == 0 || len > MAX_PAYLOAD {
            return Err(Cut::BadLength);
        }
        let payload = bytes.get(HEADER..HEADER + len).ok_or(Cut::Torn)?;
        if crc32c::checksum(payload) != crc {
            return Err(Cut::CrcMismatch);
        }
        let record = parse(payload).ok_or(Cut::BadRecord)?;
        Ok((record, HEADER + len))
    }
}

fn stored(out: &mut Vec<u8>, kind: u8, s: &Stored) {
    out.push(kind);
    out.extend_from_slice(&s.id.to_le_bytes());
    out.extend_from_slice(&s.time_ms.to_le_bytes());
    out.push(u8::from(s.retain) | (u8::from(s.qos1) << 1));
    string(out, &s.topic);
    string(out, &s.data);
    match &s.key {
        Some(key) => {
            out.push(1);
            string(out, key);
        }
        None => out.push(0),
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over a payload; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    fn endpoint(&mut self) -> Option<SocketAddr> {
        self.string()?.parse().ok()
    }

    fn stored(&mut self) -> Option<Stored> {
        let id = self.u64()?;
        let time_ms = self.u64()?;
        let flags = self.u8()?;
        if flags > 3 {
            return None;
        }
        Some(Stored {
            id,
            time_ms,
            retain: flags & 1 == 1,
            qos1: flags & 2 == 2,
            topic: self.string()?,
            data: self.string()?,
            key: match self.u8()? {
                0 => None,
                1 => Some(self.string()?),
                _ => return None,
            },
        })
    }
}

fn parse(payload: &[u8]) -> Option<Record> {
    let mut r = Reader(payload);
    let record = match r.u8()? {
        1 => Record::Message(r.stored()?),
        2 => Record::Retained(r.stored()?),
        3 => Record::Key {
            topic: r.string()?,
            key: r.string()?,
            id: r.u64()?,
            time_ms: r.u64()?,
        },
        4 => Record::Subscribe {
            endpoint: r.endpoint()?,
            topic: r.string()?,
            from: r.u64()?,
        },
        5 => Record::Ack {
            endpoint: r.endpoint()?,
            id: r.u64()?,
        },
        6 => Record::End {
            endpoint: r.endpoint()?,
        },
        7 => Record::Ids { max: r.u64()? },
        8 => Record::Last {
            topic: r.string()?,
            id: r.u64()?,
        },
        9 => Record::Unsubscribe {
            endpoint: r.endpoint()?,
            topic: r.string()?,
        },
        _ => return None,
    };
    // Trailing bytes mean a record we do not understand.
    r.0.is_empty().then_some(record)
}

#[cfg(test)]
mod tests {
    use super::{Cut, HEADER, Record, Stored};

    fn samples() -> Vec<Record> {
        let endpoint = "127.0.0.1:10000".parse().unwrap();
        let v6 = "[::1]:9".parse().unwrap();
        let stored = Stored {
            id: 1 << 60,
            time_ms: 1_700_000_000_000,
            qos1: true,
            retain: true,
            topic: "hello/wörld".into(),
            data: "{\"quoted\"}\n".into(),
            key: Some("k-1".into()),
        };
        vec![
            Record::Message(stored.clone()),
            Record::Message(Stored {
                key: None,
                retain: false,
                qos1: false,
                data: String::new(),
                ..stored.clone()
            }),
            Record::Retained(stored),
            Record::Key {
                topic: "t".into(),
                key: "abc".into(),
                id: 7,
                time_ms: 9,
            },
            Record::Subscribe {
                endpoint,
                topic: "t".into(),
                from: 41,
            },
            Record::Ack {
                endpoint: v6,
                id: 42,
            },
            Record::End { endpoint },
            Record::Ids { max: u64::MAX - 1 },
            Record::Last {
                topic: "t".into(),
                id: 5,
            },
            Record::Unsubscribe {
                endpoint: v6,
                topic: "a/+/#".into(),
            },
        ]
    }

    #[test]
    fn every_kind_round_trips_back_to_back() {
        let mut log = Vec::new();
        for r in samples() {
            r.encode(&mut log);
        }
        let mut at = 0;
        for want in samples() {
            let (got, used) = Record::decode(&log[at..]).unwrap();
            assert_eq!(got, want);
            at += used;
        }
        assert_eq!(at, log.len());
    }

    #[test]
    fn every_truncation_is_torn_and_every_flip_is_caught() {
        for r in samples() {
            let mut frame = Vec::new();
            r.encode(&mut frame);
            for cut in 0..frame.len() {
                let got = Record::decode(&frame[..cut]);
                assert!(
                    matches!(got, Err(Cut::Torn | Cut::BadLength)),
                    "{cut}: {got:?}"
                );
            }
            for at in HEADER..frame.len() {
                let mut bad = frame.clone();
                bad[at] ^= 0x10;
                assert_eq!(Record::decode(&bad), Err(Cut::CrcMismatch), "byte {at}");
            }
        }
    }

    #[test]
    fn hostile_frames_are_cuts() {
        assert_eq!(Record::decode(&[0; 8]), Err(Cut::BadLength));
        assert_eq!(Record::decode(&[0xff; 16]), Err(Cut::BadLength));
        // A valid checksum over garbage: not a record.
        for payload in [
            &[10u8][..],
            &[4, 255, 255, 255, 255],
            &[6, 1, 0, 0, 0, b'x'],
        ] {
            let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
            frame.extend_from_slice(&super::crc32c::checksum(payload).to_le_bytes());
            frame.extend_from_slice(payload);
            assert_eq!(Record::decode(&frame), Err(Cut::BadRecord));
        }
    }
}
