//! The queue directory: the contract between the collector and the shipper
//! (ARCHITECTURE.md, "The queue").
//!
//! Entries are named `modsec.log.<sec>.<usec>` (usec zero-padded to 6 digits),
//! strictly increasing in arrival order, and ordered by their numbers, so the unpadded
//! names modsec_queue.pl wrote sort right too. Adding an entry is atomic: `link()` to the
//! final name, retried with the next name on `EEXIST` (two collectors run side by side
//! during a graceful restart); a copy is written under `.tmp/`, fsynced, then linked.
//! Hidden files and folders belong to the tools: `.tmp/`, `.backlog` (index lines the
//! collector could not act on, with the reason), `.integrity/` (markers for entries
//! whose size or md5 did not match their index line), `failed/` (quarantined entries,
//! each with a `.reason` file), and the shipper's `.lock` and `.journal`.
//!
//! This module owns the directory: every name is in [`layout`]; each area has its
//! module with its operations ([`failed`]: list and restore; [`held`]: hold, list,
//! count, release; [`lock`]) and each file format its module ([`journal`],
//! [`delivered`], [`reason`], [`position`], [`last_run`], [`latency`],
//! [`threshold_state`]); [`known`] is what the queue already holds or delivered. The
//! collector, the shipper and the operator commands use them; nothing else names a file
//! in EVENT_DIR (`shared/tests/architecture.rs` keeps it so).

use std::cmp::Ordering;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub mod bounded;
pub mod delivered;
pub mod failed;
pub mod held;
pub mod journal;
pub mod known;
pub mod last_run;
pub mod latency;
pub mod layout;
pub mod lock;
pub mod position;
pub mod reason;
pub mod threshold_state;
pub mod version;
pub mod watch;

pub use layout::{BACKLOG_FILE, ENTRY_PREFIX, FAILED_DIR, INTEGRITY_DIR, REASON_SUFFIX, TMP_DIR};

/// Files larger than this are refused (the collector) and quarantined (the shipper) unless MAX_EVENT_BYTES says otherwise:
/// ModSecurity's largest default request body (SecRequestBodyLimit, 12.5 MiB) plus
/// headroom; anything bigger is more likely a mistake or an attack on the shipper.
pub const DEFAULT_MAX_EVENT_BYTES: u64 = 16 * 1024 * 1024;
/// What MAX_EVENT_BYTES may be set to (the collector applies the same setting).
pub const MAX_EVENT_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1024..=(1 << 40);

/// An entry as found in the queue: its order and its file name as written (the Perl
/// collector's unpadded names stay what they are on disk).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueEntry {
    pub name: EntryName,
    pub file_name: String,
}

/// An entry's name: the arrival time it encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryName {
    pub sec: u64,
    pub usec: u32,
}

impl EntryName {
    /// Parses `modsec.log.<sec>.<usec>`, padded or not.
    pub fn parse(name: &str) -> Option<EntryName> {
        let rest = name.strip_prefix(ENTRY_PREFIX)?;
        let (sec, usec) = rest.split_once('.')?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(sec) || !digits(usec) || usec.len() > 6 {
            return None;
        }
        Some(EntryName {
            sec: sec.parse().ok()?,
            usec: usec.parse().ok()?,
        })
    }

    /// The name for now.
    pub fn now() -> EntryName {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        EntryName {
            sec: d.as_secs(),
            usec: d.subsec_micros(),
        }
    }

    /// The next name after this one (one microsecond later).
    pub fn next(self) -> EntryName {
        if self.usec >= 999_999 {
            EntryName {
                sec: self.sec + 1,
                usec: 0,
            }
        } else {
            EntryName {
                sec: self.sec,
                usec: self.usec + 1,
            }
        }
    }
}

impl Ord for EntryName {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.sec, self.usec).cmp(&(other.sec, other.usec))
    }
}

impl PartialOrd for EntryName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ENTRY_PREFIX}{}.{:06}", self.sec, self.usec)
    }
}

/// How an event file gets into the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Hard link; falls back to a copy where the filesystem refuses (`EXDEV`, `EPERM`).
    Hardlink,
    /// Always copy.
    Copy,
    /// Symbolic link to the event file (modsec2sguil's `SYMLINK 1`).
    Symlink,
}

impl LinkMode {
    pub fn parse(text: &str) -> Option<LinkMode> {
        match text.to_ascii_lowercase().as_str() {
            "hardlink" | "link" => Some(LinkMode::Hardlink),
            "copy" => Some(LinkMode::Copy),
            "symlink" => Some(LinkMode::Symlink),
            _ => None,
        }
    }

    /// The mode a config file sets: LINK_MODE, else modsec2sguil 0.8's `SYMLINK 1`
    /// (symlink) or `SYMLINK 0` (hardlink); `None` when neither is set.
    pub fn configured(
        c: &crate::config::ConfigFile,
    ) -> Result<Option<LinkMode>, crate::config::ConfigError> {
        match c.word("LINK_MODE", LinkMode::parse, "hardlink, copy or symlink")? {
            Some(mode) => Ok(Some(mode)),
            None => Ok(c.bool("SYMLINK")?.map(|symlink| {
                if symlink {
                    LinkMode::Symlink
                } else {
                    LinkMode::Hardlink
                }
            })),
        }
    }
}

/// How an entry was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linked {
    Hardlink,
    /// Copied, because hard links were refused or copying was asked for.
    Copy,
    Symlink,
}

/// A queue directory and the last name this process gave out.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    /// The directory as opened once, checked, by [`Queue::open_checked`] (the
    /// collector): every entry, copy and marker is then made through this handle, never
    /// by a path the queue's owner could redirect.
    handle: Option<std::sync::Arc<crate::safefs::Dir>>,
    last: Option<EntryName>,
    /// Who entries are given to (RUNAS), always through a descriptor — the linked inode,
    /// or a copy before it is linked into place — never by a name in the queue, which
    /// the shipper's user writes and could swap for a hard link to another file. A
    /// symbolic link entry needs no owner (the shipper removes it as the queue's owner).
    entry_owner: Option<(u32, u32)>,
}

/// How many names are tried before giving up on `EEXIST` (each is a microsecond later).
const MAX_NAME_TRIES: u32 = 100_000;

impl Queue {
    /// Opens (creating if needed) a queue directory.
    pub fn open(dir: &Path) -> io::Result<Queue> {
        fs::create_dir_all(dir)?;
        Ok(Queue {
            dir: dir.to_path_buf(),
            handle: None,
            last: None,
            entry_owner: None,
        })
    }

    /// Opens the queue as root enters it (the collector, `requeue --backlog/--index`):
    /// once, through a checked handle, with entries given to `runas`, else (run as root)
    /// to the queue's owner and group, whom a root-started shipper becomes without RUNAS.
    ///
    /// Run as root, every directory above the queue must be root's and written by no one
    /// else ([`crate::config::dir_roots_alone`]), or its owner could swap the queue for
    /// a link to a root-only directory between two runs. The queue itself is created if
    /// missing (`0750`, given to `runas`), opened `O_DIRECTORY|O_NOFOLLOW`, and must
    /// belong to root or RUNAS and be writable by no one else (group write only for
    /// RUNAS's group). Errors say which directory is at fault and how to fix it.
    pub fn open_checked(dir: &Path, runas: Option<(u32, u32)>) -> io::Result<Queue> {
        use std::os::unix::fs::DirBuilderExt;
        let root = nix::unistd::geteuid().is_root();
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
        if root {
            // The nearest existing directory above it first: nothing is made where another
            // user could redirect it.
            if let Some(existing) = dir.ancestors().skip(1).find(|a| a.is_dir()) {
                crate::config::dir_roots_alone(existing, true)?;
            }
        }
        if fs::symlink_metadata(dir).is_err() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(named)?;
            if let (true, Some((uid, gid))) = (root, runas) {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(named)?;
            }
        }
        if root {
            if let Some(parent) = dir.parent() {
                crate::config::dir_roots_alone(parent, true)?;
            }
        }
        let handle = crate::safefs::Dir::open_nofollow(dir)?;
        let mut entry_owner = runas;
        if root {
            let st = rustix::fs::fstat(handle.fd()).map_err(|e| named(e.into()))?;
            // Without RUNAS the shipper becomes the queue's owner: entries are theirs.
            if runas.is_none() && st.st_uid != 0 {
                entry_owner = Some((st.st_uid, st.st_gid));
            }
            let runas_uid = runas.map(|(uid, _)| uid);
            let runas_gid = runas.map(|(_, gid)| gid);
            let mode = st.st_mode & 0o7777;
            let why = if st.st_uid != 0 && runas_uid.is_some_and(|u| u != st.st_uid) {
                Some(format!(
                    "belongs to uid {}, neither root nor RUNAS (uid {})",
                    st.st_uid,
                    runas_uid.unwrap_or_default()
                ))
            } else if mode & 0o002 != 0 {
                Some(format!("is writable by everyone (mode {mode:o})"))
            } else if mode & 0o020 != 0 && st.st_gid != 0 && Some(st.st_gid) != runas_gid {
                Some(format!(
                    "is writable by group {} (mode {mode:o}), not RUNAS's",
                    st.st_gid
                ))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "the queue {} {why}: give it to RUNAS with mode 0750 (`chown RUNAS: {0}; chmod 0750 {0}`)",
                        dir.display()
                    ),
                ));
            }
        }
        Ok(Queue {
            dir: dir.to_path_buf(),
            handle: Some(std::sync::Arc::new(handle)),
            last: None,
            entry_owner,
        })
    }

    /// The checked handle [`Queue::open_checked`] made, if it did.
    pub fn checked_handle(&self) -> Option<&crate::safefs::Dir> {
        self.handle.as_deref()
    }

    /// The queue directory's handle: the checked one, else the directory opened now.
    fn handle(&self) -> io::Result<std::sync::Arc<crate::safefs::Dir>> {
        match &self.handle {
            Some(h) => Ok(h.clone()),
            None => Ok(std::sync::Arc::new(crate::safefs::Dir::open(&self.dir)?)),
        }
    }

    /// Entries are given to `owner` (uid, gid) as they are made.
    pub fn with_entry_owner(mut self, owner: Option<(u32, u32)>) -> Queue {
        self.entry_owner = owner;
        self
    }

    /// The queue at `dir`, not created if missing (for readers such as `status`).
    pub fn at(dir: &Path) -> Queue {
        Queue {
            dir: dir.to_path_buf(),
            handle: None,
            last: None,
            entry_owner: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first candidate name: now, but never at or before the last one given out
    /// (the clock may step back).
    fn first_candidate(&self) -> EntryName {
        let now = EntryName::now();
        match self.last {
            Some(last) if now <= last => last.next(),
            _ => now,
        }
    }

    /// Puts `source` into the queue under a new name, by `make(queue, name)`, which must
    /// fail with `AlreadyExists` when the name is taken.
    fn place(
        &mut self,
        make: impl FnMut(&crate::safefs::Dir, &str) -> io::Result<()>,
    ) -> io::Result<EntryName> {
        let name = self.first_free(self.first_candidate(), make)?;
        self.last = Some(name);
        Ok(name)
    }

    /// Tries `make` on `name`, then on each next name while it is taken.
    fn first_free(
        &self,
        mut name: EntryName,
        mut make: impl FnMut(&crate::safefs::Dir, &str) -> io::Result<()>,
    ) -> io::Result<EntryName> {
        let queue = self.handle()?;
        for _ in 0..MAX_NAME_TRIES {
            match make(&queue, &name.to_string()) {
                Ok(()) => return Ok(name),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => name = name.next(),
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free entry name after 100000 tries",
        ))
    }

    /// Links `source` (a file or a symbolic link, itself, not followed) into the queue
    /// under `prefer`, or the first free name after it (`requeue` gives an entry back
    /// its old place). The caller removes `source`.
    pub fn adopt(&mut self, source: &Path, prefer: EntryName) -> io::Result<EntryName> {
        // link(2) does not follow a symlink: the entry is the link itself.
        let name = self.first_free(prefer, |queue, target| queue.link_from(source, target))?;
        self.handle()?.sync()?;
        Ok(name)
    }

    /// [`Queue::adopt`] of `from_name` in the directory `from` (a handle the caller
    /// opened without following a link).
    pub fn adopt_from(
        &mut self,
        from: &crate::safefs::Dir,
        from_name: &str,
        prefer: EntryName,
    ) -> io::Result<EntryName> {
        let name = self.first_free(prefer, |queue, target| {
            queue.link_from_dir(from, from_name, target)
        })?;
        self.handle()?.sync()?;
        Ok(name)
    }

    /// Adds `source` (a regular file; a symlink is refused) to the queue. (Tests'; the
    /// collector opens the event itself and adds it with [`Queue::add_file`].)
    #[cfg(test)]
    pub fn add(&mut self, source: &Path, mode: LinkMode) -> io::Result<(EntryName, Linked)> {
        use crate::safefs::{Keeper, Open};
        let file = Open::read(Keeper::Anyone).entry().at(source)?;
        let len = file.metadata()?.len();
        self.add_file(&file, source, mode, len)
    }

    /// Adds the already-opened event `file` (found at `source`) to the queue. A hard
    /// link is made to the opened inode itself, not to whatever `source` names by then,
    /// so a path swapped after the checks cannot slip another file into the queue. A
    /// copy takes at most `len` bytes (the size that was checked).
    pub fn add_file(
        &mut self,
        file: &File,
        source: &Path,
        mode: LinkMode,
        len: u64,
    ) -> io::Result<(EntryName, Linked)> {
        match mode {
            LinkMode::Symlink => {
                let name = self.place(|queue, target| queue.symlink(source, target))?;
                Ok((name, Linked::Symlink))
            }
            LinkMode::Copy => Ok((self.copy_in(file, len)?, Linked::Copy)),
            LinkMode::Hardlink => {
                match self.place(|queue, target| link_open_file(file, queue, target)) {
                    Ok(name) => {
                        // The inode is shared with the storage dir's file, which changes
                        // owner too (as with modsec_queue.pl). A failure leaves the entry
                        // root's: the shipper can still remove it, so it is only logged.
                        if let Some((uid, gid)) = self.entry_owner {
                            if let Err(e) = give_entry(file, uid, gid) {
                                log::error!("cannot give {name} to RUNAS {uid}:{gid}: {e}");
                            }
                        }
                        Ok((name, Linked::Hardlink))
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::CrossesDevices | io::ErrorKind::PermissionDenied
                        ) =>
                    {
                        log::debug!("hard link of {} refused ({e}); copying", source.display());
                        Ok((self.copy_in(file, len)?, Linked::Copy))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Copies the first `len` bytes of `file` (fewer if it ends sooner) into `.tmp/`,
    /// fsyncs the copy, links it into place, removes the temp.
    fn copy_in(&mut self, file: &File, len: u64) -> io::Result<EntryName> {
        use std::os::unix::fs::FileExt;
        let tmp_dir = self.handle()?.sub_or_create(TMP_DIR)?;
        let tmp = format!("copy.{}.{}", std::process::id(), EntryName::now());
        let result = (|| {
            let mut dst = tmp_dir.create_new(&tmp)?;
            if let Some((uid, gid)) = self.entry_owner {
                std::os::unix::fs::fchown(&dst, Some(uid), Some(gid))?;
            }
            let mut buf = vec![0u8; 64 * 1024];
            let mut offset = 0u64;
            while offset < len {
                let want = buf
                    .len()
                    .min(usize::try_from(len - offset).unwrap_or(usize::MAX));
                let n = match file.read_at(&mut buf[..want], offset) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                dst.write_all(&buf[..n])?;
                offset += n as u64;
            }
            dst.sync_all()?;
            // The copy we made, by its descriptor: not whatever `.tmp/<name>` is by now.
            self.place(|queue, target| link_open_file(&dst, queue, target))
        })();
        let _ = tmp_dir.remove(&tmp);
        if result.is_ok() {
            self.handle()?.sync()?;
        }
        result
    }

    /// Records that `name`'s file did not match its index line.
    pub fn mark_integrity(&self, name: EntryName, what: &str) -> io::Result<()> {
        let dir = self.handle()?.sub_or_create(INTEGRITY_DIR)?;
        crate::safefs::Open::truncate(crate::safefs::Keeper::DirOwner)
            .in_dir(&dir, &name.to_string())?
            .write_all(format!("{what}\n").as_bytes())
    }

    /// Entries present, oldest first (by number, not by string).
    pub fn entries(&self) -> io::Result<Vec<QueueEntry>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Some(file_name) = entry.file_name().to_str() {
                if let Some(name) = EntryName::parse(file_name) {
                    names.push(QueueEntry {
                        name,
                        file_name: file_name.to_string(),
                    });
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// The collector's integrity marker for an entry, if any.
    pub fn integrity_note(&self, file_name: &str) -> Option<String> {
        integrity_note(&self.dir, file_name)
    }

    /// Whether `.integrity/` holds any marker (when none does, a pass skips the lookups).
    pub fn any_integrity(&self) -> bool {
        !names_in(&self.dir.join(INTEGRITY_DIR)).is_empty()
    }

    /// How many entries carry an integrity marker; a missing `.integrity/` is none.
    pub fn integrity_marked(&self) -> Result<usize, (PathBuf, io::Error)> {
        let at = self.dir.join(INTEGRITY_DIR);
        match fs::read_dir(&at) {
            Ok(rd) => Ok(rd.count()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err((at, e)),
        }
    }

    /// Removes a done entry and its integrity marker. An entry already gone is removed.
    pub fn remove(&self, file_name: &str) -> io::Result<()> {
        let removed = match fs::remove_file(self.dir.join(file_name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        self.clear_integrity(file_name);
        removed
    }

    /// Removes an entry's integrity marker (gone with its entry).
    pub fn clear_integrity(&self, file_name: &str) {
        let _ = fs::remove_file(self.dir.join(INTEGRITY_DIR).join(file_name));
    }

    /// Moves an entry (whatever it is: file, symlink, directory) to `failed/` and writes
    /// `failed/<name>.reason` first, so a quarantined entry never lacks its reason.
    /// A name already in `failed/` (an entry requeued and refused again), or whose
    /// `.reason` is there already (left over, or planted), gets `.1`, `.2`….
    /// `failed/` is entered once, through a handle opened without following a link
    /// ([`crate::safefs::Dir`]): one planted in its place (`failed -> /root-only-dir`) is
    /// refused, and everything after (the names looked at, the reason file, the rename)
    /// happens in the directory that handle holds. Returns the path it now has.
    pub fn quarantine(&self, file_name: &str, reason: &str) -> io::Result<PathBuf> {
        let failed_path = self.dir.join(FAILED_DIR);
        let failed = crate::safefs::Dir::open_or_create(&failed_path)?;
        let mut target = file_name.to_string();
        let mut n = 0;
        while failed.has(&target) || failed.has(&format!("{target}{REASON_SUFFIX}")) {
            n += 1;
            target = format!("{file_name}.{n}");
        }
        let reason_name = format!("{target}{REASON_SUFFIX}");
        let note = self.integrity_note(file_name);
        reason::write(&failed, &reason_name, file_name, reason, note.as_deref())?;
        if let Err(e) = failed.move_here(&self.dir.join(file_name), &target) {
            let _ = failed.remove(&reason_name);
            return Err(e);
        }
        self.clear_integrity(file_name);
        File::open(&self.dir)?.sync_all()?;
        Ok(failed_path.join(target))
    }
}

/// The names in directory `dir` (none when it is missing or unreadable).
fn names_in(dir: &Path) -> std::collections::HashSet<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Why `dir` cannot be the queue, if it cannot: it does not exist or is no directory.
/// Every command checks this the same way before it starts.
pub fn not_a_queue(dir: &Path) -> Option<String> {
    (!dir.is_dir()).then(|| {
        format!(
            "{}: the queue (EVENT_DIR) does not exist or is not a directory",
            dir.display()
        )
    })
}

/// The collector's integrity marker for the entry `file_name` of the queue at `dir`.
pub fn integrity_note(dir: &Path, file_name: &str) -> Option<String> {
    use std::io::Read;
    // Read by root too (`requeue`): a link or FIFO planted there is not opened.
    let path = dir.join(INTEGRITY_DIR).join(file_name);
    let f = crate::safefs::Open::read(crate::safefs::Keeper::Anyone)
        .at(&path)
        .ok()?;
    let mut text = String::new();
    f.take(4096).read_to_string(&mut text).ok()?;
    Some(text.trim_end().to_string())
}

/// Gives a hard-linked entry's inode to RUNAS (`uid`, `gid`), through its descriptor,
/// and takes write away from everyone else: the web server's user, who made the file,
/// could have made it writable by all (0666) before it was queued, and rewrite the queued
/// event through the storage dir's name afterwards. Mode `0640` at most (setuid and
/// setgid cleared), readable by the owner.
fn give_entry(file: &File, uid: u32, gid: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::fchown(file, Some(uid), Some(gid))?;
    let mode = file.metadata()?.permissions().mode();
    file.set_permissions(std::fs::Permissions::from_mode((mode & 0o640) | 0o400))
}

/// Hard-links the inode behind an open file to `target` in `queue`: `AT_EMPTY_PATH`
/// where allowed (root, as the collector runs), else through `/proc/self/fd`.
fn link_open_file(file: &File, queue: &crate::safefs::Dir, target: &str) -> io::Result<()> {
    use rustix::fs::{linkat, AtFlags, CWD};
    match linkat(file, "", queue.fd(), target, AtFlags::EMPTY_PATH) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::PERM => {
            use std::os::fd::AsRawFd;
            let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
            linkat(
                CWD,
                proc_path.as_str(),
                queue.fd(),
                target,
                AtFlags::SYMLINK_FOLLOW,
            )
            .map_err(io::Error::from)
        }
        Err(e) => Err(io::Error::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn names_sort_by_number_and_accept_perl_names() {
        let mut names: Vec<EntryName> = [
            "modsec.log.100.5",
            "modsec.log.100.000040",
            "modsec.log.99.999999",
            "modsec.log.100.123456",
        ]
        .iter()
        .map(|n| EntryName::parse(n).unwrap())
        .collect();
        names.sort();
        let shown: Vec<String> = names.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "modsec.log.99.999999",
                "modsec.log.100.000005",
                "modsec.log.100.000040",
                "modsec.log.100.123456"
            ]
        );
        for bad in [
            "modsec.log.1",
            "modsec.log.a.1",
            "modsec.log.1.1234567",
            "other.1.1",
            "modsec.log.1.",
            "modsec.log.1.2.3",
        ] {
            assert_eq!(EntryName::parse(bad), None, "{bad}");
        }
        assert_eq!(
            EntryName {
                sec: 1,
                usec: 999_999
            }
            .next(),
            EntryName { sec: 2, usec: 0 }
        );
    }

    #[test]
    fn hard_links_share_the_inode_and_names_strictly_increase() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("event");
        fs::write(&src, b"data").unwrap();
        let mut q = Queue::open(&dir.path().join("q")).unwrap();
        let mut last = None;
        for _ in 0..200 {
            let (name, how) = q.add(&src, LinkMode::Hardlink).unwrap();
            assert_eq!(how, Linked::Hardlink);
            assert!(Some(name) > last);
            last = Some(name);
        }
        let entries = q.entries().unwrap();
        assert_eq!(entries.len(), 200);
        let ino = fs::metadata(&src).unwrap().ino();
        assert!(entries
            .iter()
            .all(|n| fs::metadata(q.dir().join(&n.file_name)).unwrap().ino() == ino));
    }

    #[test]
    fn two_queues_on_one_directory_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("event");
        fs::write(&src, b"data").unwrap();
        let qdir = dir.path().join("q");
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (src, qdir) = (src.clone(), qdir.clone());
                std::thread::spawn(move || {
                    let mut q = Queue::open(&qdir).unwrap();
                    (0..500)
                        .map(|_| q.add(&src, LinkMode::Hardlink).unwrap().0)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<EntryName> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 1000);
        assert_eq!(Queue::open(&qdir).unwrap().entries().unwrap().len(), 1000);
    }

    #[test]
    fn copy_and_symlink_modes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("event");
        fs::write(&src, b"data").unwrap();
        let mut q = Queue::open(&dir.path().join("q")).unwrap();
        let (name, how) = q.add(&src, LinkMode::Copy).unwrap();
        assert_eq!(how, Linked::Copy);
        let path = q.dir().join(name.to_string());
        assert_eq!(fs::read(&path).unwrap(), b"data");
        assert_ne!(
            fs::metadata(&path).unwrap().ino(),
            fs::metadata(&src).unwrap().ino()
        );
        assert_eq!(
            fs::read_dir(q.dir().join(TMP_DIR)).unwrap().count(),
            0,
            "no temp left behind"
        );
        let (name, how) = q.add(&src, LinkMode::Symlink).unwrap();
        assert_eq!(how, Linked::Symlink);
        assert_eq!(fs::read_link(q.dir().join(name.to_string())).unwrap(), src);
    }

    #[test]
    fn missing_source_is_an_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(&dir.path().join("q")).unwrap();
        for mode in [LinkMode::Hardlink, LinkMode::Copy] {
            let e = q.add(&dir.path().join("missing"), mode).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
        }
        assert!(q.entries().unwrap().is_empty());
    }

    #[test]
    fn quarantine_steps_past_a_reason_file_already_there_and_never_writes_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(&dir.path().join("q")).unwrap();
        let name = "modsec.log.1.000001";
        fs::write(q.dir().join(name), b"event").unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep me\n").unwrap();
        let failed = q.dir().join(FAILED_DIR);
        fs::create_dir_all(&failed).unwrap();
        std::os::unix::fs::symlink(&victim, failed.join(format!("{name}{REASON_SUFFIX}"))).unwrap();
        let moved = q.quarantine(name, "bad event").unwrap();
        assert_eq!(moved, failed.join(format!("{name}.1")));
        assert_eq!(fs::read(&moved).unwrap(), b"event");
        let why = failed.join(format!("{name}.1{REASON_SUFFIX}"));
        assert_eq!(reason::read(&why).as_deref(), Some("bad event"));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me\n");
        assert!(!q.dir().join(name).exists());
    }

    #[test]
    fn the_link_mode_is_link_mode_else_the_old_symlink_key() {
        let mode = |text: &str| {
            let c = crate::config::ConfigFile::parse(text, Path::new("/etc/m.conf")).unwrap();
            LinkMode::configured(&c).map_err(|e| e.to_string())
        };
        assert_eq!(
            mode("set LINK_MODE copy\nset SYMLINK 1\n"),
            Ok(Some(LinkMode::Copy))
        );
        assert_eq!(mode("set SYMLINK 1\n"), Ok(Some(LinkMode::Symlink)));
        assert_eq!(mode("set SYMLINK 0\n"), Ok(Some(LinkMode::Hardlink)));
        assert_eq!(mode("set DEBUG 0\n"), Ok(None));
        let e = mode("set DEBUG 0\nset LINK_MODE teleport\n").unwrap_err();
        assert!(
            e.starts_with("/etc/m.conf:2: LINK_MODE: bad value `teleport`"),
            "{e}"
        );
    }
}
