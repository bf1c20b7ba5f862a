//! Tcl lists, as sguild reads and writes its lines (ARCHITECTURE.md, "Sguil's agent protocol", 1).
//!
//! sguild parses each line as a Tcl list and drops one that is not a well-formed list
//! without a reply, so everything sent is built by [`element`], and replies are split
//! by [`split`].

use thiserror::Error;

/// A line that is not a well-formed Tcl list.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a Tcl list: {why} at byte {offset}")]
pub struct TclError {
    pub why: &'static str,
    pub offset: usize,
}

/// Tcl's list separators: space, tab, newline, vertical tab, form feed, carriage return.
fn separator(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Bytes that force quoting of a list element (besides being empty).
fn special(b: u8) -> bool {
    separator(b) || matches!(b, b'{' | b'}' | b'[' | b']' | b'$' | b';' | b'\\' | b'"')
}

/// Writes `text` as one list element: bare when it can be, else in braces when that
/// is exact, else backslash-quoted (`\n` for newline, `\xHH`-free: every byte kept).
pub fn element(text: &str) -> String {
    if text.is_empty() {
        return "{}".to_string();
    }
    if !text.bytes().any(special) {
        return text.to_string();
    }
    if braces_ok(text) {
        return format!("{{{text}}}");
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            c if c.is_ascii() && special(c as u8) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Braces quote exactly when they balance, there is no backslash and no line break,
/// and the text does not end just after an unbalanced point.
fn braces_ok(text: &str) -> bool {
    let mut depth = 0i32;
    for b in text.bytes() {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            b'\\' | b'\r' | b'\n' => return false,
            _ => {}
        }
    }
    depth == 0
}

/// Splits one line into its list elements, undoing the quoting.
pub fn split(line: &str) -> Result<Vec<String>, TclError> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |why, offset| TclError { why, offset };
    loop {
        while i < b.len() && separator(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            return Ok(out);
        }
        match b[i] {
            b'{' => {
                let start = i + 1;
                let mut depth = 1;
                let mut j = start;
                while j < b.len() && depth > 0 {
                    match b[j] {
                        b'\\' => j += 1,
                        b'{' => depth += 1,
                        b'}' => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                if depth > 0 {
                    return Err(err("unmatched open brace", i));
                }
                if j < b.len() && !separator(b[j]) {
                    return Err(err("extra characters after close-brace", j));
                }
                out.push(line[start..j - 1].to_string());
                i = j;
            }
            b'"' => {
                let (text, next) =
                    unquote(line, i + 1, Some(b'"')).ok_or(err("unmatched open quote", i))?;
                if next < b.len() && !separator(b[next]) {
                    return Err(err("extra characters after close-quote", next));
                }
                out.push(text);
                i = next;
            }
            _ => {
                let end = b[i..]
                    .iter()
                    .position(|&c| separator(c))
                    .map_or(b.len(), |p| i + p);
                if !b[i..end].contains(&b'\\') {
                    // The common case (hex, numbers, tokens): no substitution to do.
                    out.push(line[i..end].to_string());
                    i = end;
                    continue;
                }
                let (text, next) = unquote(line, i, None).ok_or(err("bad backslash", i))?;
                out.push(text);
                i = next;
            }
        }
    }
}

/// Reads from `from` until `close` (a quote) or whitespace (bare word), applying
/// backslash substitution. Returns the text and the index after it.
fn unquote(line: &str, from: usize, close: Option<u8>) -> Option<(String, usize)> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = from;
    while i < b.len() {
        let c = b[i];
        match (c, close) {
            (b'"', Some(b'"')) => return Some((String::from_utf8_lossy(&out).into_owned(), i + 1)),
            (c, None) if separator(c) => break,
            (b'\\', _) => {
                let n = *b.get(i + 1)?;
                out.push(match n {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 0x0b,
                    b'f' => 0x0c,
                    b'a' => 0x07,
                    b'b' => 0x08,
                    other => other,
                });
                i += 2;
                continue;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    if close.is_some() {
        return None;
    }
    Some((String::from_utf8_lossy(&out).into_owned(), i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn elements_are_bare_braced_or_escaped() {
        assert_eq!(element("websrv-a"), "websrv-a");
        assert_eq!(element(""), "{}");
        assert_eq!(element("2026-11-28 01:56:31"), "{2026-11-28 01:56:31}");
        assert_eq!(element("a}b"), "a\\}b");
        assert_eq!(element("x\ny"), "x\\ny");
        assert_eq!(element("say \"hi\" [now]"), "{say \"hi\" [now]}");
        // Form feed and vertical tab separate list elements in Tcl too (found by
        // fuzzing: they went out bare, so sguild would have read two elements).
        assert_eq!(element("a\x0cb"), "{a\x0cb}");
        assert_eq!(element("a\x0bb}"), "a\\vb\\}");
        assert_eq!(split("{a\x0cb} a\\fb").unwrap(), ["a\x0cb", "a\x0cb"]);
    }

    #[test]
    fn splits_what_sguild_writes() {
        assert_eq!(
            split("AgentInfo {web 1} modsecurity farm 3 0").unwrap(),
            ["AgentInfo", "web 1", "modsecurity", "farm", "3", "0"]
        );
        assert_eq!(
            split("Failed {mysqlexec/db server: Duplicate entry '1-5' for key 'PRIMARY'}").unwrap(),
            [
                "Failed",
                "mysqlexec/db server: Duplicate entry '1-5' for key 'PRIMARY'"
            ]
        );
        assert_eq!(split("Failed \"a b\\\"c\"").unwrap(), ["Failed", "a b\"c"]);
        assert_eq!(split("  PONG \r").unwrap(), ["PONG"]);
        assert!(split("Failed {open").is_err());
        assert!(split("x {a}b").is_err());
    }

    proptest! {
        #[test]
        fn element_round_trips(items in proptest::collection::vec("(?s).{0,20}", 1..6)) {
            let line: Vec<String> = items.iter().map(|s| element(s)).collect();
            let line = line.join(" ");
            prop_assert!(!line.contains('\n') && !line.contains('\r'));
            prop_assert_eq!(split(&line).unwrap(), items);
        }

        #[test]
        fn split_never_panics(line in "\\PC{0,80}") {
            let _ = split(&line);
        }
    }
}
