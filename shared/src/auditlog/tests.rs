//! Event-file parsing on synthetic files: each anomaly and each hostile shape.

use super::*;
use proptest::prelude::*;

const NATIVE: &str = "--c01c6850-A--
[28/Nov/2026:02:14:31.052041 --0500] awo5B9rt9m7QJiOqXPD3mQAAAEE 2001:db8::7 40628 ::1 18080
--c01c6850-B--
POST /login?x=1 HTTP/1.1
Host: lab.example
User-Agent: evil

--c01c6850-C--
user=a&pass=b
--c01c6850-F--
HTTP/1.1 403 Forbidden
Content-Type: text/html

--c01c6850-E--
<html>denied</html>
--c01c6850-H--
Message: Access denied with code 403 (phase 2). Pattern match \"a\" at ARGS:user. [file \"/r.conf\"] [line \"3\"] [id \"100003\"] [msg \"evil\"] [severity \"CRITICAL\"] [tag \"custom\"]
Apache-Error: [file \"apache2_util.c\"] [line 275] [level 3] [client ::1] ModSecurity: Access denied with code 403 (phase 2). Pattern match \"a\" at ARGS:user. [file \"/r.conf\"] [line \"3\"] [id \"100003\"] [msg \"evil\"] [severity \"CRITICAL\"] [tag \"custom\"] [hostname \"lab.example\"] [uri \"/login\"] [unique_id \"awo5B9rt9m7QJiOqXPD3mQAAAEE\"]
Apache-Error: [file \"mod_cgid.c\"] [line 1] [level 3] AH01215: something else
Action: Intercepted (phase 2)
Engine-Mode: \"ENABLED\"

--c01c6850-Z--
";

fn parse(text: &[u8]) -> AuditEvent {
    parse_event(text, &ParseLimits::default()).unwrap()
}

#[test]
fn native_event_with_every_common_part() {
    let ev = parse(NATIVE.as_bytes());
    assert_eq!(ev.format, EventFormat::Native2);
    assert_eq!(ev.time.to_rfc3339(), "2026-11-28T02:14:31.052041-05:00");
    assert_eq!(ev.client.addr.to_string(), "2001:db8::7");
    assert_eq!(ev.request.method, b"POST");
    assert_eq!(ev.request.uri, b"/login?x=1");
    assert_eq!(ev.request.header("host"), Some(&b"lab.example"[..]));
    assert_eq!(ev.request.body.as_ref().unwrap().bytes, b"user=a&pass=b");
    assert_eq!(ev.response.status, Some(403));
    assert_eq!(
        ev.response.body.as_ref().unwrap().bytes,
        b"<html>denied</html>"
    );
    // The Apache-Error copy is not a second alert; the unrelated error is kept.
    assert_eq!(ev.matches.len(), 1);
    assert_eq!(
        ev.apache_errors,
        ["[file \"mod_cgid.c\"] [line 1] [level 3] AH01215: something else"]
    );
    let i = ev.interception.unwrap();
    assert_eq!((i.status, i.phase), (Some(403), Some(2)));
    assert_eq!(ev.parts, ['A', 'B', 'C', 'F', 'E', 'H', 'Z']);
    assert!(!ev.anomalies.any());
}

#[test]
fn separator_lookalikes_inside_bodies_are_content() {
    // Another boundary, and this boundary with a letter that may not come next.
    let body = "x\n--deadbeef-H--\n--c01c6850-B--\n--c01c6850-A--\ny";
    let text = NATIVE.replace("user=a&pass=b", body);
    let ev = parse(text.as_bytes());
    assert_eq!(ev.request.body.unwrap().bytes, body.as_bytes());
    assert_eq!(ev.matches.len(), 1);
}

#[test]
fn apache_error_copy_stands_in_for_a_lost_message() {
    let text: String = NATIVE
        .lines()
        .filter(|l| !l.starts_with("Message:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let ev = parse(text.as_bytes());
    assert_eq!(ev.matches.len(), 1);
    assert_eq!(ev.matches[0].id.as_deref(), Some("100003"));
}

#[test]
fn message_with_raw_newline_and_its_escaped_copy_count_once() {
    let text = NATIVE.replace(
        "--c01c6850-H--\n",
        "--c01c6850-H--\nMessage: JSON parser error: parse error: premature EOF\n\nApache-Error: [file \"apache2_util.c\"] [line 275] [level 3] [client ::1] ModSecurity: JSON parser error: parse error: premature EOF\\\\n [hostname \"h\"]\n",
    );
    let ev = parse(text.as_bytes());
    assert_eq!(
        ev.matches
            .iter()
            .filter(|m| m.justification.contains("JSON parser"))
            .count(),
        1
    );
    assert_eq!(ev.anomalies.unparsed_lines, 0);
}

#[test]
fn truncated_file_keeps_what_was_written_and_flags_it() {
    let cut = &NATIVE[..NATIVE.find("Action:").unwrap()];
    let ev = parse(cut.as_bytes());
    assert_eq!(ev.anomalies.missing_parts, ['Z']);
    assert_eq!(ev.rule_ids(), ["100003"]);
    // Cut inside part A: nothing to ship, a clear error.
    let e = parse_event(&NATIVE.as_bytes()[..40], &ParseLimits::default()).unwrap_err();
    assert!(e.to_string().contains("part A"), "{e}");
}

#[test]
fn not_events_are_refused_with_the_reason() {
    for (bytes, why) in [
        (&b""[..], "empty"),
        (b"\n\n", "empty"),
        (b"\x7fELF\x02\x01\x01\0\0\0", "first line"),
        (b"--c01c6850-B--\nGET / HTTP/1.1\n", "first line"),
        (b"{\"foo\": 1}", "JSON without"),
        (b"{\"transaction\": ", "bad JSON"),
    ] {
        let e = parse_event(bytes, &ParseLimits::default()).unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
    }
    let e = parse_event(
        NATIVE.replace("2001:db8::7", "nowhere").as_bytes(),
        &ParseLimits::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("client address `nowhere`"), "{e}");
}

#[test]
fn modsecurity_1_9_event() {
    let text = "--3f1c0000-A--
[19/Jan/2008:17:08:19 +0100] R5Jfk38AAAEAAGfqBjoAAAAA 10.1.2.3 3456 10.1.2.4 80
--3f1c0000-B--
GET /?q=union+select HTTP/1.1
Host: www.example.com

--3f1c0000-H--
Message: Access denied with code 403. Pattern match \"union.+select\" at ARGS:q [severity \"EMERGENCY\"]
Action: Intercepted (403)

--3f1c0000-Z--
";
    let ev = parse(text.as_bytes());
    let i = ev.interception.unwrap();
    assert_eq!((i.status, i.phase), (Some(403), None));
    assert_eq!(ev.matches[0].severity, Some(Severity::Emergency));
}

#[test]
fn json_2_event_with_duplicate_headers_and_invalid_utf8() {
    let text = b"{\"transaction\":{\"time\":\"27/Nov/2026:21:00:14.465993 --0500\",\"transaction_id\":\"abc\",\"remote_address\":\"::ffff:10.0.0.1\",\"remote_port\":1,\"local_address\":\"10.0.0.2\",\"local_port\":80},\
\"request\":{\"request_line\":\"GET /caf\xe9 HTTP/1.1\",\"headers\":{\"Host\":\"h\"},\"body\":[\"a\",\"b\"]},\
\"response\":{\"protocol\":\"HTTP/1.1\",\"status\":403,\"headers\":{\"Set-Cookie\":\"a\",\"Set-Cookie\":\"b\"}},\
\"audit_data\":{\"messages\":[\"Access denied with code 403 (phase 2). x. [id \\\"1\\\"] [severity \\\"ERROR\\\"]\"],\"action\":{\"intercepted\":true,\"phase\":2,\"message\":\"x.\"},\"engine_mode\":\"ENABLED\"},\
\"matched_rules\":[{\"chain\":false,\"rules\":[{\"actionset\":{\"id\":\"1\"},\"is_matched\":true},{\"actionset\":{\"id\":\"2\"},\"is_matched\":false}]}]}\n";
    let ev = parse(text);
    assert_eq!(ev.format, EventFormat::Json2);
    assert!(ev.anomalies.invalid_utf8);
    assert_eq!(ev.time.to_rfc3339(), "2026-11-27T21:00:14.465993-05:00");
    assert_eq!(ev.request.body.unwrap().bytes, b"ab");
    assert_eq!(ev.response.headers.len(), 2);
    assert_eq!(ev.matched_rule_ids, ["1"]);
    assert_eq!(ev.interception.unwrap().phase, Some(2));
    assert_eq!(ev.matches[0].severity, Some(Severity::Error));
}

#[test]
fn reader_cuts_huge_bodies_while_streaming_and_checks_integrity() {
    use md5::{Digest, Md5};
    let big = "A".repeat(3 * 1024 * 1024);
    let text = NATIVE.replace("user=a&pass=b", &big);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ev");
    std::fs::write(&path, &text).unwrap();
    let limits = ParseLimits {
        max_body_bytes: 1000,
        ..ParseLimits::default()
    };
    let raw = read_event_file(&path, std::fs::File::open(&path).unwrap(), &limits).unwrap();
    assert!(raw.bytes.len() < 10_000, "kept {} bytes", raw.bytes.len());
    assert_eq!(raw.size, text.len() as u64);
    assert_eq!(raw.md5, <[u8; 16]>::from(Md5::digest(text.as_bytes())));
    let mut ev = raw.parse(&limits).unwrap();
    let body = ev.request.body.clone().unwrap();
    assert_eq!(
        (body.bytes.len(), body.total_len, body.truncated),
        (1000, big.len() as u64, true)
    );
    assert_eq!(ev.anomalies.capped_parts, ['C']);
    assert_eq!(
        ev.rule_ids(),
        ["100003"],
        "parts after the cut body still parse"
    );
    ev.check_integrity(raw.size + 1, &[0; 16], raw.size, &raw.md5);
    assert_eq!(ev.anomalies.size_mismatch, Some((raw.size + 1, raw.size)));
    assert!(ev.anomalies.md5_mismatch);
}

#[test]
fn reader_handles_a_body_with_no_newlines_and_a_long_line_at_the_end() {
    let text = format!("{}{}", NATIVE, "x".repeat(200));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ev");
    std::fs::write(&path, &text).unwrap();
    let raw = read_event_file(
        &path,
        std::fs::File::open(&path).unwrap(),
        &ParseLimits::default(),
    )
    .unwrap();
    assert_eq!(
        raw.bytes,
        text.as_bytes(),
        "small files pass through unchanged"
    );
}

#[test]
fn reader_refuses_oversized_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ev");
    std::fs::write(&path, format!("{{\"a\":\"{}\"}}", "x".repeat(5000))).unwrap();
    let limits = ParseLimits {
        max_json_bytes: 1000,
        ..ParseLimits::default()
    };
    let e = read_event_file(&path, std::fs::File::open(&path).unwrap(), &limits).unwrap_err();
    assert!(
        matches!(
            e,
            AuditLogError::TooLarge {
                size: 5008,
                limit: 1000
            }
        ),
        "{e}"
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = parse_event(&bytes, &ParseLimits::default());
    }

    #[test]
    fn mutated_events_never_panic(pos in 0usize..NATIVE.len(), byte in any::<u8>(), cut in 0usize..NATIVE.len()) {
        let mut bytes = NATIVE.as_bytes().to_vec();
        bytes[pos] = byte;
        let _ = parse_event(&bytes, &ParseLimits::default());
        let _ = parse_event(&bytes[..cut], &ParseLimits::default());
    }

    #[test]
    fn streamed_reader_agrees_with_in_memory_parse(body in proptest::collection::vec(any::<u8>(), 0..3000), cap in 1usize..4000) {
        let text = NATIVE.as_bytes().to_vec();
        let at = NATIVE.find("user=a").unwrap();
        let text = [&text[..at], &body, &text[at + 13..]].concat();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev");
        std::fs::write(&path, &text).unwrap();
        let limits = ParseLimits { max_body_bytes: cap, ..ParseLimits::default() };
        let raw = read_event_file(&path, std::fs::File::open(&path).unwrap(), &limits).unwrap();
        let streamed = raw.parse(&limits);
        let direct = parse_event(&text, &limits);
        match (streamed, direct) {
            (Ok(s), Ok(d)) => {
                prop_assert_eq!(s.request.body, d.request.body);
                prop_assert_eq!(s.matches, d.matches);
            }
            (Err(_), Err(_)) => {}
            (s, d) => prop_assert!(false, "streamed {:?} vs direct {:?}", s.is_ok(), d.is_ok()),
        }
    }
}
