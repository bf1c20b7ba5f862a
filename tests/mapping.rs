//! Every event of the corpus fixtures maps to the Sguil fields recorded in
//! `tests/golden/<run>.json` (reviewed by hand once; see tests/golden/README.md).
//! Regenerate after a deliberate mapping change with
//! `UPDATE_GOLDEN=1 cargo test -p modsec2sguil-e2e --test mapping`, then review the diff.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;

use modsec2sguil::alert::{map_event, AlertSettings, Decision, DetailFormat};
use modsec2sguil::auditlog::{read_event_file, ParseLimits};
use modsec2sguil_e2e::{files_below, fixtures, CORPUS_RUNS};
use serde_json::{json, Value};

/// What Sguil would get for one event file (the text detail's summary, not the raw copy;
/// the HTML detail of the same events is checked in the real renderer by analyst_view.rs).
fn mapped(path: &Path) -> Value {
    let limits = ParseLimits::default();
    let raw = read_event_file(path, File::open(path).unwrap(), &limits).unwrap();
    let ev = raw.parse(&limits).unwrap();
    let text = AlertSettings {
        detail_format: DetailFormat::Text,
        ..AlertSettings::default()
    };
    let m = map_event(&ev, &raw.bytes, &[], &text);
    let f = &m.fields;
    let detail = String::from_utf8_lossy(&f.detail);
    let summary = detail.split("\n--- raw event ---\n").next().unwrap_or("");
    json!({
        "unique_id": ev.unique_id,
        "decision": format!("{:?}", m.decision),
        "ships": m.decision != Decision::Skip,
        "priority": f.priority,
        "class": f.class,
        "time": f.time.format("%Y-%m-%d %H:%M:%S").to_string(),
        "message": String::from_utf8_lossy(&f.message),
        "src": format!("{}:{}", f.src_ip.map_or("".into(), |a| a.to_string()), f.src_port),
        "dst": format!("{}:{}", f.dst_ip.map_or("".into(), |a| a.to_string()), f.dst_port),
        "ipv6": m.ipv6,
        "sig_id": f.sig_id,
        "revision": f.revision,
        "generator": f.generator,
        "summary": summary.lines().collect::<Vec<_>>(),
    })
}

#[test]
fn every_corpus_event_maps_to_its_golden_sguil_fields() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| !v.is_empty() && v != "0");
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
    let mut failures = Vec::new();
    let mut total = 0;
    for run in CORPUS_RUNS {
        let root = fixtures().join(run);
        let files = files_below(&root);
        let got: BTreeMap<String, Value> = files
            .iter()
            .map(|p| {
                let rel = p.strip_prefix(&root).unwrap().display().to_string();
                (rel, mapped(p))
            })
            .collect();
        total += got.len();
        let golden = golden_dir.join(format!("{}.json", run.replace('/', "_")));
        if update {
            std::fs::create_dir_all(&golden_dir).unwrap();
            let text = serde_json::to_string_pretty(&got).unwrap();
            std::fs::write(&golden, text + "\n").unwrap();
            continue;
        }
        let want: BTreeMap<String, Value> =
            serde_json::from_str(&std::fs::read_to_string(&golden).unwrap_or_else(|e| {
                panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", golden.display())
            }))
            .unwrap();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{run}: the set of event files changed"
        );
        for (k, v) in &got {
            if want.get(k) != Some(v) {
                failures.push(format!(
                    "{run}/{k}:\n  want {}\n  got  {}",
                    want.get(k).map_or("-".into(), Value::to_string),
                    v
                ));
            }
        }
    }
    assert!(total > 200, "only {total} events found");
    assert!(
        failures.is_empty(),
        "{} of {total} events map differently from tests/golden:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A rule as its rule file declares it: what the mapping is checked against below.
#[derive(Debug, Default)]
struct Rule {
    msg: Option<String>,
    severity: Option<String>,
    tags: Vec<String>,
    disruptive: bool,
}

/// The rules of a ModSecurity rule file, by id: each `SecRule`/`SecAction` statement
/// (continuation lines joined) with an `id:` action. Chained rules carry the first's id.
fn rules_in(text: &str, into: &mut HashMap<String, Rule>) {
    let joined = text.replace("\\\n", " ");
    for st in joined.lines().map(str::trim_start) {
        if !(st.starts_with("SecRule") || st.starts_with("SecAction")) {
            continue;
        }
        let quoted = |key: &str| -> Vec<String> {
            let mut out = Vec::new();
            let mut rest = st;
            while let Some(i) = rest.find(key) {
                let after = &rest[i + key.len()..];
                let v = if let Some(q) = after.strip_prefix('\'') {
                    q.split('\'').next().unwrap_or("")
                } else {
                    after.split([',', '"']).next().unwrap_or("")
                };
                out.push(v.to_string());
                rest = after;
            }
            out
        };
        let Some(id) = quoted("id:").into_iter().next() else {
            continue;
        };
        // An action list is after the last `"` pair's opening; a rule's operator may
        // say "deny" too, so only `,deny` / `"deny` count.
        let disruptive = ["deny", "drop", "redirect:"]
            .iter()
            .any(|a| st.contains(&format!(",{a}")) || st.contains(&format!("\"{a}")));
        into.insert(
            id,
            Rule {
                msg: quoted("msg:").into_iter().next(),
                severity: quoted("severity:").into_iter().next(),
                tags: quoted("tag:"),
                disruptive,
            },
        );
    }
}

/// Sguil's priority for a ModSecurity severity (modsec2sguil 0.8's ConvertSEVERITYtoPRIO,
/// as ARCHITECTURE.md documents it), and the order of severities (most severe first).
const SEVERITIES: [(&str, u64); 8] = [
    ("EMERGENCY", 1),
    ("ALERT", 1),
    ("CRITICAL", 2),
    ("ERROR", 2),
    ("WARNING", 3),
    ("NOTICE", 3),
    ("INFO", 4),
    ("DEBUG", 4),
];

/// The golden files were written by the code under test; this checks the mapping of the
/// native run's logged events independently: what each must map to is worked out from
/// `requests.tsv` (status, addresses, rules raised, whether intercepted), the index line
/// (time, request line) and the rule files (custom-rules.conf and the CRS 3.3.4 the
/// corpus was captured with: msg, severity, tags), by the rules ARCHITECTURE.md states
/// (message `MSc <status> <msg>`, the rule named is the intercepting one unless it
/// only evaluates scores, else the most severe; class its `attack-*` tag if Sguil can
/// store it; IPv6 addresses are sent empty).
#[test]
fn the_native_corpus_maps_as_requests_tsv_and_the_rule_files_say() {
    const TEST: &str = "the_native_corpus_maps_as_requests_tsv_and_the_rule_files_say";
    const CRS: &str = "/usr/share/modsecurity-crs/rules";
    let base = fixtures().join("modsec-2.9");
    let mut rules = HashMap::new();
    rules_in(
        &std::fs::read_to_string(base.join("custom-rules.conf")).unwrap(),
        &mut rules,
    );
    let custom_only = !Path::new(CRS).is_dir();
    if custom_only {
        modsec2sguil_e2e::skip_or_fail(
            TEST,
            &format!("{CRS} (modsecurity-crs 3.3.4) is not installed: checking the custom rules' events only"),
        );
    } else {
        for f in std::fs::read_dir(CRS).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "conf") {
                rules_in(&std::fs::read_to_string(&p).unwrap(), &mut rules);
            }
        }
    }
    let anomaly = |id: &str| {
        modsec2sguil::alert::DEFAULT_ANOMALY_RULES.contains(&id)
            || rules
                .get(id)
                .is_some_and(|r| r.tags.iter().any(|t| t == "anomaly-evaluation"))
    };
    let rank = |id: &str| {
        let sev = rules.get(id).and_then(|r| r.severity.as_deref());
        SEVERITIES
            .iter()
            .position(|(s, _)| Some(*s) == sev)
            .unwrap_or(SEVERITIES.len())
    };
    let index = std::fs::read_to_string(base.join("index-native.log")).unwrap();
    let tsv = std::fs::read_to_string(base.join("requests.tsv")).unwrap();
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut checked = 0;
    for row in lines.map(|l| l.split('\t').collect::<Vec<_>>()) {
        let label = row[col("label")];
        // json-invalid and large-body-413 are named after ModSecurity's own messages
        // (no rule), which requests.tsv does not record; in uri-long-quote-a/b, 932150
        // is named by an execution error (PCRE limits), not a match, and requests.tsv
        // lists every id an event names.
        if row[col("run")] != "native"
            || row[col("logged")] != "Y"
            || [
                "json-invalid",
                "large-body-413",
                "uri-long-quote-a",
                "uri-long-quote-b",
            ]
            .contains(&label)
        {
            continue;
        }
        let ids: Vec<&str> = row[col("observed_rule_ids")]
            .split(',')
            .filter(|s| *s != "-")
            .collect();
        if custom_only && ids.iter().any(|id| !id.starts_with("1000")) {
            continue;
        }
        let status: u16 = row[col("index_status")].parse().unwrap();
        let intercepted = row[col("intercepted")] != "-";
        let decision = if intercepted {
            "Intercepted"
        } else if status >= 400 {
            "ErrorStatus"
        } else {
            assert!(!ids.is_empty(), "{label}: logged for no reason");
            "RuleMatched"
        };
        let contributing = ids.iter().filter(|id| !anomaly(id));
        let most_severe = contributing.min_by_key(|id| rank(id)).copied();
        let disruptive = ids
            .iter()
            .find(|id| rules.get(**id).is_some_and(|r| r.disruptive))
            .copied();
        let primary = match disruptive {
            Some(d) if intercepted && !anomaly(d) => Some(d),
            Some(d) if intercepted => most_severe.or(Some(d)),
            _ => most_severe,
        };
        let uid = row[col("unique_id")];
        let line = index
            .lines()
            .find(|l| l.contains(&format!(" {uid} ")))
            .unwrap_or_else(|| panic!("{label}: {uid} has no index line"));
        let parsed = modsec2sguil::index::parse_index_line(line.as_bytes()).unwrap();
        let what = match primary {
            Some(id) => rules[id].msg.clone().expect("the rule has a msg"),
            None => {
                let request = String::from_utf8_lossy(&parsed.request_line).into_owned();
                let mut parts = request.split(' ');
                format!("{} {}", parts.next().unwrap(), parts.next().unwrap())
            }
        };
        let rule = primary.map(|id| &rules[id]);
        let priority = rule
            .and_then(|r| r.severity.as_deref())
            .and_then(|s| SEVERITIES.iter().find(|(n, _)| *n == s))
            .map_or(4, |(_, p)| *p);
        let class = rule
            .and_then(|r| {
                r.tags.iter().find(|t| {
                    t.starts_with("attack-")
                        && t.len() <= 20
                        && t.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                })
            })
            .map_or("web-attack".to_string(), String::clone);
        let ip = if row[col("addr")] == "v4" {
            "127.0.0.1"
        } else {
            ""
        };
        let want = json!({
            "unique_id": uid,
            "decision": decision,
            "ships": true,
            "priority": priority,
            "class": class,
            "time": parsed.time.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S").to_string(),
            "message": format!("MSc {status} {what}"),
            "src_ip": ip,
            "dst_ip": ip,
            "ipv6": ip.is_empty(),
            "sig_id": primary.map_or(0, |id| id.parse::<u64>().unwrap()),
            "generator": 10001,
        });
        let got = mapped(&base.join(row[col("event_file")]));
        let mut got_fields = json!({});
        for k in want.as_object().unwrap().keys() {
            let v = match k.as_str() {
                "src_ip" => json!(got["src"].as_str().unwrap().rsplit_once(':').unwrap().0),
                "dst_ip" => json!(got["dst"].as_str().unwrap().rsplit_once(':').unwrap().0),
                _ => got[k].clone(),
            };
            got_fields[k] = v;
        }
        assert_eq!(got_fields, want, "{label}");
        checked += 1;
    }
    if custom_only {
        assert!(checked >= 8, "only {checked} events checked");
    } else {
        // Every logged event (one index line each) but the four left out above.
        assert_eq!(checked, index.lines().count() - 4);
    }
}
