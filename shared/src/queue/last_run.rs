//! The record of the last run (`.last-run`, JSON), written by `drain` and `run`, shown
//! by `status`.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::layout::LAST_RUN_FILE;

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
    pub remaining: u64,
}

impl LastRun {
    /// Writes the record atomically; a crash may leave the one before (it is only shown).
    pub fn write(&self, queue_dir: &Path) -> io::Result<()> {
        let mut text = serde_json::to_string(self).map_err(io::Error::other)?;
        text.push('\n');
        crate::safefs::replace(
            &queue_dir.join(LAST_RUN_FILE),
            text.as_bytes(),
            crate::safefs::Keeper::DirOwner,
            crate::safefs::Durability::Lazy,
        )
    }

    /// Reads the record, if there is one; a record that does not parse is an error.
    pub fn read(queue_dir: &Path) -> io::Result<Option<LastRun>> {
        let path = queue_dir.join(LAST_RUN_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
