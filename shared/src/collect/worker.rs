//! What happens to one index line, in three steps: the [`Checker`] (parse, open, size),
//! the [`Hasher`] (md5) and the [`Committer`] (index file, queue, backlog).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use md5::{Digest, Md5};

use super::index_file::IndexFile;
use super::pipeline::{write_backlog, Stages};
use super::{CollectorSettings, InputLine, Stats, MAX_LINE_BYTES};
use crate::index::{parse_index_line, IndexFlavor, IndexLine};
use crate::queue::{Linked, Queue};
use crate::state::StateDir;

/// What happened to a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineOutcome {
    /// Queued; `integrity` says what did not match the index line, if anything.
    Queued {
        entry: String,
        linked: Linked,
        integrity: Option<String>,
    },
    /// Appended to the backlog for `requeue --backlog`, with the reason.
    Backlogged { reason: String },
    /// An empty line: nothing to do.
    Empty,
}

/// Acts on index lines: appends them to the index file, checks and queues the events.
///
/// The work is split in three steps that the pipeline runs on a thread each, so opening
/// the next event, hashing the one before it and linking the one before that overlap:
/// the [`Checker`] parses the line, opens the event and compares its size; the
/// [`Hasher`] compares its md5 (no thread for it when VERIFY_MD5 is off); the
/// [`Committer`] appends the line to the index file and queues the event, or puts the
/// line in the backlog. Lines keep their order. Hashing is about as much CPU as the
/// checker and the committer together: on a thread of its own the work spreads over
/// two cores where with two steps one core waited for the other. A line that finds the
/// steps idle goes through all three on the checker's thread (see the pipeline).
pub struct Worker {
    pub(super) checker: Checker,
    pub(super) hasher: Hasher,
    pub(super) committer: Committer,
}

/// First step: parse, open, compare the size. Nothing on disk changes here.
pub struct Checker {
    settings: CollectorSettings,
    /// The last event directory, opened through a chain of real directories (never a
    /// symlink): events of one minute share it, so it is walked once, not once per line,
    /// and a path swapped later cannot redirect the handle.
    /// With its owner: the user Apache writes events as, who must own them too.
    event_dir: Option<(PathBuf, std::os::fd::OwnedFd, u32)>,
    /// Open events with `O_NOATIME`: reading an event just written would otherwise
    /// update its access time, an inode write per event on a `relatime` mount.
    noatime: bool,
}

/// Second step: the md5 of an opened event (when VERIFY_MD5 is on). Reads the event,
/// changes nothing.
pub struct Hasher {
    /// Read buffer, reused for every event.
    buf: Vec<u8>,
}

/// Last step: index file, queue, RUNAS, integrity marker, backlog, record of what was
/// queued.
pub struct Committer {
    pub(super) settings: CollectorSettings,
    queue: Queue,
    state: StateDir,
    /// The record of what was queued, held open.
    record: crate::state::QueuedRecord,
    /// Opened by the first line, on the committer's thread ([`super::index_file`]).
    index: Option<IndexFile>,
    pub(super) reopen_index: Arc<AtomicBool>,
    stats: Arc<Stats>,
}

/// A line after the checker (and then after the hasher).
pub struct Checked {
    pub line: InputLine,
    /// The line's unique id, once it parsed (for the log when a later step fails).
    unique_id: Option<String>,
    verdict: Verdict,
}

enum Verdict {
    /// A blank line: nothing to do, not even the index file.
    Empty,
    /// Why the line cannot be queued.
    Refused(String),
    Ready(OpenEvent),
}

/// An event opened and checked, ready to queue (once hashed, when `md5_due`).
struct OpenEvent {
    file: File,
    path: PathBuf,
    /// Its size when checked (at most MAX_EVENT_BYTES): what is hashed and copied, so
    /// a file grown (or made sparse-huge) after the check is not read further.
    len: u64,
    /// What did not match the index line so far.
    problems: Vec<String>,
    /// The index line's md5, while the [`Hasher`] has still to compare it.
    md5_due: Option<[u8; 16]>,
}

impl OpenEvent {
    /// What did not match the index line, for the log and the integrity marker.
    fn integrity(&self) -> Option<String> {
        (!self.problems.is_empty()).then(|| {
            format!(
                "truncated or changed event file: {}",
                self.problems.join(", ")
            )
        })
    }
}

impl Worker {
    pub fn new(
        settings: CollectorSettings,
        reopen_index: Arc<AtomicBool>,
        stats: Arc<Stats>,
    ) -> io::Result<Worker> {
        let state = StateDir::open(&settings.state_dir, settings.runas.map(|(_, gid)| gid))?;
        let queue = Queue::open_checked(&settings.queue_dir, settings.runas)?;
        if let Some(handle) = queue.checked_handle() {
            if let Err(e) = super::migrate::from_queue(handle, &settings.queue_dir, &state) {
                log::error!(
                    "taking over 0.1.0's files from the queue {}: {e}",
                    settings.queue_dir.display()
                );
            }
        }
        let index = settings.index_file.as_deref().map(IndexFile::new);
        Ok(Worker {
            checker: Checker {
                settings: settings.clone(),
                event_dir: None,
                noatime: true,
            },
            hasher: Hasher {
                buf: vec![0; 64 * 1024],
            },
            committer: Committer {
                settings,
                queue,
                record: state.queued_record(),
                state,
                index,
                reopen_index,
                stats,
            },
        })
    }

    pub fn queue(&self) -> &Queue {
        &self.committer.queue
    }

    /// The collector's state dir (its backlog and record of what it queued).
    pub fn state(&self) -> &StateDir {
        &self.committer.state
    }

    /// The checker's settings, for tests that change one after the start.
    #[cfg(test)]
    pub(super) fn checker_settings_mut(&mut self) -> &mut CollectorSettings {
        &mut self.checker.settings
    }

    /// The storage dir event files must lie under.
    pub fn storage_dir(&self) -> &Path {
        &self.checker.settings.storage_dir
    }

    /// Handles one line on this thread; never fails: what cannot be queued goes to the backlog.
    pub fn handle(&mut self, line: &InputLine) -> LineOutcome {
        let checked = self.check(line);
        self.committer.commit(checked)
    }

    /// The first two steps on this thread.
    fn check(&mut self, line: &InputLine) -> Checked {
        self.hasher.verify(self.checker.check(line.clone()))
    }

    /// Checks and queues one line without touching the index file or the backlog (for
    /// `requeue`): the entry made, or why there is none.
    pub fn try_queue(
        &mut self,
        line: &InputLine,
    ) -> Result<(String, Linked, Option<String>), String> {
        let checked = self.check(line);
        let id = checked.unique_id.clone().unwrap_or_else(|| "-".into());
        match checked.verdict {
            Verdict::Empty => Err("empty line".into()),
            Verdict::Refused(why) => Err(why),
            Verdict::Ready(event) => self.committer.queue_event(event, &id),
        }
    }

    /// What [`Worker::try_queue`] would do, changing nothing: `Ok` with what did not
    /// match the index line (if anything), or why the line cannot be queued.
    pub fn dry_check(&mut self, line: &InputLine) -> Result<Option<String>, String> {
        match self.check(line).verdict {
            Verdict::Empty => Err("empty line".into()),
            Verdict::Refused(why) => Err(why),
            Verdict::Ready(event) => Ok(event.integrity()),
        }
    }

    /// The steps, for the pipeline's threads (no hasher without VERIFY_MD5).
    pub fn into_stages(self) -> Stages<Checked> {
        let Worker {
            mut checker,
            mut hasher,
            mut committer,
        } = self;
        Stages {
            check: Box::new(move |line| checker.check(line)),
            // Without md5 there is nothing to hash: no thread for it.
            verify: committer.settings.verify_md5.then(
                || -> Box<dyn FnMut(Checked) -> Checked + Send> {
                    Box::new(move |checked| hasher.verify(checked))
                },
            ),
            commit: Box::new(move |checked| {
                committer.commit(checked);
            }),
        }
    }
}

impl Checker {
    /// Parses the line and opens and checks its event.
    pub fn check(&mut self, line: InputLine) -> Checked {
        if line.bytes.iter().all(|b| b.is_ascii_whitespace()) && line.full_len == line.bytes.len() {
            return Checked {
                line,
                unique_id: None,
                verdict: Verdict::Empty,
            };
        }
        if line.full_len > line.bytes.len() {
            let why = format!(
                "line of {} bytes is longer than {MAX_LINE_BYTES}; kept cut",
                line.full_len
            );
            return Checked {
                line,
                unique_id: None,
                verdict: Verdict::Refused(why),
            };
        }
        let parsed = match parse_index_line(&line.bytes) {
            Ok(p) => p,
            Err(e) => {
                return Checked {
                    line,
                    unique_id: None,
                    verdict: Verdict::Refused(e.to_string()),
                }
            }
        };
        let verdict = match self.open_and_check(&parsed) {
            Ok(event) => Verdict::Ready(event),
            Err(why) => Verdict::Refused(why),
        };
        Checked {
            line,
            unique_id: Some(parsed.unique_id),
            verdict,
        }
    }

    fn open_and_check(&mut self, parsed: &IndexLine) -> Result<OpenEvent, String> {
        let path = resolve_event_path(&self.settings.storage_dir, parsed)?;
        let (file, dir_owner) = self.open_event(&path)?;
        let rules = EventRules {
            owners: [
                Some(self.settings.event_owner.unwrap_or(dir_owner)),
                self.settings.runas.map(|(uid, _)| uid),
            ],
            max_bytes: self.settings.max_event_bytes,
        };
        let (len, problems) = check_event(&file, &path, parsed, &rules)?;
        Ok(OpenEvent {
            file,
            path,
            len,
            problems,
            md5_due: self.settings.verify_md5.then_some(parsed.md5),
        })
    }

    /// Opens the event below the storage dir without following any symlink on the way:
    /// each directory with `O_DIRECTORY|O_NOFOLLOW` from the one above, the file with
    /// `O_NOFOLLOW|O_NONBLOCK` (a planted FIFO must not hang the worker).
    fn open_event(&mut self, path: &Path) -> Result<(File, u32), String> {
        use rustix::fs::{openat, Mode, OFlags, CWD};
        let storage = self.settings.storage_dir.clone();
        let rel = path
            .strip_prefix(&storage)
            .map_err(|_| format!("{} is outside the storage dir", path.display()))?;
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Err(format!("{} names no file", path.display()));
        };
        let explain = |at: &Path, e: rustix::io::Errno| -> String {
            if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::MLINK {
                format!("{} is a symbolic link; not followed", at.display())
            } else if e == rustix::io::Errno::NOTDIR {
                format!(
                    "{} is not a directory (or is a symbolic link); not followed",
                    at.display()
                )
            } else {
                format!("{}: {}", at.display(), io::Error::from(e))
            }
        };
        for attempt in 0..2 {
            let cached = matches!(&self.event_dir, Some((p, ..)) if p == parent);
            if !cached {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
                let mut dir = openat(CWD, &storage, flags, Mode::empty())
                    .map_err(|e| explain(&storage, e))?;
                let mut at = storage.clone();
                for comp in parent.components() {
                    at.push(comp);
                    dir = openat(
                        &dir,
                        comp.as_os_str(),
                        flags | OFlags::NOFOLLOW,
                        Mode::empty(),
                    )
                    .map_err(|e| explain(&at, e))?;
                }
                let owner = rustix::fs::fstat(&dir).map_err(|e| explain(&at, e))?.st_uid;
                self.event_dir = Some((parent.to_path_buf(), dir, owner));
            }
            let Some((_, dir, owner)) = self.event_dir.as_ref() else {
                break;
            };
            let owner = *owner;
            let mut flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
            if self.noatime {
                flags |= OFlags::NOATIME;
            }
            match openat(dir, name, flags, Mode::empty()) {
                Ok(fd) => return Ok((File::from(fd), owner)),
                // O_NOATIME is for the file's owner and root (requeue may be neither).
                Err(rustix::io::Errno::PERM) if self.noatime => {
                    self.noatime = false;
                    match openat(dir, name, flags - OFlags::NOATIME, Mode::empty()) {
                        Ok(fd) => return Ok((File::from(fd), owner)),
                        Err(e) => return Err(explain(path, e)),
                    }
                }
                // The cached directory may have been removed and made anew: walk again once.
                Err(e) if e == rustix::io::Errno::NOENT && cached && attempt == 0 => {
                    self.event_dir = None
                }
                Err(e) => return Err(explain(path, e)),
            }
        }
        Err(format!("{}: No such file or directory", path.display()))
    }
}

/// What an event file must be before root reads it (the storage dir is written by the
/// web server's user, who can plant anything a forged index line then names).
struct EventRules {
    /// Who may own it: EVENT_OWNER, else the owner of the directory holding it (the user
    /// Apache writes events as); and RUNAS (an entry the collector already gave to the
    /// shipper). Never root: no web server writes events as root, and a root-owned file
    /// with one link in a storage dir is one that another user linked there (with
    /// `fs.protected_hardlinks=0`) before its first name went away.
    owners: [Option<u32>; 2],
    /// MAX_EVENT_BYTES: root neither hashes nor copies more.
    max_bytes: u64,
}

/// Checks the opened event: a regular file with one link, owned as [`EventRules`] says,
/// not larger than the limit. Returns its size and whether that matches the line's.
///
/// One link: ModSecurity writes each event once, under one name. A second name is a
/// hard link someone made — with `fs.protected_hardlinks=0`, the web server's user can
/// link `/etc/shadow` into the storage dir and name it in a forged index line; root
/// would then hand the inode to RUNAS (hard-link mode) or copy its contents into the
/// queue. A file whose other name went away (the original replaced by rename) keeps its
/// old owner, which the owner rule refuses.
fn check_event(
    file: &File,
    path: &Path,
    line: &IndexLine,
    rules: &EventRules,
) -> Result<(u64, Vec<String>), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.nlink() != 1 {
        return Err(format!(
            "{} has {} hard links; an event file has one (a link planted in the storage dir?): not read",
            path.display(),
            meta.nlink()
        ));
    }
    if meta.uid() == 0 {
        return Err(format!(
            "{} belongs to root; ModSecurity writes events as the web server's user: not read",
            path.display()
        ));
    }
    if !rules.owners.contains(&Some(meta.uid())) {
        return Err(format!(
            "{} belongs to uid {}, not to the user who writes the events (uid {}): not read",
            path.display(),
            meta.uid(),
            rules.owners[0].map_or_else(|| "?".into(), |u| u.to_string())
        ));
    }
    if meta.len() > rules.max_bytes {
        return Err(format!(
            "{} is {} bytes, more than MAX_EVENT_BYTES ({}): not read",
            path.display(),
            meta.len(),
            rules.max_bytes
        ));
    }
    let problems = if meta.len() != line.size {
        vec![format!(
            "size {} bytes, index line says {}",
            meta.len(),
            line.size
        )]
    } else {
        Vec::new()
    };
    Ok((meta.len(), problems))
}

impl Hasher {
    /// Compares the md5 of a checked line's event with its index line's, when due; an
    /// event that cannot be read is refused.
    pub fn verify(&mut self, mut checked: Checked) -> Checked {
        let Verdict::Ready(event) = &mut checked.verdict else {
            return checked;
        };
        let Some(want) = event.md5_due.take() else {
            return checked;
        };
        match md5_of(&mut event.file, event.len, &mut self.buf) {
            Ok(digest) if digest == want => {}
            Ok(_) => event.problems.push(format!(
                "md5 differs from the index line's {}",
                crate::hex::lower(&want)
            )),
            Err(e) => checked.verdict = Verdict::Refused(format!("{}: {e}", event.path.display())),
        }
        checked
    }
}

impl Committer {
    /// Appends the line to the index file and queues its event, or backlogs the line.
    pub fn commit(&mut self, checked: Checked) -> LineOutcome {
        let Checked {
            line,
            unique_id,
            verdict,
        } = checked;
        let checked = match verdict {
            Verdict::Empty => return LineOutcome::Empty,
            Verdict::Ready(event) => Ok(event),
            Verdict::Refused(why) => Err(why),
        };
        if let Some(index) = self.index.as_mut() {
            if self.reopen_index.swap(false, Ordering::Relaxed) {
                index.reopen();
            }
            index.append(&line.bytes);
        }
        let id = unique_id.as_deref().unwrap_or("-");
        let result = checked.and_then(|event| self.queue_event(event, id));
        match result {
            Ok((entry, linked, integrity)) => {
                log::debug!("queued {entry} ({linked:?})");
                LineOutcome::Queued {
                    entry,
                    linked,
                    integrity,
                }
            }
            Err(reason) => {
                log::warn!("not queued (unique id {id}): {reason}; line kept in the backlog");
                write_backlog(
                    &self.state,
                    std::slice::from_ref(&line),
                    &reason,
                    &self.stats,
                );
                LineOutcome::Backlogged { reason }
            }
        }
    }

    /// Records a queued event's unique id in the state dir, so a spool or index line
    /// read again after a crash does not queue it twice.
    fn remember(&mut self, unique_id: &str) {
        if unique_id.is_empty() || unique_id == "-" {
            return;
        }
        if let Err(e) = self.record.add(&[unique_id]) {
            log::error!(
                "cannot record unique id {} as queued in {}: {e}; after a crash it may be queued twice",
                crate::escape::escape_text(unique_id),
                self.state.path().display()
            );
        }
    }

    /// Queues a checked event (counted, and remembered in the state dir's record), and
    /// marks it when it did not match its index line.
    fn queue_event(
        &mut self,
        event: OpenEvent,
        unique_id: &str,
    ) -> Result<(String, Linked, Option<String>), String> {
        debug_assert!(
            event.md5_due.is_none(),
            "an event queued before its md5 check"
        );
        let integrity = event.integrity();
        let OpenEvent {
            file, path, len, ..
        } = event;
        let (name, linked) = self
            .queue
            .add_file(&file, &path, self.settings.link_mode, len)
            .map_err(|e| format!("cannot queue {}: {e}", path.display()))?;
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.remember(unique_id);
        if let Some(what) = &integrity {
            self.stats
                .integrity_mismatches
                .fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "{} (unique id {unique_id}): {what}; queued and marked",
                path.display()
            );
            if let Err(e) = self.queue.mark_integrity(name, what) {
                log::error!("cannot write the integrity marker for {name}: {e}");
            }
        }
        Ok((name.to_string(), linked, integrity))
    }
}

/// MD5 of the first `len` bytes of a regular file from its current offset (fewer if it
/// ends sooner), reading into `buf`. Stopping at `len` bounds root's work whatever the
/// file became after its size was checked, and saves the read() that would return 0.
fn md5_of(f: &mut File, len: u64, buf: &mut [u8]) -> io::Result<[u8; 16]> {
    let mut h = Md5::new();
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match f.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h.finalize().into())
}

/// The event file a line names, refusing anything that would leave the storage dir.
pub fn resolve_event_path(storage: &Path, line: &IndexLine) -> Result<PathBuf, String> {
    use std::os::unix::ffi::OsStrExt;
    let name = &line.filename;
    if name.contains(&0) {
        return Err("file name contains a NUL byte".into());
    }
    let rel: &Path = match line.flavor {
        // Relative to SecAuditLogStorageDir, written with a leading "/".
        IndexFlavor::ModSecurity2 => Path::new(std::ffi::OsStr::from_bytes(
            name.strip_prefix(b"/").unwrap_or(name),
        )),
        // libmodsecurity 3 writes absolute paths; they must lie under the storage dir.
        IndexFlavor::LibModSecurity3 => Path::new(std::ffi::OsStr::from_bytes(name))
            .strip_prefix(storage)
            .map_err(|_| {
                format!(
                    "{} is not under the storage dir {}",
                    String::from_utf8_lossy(name),
                    storage.display()
                )
            })?,
    };
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!(
            "file name {} leaves the storage dir or is not a plain relative path",
            String::from_utf8_lossy(name)
        ));
    }
    Ok(storage.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_that_cannot_be_read_for_its_md5_is_refused_naming_it() {
        // Opened for writing only: read() fails (EBADF), as on a disk that fails.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("20261128-021431-unreadable");
        std::fs::write(&path, b"event").unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let checked = Checked {
            line: InputLine {
                bytes: b"line\n".to_vec(),
                full_len: 5,
            },
            unique_id: Some("awo5B9rt9m7QJiOqXPD3lQAAAEg".into()),
            verdict: Verdict::Ready(OpenEvent {
                file,
                path: path.clone(),
                len: 1 << 20,
                problems: Vec::new(),
                md5_due: Some([0; 16]),
            }),
        };
        let mut hasher = Hasher { buf: vec![0; 64] };
        match hasher.verify(checked).verdict {
            Verdict::Refused(why) => assert!(
                why.starts_with(&format!("{}: ", path.display()))
                    && why.contains("Bad file descriptor"),
                "{why}"
            ),
            _ => panic!("an unreadable event was not refused"),
        }
    }
}
