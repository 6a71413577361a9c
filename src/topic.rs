//! What a topic name may be (PROTOCOL.md section 1): non-empty UTF-8 without
//! control characters. Shared by the broker (which checks what peers send) and
//! the client (which refuses to send what the broker would reject).

/// Checks a decoded topic name.
///
/// # Errors
/// A short reason, suitable as a 400 body.
pub(crate) fn validate(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() {
        return Err("empty topic");
    }
    if topic.chars().any(char::is_control) {
        return Err("control character in topic");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn table() {
        let cases: &[(&str, bool)] = &[
            ("hello/world", true),
            ("a", true),
            ("ünïcode/topic", true),
            ("with space", true),
            ("", false),
            ("nul\0", false),
            ("tab\there", false),
            ("del\u{7f}", false),
            ("c1\u{85}", false),
        ];
        for (topic, ok) in cases {
            assert_eq!(validate(topic).is_ok(), *ok, "{topic:?}");
        }
    }
}
