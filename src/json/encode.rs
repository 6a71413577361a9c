//! The encoder: strings escaped as Go's `encoding/json` escapes them.

/// Appends `s` to `out` as a JSON string literal with quotes, escaped the way
/// Go's encoder does it: `\"`, `\\`, `\n`, `\r`, `\t`; other control
/// characters, `<`, `>`, `&`, U+2028 and U+2029 as `\u00XX`-style escapes
/// (lowercase hex); everything else as UTF-8 unchanged.
///
/// # Examples
///
/// ```
/// use message_broker::json::write_string;
///
/// let mut out = String::new();
/// write_string(&mut out, "a\"<b>\n\u{1}é");
/// assert_eq!(out, r#""a\"\u003cb\u003e\n\u0001é""#);
/// ```
pub fn write_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    // Bytes that need no escape are copied in runs, found with a table; a
    // run ends only before an ASCII byte or 0xE2 (which may begin
    // U+2028/U+2029), so every slice of `s` taken here falls on char
    // boundaries.
    let (mut run, mut i) = (0, 0);
    while let Some(skip) = bytes
        .get(i..)
        .and_then(|rest| rest.iter().position(|&b| MAY_ESCAPE[usize::from(b)]))
    {
        i += skip;
        let b = bytes[i];
        let (len, escape) = match b {
            b'"' => (1, Escape::Text("\\\"")),
            b'\\' => (1, Escape::Text("\\\\")),
            b'\n' => (1, Escape::Text("\\n")),
            b'\r' => (1, Escape::Text("\\r")),
            b'\t' => (1, Escape::Text("\\t")),
            0..=0x1f | b'<' | b'>' | b'&' => (1, Escape::Unicode(u32::from(b))),
            0xE2 if bytes.get(i + 1) == Some(&0x80)
                && matches!(bytes.get(i + 2), Some(0xA8 | 0xA9)) =>
            {
                let last = bytes.get(i + 2).copied().unwrap_or(0xA8);
                (3, Escape::Unicode(0x2028 + u32::from(last - 0xA8)))
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(s.get(run..i).unwrap_or_default());
        match escape {
            Escape::Text(text) => out.push_str(text),
            Escape::Unicode(code) => push_u_escape(out, code),
        }
        i += len;
        run = i;
    }
    out.push_str(s.get(run..).unwrap_or_default());
    out.push('"');
}

/// The bytes [`write_string`] looks at: those it escapes, and 0xE2.
const MAY_ESCAPE: [bool; 256] = super::stop_table(b"\"\\<>&\xE2");

enum Escape {
    Text(&'static str),
    Unicode(u32),
}

/// Appends `\uXXXX` for a code point in the Basic Multilingual Plane.
fn push_u_escape(out: &mut String, code: u32) {
    out.push_str("\\u");
    for shift in [12, 8, 4, 0] {
        out.push(char::from_digit((code >> shift) & 0xF, 16).unwrap_or('0'));
    }
}

/// Encodes string pairs as one object, keys in the given order.
///
/// # Examples
///
/// ```
/// use message_broker::json::encode_object;
///
/// assert_eq!(encode_object(&[("data", "x"), ("Topic", "t")]), r#"{"data":"x","Topic":"t"}"#);
/// assert_eq!(encode_object(&[]), "{}");
/// ```
pub fn encode_object(pairs: &[(&str, &str)]) -> String {
    let size: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 6).sum();
    let mut out = String::with_capacity(size + 2);
    out.push('{');
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, key);
        out.push(':');
        write_string(&mut out, value);
    }
    out.push('}');
    out
}
