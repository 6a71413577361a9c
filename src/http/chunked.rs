//! Chunked transfer coding (RFC 9112 section 7.1): decoding a body and encoding chunks.
//!
//! **Owns:** the chunk-size line grammar, chunk extensions (accepted and ignored), the CRLF after
//! chunk data, trailers (read under the header limits and discarded), and the body limit while
//! decoding.
//!
//! **Must never:** allocate or read ahead by a peer-announced chunk size before checking it
//! against the body limit, or accept a chunk-size another parser could read differently
//! (`0x5`, `+5`, `5 x`).

use std::io::{self, BufRead, Read, Write};

use super::headers::read_header_section;
use super::line::{FromReader, Line, read_line};
use super::{HttpError, Limits, MAX_CHUNK_SIZE_LINE, take_len};

/// Decodes a chunked body.
///
/// # Errors
///
/// See [`read_body`](super::read_body).
pub(crate) fn read_chunked<R: BufRead>(r: &mut R, limits: &Limits) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        let size = match read_line(r, MAX_CHUNK_SIZE_LINE, &mut line)? {
            Line::Complete { .. } => parse_chunk_size(&line)?,
            Line::TooLong => return Err(HttpError::BadRequest("chunk size line too long")),
            Line::Eof { .. } => return Err(HttpError::UnexpectedEof),
        };
        if size == 0 {
            read_header_section(&mut FromReader { r, line: &mut line }, limits)?; // trailers: validated, then dropped
            return Ok(body);
        }
        let fits = usize::try_from(size)
            .ok()
            .and_then(|s| body.len().checked_add(s))
            .is_some_and(|total| total <= limits.max_body);
        if !fits {
            return Err(HttpError::PayloadTooLarge);
        }
        let before = body.len();
        Read::take(&mut *r, size).read_to_end(&mut body)?;
        if take_len(body.len() - before) < size {
            return Err(HttpError::UnexpectedEof);
        }
        match read_line(r, 2, &mut line)? {
            Line::Complete { .. } => {}
            Line::TooLong => return Err(HttpError::BadRequest("missing crlf after chunk data")),
            Line::Eof { .. } => return Err(HttpError::UnexpectedEof),
        }
    }
}

/// `chunk-size [ chunk-ext ]`: 1*HEXDIG, then nothing or optional SP/HTAB and `;...`.
fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let (hex, rest) = line.split_at(digits);
    if hex.is_empty() {
        return Err(HttpError::BadRequest("invalid chunk size"));
    }
    let ext = match rest.iter().position(|&b| b != b' ' && b != b'\t') {
        Some(i) => rest.split_at(i).1,
        None => &[],
    };
    if !(ext.is_empty() || ext.starts_with(b";")) {
        return Err(HttpError::BadRequest("invalid chunk size"));
    }
    if !ext.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)) {
        return Err(HttpError::BadRequest("invalid chunk extension"));
    }
    hex.iter().try_fold(0u64, |acc, &b| {
        let digit = char::from(b).to_digit(16).map(u64::from);
        acc.checked_mul(16)
            .zip(digit)
            .and_then(|(acc, d)| acc.checked_add(d))
            .ok_or(HttpError::BadRequest("chunk size overflow"))
    })
}

/// Writes `data` as one chunk of a chunked body. An empty `data` writes nothing (an empty chunk
/// would end the body; use [`write_last_chunk`] for that).
///
/// # Errors
///
/// Any error of `w`.
///
/// # Examples
///
/// ```
/// use message_broker::http::{write_chunk, write_last_chunk};
///
/// let mut out = Vec::new();
/// write_chunk(&mut out, b"hello world!")?;
/// write_last_chunk(&mut out)?;
/// assert_eq!(out, b"c\r\nhello world!\r\n0\r\n\r\n");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_chunk<W: Write>(w: &mut W, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    write!(w, "{:x}\r\n", data.len())?;
    w.write_all(data)?;
    w.write_all(b"\r\n")
}

/// Writes the last chunk and an empty trailer section, ending a chunked body.
///
/// # Errors
///
/// Any error of `w`.
pub fn write_last_chunk<W: Write>(w: &mut W) -> io::Result<()> {
    w.write_all(b"0\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8], limits: &Limits) -> Result<Vec<u8>, String> {
        let mut r = input;
        read_chunked(&mut r, limits).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn chunked_table() {
        let l = Limits::default();
        let bad = |s: &str| Err(format!("BadRequest({s:?})"));
        type Case = (&'static [u8], Result<&'static [u8], String>);
        let cases: &[Case] = &[
            (b"0\r\n\r\n", Ok(b"")),
            (b"5\r\nhello\r\n0\r\n\r\n", Ok(b"hello")),
            (b"5\nhello\n0\n\n", Ok(b"hello")),
            (
                b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n",
                Ok(b"abc0123456789"),
            ),
            (b"0005\r\nhello\r\n000\r\n\r\n", Ok(b"hello")),
            (b"5;a=b;c\r\nhello\r\n0;last\r\n\r\n", Ok(b"hello")),
            (b"5 ;a=\"q s\"\r\nhello\r\n0\r\n\r\n", Ok(b"hello")),
            (b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n", Ok(b"hello")),
            (b"\r\nhello\r\n0\r\n\r\n", bad("invalid chunk size")),
            (b"0x5\r\nhello\r\n0\r\n\r\n", bad("invalid chunk size")),
            (b"+5\r\nhello\r\n0\r\n\r\n", bad("invalid chunk size")),
            (b" 5\r\nhello\r\n0\r\n\r\n", bad("invalid chunk size")),
            (b"5 x\r\nhello\r\n0\r\n\r\n", bad("invalid chunk size")),
            (b"-1\r\n\r\n", bad("invalid chunk size")),
            (
                b"5;\x01\r\nhello\r\n0\r\n\r\n",
                bad("invalid chunk extension"),
            ),
            (b"10000000000000000\r\n", bad("chunk size overflow")),
            (
                b"5\r\nhelloXX0\r\n\r\n",
                bad("missing crlf after chunk data"),
            ),
            (b"5\r\nhello\rX", bad("missing crlf after chunk data")),
            (
                b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
                bad("header line without colon"),
            ),
            (b"5\r\nhel", Err("UnexpectedEof".into())),
            (b"5\r\nhello", Err("UnexpectedEof".into())),
            (b"5\r\nhello\r\n", Err("UnexpectedEof".into())),
            (b"5\r\nhello\r\n0\r\n", Err("UnexpectedEof".into())),
            (b"", Err("UnexpectedEof".into())),
            (b"ffffffffffffffff\r\n", Err("PayloadTooLarge".into())),
        ];
        for (input, want) in cases {
            let want = want.clone().map(<[u8]>::to_vec);
            assert_eq!(
                decode(input, &l),
                want,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn body_limit_exact_and_plus_one() {
        let l = Limits {
            max_body: 10,
            ..Limits::default()
        };
        assert_eq!(
            decode(b"4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n", &l).map(|b| b.len()),
            Ok(10)
        );
        // Fails on the size line of the chunk that would pass the limit, before its data.
        assert_eq!(
            decode(b"4\r\nabcd\r\n7\r\n", &l),
            Err("PayloadTooLarge".into())
        );
    }

    #[test]
    fn chunk_size_line_limit_exact_and_plus_one() {
        let line = |len: usize| {
            let mut v = b"5;".to_vec();
            v.resize(len - 2, b'x');
            v.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
            v
        };
        let l = Limits::default();
        assert_eq!(
            decode(&line(MAX_CHUNK_SIZE_LINE), &l),
            Ok(b"hello".to_vec())
        );
        assert_eq!(
            decode(&line(MAX_CHUNK_SIZE_LINE + 1), &l),
            Err("BadRequest(\"chunk size line too long\")".into())
        );
    }

    #[test]
    fn trailer_limits_apply() {
        let l = Limits {
            max_headers: 1,
            ..Limits::default()
        };
        assert_eq!(decode(b"0\r\nA: 1\r\n\r\n", &l), Ok(Vec::new()));
        assert_eq!(
            decode(b"0\r\nA: 1\r\nB: 2\r\n\r\n", &l),
            Err("HeadersTooLarge".into())
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut out = Vec::new();
        for part in [&b"first "[..], b"", b"second", &[0u8; 300]] {
            write_chunk(&mut out, part).unwrap();
        }
        write_last_chunk(&mut out).unwrap();
        let mut want = b"first second".to_vec();
        want.extend_from_slice(&[0u8; 300]);
        assert_eq!(decode(&out, &Limits::default()), Ok(want));
    }
}
