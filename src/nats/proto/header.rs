//! Reading a message's header block (`NATS/1.0[ status]`, then `Name: value`
//! lines, then a blank line).
//!
//! **Must never:** return a value from a block it would not read whole.

/// The first line of a header block, before an optional status.
pub(super) const HEADER_VERSION: &str = "NATS/1.0";

/// Value of header `name` (case-insensitive) in a raw NATS header block
/// (`NATS/1.0[ status]\r\nK: V\r\n...\r\n\r\n`), spaces around it trimmed;
/// the first if there are several. `None` if absent or the block is
/// malformed (not UTF-8, no `NATS/1.0` line, a line without `:`, a bare CR
/// or LF, no blank line at the end).
pub(crate) fn header<'a>(block: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(block).ok()?;
    let mut lines = text.strip_suffix("\r\n\r\n")?.split("\r\n");
    let status = lines.next()?.strip_prefix(HEADER_VERSION)?;
    if !(status.is_empty() || status.starts_with(' ')) || status.contains(['\r', '\n']) {
        return None;
    }
    let mut found = None;
    for line in lines {
        let (key, value) = line.split_once(':')?;
        if key.is_empty() || key.contains(|c: char| c.is_ascii_whitespace()) {
            return None;
        }
        if value.contains(['\r', '\n']) {
            return None;
        }
        if found.is_none() && key.eq_ignore_ascii_case(name) {
            found = Some(value.trim_matches([' ', '\t']));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::header;

    #[test]
    fn headers() {
        let block: &[u8] = b"NATS/1.0\r\nMb-Origin:  b1 \r\nX: 1\r\nx: 2\r\nEmpty:\r\n\r\n";
        let cases: &[(&[u8], &str, Option<&str>)] = &[
            (block, "Mb-Origin", Some("b1")),
            (block, "mb-origin", Some("b1")),
            (block, "MB-ORIGIN", Some("b1")),
            (block, "x", Some("1")),
            (block, "Empty", Some("")),
            (block, "Mb", None),
            (block, "", None),
            (b"NATS/1.0\r\n\r\n", "x", None),
            (b"NATS/1.0 503\r\n\r\n", "x", None),
            (
                b"NATS/1.0 408 Request Timeout\r\nX: y\r\n\r\n",
                "x",
                Some("y"),
            ),
            (b"NATS/1.0\r\nK: a:b\r\n\r\n", "k", Some("a:b")),
            (b"NATS/1.0\r\nK:\tv\t\r\n\r\n", "k", Some("v")),
            // Malformed: refused whole, even where the name is present.
            (b"", "k", None),
            (b"\r\n\r\n", "k", None),
            (b"NATS/1.0\r\nK: v\r\n", "k", None),
            (b"NATS/1.0\r\nK: v", "k", None),
            (b"NATS/2.0\r\nK: v\r\n\r\n", "k", None),
            (b"NATS/1.0x\r\nK: v\r\n\r\n", "k", None),
            (b"nats/1.0\r\nK: v\r\n\r\n", "k", None),
            (b"K: v\r\n\r\n", "k", None),
            (b"NATS/1.0\r\nK: v\r\nnocolon\r\n\r\n", "k", None),
            (b"NATS/1.0\r\nK: v\r\n\r\nX: y\r\n\r\n", "k", None),
            (b"NATS/1.0\r\n: v\r\n\r\n", "", None),
            (b"NATS/1.0\r\nK : v\r\n\r\n", "k", None),
            (b"NATS/1.0\r\nK: v\nX: y\r\n\r\n", "k", None),
            (b"NATS/1.0\r\nK: v\rX\r\n\r\n", "k", None),
            (b"NATS/1.0\r\nK: \xff\r\n\r\n", "k", None),
            (b"NATS/1.0\n\nK: v\r\n\r\n", "k", None),
        ];
        for &(block, name, expected) in cases {
            let shown = String::from_utf8_lossy(block);
            assert_eq!(header(block, name), expected, "{shown:?} {name:?}");
        }
    }
}
