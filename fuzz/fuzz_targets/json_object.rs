//! The JSON decoder on arbitrary bytes, and round trips through the encoder.
//!
//! 1. `parse_object` returns an object or an error (offset within the input), never panics.
//! 2. Whatever decodes is written back (strings with `write_string`, numbers as their literal,
//!    nested containers as the empty container they decode as) and must decode to the same
//!    object.
//! 3. Any valid UTF-8 input, used as a key and as a value, survives `encode_object` then
//!    `parse_object` unchanged, and the encoding holds no raw control byte.

#![no_main]

use libfuzzer_sys::fuzz_target;
use message_broker::json::{Object, Value, encode_object, parse_object, write_string};

/// Writes `object` back as JSON: members in order, duplicates kept.
fn encode(object: &Object) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in object.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, key);
        out.push(':');
        match value {
            Value::String(s) => write_string(&mut out, s),
            Value::Number(n) => out.push_str(n),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Null => out.push_str("null"),
            Value::Array => out.push_str("[]"),
            Value::Object => out.push_str("{}"),
        }
    }
    out.push('}');
    out
}

fuzz_target!(|data: &[u8]| {
    match parse_object(data) {
        Ok(object) => {
            for (key, _) in object.iter() {
                assert!(object.get(key).is_some(), "key {key:?} not found");
            }
            let text = encode(&object);
            let again = parse_object(text.as_bytes())
                .unwrap_or_else(|e| panic!("re-encoded {text:?} does not decode: {e}"));
            assert_eq!(again, object, "re-encoded as {text:?}");
        }
        Err(e) => {
            assert!(e.offset() <= data.len(), "{e}");
            let _ = e.to_string();
        }
    }

    if let Ok(text) = std::str::from_utf8(data) {
        let body = encode_object(&[(text, text), ("data", text)]);
        assert!(
            body.bytes().all(|b| b >= 0x20),
            "raw control byte in {body:?}"
        );
        let object = parse_object(body.as_bytes())
            .unwrap_or_else(|e| panic!("encode_object gave {body:?}, which fails: {e}"));
        let members: Vec<(&str, Option<&str>)> =
            object.iter().map(|(k, v)| (k, v.as_str())).collect();
        assert_eq!(members, [(text, Some(text)), ("data", Some(text))]);
    }
});
