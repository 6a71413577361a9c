//! Bounded line reading: the one place that pulls a line out of a `BufRead`, or out of bytes
//! already in memory (a request head that arrived whole is parsed where it lies).
//!
//! **Owns:** finding a line ending (CRLF or bare LF) within a byte budget and rejecting a bare
//! CR inside a line, the same way for both sources ([`Lines`]).
//!
//! **Must never:** buffer more than the budget it is given, or call an unbounded
//! `read_line` / `read_until` on the caller's reader.

use std::io::{BufRead, Read};

use super::{HttpError, take_len};

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A complete line, now in the caller's buffer without its line ending; how many bytes it
    /// took on the wire (content plus CRLF or LF).
    Complete { wire_len: usize },
    /// `max_len` bytes arrived without a line feed.
    TooLong,
    /// The reader ended before a line feed; `partial` if some bytes of the line arrived.
    Eof { partial: bool },
}

/// Reads one line of at most `max_len` bytes including its line ending into `buf` (cleared
/// first; the caller reuses it, so that reading a message does not allocate per line).
///
/// # Errors
///
/// [`HttpError::BadRequest`] if a complete line contains a CR that is not part of its final
/// CRLF, [`HttpError::Io`] for transport errors.
pub(crate) fn read_line<R: BufRead>(
    r: &mut R,
    max_len: usize,
    buf: &mut Vec<u8>,
) -> Result<Line, HttpError> {
    buf.clear();
    let n = r.take(take_len(max_len)).read_until(b'\n', buf)?;
    if buf.last() != Some(&b'\n') {
        return Ok(if n >= max_len {
            Line::TooLong
        } else {
            Line::Eof { partial: n > 0 }
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    if buf.contains(&b'\r') {
        return Err(HttpError::BadRequest("bare cr"));
    }
    Ok(Line::Complete { wire_len: n })
}

/// Where the head parsers take their lines from: a reader, line by line ([`FromReader`]), or
/// bytes already in memory ([`InMemory`]). Both read a line exactly as [`read_line`] does.
pub(crate) trait Lines {
    /// The next line of at most `max_len` bytes including its ending: what [`read_line`]
    /// finds, and the line without its ending when it is complete (empty or partial otherwise).
    fn next_line(&mut self, max_len: usize) -> Result<(Line, &[u8]), HttpError>;
}

/// Lines read from `r` with [`read_line`], each into the reused `line`.
pub(crate) struct FromReader<'a, R> {
    pub(crate) r: &'a mut R,
    pub(crate) line: &'a mut Vec<u8>,
}

impl<R: BufRead> Lines for FromReader<'_, R> {
    fn next_line(&mut self, max_len: usize) -> Result<(Line, &[u8]), HttpError> {
        let found = read_line(self.r, max_len, self.line)?;
        Ok((found, self.line))
    }
}

/// Lines cut out of bytes in memory, where they lie: nothing is copied. The end of the bytes
/// reads as [`Line::Eof`], so a caller parsing a head that may not have arrived whole takes
/// an unexpected end to mean "read the rest first".
pub(crate) struct InMemory<'a> {
    rest: &'a [u8],
    used: usize,
}

impl<'a> InMemory<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> InMemory<'a> {
        InMemory {
            rest: bytes,
            used: 0,
        }
    }

    /// How many bytes the complete lines took.
    pub(crate) fn used(&self) -> usize {
        self.used
    }
}

impl Lines for InMemory<'_> {
    fn next_line(&mut self, max_len: usize) -> Result<(Line, &[u8]), HttpError> {
        let window = self.rest.get(..max_len).unwrap_or(self.rest);
        // One pass for the usual line, whose only CR is the one before its LF;
        // any other line is looked at again.
        let first = first_cr_or_lf(window);
        let (lf, clean) = match first {
            Some(i) if window.get(i) == Some(&b'\n') => (Some(i), true),
            Some(i) if window.get(i + 1) == Some(&b'\n') => (Some(i + 1), true),
            _ => (window.iter().position(|&b| b == b'\n'), false),
        };
        let Some(lf) = lf else {
            let found = if self.rest.len() >= max_len {
                // Taken, as `read_line` takes them.
                self.rest = self.rest.get(max_len..).unwrap_or_default();
                self.used += max_len;
                Line::TooLong
            } else {
                Line::Eof {
                    partial: !self.rest.is_empty(),
                }
            };
            return Ok((found, &[]));
        };
        let (line, rest) = self.rest.split_at(lf + 1);
        self.rest = rest;
        self.used += line.len();
        let content = match line {
            [content @ .., b'\r', b'\n'] | [content @ .., b'\n'] => content,
            _ => line,
        };
        if !clean && content.contains(&b'\r') {
            return Err(HttpError::BadRequest("bare cr"));
        }
        Ok((
            Line::Complete {
                wire_len: line.len(),
            },
            content,
        ))
    }
}

/// Where the first CR or LF in `bytes` is, looked for eight bytes at a time (a header line
/// is mostly ordinary bytes, and this is the broker's hottest loop).
fn first_cr_or_lf(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const CRS: u64 = u64::from_ne_bytes([b'\r'; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    // Whether a word has a zero byte (exact for "any", the classic test).
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS != 0;
    let mut words = bytes.chunks_exact(8);
    let mut start = 0;
    for word in words.by_ref() {
        let w = u64::from_ne_bytes(word.try_into().unwrap_or_default());
        if has_zero(w ^ CRS) || has_zero(w ^ LFS) {
            break;
        }
        start += 8;
    }
    let rest = bytes.get(start..).unwrap_or_default();
    let at = rest.iter().position(|&b| b == b'\n' || b == b'\r')?;
    Some(start + at)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line read, with the buffer's content when it is complete.
    type Read = (Line, Vec<u8>);

    /// What a complete line reads as: the line, and the content left in the buffer.
    fn complete(s: &[u8], wire_len: usize) -> Read {
        (Line::Complete { wire_len }, s.to_vec())
    }

    /// Reads a line; a complete one comes with the buffer's content.
    fn read(r: &mut &[u8], max: usize) -> Result<Read, HttpError> {
        let mut buf = Vec::new();
        let line = read_line(r, max, &mut buf)?;
        let content = if matches!(line, Line::Complete { .. }) {
            buf
        } else {
            Vec::new()
        };
        Ok((line, content))
    }

    #[test]
    fn read_line_table() {
        let cases: &[(&[u8], usize, Result<Read, &str>)] = &[
            (b"abc\r\nrest", 10, Ok(complete(b"abc", 5))),
            (b"abc\nrest", 10, Ok(complete(b"abc", 4))),
            (b"abc\r\n", 5, Ok(complete(b"abc", 5))),
            (b"abcd\r\n", 5, Ok((Line::TooLong, Vec::new()))),
            (b"\r\n", 2, Ok(complete(b"", 2))),
            (b"\n", 2, Ok(complete(b"", 1))),
            (b"abc", 10, Ok((Line::Eof { partial: true }, Vec::new()))),
            (b"", 10, Ok((Line::Eof { partial: false }, Vec::new()))),
            (b"a\rb\r\n", 10, Err("bare cr")),
            (b"ab\r\r\n", 10, Err("bare cr")),
            (b"\rab\n", 10, Err("bare cr")),
            (b"ab\r", 10, Ok((Line::Eof { partial: true }, Vec::new()))),
            (b"abcd\r\n", 5, Ok((Line::TooLong, Vec::new()))),
            (b"abc\r\n", 4, Ok((Line::TooLong, Vec::new()))),
            (b"a\rbcdef\n", 4, Ok((Line::TooLong, Vec::new()))),
        ];
        let brief = |e: HttpError| match e {
            HttpError::BadRequest(s) => s,
            _ => "other",
        };
        for (input, max, want) in cases {
            let mut r: &[u8] = input;
            let got = read(&mut r, *max).map_err(brief);
            assert_eq!(&got, want, "input {:?}", String::from_utf8_lossy(input));
            // The same line where it lies in memory, taking as many bytes.
            let mut lines = InMemory::new(input);
            let in_memory = lines.next_line(*max).map(|(found, content)| {
                let complete = matches!(found, Line::Complete { .. });
                (
                    found,
                    if complete {
                        content.to_vec()
                    } else {
                        Vec::new()
                    },
                )
            });
            assert_eq!(&in_memory.map_err(brief), want, "in memory: {input:?}");
            if got.is_ok() && !matches!(got, Ok((Line::Eof { .. }, _))) {
                assert_eq!(lines.used(), input.len() - r.len(), "used: {input:?}");
            }
        }
    }

    #[test]
    fn the_first_cr_or_lf_is_found_wherever_it_falls_in_a_word() {
        for len in 0..40 {
            for at in 0..=len {
                for (end, other) in [(b'\n', b'\r'), (b'\r', b'\n')] {
                    // Bytes one off CR and LF, and ones with the high bit, around it.
                    let mut bytes: Vec<u8> =
                        (0..len).map(|i| [0x0b, 0x0c, 0x8d, b'a'][i % 4]).collect();
                    if at < len {
                        bytes[at] = end;
                        if at + 1 < len {
                            bytes[at + 1] = other;
                        }
                    }
                    let want = bytes.iter().position(|&b| b == b'\n' || b == b'\r');
                    assert_eq!(first_cr_or_lf(&bytes), want, "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn read_line_leaves_the_rest_unread() {
        let mut r: &[u8] = b"one\r\ntwo\n";
        assert_eq!(read(&mut r, 100).ok(), Some(complete(b"one", 5)));
        assert_eq!(r, b"two\n");
    }
}
