//! The exposition read back line by line, as Prometheus' text parser reads it.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::queue::last_run::LastRun;
use crate::queue::latency::{Histogram, LatencyRecord};

/// One sample: its name, labels (unescaped) and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses an exposition, failing (with the line) on anything the format does not allow:
/// a sample before its family's TYPE, a family declared twice, a bad name, an unescaped
/// or unknown escape in a label value, a value that is not a float, a missing newline.
fn parse(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
    assert!(text.ends_with('\n'), "the last line ends in a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let (kw, rest) = rest.split_once(' ').expect(&at);
            let (name, what) = rest.split_once(' ').expect(&at);
            assert!(valid_name(name) && name.starts_with(PREFIX), "{at}");
            let seen = match kw {
                "HELP" => helps.insert(name.into(), what.into()),
                "TYPE" => {
                    assert!(["counter", "gauge", "histogram"].contains(&what), "{at}");
                    assert!(helps.contains_key(name), "HELP before TYPE: {at}");
                    types.insert(name.into(), what.into())
                }
                _ => panic!("{at}"),
            };
            assert!(seen.is_none(), "declared twice: {at}");
            continue;
        }
        let (name, rest) = line.split_once('{').expect(&at);
        assert!(valid_name(name), "{at}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {at}");
        // Labels: key="value" pairs, values with \\, \" and \n escapes only.
        let mut labels = BTreeMap::new();
        let mut chars = rest.chars().peekable();
        loop {
            let key: String = std::iter::from_fn(|| chars.next_if(|&c| c != '=')).collect();
            assert!(valid_name(&key), "label name {key:?}: {at}");
            assert_eq!(chars.next(), Some('='), "{at}");
            assert_eq!(chars.next(), Some('"'), "{at}");
            let mut value = String::new();
            loop {
                match chars.next().expect(&at) {
                    '"' => break,
                    '\\' => match chars.next().expect(&at) {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => panic!("unknown escape \\{c}: {at}"),
                    },
                    '\n' => panic!("raw newline: {at}"),
                    c => value.push(c),
                }
            }
            assert!(labels.insert(key, value).is_none(), "label twice: {at}");
            match chars.next() {
                Some(',') => continue,
                Some('}') => break,
                other => panic!("{other:?} after a label: {at}"),
            }
        }
        assert_eq!(chars.next(), Some(' '), "{at}");
        let value: String = chars.collect();
        let value = match value.as_str() {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value {v:?}: {at}")),
        };
        samples.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    (types, samples)
}

fn one<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> &'a Sample {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == format!("{PREFIX}{name}")
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0]
}

fn status(queue: &str) -> QueueStatus {
    let mut by_reason = BTreeMap::new();
    // Reasons are written by the queue's owner: a quote, a backslash, a newline, an
    // escape sequence.
    by_reason.insert("bad \"event\" \\ here\nnext \x1b[31m".to_string(), 2);
    by_reason.insert("refused by sguild".to_string(), 1);
    let mut h = Histogram::default();
    for ms in [3, 12, 12, 40, 2000] {
        h.record(std::time::Duration::from_millis(ms));
    }
    QueueStatus {
        queue: queue.into(),
        entries: 4,
        oldest: Some(1_790_000_000),
        newest: Some(1_790_000_050),
        in_flight: 1,
        failed: 3,
        failed_by_reason: by_reason,
        held: 42,
        summaries_waiting: 2,
        backlog: 5,
        overflow: 0,
        integrity_marked: 0,
        last_run: Some(LastRun {
            program: "run".into(),
            pid: 9,
            finished: 1_790_000_090,
            seconds: 12.5,
            result: RunResult::Outage,
            error: Some("sguild went away".into()),
            shipped: 120,
            already_stored: 2,
            skipped: 7,
            quarantined: 3,
            held: 11,
            remaining: 4,
        }),
        latency: Some(LatencyRecord {
            pid: 9,
            since: 1_790_000_000,
            histogram: h,
        }),
        followed: Vec::new(),
        problems: vec!["x".into()],
        never_used: false,
    }
}

#[test]
fn the_exposition_parses_line_by_line_with_every_figure_and_hostile_labels_escaped() {
    let queue = "/var/spool/modsec \"q\"\\\n";
    let text = render(&status(queue), 1_790_000_100);
    let (types, samples) = parse(&text);
    // Every sample carries the queue, read back as written (but the newline, which
    // escape_text shows as \n before the format escapes it).
    for s in &samples {
        assert_eq!(s.labels["queue"], "/var/spool/modsec \"q\"\\\\n", "{s:?}");
    }
    let get = |name: &str, labels: &[(&str, &str)]| one(&samples, name, labels).value;
    assert_eq!(get("status_ok", &[]), 1.0);
    assert_eq!(get("status_problems", &[]), 1.0);
    assert_eq!(get("queue_entries", &[]), 4.0);
    assert_eq!(get("queue_oldest_entry_age_seconds", &[]), 100.0);
    assert_eq!(get("queue_in_flight", &[]), 1.0);
    assert_eq!(get("failed_entries", &[]), 3.0);
    assert_eq!(
        get(
            "failed_entries_by_reason",
            &[("reason", "bad \"event\" \\ here\\nnext \\x1b[31m")]
        ),
        2.0
    );
    assert_eq!(
        get(
            "failed_entries_by_reason",
            &[("reason", "refused by sguild")]
        ),
        1.0
    );
    assert_eq!(get("collector_backlog_lines", &[]), 5.0);
    assert_eq!(
        get("last_run_timestamp_seconds", &[("program", "run")]),
        1_790_000_090.0
    );
    assert_eq!(
        get("last_run_duration_seconds", &[("program", "run")]),
        12.5
    );
    assert_eq!(get("last_run_result", &[("result", "outage")]), 1.0);
    for other in ["ok", "unreachable", "io-error"] {
        assert_eq!(get("last_run_result", &[("result", other)]), 0.0);
    }
    assert_eq!(types[&format!("{PREFIX}shipped_total")], "counter");
    assert_eq!(get("shipped_total", &[("program", "run")]), 120.0);
    assert_eq!(get("already_stored_total", &[]), 2.0);
    assert_eq!(get("skipped_total", &[]), 7.0);
    assert_eq!(get("quarantined_total", &[]), 3.0);
    assert_eq!(get("held_total", &[]), 11.0);
    assert_eq!(get("held_entries", &[]), 42.0);
    assert_eq!(get("threshold_summaries_waiting", &[]), 2.0);
    // The histogram: cumulative buckets by `le`, +Inf equal to the count.
    assert_eq!(
        types[&format!("{PREFIX}delivery_latency_seconds")],
        "histogram"
    );
    let bucket = |le: &str| get("delivery_latency_seconds_bucket", &[("le", le)]);
    assert_eq!(bucket("0.005"), 1.0);
    assert_eq!(bucket("0.01"), 1.0);
    assert_eq!(bucket("0.02"), 3.0);
    assert_eq!(bucket("0.05"), 4.0);
    assert_eq!(bucket("1"), 4.0);
    assert_eq!(bucket("2.5"), 5.0);
    assert_eq!(bucket("+Inf"), 5.0);
    assert_eq!(get("delivery_latency_seconds_count", &[]), 5.0);
    assert!((get("delivery_latency_seconds_sum", &[]) - 2.067).abs() < 1e-9);
    let mut last = 0.0;
    for s in samples.iter().filter(|s| s.name.ends_with("_bucket")) {
        assert!(s.value >= last, "buckets are cumulative: {s:?}");
        last = s.value;
    }
}

#[test]
fn a_queue_never_run_and_an_unreadable_one_still_expose_what_they_can() {
    let mut s = status("/q");
    s.last_run = None;
    s.latency = None;
    let (_, samples) = parse(&render(&s, 0));
    assert!(samples.iter().all(|s| !s.name.contains("last_run")));
    // Oldest entry in the future (clocks): age 0, not negative.
    assert_eq!(
        one(&samples, "queue_oldest_entry_age_seconds", &[]).value,
        0.0
    );
    let (_, samples) = parse(&render_unreadable("/q"));
    assert_eq!(samples.len(), 1);
    assert_eq!(one(&samples, "status_ok", &[("queue", "/q")]).value, 0.0);
}

/// Reasons carry text from events: however many distinct ones failed/ holds, at most
/// [`MAX_REASON_SERIES`] series, the most common first and the rest as `(other)`, and
/// the counts still add up.
#[test]
fn failure_reasons_are_capped_at_a_bounded_number_of_series() {
    let mut s = status("/q");
    s.failed_by_reason = (0..500)
        .map(|i| {
            (
                format!("symlink to /planted/{i}, outside the storage dir"),
                1,
            )
        })
        .chain([("refused by sguild".to_string(), 40)])
        .collect();
    s.failed = 540;
    let (_, samples) = parse(&render(&s, 1_790_000_100));
    let by_reason: Vec<&Sample> = samples
        .iter()
        .filter(|x| x.name.ends_with("failed_entries_by_reason"))
        .collect();
    assert_eq!(by_reason.len(), MAX_REASON_SERIES);
    assert_eq!(by_reason[0].labels["reason"], "refused by sguild");
    let other = by_reason
        .iter()
        .find(|x| x.labels["reason"] == "(other)")
        .unwrap();
    assert_eq!(other.value, (500 - (MAX_REASON_SERIES - 2)) as f64);
    assert_eq!(by_reason.iter().map(|x| x.value).sum::<f64>(), 540.0);
}
