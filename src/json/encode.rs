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
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0'..='\u{1f}' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => push_u_escape(out, c),
            _ => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `\uXXXX` for a char in the Basic Multilingual Plane.
fn push_u_escape(out: &mut String, c: char) {
    out.push_str("\\u");
    let code = u32::from(c);
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
    let mut out = String::from("{");
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
