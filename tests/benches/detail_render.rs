//! How long Sguil's analyst console takes to render a detail
//! (`cargo bench -p modsec2sguil-e2e --bench detail_render`): the detail widget
//! (iwidgets `scrolledhtml` with sguil.tk's options, under Xvfb) renders a corpus event,
//! the largest corpus detail, and the most expensive detail an attacker can make (a raw
//! event of `&lt;`, each needing a tag that makes the widget rescan the rest), ROUNDS
//! times each (default 5); prints the median and the slowest, in milliseconds.

use modsec2sguil::alert::{map_event, AlertSettings};
use modsec2sguil::auditlog::{parse_event, read_event_file, ParseLimits};
use modsec2sguil::sguil::wire::MAX_DETAIL_BYTES;
use modsec2sguil_e2e::fixtures;
use modsec2sguil_e2e::renderer::{render, wish_or_skip, Xvfb};

fn main() {
    let Some(wish) = wish_or_skip("detail_render bench") else {
        return;
    };
    let Some(xvfb) = Xvfb::start("detail_render bench") else {
        return;
    };
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let full = AlertSettings {
        detail_raw_bytes: MAX_DETAIL_BYTES,
        ..AlertSettings::default()
    };
    let limits = ParseLimits::default();
    let dir = fixtures().join("modsec-2.9/native/www-data/20261128/20261128-0214");
    let corpus = |name: &str| {
        let path = dir.join(name);
        let raw = read_event_file(&path, std::fs::File::open(&path).unwrap(), &limits).unwrap();
        let ev = raw.parse(&limits).unwrap();
        map_event(&ev, &raw.bytes, &[], &full).fields.detail
    };
    let hostile = {
        let mut raw = b"--h-A--\n[28/Nov/2026:02:14:31.052041 +0000] H 192.0.2.7 1 192.0.2.8 80\n--h-B--\nPOST / HTTP/1.1\n\n--h-C--\n".to_vec();
        raw.extend("&lt;".repeat(9000).as_bytes());
        raw.extend_from_slice(b"\n--h-Z--\n");
        let ev = parse_event(&raw, &limits).unwrap();
        map_event(&ev, &raw, &[], &full).fields.detail
    };
    let cases = [
        (
            "typical",
            corpus("20261128-021431-awo5B9rt9m7QJiOqXPD3mQAAAEE"),
        ),
        (
            "largest",
            corpus("20261128-021431-awo5B9rt9m7QJiOqXPD3qgAAAEE"),
        ),
        ("hostile", hostile),
    ];
    let mut details = Vec::new();
    for (name, detail) in &cases {
        for r in 0..rounds {
            details.push((format!("{name}-{r}"), detail.clone()));
        }
    }
    let rendered = render(&wish, &xvfb, &details, None);
    for (name, detail) in &cases {
        let mut ms: Vec<f64> = rendered
            .iter()
            .filter(|r| r.name.starts_with(&format!("{name}-")))
            .map(|r| r.millis)
            .collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "{name:<8} detail {:>6} bytes: median {:>7.1} ms, slowest {:>7.1} ms ({} renders)",
            detail.len(),
            ms[ms.len() / 2],
            ms[ms.len() - 1],
            ms.len()
        );
    }
}
