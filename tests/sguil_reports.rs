//! The Sguil reports and global queries of `examples/sguil/` against a real MariaDB.
//!
//! The recorded ModSecurity 2.9 events (native and JSON runs) are queued with
//! `modsec-shipper requeue --index`, shipped by `modsec-shipper drain` to the test
//! sguild, and written into a private MariaDB as sguild writes a GenericEvent (per-day
//! MyISAM tables under the MERGE tables `event` and `data`). A second sensor on another
//! net holds copies of the same events, which a report for the first net must not count.
//! Each report element and global query is expanded by `support/sguil_menu.tcl` exactly
//! as sguild and the Sguil client expand them, run, and its rows compared with what the
//! corpus itself says: the event files parsed, and `requests.tsv` (what was intercepted,
//! by which action).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use modsec2sguil::auditlog::{read_event_file, AuditEvent, ParseLimits};
use modsec2sguil::escape::escape;
use modsec2sguil::index::parse_index_line;
use modsec2sguil_e2e::mariadb::{load_sguildb, sguil_menu_tcl, MariaDb};
use modsec2sguil_e2e::sguild::{Stored, TestSguild};
use modsec2sguil_e2e::shipper::{config, drain, shipper, stored_unique_id};
use modsec2sguil_e2e::{copy_tree, fixtures, program_or_skip, state, web_user};

/// The runs shipped with the default settings (alerts only).
const RUNS: [&str; 2] = ["native", "json"];
/// A run (every transaction logged) shipped with HANDLE_ALL_EVENTS: activity too.
const ALL_EVENTS_RUN: &str = "native-on";
const NET: &str = "webfarm";
const OTHER_NET: &str = "othernet";
/// The client's default SELECT_LIMIT.
const SELECT_LIMIT: usize = 500;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sguil")
}

/// What the corpus says about one shipped event, independent of the detail's format.
#[derive(Debug, Clone)]
struct Truth {
    sid: u32,
    cid: u32,
    /// The request path as ModSecurity logged it (escaped as in its logs), no query.
    path: String,
    host: Option<String>,
    user_agent: Option<String>,
    http_status: String,
    intercepted: bool,
    /// Shipped only because of HANDLE_ALL_EVENTS: not an alert.
    activity: bool,
    /// The interception's action word: deny, redirect, … or none.
    action: String,
    /// The client address, IPv6 in brackets.
    client: String,
    rule_ids: BTreeSet<String>,
    sig_id: String,
    message: String,
    timestamp: String,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(escape(bytes, false)).unwrap()
}

/// unique id → (parsed event, its requests.tsv row as column → value).
fn corpus() -> HashMap<String, (AuditEvent, HashMap<String, String>)> {
    let base = fixtures().join("modsec-2.9");
    let tsv = std::fs::read_to_string(base.join("requests.tsv")).unwrap();
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let mut rows: HashMap<String, HashMap<String, String>> = HashMap::new();
    for l in lines {
        let row: HashMap<String, String> = header
            .iter()
            .zip(l.split('\t'))
            .map(|(h, v)| (h.to_string(), v.to_string()))
            .collect();
        rows.insert(row["unique_id"].clone(), row);
    }
    let mut out = HashMap::new();
    let limits = ParseLimits::default();
    for run in RUNS.into_iter().chain([ALL_EVENTS_RUN]) {
        let index = std::fs::read(base.join(format!("index-{run}.log"))).unwrap();
        for raw in index.split_inclusive(|&b| b == b'\n') {
            let line = parse_index_line(raw).unwrap();
            let rel = std::str::from_utf8(&line.filename).unwrap();
            let path = base.join(run).join(rel.trim_start_matches('/'));
            let file = read_event_file(&path, File::open(&path).unwrap(), &limits).unwrap();
            let ev = file.parse(&limits).unwrap();
            let row = rows
                .remove(&line.unique_id)
                .unwrap_or_else(|| panic!("{} is not in requests.tsv", line.unique_id));
            out.insert(line.unique_id.clone(), (ev, row));
        }
    }
    out
}

fn truth(stored: &[Stored]) -> Vec<Truth> {
    let corpus = corpus();
    stored
        .iter()
        .map(|e| {
            let id = stored_unique_id(e);
            let (ev, row) = corpus
                .get(&id)
                .unwrap_or_else(|| panic!("shipped event {id} is not in the corpus"));
            let uri = text(&ev.request.uri);
            let intercepted = row["intercepted"] != "-";
            let action = match row["expect_action"].as_str() {
                _ if !intercepted => "none",
                "block" => "deny",
                other => other,
            };
            let message = String::from_utf8_lossy(&e.message).into_owned();
            let status = ev.status();
            Truth {
                sid: e.sid,
                cid: e.cid,
                path: uri.split('?').next().unwrap().to_string(),
                host: ev.request.header("Host").map(text),
                user_agent: ev.request.header("User-Agent").map(text),
                // As the audit log recorded it (the client may have seen none: "000").
                http_status: status.map_or_else(|| "none logged".to_string(), |s| s.to_string()),
                intercepted,
                activity: !intercepted
                    && row["observed_rule_ids"] == "-"
                    && status.is_none_or(|s| s < 400),
                action: action.to_string(),
                client: match ev.client.addr {
                    std::net::IpAddr::V4(a) => a.to_string(),
                    std::net::IpAddr::V6(a) => format!("[{a}]"),
                },
                rule_ids: ev.matches.iter().filter_map(|m| m.id.clone()).collect(),
                sig_id: e.sig_id.clone(),
                message: message.splitn(3, ' ').nth(2).unwrap_or("").to_string(),
                timestamp: e.timestamp.clone(),
            }
        })
        .collect()
}

/// A report element as Sguil hands it to the database.
struct Element {
    name: String,
    description: String,
    kind: String,
    fields: usize,
    sql: String,
}

fn sguil_menu(args: &[&str]) -> Vec<Vec<String>> {
    let out = Command::new("tclsh")
        .arg(sguil_menu_tcl())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sguil_menu.tcl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\x1e')
        .filter(|r| !r.is_empty())
        .map(|r| r.split('\x1f').map(str::to_string).collect())
        .collect()
}

fn reports(start: &str, end: &str, nets: &[&str]) -> Vec<Element> {
    let file = examples().join("sguild.reports");
    let mut args = vec!["reports", file.to_str().unwrap(), start, end];
    args.extend_from_slice(nets);
    sguil_menu(&args)
        .into_iter()
        .map(|f| Element {
            name: f[0].clone(),
            description: f[1].clone(),
            kind: f[2].clone(),
            fields: f[3].parse().expect("number of fields"),
            sql: f[4].clone(),
        })
        .collect()
}

/// Rows of `report` as counted from the truth: key columns → count columns.
type Table = BTreeMap<Vec<String>, Vec<u64>>;

fn count<K: Fn(&Truth) -> Vec<String>>(
    truths: &[Truth],
    key: K,
    extra: &[fn(&Truth) -> bool],
) -> Table {
    let mut t = Table::new();
    for tr in truths {
        let counts = t.entry(key(tr)).or_insert_with(|| vec![0; 1 + extra.len()]);
        counts[0] += 1;
        for (i, f) in extra.iter().enumerate() {
            counts[i + 1] += u64::from(f(tr));
        }
    }
    t
}

fn outcome(t: &Truth) -> String {
    if t.activity {
        "Activity"
    } else if t.intercepted {
        "Intercepted"
    } else if t.http_status.parse::<u16>().is_ok_and(|s| s >= 400) {
        "Error status, not intercepted"
    } else {
        "Detected, not intercepted"
    }
    .to_string()
}

/// Checks a "top N" result against the truth: every row's counts are right, the rows
/// are in falling order of the first count, as many as the limit allows, and nothing
/// left out counts more than the last row shown.
fn check_top(name: &str, rows: &[Vec<String>], counts: usize, want: &Table, limit: usize) {
    assert!(!rows.is_empty(), "{name}: no rows, the corpus has data");
    assert_eq!(
        rows.len(),
        want.len().min(limit),
        "{name}: {rows:?}\nwant {want:?}"
    );
    let mut last = u64::MAX;
    let mut shown = BTreeSet::new();
    for r in rows {
        let got: Vec<u64> = r[..counts]
            .iter()
            .map(|c| c.parse().unwrap_or_else(|_| panic!("{name}: count {c:?}")))
            .collect();
        let key = r[counts..].to_vec();
        assert_eq!(
            want.get(&key),
            Some(&got),
            "{name}: row {r:?}\nwant {want:?}"
        );
        assert!(got[0] <= last, "{name}: not in falling order: {rows:?}");
        last = got[0];
        shown.insert(key);
    }
    for (k, c) in want {
        assert!(
            shown.contains(k) || c[0] <= last,
            "{name}: {k:?} ({c:?}) left out, but counts more than the last row shown"
        );
    }
}

struct Setup {
    _server: TestSguild,
    _dir: tempfile::TempDir,
    db: MariaDb,
    truths: Vec<Truth>,
}

/// Queues the recorded events of `run` (a copy of its storage dir under `work`, the web
/// server's user's) with `modsec-shipper requeue --index`.
fn requeue(conf: &Path, run: &str, work: &Path) {
    let storage = work.join(run);
    copy_tree(&fixtures().join("modsec-2.9").join(run), &storage);
    web_user::give_tree(&storage);
    let index = fixtures().join(format!("modsec-2.9/index-{run}.log"));
    let out = shipper(&[
        "requeue",
        "-c",
        conf.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--storage-dir",
        storage.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "requeue {run}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn setup(test: &str) -> Option<Setup> {
    program_or_skip("tclsh", test)?;
    let db = MariaDb::start(test)?;
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    let conf = config(dir.path(), &queue, &server, "");
    for run in RUNS {
        requeue(&conf, run, dir.path());
    }
    let (code, log) = drain(&conf, &[]);
    assert_eq!(code, 0, "{log}");
    let queue_all = dir.path().join("queue-all");
    let dir_all = dir.path().join("all");
    std::fs::create_dir_all(&queue_all).unwrap();
    std::fs::create_dir_all(&dir_all).unwrap();
    let conf_all = config(&dir_all, &queue_all, &server, "set HANDLE_ALL_EVENTS 1\n");
    requeue(&conf_all, ALL_EVENTS_RUN, dir.path());
    let (code, log) = drain(&conf_all, &[]);
    assert_eq!(code, 0, "{log}");
    let stored = server.events();
    assert!(stored.len() >= 40, "only {} events shipped", stored.len());
    let sid = stored[0].sid;
    assert!(stored.iter().all(|e| e.sid == sid));
    // The same events again from a sensor on another net: reports for NET skip them.
    let other_sid = sid + 1;
    let mut all = stored.clone();
    all.extend(stored.iter().map(|e| Stored {
        sid: other_sid,
        hostname: "otherweb".into(),
        ..e.clone()
    }));
    load_sguildb(
        &db,
        &[
            (sid, "websrv", "modsecurity", NET),
            (other_sid, "otherweb", "modsecurity", OTHER_NET),
        ],
        &all,
    );
    Some(Setup {
        truths: truth(&stored),
        _server: server,
        _dir: dir,
        db,
    })
}

/// The corpus's first and last event time, as sguild stored them.
fn span(truths: &[Truth]) -> (String, String) {
    let mut times: Vec<&str> = truths.iter().map(|t| t.timestamp.as_str()).collect();
    times.sort();
    (times[0].to_string(), times[times.len() - 1].to_string())
}

fn shift(ts: &str, secs: i64) -> String {
    let t = chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S").unwrap();
    (t + chrono::Duration::seconds(secs))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Runs `sql` in sguildb, under sguild's empty sql_mode and again under
/// ONLY_FULL_GROUP_BY (MySQL's default since 5.7): both must give the same rows.
fn run(db: &MariaDb, name: &str, sql: &str) -> Vec<Vec<String>> {
    let rows = db
        .query(&format!("USE sguildb; {sql}"))
        .unwrap_or_else(|e| panic!("{name}: SQL error: {e}"));
    let strict = db
        .query(&format!(
            "USE sguildb; SET SESSION sql_mode = 'ONLY_FULL_GROUP_BY,STRICT_ALL_TABLES'; {sql}"
        ))
        .unwrap_or_else(|e| panic!("{name}: SQL error under ONLY_FULL_GROUP_BY: {e}"));
    let sorted = |mut r: Vec<Vec<String>>| {
        r.sort();
        r
    };
    assert!(
        sorted(rows.clone()) == sorted(strict),
        "{name}: other rows under ONLY_FULL_GROUP_BY"
    );
    rows
}

#[test]
fn every_report_element_counts_the_corpus_as_the_event_files_say() {
    let Some(s) = setup("every_report_element_counts_the_corpus_as_the_event_files_say") else {
        return;
    };
    check_every_report(&s.db, &s.truths, NET);
}

/// Runs every report element for `net` over the span of `all` and checks each row.
fn check_every_report(db: &MariaDb, all: &[Truth], net: &str) {
    // Activity (HANDLE_ALL_EVENTS) counts only in MODSEC_OUTCOME; the rest count alerts.
    let alerts: Vec<Truth> = all.iter().filter(|t| !t.activity).cloned().collect();
    let t = &alerts;
    assert!(alerts.len() < all.len(), "the corpus has activity");
    let (first, last) = span(all);
    let (start, end) = (shift(&first, -1), shift(&last, 1));
    let elements = reports(&start, &end, &[net]);
    let names: Vec<&str> = elements.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "MODSEC_URIS",
            "MODSEC_RULES",
            "MODSEC_RULE_CLIENTS",
            "MODSEC_OUTCOME",
            "MODSEC_USER_AGENTS",
            "MODSEC_HOSTS",
            "MODSEC_HOURLY"
        ]
    );
    let descriptions: BTreeSet<&str> = elements.iter().map(|e| e.description.as_str()).collect();
    assert_eq!(
        descriptions.len(),
        elements.len(),
        "the client tells elements apart by description"
    );
    let intercepted: fn(&Truth) -> bool = |t| t.intercepted;
    for e in &elements {
        assert_eq!(e.kind, "query", "{}", e.name);
        assert!(!e.sql.starts_with("REFUSED"), "{}: {}", e.name, e.sql);
        assert!(!e.sql.contains("%%"), "{}: a macro left: {}", e.name, e.sql);
        let rows = run(db, &e.name, &e.sql);
        eprintln!("{} ({} rows):", e.description, rows.len());
        for r in &rows {
            assert_eq!(
                r.len(),
                e.fields,
                "{}: {r:?} has not {} fields",
                e.name,
                e.fields
            );
            eprintln!("  {}", r.join(" | "));
        }
        match e.name.as_str() {
            "MODSEC_URIS" => {
                let want = count(t, |t| vec![t.path.clone()], &[intercepted]);
                check_top(&e.name, &rows, 2, &want, 20);
            }
            "MODSEC_RULES" => {
                let mut want = Table::new();
                let mut message: BTreeMap<&str, &str> = BTreeMap::new();
                for tr in t {
                    *want
                        .entry(vec![tr.sig_id.clone()])
                        .or_insert(vec![0])
                        .get_mut(0)
                        .unwrap() += 1;
                    let m = message.entry(&tr.sig_id).or_insert(&tr.message);
                    *m = (*m).min(tr.message.as_str());
                }
                let keyed: Vec<Vec<String>> = rows.iter().map(|r| r[..2].to_vec()).collect();
                check_top(&e.name, &keyed, 1, &want, 20);
                for r in &rows {
                    assert_eq!(
                        r[2],
                        message[r[1].as_str()],
                        "{}: message of {}",
                        e.name,
                        r[1]
                    );
                }
            }
            "MODSEC_RULE_CLIENTS" => {
                let want = count(t, |t| vec![t.sig_id.clone(), t.client.clone()], &[]);
                check_top(&e.name, &rows, 1, &want, 50);
                assert!(
                    rows.iter().any(|r| r[2] == "[::1]"),
                    "{}: the IPv6 clients are counted: {rows:?}",
                    e.name
                );
            }
            "MODSEC_OUTCOME" => {
                let want = count(
                    all,
                    |t| vec![outcome(t), t.action.clone(), t.http_status.clone()],
                    &[],
                );
                check_top(&e.name, &rows, 1, &want, usize::MAX);
                let of = |what: &str| -> u64 {
                    rows.iter()
                        .filter(|r| r[1] == what)
                        .map(|r| r[0].parse::<u64>().unwrap())
                        .sum()
                };
                let blocked = of("Intercepted");
                assert_eq!(blocked, all.iter().filter(|t| t.intercepted).count() as u64);
                assert!(
                    blocked > 0 && (blocked as usize) < t.len(),
                    "both kinds in the corpus"
                );
                assert_eq!(of("Activity"), (all.len() - alerts.len()) as u64);
            }
            "MODSEC_USER_AGENTS" => {
                let want = count(
                    t,
                    |t| vec![t.user_agent.clone().unwrap_or("(no User-Agent)".into())],
                    &[],
                );
                check_top(&e.name, &rows, 1, &want, 20);
            }
            "MODSEC_HOSTS" => {
                let want = count(
                    t,
                    |t| vec![t.host.clone().unwrap_or("(no Host header)".into())],
                    &[],
                );
                check_top(&e.name, &rows, 1, &want, 20);
                assert!(rows.iter().any(|r| r[1] == "(no Host header)"), "{rows:?}");
            }
            "MODSEC_HOURLY" => {
                let want = count(
                    t,
                    |t| vec![format!("{}:00", &t.timestamp[..13])],
                    &[intercepted],
                );
                let got: Table = rows
                    .iter()
                    .map(|r| {
                        (
                            vec![r[2].clone()],
                            vec![r[0].parse().unwrap(), r[1].parse().unwrap()],
                        )
                    })
                    .collect();
                assert_eq!(got, want, "{}", e.name);
                let hours: Vec<&String> = rows.iter().map(|r| &r[2]).collect();
                assert!(
                    hours.windows(2).all(|w| w[0] < w[1]),
                    "in time order: {hours:?}"
                );
            }
            other => panic!("no check for report element {other}"),
        }
    }
}

#[test]
fn reports_keep_to_the_chosen_nets_and_times() {
    let Some(s) = setup("reports_keep_to_the_chosen_nets_and_times") else {
        return;
    };
    let (first, last) = span(&s.truths);
    let total = |start: &str, end: &str, nets: &[&str]| -> u64 {
        let e = reports(start, end, nets)
            .into_iter()
            .find(|e| e.name == "MODSEC_HOURLY")
            .unwrap();
        run(&s.db, &e.name, &e.sql)
            .iter()
            .map(|r| r[0].parse::<u64>().unwrap())
            .sum()
    };
    let n = s.truths.iter().filter(|t| !t.activity).count() as u64;
    let (start, end) = (shift(&first, -1), shift(&last, 1));
    assert_eq!(total(&start, &end, &[NET]), n);
    assert_eq!(total(&start, &end, &[NET, OTHER_NET]), 2 * n);
    assert_eq!(total(&start, &end, &["nosuchnet"]), 0);
    // sguild's bounds are strict: a window ending at the first event counts nothing.
    assert_eq!(total(&shift(&first, -3600), &first, &[NET]), 0);
    let before_last = s
        .truths
        .iter()
        .filter(|t| !t.activity && t.timestamp < last)
        .count() as u64;
    assert_eq!(total(&start, &last, &[NET]), before_last);
}

#[test]
fn every_global_query_finds_the_events_the_corpus_says() {
    let Some(s) = setup("every_global_query_finds_the_events_the_corpus_says") else {
        return;
    };
    let t = &s.truths;
    let file = examples().join("sguild.queries");
    let limit = SELECT_LIMIT.to_string();
    let queries = sguil_menu(&["queries", file.to_str().unwrap(), &limit]);
    // "Now" for the time-bound queries: 30 minutes after the last event.
    let (_, last) = span(t);
    let now = shift(&last, 1800);
    let hour_ago = shift(&now, -3600);
    type Want = Box<dyn Fn(&Truth) -> bool>;
    let expected: Vec<(&str, Want)> = vec![
        ("ModSec intercepted, last day", Box::new(|t| t.intercepted)),
        (
            "ModSec detection only, last day",
            Box::new(|t| !t.intercepted && !t.activity),
        ),
        (
            "ModSec last hour",
            Box::new(move |t| t.timestamp > hour_ago),
        ),
        (
            "ModSec by URI path",
            Box::new(|t| t.path.starts_with("/wp-login.php")),
        ),
        (
            "ModSec by rule",
            Box::new(|t| t.rule_ids.contains("942100")),
        ),
        (
            "ModSec by client address",
            Box::new(|t| t.client == "127.0.0.1"),
        ),
        (
            "ModSec by User-Agent",
            Box::new(|t| t.user_agent.as_deref().is_some_and(|u| u.contains("Nikto"))),
        ),
        (
            "ModSec by Host",
            Box::new(|t| t.host.as_deref() == Some("lab.example")),
        ),
        (
            "ModSec by HTTP status",
            Box::new(|t| t.http_status == "403"),
        ),
    ];
    let names: Vec<&str> = queries.iter().map(|q| q[0].as_str()).collect();
    let want_names: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, want_names);
    let sid = t[0].sid;
    for (q, (name, want)) in queries.iter().zip(&expected) {
        assert_eq!(q[2], "event", "{name}");
        let sql = &q[3];
        assert!(!sql.starts_with("REFUSED"), "{name}: {sql}");
        let rows = run(
            &s.db,
            name,
            &format!("SET timestamp = UNIX_TIMESTAMP('{now}'); {sql}"),
        );
        // Only this sensor's copies are compared (the other net holds the same events).
        let got: BTreeSet<(u32, u32)> = rows
            .iter()
            .map(|r| (r[4].parse().unwrap(), r[5].parse().unwrap()))
            .filter(|(s, _)| *s == sid)
            .collect();
        let want: BTreeSet<(u32, u32)> = t
            .iter()
            .filter(|tr| want(tr))
            .map(|tr| (tr.sid, tr.cid))
            .collect();
        assert!(!want.is_empty(), "{name}: the corpus has such events");
        assert_eq!(got, want, "{name}");
        assert!(
            rows.iter().all(|r| r.len() == 15),
            "{name}: the client's 15 columns"
        );
    }
}

/// The quoted SQL strings of a report or query file that hold detail markup.
fn markup_literals(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        for (i, lit) in line.split('\'').enumerate() {
            if i % 2 == 1 && ["<b>", "<h3>", "<li>"].iter().any(|m| lit.contains(m)) {
                out.push(lit.trim_matches('%').to_string());
            }
        }
    }
    out
}

/// Runs without a database: the markers the reports read are the documented ones, and
/// the detail of every recorded event holds them as the reports expect.
#[test]
fn the_reports_read_only_documented_markers_and_every_detail_has_them() {
    use modsec2sguil::alert::html::{headline, REPORT_MARKERS};
    use modsec2sguil::alert::{map_event, AlertSettings, Decision};
    let kinds = [
        Decision::Intercepted,
        Decision::ErrorStatus,
        Decision::RuleMatched,
        Decision::Activity,
    ];
    let mut used = BTreeSet::new();
    for file in ["sguild.reports", "sguild.queries"] {
        let text = std::fs::read_to_string(examples().join(file)).unwrap();
        for lit in markup_literals(&text) {
            // A marker, or the start of a headline ('<h3>' starts every detail).
            let documented = REPORT_MARKERS
                .iter()
                .copied()
                .find(|m| lit.starts_with(m))
                .or_else(|| {
                    kinds
                        .map(headline)
                        .into_iter()
                        .find(|h| h.starts_with(&lit))
                });
            assert!(
                documented.is_some(),
                "{file} reads `{lit}`, which is not in alert::html::REPORT_MARKERS or a headline"
            );
            used.insert(documented.unwrap());
        }
    }
    assert!(used.len() >= 8, "{used:?}");

    let settings = AlertSettings {
        handle_all_events: true,
        ..AlertSettings::default()
    };
    let mut seen = BTreeSet::new();
    for (_, (ev, _)) in corpus() {
        let mapped = map_event(&ev, b"(the raw event)", &[], &settings);
        let detail = String::from_utf8(mapped.fields.detail).unwrap();
        assert!(
            detail.starts_with(headline(mapped.decision)),
            "{}: {detail:.200}",
            ev.unique_id
        );
        seen.insert(headline(mapped.decision));
        for m in REPORT_MARKERS.iter().filter(|m| m.starts_with("<b>")) {
            let n = detail.matches(m).count();
            assert!(n <= 1, "{}: `{m}` {n} times", ev.unique_id);
            if n == 1 {
                seen.insert(m);
                let value = &detail[detail.find(m).unwrap() + m.len()..];
                let end = value.find("<br>").expect("a value ends at <br>");
                assert!(
                    !value[..end].contains('<'),
                    "{}: `{m}` {}",
                    ev.unique_id,
                    &value[..end]
                );
            }
        }
        for id in ev.matches.iter().filter_map(|m| m.id.as_deref()) {
            assert!(
                detail.contains(&format!("<li><b>{id}</b>")),
                "{}: rule {id}",
                ev.unique_id
            );
        }
    }
    for m in REPORT_MARKERS.iter().filter(|m| m.starts_with("<b>")) {
        assert!(seen.contains(m), "no recorded event's detail has `{m}`");
    }
    for d in &kinds[..3] {
        assert!(seen.contains(headline(*d)), "no recorded event is {d:?}");
    }
}

/// Against the real sguild 1.0.0 and its MariaDB, started for this test on loopback
/// from `SGUIL_SRC` (`tests/support/real_sguild.rs`; skipped through `skip_or_fail`
/// without it): the corpus is shipped to it under a sensor and net of this run's own,
/// read back from its database, and every report element checked against the corpus
/// there.
#[test]
fn against_a_live_sguild_every_report_counts_what_it_stored() {
    use modsec2sguil_e2e::real_sguild::RealSguild;
    if program_or_skip("tclsh", "against_a_live_sguild").is_none() {
        return;
    }
    let Some(sguild) = RealSguild::start("against_a_live_sguild") else {
        return;
    };
    let (host, port, ca) = ("127.0.0.1", sguild.port, sguild.cert.display());
    let db = sguild.db();
    let tag = format!("m2srep{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let write_conf = |name: &str, extra: &str| -> PathBuf {
        let queue = dir.path().join(format!("queue-{name}"));
        std::fs::create_dir_all(&queue).unwrap();
        // Each queue's collector state of its own: its record of what it queued.
        let work = dir.path().join(format!("work-{name}"));
        std::fs::create_dir_all(&work).unwrap();
        let conf = dir.path().join(format!("{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "set EVENT_DIR {}\nset SERVER_HOST {host}\nset SERVER_PORT {port}\n\
                 set HOSTNAME {tag}\nset NET_GROUP {tag}\nset TLS_CA_FILE {ca}\n{extra}{}",
                queue.display(),
                state::setting(&work)
            ),
        )
        .unwrap();
        conf
    };
    let conf = write_conf("alerts", "");
    for run in RUNS {
        requeue(&conf, run, dir.path());
    }
    let conf_all = write_conf("all", "set HANDLE_ALL_EVENTS 1\n");
    requeue(&conf_all, ALL_EVENTS_RUN, dir.path());
    for c in [&conf, &conf_all] {
        let (code, log) = drain(c, &[]);
        assert_eq!(code, 0, "{log}");
    }
    let rows = db.exec(&format!(
        "USE sguildb; SELECT event.sid, event.cid, event.timestamp, HEX(event.signature), \
         event.signature_id, data.data_payload FROM event, sensor, data \
         WHERE event.sid = sensor.sid AND sensor.net_name = '{tag}' \
         AND data.sid = event.sid AND data.cid = event.cid"
    ));
    let stored: Vec<Stored> = rows
        .iter()
        .map(|r| Stored {
            sid: r[0].parse().unwrap(),
            cid: r[1].parse().unwrap(),
            day: String::new(),
            timestamp: r[2].clone(),
            message: modsec2sguil::hex::decode(r[3].as_bytes()).unwrap(),
            src_ip: String::new(),
            dst_ip: String::new(),
            src_port: 0,
            dst_port: 0,
            sig_id: r[4].clone(),
            detail_hex: r[5].clone(),
            stored_at: 0.0,
            status: 0,
            priority: 0,
            class: String::new(),
            hostname: tag.clone(),
            generator: 10001,
            revision: 0,
        })
        .collect();
    assert!(stored.len() >= 40, "sguild stored {} events", stored.len());
    eprintln!(
        "sguil_reports live: sguild stored {} events under net {tag}",
        stored.len()
    );
    check_every_report(&db, &truth(&stored), &tag);
}
