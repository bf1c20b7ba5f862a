//! Real Apache 2.4 + ModSecurity 2.9 + CRS re-creates the fixtures: a request set goes
//! in, and the index lines and event files it produces must parse into exactly what was
//! sent (addresses, request, rule ids, interception). Native and JSON formats.

use std::fs::File;
use std::net::IpAddr;

use modsec2sguil::auditlog::{read_event_file, AuditEvent, EventFormat, ParseLimits};
use modsec2sguil::index::{parse_index_line, IndexLine};
use modsec2sguil_e2e::apache::{self, Apache, ApacheOptions, Reply};
use modsec2sguil_e2e::skip_or_fail;

struct Case {
    label: &'static str,
    v6: bool,
    /// Rule ids that must be among the event's.
    rules: &'static [&'static str],
    /// Interception phase expected, or `None` for a logged but not intercepted request.
    phase: Option<u8>,
    status: u16,
    reply: Reply,
    method: &'static str,
    uri: &'static str,
    body: Option<Vec<u8>>,
}

fn run_request_set(apache: &Apache) -> (Vec<Case>, Reply) {
    let mut cases = Vec::new();
    let mut add = |label, v6, rules, phase, status, method, uri, body: Option<(&str, Vec<u8>)>| {
        let reply = match &body {
            None => apache.get(v6, uri, ""),
            Some((ct, b)) => apache.post(v6, uri, ct, b),
        };
        cases.push(Case {
            label,
            v6,
            rules,
            phase,
            status,
            reply,
            method,
            uri,
            body: body.map(|(_, b)| b),
        });
    };
    let sqli = "/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--";
    add(
        "crs-sqli-v4",
        false,
        &["942100", "949110"],
        Some(2),
        403,
        "GET",
        sqli,
        None,
    );
    add(
        "crs-sqli-v6",
        true,
        &["942100", "949110"],
        Some(2),
        403,
        "GET",
        sqli,
        None,
    );
    add(
        "custom-deny",
        false,
        &["100001"],
        Some(1),
        403,
        "GET",
        "/wp-login.php",
        None,
    );
    add(
        "redirect",
        true,
        &["100002"],
        Some(1),
        302,
        "GET",
        "/old-admin/settings.php",
        None,
    );
    add(
        "post-body-rule",
        false,
        &["100003"],
        Some(2),
        403,
        "POST",
        "/cgi-bin/echo.cgi",
        Some((
            "application/x-www-form-urlencoded",
            b"note=this+is+evil+stuff".to_vec(),
        )),
    );
    add(
        "log-only",
        false,
        &["100004"],
        None,
        200,
        "GET",
        "/hello.txt?probe=yes",
        None,
    );
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    add(
        "binary-body",
        true,
        &["920420", "949110"],
        Some(2),
        403,
        "POST",
        "/cgi-bin/echo.cgi?probe=yes",
        Some(("application/octet-stream", all_bytes)),
    );
    let benign = apache.get(false, "/index.html", "");
    (cases, benign)
}

fn check_format(format: &'static str, want: EventFormat) {
    let test = format!("apache_{format}");
    if let Some(why) = apache::unavailable() {
        skip_or_fail(&test, &why);
        return;
    }
    let mut apache = Apache::start(&ApacheOptions {
        format,
        ..ApacheOptions::default()
    });
    let (cases, benign) = run_request_set(&apache);
    apache.stop();

    let index = std::fs::read(&apache.index).expect("index file");
    let lines: Vec<IndexLine> = index
        .split_inclusive(|&b| b == b'\n')
        .map(|l| {
            parse_index_line(l).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(l)))
        })
        .collect();
    assert_eq!(
        lines.len(),
        cases.len(),
        "one index line per logged request; error log:\n{}",
        apache.error_log()
    );
    let benign_id = benign.unique_id.expect("benign request has an id");
    assert_eq!(benign.status, 200);
    assert!(
        lines.iter().all(|l| l.unique_id != benign_id),
        "benign request is not logged under RelevantOnly"
    );

    let limits = ParseLimits::default();
    for case in &cases {
        let ctx = format!("{format}/{}", case.label);
        assert_eq!(case.reply.status, case.status, "{ctx}: HTTP status");
        let id = case
            .reply
            .unique_id
            .as_deref()
            .unwrap_or_else(|| panic!("{ctx}: no X-Unique-ID"));
        let line = lines
            .iter()
            .find(|l| l.unique_id == id)
            .unwrap_or_else(|| panic!("{ctx}: {id} not in the index"));
        assert_eq!(line.status, case.status, "{ctx}: index status");
        let want_addr: IpAddr = if case.v6 {
            "::1".parse().unwrap()
        } else {
            "127.0.0.1".parse().unwrap()
        };
        assert_eq!(line.remote_addr, want_addr, "{ctx}");
        assert_eq!(
            line.request_line,
            format!("{} {} HTTP/1.1", case.method, case.uri).as_bytes(),
            "{ctx}"
        );
        let age = chrono::Utc::now()
            .signed_duration_since(line.time)
            .num_seconds();
        assert!(
            (0..120).contains(&age),
            "{ctx}: index time {} is not now",
            line.time
        );

        let path = apache.storage.join(
            std::str::from_utf8(&line.filename)
                .unwrap()
                .trim_start_matches('/'),
        );
        let raw = read_event_file(&path, File::open(&path).unwrap(), &limits).unwrap();
        assert_eq!(
            (raw.size, raw.md5),
            (line.size, line.md5),
            "{ctx}: size/md5 of {}",
            path.display()
        );
        let ev: AuditEvent = raw.parse(&limits).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(ev.format, want, "{ctx}");
        assert_eq!(ev.unique_id, id, "{ctx}");
        assert_eq!(ev.client.addr, want_addr, "{ctx}");
        assert_eq!(ev.server.port, apache.port, "{ctx}");
        assert_eq!(ev.request.method, case.method.as_bytes(), "{ctx}");
        assert_eq!(ev.request.uri, case.uri.as_bytes(), "{ctx}");
        assert_eq!(
            ev.request.header("Host"),
            Some(&b"lab.example"[..]),
            "{ctx}"
        );
        assert_eq!(ev.status(), Some(case.status), "{ctx}");
        let ids = ev.rule_ids();
        for want in case.rules {
            assert!(
                ids.contains(want),
                "{ctx}: rule {want} missing from {ids:?}"
            );
        }
        match case.phase {
            Some(p) => {
                let i = ev
                    .interception
                    .as_ref()
                    .unwrap_or_else(|| panic!("{ctx}: not intercepted"));
                assert_eq!((i.phase, i.status), (Some(p), Some(case.status)), "{ctx}");
            }
            None => assert!(ev.interception.is_none(), "{ctx}: {:?}", ev.interception),
        }
        if case.label == "redirect" {
            let target = ev.interception.as_ref().and_then(|i| i.target.as_deref());
            assert_eq!(target, Some("http://lab.example/new-admin/"), "{ctx}");
        }
        if let (Some(sent), EventFormat::Native2) = (&case.body, want) {
            // Native keeps the body byte for byte (JSON cuts strings at NUL).
            assert_eq!(
                &ev.request.body.as_ref().expect("part C").bytes,
                sent,
                "{ctx}: body"
            );
        }
    }
}

#[test]
fn native_events_from_real_apache_parse_into_what_was_sent() {
    check_format("Native", EventFormat::Native2);
}

#[test]
fn json_events_from_real_apache_parse_into_what_was_sent() {
    check_format("JSON", EventFormat::Json2);
}
