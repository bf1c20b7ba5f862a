//! `held/` and `.released/`: the events a threshold held back (THRESHOLD_FILE), each
//! under its entry name until `requeue --suppressed` puts it back, and the markers of
//! those put back, which the shipper sends whatever the thresholds say. The one home of
//! both folders: the shipper holds and forgets, `requeue` lists and releases, `status`
//! counts, each through this module. Both are entered through a handle opened without
//! following a link ([`Dir`]): one planted in their place is refused, never written
//! through.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};

use super::layout::{HELD_DIR, RELEASED_DIR};
use super::{EntryName, Queue};
use crate::safefs::{Dir, Keeper, Open};

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
    let held = Dir::open_or_create(&dir(queue_dir)).map_err(|e| (dir(queue_dir), e))?;
    let mut moved = Vec::new();
    for (entry, ino) in entries {
        let from = queue_dir.join(entry);
        if let Some(ino) = ino {
            match fs::symlink_metadata(&from) {
                Ok(m) if m.ino() == ino => {}
                _ => continue,
            }
        }
        match held.move_here(&from, entry) {
            Ok(()) => moved.push(entry),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err((from, e)),
        }
    }
    Ok(moved)
}

/// `held/`, opened without following a link; `None` when there is none. A link
/// planted in its place is an error naming it.
fn open_held(queue_dir: &Path) -> io::Result<Option<Dir>> {
    match Dir::open_nofollow(&dir(queue_dir)) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The names in `held/` that are entry names.
fn held_names(held: &Dir) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    held.for_each_name(|n| {
        if EntryName::parse(n).is_some() {
            names.push(n.to_string());
        }
    })?;
    Ok(names)
}

/// How many events `held/` holds (files named as queue entries); a missing `held/`
/// holds none.
pub fn count(queue_dir: &Path) -> Result<usize, (PathBuf, io::Error)> {
    let names = match open_held(queue_dir) {
        Ok(Some(held)) => held_names(&held),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e),
    };
    names.map(|n| n.len()).map_err(|e| (dir(queue_dir), e))
}

/// The entries marked released (none when `.released/` is missing; one planted as a
/// link is not listed, and said so: its events are held back as any other).
pub fn released(queue_dir: &Path) -> HashSet<String> {
    let at = queue_dir.join(RELEASED_DIR);
    let mut names = HashSet::new();
    match Dir::open_nofollow(&at) {
        Ok(d) => {
            if let Err(e) = d.for_each_name(|n| {
                names.insert(n.to_string());
            }) {
                log::warn!("{}: cannot list the release marks: {e}", at.display());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("release marks not read: {e}"),
    }
    names
}

/// Drops the release marker of an entry that is done.
pub fn forget_release(queue_dir: &Path, entry: &str) {
    if let Ok(released) = Dir::open_nofollow(&queue_dir.join(RELEASED_DIR)) {
        let _ = released.remove(entry);
    }
}

/// Events a threshold held back: the suppressed records of the delivered log held back
/// at or after `since` (all without), one per entry whose event is still in `held/`;
/// and the events in `held/` whose record is gone (the log rotated twice since they were
/// held), by their entry name's time, their unique id read from the file. Each comes
/// with its unique id (`-` when it has none), in queue order.
pub fn suppressed_entries(
    queue_dir: &Path,
    since: Option<DateTime<FixedOffset>>,
) -> io::Result<Vec<(String, String)>> {
    let Some(handle) = open_held(queue_dir)? else {
        return Ok(Vec::new());
    };
    let held = dir(queue_dir);
    let mut recorded = HashSet::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for d in super::delivered::read_delivered(queue_dir)? {
        if d.suppressed.is_none() || EntryName::parse(&d.entry).is_none() {
            continue;
        }
        recorded.insert(d.entry.clone());
        if since.is_some_and(|t| d.time < t.timestamp()) || !seen.insert(d.entry.clone()) {
            continue;
        }
        if handle.has(&d.entry) {
            out.push((d.entry, d.unique_id));
        }
    }
    out.extend(unrecorded(&held, held_names(&handle)?, &recorded, since));
    out.sort_by_key(|(e, _)| EntryName::parse(e));
    Ok(out)
}

/// The events `names` in `held` with no suppressed record (in `recorded`), named at or
/// after `since`, each with the unique id its file gives.
fn unrecorded(
    held: &Path,
    names: Vec<String>,
    recorded: &HashSet<String>,
    since: Option<DateTime<FixedOffset>>,
) -> Vec<(String, String)> {
    let limits = crate::auditlog::ParseLimits::default();
    let named_since = |name: EntryName| match since {
        None => true,
        Some(t) => i64::try_from(name.sec).is_ok_and(|s| s >= t.timestamp()),
    };
    names
        .into_iter()
        .filter(|n| !recorded.contains(n))
        .filter(|n| EntryName::parse(n).is_some_and(named_since))
        .map(|n| {
            let id = super::known::unique_id_of(&held.join(&n), &limits);
            (n, id.unwrap_or_else(|| "-".into()))
        })
        .collect()
}

/// Whether `entry` in `held/` can be released: its queue name if it is a regular file
/// named as an entry. Only what the shipper put there: a link or a FIFO the queue's
/// owner planted in `held/` stays where it is.
pub fn check(queue_dir: &Path, entry: &str) -> Result<EntryName, String> {
    let path = dir(queue_dir).join(entry);
    let Some(name) = EntryName::parse(entry) else {
        return Err(format!("{entry}: not an entry name"));
    };
    let held = Dir::open_nofollow(&dir(queue_dir)).map_err(|e| e.to_string())?;
    match held.regular(entry) {
        Ok(true) => Ok(name),
        Ok(false) => Err(format!(
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
    let held_path = dir(&queue_dir);
    let held = Dir::open_nofollow(&held_path).map_err(|e| e.to_string())?;
    let released_path = queue_dir.join(RELEASED_DIR);
    let released = Dir::open_or_create(&released_path)
        .map_err(|e| format!("{}: {e}", released_path.display()))?;
    let mark = |n: &str| {
        Open::truncate(Keeper::DirOwner)
            .in_dir(&released, n)
            .map(drop)
    };
    mark(entry).map_err(|e| format!("{}: {e}", released_path.display()))?;
    let got = queue.adopt_from(&held, entry, name).map_err(|e| {
        format!(
            "cannot link {} into the queue: {e}",
            held_path.join(entry).display()
        )
    })?;
    if got != name {
        let _ = mark(&got.to_string());
        let _ = released.remove(entry);
    }
    if let Err(err) = held.remove(entry) {
        log::warn!(
            "{}: requeued as {got} but not removed from held/: {err}",
            held_path.join(entry).display()
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

    /// The queue's owner plants links as held/ and .released/: the shipper and requeue
    /// refuse them, and nothing is moved or written where they point.
    #[test]
    fn links_planted_as_held_or_released_are_refused_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path().join("queue");
        let elsewhere = tmp.path().join("elsewhere");
        fs::create_dir_all(&q).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        fs::write(q.join("modsec.log.1.000001"), "event").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir(&q)).unwrap();
        let (at, e) = hold(&q, [("modsec.log.1.000001", None)]).unwrap_err();
        assert_eq!(at, dir(&q));
        assert!(e.to_string().contains("not followed"), "{e}");
        assert!(
            q.join("modsec.log.1.000001").exists(),
            "the entry stays queued"
        );
        // An event in elsewhere/ is not listed, counted or released through the link.
        fs::write(elsewhere.join("modsec.log.2.000002"), "planted").unwrap();
        let e = check(&q, "modsec.log.2.000002").unwrap_err();
        assert!(e.contains("not followed"), "{e}");
        let e = suppressed_entries(&q, None).unwrap_err();
        assert!(e.to_string().contains("not followed"), "{e}");
        let (_, e) = count(&q).unwrap_err();
        assert!(e.to_string().contains("not followed"), "{e}");
        // A real held/, but .released planted as a link: no marker lands elsewhere.
        fs::remove_file(dir(&q)).unwrap();
        assert_eq!(hold(&q, [("modsec.log.1.000001", None)]).unwrap().len(), 1);
        std::os::unix::fs::symlink(&elsewhere, q.join(RELEASED_DIR)).unwrap();
        // Marks planted through the link release nothing.
        fs::write(elsewhere.join("modsec.log.1.000001"), "").unwrap();
        assert!(released(&q).is_empty());
        let mut queue = Queue::open(&q).unwrap();
        let name = check(&q, "modsec.log.1.000001").unwrap();
        let e = release(&mut queue, "modsec.log.1.000001", name).unwrap_err();
        assert!(e.contains("not followed"), "{e}");
        assert_eq!(
            fs::read_dir(&elsewhere).unwrap().count(),
            2,
            "only what was planted"
        );
        assert!(dir(&q).join("modsec.log.1.000001").exists(), "still held");
    }

    /// A held event whose suppressed record rotated out of the delivered log is still
    /// found (F3 of the thresholds review): by its name's time, with the unique id from
    /// its file.
    #[test]
    fn a_held_event_whose_record_rotated_out_is_still_found() {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path();
        fs::create_dir(dir(q)).unwrap();
        let event = crate::testdata::event_text("orphanid", 403);
        fs::write(dir(q).join("modsec.log.2000000000.000001"), &event).unwrap();
        fs::write(dir(q).join("modsec.log.1000000000.000001"), &event).unwrap();
        fs::write(dir(q).join("not-an-entry"), "x").unwrap();
        let all = suppressed_entries(q, None).unwrap();
        assert_eq!(
            all,
            [
                (
                    "modsec.log.1000000000.000001".to_string(),
                    "orphanid".to_string()
                ),
                (
                    "modsec.log.2000000000.000001".to_string(),
                    "orphanid".to_string()
                ),
            ]
        );
        let since = DateTime::parse_from_rfc3339("2020-01-01T00:00:00+00:00").unwrap();
        let recent = suppressed_entries(q, Some(since)).unwrap();
        assert_eq!(recent.len(), 1, "{recent:?}");
        assert_eq!(recent[0].0, "modsec.log.2000000000.000001");
    }
}
