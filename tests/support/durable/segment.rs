//! The log's segment files and their framing (`u32 LE` length, `u32 LE`
//! CRC-32C, payload), read by the test's own code.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------
// The log's segment files (SPEC "Segment files")

/// The segment files of a data directory (`NNNNNNNNNNNNNNNNNNNN.log`, 20
/// digits), oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.strip_suffix(".log").is_some_and(|digits| {
                digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())
            })
        })
        .collect();
    found.sort();
    found
}

/// One record of a segment: where it starts and its whole length (the
/// 8-byte frame header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub start: usize,
    pub len: usize,
}

impl Frame {
    pub const HEADER: usize = 8;

    pub fn end(&self) -> usize {
        self.start + self.len
    }

    pub fn payload_len(&self) -> usize {
        self.len - Self::HEADER
    }
}

/// Splits a whole segment into its records; panics unless every byte
/// belongs to a record with a correct CRC-32C, or to the zero-filled rest
/// that the broker grows a segment with ahead of its records (the test
/// must understand the framing before it tears it).
pub fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() && bytes[at..].iter().any(|&b| b != 0) {
        assert!(
            at + Frame::HEADER <= bytes.len(),
            "{} bytes after the last whole record at {at}: not the framing of SPEC.md \
             (u32 LE length, u32 LE CRC-32C, payload; no file header, zeros at the end)",
            bytes.len() - at
        );
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let end = at + Frame::HEADER + len;
        assert!(
            end <= bytes.len(),
            "record at {at} claims {len} bytes, the file ends at {}",
            bytes.len()
        );
        assert_eq!(
            crc32c(&bytes[at + Frame::HEADER..end]),
            crc,
            "record at {at}: the CRC-32C does not match its payload"
        );
        found.push(Frame {
            start: at,
            len: Frame::HEADER + len,
        });
        at = end;
    }
    found
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: the
/// test's own, so the broker's framing is judged by other code.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
