//! The decision, the primary-rule choice and the field mapping on synthetic events.

use super::*;
use crate::auditlog::{parse_event, ParseLimits};
use crate::config::ConfigFile;
use std::path::Path;

/// A native 2.x event with the given part-A addresses, status and H-part messages.
fn event(addrs: &str, status: u16, messages: &[&str], action: bool) -> AuditEvent {
    let mut h = String::new();
    for m in messages {
        h.push_str("Message: ");
        h.push_str(m);
        h.push('\n');
    }
    if action {
        h.push_str("Action: Intercepted (phase 2)\n");
    }
    let text = format!(
        "--a1b2c3d4-A--\n[28/Nov/2026:02:14:31.052041 --0500] UNIQ-1 {addrs}\n\
         --a1b2c3d4-B--\nGET /x?q=1 HTTP/1.1\nHost: lab.example\nUser-Agent: curl/8\n\n\
         --a1b2c3d4-F--\nHTTP/1.1 {status} X\n\n--a1b2c3d4-H--\n{h}\n--a1b2c3d4-Z--\n"
    );
    parse_event(text.as_bytes(), &ParseLimits::default()).unwrap()
}

const V4: &str = "192.0.2.7 40628 198.51.100.2 80";

/// The defaults with DETAIL_FORMAT text (the HTML detail has tests of its own, in html/).
fn text_format() -> AlertSettings {
    AlertSettings {
        detail_format: DetailFormat::Text,
        ..AlertSettings::default()
    }
}

fn rule(action: &str, id: &str, sev: &str, tags: &[&str]) -> String {
    let tags: String = tags.iter().map(|t| format!(" [tag \"{t}\"]")).collect();
    format!("{action} Pattern match \"x\" at ARGS:q. [file \"/r.conf\"] [line \"1\"] [id \"{id}\"] [rev \"3\"] [msg \"rule {id}\"] [data \"d{id}\"] [severity \"{sev}\"]{tags}")
}

#[test]
fn crs_anomaly_block_is_named_after_the_most_severe_contributing_rule() {
    let ev = event(
        V4,
        403,
        &[
            &rule("Warning.", "920350", "WARNING", &["attack-protocol"]),
            &rule("Warning.", "942100", "CRITICAL", &["attack-sqli"]),
            &rule("Warning.", "942190", "CRITICAL", &["attack-sqli"]),
            &rule(
                "Access denied with code 403 (phase 2).",
                "949110",
                "CRITICAL",
                &[],
            ),
            &rule("Warning.", "980130", "CRITICAL", &[]),
        ],
        true,
    );
    let m = map_event(&ev, b"RAW", &[], &text_format());
    assert_eq!(m.decision, Decision::Intercepted);
    let f = &m.fields;
    assert_eq!(f.sig_id, 942100, "first of the equally severe contributors");
    assert_eq!(f.revision, 3);
    assert_eq!(String::from_utf8_lossy(&f.message), "MSc 403 rule 942100");
    assert_eq!((f.priority, f.class.as_str()), (2, "attack-sqli"));
    assert_eq!(f.generator, 10001);
    assert_eq!(f.time.to_string(), "2026-11-28 07:14:31 UTC");
    assert_eq!(f.src_ip, Some("192.0.2.7".parse().unwrap()));
    assert_eq!((f.src_port, f.dst_port, f.ip_proto), (40628, 80, 6));
    let detail = String::from_utf8_lossy(&f.detail);
    for want in [
        "ModSecurity event UNIQ-1 (intercepted)",
        "Request: GET /x?q=1 HTTP/1.1",
        "Host: lab.example",
        "User-Agent: curl/8",
        "Status: 403  Intercepted in phase 2",
        "[942190] CRITICAL rule 942190",
        "data: d942100",
        "tags: attack-sqli",
        "--- raw event ---\nRAW",
    ] {
        assert!(detail.contains(want), "{want:?} missing from:\n{detail}");
    }
}

#[test]
fn a_direct_block_is_named_after_its_own_rule() {
    let ev = event(
        V4,
        403,
        &[
            &rule("Warning.", "920350", "CRITICAL", &[]),
            &rule(
                "Access denied with code 403 (phase 2).",
                "100001",
                "NOTICE",
                &["custom"],
            ),
        ],
        true,
    );
    let m = map_event(&ev, b"", &[], &AlertSettings::default());
    assert_eq!(m.fields.sig_id, 100001);
    assert_eq!(
        (m.fields.priority, m.fields.class.as_str()),
        (3, "web-attack")
    );
}

#[test]
fn crs4_evaluation_rule_is_recognised_by_its_tag() {
    let ev = event(
        V4,
        403,
        &[
            &rule("Warning.", "930120", "ERROR", &[]),
            &rule(
                "Access denied with code 403 (phase 2).",
                "949111",
                "CRITICAL",
                &["anomaly-evaluation"],
            ),
        ],
        true,
    );
    assert_eq!(
        map_event(&ev, b"", &[], &AlertSettings::default())
            .fields
            .sig_id,
        930120
    );
}

#[test]
fn decision_rules_and_their_switches() {
    let s = AlertSettings::default();
    let plain = event(V4, 200, &[], false);
    assert_eq!(decide(&plain, &s), Decision::Skip);
    let all = AlertSettings {
        handle_all_events: true,
        ..AlertSettings::default()
    };
    assert_eq!(decide(&plain, &all), Decision::Activity);
    let m = map_event(&plain, b"", &[], &all);
    assert_eq!(
        (m.fields.priority, m.fields.class.as_str()),
        (5, "web-activity")
    );
    assert_eq!(
        String::from_utf8_lossy(&m.fields.message),
        "MSc 200 GET /x?q=1"
    );

    let not_found = event(V4, 404, &[], false);
    assert_eq!(decide(&not_found, &s), Decision::ErrorStatus);
    let ignore = AlertSettings {
        ignore_http_codes: vec![404],
        ..AlertSettings::default()
    };
    assert_eq!(decide(&not_found, &ignore), Decision::Skip);
    // An interception is an alert whatever its status.
    let blocked_404 = event(
        V4,
        404,
        &[&rule(
            "Access denied with code 404 (phase 1).",
            "100009",
            "ERROR",
            &[],
        )],
        true,
    );
    assert_eq!(decide(&blocked_404, &ignore), Decision::Intercepted);

    let detection = event(
        V4,
        200,
        &[&rule("Warning.", "920350", "WARNING", &[])],
        false,
    );
    assert_eq!(decide(&detection, &s), Decision::RuleMatched);
    let quiet = AlertSettings {
        alert_on_warnings: false,
        ..AlertSettings::default()
    };
    assert_eq!(decide(&detection, &quiet), Decision::Skip);
    assert_eq!(map_event(&detection, b"", &[], &s).fields.priority, 3);
}

#[test]
fn priorities_follow_modsec2sguil() {
    use Severity::*;
    let got: Vec<u8> = [
        Emergency, Alert, Critical, Error, Warning, Notice, Info, Debug,
    ]
    .into_iter()
    .map(|s| priority(Some(s)))
    .collect();
    assert_eq!(got, [1, 1, 2, 2, 3, 3, 4, 4]);
    assert_eq!(priority(None), 4);
}

#[test]
fn ipv4_mapped_addresses_become_ipv4_and_other_ipv6_is_flagged_not_dropped() {
    let mapped = event("::ffff:192.0.2.9 5000 ::ffff:10.0.0.1 443", 403, &[], false);
    let m = map_event(&mapped, b"", &[], &AlertSettings::default());
    assert_eq!(m.fields.src_ip, Some("192.0.2.9".parse().unwrap()));
    assert_eq!(m.fields.dst_ip, Some("10.0.0.1".parse().unwrap()));
    assert!(!m.ipv6);

    let v6 = event("2001:db8::7 5000 ::1 80", 403, &[], false);
    let m = map_event(&v6, b"", &[], &text_format());
    assert!(m.ipv6);
    assert_eq!((m.fields.src_ip, m.fields.dst_ip), (None, None));
    assert_eq!((m.fields.src_port, m.fields.dst_port), (5000, 80));
    let detail = String::from_utf8_lossy(&m.fields.detail);
    assert!(
        detail.contains("Client: [2001:db8::7]:5000  Server: [::1]:80"),
        "{detail}"
    );
    assert!(detail.contains("Sguil stores only IPv4"), "{detail}");
}

#[test]
fn long_message_and_detail_are_cut_to_what_sguild_stores_and_say_so() {
    let long = "é".repeat(300);
    let msg = format!("Access denied with code 403 (phase 2). x [id \"1\"] [msg \"{long}\"]");
    let ev = event(V4, 403, &[&msg], true);
    let raw = vec![b'R'; 100_000];
    // The whole raw event wanted: Sguil's limit is what cuts it.
    let all = AlertSettings {
        detail_raw_bytes: MAX_DETAIL_BYTES,
        ..AlertSettings::default()
    };
    let m = map_event(&ev, &raw, &[], &all);
    assert!(m.fields.message.len() <= MAX_MESSAGE_BYTES);
    assert!(
        std::str::from_utf8(&m.fields.message).is_ok(),
        "cut on a char boundary"
    );
    assert!(m.fields.detail.len() <= MAX_DETAIL_BYTES);
    let tail =
        String::from_utf8_lossy(&m.fields.detail[m.fields.detail.len() - 130..]).into_owned();
    assert!(
        tail.contains("cut by modsec-shipper") && tail.contains("Sguil stores at most 32767"),
        "{tail}"
    );
    // The result is accepted by the wire layer.
    let mut f = m.fields;
    (f.hostname, f.sid, f.cid) = ("websrv".into(), 1, 1);
    crate::sguil::wire::SguilEvent::new(f).unwrap();
}

#[test]
fn integrity_problems_are_said_in_the_detail() {
    let mut ev = event(V4, 403, &[], false);
    ev.check_integrity(500, &[0; 16], 300, &[1; 16]);
    let notes = vec!["collector: md5 mismatch".to_string()];
    let d = map_event(&ev, b"", &notes, &text_format()).fields.detail;
    let d = String::from_utf8_lossy(&d);
    assert!(
        d.contains("the file is 300 bytes but its index line says 500"),
        "{d}"
    );
    assert!(d.contains("md5 does not match"), "{d}");
    assert!(d.contains("Warning: collector: md5 mismatch"), "{d}");
}

#[test]
fn settings_from_the_config_file_and_errors_that_name_the_line() {
    let c = ConfigFile::parse(
        "set IGNORE_HTTP_CODES \"404 410\"\nset HANDLE_ALL_EVENTS 1\nset ALERT_ON_WARNINGS 0\nset ANOMALY_RULES 949110\nset ALERT_CLASS web-app\nset DETAIL_FORMAT TEXT\nset DETAIL_RAW_BYTES 4096\n",
        Path::new("/etc/m.conf"),
    )
    .unwrap();
    let s = AlertSettings::resolve(&c).unwrap();
    assert_eq!(s.ignore_http_codes, [404, 410]);
    assert!(s.handle_all_events && !s.alert_on_warnings);
    assert_eq!(
        (s.anomaly_rules.as_slice(), s.alert_class.as_str()),
        (&["949110".to_string()][..], "web-app")
    );
    assert_eq!(
        (s.detail_format, s.detail_raw_bytes),
        (DetailFormat::Text, 4096)
    );
    for (text, want) in [
        ("set DETAIL_FORMAT markdown\n", ":1: DETAIL_FORMAT"),
        ("set DETAIL_RAW_BYTES 40000\n", ":1: DETAIL_RAW_BYTES"),
        ("set IGNORE_HTTP_CODES notfound\n", ":1: IGNORE_HTTP_CODES"),
        (
            "set ALERT_CLASS web-application-attack\n",
            ":1: ALERT_CLASS",
        ),
        ("set ANOMALY_RULES 949x\n", ":1: ANOMALY_RULES"),
        ("\nset HANDLE_ALL_EVENTS maybe\n", ":2: HANDLE_ALL_EVENTS"),
    ] {
        let c = ConfigFile::parse(text, Path::new("/etc/m.conf")).unwrap();
        let e = AlertSettings::resolve(&c).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
}

mod hostile {
    use super::*;
    use crate::sguil::barnyard::{message_text, rtevent_line};
    use crate::sguil::tcl;
    use crate::sguil::wire::SguilEvent;
    use proptest::prelude::*;

    /// Bytes an attacker controls: Tcl and SQL syntax, line breaks, NUL, invalid UTF-8,
    /// and sometimes a lot of them.
    fn hostile() -> impl Strategy<Value = Vec<u8>> {
        let pieces = prop::sample::select(vec![
            &b"{"[..],
            b"}",
            b"[",
            b"]",
            b"$",
            b"\\",
            b"\"",
            b"'",
            b";",
            b"#",
            b" ",
            b"\t",
            b"\n",
            b"\r",
            b"\0",
            b"\x0b",
            b"\x0c",
            b"\xff",
            b"\xc3",
            b"\xe2\x80\xa8",
            b"a",
            b"%27",
            b"`",
            b"[exec id]",
            b"${x}",
        ]);
        prop_oneof![
            prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat()),
            (1usize..70_000).prop_map(|n| vec![b'{'; n]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever an attacker puts in the request line, Host, User-Agent, body, rule
        /// message, data and tag, and in the hostname ModSecurity logs, the lines sent
        /// to sguild (GenericEvent) and to snort_agent (RTEVENT) are one well-formed
        /// Tcl list each, on one line, with the right number of fields; the GenericEvent
        /// is ASCII with free text only as hex; the RTEVENT carries the message as one
        /// printable line.
        #[test]
        fn hostile_values_in_every_attacker_field_never_break_a_line(
            uri in hostile(), host in hostile(), ua in hostile(), body in hostile(),
            msg in hostile(), data in hostile(), tag in hostile(),
        ) {
            let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let mut text = Vec::new();
            text.extend_from_slice(b"--a1b2c3d4-A--\n[28/Nov/2026:02:14:31.052041 +0000] UNIQ-1 192.0.2.7 40628 198.51.100.2 80\n--a1b2c3d4-B--\nPOST /");
            text.extend_from_slice(&uri);
            text.extend_from_slice(b" HTTP/1.1\nHost: ");
            text.extend_from_slice(&host);
            text.extend_from_slice(b"\nUser-Agent: ");
            text.extend_from_slice(&ua);
            text.extend_from_slice(b"\n\n--a1b2c3d4-C--\n");
            text.extend_from_slice(&body);
            text.extend_from_slice(b"\n--a1b2c3d4-F--\nHTTP/1.1 403 X\n\n--a1b2c3d4-H--\nMessage: Access denied with code 403 (phase 2). Pattern match \"x\" at ARGS:q. [file \"/r.conf\"] [line \"1\"] [id \"942100\"] [msg \"");
            text.extend_from_slice(&msg);
            text.extend_from_slice(b"\"] [data \"");
            text.extend_from_slice(&data);
            text.extend_from_slice(b"\"] [severity \"CRITICAL\"] [tag \"");
            text.extend_from_slice(&tag);
            text.extend_from_slice(b"\"] [hostname \"");
            text.extend_from_slice(&host);
            text.extend_from_slice(b"\"]\nAction: Intercepted (phase 2)\n\n--a1b2c3d4-Z--\n");
            let Ok(ev) = parse_event(&text, &ParseLimits::default()) else {
                return Ok(()); // refused with a reason: quarantined, never sent
            };
            let mapped = map_event(&ev, &text, &[s(b"collector: md5 differs")], &AlertSettings::default());
            let mut f = mapped.fields;
            f.sid = 1;
            f.cid = 1;
            f.hostname = "websrv-a".into();
            let e = SguilEvent::new(f).expect("a mapped event is always sendable");
            let line = e.to_line();
            prop_assert!(line.is_ascii());
            prop_assert_eq!(line.matches('\n').count(), 1);
            let items = tcl::split(line.trim_end()).unwrap();
            prop_assert_eq!(items.len(), 19);
            for hex in [&items[9], &items[18]] {
                prop_assert!(hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
            }
            let rt = rtevent_line(&e);
            prop_assert_eq!(rt.matches('\n').count(), 1);
            prop_assert!(!rt.contains('\r') && !rt.contains('\0'));
            let items = tcl::split(rt.trim_end()).unwrap();
            prop_assert_eq!(items.len(), 47);
            prop_assert_eq!(&items[11], &message_text(&e.fields().message));
        }
    }
}
