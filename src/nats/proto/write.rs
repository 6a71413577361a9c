//! What the client sends: `CONNECT`, `PUB`, `HPUB`, `SUB`, `UNSUB`, `PING`
//! and `PONG`, appended to an output buffer.
//!
//! **Must never:** write a subject, header name or header value holding
//! whitespace, CR or LF (it would split the operation); the callers pass
//! subjects from `crate::nats::subject` and headers they made, and debug
//! builds check it.

use super::header::HEADER_VERSION;
use crate::json::write_string;
use crate::nats::url::Auth;

/// `PING`, to check the server is alive.
pub(crate) const PING: &[u8] = b"PING\r\n";
/// `PONG`, the answer to the server's `PING`.
pub(crate) const PONG: &[u8] = b"PONG\r\n";

/// The fields of `CONNECT` that vary. No `Debug`: it holds credentials.
pub(crate) struct Connect<'a> {
    /// The client's name (shown by the server's monitoring).
    pub(crate) name: &'a str,
    /// The client's version.
    pub(crate) version: &'a str,
    /// Credentials.
    pub(crate) auth: &'a Auth,
    /// Whether the server sends our own messages back to us.
    pub(crate) echo: bool,
}

/// Appends `CONNECT {json}\r\n`: not verbose (no `+OK`), headers on, the
/// credentials of `c.auth` as `user`/`pass` or `auth_token`.
pub(crate) fn write_connect(out: &mut Vec<u8>, c: &Connect<'_>) {
    let mut json = String::from(
        r#"{"verbose":false,"pedantic":false,"tls_required":false,"lang":"rust","name":"#,
    );
    write_string(&mut json, c.name);
    json.push_str(r#","version":"#);
    write_string(&mut json, c.version);
    json.push_str(r#","protocol":1,"headers":true,"no_responders":false,"echo":"#);
    json.push_str(if c.echo { "true" } else { "false" });
    match c.auth {
        Auth::None => {}
        Auth::UserPass { user, pass } => {
            json.push_str(r#","user":"#);
            write_string(&mut json, user);
            json.push_str(r#","pass":"#);
            write_string(&mut json, pass);
        }
        Auth::Token(token) => {
            json.push_str(r#","auth_token":"#);
            write_string(&mut json, token);
        }
    }
    json.push('}');
    out.extend_from_slice(b"CONNECT ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `PUB subject size\r\npayload\r\n` (the bridge always sends
/// `HPUB`: this is for tests).
#[cfg(test)]
pub(crate) fn write_pub(out: &mut Vec<u8>, subject: &str, payload: &[u8]) {
    debug_assert!(is_token(subject), "subject {subject:?}");
    out.reserve(subject.len() + payload.len() + 32);
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    push_decimal(out, payload.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Appends `HPUB subject hdr_len total_len\r\n`, the header block
/// (`NATS/1.0\r\nK: V\r\n…\r\n`), the payload and `\r\n`.
pub(crate) fn write_hpub(
    out: &mut Vec<u8>,
    subject: &str,
    headers: &[(&str, &str)],
    payload: &[u8],
) {
    debug_assert!(is_token(subject), "subject {subject:?}");
    debug_assert!(
        headers
            .iter()
            .all(|(k, v)| is_token(k) && !k.contains(':') && !v.contains(['\r', '\n'])),
        "headers {headers:?}"
    );
    // "NATS/1.0\r\n", then "K: V\r\n" per header, then "\r\n".
    let fields: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    let header_len = HEADER_VERSION.len() + 2 + fields + 2;
    let total = header_len + payload.len();
    out.reserve(subject.len() + total + 48);
    out.extend_from_slice(b"HPUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    push_decimal(out, header_len as u64);
    out.push(b' ');
    push_decimal(out, total as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(HEADER_VERSION.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Appends `SUB subject sid\r\n`.
pub(crate) fn write_sub(out: &mut Vec<u8>, subject: &str, sid: u64) {
    debug_assert!(is_token(subject), "subject {subject:?}");
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    push_decimal(out, sid);
    out.extend_from_slice(b"\r\n");
}

/// Appends `UNSUB sid\r\n`.
pub(crate) fn write_unsub(out: &mut Vec<u8>, sid: u64) {
    out.extend_from_slice(b"UNSUB ");
    push_decimal(out, sid);
    out.extend_from_slice(b"\r\n");
}

/// Whether `s` is non-empty and free of whitespace and control characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && !s
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
}

/// Appends `n` in decimal, without allocating.
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(crate::http::decimal(n, &mut [0; 20]).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_object;
    use crate::nats::proto::tests::parse_all;
    use crate::nats::proto::{ServerOp, header};

    #[test]
    fn encoders() {
        let mut out = Vec::new();
        write_pub(&mut out, "mb.a%2Eb", b"hello");
        write_pub(&mut out, "mb.a", b"");
        write_sub(&mut out, "mb.a.>", 1);
        write_sub(&mut out, "mb.*", u64::MAX);
        write_unsub(&mut out, 0);
        write_unsub(&mut out, 12);
        out.extend_from_slice(PING);
        out.extend_from_slice(PONG);
        let expected = concat!(
            "PUB mb.a%2Eb 5\r\nhello\r\n",
            "PUB mb.a 0\r\n\r\n",
            "SUB mb.a.> 1\r\n",
            "SUB mb.* 18446744073709551615\r\n",
            "UNSUB 0\r\n",
            "UNSUB 12\r\n",
            "PING\r\nPONG\r\n",
        );
        assert_eq!(String::from_utf8_lossy(&out), expected);

        /// Headers, payload, the bytes written.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [u8], &'a str);
        let cases: &[Case<'_>] = &[
            (&[], b"", "HPUB mb.a 12 12\r\nNATS/1.0\r\n\r\n\r\n"),
            (
                &[("Mb-Origin", "b1")],
                b"abc",
                "HPUB mb.a 27 30\r\nNATS/1.0\r\nMb-Origin: b1\r\n\r\nabc\r\n",
            ),
            (
                &[("A", "1"), ("B", "")],
                b"\r\n",
                "HPUB mb.a 23 25\r\nNATS/1.0\r\nA: 1\r\nB: \r\n\r\n\r\n\r\n",
            ),
        ];
        for &(headers, payload, expected) in cases {
            let mut out = Vec::new();
            write_hpub(&mut out, "mb.a", headers, payload);
            assert_eq!(String::from_utf8_lossy(&out), expected);
            // What the server would deliver parses back to the same block.
            let delivered = format!("HMSG mb.a 1 {}", &expected["HPUB mb.a ".len()..]);
            let (ops, err) = parse_all(delivered.as_bytes(), 1024);
            assert_eq!(err, None);
            let Some(ServerOp::Msg(m)) = ops.first() else {
                panic!("{ops:?}")
            };
            assert_eq!(m.payload, payload);
            for (name, value) in headers {
                assert_eq!(
                    header(m.headers.as_deref().unwrap_or_default(), name),
                    Some(*value)
                );
            }
        }
    }

    #[test]
    fn connect() {
        let none = Auth::None;
        let user = Auth::UserPass {
            user: "u\"1".into(),
            pass: "p<w>".into(),
        };
        let token = Auth::Token("s3cr3t".into());
        let base = concat!(
            r#"CONNECT {"verbose":false,"pedantic":false,"tls_required":false,"lang":"rust","#,
            r#""name":"broker b1","version":"0.1.0","protocol":1,"headers":true,"#,
            r#""no_responders":false,"#
        );
        let cases = [
            (&none, false, r#""echo":false}"#),
            (&none, true, r#""echo":true}"#),
            (
                &user,
                false,
                r#""echo":false,"user":"u\"1","pass":"p\u003cw\u003e"}"#,
            ),
            (&token, true, r#""echo":true,"auth_token":"s3cr3t"}"#),
        ];
        for (auth, echo, tail) in cases {
            let mut out = Vec::new();
            let c = Connect {
                name: "broker b1",
                version: "0.1.0",
                auth,
                echo,
            };
            write_connect(&mut out, &c);
            assert_eq!(String::from_utf8_lossy(&out), format!("{base}{tail}\r\n"));
            let json = out
                .strip_prefix(b"CONNECT ")
                .and_then(|j| j.strip_suffix(b"\r\n"));
            assert!(parse_object(json.unwrap_or_default()).is_ok());
        }
    }
}
