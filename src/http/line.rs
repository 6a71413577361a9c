//! Bounded line reading: the one place that pulls a line out of a `BufRead`.
//!
//! **Owns:** finding a line ending (CRLF or bare LF) within a byte budget and rejecting a bare
//! CR inside a line.
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
        ];
        for (input, max, want) in cases {
            let mut r: &[u8] = input;
            let got = read(&mut r, *max).map_err(|e| match e {
                HttpError::BadRequest(s) => s,
                _ => "other",
            });
            assert_eq!(&got, want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn read_line_leaves_the_rest_unread() {
        let mut r: &[u8] = b"one\r\ntwo\n";
        assert_eq!(read(&mut r, 100).ok(), Some(complete(b"one", 5)));
        assert_eq!(r, b"two\n");
    }
}
