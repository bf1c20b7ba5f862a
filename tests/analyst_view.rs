//! What the analyst sees: the detail of every corpus event and of a hostile set, rendered
//! by the Sguil client's own detail widget (iwidgets 4.1 `scrolledhtml`, made with
//! sguil.tk's options, under Xvfb) the way the client's `InsertGenericDetail` does.
//!
//! `SGUIL_DETAIL_SCREENSHOT=/path/file.png` also writes a picture of one corpus event as
//! the console shows it (the README's picture comes from here).

use std::fs::File;
use std::path::PathBuf;

use modsec2sguil::alert::{map_event, AlertSettings, DetailFormat};
use modsec2sguil::auditlog::{parse_event, read_event_file, AuditEvent, ParseLimits};
use modsec2sguil::sguil::wire::MAX_DETAIL_BYTES;
use modsec2sguil_e2e::renderer::{render, wish_or_skip, Rendered, Xvfb};
use modsec2sguil_e2e::{files_below, fixtures, CORPUS_RUNS};

/// An event to render, with what the analyst must be able to read in it.
struct Case {
    name: String,
    event: AuditEvent,
    raw: Vec<u8>,
    /// (label, value): a summary line `label: value` must be on a line of its own.
    lines: Vec<(&'static str, String)>,
    /// Text that must be readable, verbatim, somewhere in the rendered detail.
    readable: Vec<String>,
}

fn corpus() -> Vec<Case> {
    let limits = ParseLimits::default();
    let mut cases = Vec::new();
    for run in CORPUS_RUNS {
        let files = files_below(&fixtures().join(run));
        for (i, path) in files.iter().enumerate() {
            let raw = read_event_file(path, File::open(path).unwrap(), &limits).unwrap();
            let event = raw.parse(&limits).unwrap();
            let mut lines = vec![
                ("Event", event.unique_id.clone()),
                (
                    "Status",
                    event
                        .status()
                        .map_or("none logged".into(), |s| s.to_string()),
                ),
            ];
            if let Some(host) = event.request.header("Host") {
                if host.iter().all(|b| (0x20..0x7f).contains(b) && *b != b'\\') {
                    lines.push(("Host", String::from_utf8(host.to_vec()).unwrap()));
                }
            }
            cases.push(Case {
                name: format!("{}-{i:03}", run.replace(['/', '.'], "_")),
                event,
                raw: raw.bytes,
                lines,
                readable: Vec::new(),
            });
        }
    }
    assert!(cases.len() > 200, "only {} corpus events", cases.len());
    cases
}

/// A native 2.x event whose request and rule carry attacker text.
fn hostile_event(
    n: usize,
    uri: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    msg: &str,
    data: &str,
) -> (AuditEvent, Vec<u8>) {
    let mut raw = format!(
        "--h0571le-A--\n[28/Nov/2026:02:14:31.052041 +0000] HOSTILE-{n} 192.0.2.7 40628 198.51.100.2 80\n\
         --h0571le-B--\nPOST {uri} HTTP/1.1\n"
    )
    .into_bytes();
    for (name, value) in headers {
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.push(b'\n');
    }
    raw.extend_from_slice(b"Content-Type: application/x-www-form-urlencoded\n\n--h0571le-C--\n");
    raw.extend_from_slice(body);
    raw.extend_from_slice(
        format!(
            "\n--h0571le-F--\nHTTP/1.1 403 Forbidden\n\n--h0571le-H--\n\
             Message: Access denied with code 403 (phase 2). Pattern match \"x\" at ARGS:q. \
             [file \"/r.conf\"] [line \"1\"] [id \"950001\"] [msg \"{msg}\"] [data \"{data}\"] \
             [severity \"CRITICAL\"] [tag \"attack-xss\"]\n\
             Action: Intercepted (phase 2)\nEngine-Mode: \"ENABLED\"\n\n--h0571le-Z--\n"
        )
        .as_bytes(),
    );
    let event = parse_event(&raw, &ParseLimits::default()).expect("hostile event parses");
    (event, raw)
}

const LINK: &str = r#"<a href="http://evil.example/">click me</a>"#;
const IMG: &str = r#"<img src="/usr/share/pixmaps/debian-logo.png">"#;

fn hostile() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |event: (AuditEvent, Vec<u8>),
                   lines: Vec<(&'static str, String)>,
                   readable: Vec<String>| {
        let n = cases.len();
        cases.push(Case {
            name: format!("hostile-{n:02}"),
            event: event.0,
            raw: event.1,
            lines,
            readable,
        });
    };
    // Markup in each place the attacker writes, with every trap of the renderer.
    let uri = "/search?q=<img/src=/etc/passwd>&x=<!--&y=&lt;b&gt;&z=&amp;&w=]]></pre><a/href=http://evil.example/>";
    let ua = format!("Mozilla/5.0 {LINK} <!-- never closed");
    let host = "&lt;b&gt;lab.example&lt;/b&gt;";
    let referer = format!("http://x.example/\">{IMG}");
    add(
        hostile_event(
            0,
            uri,
            &[
                ("Host", host.as_bytes()),
                ("User-Agent", ua.as_bytes()),
                ("Referer", referer.as_bytes()),
            ],
            b"q=</pre><b>bold</b>&c=]]>&d=&quot;&amp;",
            "XSS <b>bold</b> &amp; <a href=http://evil.example/>x</a>",
            "Matched Data: <!-- hidden",
        ),
        vec![
            ("Request", format!("POST {uri} HTTP/1.1")),
            ("Host", host.into()),
            ("User-Agent", ua.clone()),
            ("Referer", referer.clone()),
        ],
        vec![
            LINK.into(),
            IMG.into(),
            "XSS <b>bold</b> &amp; <a href=http://evil.example/>x</a>".into(),
            "data: Matched Data: <!-- hidden".into(),
            "q=</pre><b>bold</b>&c=]]>&d=&quot;&amp;".into(),
        ],
    );
    // `<!--` with no `>` anywhere after it in the event (the client hangs on it today):
    // at the end of the body, the last thing before the raw event's own end.
    add(
        hostile_event(
            1,
            "/a",
            &[("Host", b"lab.example"), ("User-Agent", b"<!--")],
            b"x=1&note=<!--",
            "comment <!--",
            "<!--",
        ),
        vec![("User-Agent", "<!--".into())],
        vec!["x=1&note=<!--".into(), "comment <!--".into()],
    );
    // NUL, invalid UTF-8, a lone `<` and entities spelt in upper case.
    add(
        hostile_event(
            2,
            "/b?%00",
            &[
                ("Host", b"lab.example"),
                (
                    "User-Agent",
                    b"bad\x00nul \xff\xfe\xc3( <  &LT;X&GT; &Quot;",
                ),
            ],
            b"bin=\x00\x01\xff\xfe\xc3\x28<",
            "binary",
            "x",
        ),
        vec![(
            "User-Agent",
            r"bad\x00nul \xff\xfe\xc3( < &LT;X&GT; &Quot;".into(),
        )],
        vec![r"bin=\x00\x01\xff\xfe\xc3(<".into()],
    );
    // The most work for the renderer: the longest raw event that fits, made of the
    // sequence that needs a tag between each `&` and what follows (each tag inside
    // <pre> costs the widget a scan of the rest of the detail).
    let body = "&lt;".repeat(8000);
    add(
        hostile_event(
            3,
            "/c",
            &[("Host", b"lab.example")],
            body.as_bytes(),
            "m",
            "d",
        ),
        vec![("Host", "lab.example".into())],
        vec!["&lt;&lt;&lt;&lt;&lt;".into()],
    );
    cases
}

/// How the renderer shows raw bytes inside `<pre>`.
fn visible_pre(bytes: &[u8]) -> String {
    String::from_utf8(modsec2sguil::escape::escape_lines(bytes)).unwrap()
}

/// The number of raw-event bytes the detail says it shows.
fn raw_shown(detail: &str, raw_len: usize) -> usize {
    match detail.split("[cut by modsec-shipper: ").nth(1) {
        Some(rest) => rest.split(' ').next().unwrap().parse().unwrap(),
        None => raw_len,
    }
}

fn check(case: &Case, detail: &[u8], r: &Rendered, failures: &mut Vec<String>) {
    let mut fail = |what: String| failures.push(format!("{}: {what}", case.name));
    if r.links + r.windows + r.images > 0 {
        fail(format!(
            "{} link(s), {} window(s), {} image(s) in the rendered detail",
            r.links, r.windows, r.images
        ));
    }
    let lines: Vec<&str> = r.text.lines().collect();
    for label in [
        "Event",
        "Time",
        "Client -> server",
        "Request",
        "Status",
        "Interception",
    ] {
        let prefix = format!("{label}: ");
        let n = lines.iter().filter(|l| l.starts_with(&prefix)).count();
        if n != 1 {
            fail(format!("{n} lines start with {prefix:?}"));
        }
    }
    for (label, value) in &case.lines {
        let want = format!("{label}: {value}");
        if !lines.contains(&want.as_str()) {
            fail(format!("no line reads {want:?}"));
        }
    }
    for text in &case.readable {
        if !r.text.contains(text.as_str()) {
            fail(format!("{text:?} is not readable in the rendered detail"));
        }
    }
    for m in &case.event.matches {
        if let Some(id) = &m.id {
            if !lines.iter().any(|l| l.contains(id.as_str())) {
                fail(format!("rule {id} is not shown"));
            }
        }
    }
    let detail = String::from_utf8_lossy(detail);
    let shown = raw_shown(&detail, case.raw.len());
    let raw = visible_pre(&case.raw[..shown]);
    if !r.text.contains(&raw) {
        fail(format!(
            "the raw event's first {shown} bytes are not intact in the rendered text"
        ));
    }
    if detail.len() > MAX_DETAIL_BYTES {
        fail(format!("detail is {} bytes", detail.len()));
    }
}

#[test]
fn every_detail_reads_as_it_should_in_the_sguil_clients_detail_widget() {
    let test = "every_detail_reads_as_it_should_in_the_sguil_clients_detail_widget";
    let Some(wish) = wish_or_skip(test) else {
        return;
    };
    let Some(xvfb) = Xvfb::start(test) else {
        return;
    };
    // The whole raw event where it fits: the largest details this can make.
    let settings = AlertSettings {
        detail_raw_bytes: MAX_DETAIL_BYTES,
        ..AlertSettings::default()
    };
    assert_eq!(settings.detail_format, DetailFormat::Html);
    let cases: Vec<Case> = corpus().into_iter().chain(hostile()).collect();
    let details: Vec<(String, Vec<u8>)> = cases
        .iter()
        .map(|c| {
            let m = map_event(&c.event, &c.raw, &[], &settings);
            (c.name.clone(), m.fields.detail)
        })
        .collect();
    let shot = std::env::var_os("SGUIL_DETAIL_SCREENSHOT").map(PathBuf::from);
    let keep = shot.as_deref().map(|png| ("modsec-2_9_native-011", png));
    let rendered = render(&wish, &xvfb, &details, keep);
    assert_eq!(rendered.len(), cases.len());
    let mut failures = Vec::new();
    let mut slowest = (0.0f64, String::new());
    for r in &rendered {
        let i = cases.iter().position(|c| c.name == r.name).unwrap();
        check(&cases[i], &details[i].1, r, &mut failures);
        if r.millis > slowest.0 {
            slowest = (r.millis, r.name.clone());
        }
    }
    let mut times: Vec<f64> = rendered.iter().map(|r| r.millis).collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    eprintln!(
        "rendered {} details; median {median} ms, slowest {} ms ({})",
        rendered.len(),
        slowest.0,
        slowest.1
    );
    // No detail may make the widget crawl: the slowest render is within 100 times the
    // median one plus 2 s. A busy machine slows every render alike (they run one
    // after another in one wish; the slowest, hostile-03, takes ~60x the median idle), so
    // it cannot fail this; a detail that makes Tk work
    // far harder than the others (nested tags, a runaway regexp) does. A detail that
    // hangs it outright fails render() after RENDER_LIMIT.
    let bound = 100.0 * median + 2000.0;
    for r in &rendered {
        if r.millis > bound {
            failures.push(format!(
                "{}: render took {} ms, over {bound} ms (100 x the median {median} ms + 2 s)",
                r.name, r.millis
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
