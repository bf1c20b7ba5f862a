//! Parse throughput over the real corpus in `tests/fixtures/` (`cargo bench -p modsec2sguil`).
//!
//! Prints MB/s and events/s for native and JSON event files, lines/s for index lines,
//! and the mapping of a parsed event to its Sguil fields with the HTML detail next to the
//! text one (µs per event; the 1 MB event is the largest detail either makes).
//! Each figure is the best of several timed rounds of at least half a second.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use modsec2sguil::alert::{map_event, AlertSettings, DetailFormat};
use modsec2sguil::auditlog::{parse_event, ParseLimits};
use modsec2sguil::index::parse_index_line;

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = entry.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn load(dirs: &[&str]) -> Vec<Vec<u8>> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut paths = Vec::new();
    for d in dirs {
        files_under(&base.join(d), &mut paths);
    }
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Runs `f` over `items` repeatedly; returns the best (items/s, bytes/s).
fn measure(items: &[Vec<u8>], mut f: impl FnMut(&[u8])) -> (f64, f64) {
    let bytes: usize = items.iter().map(Vec::len).sum();
    let mut best = Duration::MAX;
    let mut rounds_per_sample = 1;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..rounds_per_sample {
            for item in items {
                f(item);
            }
        }
        let per_round = start.elapsed() / rounds_per_sample;
        best = best.min(per_round);
        if start.elapsed() < Duration::from_millis(500) {
            rounds_per_sample *= 2;
        }
    }
    let secs = best.as_secs_f64();
    (items.len() as f64 / secs, bytes as f64 / secs)
}

/// µs per event to map every corpus event, in each detail format.
fn mapping(limits: &ParseLimits) {
    let raws = load(&["modsec-2.9/native", "modsec-2.9/json", "modsec-3/native"]);
    let events: Vec<_> = raws
        .iter()
        .map(|r| parse_event(r, limits).expect("corpus event parses"))
        .collect();
    let index: Vec<Vec<u8>> = (0..events.len())
        .map(|i| i.to_le_bytes().to_vec())
        .collect();
    for format in [DetailFormat::Text, DetailFormat::Html] {
        for raw_max in [16 * 1024, 32_767] {
            let s = AlertSettings {
                detail_format: format,
                detail_raw_bytes: raw_max,
                ..AlertSettings::default()
            };
            let mut bytes = 0usize;
            let (eps, _) = measure(&index, |i| {
                let i = usize::from_le_bytes(i.try_into().unwrap());
                let m = map_event(&events[i], &raws[i], &[], &s);
                bytes += m.fields.detail.len();
                std::hint::black_box(m);
            });
            println!(
                "map {:<5} DETAIL_RAW_BYTES {raw_max:>5}: {:>6.1} µs/event {:>9.0} events/s",
                format!("{format:?}"),
                1e6 / eps,
                eps
            );
        }
    }
}

fn main() {
    let limits = ParseLimits::default();
    mapping(&limits);
    for (name, dirs) in [
        (
            "native 2.9",
            &["modsec-2.9/native", "modsec-2.9/native-on"][..],
        ),
        ("JSON 2.9", &["modsec-2.9/json", "modsec-2.9/json-on"][..]),
        ("native 3", &["modsec-3/native"][..]),
        ("JSON 3", &["modsec-3/json"][..]),
    ] {
        let events = load(dirs);
        let total: usize = events.iter().map(Vec::len).sum();
        let (eps, bps) = measure(&events, |e| {
            std::hint::black_box(parse_event(e, &limits).expect("corpus event parses"));
        });
        println!(
            "{name:<11} {:>4} events {:>8} KB: {:>8.1} MB/s {:>9.0} events/s",
            events.len(),
            total / 1024,
            bps / 1e6,
            eps
        );
    }
    let mut lines = Vec::new();
    for f in [
        "modsec-2.9/index-native.log",
        "modsec-2.9/index-native-on.log",
        "modsec-3/index-native.log",
    ] {
        let data = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures")
                .join(f),
        )
        .unwrap();
        lines.extend(data.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec));
    }
    let (lps, bps) = measure(&lines, |l| {
        std::hint::black_box(parse_index_line(l).expect("corpus line parses"));
    });
    println!(
        "index lines {:>4} lines: {:>8.1} MB/s {:>9.0} lines/s",
        lines.len(),
        bps / 1e6,
        lps
    );
}
