//! `failed/`: the quarantined entries, each with its `.reason` file, listed by one rule
//! ([`failed_entries`]) for every command that reads them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::known::unique_id_of;
use super::{reason, EntryName, FAILED_DIR, REASON_SUFFIX};
use crate::auditlog::ParseLimits;

/// A quarantined entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    /// Its name in `failed/` (`modsec.log.<sec>.<usec>`, with `.N` when it was
    /// quarantined more than once).
    pub file_name: String,
    /// The queue name it had, which it gets back (so it keeps its place in the order);
    /// `None` for a name with the entries' prefix that is no entry's (put there by
    /// hand, or planted): counted, and named by `requeue`, which cannot put it back.
    pub name: Option<EntryName>,
    pub reason: Option<String>,
}

impl FailedEntry {
    pub fn path(&self, queue_dir: &Path) -> PathBuf {
        queue_dir.join(FAILED_DIR).join(&self.file_name)
    }

    pub fn reason_path(&self, queue_dir: &Path) -> PathBuf {
        queue_dir
            .join(FAILED_DIR)
            .join(format!("{}{REASON_SUFFIX}", self.file_name))
    }

    /// The unique id of the event, if the file parses.
    pub fn unique_id(&self, queue_dir: &Path) -> Option<String> {
        unique_id_of(&self.path(queue_dir), &ParseLimits::default())
    }
}

/// The entries in `failed/`: the one listing of it, for `requeue --failed` and `status`
/// alike. An entry is any name with the entries' prefix (`modsec.log`) but a reason
/// file's; those named as a queue entry, or as one with the `.N` a later quarantine of
/// the same name added ([`super::Queue::quarantine`]), come first, in queue order, the
/// others after them by name. `history/` and any other name are not entries.
pub fn failed_entries(queue_dir: &Path) -> io::Result<Vec<FailedEntry>> {
    let failed = queue_dir.join(FAILED_DIR);
    let rd = match fs::read_dir(&failed) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry?;
        let Some(file_name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if file_name.ends_with(REASON_SUFFIX) || !file_name.starts_with(super::ENTRY_PREFIX) {
            continue;
        }
        let name = original_name(&file_name);
        let reason = reason::read(&failed.join(format!("{file_name}{REASON_SUFFIX}")));
        out.push(FailedEntry {
            file_name,
            name,
            reason,
        });
    }
    fn key(e: &FailedEntry) -> (bool, Option<EntryName>, &str) {
        (e.name.is_none(), e.name, &e.file_name)
    }
    out.sort_by(|a, b| key(a).cmp(&key(b)));
    Ok(out)
}

/// The queue name of a file in `failed/`: itself, or without the `.N` a second
/// quarantine added.
fn original_name(file_name: &str) -> Option<EntryName> {
    EntryName::parse(file_name).or_else(|| {
        let (base, n) = file_name.rsplit_once('.')?;
        n.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| EntryName::parse(base))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_the_names_with_the_prefix_queue_names_first_in_queue_order() {
        let dir = tempfile::tempdir().unwrap();
        let failed = dir.path().join(FAILED_DIR);
        fs::create_dir_all(failed.join("history")).unwrap();
        for name in [
            "modsec.log.100.000010",
            "modsec.log.100.000010.1",
            "modsec.log.9.5",
            "modsec.log.100.000010.reason",
            "modsec.log.junk",
            "modsec.log.100.000010.x",
            "other",
        ] {
            fs::write(failed.join(name), "x").unwrap();
        }
        fs::write(
            failed.join("modsec.log.9.5.reason"),
            "version: 1\nreason: cannot open: denied\n",
        )
        .unwrap();
        let listed = failed_entries(dir.path()).unwrap();
        let names: Vec<&str> = listed.iter().map(|e| e.file_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "modsec.log.9.5",
                "modsec.log.100.000010",
                "modsec.log.100.000010.1",
                "modsec.log.100.000010.x",
                "modsec.log.junk",
            ]
        );
        assert_eq!(listed[2].name, EntryName::parse("modsec.log.100.000010"));
        assert_eq!(listed[4].name, None);
        assert_eq!(listed[0].reason.as_deref(), Some("cannot open: denied"));
        assert_eq!(listed[1].reason, None);
        assert!(failed_entries(&dir.path().join("none")).unwrap().is_empty());
    }
}
