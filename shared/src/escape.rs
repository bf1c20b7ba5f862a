//! ModSecurity's `log_escape` family (`msc_util.c: _log_escape()`), both ways.
//!
//! The index line and the `Message:` metadata are printable ASCII because ModSecurity
//! escapes everything else: `\b \n \r \t \v` as C escapes, `\` as `\\`, `"` as `\"` in
//! the quoting variants, and any other byte below 0x20 or from 0x7f up as `\xHH`
//! (lowercase hex). [`unescape`] turns such text back into the bytes that were logged.

use thiserror::Error;

/// Why a log-escaped field could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EscapeError {
    /// A backslash followed by something ModSecurity never writes after one.
    #[error("unknown escape `\\{}` at byte {offset}", char::from(*.byte).escape_default())]
    Unknown { offset: usize, byte: u8 },
    /// `\x` not followed by two hex digits.
    #[error("`\\x` without two hex digits at byte {offset}")]
    BadHex { offset: usize },
    /// The text ends inside an escape (a lone `\` or `\x4`).
    #[error("text ends inside an escape at byte {offset}")]
    Incomplete { offset: usize },
}

/// What to do with an escape that the end of the text cut short.
///
/// ModSecurity shortens an over-long index line *after* escaping, by writing a NUL at a
/// byte offset, so the request field of an `L` line can end in `\` or `\x4`. Only there is
/// a cut escape legitimate; everywhere else it is a malformed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutEscape {
    /// Report [`EscapeError::Incomplete`].
    Reject,
    /// Keep the cut escape's bytes literally.
    KeepLiteral,
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes a field written by `log_escape`/`log_escape_nq` back into raw bytes.
///
/// Bytes that are not part of an escape (including a raw `"` from `log_escape_nq`) are
/// kept as they are.
pub fn unescape(input: &[u8], cut: CutEscape) -> Result<Vec<u8>, EscapeError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let Some(&next) = input.get(i + 1) else {
            return cut_short(input, i, cut, out);
        };
        let decoded = match next {
            b'\\' => b'\\',
            b'"' => b'"',
            b'b' => 0x08,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            b'x' => {
                let digits = &input[i + 2..input.len().min(i + 4)];
                if digits.len() < 2 {
                    if digits.iter().all(|d| hex_val(*d).is_some()) {
                        return cut_short(input, i, cut, out);
                    }
                    return Err(EscapeError::BadHex { offset: i });
                }
                match (hex_val(digits[0]), hex_val(digits[1])) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 4;
                        continue;
                    }
                    _ => return Err(EscapeError::BadHex { offset: i }),
                }
            }
            other => {
                return Err(EscapeError::Unknown {
                    offset: i,
                    byte: other,
                })
            }
        };
        out.push(decoded);
        i += 2;
    }
    Ok(out)
}

fn cut_short(
    input: &[u8],
    at: usize,
    cut: CutEscape,
    mut out: Vec<u8>,
) -> Result<Vec<u8>, EscapeError> {
    match cut {
        CutEscape::Reject => Err(EscapeError::Incomplete { offset: at }),
        CutEscape::KeepLiteral => {
            out.extend_from_slice(&input[at..]);
            Ok(out)
        }
    }
}

/// One byte as an escape: 2 or 4 ASCII bytes (`\n`, `\\`, `\x1b`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escaped {
    bytes: [u8; 4],
    len: u8,
}

impl Escaped {
    fn c(c: u8) -> Escaped {
        Escaped {
            bytes: [b'\\', c, 0, 0],
            len: 2,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("an escape is ASCII")
    }
}

/// How ModSecurity's `log_escape` (`quotes == true`) or `log_escape_nq` writes `b`:
/// `None` when as itself (printable ASCII but `\`, and `"` with quotes).
pub fn escape_byte(b: u8, quotes: bool) -> Option<Escaped> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    Some(match b {
        b'"' if quotes => Escaped::c(b'"'),
        b'\\' => Escaped::c(b'\\'),
        0x08 => Escaped::c(b'b'),
        b'\n' => Escaped::c(b'n'),
        b'\r' => Escaped::c(b'r'),
        b'\t' => Escaped::c(b't'),
        0x0b => Escaped::c(b'v'),
        0x20..=0x7e => return None,
        _ => Escaped {
            bytes: [
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ],
            len: 4,
        },
    })
}

/// How [`escape_lines`] writes `b`: newlines, tabs and backslashes as themselves, every
/// other byte as [`escape_byte`] writes it.
pub fn escape_byte_in_lines(b: u8) -> Option<Escaped> {
    match b {
        b'\n' | b'\t' | b'\\' => None,
        _ => escape_byte(b, false),
    }
}

/// Escapes bytes the way ModSecurity's `log_escape` (`quotes == true`) or
/// `log_escape_nq` (`quotes == false`) does. Used by tests and by the Sguil detail text.
pub fn escape(input: &[u8], quotes: bool) -> Vec<u8> {
    escape_with(input, |b| escape_byte(b, quotes))
}

/// Text meant to be read as lines (a raw event, a detail on a terminal): printable ASCII,
/// newlines, tabs and backslashes as they are, any other byte escaped as [`escape`] does,
/// so nothing in it can drive a terminal or a renderer.
pub fn escape_lines(input: &[u8]) -> Vec<u8> {
    escape_with(input, escape_byte_in_lines)
}

/// Text for one log line, a reason file or a terminal line, where some of it came from
/// an event (a unique id, a rule id, a parse error quoting a field): control characters
/// (C0, DEL, C1) and the Unicode controls that reorder or hide what follows (bidi
/// overrides and isolates, zero-width joiners) are written as escapes (`\n`, `\x1b`,
/// `\u{202e}`), so nothing an attacker wrote can start a forged line, move the cursor or
/// recolour the terminal. Other text, UTF-8 included, is kept. Borrows when nothing needs
/// escaping (the common case: one scan).
pub fn escape_text(text: &str) -> std::borrow::Cow<'_, str> {
    fn hostile(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(hostile) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !hostile(c) {
            out.push(c);
        } else if let Some(e) = u8::try_from(c).ok().and_then(|b| escape_byte(b, false)) {
            out.push_str(e.as_str());
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// JSON text (as `serde_json` writes it) with every character outside printable ASCII
/// written as a `\uXXXX` escape, so that a string from the queue or an event reaches a
/// terminal as plain text: `serde_json` escapes C0 controls but writes DEL, C1 controls
/// (U+009B is a CSI) and bidi overrides as they are. Still the same JSON value: outside
/// strings, JSON text is ASCII.
pub fn json_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if (' '..='~').contains(&c) || c == '\n' {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

fn escape_with(input: &[u8], form: impl Fn(u8) -> Option<Escaped>) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for &b in input {
        match form(b) {
            Some(e) => out.extend_from_slice(e.as_bytes()),
            None => out.push(b),
        }
    }
    out
}

/// Scans `field` backwards from `end` (exclusive) for the `"` that opens a quoted,
/// log-escaped field whose closing quote is at `end`.
///
/// Inside `log_escape` output every `"` is preceded by an odd number of backslashes, so
/// the opening quote is the nearest one preceded by an even number.
pub(crate) fn find_opening_quote(line: &[u8], end: usize) -> Option<usize> {
    let mut i = end;
    while i > 0 {
        i -= 1;
        if line[i] == b'"' {
            let backslashes = line[..i].iter().rev().take_while(|&&c| c == b'\\').count();
            if backslashes % 2 == 0 {
                return Some(i);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {

    #[test]
    fn text_for_a_log_line_keeps_utf8_and_escapes_what_drives_a_terminal() {
        assert!(matches!(
            escape_text("fine: caf\u{e9} \u{2026}"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_text(
                "id\n2026-12-02 ERROR: forged\r\x1b[31mred\x7f\u{85}\u{202e}gnp.exe\u{200b}"
            ),
            "id\\n2026-12-02 ERROR: forged\\r\\x1b[31mred\\x7f\\x85\\u{202e}gnp.exe\\u{200b}"
        );
        // Nothing hostile is left in any text, whatever it holds.
        for c in (0..0x3000u32).filter_map(char::from_u32) {
            let out = escape_text(&c.to_string()).into_owned();
            assert!(
                !out.chars()
                    .any(|o| o.is_control() || ('\u{202a}'..='\u{202e}').contains(&o)),
                "{c:?} -> {out:?}"
            );
        }
    }
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_every_escape_kind() {
        let got = unescape(br#"a\"b\\c\x00\xff\xC3\t\n\r\b\v"#, CutEscape::Reject).unwrap();
        assert_eq!(got, b"a\"b\\c\x00\xff\xc3\t\n\r\x08\x0b");
    }

    #[test]
    fn unknown_and_bad_escapes_are_errors_with_offsets() {
        assert_eq!(
            unescape(b"ab\\q", CutEscape::Reject),
            Err(EscapeError::Unknown {
                offset: 2,
                byte: b'q'
            })
        );
        assert_eq!(
            unescape(b"\\xzz", CutEscape::Reject),
            Err(EscapeError::BadHex { offset: 0 })
        );
    }

    #[test]
    fn cut_escapes_only_allowed_when_asked() {
        assert_eq!(
            unescape(b"ab\\x4", CutEscape::Reject),
            Err(EscapeError::Incomplete { offset: 2 })
        );
        assert_eq!(
            unescape(b"ab\\", CutEscape::Reject),
            Err(EscapeError::Incomplete { offset: 2 })
        );
        assert_eq!(
            unescape(b"ab\\x4", CutEscape::KeepLiteral).unwrap(),
            b"ab\\x4"
        );
        assert_eq!(
            unescape(b"ab\\x", CutEscape::KeepLiteral).unwrap(),
            b"ab\\x"
        );
        assert_eq!(unescape(b"ab\\", CutEscape::KeepLiteral).unwrap(), b"ab\\");
    }

    #[test]
    fn lines_keep_newlines_tabs_and_backslashes_and_escape_the_rest() {
        assert_eq!(
            escape_lines(b"a\\b\n\tc\r\x00\xff\x1b[31m\"\x08"),
            b"a\\b\n\tc\\r\\x00\\xff\\x1b[31m\"\\b"
        );
    }

    #[test]
    fn opening_quote_skips_escaped_quotes() {
        let line = br#"x "a\"b\\" y"#;
        let close = 9;
        assert_eq!(line[close], b'"');
        assert_eq!(find_opening_quote(line, close), Some(2));
    }

    proptest! {
        #[test]
        fn escape_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..200), quotes in any::<bool>()) {
            let escaped = escape(&bytes, quotes);
            prop_assert!(escaped.iter().all(|b| (0x20..0x7f).contains(b)));
            prop_assert_eq!(unescape(&escaped, CutEscape::Reject).unwrap(), bytes);
        }

        #[test]
        fn unescape_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = unescape(&bytes, CutEscape::Reject);
            let _ = unescape(&bytes, CutEscape::KeepLiteral);
        }
    }
}
