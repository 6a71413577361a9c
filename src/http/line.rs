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
    /// A complete line: its content without the line ending, and how many bytes it took on the
    /// wire (content plus CRLF or LF).
    Complete { content: Vec<u8>, wire_len: usize },
    /// `max_len` bytes arrived without a line feed.
    TooLong,
    /// The reader ended before a line feed; `partial` if some bytes of the line arrived.
    Eof { partial: bool },
}

/// Reads one line of at most `max_len` bytes including its line ending.
///
/// # Errors
///
/// [`HttpError::BadRequest`] if a complete line contains a CR that is not part of its final
/// CRLF, [`HttpError::Io`] for transport errors.
pub(crate) fn read_line<R: BufRead>(r: &mut R, max_len: usize) -> Result<Line, HttpError> {
    let mut buf = Vec::new();
    let n = r.take(take_len(max_len)).read_until(b'\n', &mut buf)?;
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
    Ok(Line::Complete {
        content: buf,
        wire_len: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(s: &[u8], wire_len: usize) -> Line {
        Line::Complete {
            content: s.to_vec(),
            wire_len,
        }
    }

    #[test]
    fn read_line_table() {
        let cases: &[(&[u8], usize, Result<Line, &str>)] = &[
            (b"abc\r\nrest", 10, Ok(complete(b"abc", 5))),
            (b"abc\nrest", 10, Ok(complete(b"abc", 4))),
            (b"abc\r\n", 5, Ok(complete(b"abc", 5))),
            (b"abcd\r\n", 5, Ok(Line::TooLong)),
            (b"\r\n", 2, Ok(complete(b"", 2))),
            (b"\n", 2, Ok(complete(b"", 1))),
            (b"abc", 10, Ok(Line::Eof { partial: true })),
            (b"", 10, Ok(Line::Eof { partial: false })),
            (b"a\rb\r\n", 10, Err("bare cr")),
            (b"ab\r\r\n", 10, Err("bare cr")),
        ];
        for (input, max, want) in cases {
            let mut r: &[u8] = input;
            let got = read_line(&mut r, *max).map_err(|e| match e {
                HttpError::BadRequest(s) => s,
                _ => "other",
            });
            assert_eq!(&got, want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn read_line_leaves_the_rest_unread() {
        let mut r: &[u8] = b"one\r\ntwo\n";
        assert_eq!(read_line(&mut r, 100).ok(), Some(complete(b"one", 5)));
        assert_eq!(r, b"two\n");
    }
}
