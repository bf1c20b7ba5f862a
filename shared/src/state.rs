//! STATE_DIR: the collector's own state, in a directory only root writes
//! (ARCHITECTURE.md, "What root may touch").
//!
//! The collector runs as root beside directories that lesser users own: the storage dir
//! (the web server's user) and the queue (the shipper's user, who parses attacker-written
//! HTTP all day and so is the first account an attacker gets). Whatever the collector
//! reads back — its overflow spool, its backlog, the record of what it queued, where
//! `--follow` stands — therefore lives here, not in the queue: no other user can plant,
//! swap, lock, grow or remove any of it. The directory is checked at every start
//! ([`crate::config::dir_roots_alone`]: owned by root, no group or other write, and the
//! same for every directory above it), created `0750` and given to RUNAS's group so
//! that `modsec-shipper status` can read it.
//!
//! Nothing here takes a lock: a group-readable file can be `flock`ed by a reader, and
//! root never waits on a lock another user can take. Two collectors (Apache's graceful
//! restart) and `requeue --backlog` share the backlog by `O_APPEND` writes of whole
//! records and by renaming; see [`StateDir::backlog_many`].
//!
//! Files: `spool.<pid>` (raw index lines, the collector's overflow), `backlog`
//! (`v1\t<unix time>\t<reason>\t<raw line>`), `backlog.requeue-<pid>` (a backlog
//! `requeue --backlog` took), `queued` and `queued.1` (`v1\t<unix time>\t<unique id>`,
//! the events queued, so that a spool or index line read again after a crash is not
//! queued twice), `follow.<hash>` (the `--follow` position).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::queue::version;

/// Where the Debian package and the examples keep the collector's state.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/modsec2sguil";

/// Prefix of the collector's per-process overflow files: `spool.<pid>` (raw index
/// lines, as read: ModSecurity's format, so they carry no version of ours).
pub const SPOOL_PREFIX: &str = "spool.";
/// Index lines the collector could not act on, with the reason.
pub const BACKLOG_FILE: &str = "backlog";
/// Prefix of a backlog taken by `requeue --backlog` (left behind if it was killed).
pub const BACKLOG_TAKEN_PREFIX: &str = "backlog.requeue-";
/// The unique ids of the events queued, newest last; rotated to [`QUEUED_OLD_FILE`].
pub const QUEUED_FILE: &str = "queued";
/// The record before the last rotation.
pub const QUEUED_OLD_FILE: &str = "queued.1";
/// Prefix of a `--follow` position file: `follow.<hash of the followed path>`.
pub const FOLLOW_PREFIX: &str = "follow.";

/// The record of queued events is rotated past this size: with ids of ~27 bytes, the
/// two files remember the last ~300,000 events, more than any spool or `--follow`
/// batch a crash can leave to be read again, and loading them costs ~20 MB at most.
pub const MAX_QUEUED_RECORD_BYTES: u64 = 8 * 1024 * 1024;
/// The longest line of the queued record that is read: a version, a time and a unique
/// id (ModSecurity's are 24 to 27 characters; the index line allows more).
pub const MAX_QUEUED_LINE_BYTES: usize = 512;
/// The longest backlog record read back: an index line (cut at 64 KiB) and a reason.
pub const MAX_BACKLOG_RECORD_BYTES: usize = 80 * 1024;

/// The state dir: the command line's, else `STATE_DIR`, else [`DEFAULT_STATE_DIR`].
/// Every program looks it up here.
pub fn configured(
    given: Option<PathBuf>,
    config: Option<&crate::config::ConfigFile>,
) -> Result<PathBuf, crate::config::ConfigError> {
    Ok(crate::config::pick(
        given,
        config,
        "STATE_DIR",
        crate::config::ConfigFile::abs_path,
    )?
    .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)))
}

/// The collector's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Opens the state directory at `path`, creating it (`0750`, root's, with `group`
    /// when given: RUNAS's, so `status` reads it). Run as root, it must pass
    /// [`crate::config::dir_roots_alone`] — the directory and every one above it owned
    /// by root and written by no one else; otherwise the error says which is at fault.
    pub fn open(path: &Path, group: Option<u32>) -> io::Result<StateDir> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !path.is_absolute() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("STATE_DIR {} must be an absolute path", path.display()),
            ));
        }
        let named =
            |e: io::Error| io::Error::new(e.kind(), format!("state dir {}: {e}", path.display()));
        let root = nix::unistd::geteuid().is_root();
        // The parent first: nothing is created where another user could swap it.
        if let Some(parent) = path.parent().filter(|p| root && p.exists()) {
            crate::config::dir_roots_alone(parent, false)?;
        }
        match std::fs::DirBuilder::new().mode(0o750).create(path) {
            Ok(()) => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o750))
                    .map_err(named)?;
                if let Some(gid) = group {
                    std::os::unix::fs::chown(path, None, Some(gid)).map_err(named)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "state dir {}: its parent does not exist (create it, root's, mode 0755)",
                        path.display()
                    ),
                ))
            }
            Err(e) => return Err(named(e)),
        }
        let real = if root {
            crate::config::dir_roots_alone(path, false)?
        } else {
            std::fs::canonicalize(path).map_err(named)?
        };
        let meta = std::fs::metadata(&real).map_err(named)?;
        if !meta.is_dir() {
            return Err(named(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a directory",
            )));
        }
        Ok(StateDir { path: real })
    }

    /// The state directory at `path`, unchecked, for readers (`status`).
    pub fn at(path: &Path) -> StateDir {
        StateDir {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in the state directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Appends an index line the collector could not act on, with the reason.
    pub fn backlog(&self, raw_line: &[u8], reason: &str) -> io::Result<()> {
        self.backlog_many(&[(raw_line, reason)])
    }

    /// Appends backlog records with one write and one fsync.
    ///
    /// No lock: `requeue --backlog` takes the backlog by renaming it, reads it, puts
    /// back what still fails and removes it. A record written to the old file after it
    /// was read would be lost, so after each write the file written is compared with
    /// what `backlog` names now; when they differ (taken meanwhile), the records are
    /// written again to the new backlog. A record may so be listed twice (a retry of a
    /// line already queued finds it known), never lost. Writes of whole records to an
    /// `O_APPEND` file do not interleave between two collectors.
    pub fn backlog_many(&self, records: &[(&[u8], &str)]) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let now = unix_now().to_string();
        let mut out = Vec::new();
        for (raw_line, reason) in records {
            out.extend_from_slice(version::LINE_TAG.as_bytes());
            out.extend_from_slice(now.as_bytes());
            out.push(b'\t');
            // No tab or newline left to break the record; no control left for a terminal.
            out.extend_from_slice(crate::escape::escape_text(reason).as_bytes());
            out.push(b'\t');
            out.extend_from_slice(raw_line.strip_suffix(b"\n").unwrap_or(raw_line));
            out.push(b'\n');
        }
        let path = self.join(BACKLOG_FILE);
        for _ in 0..100 {
            let mut f =
                crate::safefs::Open::append(crate::safefs::Keeper::ThisProcess).at(&path)?;
            crate::safefs::append_whole(&mut f, &out, true)?;
            let written = f.metadata()?;
            match std::fs::symlink_metadata(&path) {
                Ok(now) if (now.dev(), now.ino()) == (written.dev(), written.ino()) => {
                    return Ok(())
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "{}: taken away 100 times while being written",
            path.display()
        )))
    }

    /// Remembers that the events with these unique ids were queued (see
    /// [`QueuedRecord::add`]; a collector keeps one [`StateDir::queued_record`] open).
    pub fn record_queued(&self, ids: &[&str]) -> io::Result<()> {
        self.queued_record().add(ids)
    }

    /// The record of queued events, to append to.
    pub fn queued_record(&self) -> QueuedRecord {
        QueuedRecord {
            path: self.join(QUEUED_FILE),
            old: self.join(QUEUED_OLD_FILE),
            file: None,
        }
    }

    /// The unique ids of the events queued (both files of the record), read within
    /// their bounds: longer lines are skipped and counted in one warning.
    pub fn queued_ids(&self) -> io::Result<HashSet<String>> {
        let mut ids = HashSet::new();
        for name in [QUEUED_OLD_FILE, QUEUED_FILE] {
            let path = self.join(name);
            let f = match crate::safefs::Open::read(crate::safefs::Keeper::ThisProcess).at(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut skipped = 0u64;
            // Twice the rotation size: a file is rotated once it is past it.
            let r = BufReader::new(f.take(2 * MAX_QUEUED_RECORD_BYTES));
            crate::queue::bounded::for_each_line(r, MAX_QUEUED_LINE_BYTES, |_, line| {
                let id = line.bytes.and_then(queued_id);
                match id {
                    Some(id) => {
                        ids.insert(String::from_utf8_lossy(id).into_owned());
                    }
                    None => skipped += 1,
                }
                Ok(())
            })?;
            if skipped > 0 {
                log::warn!(
                    "{}: {skipped} lines skipped (too long, garbled or of a newer version); their events may be queued twice",
                    path.display()
                );
            }
        }
        Ok(ids)
    }
}

/// The record of the events queued (`queued`), held open by the collector's committer.
#[derive(Debug)]
pub struct QueuedRecord {
    path: PathBuf,
    old: PathBuf,
    file: Option<File>,
}

impl QueuedRecord {
    /// Appends these unique ids (one write, not fsynced: what a crash of the process
    /// must not lose is in the page cache; after a power loss an event may be queued
    /// twice, never lost). Past [`MAX_QUEUED_RECORD_BYTES`] the file becomes
    /// `queued.1` — unless another collector rotated it already (the file held is no
    /// longer the one named `queued`) — and the next add opens a new one.
    pub fn add(&mut self, ids: &[&str]) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        if ids.is_empty() {
            return Ok(());
        }
        let now = unix_now().to_string();
        let mut out = Vec::new();
        for id in ids {
            out.extend_from_slice(version::LINE_TAG.as_bytes());
            out.extend_from_slice(now.as_bytes());
            out.push(b'\t');
            out.extend_from_slice(crate::escape::escape_text(id).as_bytes());
            out.push(b'\n');
        }
        let f = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                crate::safefs::Open::append(crate::safefs::Keeper::ThisProcess).at(&self.path)?,
            ),
        };
        let written = crate::safefs::append_whole(f, &out, false).and_then(|()| f.metadata());
        let meta = match written {
            Ok(m) => m,
            Err(e) => {
                self.file = None;
                return Err(e);
            }
        };
        if meta.len() > MAX_QUEUED_RECORD_BYTES {
            let still_named = std::fs::symlink_metadata(&self.path)
                .is_ok_and(|n| (n.dev(), n.ino()) == (meta.dev(), meta.ino()));
            self.file = None;
            if still_named {
                std::fs::rename(&self.path, &self.old)?;
            }
        }
        Ok(())
    }
}

/// `<unix time>` and a tab: the first field after the version tag of the state dir's
/// line records (the backlog, the record of what was queued).
fn time_field(input: &[u8]) -> nom::IResult<&[u8], u64> {
    use nom::bytes::complete::tag;
    use nom::character::complete::digit1;
    use nom::combinator::map_res;
    use nom::sequence::terminated;
    let number = map_res(digit1, |d: &[u8]| {
        std::str::from_utf8(d)
            .map_err(|_| ())
            .and_then(|d| d.parse::<u64>().map_err(|_| ()))
    });
    terminated(number, tag("\t"))(input)
}

/// Parses a backlog record: (time, reason, raw line). The grammar, after the version tag
/// ([`version::split_line`]): `<unix time> TAB <reason without a tab> TAB <raw line>`.
pub fn parse_backlog_record(record: &[u8]) -> Option<(u64, String, Vec<u8>)> {
    use nom::bytes::complete::{tag, take_till};
    use nom::sequence::{pair, terminated};
    let record = record.strip_suffix(b"\n").unwrap_or(record);
    let (_, record) = version::split_line(record).ok()?;
    let reason = terminated(take_till(|b| b == b'\t'), tag("\t"));
    let (raw, (time, reason)) = pair(time_field, reason)(record).ok()?;
    Some((
        time,
        String::from_utf8_lossy(reason).into_owned(),
        raw.to_vec(),
    ))
}

/// The unique id a line of the record of queued events holds: `<unix time> TAB <id>`
/// after the version tag; `None` for a line of another shape.
fn queued_id(line: &[u8]) -> Option<&[u8]> {
    let (_, rest) = version::split_line(line).ok()?;
    let (id, _) = time_field(rest).ok()?;
    (!id.is_empty()).then_some(id)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_written_while_the_backlog_was_taken_goes_to_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state"), None).unwrap();
        state.backlog(b"first", "r1").unwrap();
        // Taken (renamed away) as requeue --backlog does, then written to: the record
        // must end up in a file named `backlog`, not only in the taken one.
        std::fs::rename(state.join(BACKLOG_FILE), state.join("taken")).unwrap();
        state.backlog(b"second", "r2").unwrap();
        let now = std::fs::read(state.join(BACKLOG_FILE)).unwrap();
        let (_, reason, raw) =
            parse_backlog_record(now.split(|&b| b == b'\n').next().unwrap()).unwrap();
        assert_eq!((reason.as_str(), raw.as_slice()), ("r2", &b"second"[..]));
    }

    #[test]
    fn a_state_dir_whose_parent_is_missing_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("no/such/state");
        let e = StateDir::open(&at, None).unwrap_err().to_string();
        assert!(
            e.contains(&at.display().to_string()) && e.contains("parent does not exist"),
            "{e}"
        );
        assert!(
            !dir.path().join("no").exists(),
            "nothing created on the way"
        );
    }

    #[test]
    fn backlog_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state"), None).unwrap();
        state
            .backlog(b"raw\tline with \xff bytes\n", "file missing:\tgone\n")
            .unwrap();
        state.backlog(b"second", "r2").unwrap();
        let data = std::fs::read(state.join(BACKLOG_FILE)).unwrap();
        let records: Vec<_> = data
            .split_inclusive(|&b| b == b'\n')
            .map(|r| parse_backlog_record(r).unwrap())
            .collect();
        // Escaped (escape_text): no tab or newline to break the record, and readable.
        assert_eq!(records[0].1, "file missing:\\tgone\\n");
        assert_eq!(records[0].2, b"raw\tline with \xff bytes");
        assert_eq!(records[1].2, b"second");
        assert!(data.starts_with(b"v1\t"), "records carry their version");
        // 0.1.0's record (no tag) is still read; a newer version's is not guessed at.
        assert_eq!(
            parse_backlog_record(b"1790000000\told reason\traw line\n"),
            Some((1_790_000_000, "old reason".into(), b"raw line".to_vec()))
        );
        assert_eq!(parse_backlog_record(b"v2\t1790000000\tr\traw\n"), None);
        // Not the grammar: a time that is no number, a reason without the tab after it.
        assert_eq!(parse_backlog_record(b"v1\tsoon\tr\traw\n"), None);
        assert_eq!(parse_backlog_record(b"v1\t1790000000\treason only\n"), None);
        assert_eq!(queued_id(b"v1\t1\tID-1"), Some(&b"ID-1"[..]));
        assert_eq!(queued_id(b"v1\t1\t"), None);
        assert_eq!(queued_id(b"v1\tx\tID-1"), None);
    }

    #[test]
    fn the_queued_record_rotates_and_both_files_are_read_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state"), None).unwrap();
        state.record_queued(&["A", "B"]).unwrap();
        // A line over the bound is skipped, not held; the ones around it are read.
        let mut long = b"v1\t1\t".to_vec();
        long.extend(std::iter::repeat(b'x').take(MAX_QUEUED_LINE_BYTES + 1));
        long.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(state.join(QUEUED_FILE))
            .unwrap();
        std::io::Write::write_all(&mut f, &long).unwrap();
        state.record_queued(&["C"]).unwrap();
        let ids = state.queued_ids().unwrap();
        assert_eq!(ids.len(), 3, "{ids:?}");
        for id in ["A", "B", "C"] {
            assert!(ids.contains(id));
        }
        // Grown past the rotation size (the padding ends in a newline, as records do).
        f.set_len(MAX_QUEUED_RECORD_BYTES).unwrap();
        std::io::Write::write_all(&mut f, b"\n").unwrap();
        state.record_queued(&["D"]).unwrap();
        assert!(state.join(QUEUED_OLD_FILE).exists());
        assert!(!state.join(QUEUED_FILE).exists());
        state.record_queued(&["E"]).unwrap();
        let ids = state.queued_ids().unwrap();
        for id in ["A", "D", "E"] {
            assert!(ids.contains(id), "{id}");
        }
    }

    #[test]
    fn a_state_dir_another_user_could_write_is_refused_naming_it() {
        use std::os::unix::fs::PermissionsExt;
        if !crate::testdata::root_or_skip(
            "a_state_dir_another_user_could_write_is_refused_naming_it",
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = StateDir::open(&open.join("state"), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&open.display().to_string()) && e.contains("writable"),
            "{e}"
        );
        let e = StateDir::open(&open, None).unwrap_err().to_string();
        assert!(e.contains("writable"), "{e}");
        let e = StateDir::open(Path::new("relative/state"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute"), "{e}");
    }
}
