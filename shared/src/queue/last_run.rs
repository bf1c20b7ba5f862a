//! The record of the last run (`.last-run`, JSON), written by `drain` and `run`, shown
//! by `status`. It carries `"version": 1` ([`super::version`]; 0.1.0's had none).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::layout::LAST_RUN_FILE;

/// The largest last-run record read. It is one JSON line of ~300 bytes plus its error,
/// cut at [`MAX_LAST_RUN_ERROR_BYTES`] when written, so a bigger file is not ours:
/// `status` names it as a problem instead of reading it. It being one line, this is its
/// line bound too.
pub const MAX_LAST_RUN_BYTES: u64 = 64 * 1024;
/// Where the error of a run is cut when the record is written (a session error may quote
/// a long answer from sguild): within [`MAX_LAST_RUN_BYTES`] even as JSON-escaped text.
pub const MAX_LAST_RUN_ERROR_BYTES: usize = 4 * 1024;

/// How a run of `drain` (or one pass of `run`) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunResult {
    /// Everything it set out to do is done (or bounded by --max-*).
    Ok,
    /// sguild could not be reached or refused the agent: nothing was sent.
    Unreachable,
    /// The session broke mid-run; the rest stays queued.
    Outage,
    /// The queue, journal or failed/ area could not be read or written.
    IoError,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Ok => "ok",
            RunResult::Unreachable => "unreachable",
            RunResult::Outage => "outage",
            RunResult::IoError => "io-error",
        }
    }
}

/// The record of the last run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    /// `drain` or `run`.
    pub program: String,
    pub pid: u32,
    /// When it ended (unix seconds).
    pub finished: i64,
    pub seconds: f64,
    pub result: RunResult,
    /// The error, when `result` is not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub shipped: u64,
    pub already_stored: u64,
    pub skipped: u64,
    pub quarantined: u64,
    /// Held back by a threshold (THRESHOLD_FILE); absent from a record written before
    /// thresholds existed.
    #[serde(default)]
    pub held: u64,
    pub remaining: u64,
}

/// The last-run record's path in the queue `queue_dir` (for messages).
pub fn path(queue_dir: &Path) -> PathBuf {
    queue_dir.join(LAST_RUN_FILE)
}

impl LastRun {
    /// Writes the record atomically; a crash may leave the one before (it is only shown).
    pub fn write(&self, queue_dir: &Path) -> io::Result<()> {
        let mut record = self.clone();
        if let Some(e) = record
            .error
            .as_mut()
            .filter(|e| e.len() > MAX_LAST_RUN_ERROR_BYTES)
        {
            let mut end = MAX_LAST_RUN_ERROR_BYTES;
            while !e.is_char_boundary(end) {
                end -= 1;
            }
            e.truncate(end);
            e.push_str(" [cut]");
        }
        super::version::write_json(&queue_dir.join(LAST_RUN_FILE), &record)
    }

    /// Reads the record, if there is one; a record that does not parse is an error.
    pub fn read(queue_dir: &Path) -> io::Result<Option<LastRun>> {
        super::version::read_json(
            &queue_dir.join(LAST_RUN_FILE),
            MAX_LAST_RUN_BYTES,
            "MAX_LAST_RUN_BYTES",
            true,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn record() -> LastRun {
        LastRun {
            program: "drain".into(),
            pid: 7,
            finished: 1_790_000_000,
            seconds: 1.5,
            result: RunResult::Ok,
            error: None,
            shipped: 3,
            already_stored: 0,
            skipped: 0,
            quarantined: 0,
            held: 0,
            remaining: 0,
        }
    }

    #[test]
    fn the_record_carries_its_version_and_older_and_newer_ones_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        record().write(dir.path()).unwrap();
        let path = dir.path().join(LAST_RUN_FILE);
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(LastRun::read(dir.path()).unwrap(), Some(record()));
        // 0.1.0's record has no version: still read.
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("version");
        fs::write(&path, old.to_string()).unwrap();
        assert_eq!(LastRun::read(dir.path()).unwrap(), Some(record()));
        let mut newer = json;
        newer["version"] = 2.into();
        fs::write(&path, newer.to_string()).unwrap();
        let e = LastRun::read(dir.path()).unwrap_err();
        assert!(e.to_string().contains("format version 2"), "{e}");
    }
}
