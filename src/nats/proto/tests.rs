//! The parser: every operation and error from a table, the limits at the
//! limit and the limit + 1, operations split at every byte.

use super::*;

/// What `nats-server` 2.9 sends first (an id and a few fields shortened).
const INFO_29: &str = concat!(
    r#"INFO {"server_id":"NCXM3TP3X2R7DDH2VXUEB6CRUGQHZC4NRYRIYQ6XQY5VEGD6ZHCDWJ7C","#,
    r#""server_name":"n1","version":"2.9.21","proto":1,"git_commit":"b2e7725","#,
    r#""go":"go1.20.7","host":"0.0.0.0","port":4222,"headers":true,"#,
    r#""auth_required":true,"max_payload":1048576,"jetstream":true,"client_id":5,"#,
    r#""client_ip":"172.17.0.1","connect_urls":["10.0.0.2:4222","10.0.0.3:4222"]} "#,
    "\r\n"
);

/// Every complete operation of `bytes` fed at once, and the error if one
/// ends it.
pub(super) fn parse_all(bytes: &[u8], max_payload: usize) -> (Vec<ServerOp>, Option<ProtoError>) {
    let mut parser = Parser::new(max_payload);
    parser.feed(bytes);
    drain(&mut parser)
}

/// Calls `next` until it needs more bytes or fails.
pub(super) fn drain(parser: &mut Parser) -> (Vec<ServerOp>, Option<ProtoError>) {
    let mut ops = Vec::new();
    loop {
        match parser.next() {
            Ok(Some(op)) => ops.push(op),
            Ok(None) => return (ops, None),
            Err(e) => return (ops, Some(e)),
        }
    }
}

/// A `ServerOp::Msg`.
fn msg(
    subject: &str,
    sid: u64,
    reply: Option<&str>,
    headers: Option<&[u8]>,
    payload: &[u8],
) -> ServerOp {
    ServerOp::Msg(Msg {
        subject: subject.to_owned(),
        sid,
        reply: reply.map(str::to_owned),
        headers: headers.map(<[u8]>::to_vec),
        payload: payload.to_vec(),
    })
}

#[test]
fn operations() {
    let info_29 = ServerOp::Info(Info {
        max_payload: Some(1_048_576),
        headers: true,
        auth_required: true,
        server_id: Some("NCXM3TP3X2R7DDH2VXUEB6CRUGQHZC4NRYRIYQ6XQY5VEGD6ZHCDWJ7C".into()),
    });
    let hdr: &[u8] = b"NATS/1.0\r\nMb-Origin: b1\r\n\r\n";
    let cases: Vec<(&[u8], ServerOp)> = vec![
        (b"PING\r\n", ServerOp::Ping),
        (b"ping\r\n", ServerOp::Ping),
        (b"PONG\r\n", ServerOp::Pong),
        (b"PoNg \t\r\n", ServerOp::Pong),
        (b"+OK\r\n", ServerOp::Ok),
        (b"+ok\r\n", ServerOp::Ok),
        (b"PING\n", ServerOp::Ping),
        (
            b"-ERR 'Unknown Protocol Operation'\r\n",
            ServerOp::Err("Unknown Protocol Operation".into()),
        ),
        (
            b"-ERR 'Authorization Violation'\r\n",
            ServerOp::Err("Authorization Violation".into()),
        ),
        (b"-err  plain text \r\n", ServerOp::Err("plain text".into())),
        (b"-ERR\r\n", ServerOp::Err(String::new())),
        (b"-ERR '\r\n", ServerOp::Err("'".into())),
        (INFO_29.as_bytes(), info_29),
        (b"INFO {}\r\n", ServerOp::Info(Info::default())),
        (
            b"info\t{\"headers\":\"yes\",\"max_payload\":-1,\"server_id\":7}\r\n",
            ServerOp::Info(Info::default()),
        ),
        (
            b"MSG mb.a 1 5\r\nhello\r\n",
            msg("mb.a", 1, None, None, b"hello"),
        ),
        (b"MSG mb.a 1 0\r\n\r\n", msg("mb.a", 1, None, None, b"")),
        (
            b"msg mb.a.b 42 _INBOX.x 3\r\nabc\r\n",
            msg("mb.a.b", 42, Some("_INBOX.x"), None, b"abc"),
        ),
        (
            b"MSG  mb.a \t 7\t\t2  \r\nhi\r\n",
            msg("mb.a", 7, None, None, b"hi"),
        ),
        (
            b"MSG mb.a 1 4\r\n\r\n\r\n\r\n",
            msg("mb.a", 1, None, None, b"\r\n\r\n"),
        ),
        (
            b"MSG mb.a 1 3\n\0\xff\n\r\n",
            msg("mb.a", 1, None, None, b"\0\xff\n"),
        ),
        (
            b"MSG mb.\xff\xc3 01 1\r\nx\r\n",
            msg("mb.%FF%C3", 1, None, None, b"x"),
        ),
        (
            b"MSG 18446744073709551615 18446744073709551615 0\r\n\r\n",
            msg("18446744073709551615", u64::MAX, None, None, b""),
        ),
        (
            b"HMSG mb.a 9 27 30\r\nNATS/1.0\r\nMb-Origin: b1\r\n\r\nabc\r\n",
            msg("mb.a", 9, None, Some(hdr), b"abc"),
        ),
        (
            b"hmsg mb.a 9 r.1 27 27\r\nNATS/1.0\r\nMb-Origin: b1\r\n\r\n\r\n",
            msg("mb.a", 9, Some("r.1"), Some(hdr), b""),
        ),
        (
            b"HMSG mb.a 2 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
            msg("mb.a", 2, None, Some(b"NATS/1.0 503\r\n\r\n"), b""),
        ),
        (
            b"HMSG mb.a 2 0 1\r\nx\r\n",
            msg("mb.a", 2, None, Some(b""), b"x"),
        ),
    ];
    for (bytes, expected) in cases {
        let shown = String::from_utf8_lossy(bytes);
        assert_eq!(parse_all(bytes, 1024), (vec![expected], None), "{shown:?}");
    }
}

#[test]
fn errors() {
    use ProtoError::*;
    let args = |why| BadArgs(why);
    let cases: Vec<(&[u8], ProtoError)> = vec![
        (b"FOO\r\n", UnknownOp("FOO".into())),
        (b"\r\n", UnknownOp(String::new())),
        (b" PING\r\n", UnknownOp(String::new())),
        (b"PUB a 1\r\n", UnknownOp("PUB".into())),
        (b"PI\rNG\r\n", UnknownOp("PI\rNG".into())),
        (b"OK\r\n", UnknownOp("OK".into())),
        (
            b"HTTP/1.1 400 Bad Request\r\n",
            UnknownOp("HTTP/1.1".into()),
        ),
        (b"PING x\r\n", args("unexpected argument")),
        (b"+OK ok\r\n", args("unexpected argument")),
        (b"MSG\r\n", args("wrong number of arguments")),
        (b"MSG a\r\n", args("wrong number of arguments")),
        (b"MSG a 1\r\n", args("wrong number of arguments")),
        (b"MSG a 1 r 2 3\r\n", args("wrong number of arguments")),
        (b"MSG a 1 r 2 3 4\r\n", args("too many arguments")),
        (b"HMSG a 1 2\r\n", args("wrong number of arguments")),
        (b"HMSG a 1 r x 2 3\r\n", args("too many arguments")),
        (b"MSG a x 1\r\n", args("bad subscription id")),
        (b"MSG a -1 1\r\n", args("bad subscription id")),
        (
            b"MSG a 18446744073709551616 1\r\n",
            args("bad subscription id"),
        ),
        (b"MSG a 1 99999999999999999999999\r\n", args("bad size")),
        (b"MSG a 1 -1\r\n", args("bad size")),
        (b"MSG a 1 +1\r\n", args("bad size")),
        (b"MSG a 1 1x\r\n", args("bad size")),
        (b"MSG a 1 0x1\r\n", args("bad size")),
        (b"MSG a 1 \xd9\xa1\r\n", args("bad size")), // Arabic-Indic one
        (b"MSG a 1 2\r\r\n", args("bad size")),
        (b"HMSG a 1 -1 2\r\n", args("bad size")),
        (b"HMSG a 1 1 -2\r\n", args("bad size")),
        (
            b"HMSG a 1 3 2\r\n",
            args("header size larger than total size"),
        ),
        (
            b"MSG a 1 1025\r\n",
            PayloadTooLarge {
                size: 1025,
                max: 1024,
            },
        ),
        (
            b"HMSG a 1 12 1025\r\n",
            PayloadTooLarge {
                size: 1025,
                max: 1024,
            },
        ),
        (b"MSG a 1 2\r\nabXY", MissingCrlf),
        (b"MSG a 1 2\r\nab\n\r", MissingCrlf),
        (b"MSG a 1 2\r\nab\rX", MissingCrlf),
        (b"MSG a 1 2\r\nabc", MissingCrlf),
        (b"MSG a 1 2\r\nabc\r\n", MissingCrlf),
        (b"HMSG a 1 12 14\r\nNATS/1.0\r\n\r\nab\n", MissingCrlf),
        (b"INFO\r\n", BadInfo),
        (b"INFO nope\r\n", BadInfo),
        (b"INFO []\r\n", BadInfo),
        (b"INFO {\"a\":1}x\r\n", BadInfo),
        (b"INFO {\"a\":\xff}\r\n", BadInfo),
    ];
    for (bytes, expected) in cases {
        let shown = String::from_utf8_lossy(bytes);
        assert_eq!(
            parse_all(bytes, 1024),
            (vec![], Some(expected)),
            "{shown:?}"
        );
    }
}

#[test]
fn unknown_ops_are_shown_truncated() {
    let (_, err) = parse_all(format!("{}\r\n", "Y".repeat(40)).as_bytes(), 10);
    assert_eq!(err, Some(ProtoError::UnknownOp("Y".repeat(32))));
    let (_, err) = parse_all(format!("a{}\r\n", "Ü".repeat(17)).as_bytes(), 10);
    assert_eq!(
        err,
        Some(ProtoError::UnknownOp(format!(
            "a{}\u{FFFD}",
            "Ü".repeat(15)
        )))
    );
}

#[test]
fn error_messages() {
    let cases = [
        (
            ProtoError::LineTooLong,
            "control line longer than 65536 bytes",
        ),
        (
            ProtoError::UnknownOp("FOO".into()),
            "unknown operation 'FOO'",
        ),
        (ProtoError::BadArgs("bad size"), "bad arguments: bad size"),
        (
            ProtoError::PayloadTooLarge { size: 9, max: 8 },
            "message of 9 bytes is larger than the 8 allowed",
        ),
        (
            ProtoError::MissingCrlf,
            "message payload not followed by CRLF",
        ),
        (ProtoError::BadInfo, "INFO is not a JSON object"),
    ];
    for (err, text) in cases {
        assert_eq!(err.to_string(), text);
    }
}

/// A stream of every kind of operation, and what it parses to.
fn stream() -> (Vec<u8>, Vec<ServerOp>) {
    let mut bytes = INFO_29.as_bytes().to_vec();
    bytes.extend_from_slice(b"+OK\r\nPING\r\nMSG mb.a 1 5\r\nhello\r\n");
    bytes.extend_from_slice(b"HMSG mb.b 2 r 27 29\r\nNATS/1.0\r\nMb-Origin: b1\r\n\r\n\r\n\r\n");
    bytes.extend_from_slice(b"pong\n-ERR 'Stale Connection'\r\nMSG mb.c 3 0\r\n\r\n");
    let (ops, err) = parse_all(&bytes, 1 << 20);
    assert_eq!((ops.len(), err), (8, None));
    (bytes, ops)
}

#[test]
fn many_operations_in_one_feed() {
    let (_, ops) = stream();
    assert_eq!(
        ops[1..4],
        [
            ServerOp::Ok,
            ServerOp::Ping,
            msg("mb.a", 1, None, None, b"hello")
        ]
    );
    let hdr: &[u8] = b"NATS/1.0\r\nMb-Origin: b1\r\n\r\n";
    assert_eq!(ops[4], msg("mb.b", 2, Some("r"), Some(hdr), b"\r\n"));
    assert_eq!(
        ops[5..],
        [
            ServerOp::Pong,
            ServerOp::Err("Stale Connection".into()),
            msg("mb.c", 3, None, None, b"")
        ]
    );
}

#[test]
fn split_at_every_boundary() {
    let (bytes, expected) = stream();
    for chunk in [1, 2, 3, 7, 64, 500] {
        let mut parser = Parser::new(1 << 20);
        let mut ops = Vec::new();
        for piece in bytes.chunks(chunk) {
            parser.feed(piece);
            let (more, err) = drain(&mut parser);
            assert_eq!(err, None, "chunk {chunk}");
            ops.extend(more);
        }
        assert_eq!(ops, expected, "chunk {chunk}");
        assert_eq!(parser.buffered(), 0);
    }
    for cut in 0..=bytes.len() {
        let mut parser = Parser::new(1 << 20);
        parser.feed(&bytes[..cut]);
        let (mut ops, err) = drain(&mut parser);
        assert_eq!(err, None, "cut {cut}");
        parser.feed(&bytes[cut..]);
        let (more, err) = drain(&mut parser);
        assert_eq!(err, None, "cut {cut}");
        ops.extend(more);
        assert_eq!(ops, expected, "cut {cut}");
    }
}

#[test]
fn truncated_operations_wait() {
    let (bytes, expected) = stream();
    for cut in 0..bytes.len() {
        let (ops, err) = parse_all(&bytes[..cut], 1 << 20);
        assert_eq!(err, None, "cut {cut}");
        assert!(
            ops.len() < expected.len() && expected.starts_with(&ops),
            "cut {cut}"
        );
    }
}

#[test]
fn control_line_limit() {
    // A line of MAX_LINE bytes, CRLF included, is read; one byte more is not.
    let line = |len: usize| format!("-ERR '{}'\r\n", "x".repeat(len - 9)).into_bytes();
    let (ops, err) = parse_all(&line(MAX_LINE), 1);
    assert_eq!(
        (ops, err),
        (vec![ServerOp::Err("x".repeat(MAX_LINE - 9))], None)
    );
    assert_eq!(
        parse_all(&line(MAX_LINE + 1), 1).1,
        Some(ProtoError::LineTooLong)
    );

    // Without a newline: waits at the limit, fails at the limit + 1.
    let mut parser = Parser::new(1);
    parser.feed(&vec![b'I'; MAX_LINE]);
    assert_eq!(parser.next(), Ok(None));
    assert_eq!(parser.buffered(), MAX_LINE);
    parser.feed(b"N");
    assert_eq!(parser.next(), Err(ProtoError::LineTooLong));

    // The same a byte at a time (each byte is scanned once).
    let mut parser = Parser::new(1);
    for _ in 0..MAX_LINE {
        parser.feed(b"-");
        assert_eq!(parser.next(), Ok(None));
    }
    parser.feed(b"\n");
    assert_eq!(parser.next(), Err(ProtoError::LineTooLong));
}

#[test]
fn payload_limit_is_checked_before_the_payload() {
    let mut parser = Parser::new(10);
    parser.feed(b"MSG a 1 10\r\n");
    assert_eq!(parser.next(), Ok(None));
    assert_eq!(parser.buffered(), 0, "the control line is consumed");
    parser.feed(b"0123456789\r");
    assert_eq!(parser.next(), Ok(None));
    parser.feed(b"\n");
    assert_eq!(
        parser.next(),
        Ok(Some(msg("a", 1, None, None, b"0123456789")))
    );

    let mut parser = Parser::new(10);
    parser.feed(b"MSG a 1 11\r\n");
    assert_eq!(
        parser.next(),
        Err(ProtoError::PayloadTooLarge { size: 11, max: 10 })
    );
    let mut parser = Parser::new(10);
    parser.feed(b"HMSG a 1 4 4000000000\r\n");
    assert_eq!(
        parser.next(),
        Err(ProtoError::PayloadTooLarge {
            size: 4_000_000_000,
            max: 10
        })
    );
}

#[test]
fn consumed_bytes_are_dropped_on_feed() {
    let mut parser = Parser::new(1 << 20);
    parser.feed(b"PING\r\nPONG\r\nMSG a 1 3\r\nab");
    assert_eq!(parser.next(), Ok(Some(ServerOp::Ping)));
    assert_eq!(parser.buffered(), 19);
    assert_eq!(parser.next(), Ok(Some(ServerOp::Pong)));
    assert_eq!(parser.next(), Ok(None));
    assert_eq!(parser.buffered(), 2);
    parser.feed(b"c\r\n");
    assert_eq!(parser.buffered(), 5);
    assert_eq!(parser.next(), Ok(Some(msg("a", 1, None, None, b"abc"))));
    assert_eq!(parser.buffered(), 0);

    // The memory of a large message is given back once it is parsed.
    let big = vec![b'x'; 4 * MAX_LINE];
    parser.feed(format!("MSG a 1 {}\r\n", big.len()).as_bytes());
    parser.feed(&big);
    parser.feed(b"\r\n");
    assert!(matches!(parser.next(), Ok(Some(ServerOp::Msg(_)))));
    parser.feed(b"PING\r\n");
    assert!(parser.buf.capacity() <= KEEP_CAPACITY);
    assert_eq!(parser.next(), Ok(Some(ServerOp::Ping)));
}
