//! Rule messages: the text of a 2.x `Message:` line, a 2.x JSON `messages` entry, a
//! libmodsecurity 3 H line (`ModSecurity: …`), and the 1.9.x variants
//! (ARCHITECTURE.md, "The formats we read").
//!
//! `[action text] justification [key "value"]…`: the action text comes from a fixed
//! list; the metadata is read **from the right end** as a chain of ` [key "value"]`
//! tokens, stopping at the first thing that is not one. Reading from the left (what
//! modsec2sguil's greedy `[msg "(.*)"]` did) lets an attacker plant `[id "…"]` in an
//! argument name that ModSecurity quotes into the justification; from the right, the
//! justification's closing `.` breaks the chain before the planted text.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till, take_until, take_while};
use nom::combinator::{map, map_res, verify};
use nom::multi::many1;
use nom::sequence::{delimited, pair, preceded, separated_pair, terminated, tuple};
use nom::IResult;

use super::model::{MessageAction, RuleMatch, Severity};
use crate::escape::{unescape, CutEscape};

/// ModSecurity 2 formats every alert into a 1,024-byte buffer, so a stored message
/// is at most 1,023 bytes; one that long may have lost its metadata.
pub const MODSEC2_MESSAGE_LIMIT: usize = 1023;

/// Which grammar the metadata follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageDialect {
    /// ModSecurity 1.9.x and 2.x: every value is log-escaped.
    ModSecurity2,
    /// libmodsecurity 3: `[msg]` is not escaped and may contain `"]`.
    LibModSecurity3,
}

/// Parses one message (without the `Message: ` prefix; a `ModSecurity: ` prefix is
/// accepted and removed).
pub fn parse_message(text: &str, dialect: MessageDialect) -> RuleMatch {
    let body = text.strip_prefix("ModSecurity: ").unwrap_or(text);
    let (action, rest) = parse_action(body);
    let (justification, tokens) = match rule_diagnostic(rest) {
        Some(found) => found,
        None => split_metadata(rest, dialect),
    };
    let mut m = RuleMatch {
        action,
        justification: justification.trim_end().to_string(),
        file: None,
        line: None,
        id: None,
        rev: None,
        msg: None,
        data: None,
        severity: None,
        ver: None,
        maturity: None,
        accuracy: None,
        tags: Vec::new(),
        truncated: dialect == MessageDialect::ModSecurity2 && text.len() >= MODSEC2_MESSAGE_LIMIT,
        text: text.to_string(),
    };
    for (key, raw) in tokens {
        let value = if dialect == MessageDialect::LibModSecurity3 && key == "msg" {
            raw.to_string()
        } else {
            decode_value(raw)
        };
        let non_empty = (!value.is_empty()).then(|| value.clone());
        match key {
            "file" => m.file = m.file.take().or(non_empty),
            "line" => m.line = m.line.or_else(|| value.parse().ok()),
            "id" => m.id = m.id.take().or(non_empty),
            "rev" => m.rev = m.rev.take().or(non_empty),
            "msg" => m.msg = m.msg.take().or(non_empty),
            "data" => m.data = m.data.take().or(non_empty),
            "severity" => m.severity = m.severity.or_else(|| Severity::parse(&value)),
            "ver" => m.ver = m.ver.take().or(non_empty),
            // libmodsecurity 3 prints 0 for "not set".
            "maturity" => m.maturity = m.maturity.or_else(|| value.parse().ok().filter(|&v| v > 0)),
            "accuracy" => m.accuracy = m.accuracy.or_else(|| value.parse().ok().filter(|&v| v > 0)),
            "tag" => m.tags.push(value),
            _ => {}
        }
    }
    m
}

/// Log-escaped metadata value to readable text; a value that does not decode is kept.
fn decode_value(raw: &str) -> String {
    match unescape(raw.as_bytes(), CutEscape::Reject) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => raw.to_string(),
    }
}

/// Splits `justification [k "v"] [k "v"]…` into the justification and the tokens in
/// left-to-right order.
fn split_metadata(text: &str, dialect: MessageDialect) -> (&str, Vec<(&str, &str)>) {
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    let mut tokens = Vec::new();
    loop {
        match token_before(bytes, end) {
            Some((start, key, value)) => {
                tokens.push((&text[key.0..key.1], &text[value.0..value.1]));
                end = start;
            }
            None => {
                // libmodsecurity 3 leaves `[msg]` unescaped: a `"` inside breaks the
                // chain there; the value runs from the last ` [msg "` to the end. That
                // opening is looked for before the closing `"]`: in ` [msg "]` the two
                // share their quote (found by the fuzzer: a slice that ended before it
                // began).
                if dialect == MessageDialect::LibModSecurity3 && bytes[..end].ends_with(b"\"]") {
                    if let Some(start) = text[..end - 2].rfind(" [msg \"") {
                        tokens.push(("msg", &text[start + 7..end - 2]));
                        end = start;
                        continue;
                    }
                }
                break;
            }
        }
    }
    tokens.reverse();
    (&text[..end], tokens)
}

/// The token ` [key "value"]` ending at `end`: (its start, key range, value range).
/// Values are runs of `\\`, `\"` or non-`"` bytes, so the opening quote is the nearest
/// `"` preceded by an even number of backslashes. `[line 275]` (Apache-Error) has no quotes.
type Range = (usize, usize);
fn token_before(b: &[u8], end: usize) -> Option<(usize, Range, Range)> {
    if end < 2 || b[end - 1] != b']' {
        return None;
    }
    let (value, before_value) = if b[end - 2] == b'"' {
        let close = end - 2;
        let open = crate::escape::find_opening_quote(b, close)?;
        ((open + 1, close), open)
    } else {
        // Unquoted `[key value]`: value is a run of non-space, non-bracket bytes.
        let start = b[..end - 1]
            .iter()
            .rposition(|&c| c == b' ' || c == b'[' || c == b']')?;
        if b[start] != b' ' {
            return None;
        }
        ((start + 1, end - 1), start + 1)
    };
    // Expect ` [key ` right before the value.
    if before_value < 1 || b[before_value - 1] != b' ' {
        return None;
    }
    let key_end = before_value - 1;
    let key_start = b[..key_end].iter().rposition(|&c| c == b'[')? + 1;
    let key = &b[key_start..key_end];
    if key.is_empty() || !key.iter().all(|&c| c.is_ascii_lowercase() || c == b'_') {
        return None;
    }
    let token_start = key_start - 1;
    // Tokens are separated by one space; the first may start the text.
    let start = if token_start > 0 && b[token_start - 1] == b' ' {
        token_start - 1
    } else if token_start == 0 {
        0
    } else {
        return None;
    };
    Some((start, (key_start, key_end), value))
}

/// An engine diagnostic about one rule, written with the metadata *first*:
/// `Rule 7fc26fc6bbc0 [id "932150"][file "…"][line "464"] - Execution error - PCRE limits exceeded (-47): (null).`
/// PCRE-limit errors are how attackers slip past a rule, so the rule id is kept.
fn rule_diagnostic(text: &str) -> Option<(&str, Vec<(&str, &str)>)> {
    let pointer = terminated(take_till(|c| c == ' '), tag(" "));
    let mut diagnostic = preceded(
        pair(tag("Rule "), pointer),
        terminated(many1(left_token), tag(" - ")),
    );
    let parsed: IResult<&str, Vec<(&str, &str)>, ()> = diagnostic(text);
    let (justification, tokens) = parsed.ok()?;
    Some((justification, tokens))
}

/// One `[key "value"]` read left to right, as a diagnostic writes them: the key is
/// lowercase letters, the value runs to the first `"]` (no escapes are written there).
fn left_token(input: &str) -> IResult<&str, (&str, &str), ()> {
    let key = verify(take_until(" \""), |k: &str| {
        !k.is_empty() && k.bytes().all(|c| c.is_ascii_lowercase())
    });
    let value = terminated(take_until("\"]"), tag("\"]"));
    preceded(tag("["), separated_pair(key, tag(" \""), value))(input)
}

/// Recognises the action text at the start of a message: the action and the text after it,
/// or [`MessageAction::None`] and all the text.
fn parse_action(text: &str) -> (MessageAction, &str) {
    let parsed: IResult<&str, MessageAction, ()> = alt((
        map(tag("Warning. "), |_| MessageAction::Warning),
        denied,
        redirection,
        redirect_1_9,
        proxy,
        map(
            delimited(tag("Access denied with connection close"), phase, tag(". ")),
            |p| MessageAction::Drop { phase: Some(p) },
        ),
        map(
            delimited(
                alt((
                    tag("Access allowed"),
                    tag("Access to phase allowed"),
                    tag("Access to request allowed"),
                    tag("Paused Access"),
                )),
                phase,
                tag(". "),
            ),
            |p| MessageAction::Allowed { phase: Some(p) },
        ),
    ))(text);
    match parsed {
        Ok((rest, action)) => (action, rest),
        Err(_) => (MessageAction::None, text),
    }
}

/// A status code: ASCII digits (maybe none, or too many: then no status).
fn status(input: &str) -> IResult<&str, Option<u16>, ()> {
    map(take_while(|c: char| c.is_ascii_digit()), |d: &str| {
        d.parse().ok()
    })(input)
}

/// 2.x `Access denied with code 403 (phase 2). `, `… 500 (phase 2) (Internal Error: …). `;
/// 1.9.x `Access denied with code 403. `.
fn denied(input: &str) -> IResult<&str, MessageAction, ()> {
    // After `(phase N)`: `. ` or ` (Internal Error: …). `.
    let sentence_end = alt((
        tag(". "),
        delimited(tag(" ("), take_until("). "), tag("). ")),
    ));
    let with_phase = map(terminated(phase, sentence_end), Some);
    let without_phase = map(tag(". "), |_| None);
    map(
        preceded(
            tag("Access denied with code "),
            pair(status, alt((with_phase, without_phase))),
        ),
        |(status, phase)| MessageAction::Denied { status, phase },
    )(input)
}

/// `Access denied with redirection to <url> using status 302 (phase 1). `
fn redirection(input: &str) -> IResult<&str, MessageAction, ()> {
    let url = terminated(take_until(" using status "), tag(" using status "));
    map(
        delimited(
            tag("Access denied with redirection to "),
            tuple((url, status, phase)),
            tag(". "),
        ),
        |(url, status, phase)| MessageAction::Redirect {
            url: url.to_string(),
            status,
            phase: Some(phase),
        },
    )(input)
}

/// 1.9.x: `Access denied with redirect to [<url>]. `
fn redirect_1_9(input: &str) -> IResult<&str, MessageAction, ()> {
    map(
        delimited(
            tag("Access denied with redirect to ["),
            take_until("]. "),
            tag("]. "),
        ),
        |url: &str| MessageAction::Redirect {
            url: url.to_string(),
            status: None,
            phase: None,
        },
    )(input)
}

/// `Access denied using proxy to (phase 2) <url>. `
fn proxy(input: &str) -> IResult<&str, MessageAction, ()> {
    map(
        preceded(
            tag("Access denied using proxy to"),
            pair(phase, terminated(take_until(". "), tag(". "))),
        ),
        |(phase, url)| MessageAction::Proxy {
            url: url.trim_start().to_string(),
            phase: Some(phase),
        },
    )(input)
}

/// ` (phase N)`.
fn phase(input: &str) -> IResult<&str, u8, ()> {
    delimited(
        tag(" (phase "),
        map_res(take_until(")"), str::parse),
        tag(")"),
    )(input)
}

/// Extracts rule ids from a part K line (`SecRule "…" "…" "phase:2,…,id:942100,…"`).
/// Returns nothing for chain members that did not match (`#` prefix).
pub fn rule_id_from_k_line(line: &[u8]) -> Option<String> {
    if line.starts_with(b"#") {
        return None;
    }
    let mut from = 0;
    while let Some(rel) = line[from..].windows(3).position(|w| w == b"id:") {
        let at = from + rel;
        from = at + 3;
        let boundary = at == 0 || matches!(line[at - 1], b'"' | b',' | b' ' | b'\'');
        if !boundary {
            continue;
        }
        let mut value = &line[at + 3..];
        for quote in [&b"\\\""[..], b"'", b"\""] {
            if let Some(v) = value.strip_prefix(quote) {
                value = v;
                break;
            }
        }
        let id: Vec<u8> = value
            .iter()
            .copied()
            .take_while(u8::is_ascii_alphanumeric)
            .collect();
        if !id.is_empty() {
            return Some(String::from_utf8_lossy(&id).into_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRS: &str = r#"Access denied with code 403 (phase 2). Operator GE matched 5 at TX:anomaly_score. [file "/usr/share/modsecurity-crs/rules/REQUEST-949-BLOCKING-EVALUATION.conf"] [line "94"] [id "949110"] [msg "Inbound Anomaly Score Exceeded (Total Score: 23)"] [severity "CRITICAL"] [ver "OWASP_CRS/3.3.4"] [tag "application-multi"] [tag "attack-generic"]"#;

    #[test]
    fn crs_blocking_message() {
        let m = parse_message(CRS, MessageDialect::ModSecurity2);
        assert_eq!(
            m.action,
            MessageAction::Denied {
                status: Some(403),
                phase: Some(2)
            }
        );
        assert_eq!(
            m.justification,
            "Operator GE matched 5 at TX:anomaly_score."
        );
        assert_eq!(m.id.as_deref(), Some("949110"));
        assert_eq!(m.line, Some(94));
        assert_eq!(
            m.msg.as_deref(),
            Some("Inbound Anomaly Score Exceeded (Total Score: 23)")
        );
        assert_eq!(m.severity, Some(Severity::Critical));
        assert_eq!(m.tags, ["application-multi", "attack-generic"]);
        assert!(!m.truncated);
    }

    #[test]
    fn spoofed_metadata_in_an_argument_name_is_not_taken() {
        let text = r#"Warning. Pattern match "x" at ARGS:a [id "1"] [msg "fake"] [severity "EMERGENCY"]. [file "/r.conf"] [line "3"] [id "942100"] [msg "SQL Injection"] [severity "CRITICAL"]"#;
        let m = parse_message(text, MessageDialect::ModSecurity2);
        assert_eq!(m.id.as_deref(), Some("942100"));
        assert_eq!(m.msg.as_deref(), Some("SQL Injection"));
        assert_eq!(m.severity, Some(Severity::Critical));
        assert!(m.justification.contains(r#"[id "1"]"#));
    }

    #[test]
    fn escaped_quotes_and_brackets_inside_values() {
        let text = r#"Warning. x. [id "5"] [msg "say \"]hi\" \\ there"] [data "a\x22b"]"#;
        let m = parse_message(text, MessageDialect::ModSecurity2);
        assert_eq!(m.msg.as_deref(), Some(r#"say "]hi" \ there"#));
        assert_eq!(m.data.as_deref(), Some("a\"b"));
        assert_eq!(m.id.as_deref(), Some("5"));
    }

    #[test]
    fn truncated_message_has_no_metadata_and_is_flagged() {
        let text = format!("Warning. Pattern match \"a\" at ARGS:{}", "x".repeat(1100));
        let text = &text[..MODSEC2_MESSAGE_LIMIT];
        let m = parse_message(text, MessageDialect::ModSecurity2);
        assert!(m.truncated);
        assert_eq!(m.id, None);
        // Cut inside the metadata: the tokens before the cut are still lost, never misread.
        let cut = &CRS[..CRS.find("[severity").unwrap() + 12];
        let m = parse_message(cut, MessageDialect::ModSecurity2);
        assert_eq!(m.id, None);
    }

    #[test]
    fn redirect_proxy_drop_and_allow_actions() {
        let m = parse_message(
            r#"Access denied with redirection to http://lab.example/new-admin/ using status 302 (phase 1). Pattern match "^/admin" at REQUEST_URI. [id "100002"]"#,
            MessageDialect::ModSecurity2,
        );
        assert_eq!(
            m.action,
            MessageAction::Redirect {
                url: "http://lab.example/new-admin/".into(),
                status: Some(302),
                phase: Some(1)
            }
        );
        assert_eq!(m.id.as_deref(), Some("100002"));
        let m = parse_message(
            r#"Access denied using proxy to (phase 2) http://backend/x. Unconditional match in SecAction. [id "7"]"#,
            MessageDialect::ModSecurity2,
        );
        assert_eq!(
            m.action,
            MessageAction::Proxy {
                url: "http://backend/x".into(),
                phase: Some(2)
            }
        );
        let m = parse_message(
            r#"Access denied with connection close (phase 2). Unconditional match in SecAction. [id "8"]"#,
            MessageDialect::ModSecurity2,
        );
        assert_eq!(m.action, MessageAction::Drop { phase: Some(2) });
        let m = parse_message(
            r#"Access allowed (phase 1). Unconditional match in SecAction. [id "9"]"#,
            MessageDialect::ModSecurity2,
        );
        assert_eq!(m.action, MessageAction::Allowed { phase: Some(1) });
        let m = parse_message("Access denied with code 500 (phase 2) (Internal Error: oops). Rule processing failed. [id \"10\"]", MessageDialect::ModSecurity2);
        assert_eq!(
            m.action,
            MessageAction::Denied {
                status: Some(500),
                phase: Some(2)
            }
        );
        assert_eq!(m.justification, "Rule processing failed.");
    }

    #[test]
    fn modsecurity_1_9_messages() {
        let m = parse_message(
            r#"Access denied with code 403. Pattern match "union.+select" at REQUEST_URI [severity "EMERGENCY"]"#,
            MessageDialect::ModSecurity2,
        );
        assert_eq!(
            m.action,
            MessageAction::Denied {
                status: Some(403),
                phase: None
            }
        );
        assert_eq!(m.severity, Some(Severity::Emergency));
        let m = parse_message(
            r#"Access denied with redirect to [http://x/]. Pattern match "a" at ARGS [severity "ALERT"]"#,
            MessageDialect::ModSecurity2,
        );
        assert_eq!(
            m.action,
            MessageAction::Redirect {
                url: "http://x/".into(),
                status: None,
                phase: None
            }
        );
    }

    #[test]
    fn libmodsecurity3_line_with_unescaped_msg() {
        let text = r#"ModSecurity: Access denied with code 403 (phase 2). Matched "Operator `Ge' with parameter `5' against variable `TX:ANOMALY_SCORE' (Value: `5' ) [file "/r.conf"] [line "80"] [id "949110"] [rev ""] [msg "Inbound "quoted"] here"] [data ""] [severity "2"] [ver "OWASP_CRS/3.3.4"] [maturity "0"] [accuracy "0"] [tag "attack-generic"] [hostname "127.0.0.1"] [uri "/"] [unique_id "1795.5"] [ref ""]"#;
        let m = parse_message(text, MessageDialect::LibModSecurity3);
        assert_eq!(
            m.action,
            MessageAction::Denied {
                status: Some(403),
                phase: Some(2)
            }
        );
        assert_eq!(m.id.as_deref(), Some("949110"));
        assert_eq!(m.msg.as_deref(), Some(r#"Inbound "quoted"] here"#));
        assert_eq!(m.severity, Some(Severity::Critical));
        assert_eq!(
            (m.maturity, m.accuracy, m.rev.as_deref(), m.data.as_deref()),
            (None, None, None, None)
        );
        assert_eq!(m.tags, ["attack-generic"]);
    }

    #[test]
    fn a_libmodsecurity3_msg_opening_that_is_also_its_closing_is_no_value() {
        // `[msg "]` at the end: the quote that would open the value is the one that
        // closes it. Found by cargo fuzz (event_v3): it panicked slicing 453..452.
        for text in [
            r#"Warning. Matched "x" [id "930100"] [msg "]"#,
            r#"Warning. [msg "]"#,
            r#" [msg "]"#,
        ] {
            let m = parse_message(text, MessageDialect::LibModSecurity3);
            assert_eq!(m.msg, None, "{text}");
        }
        // The last real opening before the closing quote still gives the value.
        let m = parse_message(
            r#"Warning. x [id "1"] [msg "a "b"] c"] [msg "]"#,
            MessageDialect::LibModSecurity3,
        );
        assert_eq!(m.msg.as_deref(), Some(r#"a "b"] c"] [msg "#));
    }

    #[test]
    fn rule_execution_error_keeps_the_rule_id() {
        let m = parse_message(
            r#"Rule 7fc26fc6bbc0 [id "932150"][file "/r/REQUEST-932.conf"][line "464"] - Execution error - PCRE limits exceeded (-47): (null)."#,
            MessageDialect::ModSecurity2,
        );
        assert_eq!(m.id.as_deref(), Some("932150"));
        assert_eq!(m.line, Some(464));
        assert_eq!(m.action, MessageAction::None);
        assert_eq!(
            m.justification,
            "Execution error - PCRE limits exceeded (-47): (null)."
        );
    }

    #[test]
    fn message_without_metadata() {
        let m = parse_message(
            "Request body no files data length is larger than the configured limit (131072).",
            MessageDialect::ModSecurity2,
        );
        assert_eq!(m.action, MessageAction::None);
        assert_eq!(m.id, None);
        assert_eq!(
            m.justification,
            "Request body no files data length is larger than the configured limit (131072)."
        );
    }

    #[test]
    fn action_grammar_edges() {
        let action = |t: &'static str| parse_action(t);
        // No digits, or too many for a status: still a denial, with no status.
        assert_eq!(
            action("Access denied with code  (phase 2). x"),
            (
                MessageAction::Denied {
                    status: None,
                    phase: Some(2)
                },
                "x"
            )
        );
        assert_eq!(
            action("Access denied with code 99999999 (phase 2). x").0,
            MessageAction::Denied {
                status: None,
                phase: Some(2)
            }
        );
        // A phase that is not a number, or no sentence end: no action, all text kept.
        for text in [
            "Access denied with code 403 (phase x). y",
            "Access denied with code 403 (phase 2)",
            "Access denied with code 403 (phase 2) (Internal Error: no end",
            "Access denied with code 403 y",
            "Access denied with redirection to http://a/ using status 302. y",
            "Access denied with redirect to [http://a/] y",
            "Access denied using proxy to (phase 2) http://a/",
            "Access denied with connection close. y",
            "Access allowed (phase 1)y",
            "Warning.y",
        ] {
            assert_eq!(action(text), (MessageAction::None, text), "{text}");
        }
        assert_eq!(
            action("Access to request allowed (phase 2). y"),
            (MessageAction::Allowed { phase: Some(2) }, "y")
        );
        assert_eq!(
            action("Paused Access (phase 5). y"),
            (MessageAction::Allowed { phase: Some(5) }, "y")
        );
        assert_eq!(phase(" (phase 300)"), Err(nom::Err::Error(())));
        assert_eq!(phase(" (phase 4) rest"), Ok((" rest", 4)));
    }

    #[test]
    fn diagnostic_token_grammar() {
        assert_eq!(left_token(r#"[id "9"][x"#), Ok(("[x", ("id", "9"))));
        // Keys are lowercase letters only; a token needs its closing `"]`.
        assert!(left_token(r#"[Id "9"]"#).is_err());
        assert!(left_token(r#"[ "9"]"#).is_err());
        assert!(left_token(r#"[id_x "9"]"#).is_err());
        assert!(left_token(r#"[id "9"#).is_err());
        assert_eq!(
            rule_diagnostic(r#"Rule 7f [id "1"] [line "2"] - x"#),
            None,
            "tokens are not separated by spaces in a diagnostic"
        );
        assert_eq!(rule_diagnostic("Rule 7f  - x"), None, "no tokens");
        assert_eq!(rule_diagnostic(r#"Rule 7f [id "1"]- x"#), None);
        assert_eq!(
            rule_diagnostic(r#"Rule  [id "1"][line "2"] - x - y"#),
            Some(("x - y", vec![("id", "1"), ("line", "2")]))
        );
    }

    #[test]
    fn k_line_ids() {
        assert_eq!(
            rule_id_from_k_line(br#"SecAction "phase:1,auditlog,id:900990,nolog,pass""#).as_deref(),
            Some("900990")
        );
        assert_eq!(
            rule_id_from_k_line(br#"SecRule "ARGS" "@rx x" "phase:2,id:'100003',deny""#).as_deref(),
            Some("100003")
        );
        assert_eq!(
            rule_id_from_k_line(br#"#SecRule "ARGS" "@rx x" "chain,id:5""#),
            None
        );
        assert_eq!(
            rule_id_from_k_line(br#"SecRule "ARGS:paid:1" "@rx x" "msg:'x',pass""#),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,300}") {
            let _ = parse_message(&text, MessageDialect::ModSecurity2);
            let _ = parse_message(&text, MessageDialect::LibModSecurity3);
        }

        /// Metadata pieces in any order: the grammar's own tokens, cut and joined (the
        /// bracket soup above rarely spells a key; this one does).
        #[test]
        fn never_panics_on_token_soup(parts in proptest::collection::vec(
            proptest::sample::select(vec![
                " [msg \"", "\"]", " [id \"1\"]", "[msg \"]", " ", "\"", "]", "x",
                " [data \"", "\\", " [tag \"a\"]", "Rule 1 ", " - ",
            ]),
            0..16,
        )) {
            let text = parts.concat();
            let _ = parse_message(&text, MessageDialect::ModSecurity2);
            let _ = parse_message(&text, MessageDialect::LibModSecurity3);
            let _ = rule_id_from_k_line(text.as_bytes());
        }

        #[test]
        fn never_panics_on_bracket_soup(text in "[\\[\\]\" \\\\a-z.]{0,120}") {
            let _ = parse_message(&text, MessageDialect::ModSecurity2);
            let _ = parse_message(&text, MessageDialect::LibModSecurity3);
            let _ = rule_id_from_k_line(text.as_bytes());
        }
    }
}
