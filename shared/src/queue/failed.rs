//! `failed/`: the quarantined entries, each with its `.reason` file, listed by one rule
//! ([`failed_entries`]) for every command that reads them, and put back by one
//! ([`restore`]), which keeps each reason in `failed/history/`. (Quarantining is
//! [`super::Queue::quarantine`].)

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::known::unique_id_of;
use super::layout::HISTORY_DIR;
use super::{reason, EntryName, Queue, FAILED_DIR, REASON_SUFFIX};
use crate::auditlog::ParseLimits;

/// `failed/` in the queue `queue_dir` (for messages).
pub fn dir(queue_dir: &Path) -> PathBuf {
    queue_dir.join(FAILED_DIR)
}

/// A quarantined entry that can go back: the name it gets back, and what it is known by
/// (so a command can tell whether the queue holds or delivered it already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restorable {
    pub name: EntryName,
    pub unique_id: Option<String>,
    /// Device and inode of the file it names (a hard link shares the event file's).
    pub dev_ino: Option<(u64, u64)>,
}

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

    /// Whether the entry can go back, and what it is known by; why not, naming it.
    pub fn restorable(&self, queue_dir: &Path) -> Result<Restorable, String> {
        let path = self.path(queue_dir);
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !(meta.is_file() || meta.file_type().is_symlink()) {
            return Err(format!(
                "{} is not a file or symbolic link; remove or replace it by hand",
                path.display()
            ));
        }
        let Some(name) = self.name else {
            return Err(format!(
                "{}: not named as a queue entry (modsec.log.<sec>.<usec>); rename or remove it by hand",
                path.display()
            ));
        };
        Ok(Restorable {
            name,
            unique_id: self.unique_id(queue_dir),
            dev_ino: fs::metadata(&path).ok().map(|m| (m.dev(), m.ino())),
        })
    }
}

/// Puts a quarantined entry back under `name` (the one it had, from
/// [`FailedEntry::restorable`]) or the next free one, removes it from `failed/`, restores
/// the collector's integrity marker if its reason carried one, and keeps the reason in
/// `failed/history/` with when and as what it went back. Returns the name it got; only
/// the link into the queue can fail it (the rest is logged).
pub fn restore(queue: &mut Queue, e: &FailedEntry, name: EntryName) -> Result<EntryName, String> {
    let queue_dir = queue.dir().to_path_buf();
    let path = e.path(&queue_dir);
    let got = queue
        .adopt(&path, name)
        .map_err(|err| format!("cannot link {} into the queue: {err}", path.display()))?;
    if let Err(err) = fs::remove_file(&path) {
        log::warn!(
            "{}: requeued as {got} but not removed from failed/: {err}",
            path.display()
        );
    }
    let reason_path = e.reason_path(&queue_dir);
    if let Some(note) = reason::collector_note(&reason_path) {
        if let Err(err) = queue.mark_integrity(got, &note) {
            log::warn!("cannot restore the integrity marker of {got}: {err}");
        }
    }
    if let Err(err) = keep_in_history(&queue_dir, &reason_path, &e.file_name, &got.to_string()) {
        log::warn!("{}: not moved to the history: {err}", reason_path.display());
    }
    Ok(got)
}

/// Moves a reason file to `failed/history/`, noting when and as what it was requeued.
fn keep_in_history(
    queue_dir: &Path,
    reason: &Path,
    file_name: &str,
    entry: &str,
) -> io::Result<()> {
    match fs::symlink_metadata(reason) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        // Not a reason file we wrote (planted, as requeue may run as root): left alone.
        Ok(m) if !m.is_file() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file; left where it is",
            ))
        }
        Ok(_) => {}
    }
    // Entered through handles, never followed: a link planted as failed/ or as
    // failed/history/ is refused.
    let history = crate::safefs::Dir::open_nofollow(&dir(queue_dir))?.sub_or_create(HISTORY_DIR)?;
    let mut target = format!("{file_name}{REASON_SUFFIX}");
    let mut n = 0;
    while history.has(&target) {
        n += 1;
        target = format!("{file_name}{REASON_SUFFIX}.{n}");
    }
    history.move_here(reason, &target)?;
    let stamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
    // Swapped for a link since the move? Not written through.
    let mut f =
        crate::safefs::Open::append(crate::safefs::Keeper::DirOwner).in_dir(&history, &target)?;
    writeln!(f, "requeued: {stamp} as {entry}")
}

/// The entries in `failed/`: the one listing of it, for `requeue --failed` and `status`
/// alike. An entry is any name with the entries' prefix (`modsec.log`) but a reason
/// file's; those named as a queue entry, or as one with the `.N` a later quarantine of
/// the same name added ([`super::Queue::quarantine`]), come first, in queue order, the
/// others after them by name. `history/` and any other name are not entries.
pub fn failed_entries(queue_dir: &Path) -> io::Result<Vec<FailedEntry>> {
    let failed = queue_dir.join(FAILED_DIR);
    // Listed through a handle: a link planted as failed/ is refused, never listed.
    let handle = match crate::safefs::Dir::open_nofollow(&failed) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    handle.for_each_name(|n| {
        if !n.ends_with(REASON_SUFFIX) && n.starts_with(super::ENTRY_PREFIX) {
            names.push(n.to_string());
        }
    })?;
    let mut out = Vec::new();
    for file_name in names {
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

    /// failed/history/ planted as a link by the queue's owner: the entry still goes
    /// back, and its reason stays in failed/, never moved or written where the link
    /// points.
    #[test]
    fn a_link_planted_as_the_history_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path().join("queue");
        let elsewhere = tmp.path().join("elsewhere");
        fs::create_dir_all(q.join(FAILED_DIR)).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir(&q).join(HISTORY_DIR)).unwrap();
        fs::write(dir(&q).join("modsec.log.7.000007"), "event").unwrap();
        fs::write(
            dir(&q).join("modsec.log.7.000007.reason"),
            "version: 1\nreason: refused\n",
        )
        .unwrap();
        let listed = failed_entries(&q).unwrap();
        let mut queue = Queue::open(&q).unwrap();
        let r = listed[0].restorable(&q).unwrap();
        let got = restore(&mut queue, &listed[0], r.name).unwrap();
        assert_eq!(got.to_string(), "modsec.log.7.000007");
        assert!(q.join("modsec.log.7.000007").exists());
        assert!(dir(&q).join("modsec.log.7.000007.reason").exists());
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
        // failed/ itself planted as a link: refused, nothing listed or moved through it.
        fs::write(elsewhere.join("modsec.log.8.000008"), "planted").unwrap();
        fs::rename(dir(&q), tmp.path().join("old-failed")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir(&q)).unwrap();
        let e = failed_entries(&q).unwrap_err();
        assert!(e.to_string().contains("not followed"), "{e}");
        assert!(elsewhere.join("modsec.log.8.000008").exists());
    }
}
