//! `modsec-shipper status`: the queue at a glance, for people and for monitoring.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use modsec2sguil::config::ConfigFile;
use modsec2sguil::escape::{escape_text, json_ascii};
use modsec2sguil::status::{rule_engine_off, Level, QueueStatus, Thresholds, MODSECURITY_CONF_DIR};

/// How the status is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    /// node_exporter's textfile format (`modsec2sguil::status::prometheus`).
    Prometheus,
}

/// Prints the status; returns the exit code (the Nagios level; 0 without thresholds
/// unless the queue cannot be read).
pub fn run(
    config: Option<&PathBuf>,
    queue: Option<&PathBuf>,
    state_dir: Option<PathBuf>,
    format: Format,
    thresholds: Thresholds,
) -> u8 {
    let checking = thresholds.warn_age.is_some()
        || thresholds.crit_age.is_some()
        || thresholds.crit_failed.is_some();
    let config = match config.map(|p| ConfigFile::load_trusted(p)).transpose() {
        Ok(c) => c,
        Err(e) => return unknown(&e.to_string(), format),
    };
    let dir = match modsec2sguil::config::queue_dir(queue.cloned(), config.as_ref()) {
        Ok(d) => d,
        Err(e) => return unknown(&e.to_string(), format),
    };
    // As root, what follows is read as the queue's owner: the journal, records and names
    // there are theirs to plant.
    let runas = match config.as_ref().map(|c| c.owner("RUNAS")).transpose() {
        Ok(r) => r.flatten(),
        Err(e) => return unknown(&e.to_string(), format),
    };
    if let Err(e) = modsec2sguil::privilege::drop_to_queue_owner(runas, &dir) {
        return unknown(&e.to_string(), format);
    }
    let state_dir = match modsec2sguil::state::configured(state_dir, config.as_ref()) {
        Ok(d) => d,
        Err(e) => return unknown(&e.to_string(), format),
    };
    let status = match QueueStatus::gather(&dir, &state_dir) {
        Ok(s) => s,
        Err(e) => {
            return unknown(
                &format!("{}: cannot read the queue: {e}", dir.display()),
                format,
            )
        }
    };
    let now = Utc::now().timestamp();
    // Nothing ever came: say why, if ModSecurity's own config tells.
    let notes: Vec<String> = status
        .never_used
        .then(|| rule_engine_off(Path::new(MODSECURITY_CONF_DIR)))
        .flatten()
        .into_iter()
        .collect();
    let (mut level, mut why) = thresholds.check(&status, now);
    if checking && !status.problems.is_empty() {
        level = level.max(Level::Warning);
        why.push(format!(
            "{} part(s) of the queue unreadable",
            status.problems.len()
        ));
    }
    let text = if format == Format::Prometheus {
        modsec2sguil::status::prometheus::render(&status, now)
    } else if format == Format::Json {
        let mut v = serde_json::to_value(&status).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("now".into(), now.into());
            o.insert("oldest_age".into(), status.oldest_age(now).into());
            o.insert("level".into(), level.as_str().into());
            o.insert("level_reasons".into(), why.clone().into());
            o.insert("notes".into(), notes.clone().into());
        }
        // Strings from the queue, as JSON escapes them, and nothing but ASCII.
        format!("{}\n", json_ascii(&v.to_string()))
    } else {
        let mut text = human(&status, now, level, &why);
        for n in &notes {
            text.push_str(&format!("note:       {n}\n"));
        }
        text
    };
    print!("{text}");
    if checking {
        level as u8
    } else {
        0
    }
}

fn unknown(e: &str, format: Format) -> u8 {
    if format == Format::Prometheus {
        // What failed goes to stderr; the exposition says only that it did.
        eprintln!("modsec2sguil UNKNOWN - {}", escape_text(e));
        print!(
            "{}",
            modsec2sguil::status::prometheus::render_unreadable("")
        );
    } else if format == Format::Json {
        let v = serde_json::json!({ "level": "UNKNOWN", "error": e });
        println!("{}", json_ascii(&v.to_string()));
    } else {
        println!("modsec2sguil UNKNOWN - {}", escape_text(e));
    }
    Level::Unknown as u8
}

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
fn human(s: &QueueStatus, now: i64, level: Level, why: &[String]) -> String {
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
    for p in &s.problems {
        let _ = writeln!(o, "problem:    {}", escape_text(p));
    }
    o
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
