//! One control line from the server: its operation and arguments.
//!
//! **Owns:** the grammar of a line (operation names in any case, arguments
//! separated by spaces or tabs, plain decimal numbers), the checks of a
//! message's sizes against the limit, and `INFO`'s fields.
//!
//! **Must never:** look past the line it is given.

use std::fmt::Write as _;

use super::{Info, ProtoError, ServerOp};
use crate::json::{Value, parse_object};

/// How much of an unknown operation's name an error keeps.
const MAX_OP_SHOWN: usize = 32;

/// Most arguments of any operation (`HMSG subject sid reply hdr total`).
const MAX_ARGS: usize = 5;

/// A parsed control line.
pub(super) enum Line {
    /// A complete operation.
    Op(ServerOp),
    /// A message, its payload still to come.
    Msg(Pending),
}

/// The control line of a `MSG` or `HMSG`.
#[derive(Debug)]
pub(super) struct Pending {
    /// The subject, as text.
    pub(super) subject: String,
    /// The subscription id.
    pub(super) sid: u64,
    /// The reply subject, as text.
    pub(super) reply: Option<String>,
    /// `Some` for `HMSG`: the size of the header block, within `total`.
    pub(super) header_len: Option<usize>,
    /// Bytes of header block and payload, before the final CRLF.
    pub(super) total: usize,
}

/// Parses one control line, without its `\n`.
pub(super) fn parse_line(line: &[u8], max_payload: usize) -> Result<Line, ProtoError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let op_end = line.iter().position(|&b| is_blank(b)).unwrap_or(line.len());
    let (op, rest) = line.split_at(op_end);
    let rest = trim_blanks(rest);
    let is = |name: &str| op.eq_ignore_ascii_case(name.as_bytes());
    let no_args = |op: ServerOp| match rest {
        [] => Ok(Line::Op(op)),
        _ => Err(ProtoError::BadArgs("unexpected argument")),
    };
    if is("MSG") {
        parse_msg(rest, false, max_payload).map(Line::Msg)
    } else if is("HMSG") {
        parse_msg(rest, true, max_payload).map(Line::Msg)
    } else if is("PING") {
        no_args(ServerOp::Ping)
    } else if is("PONG") {
        no_args(ServerOp::Pong)
    } else if is("+OK") {
        no_args(ServerOp::Ok)
    } else if is("-ERR") {
        let text = match rest {
            [b'\'', inner @ .., b'\''] => inner,
            _ => rest,
        };
        Ok(Line::Op(ServerOp::Err(
            String::from_utf8_lossy(text).into_owned(),
        )))
    } else if is("INFO") {
        parse_info(rest).map(|info| Line::Op(ServerOp::Info(info)))
    } else {
        let shown = op.get(..MAX_OP_SHOWN).unwrap_or(op);
        Err(ProtoError::UnknownOp(
            String::from_utf8_lossy(shown).into_owned(),
        ))
    }
}

/// `subject sid [reply] size` (MSG) or `subject sid [reply] hdr total`
/// (HMSG).
fn parse_msg(args: &[u8], with_headers: bool, max_payload: usize) -> Result<Pending, ProtoError> {
    let mut parts: [&[u8]; MAX_ARGS] = [&[]; MAX_ARGS];
    let mut n = 0;
    for arg in args.split(|&b| is_blank(b)).filter(|a| !a.is_empty()) {
        *parts
            .get_mut(n)
            .ok_or(ProtoError::BadArgs("too many arguments"))? = arg;
        n += 1;
    }
    let sizes = if with_headers { 2 } else { 1 };
    // `n <= MAX_ARGS`, so every index below is in bounds.
    let (subject, sid, reply) = match n.checked_sub(sizes) {
        Some(2) => (parts[0], parts[1], None),
        Some(3) => (parts[0], parts[1], Some(parts[2])),
        _ => return Err(ProtoError::BadArgs("wrong number of arguments")),
    };
    let sid = decimal(sid).ok_or(ProtoError::BadArgs("bad subscription id"))?;
    let size = |arg: &[u8]| {
        decimal(arg)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(ProtoError::BadArgs("bad size"))
    };
    let total = size(parts[n - 1])?;
    let header_len = if with_headers {
        Some(size(parts[n - 2])?)
    } else {
        None
    };
    if header_len.is_some_and(|h| h > total) {
        return Err(ProtoError::BadArgs("header size larger than total size"));
    }
    if total > max_payload {
        return Err(ProtoError::PayloadTooLarge {
            size: total,
            max: max_payload,
        });
    }
    Ok(Pending {
        subject: subject_text(subject),
        sid,
        reply: reply.map(subject_text),
        header_len,
        total,
    })
}

/// `INFO`'s JSON.
fn parse_info(json: &[u8]) -> Result<Info, ProtoError> {
    let object = parse_object(json).map_err(|_| ProtoError::BadInfo)?;
    let flag = |key| matches!(object.get(key), Some(Value::Bool(true)));
    Ok(Info {
        max_payload: object.get("max_payload").and_then(Value::as_u64),
        headers: flag("headers"),
        auth_required: flag("auth_required"),
        server_id: object.get_str("server_id").map(str::to_owned),
    })
}

/// Space or tab, the argument separators.
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `bytes` without the spaces and tabs around it.
fn trim_blanks(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_blank(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_blank(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// A plain decimal number: digits only, no sign, no overflow.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = char::from(b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// A subject as text, bytes that are not UTF-8 written `%XX`.
fn subject_text(mut bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                out.push_str(text);
                return out;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let (bad, rest) = rest.split_at(e.error_len().unwrap_or(rest.len()));
                for b in bad {
                    let _ = write!(out, "%{b:02X}"); // a String takes every write
                }
                bytes = rest;
            }
        }
    }
}
