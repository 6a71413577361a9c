//! The JSON decoder's error type.

use std::fmt;

/// Parse error: the byte offset where it was detected plus what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    offset: usize,
    kind: JsonErrorKind,
}

impl JsonError {
    pub(super) fn new(offset: usize, kind: JsonErrorKind) -> Self {
        Self { offset, kind }
    }

    /// Byte offset into the input at which the error was detected.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What went wrong.
    pub fn kind(&self) -> JsonErrorKind {
        self.kind
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.offset, self.kind)
    }
}

impl std::error::Error for JsonError {}

/// The kinds of [`JsonError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// The input is empty or only whitespace.
    Empty,
    /// The top-level value is valid JSON-looking but not an object.
    NotAnObject,
    /// The input ends in the middle of a value.
    UnexpectedEnd,
    /// A byte that cannot appear at this position.
    UnexpectedByte(u8),
    /// An object member does not start with a string key.
    ExpectedKey,
    /// An object key is not followed by `:`.
    ExpectedColon,
    /// A `,` directly followed by `}` or `]`.
    TrailingComma,
    /// A backslash escape that JSON does not define, or bad `\u` hex digits.
    InvalidEscape,
    /// A `\u` escape forming a lone or mismatched UTF-16 surrogate.
    InvalidUnicodeEscape,
    /// The input is not valid UTF-8.
    InvalidUtf8,
    /// A raw control character (below U+0020) inside a string.
    ControlCharacterInString,
    /// A number that does not follow the JSON grammar.
    InvalidNumber,
    /// A misspelled `true`, `false` or `null`.
    InvalidLiteral,
    /// Something other than whitespace after the top-level object.
    TrailingData,
}

impl fmt::Display for JsonErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::Empty => "empty input",
            Self::NotAnObject => "top-level value is not an object",
            Self::UnexpectedEnd => "unexpected end of input",
            Self::UnexpectedByte(b) if b.is_ascii_graphic() => {
                return write!(f, "unexpected character '{}'", char::from(*b));
            }
            Self::UnexpectedByte(b) => return write!(f, "unexpected byte 0x{b:02x}"),
            Self::ExpectedKey => "expected a string key",
            Self::ExpectedColon => "expected ':' after object key",
            Self::TrailingComma => "trailing comma",
            Self::InvalidEscape => "invalid escape sequence",
            Self::InvalidUnicodeEscape => "invalid unicode escape (lone or mismatched surrogate)",
            Self::InvalidUtf8 => "invalid UTF-8",
            Self::ControlCharacterInString => "control character in string",
            Self::InvalidNumber => "invalid number",
            Self::InvalidLiteral => "invalid literal",
            Self::TrailingData => "unexpected data after the object",
        };
        f.write_str(text)
    }
}
