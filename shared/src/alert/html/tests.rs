//! The HTML detail: its escaping against a model of the renderer, its layout, its cuts,
//! and (property tests) its markup for arbitrary event bytes. The real renderer is
//! exercised by `tests/analyst_view.rs`.

use super::*;
use crate::alert::{map_event, AlertSettings, DetailFormat};
use crate::auditlog::{parse_event, ParseLimits};
use crate::escape::{escape, escape_lines};

/// How the analyst should see raw bytes inside `<pre>`.
fn visible_pre(bytes: &[u8]) -> String {
    String::from_utf8(escape_lines(bytes)).unwrap()
}
use proptest::prelude::*;

/// What iwidgets 4.1's `scrolledhtml` shows for `html` (the text only): each run of text
/// between tags decoded as its `_append_text` does (`&amp;`, then `&lt;`, `&gt;`,
/// `&quot;`, each case-insensitive) and, outside `<pre>`, trimmed of newlines with blanks
/// folded; `<br>` as a newline, other tags dropped.
fn widget_text(html: &str) -> String {
    widget_text_from(html, false)
}

fn widget_text_from(html: &str, mut pre: bool) -> String {
    fn replace_ci(text: &str, entity: &str, with: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.to_ascii_lowercase().find(entity) {
            out.push_str(&rest[..at]);
            out.push_str(with);
            rest = &rest[at + entity.len()..];
        }
        out.push_str(rest);
        out
    }
    let mut out = String::new();
    let mut rest = html;
    while !rest.is_empty() {
        let run_end = rest.find('<').unwrap_or(rest.len());
        let mut run = rest[..run_end].to_string();
        for (e, c) in [
            ("&amp;", "&"),
            ("&lt;", "<"),
            ("&gt;", ">"),
            ("&quot;", "\""),
        ] {
            run = replace_ci(&run, e, c);
        }
        if !pre {
            let mut folded = String::new();
            for c in run.trim_matches(['\n', '\r']).chars() {
                let blank = matches!(c, ' ' | '\n' | '\r' | '\t');
                if !(blank && folded.ends_with(' ')) {
                    folded.push(if blank { ' ' } else { c });
                }
            }
            run = folded;
        }
        out.push_str(&run);
        rest = &rest[run_end..];
        if let Some(end) = rest.find('>') {
            // The block elements start a new line in the widget.
            match &rest[..=end] {
                "<br>" | "</h3>" | "<hr>" | "<ul>" | "<li>" | "</ul>" => out.push('\n'),
                "<pre>" => {
                    out.push('\n');
                    pre = true;
                }
                "</pre>" => {
                    out.push('\n');
                    pre = false;
                }
                _ => {}
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

fn written(bytes: &[u8], flow: Flow) -> String {
    let mut s = String::new();
    assert_eq!(escape_fitting(&mut s, bytes, flow, usize::MAX), bytes.len());
    s
}

#[test]
fn the_renderers_traps_are_escaped() {
    assert_eq!(
        written(b"<a href=\"x\">", Flow::Line),
        "&lt;a href=&quot;x&quot;&gt;"
    );
    // An `&` before what the widget would read as an entity, once `&amp;` is decoded,
    // ends the run of text; so does one at the end of what the event wrote.
    assert_eq!(written(b"&lt;", Flow::Line), "&amp;<wbr>lt;");
    assert_eq!(written(b"&QuOt;", Flow::Line), "&amp;<wbr>QuOt;");
    assert_eq!(written(b"&amp;&x", Flow::Line), "&amp;amp;&amp;x");
    assert_eq!(written(b"a&", Flow::Line), "a&amp;<wbr>");
    // Beyond printable ASCII: visible, one escape per byte.
    assert_eq!(written(b"\x00\xff\\\n", Flow::Line), "\\x00\\xff\\\\\\n");
    assert_eq!(
        written(b"\x00\xff\\\n\t\r", Flow::Pre),
        "\\x00\\xff\\\n\t\\r"
    );
}

#[test]
fn a_cut_never_splits_an_entity_or_an_escape() {
    let mut s = String::new();
    assert_eq!(escape_fitting(&mut s, b"&&&", Flow::Line, 9), 1);
    assert_eq!(s, "&amp;");
    let mut s = String::new();
    assert_eq!(escape_fitting(&mut s, b"a\xffb", Flow::Pre, 4), 1);
    assert_eq!(s, "a");
}

fn event(uri: &str, headers: &str, body: &str, messages: &str) -> AuditEvent {
    let text = format!(
        "--a1b2c3d4-A--\n[28/Nov/2026:02:14:31.052041 --0500] UNIQ-1 2001:db8::7 40628 192.0.2.1 80\n\
         --a1b2c3d4-B--\nPOST {uri} HTTP/1.1\n{headers}\n--a1b2c3d4-C--\n{body}\n\
         --a1b2c3d4-F--\nHTTP/1.1 403 Forbidden\n\n--a1b2c3d4-H--\n{messages}\
         Action: Intercepted (phase 2)\n\n--a1b2c3d4-Z--\n"
    );
    parse_event(text.as_bytes(), &ParseLimits::default()).unwrap()
}

fn rule(id: usize, msg: &str) -> String {
    format!("Message: Warning. Pattern match \"x\" at ARGS:q. [file \"/r.conf\"] [line \"1\"] [id \"{id}\"] [msg \"{msg}\"] [data \"d{id}\"] [severity \"CRITICAL\"] [tag \"attack-sqli\"]\n")
}

fn html_of(ev: &AuditEvent, raw: &[u8], settings: &AlertSettings) -> String {
    let d = map_event(ev, raw, &["collector: md5 differs".into()], settings)
        .fields
        .detail;
    check_markup(&d).unwrap();
    String::from_utf8(d).unwrap()
}

#[test]
fn the_summary_has_a_headline_and_one_fact_a_line_then_the_rules_and_the_raw_event() {
    let ev = event(
        "/x?id=1'+OR+1=1",
        "Host: lab.example\nUser-Agent: curl/8\nReferer: http://r.example/\n",
        "a=1",
        &(rule(942100, "SQL Injection") + &rule(949110, "Anomaly")),
    );
    let html = html_of(&ev, b"RAW <event>", &AlertSettings::default());
    let text = widget_text(&html);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        text.starts_with("Intercepted (status 403): SQL Injection"),
        "{text}"
    );
    for want in [
        "Event: UNIQ-1",
        "Time: 2026-11-28 07:14:31 UTC (logged as 28/Nov/2026:02:14:31.052041 -0500)",
        "Client -> server: [2001:db8::7]:40628 -> 192.0.2.1:80",
        "Note: IPv6 addresses: Sguil stores only IPv4, so the event's address fields are empty",
        "Request: POST /x?id=1'+OR+1=1 HTTP/1.1",
        "Host: lab.example",
        "User-Agent: curl/8",
        "Referer: http://r.example/",
        "Status: 403",
        "Interception: intercepted in phase 2 with status 403",
        "Warning: collector: md5 differs",
        "data: d942100",
        "tags: attack-sqli",
    ] {
        assert!(lines.contains(&want), "no line {want:?} in:\n{text}");
    }
    assert!(text.contains("942100 CRITICAL: SQL Injection"), "{text}");
    assert!(text.contains("Request body: 3 of 3 bytes\na=1"), "{text}");
    assert!(
        text.ends_with("Raw event: 11 bytes\nRAW <event>\n"),
        "{text}"
    );
}

#[test]
fn the_raw_event_is_cut_first_and_the_cut_is_said() {
    let ev = event("/", "Host: h\n", "a=1", &rule(1, "m"));
    let raw = vec![b'<'; 100_000];
    let html = html_of(&ev, &raw, &AlertSettings::default());
    assert!(html.len() <= MAX_DETAIL_BYTES && html.len() > MAX_DETAIL_BYTES - 300);
    let text = widget_text(&html);
    let shown = raw.len() - text.matches('<').count();
    assert!(
        text.contains(&format!(
            "[cut by modsec-shipper: {} of 100000 bytes of the raw event shown; Sguil stores at most 32767 bytes of detail]",
            100_000 - shown
        )),
        "{}",
        &text[text.len() - 300..]
    );
    assert!(text.contains("\nHost: h\n"), "{text}");
    assert!(text.contains("1 CRITICAL: m\n"), "{text}");

    let settings = AlertSettings {
        detail_raw_bytes: 10,
        ..AlertSettings::default()
    };
    let text = widget_text(&html_of(&ev, b"0123456789abcdef", &settings));
    assert!(
        text.ends_with("0123456789\n[cut by modsec-shipper: 10 of 16 bytes of the raw event shown; DETAIL_RAW_BYTES is 10]"),
        "{text}"
    );
    let none = AlertSettings {
        detail_raw_bytes: 0,
        ..AlertSettings::default()
    };
    let text = widget_text(&html_of(&ev, b"0123", &none));
    assert!(text.contains("0 of 4 bytes"), "{text}");
}

#[test]
fn hostile_values_are_capped_and_the_rules_that_do_not_fit_are_counted() {
    // Quotes cost six bytes each: the most expensive header an attacker can send.
    let quotes = "\"".repeat(8000);
    let many: String = (0..400)
        .map(|i| rule(100_000 + i, &"<".repeat(400)))
        .collect();
    let ev = event(
        &format!("/{}", "&".repeat(9000)),
        &format!("Host: {quotes}\nUser-Agent: {quotes}\nReferer: {quotes}\n"),
        &"\"".repeat(600),
        &many,
    );
    let raw = b"the raw event".repeat(100);
    let html = html_of(&ev, &raw, &AlertSettings::default());
    assert!(html.len() <= MAX_DETAIL_BYTES);
    let text = widget_text(&html);
    assert!(
        text.contains(&format!("Host: {} [... 7488 more bytes]", "\"".repeat(512))),
        "a value is cut at VALUE_MAX_BYTES and says so"
    );
    assert!(text.contains("more rule(s), left out"), "{text}");
    assert!(text.contains("Request body: 159 of 600 bytes"), "{text}");
    // The summary stayed within its budget, so the raw event still has room.
    let raw_at = html.find("<b>Raw event:</b>").unwrap();
    assert!(raw_at <= SUMMARY_MAX_BYTES + 256, "summary took {raw_at}");
    assert!(text.contains(&String::from_utf8_lossy(&raw).into_owned()));
}

/// Arbitrary bytes mixed with what the renderer reads specially (entities in any case,
/// tag brackets, quotes, backslashes, line ends), so that sequences such as `&lt;` come up.
fn renderer_tokens() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        prop::sample::select(vec![
            &b"&"[..],
            b"lt;",
            b"gt;",
            b"quot;",
            b"amp;",
            b"LT;",
            b"Quot;",
            b"<",
            b">",
            b"\"",
            b"\\",
            b"\n",
            b"\r",
            b"\t",
            b"\0",
            b"\xff",
            b"<!--",
            b"</pre>",
        ])
        .prop_map(<[u8]>::to_vec),
    ];
    proptest::collection::vec(piece, 0..120).prop_map(|p| p.concat())
}

proptest! {
    #[test]
    fn escaping_shows_every_byte_as_the_renderer_decodes_it(bytes in renderer_tokens()) {
        prop_assert_eq!(widget_text_from(&written(&bytes, Flow::Pre), true), visible_pre(&bytes));
        let logged = String::from_utf8(escape(&bytes, false)).unwrap();
        prop_assert_eq!(widget_text_from(&written(&bytes, Flow::Line), true), logged);
    }

    #[test]
    fn any_event_bytes_make_only_the_builders_own_balanced_markup_within_the_limit(
        uri in proptest::collection::vec(any::<u8>(), 0..3000),
        header in proptest::collection::vec(any::<u8>(), 0..3000),
        body in proptest::collection::vec(any::<u8>(), 0..3000),
        msg in proptest::collection::vec(any::<u8>(), 0..1500),
        raw in proptest::collection::vec(any::<u8>(), 0..40_000),
        raw_max in 0usize..=MAX_DETAIL_BYTES,
    ) {
        let mut ev = event("/", "Host: h\n", "b", &rule(1, "m"));
        ev.request.uri = uri;
        ev.request.headers[0].value = header;
        ev.request.body.as_mut().unwrap().bytes = body;
        let text = String::from_utf8_lossy(&msg).into_owned();
        ev.matches[0].msg = Some(text.clone());
        ev.matches[0].data = Some(text);
        let settings = AlertSettings { detail_raw_bytes: raw_max, ..AlertSettings::default() };
        let d = map_event(&ev, &raw, &[], &settings).fields.detail;
        prop_assert!(check_markup(&d).is_ok(), "{:?}", check_markup(&d));
        let html = String::from_utf8(d).unwrap();
        // However hostile the summary, the raw event keeps room: its first bytes are there.
        let shown = raw.len().min(raw_max).min(1024);
        prop_assert!(widget_text(&html).contains(&visible_pre(&raw[..shown])));
    }
}

#[test]
fn a_body_excerpt_without_room_says_it_was_left_out() {
    let ev = event("/", "Host: h\n", "a=1", &rule(1, "m"));
    let mut d = Html {
        out: "x".repeat(SUMMARY_MAX_BYTES - 100),
    };
    d.body_excerpt(&ev);
    assert!(
        d.out.ends_with(
            "<b>Request body:</b> 3 bytes, left out of the summary (it is in the raw event)<br>\n"
        ),
        "{}",
        &d.out[SUMMARY_MAX_BYTES - 100..]
    );
}

#[test]
fn check_markup_refuses_what_the_builder_never_writes() {
    for (bad, why) in [
        (&b"<a href=x>"[..], "tag"),
        (b"<b>open", "left open"),
        (b"</b>", "closes nothing"),
        (b"&#60;", "starts no entity"),
        (b"a > b", "outside a tag"),
        (b"\xff", "byte"),
        (b"<pre", "never closed"),
    ] {
        let e = check_markup(bad).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
    check_markup(b"<h3>x</h3><b>a</b> &amp;<wbr>lt;<br><pre>\n\t</pre>").unwrap();
}

#[test]
fn the_unique_id_is_found_in_either_format() {
    let ev = event("/", "Host: h\n", "a", &rule(1, "m"));
    for format in [DetailFormat::Html, DetailFormat::Text] {
        let settings = AlertSettings {
            detail_format: format,
            ..AlertSettings::default()
        };
        let d = map_event(&ev, b"raw", &[], &settings).fields.detail;
        assert_eq!(crate::alert::unique_id_in_detail(&d), Some("UNIQ-1"));
        // The text detail carries the raw event's bytes, UTF-8 or not.
        let d = map_event(&ev, b"raw \xff\xfe", &[], &settings)
            .fields
            .detail;
        assert_eq!(crate::alert::unique_id_in_detail(&d), Some("UNIQ-1"));
    }
    assert_eq!(
        crate::alert::unique_id_in_detail(b"<b>Event:</b> <br>"),
        None
    );
}
