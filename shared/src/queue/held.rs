//! `held/` and `.released/`: the events a threshold held back (THRESHOLD_FILE), each
//! under its entry name until `requeue --suppressed` puts it back, and the markers of
//! those put back, which the shipper sends whatever the thresholds say. The one home of
//! both folders: the shipper holds and forgets, `requeue` lists and releases, `status`
//! counts, each through this module.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};

use super::layout::{HELD_DIR, RELEASED_DIR};
use super::{EntryName, Queue};

/// `held/` in the queue `queue_dir` (for messages).
pub fn dir(queue_dir: &Path) -> PathBuf {
    queue_dir.join(HELD_DIR)
}

/// Moves entries into `held/` (created if missing), each `(entry, inode)`: with an
/// inode, only if the entry is still that file (after a restart the name may have come
/// back with another). Returns those moved; one gone, or another file, is not.
pub fn hold<'a>(
    queue_dir: &Path,
    entries: impl IntoIterator<Item = (&'a str, Option<u64>)>,
) -> Result<Vec<&'a str>, (PathBuf, io::Error)> {
    let held = dir(queue_dir);
    match fs::create_dir(&held) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err((held, e)),
    }
    let mut moved = Vec::new();
    for (entry, ino) in entries {
        let from = queue_dir.join(entry);
        if let Some(ino) = ino {
            match fs::symlink_metadata(&from) {
                Ok(m) if m.ino() == ino => {}
                _ => continue,
            }
        }
        match fs::rename(&from, held.join(entry)) {
            Ok(()) => moved.push(entry),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err((from, e)),
        }
    }
    Ok(moved)
}

/// How many events `held/` holds (files named as queue entries); a missing `held/`
/// holds none.
pub fn count(queue_dir: &Path) -> Result<usize, (PathBuf, io::Error)> {
    let held = dir(queue_dir);
    match fs::read_dir(&held) {
        Ok(rd) => Ok(rd
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| EntryName::parse(n).is_some())
            })
            .count()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err((held, e)),
    }
}

/// The entries marked released (none when `.released/` is missing or unreadable).
pub fn released(queue_dir: &Path) -> HashSet<String> {
    super::names_in(&queue_dir.join(RELEASED_DIR))
}

/// Drops the release marker of an entry that is done.
pub fn forget_release(queue_dir: &Path, entry: &str) {
    let _ = fs::remove_file(queue_dir.join(RELEASED_DIR).join(entry));
}

/// Events a threshold held back, as the delivered log records them: the suppressed
/// records held back at or after `since` (all without), the newest record of each entry,
/// whose event is still in `held/`. Each comes with its unique id, in queue order.
pub fn suppressed_entries(
    queue_dir: &Path,
    since: Option<DateTime<FixedOffset>>,
) -> io::Result<Vec<(String, String)>> {
    let held = dir(queue_dir);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for d in super::delivered::read_delivered(queue_dir)? {
        if d.suppressed.is_none() || since.is_some_and(|t| d.time < t.timestamp()) {
            continue;
        }
        if EntryName::parse(&d.entry).is_none() || !seen.insert(d.entry.clone()) {
            continue;
        }
        if fs::symlink_metadata(held.join(&d.entry)).is_ok() {
            out.push((d.entry, d.unique_id));
        }
    }
    out.sort_by_key(|(e, _)| EntryName::parse(e));
    Ok(out)
}

/// Whether `entry` in `held/` can be released: its queue name if it is a regular file
/// named as an entry. Only what the shipper put there: a link or a FIFO the queue's
/// owner planted in `held/` stays where it is.
pub fn check(queue_dir: &Path, entry: &str) -> Result<EntryName, String> {
    let path = dir(queue_dir).join(entry);
    let Some(name) = EntryName::parse(entry) else {
        return Err(format!("{entry}: not an entry name"));
    };
    match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() => Ok(name),
        Ok(_) => Err(format!(
            "{}: not a regular file; left where it is",
            path.display()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Puts a held-back event (checked by [`check`]) back into the queue under its old
/// name `name` (or the next free one), marked released first, so the shipper never
/// holds it back again. Returns the name it got.
pub fn release(queue: &mut Queue, entry: &str, name: EntryName) -> Result<EntryName, String> {
    let queue_dir = queue.dir().to_path_buf();
    let path = dir(&queue_dir).join(entry);
    let released = queue_dir.join(RELEASED_DIR);
    let mark = |n: &str| -> io::Result<()> {
        match fs::create_dir(&released) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        crate::safefs::Open::truncate(crate::safefs::Keeper::DirOwner)
            .at(&released.join(n))
            .map(drop)
    };
    mark(entry).map_err(|e| format!("{}: {e}", released.display()))?;
    let got = queue
        .adopt(&path, name)
        .map_err(|e| format!("cannot link {} into the queue: {e}", path.display()))?;
    if got != name {
        let _ = mark(&got.to_string());
        forget_release(&queue_dir, entry);
    }
    if let Err(err) = fs::remove_file(&path) {
        log::warn!(
            "{}: requeued as {got} but not removed from held/: {err}",
            path.display()
        );
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_moves_only_the_file_it_was_given_and_count_sees_it() {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path();
        for n in ["modsec.log.1.000001", "modsec.log.2.000002"] {
            fs::write(q.join(n), n).unwrap();
        }
        let ino = fs::metadata(q.join("modsec.log.1.000001")).unwrap().ino();
        assert_eq!(count(q).unwrap(), 0, "no held/ yet holds none");
        let moved = hold(
            q,
            [
                ("modsec.log.1.000001", Some(ino)),
                // Another file under the name since (after a restart): left in the queue.
                ("modsec.log.2.000002", Some(ino)),
                ("modsec.log.3.000003", None), // gone
            ],
        )
        .unwrap();
        assert_eq!(moved, ["modsec.log.1.000001"]);
        assert!(q.join("modsec.log.2.000002").exists());
        fs::write(dir(q).join("not-an-entry"), "x").unwrap();
        assert_eq!(count(q).unwrap(), 1);
        assert_eq!(
            check(q, "modsec.log.1.000001").unwrap().to_string(),
            "modsec.log.1.000001"
        );
        assert!(check(q, "not-an-entry")
            .unwrap_err()
            .contains("not an entry name"));
    }

    #[test]
    fn a_release_puts_the_event_back_marked_and_forgetting_drops_the_mark() {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path();
        fs::create_dir(dir(q)).unwrap();
        fs::write(dir(q).join("modsec.log.5.000005"), "event").unwrap();
        // Its old name is taken: it gets the next free one, and the mark follows it.
        fs::write(q.join("modsec.log.5.000005"), "another").unwrap();
        let mut queue = Queue::open(q).unwrap();
        let name = check(q, "modsec.log.5.000005").unwrap();
        let got = release(&mut queue, "modsec.log.5.000005", name).unwrap();
        assert_eq!(got.to_string(), "modsec.log.5.000006");
        assert_eq!(
            fs::read_to_string(q.join("modsec.log.5.000006")).unwrap(),
            "event"
        );
        assert!(!dir(q).join("modsec.log.5.000005").exists());
        let marked = released(q);
        assert!(
            marked.contains("modsec.log.5.000006") && marked.len() == 1,
            "{marked:?}"
        );
        forget_release(q, "modsec.log.5.000006");
        assert!(released(q).is_empty());
    }
}
