//! Every recorded event of every run in `tests/fixtures/` parses, and what the parsers
//! read agrees with what the capture recorded: the index lines, and `requests.tsv`
//! (what was sent and which rules ModSecurity reported).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use modsec2sguil::auditlog::{read_event_file, AuditEvent, EventFormat, ParseLimits};
use modsec2sguil::index::{parse_index_line, IndexFlavor, IndexLine};
use modsec2sguil_e2e::fixtures;

const RUNS_2_9: [(&str, EventFormat); 4] = [
    ("native", EventFormat::Native2),
    ("json", EventFormat::Json2),
    ("native-on", EventFormat::Native2),
    ("json-on", EventFormat::Json2),
];

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Reads and parses the event file an index line names, checking size and md5.
fn load(path: &Path, line: &IndexLine) -> AuditEvent {
    let limits = ParseLimits::default();
    let raw = read_event_file(path, File::open(path).unwrap(), &limits).unwrap();
    assert_eq!(
        raw.size,
        line.size,
        "{}: size differs from the index line",
        path.display()
    );
    assert_eq!(
        raw.md5,
        line.md5,
        "{}: md5 differs from the index line",
        path.display()
    );
    let mut ev = raw
        .parse(&limits)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ev.check_integrity(line.size, &line.md5, raw.size, &raw.md5);
    assert!(!ev.anomalies.md5_mismatch && ev.anomalies.size_mismatch.is_none());
    ev
}

fn index_lines(path: &Path) -> Vec<(Vec<u8>, IndexLine)> {
    let data = std::fs::read(path).unwrap();
    data.split_inclusive(|&b| b == b'\n')
        .map(|raw| {
            let parsed = parse_index_line(raw).unwrap_or_else(|e| {
                panic!("{}: {e}: {}", path.display(), String::from_utf8_lossy(raw))
            });
            (raw.to_vec(), parsed)
        })
        .collect()
}

struct Row {
    label: String,
    addr: String,
    logged: bool,
    index_status: String,
    index_l: bool,
    unique_id: String,
    event_file: String,
    rule_ids: BTreeSet<String>,
    intercepted: String,
}

fn requests(run: &str) -> Vec<Row> {
    let text = std::fs::read_to_string(fixtures().join("modsec-2.9/requests.tsv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    lines
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f[col("run")] == run)
        .map(|f| Row {
            label: f[col("label")].to_string(),
            addr: f[col("addr")].to_string(),
            logged: f[col("logged")] == "Y",
            index_status: f[col("index_status")].to_string(),
            index_l: f[col("index_L")] == "L",
            unique_id: f[col("unique_id")].to_string(),
            event_file: f[col("event_file")].to_string(),
            rule_ids: f[col("observed_rule_ids")]
                .split(',')
                .filter(|s| *s != "-")
                .map(str::to_string)
                .collect(),
            intercepted: f[col("intercepted")].to_string(),
        })
        .collect()
}

#[test]
fn every_modsec_2_9_event_matches_its_index_line_and_the_capture() {
    for (run, format) in RUNS_2_9 {
        let base = fixtures().join("modsec-2.9");
        let storage = base.join(run);
        let mut by_id: HashMap<String, (IndexLine, AuditEvent)> = HashMap::new();
        let mut seen_files = HashSet::new();
        for (_, line) in index_lines(&base.join(format!("index-{run}.log"))) {
            assert_eq!(line.flavor, IndexFlavor::ModSecurity2);
            assert_eq!(line.user_dir(), Some(&b"www-data"[..]));
            let rel = std::str::from_utf8(&line.filename)
                .unwrap()
                .trim_start_matches('/');
            let path = storage.join(rel);
            let ev = load(&path, &line);
            assert_eq!(ev.format, format, "{}", path.display());
            assert_eq!(ev.unique_id, line.unique_id);
            assert_eq!(ev.client.addr, line.remote_addr, "{}", path.display());
            let lag = line.time.signed_duration_since(ev.time).num_milliseconds();
            assert!(
                (0..5000).contains(&lag),
                "{}: part A time {} vs index time {}",
                path.display(),
                ev.time,
                line.time
            );
            assert_eq!(ev.status(), Some(line.status), "{}: status", path.display());
            assert!(
                ev.parts.is_empty() || ev.parts.last() == Some(&'Z'),
                "{}: {:?}",
                path.display(),
                ev.parts
            );
            assert!(
                ev.anomalies.missing_parts.is_empty(),
                "{}: {:?}",
                path.display(),
                ev.anomalies
            );
            // Only bodies over the cap are cut (the 1 MiB uploads), and then flagged.
            for letter in &ev.anomalies.capped_parts {
                let body = if *letter == 'E' {
                    &ev.response.body
                } else {
                    &ev.request.body
                };
                let body = body.as_ref().unwrap();
                assert!(
                    body.truncated && body.total_len > ParseLimits::default().max_body_bytes as u64,
                    "{}",
                    path.display()
                );
            }
            seen_files.insert(path);
            by_id.insert(line.unique_id.clone(), (line, ev));
        }
        // No fixture goes unchecked: every file in the storage dir was named by a line.
        for f in files_under(&storage) {
            assert!(
                seen_files.contains(&f),
                "{} is in the fixtures but in no index line",
                f.display()
            );
        }

        let rows = requests(run);
        assert_eq!(rows.len(), 64);
        let mut logged = 0;
        for row in rows.iter().filter(|r| r.logged) {
            logged += 1;
            let id = if row.unique_id != "-" {
                row.unique_id.clone()
            } else {
                row.event_file.rsplit('-').next().unwrap().to_string()
            };
            let (line, ev) = by_id
                .get(&id)
                .unwrap_or_else(|| panic!("{run}/{}: {id} not in the index", row.label));
            let ctx = format!("{run}/{}", row.label);
            assert_eq!(
                line.status.to_string(),
                row.index_status,
                "{ctx}: index status"
            );
            assert_eq!(line.shortened, row.index_l, "{ctx}: L flag");
            let want_addr: IpAddr = if row.addr == "v6" {
                "::1".parse().unwrap()
            } else {
                "127.0.0.1".parse().unwrap()
            };
            assert_eq!(ev.client.addr, want_addr, "{ctx}: client address");
            let got: BTreeSet<String> = ev.rule_ids().into_iter().map(str::to_string).collect();
            assert_eq!(got, row.rule_ids, "{ctx}: rule ids");
            match row.intercepted.strip_prefix("phase ") {
                Some(p) => {
                    let i = ev
                        .interception
                        .as_ref()
                        .unwrap_or_else(|| panic!("{ctx}: not intercepted"));
                    assert_eq!(i.phase, Some(p.parse().unwrap()), "{ctx}: phase");
                    assert_eq!(i.status, Some(line.status), "{ctx}: interception status");
                }
                None => assert!(
                    ev.interception.is_none(),
                    "{ctx}: unexpected interception {:?}",
                    ev.interception
                ),
            }
        }
        assert_eq!(
            logged,
            by_id.len(),
            "{run}: every index line is one logged request"
        );
    }
}

#[test]
fn corpus_specifics_are_read_right() {
    let base = fixtures().join("modsec-2.9");
    let lines = index_lines(&base.join("index-native.log"));
    let event = |label_uri: &str| {
        let (_, line) = lines
            .iter()
            .find(|(raw, _)| {
                raw.windows(label_uri.len())
                    .any(|w| w == label_uri.as_bytes())
            })
            .unwrap_or_else(|| panic!("no line with {label_uri}"));
        let path = base.join("native").join(
            std::str::from_utf8(&line.filename)
                .unwrap()
                .trim_start_matches('/'),
        );
        (line.clone(), load(&path, line))
    };
    // The redirect rule: target and status from the message.
    let (_, ev) = event("/old-admin");
    let i = ev.interception.unwrap();
    assert_eq!(i.target.as_deref(), Some("http://lab.example/new-admin/"));
    assert_eq!(i.status, Some(302));
    // Basic auth user with spaces and quotes in the index line.
    let (line, _) = event("bob \"the\" builder");
    assert_eq!(line.user.as_deref(), Some(&b"bob \"the\" builder"[..]));
    // Session id set by setsid, escaped and quoted.
    let (line, _) = event("abc\\\"def");
    assert_eq!(line.session_id.as_deref(), Some(&b"abc\"def\\ghi jkl"[..]));
    // A malformed JSON body: a message with a raw newline and no id, a 500 that is not an interception.
    let json_invalid = lines
        .iter()
        .find(|(_, l)| l.status == 500 && l.request_line.starts_with(b"POST"))
        .unwrap();
    let path = base.join("native").join(
        std::str::from_utf8(&json_invalid.1.filename)
            .unwrap()
            .trim_start_matches('/'),
    );
    let ev = load(&path, &json_invalid.1);
    // Its raw trailing newline leaves a blank line in part H, which is not a parse error.
    let m = ev
        .matches
        .iter()
        .find(|m| m.justification.contains("JSON parser error"))
        .expect("JSON parser message");
    assert_eq!(m.id, None);
    assert_eq!(ev.anomalies.unparsed_lines, 0);
    assert!(ev.interception.is_none());
    // The binary bodies keep all 256 byte values in native format: the two requests
    // requests.tsv describes so ("binary-octet" blocked by 920420, "binary-multipart"
    // passed), found by their unique ids. Each must be found and checked.
    let mut checked = Vec::new();
    for row in requests("native") {
        if !row.label.starts_with("binary-") {
            continue;
        }
        let (_, line) = lines
            .iter()
            .find(|(_, l)| l.unique_id == row.unique_id)
            .unwrap_or_else(|| panic!("{}: {} has no index line", row.label, row.unique_id));
        let path = base.join("native").join(
            std::str::from_utf8(&line.filename)
                .unwrap()
                .trim_start_matches('/'),
        );
        assert_eq!(
            format!("native{}", String::from_utf8_lossy(&line.filename)),
            row.event_file
        );
        let ev = load(&path, line);
        let body = ev
            .request
            .body
            .unwrap_or_else(|| panic!("{}: no request body", row.label));
        let values: HashSet<u8> = body.bytes.iter().copied().collect();
        assert_eq!(values.len(), 256, "{}: byte values kept", row.label);
        checked.push(row.label);
    }
    assert_eq!(checked, ["binary-octet", "binary-multipart"]);
}

#[test]
fn every_libmodsecurity3_event_matches_its_index_line() {
    for (run, format) in [
        ("native", EventFormat::Native3),
        ("json", EventFormat::Json3),
    ] {
        let base = fixtures().join("modsec-3");
        let storage = base.join(run);
        let mut seen = HashSet::new();
        for (_, line) in index_lines(&base.join(format!("index-{run}.log"))) {
            assert_eq!(line.flavor, IndexFlavor::LibModSecurity3);
            // Absolute paths from the capture machine; the files sit under fixtures/.
            let name = std::str::from_utf8(&line.filename).unwrap();
            let rel = name
                .split_once("/audit/")
                .map(|(_, r)| r)
                .unwrap_or_else(|| panic!("{name}"));
            let path = storage.join(rel);
            let ev = load(&path, &line);
            let ctx = path.display().to_string();
            assert_eq!(ev.format, format, "{ctx}");
            assert_eq!(ev.unique_id, line.unique_id, "{ctx}");
            assert_eq!(ev.client.addr, line.remote_addr, "{ctx}");
            assert!(
                line.time.signed_duration_since(ev.time).num_seconds().abs() <= 2,
                "{ctx}: time"
            );
            if format == EventFormat::Native3
                && line.status == 403
                && ev.rule_ids().contains(&"949110")
            {
                let i = ev
                    .interception
                    .as_ref()
                    .unwrap_or_else(|| panic!("{ctx}: a CRS block is an interception"));
                assert_eq!((i.status, i.phase), (Some(403), Some(2)), "{ctx}");
            }
            seen.insert(path);
        }
        for f in files_under(&storage) {
            assert!(seen.contains(&f), "{} is in no index line", f.display());
        }
        assert!(seen.len() >= 20, "{run}: only {} events", seen.len());
    }
}

/// `requeue` knows queued events by the unique id read from the start of the file; it
/// must be the id the full parser finds, for every format ModSecurity writes.
#[test]
fn the_quick_unique_id_is_the_parsed_one_for_every_corpus_event() {
    use modsec2sguil::auditlog::{parse_event, unique_id_quick};
    let mut checked = 0;
    for run in ["modsec-2.9", "modsec-3"] {
        for path in files_under(&fixtures().join(run)) {
            let name = path.to_string_lossy();
            if !(name.contains("/native") || name.contains("/json")) {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let parsed = parse_event(&bytes, &ParseLimits::default()).unwrap();
            let quick = unique_id_quick(&bytes[..bytes.len().min(4096)]);
            assert_eq!(quick.as_deref(), Some(parsed.unique_id.as_str()), "{name}");
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} corpus events found");
    // Shapes it does not vouch for are left to the parser.
    for odd in [
        &b""[..],
        b"{\"request\":{}}",
        b"--x-B--\n[a] id\n",
        b"--x-A--\nno bracket\n",
    ] {
        assert_eq!(unique_id_quick(odd), None);
    }
}
