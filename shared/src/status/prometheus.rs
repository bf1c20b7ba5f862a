//! `status --prometheus`: a [`QueueStatus`] in Prometheus' text exposition format, as
//! node_exporter's textfile collector reads it (`*.prom`), so a site's Prometheus can
//! alert on a stuck shipper. Every metric is prefixed `modsec2sguil_`, has its HELP and
//! TYPE lines, and carries the queue's path as the label `queue`; label values are
//! escaped as the format asks (`\\`, `\"`, `\n`), after [`escape_text`] (a failed
//! reason is written by the queue's owner).
//!
//! Gauges are the queue as it is now; the `_total` counters are the last run's (a
//! daemon's since it started, a drain's for that drain), so each new run starts them
//! again, which Prometheus reads as a counter reset; the latency histogram is the
//! daemon's since it started.

use std::fmt::Write as _;

use crate::escape::escape_text;
use crate::queue::last_run::{LastRun, RunResult};
use crate::queue::latency::LatencyRecord;

use super::QueueStatus;

/// Every metric's prefix.
pub const PREFIX: &str = "modsec2sguil_";

/// A label value as the exposition format writes it: backslash, double quote and line
/// feed escaped; other control characters (which the format would pass on) are made
/// visible first by [`escape_text`].
pub fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in escape_text(v).chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The text of one exposition, family by family.
struct Exposition {
    text: String,
    /// `queue="…"`, on every sample.
    queue: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(self.text, "# TYPE {PREFIX}{name} {kind}");
    }

    /// One sample of `name` (with a suffix such as `_bucket`) and extra labels
    /// (`key`, raw value).
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let mut l = self.queue.clone();
        for (k, v) in labels {
            let _ = write!(l, ",{k}=\"{}\"", label_value(v));
        }
        let _ = writeln!(self.text, "{PREFIX}{name}{{{l}}} {}", number(value));
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }
}

/// A sample value: integers without a fraction, others as Rust writes them (both are
/// Go `ParseFloat` syntax).
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The exposition of `s` at `now` (unix seconds): the queue's gauges, then the last
/// run's metrics and the delivery latency histogram when `s` has them.
pub fn render(s: &QueueStatus, now: i64) -> String {
    let mut e = Exposition {
        text: String::new(),
        queue: format!("queue=\"{}\"", label_value(&s.queue.to_string_lossy())),
    };
    queue_gauges(&mut e, s, now);
    if let Some(r) = &s.last_run {
        last_run_metrics(&mut e, r);
    }
    if let Some(l) = &s.latency {
        latency_histogram(&mut e, l);
    }
    e.text
}

/// Writes the gauges of the queue as it is at `now`: whether status could read it,
/// its entries and their age, in flight, failed (in all and by reason), held,
/// threshold summaries, the collector's backlog and overflow, integrity marks.
fn queue_gauges(e: &mut Exposition, s: &QueueStatus, now: i64) {
    e.gauge(
        "status_ok",
        "1 when the queue could be read (0: see modsec-shipper status).",
        1.0,
    );
    e.gauge(
        "status_problems",
        "Parts of the queue that status could not read (modsec-shipper status names them).",
        s.problems.len() as f64,
    );
    e.gauge(
        "queue_entries",
        "Entries waiting in the queue to be shipped.",
        s.entries as f64,
    );
    e.gauge(
        "queue_oldest_entry_age_seconds",
        "Age of the oldest entry waiting (0 when the queue is empty).",
        s.oldest_age(now).unwrap_or(0) as f64,
    );
    e.gauge(
        "queue_in_flight",
        "Events sent to sguild and not yet answered.",
        s.in_flight as f64,
    );
    e.gauge(
        "failed_entries",
        "Entries quarantined in failed/.",
        s.failed as f64,
    );
    e.family(
        "failed_entries_by_reason",
        "gauge",
        "Entries in failed/ by reason (the reason up to its first colon; the most common \
         ones, the rest as (other)).",
    );
    for (reason, n) in top_reasons(&s.failed_by_reason) {
        e.sample("failed_entries_by_reason", &[("reason", reason)], n as f64);
    }
    e.gauge(
        "held_entries",
        "Events a threshold held back, kept in held/ (requeue --suppressed ships them).",
        s.held as f64,
    );
    e.gauge(
        "threshold_summaries_waiting",
        "Threshold summaries whose window closed, not yet stored in sguild.",
        s.summaries_waiting as f64,
    );
    e.gauge(
        "collector_backlog_lines",
        "Index lines the collector could not act on (requeue --backlog retries them).",
        s.backlog as f64,
    );
    e.gauge(
        "collector_overflow_lines",
        "Index lines a collector spilled to disk and has not handled yet.",
        s.overflow as f64,
    );
    e.gauge(
        "integrity_marked_entries",
        "Queued entries whose file did not match its index line.",
        s.integrity_marked as f64,
    );
}

/// Writes the last run's metrics, labelled with its program: when it recorded its
/// state, how long it had run, how it ended, and its `_total` counters.
fn last_run_metrics(e: &mut Exposition, r: &LastRun) {
    let program: &[(&str, &str)] = &[("program", &r.program)];
    e.family(
        "last_run_timestamp_seconds",
        "gauge",
        "When the last drain or run recorded its state (a running daemon: every 5 s while busy).",
    );
    e.sample("last_run_timestamp_seconds", program, r.finished as f64);
    e.family(
        "last_run_duration_seconds",
        "gauge",
        "How long the last drain or run had been running when it recorded its state.",
    );
    e.sample("last_run_duration_seconds", program, r.seconds);
    e.family(
        "last_run_result",
        "gauge",
        "1 for how the last drain or run ended (or stands), 0 for the other results.",
    );
    for result in [
        RunResult::Ok,
        RunResult::Unreachable,
        RunResult::Outage,
        RunResult::IoError,
    ] {
        let labels = [("program", r.program.as_str()), ("result", result.as_str())];
        e.sample(
            "last_run_result",
            &labels,
            f64::from(u8::from(r.result == result)),
        );
    }
    for (name, help, n) in [
        (
            "shipped_total",
            "Events stored by sguild in the last run (a daemon: since it started).",
            r.shipped,
        ),
        (
            "already_stored_total",
            "Of those, resends sguild had already stored.",
            r.already_stored,
        ),
        (
            "skipped_total",
            "Entries that were not alerts, removed without sending, in the last run.",
            r.skipped,
        ),
        (
            "quarantined_total",
            "Entries moved to failed/ in the last run.",
            r.quarantined,
        ),
        (
            "held_total",
            "Events a threshold held back in the last run (a daemon: since it started).",
            r.held,
        ),
    ] {
        e.family(name, "counter", help);
        e.sample(name, program, n as f64);
    }
}

/// Writes the daemon's delivery latency histogram: cumulative buckets (`le` in
/// seconds, then `+Inf`), its sum and its count.
fn latency_histogram(e: &mut Exposition, l: &LatencyRecord) {
    let name = "delivery_latency_seconds";
    e.family(
        name,
        "histogram",
        "From the collector linking an entry to sguild confirming its event, as the daemon measured since it started.",
    );
    let h = &l.histogram;
    let mut cumulative = 0u64;
    for (bound, n) in h.buckets_us.iter().zip(&h.counts) {
        cumulative += n;
        let le = number(*bound as f64 / 1e6);
        e.sample(&format!("{name}_bucket"), &[("le", &le)], cumulative as f64);
    }
    e.sample(&format!("{name}_bucket"), &[("le", "+Inf")], h.count as f64);
    e.sample(&format!("{name}_sum"), &[], h.sum_us as f64 / 1e6);
    e.sample(&format!("{name}_count"), &[], h.count as f64);
}

/// The exposition when the queue cannot be read at all: `status_ok` 0, so an alert
/// fires on it rather than on stale numbers.
pub fn render_unreadable(queue: &str) -> String {
    let mut e = Exposition {
        text: String::new(),
        queue: format!("queue=\"{}\"", label_value(queue)),
    };
    e.gauge(
        "status_ok",
        "1 when the queue could be read (0: see modsec-shipper status).",
        0.0,
    );
    e.text
}

/// The most reasons given a series of their own: a reason's text comes in part from the
/// event (a path, a name), and each distinct label value is a series Prometheus keeps.
pub const MAX_REASON_SERIES: usize = 20;

/// The [`MAX_REASON_SERIES`] most common reasons, most common first (then by name), and
/// the rest summed as `(other)`.
fn top_reasons(by_reason: &std::collections::BTreeMap<String, usize>) -> Vec<(&str, usize)> {
    let mut all: Vec<(&str, usize)> = by_reason.iter().map(|(r, n)| (r.as_str(), *n)).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    if all.len() > MAX_REASON_SERIES {
        let other = all[MAX_REASON_SERIES - 1..].iter().map(|(_, n)| n).sum();
        all.truncate(MAX_REASON_SERIES - 1);
        all.push(("(other)", other));
    }
    all
}

#[cfg(test)]
mod tests;
