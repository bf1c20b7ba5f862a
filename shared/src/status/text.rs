//! `status` for people: the report's text, and the ages it reads and writes.

use std::fmt::Write as _;

use chrono::{TimeZone, Utc};

use super::{Level, QueueStatus};
use crate::escape::escape_text;

/// A duration for people: `3d 4h`, `12m 5s`, `40s`.
pub fn ago(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn when(t: i64, now: i64) -> String {
    let shown = Utc
        .timestamp_opt(t, 0)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| t.to_string());
    if t <= now {
        format!("{shown}, {} ago", ago((now - t) as u64))
    } else {
        format!("{shown}, in the future")
    }
}

/// A path for the terminal: names in the queue are its owner's to choose.
fn shown(p: &std::path::Path) -> String {
    escape_text(&p.display().to_string()).into_owned()
}

/// The report for people. Every string in it that the queue holds (the last run's
/// program and error, reasons, paths, problems naming files) is escaped: the queue's
/// owner wrote them, and root may be reading.
pub fn human(s: &QueueStatus, now: i64, level: Level, why: &[String]) -> String {
    let mut o = String::new();
    let age = s.oldest_age(now).unwrap_or(0);
    let _ = write!(
        o,
        "modsec2sguil {} - {} queued, oldest {}, {} failed, backlog {}",
        level.as_str(),
        s.entries,
        if s.entries > 0 { ago(age) } else { "-".into() },
        s.failed,
        s.backlog
    );
    for w in why {
        let _ = write!(o, "; {w}");
    }
    let _ = writeln!(
        o,
        " | queued={} oldest={age}s failed={} backlog={} in_flight={} overflow={}",
        s.entries, s.failed, s.backlog, s.in_flight, s.overflow
    );
    let _ = writeln!(o, "queue:      {}", shown(&s.queue));
    match (s.oldest, s.newest) {
        (Some(old), Some(new)) => {
            let _ = writeln!(
                o,
                "entries:    {} (oldest {}; newest {})",
                s.entries,
                when(old as i64, now),
                when(new as i64, now)
            );
        }
        _ => {
            let _ = writeln!(o, "entries:    0");
        }
    }
    let _ = writeln!(
        o,
        "in flight:  {} sent, awaiting sguild's answer (resent first by the next run)",
        s.in_flight
    );
    let _ = writeln!(o, "failed/:    {}", s.failed);
    for (reason, n) in &s.failed_by_reason {
        let _ = writeln!(o, "  {n:>8}  {}", escape_text(reason));
    }
    if s.failed > 0 {
        let _ = writeln!(
            o,
            "            (each has a .reason file; fix the cause, then: modsec-shipper requeue --failed --all)"
        );
    }
    if s.held > 0 || s.summaries_waiting > 0 {
        let _ = writeln!(
            o,
            "held back:  {} event(s) a threshold held back (EVENT_DIR/held/; modsec-shipper requeue --suppressed ships them); {} summary event(s) waiting",
            s.held, s.summaries_waiting
        );
    }
    let _ = write!(o, "backlog:    {} index line(s)", s.backlog);
    if s.backlog > 0 {
        let _ = write!(
            o,
            " the collector could not act on (modsec-shipper requeue --backlog)"
        );
    }
    let _ = writeln!(o);
    if s.overflow > 0 {
        let _ = writeln!(
            o,
            "overflow:   {} index line(s) spilled by a collector, not yet handled",
            s.overflow
        );
    }
    if s.integrity_marked > 0 {
        let _ = writeln!(
            o,
            "integrity:  {} queued entry(ies) did not match their index line (size or md5)",
            s.integrity_marked
        );
    }
    write_followed_and_last_run(&mut o, s, now);
    for p in &s.problems {
        let _ = writeln!(o, "problem:    {}", escape_text(p));
    }
    o
}

/// The `following:` and `last run:` lines of [`human`].
fn write_followed_and_last_run(o: &mut String, s: &QueueStatus, now: i64) {
    for f in &s.followed {
        let _ = match f.size {
            Some(size) => writeln!(
                o,
                "following:  {} at byte {} of {} ({} bytes not read yet)",
                shown(&f.index),
                f.offset,
                size,
                size.saturating_sub(f.offset)
            ),
            None => writeln!(
                o,
                "following:  {} (rotated or gone since the collector last saved its place, at byte {})",
                shown(&f.index),
                f.offset
            ),
        };
    }
    match &s.last_run {
        Some(r) => {
            let _ = write!(
                o,
                "last run:   {} (pid {}), ended {}: {}",
                escape_text(&r.program),
                r.pid,
                when(r.finished, now),
                r.result.as_str()
            );
            if let Some(e) = &r.error {
                let _ = write!(o, " ({})", escape_text(e));
            }
            let _ = writeln!(
                o,
                "; shipped {} ({} found already stored), skipped {}, quarantined {}, remaining {}, {:.2} s",
                r.shipped, r.already_stored, r.skipped, r.quarantined, r.remaining, r.seconds
            );
        }
        None => {
            let _ = writeln!(o, "last run:   none recorded");
        }
    }
}

/// Parses an age: seconds, or a number with s, m, h or d.
pub fn parse_age(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not an age (examples: 900, 15m, 2h, 1d)"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("`{text}`: the unit must be s, m, h or d")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_units_and_print_for_people() {
        assert_eq!(parse_age("900"), Ok(900));
        assert_eq!(parse_age("15m"), Ok(900));
        assert_eq!(parse_age("2h"), Ok(7200));
        assert_eq!(parse_age("1d"), Ok(86400));
        assert!(parse_age("1w").unwrap_err().contains("unit"));
        assert!(parse_age("m").is_err());
        assert!(parse_age("-5").is_err());
        assert_eq!(ago(40), "40s");
        assert_eq!(ago(725), "12m 5s");
        assert_eq!(ago(3 * 86400 + 4 * 3600 + 5), "3d 4h");
    }
}
