//! `modsec-shipper status` from its request to its verdict: the config read, the queue
//! read as its owner, the check, and the verdict as text, JSON and Prometheus metrics.

use std::path::{Path, PathBuf};

use chrono::Utc;

use super::{rule_engine_off, Level, QueueStatus, Thresholds, MODSECURITY_CONF_DIR};
use crate::config::ConfigFile;
use crate::escape::{escape_text, json_ascii};

/// What `status` is asked.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The config file to read, if any (its EVENT_DIR, RUNAS, STATE_DIR).
    pub config: Option<PathBuf>,
    /// The queue, overriding the config's EVENT_DIR.
    pub queue: Option<PathBuf>,
    /// The collector's state dir, overriding the config's STATE_DIR.
    pub state_dir: Option<PathBuf>,
    pub thresholds: Thresholds,
}

/// What `status` found.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// No config or queue, or the queue cannot be read: UNKNOWN, and why.
    Unknown(String),
    Read(Box<Found>),
}

/// A queue read, and what the check makes of it.
#[derive(Debug, Clone)]
pub struct Found {
    pub status: QueueStatus,
    /// When it was read (unix seconds).
    pub now: i64,
    pub level: Level,
    /// Why the level is not OK.
    pub why: Vec<String>,
    /// Why nothing ever came, if ModSecurity's own config tells.
    pub notes: Vec<String>,
    /// Whether a threshold was given (else the exit code is 0 whatever the level).
    pub checking: bool,
}

/// Reads the config and the queue (started as root: as the queue's owner, RUNAS or
/// EVENT_DIR's, since the journal, records and names there are theirs to plant) and
/// checks it. A queue part that cannot be read is a problem named in the report, and,
/// when a threshold is given, at least WARNING.
pub fn evaluate(r: &Request) -> Verdict {
    match read(r) {
        Ok(found) => Verdict::Read(Box::new(found)),
        Err(why) => Verdict::Unknown(why),
    }
}

fn read(r: &Request) -> Result<Found, String> {
    let t = &r.thresholds;
    let checking = t.warn_age.is_some() || t.crit_age.is_some() || t.crit_failed.is_some();
    let config = r
        .config
        .as_deref()
        .map(ConfigFile::load_trusted)
        .transpose()
        .map_err(|e| e.to_string())?;
    let dir =
        crate::config::queue_dir(r.queue.clone(), config.as_ref()).map_err(|e| e.to_string())?;
    crate::privilege::drop_for_config(config.as_ref(), &dir)?;
    let state_dir = crate::state::configured(r.state_dir.clone(), config.as_ref())
        .map_err(|e| e.to_string())?;
    let status = QueueStatus::gather(&dir, &state_dir)
        .map_err(|e| format!("{}: cannot read the queue: {e}", dir.display()))?;
    let now = Utc::now().timestamp();
    let notes: Vec<String> = status
        .never_used
        .then(|| rule_engine_off(Path::new(MODSECURITY_CONF_DIR)))
        .flatten()
        .into_iter()
        .collect();
    let (mut level, mut why) = t.check(&status, now);
    if checking && !status.problems.is_empty() {
        level = level.max(Level::Warning);
        why.push(format!(
            "{} part(s) of the queue unreadable",
            status.problems.len()
        ));
    }
    Ok(Found {
        status,
        now,
        level,
        why,
        notes,
        checking,
    })
}

impl Verdict {
    /// The exit code: the Nagios level when checking or UNKNOWN, else 0.
    pub fn code(&self) -> u8 {
        match self {
            Verdict::Unknown(_) => Level::Unknown as u8,
            Verdict::Read(f) if f.checking => f.level as u8,
            Verdict::Read(_) => 0,
        }
    }

    /// The report for people (every string from the queue escaped).
    pub fn text(&self) -> String {
        match self {
            Verdict::Unknown(e) => format!("modsec2sguil UNKNOWN - {}\n", escape_text(e)),
            Verdict::Read(f) => {
                let mut text = super::text::human(&f.status, f.now, f.level, &f.why);
                for n in &f.notes {
                    text.push_str(&format!("note:       {n}\n"));
                }
                text
            }
        }
    }

    /// One JSON object and a newline, ASCII only (strings from the queue as JSON
    /// escapes them): the [`QueueStatus`] with `now`, `oldest_age`, `level`,
    /// `level_reasons` and `notes`; or `level` UNKNOWN and `error`.
    pub fn json(&self) -> String {
        let v = match self {
            Verdict::Unknown(e) => serde_json::json!({ "level": "UNKNOWN", "error": e }),
            Verdict::Read(f) => {
                let mut v = serde_json::to_value(&f.status).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("now".into(), f.now.into());
                    o.insert("oldest_age".into(), f.status.oldest_age(f.now).into());
                    o.insert("level".into(), f.level.as_str().into());
                    o.insert("level_reasons".into(), f.why.clone().into());
                    o.insert("notes".into(), f.notes.clone().into());
                }
                v
            }
        };
        format!("{}\n", json_ascii(&v.to_string()))
    }

    /// node_exporter's textfile format ([`super::prometheus`]); a queue that cannot be
    /// read says only that it could not (what failed is [`Verdict::Unknown`]'s, for
    /// stderr).
    pub fn prometheus(&self) -> String {
        match self {
            Verdict::Unknown(_) => super::prometheus::render_unreadable(""),
            Verdict::Read(f) => super::prometheus::render(&f.status, f.now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(status: QueueStatus, thresholds: Thresholds) -> Verdict {
        evaluate(&Request {
            queue: Some(status.queue),
            state_dir: Some(std::env::temp_dir().join("no-such-state-dir-for-status")),
            thresholds,
            ..Request::default()
        })
    }

    #[test]
    fn an_unreadable_part_warns_only_when_checking_and_the_json_carries_the_level() {
        let dir = tempfile::tempdir().unwrap();
        // A last-run record that is no record: a problem, not a failure.
        std::fs::write(dir.path().join(crate::queue::layout::LAST_RUN_FILE), "{").unwrap();
        let status = QueueStatus::gather(dir.path(), dir.path()).unwrap();
        assert_eq!(status.problems.len(), 1);
        let plain = found(status.clone(), Thresholds::default());
        let Verdict::Read(f) = &plain else {
            panic!("{plain:?}")
        };
        assert_eq!((f.level, plain.code()), (Level::Ok, 0));
        let checked = found(
            status,
            Thresholds {
                crit_failed: Some(5),
                ..Thresholds::default()
            },
        );
        assert_eq!(checked.code(), Level::Warning as u8);
        let json: serde_json::Value = serde_json::from_str(&checked.json()).unwrap();
        assert_eq!(json["level"], "WARNING");
        assert_eq!(
            json["level_reasons"][0],
            "1 part(s) of the queue unreadable"
        );
        assert_eq!(json["entries"], 0);
        assert!(checked
            .text()
            .starts_with("modsec2sguil WARNING - 0 queued"));
    }

    #[test]
    fn a_queue_that_is_not_there_is_unknown_in_every_format() {
        let v = evaluate(&Request {
            queue: Some("/nonexistent/queue".into()),
            state_dir: Some("/nonexistent/state".into()),
            ..Request::default()
        });
        assert!(
            matches!(&v, Verdict::Unknown(e) if e.contains("/nonexistent/queue")),
            "{v:?}"
        );
        assert_eq!(v.code(), 3);
        assert!(v
            .text()
            .starts_with("modsec2sguil UNKNOWN - /nonexistent/queue"));
        let json: serde_json::Value = serde_json::from_str(&v.json()).unwrap();
        assert_eq!(json["level"], "UNKNOWN");
        assert!(v
            .prometheus()
            .contains("modsec2sguil_status_ok{queue=\"\"} 0"));
    }
}
