//! Every event of the corpus fixtures maps to the Sguil fields recorded in
//! `tests/golden/<run>.json` (reviewed by hand once; see tests/golden/README.md).
//! Regenerate after a deliberate mapping change with
//! `UPDATE_GOLDEN=1 cargo test -p modsec2sguil-e2e --test mapping`, then review the diff.

use std::collections::BTreeMap;
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
