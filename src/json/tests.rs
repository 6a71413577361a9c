//! Unit tests of the JSON codec: table-driven cases and a mutation test.

use super::*;
use crate::testutil::XorShift;
use JsonErrorKind::*;

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

fn n(text: &str) -> Value {
    Value::Number(text.to_owned())
}

fn members(object: &Object) -> Vec<(&str, &Value)> {
    object.iter().collect()
}

type OkCase = (&'static [u8], Vec<(&'static str, Value)>);

fn ok_cases() -> Vec<OkCase> {
    vec![
        // The Go client's exact bodies.
        (
            br#"{"data":"MyData","qos":0}"#,
            vec![("data", s("MyData")), ("qos", n("0"))],
        ),
        (
            br#"{"qos":0,"port":"10000"}"#,
            vec![("qos", n("0")), ("port", s("10000"))],
        ),
        (
            br#"{"data":"x","Topic":"hello/world"}"#,
            vec![("data", s("x")), ("Topic", s("hello/world"))],
        ),
        (b"{}", vec![]),
        (b" \t\r\n{ \n } \r\n\t ", vec![]),
        (
            b"{ \"a\" : [ 1 , { \"b\" : null } ] ,\n\"c\"\t:\r\"d\" }",
            vec![("a", Value::Array), ("c", s("d"))],
        ),
        (
            br#"{"t":true,"f":false,"z":null}"#,
            vec![
                ("t", Value::Bool(true)),
                ("f", Value::Bool(false)),
                ("z", Value::Null),
            ],
        ),
        (
            br#"{"a":[1,2,{"b":[]}],"c":{},"d":[ ],"e":{ }}"#,
            vec![
                ("a", Value::Array),
                ("c", Value::Object),
                ("d", Value::Array),
                ("e", Value::Object),
            ],
        ),
        (
            br#"{"e":"\"\\\/\b\f\n\r\t"}"#,
            vec![("e", s("\"\\/\u{8}\u{c}\n\r\t"))],
        ),
        (br#"{"h":"\u003cb\u003e \u0026"}"#, vec![("h", s("<b> &"))]),
        (br#"{"s":"\ud83d\ude00"}"#, vec![("s", s("😀"))]),
        (br#"{"s":"x\uD83D\uDE00y"}"#, vec![("s", s("x😀y"))]),
        (
            br#"{"u":"\u00e9\u4E2D\u0000\u2028"}"#,
            vec![("u", s("é中\0\u{2028}"))],
        ),
        (
            "{\"raw\":\"é😀中\u{7f}\"}".as_bytes(),
            vec![("raw", s("é😀中\u{7f}"))],
        ),
        (br#"{"\u0041b":1,"":""}"#, vec![("Ab", n("1")), ("", s(""))]),
        (
            br#"{"a":-0,"b":1.5e+10,"c":0.25E-3,"d":123,"e":-7e5,"f":0e0}"#,
            vec![
                ("a", n("-0")),
                ("b", n("1.5e+10")),
                ("c", n("0.25E-3")),
                ("d", n("123")),
                ("e", n("-7e5")),
                ("f", n("0e0")),
            ],
        ),
        (br#"{"a":1,"a":"2"}"#, vec![("a", n("1")), ("a", s("2"))]),
        (
            br#"{"x":{"k\"}":"]\\\"[{","\u005d":[]},"y":1}"#,
            vec![("x", Value::Object), ("y", n("1"))],
        ),
        (
            br#"{"x":[[[[]]]],"y":[{"a":[{}]}],"z":[[],{},"",0,true]}"#,
            vec![
                ("x", Value::Array),
                ("y", Value::Array),
                ("z", Value::Array),
            ],
        ),
    ]
}

const ERR_CASES: &[(&[u8], JsonErrorKind)] = &[
    (b"", Empty),
    (b"  \t\r\n", Empty),
    (b"[]", NotAnObject),
    (b"\"x\"", NotAnObject),
    (b"1", NotAnObject),
    (b"null", NotAnObject),
    (b"\xEF\xBB\xBF{}", UnexpectedByte(0xEF)),
    (b"x{}", UnexpectedByte(b'x')),
    (b"{}{}", TrailingData),
    (b"{} x", TrailingData),
    (b"{}\0", TrailingData),
    (b"{}\x0c", TrailingData),
    (b"{", UnexpectedEnd),
    (b"{\"a", UnexpectedEnd),
    (b"{\"a\"", UnexpectedEnd),
    (b"{\"a\":", UnexpectedEnd),
    (b"{\"a\":1", UnexpectedEnd),
    (b"{\"a\":1,", UnexpectedEnd),
    (b"{\"a\":[", UnexpectedEnd),
    (b"{\"a\":[1,{\"b\":2}", UnexpectedEnd),
    (b"{\"a\":\"abc", UnexpectedEnd),
    (b"{\"a\":\"\\u12", UnexpectedEnd),
    (b"{\"a\":\"\\ud800", UnexpectedEnd),
    (b"{\"a\":\"\\ud800\\", UnexpectedEnd),
    (b"{\"a\":nul", UnexpectedEnd),
    (b"{\"a\":-", UnexpectedEnd),
    (b"{\"a\":1,}", TrailingComma),
    (b"{\"a\":[1,]}", TrailingComma),
    (b"{\"a\":{\"b\":1,}}", TrailingComma),
    (b"{,}", ExpectedKey),
    (b"{a:1}", ExpectedKey),
    (b"{1:1}", ExpectedKey),
    (b"{\"a\":1,2:3}", ExpectedKey),
    (b"{\"a\":{1:2}}", ExpectedKey),
    (b"{\"a\" 1}", ExpectedColon),
    (b"{\"a\"\x0c:1}", ExpectedColon),
    (b"{\"a\":{\"b\"}}", ExpectedColon),
    (b"{\"a\":01}", InvalidNumber),
    (b"{\"a\":-01}", InvalidNumber),
    (b"{\"a\":1.}", InvalidNumber),
    (b"{\"a\":1.e5}", InvalidNumber),
    (b"{\"a\":1e}", InvalidNumber),
    (b"{\"a\":1e+}", InvalidNumber),
    (b"{\"a\":-}", InvalidNumber),
    (b"{\"a\":-a}", InvalidNumber),
    (b"{\"a\":+1}", UnexpectedByte(b'+')),
    (b"{\"a\":.5}", UnexpectedByte(b'.')),
    (b"{\"a\":NaN}", UnexpectedByte(b'N')),
    (b"{\"a\":1.5.3}", UnexpectedByte(b'.')),
    (b"{\"a\":0x10}", UnexpectedByte(b'x')),
    (b"{\"a\":tru}", InvalidLiteral),
    (b"{\"a\":True}", UnexpectedByte(b'T')),
    (b"{\"a\":[nulL]}", InvalidLiteral),
    (b"{\"a\":truex}", UnexpectedByte(b'x')),
    (b"{\"a\":'x'}", UnexpectedByte(b'\'')),
    (b"{\"a\":\"\x01\"}", ControlCharacterInString),
    (b"{\"a\":\"\t\"}", ControlCharacterInString),
    (b"{\"a\n\":1}", ControlCharacterInString),
    (b"{\"a\":[\"\x1f\"]}", ControlCharacterInString),
    (b"{\"a\":\"\\x\"}", InvalidEscape),
    (b"{\"a\":\"\\U0041\"}", InvalidEscape),
    (b"{\"a\":\"\\u12g4\"}", InvalidEscape),
    (b"{\"a\":\"\\'\"}", InvalidEscape),
    (b"{\"a\":\"\\ud800\"}", InvalidUnicodeEscape),
    (b"{\"a\":\"\\udc00\\ud800\"}", InvalidUnicodeEscape),
    (b"{\"a\":\"\\ud800\\u0041\"}", InvalidUnicodeEscape),
    (b"{\"a\":\"\\ud800\\ud800\"}", InvalidUnicodeEscape),
    (b"{\"a\":\"\\ud800\\n\"}", InvalidUnicodeEscape),
    (b"{\"a\":[\"\\udfff\"]}", InvalidUnicodeEscape),
    (b"{\"a\":\"\xff\"}", InvalidUtf8),
    (b"{\"a\":\"\xc0\x80\"}", InvalidUtf8),
    (b"{\"a\":\"\xe2\x82\"}", InvalidUtf8),
    (b"{\"a\":\"\xe2\x82", InvalidUtf8),
    (b"{\"a\":\"\xed\xa0\x80\"}", InvalidUtf8),
    (b"{\"a\":[\"\xff\"]}", InvalidUtf8),
    (b"{\"\xf8\":1}", InvalidUtf8),
    (b"{}\xff", InvalidUtf8),
    (b"{\"a\":[1 2]}", UnexpectedByte(b'2')),
    (b"{\"a\":[1}", UnexpectedByte(b'}')),
    (b"{\"a\":{\"b\":1]}", UnexpectedByte(b']')),
    (b"{\"a\":1 \"b\":2}", UnexpectedByte(b'"')),
    (b"{\"a\":1]", UnexpectedByte(b']')),
    (b"{\"a\":}", UnexpectedByte(b'}')),
];

#[test]
fn valid_bodies_decode() {
    for (input, want) in ok_cases() {
        let text = String::from_utf8_lossy(input);
        let object = parse_object(input).unwrap_or_else(|e| panic!("{text}: {e}"));
        let want: Vec<(&str, &Value)> = want.iter().map(|(k, v)| (*k, v)).collect();
        assert_eq!(members(&object), want, "{text}");
        assert_eq!(object.len(), want.len(), "{text}");
    }
}

#[test]
fn invalid_bodies_are_rejected() {
    for &(input, want) in ERR_CASES {
        let text = String::from_utf8_lossy(input);
        match parse_object(input) {
            Ok(object) => panic!("{text:?}: accepted as {object:?}"),
            Err(e) => {
                assert_eq!(e.kind(), want, "{text:?}: {e}");
                assert!(e.offset() <= input.len(), "{text:?}: {e}");
            }
        }
    }
}

#[test]
fn error_offsets() {
    let cases: &[(&[u8], usize)] = &[
        (b"{\"a\":1,}", 7),
        (b"{\"a\":1", 6),
        (b"{} x", 3),
        (b"  [", 2),
        (b"{\"a\":\"\xff\"}", 6),
        (b"{\"a\":\"x\\q\"}", 7),
        (b"{\"a\":\"\\ud800\\u0041\"}", 6),
        (b"{\"a\":01}", 6),
    ];
    for &(input, offset) in cases {
        let err = parse_object(input).unwrap_err();
        assert_eq!(
            err.offset(),
            offset,
            "{:?}: {err}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn error_display() {
    let err = parse_object(b"{\"a\":1").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid JSON at byte 6: unexpected end of input"
    );
    let err = parse_object(b"{\"a\":+1}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid JSON at byte 5: unexpected character '+'"
    );
    let err = parse_object(b"\xEF\xBB\xBF{}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid JSON at byte 0: unexpected byte 0xef"
    );
    let boxed: Box<dyn std::error::Error> = Box::new(err);
    assert!(boxed.to_string().starts_with("invalid JSON"));
}

#[test]
fn every_truncation_is_an_error() {
    for (input, _) in ok_cases() {
        let closing_brace = input.iter().rposition(|&b| b == b'}').unwrap_or_default();
        for cut in 0..closing_brace {
            let prefix = input.get(..cut).unwrap_or_default();
            let kind = parse_object(prefix).map(|_| ()).unwrap_err().kind();
            let want = if std::str::from_utf8(prefix).is_err() {
                InvalidUtf8
            } else if prefix.iter().all(u8::is_ascii_whitespace) {
                Empty
            } else {
                UnexpectedEnd
            };
            assert_eq!(kind, want, "{:?}", String::from_utf8_lossy(prefix));
        }
    }
}

#[test]
fn number_accessors() {
    let cases: &[(&str, Option<u64>, Option<i64>)] = &[
        ("0", Some(0), Some(0)),
        ("-0", None, Some(0)),
        ("10000", Some(10000), Some(10000)),
        ("18446744073709551615", Some(u64::MAX), None),
        ("18446744073709551616", None, None),
        ("-9223372036854775808", None, Some(i64::MIN)),
        ("-9223372036854775809", None, None),
        ("-1", None, Some(-1)),
        ("1.0", None, None),
        ("1e2", None, None),
        ("1E2", None, None),
    ];
    for &(literal, want_u, want_i) in cases {
        let object = parse_object(format!("{{\"n\":{literal}}}").as_bytes()).unwrap();
        let value = object.get("n").unwrap();
        assert_eq!(value.as_u64(), want_u, "{literal}");
        assert_eq!(value.as_i64(), want_i, "{literal}");
        assert_eq!(value.as_str(), None, "{literal}");
    }
    assert_eq!(s("1").as_u64(), None);
    assert_eq!(Value::Number("+1".into()).as_u64(), None);
    assert_eq!(Value::Null.as_i64(), None);
    assert_eq!(s("x").as_str(), Some("x"));
}

#[test]
fn get_matches_like_go() {
    let object = parse_object(br#"{"Topic":"a","topic":"b","TOPIC":"c","data":"d"}"#).unwrap();
    for key in ["topic", "Topic", "TOPIC", "tOpIc"] {
        assert_eq!(object.get_str(key), Some("c"), "{key}");
    }
    assert_eq!(object.get_str("DATA"), Some("d"));
    assert_eq!(object.get("missing"), None);
    assert_eq!(object.get("topi"), None);
    assert_eq!(object.get("topics"), None);

    let object = parse_object(br#"{"topic":"a","qos":1}"#).unwrap();
    assert_eq!(object.get_str("Topic"), Some("a"));
    assert_eq!(object.get_str("qos"), None);
    assert_eq!(object.get("QOS").and_then(Value::as_u64), Some(1));

    let folds = parse_object("{\"\u{17F}\":1,\"\u{212A}\":2,\"tópic\":3}".as_bytes()).unwrap();
    assert_eq!(folds.get("S").and_then(Value::as_u64), Some(1));
    assert_eq!(folds.get("s").and_then(Value::as_u64), Some(1));
    assert_eq!(folds.get("k").and_then(Value::as_u64), Some(2));
    assert_eq!(folds.get("K").and_then(Value::as_u64), Some(2));
    assert_eq!(folds.get("topic"), None);
    assert_eq!(
        folds.get("TÓPIC"),
        None,
        "only ASCII and Go's special folds"
    );
    assert_eq!(folds.get("tópic").and_then(Value::as_u64), Some(3));

    let last = parse_object(br#"{"data":"x","DATA":null}"#).unwrap();
    assert_eq!(last.get("data"), Some(&Value::Null));
    assert!(Object::default().is_empty());
    assert!(!last.is_empty());
}

#[test]
fn write_string_escapes_like_go() {
    let cases: &[(&str, &str)] = &[
        ("", r#""""#),
        ("plain text/ok", r#""plain text/ok""#),
        ("a\"b\\c", r#""a\"b\\c""#),
        ("\n\r\t", r#""\n\r\t""#),
        (
            "\0\u{1}\u{8}\u{b}\u{c}\u{1f}",
            r#""\u0000\u0001\u0008\u000b\u000c\u001f""#,
        ),
        (
            "<a href='x'>&</a>",
            r#""\u003ca href='x'\u003e\u0026\u003c/a\u003e""#,
        ),
        ("\u{2028}\u{2029}", r#""\u2028\u2029""#),
        ("\u{7f}é中😀\u{ffff}", "\"\u{7f}é中😀\u{ffff}\""),
        // Other characters that begin with 0xE2 are copied as they are.
        (
            "€\u{2027}a\u{2028}b\u{202a}\u{2029}",
            "\"€\u{2027}a\\u2028b\u{202a}\\u2029\"",
        ),
    ];
    for &(input, want) in cases {
        let mut out = String::from("prefix:");
        write_string(&mut out, input);
        assert_eq!(out, format!("prefix:{want}"), "{input:?}");
    }
}

#[test]
fn encode_object_orders_keys() {
    assert_eq!(encode_object(&[]), "{}");
    assert_eq!(
        encode_object(&[("data", "x"), ("Topic", "t")]),
        r#"{"data":"x","Topic":"t"}"#
    );
    assert_eq!(encode_object(&[("a<", "\n")]), r#"{"a\u003c":"\n"}"#);
}

#[test]
fn encode_then_parse_round_trips() {
    let mut every: String = (0u8..0x20).map(char::from).collect();
    every.push_str("\"\\/<>&\u{2028}\u{2029}\u{7f}é中😀\u{fffd}\u{10ffff} end");
    let texts = [every.as_str(), "", "hello/world", "Ünïcødé ключ 鍵 🎉"];
    for text in texts {
        let body = encode_object(&[("data", text), (text, "key"), ("Topic", "t")]);
        assert!(
            body.bytes().all(|b| b >= 0x20),
            "no raw control bytes: {body:?}"
        );
        let object = parse_object(body.as_bytes()).unwrap();
        let got: Vec<(&str, Option<&str>)> = object.iter().map(|(k, v)| (k, v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("data", Some(text)),
                (text, Some("key")),
                ("Topic", Some("t"))
            ]
        );
    }
}

#[test]
fn deep_nesting_uses_no_recursion() {
    let worker = std::thread::Builder::new().stack_size(64 * 1024).spawn(|| {
        let depth = 200_000;
        let mut body = b"{\"x\":".to_vec();
        body.extend(std::iter::repeat_n(b'[', depth));
        let unclosed = parse_object(&body).unwrap_err();
        assert_eq!(
            (unclosed.kind(), unclosed.offset()),
            (UnexpectedEnd, body.len())
        );
        body.extend(std::iter::repeat_n(b']', depth));
        body.push(b'}');
        assert_eq!(parse_object(&body).unwrap().get("x"), Some(&Value::Array));

        let mut objects = b"{\"x\":".to_vec();
        for _ in 0..depth / 2 {
            objects.extend_from_slice(b"[{\"a\":");
        }
        objects.push(b'1');
        assert_eq!(parse_object(&objects).unwrap_err().kind(), UnexpectedEnd);
        objects.extend(std::iter::repeat_n(&b"}]"[..], depth / 2).flatten());
        objects.extend_from_slice(b",\"y\":2}");
        let object = parse_object(&objects).unwrap();
        assert_eq!(object.get("y").and_then(Value::as_u64), Some(2));
    });
    worker
        .expect("spawn")
        .join()
        .expect("parsing must not overflow the stack");
}

/// Mutated bodies in [`mutated_bodies_never_panic`].
const MUTATION_CASES: usize = 100_000;

/// The bodies of `PROTOCOL.md` and the corners of the grammar.
const MUTATION_SEEDS: [&[u8]; 16] = [
    br#"{"data":"MyData","qos":0}"#,
    br#"{"qos":0,"port":"10000"}"#,
    br#"{"port":10000}"#,
    br#"{"port":"10000"}"#,
    br#"{"data":"MyData","Topic":"hello/world"}"#,
    br#"{"a":[1,2.5e-3,{"b":[true,false,null]}],"c":{}}"#,
    br#"{"s":"\ud83d\ude00 \u003c\n\"","n":-0.0}"#,
    r#"{"é":"中文","k":"😀","ſ":"\u212a"}"#.as_bytes(),
    br#"{ "x" : [ [ [ ] ] ] , "y" : { "z" : "w" } }"#,
    br#"{"data":"a\\b\/c","qos":1,"data":"dup"}"#,
    b"{}",
    b" \t\r\n{ \n } \r\n",
    br#"{"deep":[[[[{"a":[{"b":"c"}]}]]]]}"#,
    br#"{"h":"\u003cb\u003e \u0026 \b\f\r\t","t":true,"f":false,"z":null}"#,
    br#"{"n":[0,-1,1.5E+10,0.25e-3,123456789012345678901234567890]}"#,
    br#"{"k\"}":"]\\\"[{","\u005d":[]}"#,
];

/// Writes `object` back as JSON with the module's string encoder: scalars as they decoded,
/// containers as the empty container they decoded as.
fn reencode(object: &Object) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in object.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, key);
        out.push(':');
        match value {
            Value::String(text) => write_string(&mut out, text),
            Value::Number(literal) => out.push_str(literal),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Null => out.push_str("null"),
            Value::Array => out.push_str("[]"),
            Value::Object => out.push_str("{}"),
        }
    }
    out.push('}');
    out
}

/// One to four edits: flip a bit, insert an interesting byte, delete a run, or splice (replace
/// a few bytes with a slice of another seed).
fn mutate_body(rng: &mut XorShift, body: &mut Vec<u8>) {
    let interesting = b"{}[]\",:\\u0123456789-+.eEtrufalsn \t\n\x00\x1f\x7f\x80\xc3\xed\xff";
    for _ in 0..=rng.below(4) {
        let at = rng.below(body.len() + 1);
        match rng.below(4) {
            0 if at < body.len() => body[at] ^= 1 << rng.below(8),
            1 => body.insert(at, interesting[rng.below(interesting.len())]),
            2 if at < body.len() => {
                let end = (at + 1 + rng.below(4)).min(body.len());
                body.drain(at..end);
            }
            _ => {
                let donor = MUTATION_SEEDS[rng.below(MUTATION_SEEDS.len())];
                let start = rng.below(donor.len());
                let end = start + rng.below(donor.len() - start + 1);
                let cut = (at + rng.below(4)).min(body.len());
                body.splice(at..cut, donor[start..end].iter().copied());
            }
        }
    }
}

/// Decodes `body`; whatever decodes must re-encode to the same object. `true` if it decoded.
fn decode_and_reencode(body: &[u8]) -> bool {
    match parse_object(body) {
        Ok(object) => {
            assert!(object.iter().all(|(key, _)| object.get(key).is_some()));
            let text = reencode(&object);
            let again = parse_object(text.as_bytes());
            assert_eq!(again.as_ref(), Ok(&object), "re-encoded as {text:?}");
            true
        }
        Err(e) => {
            assert!(e.offset() <= body.len(), "{e}");
            false
        }
    }
}

#[test]
fn mutated_bodies_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut rejected) = (0, 0);
    for iteration in 0..MUTATION_CASES {
        let mut body = MUTATION_SEEDS[rng.below(MUTATION_SEEDS.len())].to_vec();
        mutate_body(&mut rng, &mut body);
        let outcome = std::panic::catch_unwind(|| {
            // Any text, mangled or not, survives the encoder as a key and as a value.
            if let Ok(text) = std::str::from_utf8(&body) {
                let encoded = encode_object(&[(text, text)]);
                let object = parse_object(encoded.as_bytes());
                let members = object.as_ref().map(|o| o.iter().collect::<Vec<_>>());
                assert_eq!(
                    members,
                    Ok(vec![(text, &s(text))]),
                    "encoded as {encoded:?}"
                );
            }
            decode_and_reencode(&body)
        });
        match outcome {
            Ok(true) => accepted += 1,
            Ok(false) => rejected += 1,
            Err(_) => panic!(
                "case {iteration} panicked (message above) on input b\"{}\"",
                body.escape_ascii()
            ),
        }
    }
    assert!(
        accepted > MUTATION_CASES / 20 && rejected > MUTATION_CASES / 2,
        "accepted {accepted}, rejected {rejected}"
    );
}
