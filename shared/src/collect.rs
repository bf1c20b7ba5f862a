//! What `modsec-collector` does with each index line, and the reader/worker pipeline
//! that keeps Apache from ever waiting on it (DESIGN.md, "Failure rules").
//!
//! The reader only reads lines and hands them over; it never touches the disk and never
//! waits: when the worker falls behind (a burst, a slow or hung disk), lines spill to a
//! second thread that appends them to this process's spool, which the worker drains as
//! soon as it catches up. Every line read ends up queued or in the backlog (with its
//! reason logged), or in a spool that this or the next collector drains.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use md5::{Digest, Md5};

use crate::config::ConfigFile;
use crate::index::{parse_index_line, IndexFlavor, IndexLine};
use crate::queue::{LinkMode, Linked, Queue};

/// ModSecurity 2 keeps index lines under 4 KiB (PIPE_BUF); a line 16 times that is not
/// an index line. Longer lines are cut to this, logged and put in the backlog.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Lines waiting for the worker in memory before new ones are spooled to disk: about
/// 1 MiB of typical lines.
pub const WORK_QUEUE_LINES: usize = 4096;

/// Settings of one collector.
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    /// SecAuditLogStorageDir.
    pub storage_dir: PathBuf,
    /// The queue (modsec_agent.conf's EVENT_DIR).
    pub queue_dir: PathBuf,
    /// Where every line is appended unchanged, if anywhere.
    pub index_file: Option<PathBuf>,
    pub link_mode: LinkMode,
    pub verify_md5: bool,
    /// Owner (uid, gid) given to each new entry (RUNAS), so an unprivileged shipper can
    /// read and remove it. A hard link shares the inode: the event file in the storage
    /// dir changes owner too, as it did with modsec_queue.pl.
    pub runas: Option<(u32, u32)>,
}

/// Settings given on the command line; they win over the config file.
#[derive(Debug, Clone, Default)]
pub struct CollectorOverrides {
    pub storage_dir: Option<PathBuf>,
    pub queue_dir: Option<PathBuf>,
    pub index_file: Option<PathBuf>,
    pub link_mode: Option<LinkMode>,
    pub verify_md5: Option<bool>,
}

impl CollectorSettings {
    /// Combines the config file (`EVENT_DIR`, `STORAGE_DIR`, `INDEX_FILE`, `LINK_MODE` or
    /// `SYMLINK`, `VERIFY_MD5`, `RUNAS`) with the command line. Errors name the file,
    /// line and key, or the missing setting.
    pub fn resolve(
        config: Option<&ConfigFile>,
        o: CollectorOverrides,
    ) -> Result<CollectorSettings, String> {
        let from_config = |key: &str| -> Result<Option<PathBuf>, String> {
            config
                .map_or(Ok(None), |c| c.abs_path(key))
                .map_err(|e| e.to_string())
        };
        let queue_dir = match o.queue_dir {
            Some(q) => q,
            None => from_config("EVENT_DIR")?
                .ok_or("no queue: set EVENT_DIR in the config file or give --queue")?,
        };
        let storage_dir = match o.storage_dir {
            Some(s) => s,
            None => from_config("STORAGE_DIR")?
                .ok_or("no storage dir: give it as the first argument, --storage-dir, or STORAGE_DIR in the config file")?,
        };
        let index_file = match o.index_file {
            Some(i) => Some(i),
            None => from_config("INDEX_FILE")?,
        };
        let link_mode = match o.link_mode {
            Some(m) => m,
            None => match config.and_then(|c| c.get("LINK_MODE")) {
                Some(s) => LinkMode::parse(&s.value).ok_or_else(|| {
                    config
                        .expect("has the key")
                        .bad(s, "expected hardlink, copy or symlink")
                        .to_string()
                })?,
                None => match config
                    .map(|c| c.bool("SYMLINK"))
                    .transpose()
                    .map_err(|e| e.to_string())?
                    .flatten()
                {
                    Some(true) => LinkMode::Symlink,
                    _ => LinkMode::Hardlink,
                },
            },
        };
        let verify_md5 = match o.verify_md5 {
            Some(v) => v,
            None => config
                .map(|c| c.bool("VERIFY_MD5"))
                .transpose()
                .map_err(|e| e.to_string())?
                .flatten()
                .unwrap_or(true),
        };
        let runas = match config
            .and_then(|c| c.get("RUNAS"))
            .filter(|s| !s.value.is_empty())
        {
            Some(s) => Some(
                resolve_owner(&s.value)
                    .map_err(|why| config.expect("has the key").bad(s, why).to_string())?,
            ),
            None => None,
        };
        for (what, dir) in [("storage dir", &storage_dir), ("queue", &queue_dir)] {
            if !dir.is_absolute() {
                return Err(format!("{what} {} must be an absolute path (Apache starts the collector in ServerRoot)", dir.display()));
            }
        }
        Ok(CollectorSettings {
            storage_dir,
            queue_dir,
            index_file,
            link_mode,
            verify_md5,
            runas,
        })
    }
}

/// `user` or `user:group` to (uid, gid); the group defaults to the user's primary group.
pub fn resolve_owner(spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = nix::unistd::User::from_name(user)
        .map_err(|e| format!("cannot look up user `{user}`: {e}"))?
        .ok_or_else(|| format!("no such user `{user}`"))?;
    let gid = match group {
        Some(g) => {
            nix::unistd::Group::from_name(g)
                .map_err(|e| format!("cannot look up group `{g}`: {e}"))?
                .ok_or_else(|| format!("no such group `{g}`"))?
                .gid
        }
        None => u.gid,
    };
    Ok((u.uid.as_raw(), gid.as_raw()))
}

/// One line as read: at most [`MAX_LINE_BYTES`], and how long it really was.
#[derive(Debug, Clone)]
pub struct InputLine {
    pub bytes: Vec<u8>,
    pub full_len: usize,
}

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

/// Counters a collector reports when it exits.
#[derive(Debug, Default)]
pub struct Stats {
    /// Lines the reader took from the input.
    pub read: AtomicU64,
    pub queued: AtomicU64,
    pub backlogged: AtomicU64,
    pub spilled: AtomicU64,
    pub integrity_mismatches: AtomicU64,
}

/// Acts on index lines: appends them to the index file, checks and queues the events.
///
/// The work is split in two halves that the pipeline runs on two threads, so hashing
/// the next event overlaps with linking this one: the [`Checker`] parses the line, opens
/// and checks the event (size, md5); the [`Committer`] appends the line to the index
/// file and queues the event, or puts the line in the backlog. Lines keep their order.
pub struct Worker {
    checker: Checker,
    committer: Committer,
}

/// First half: parse, open, check. Nothing on disk changes here.
pub struct Checker {
    settings: CollectorSettings,
    /// The last event directory, opened through a chain of real directories (never a
    /// symlink): events of one minute share it, so it is walked once, not once per line,
    /// and a path swapped later cannot redirect the handle.
    event_dir: Option<(PathBuf, std::os::fd::OwnedFd)>,
    /// Read buffer for hashing, reused for every event.
    buf: Vec<u8>,
}

/// Second half: index file, queue, RUNAS, integrity marker, backlog.
pub struct Committer {
    settings: CollectorSettings,
    queue: Queue,
    index: Option<File>,
    reopen_index: Arc<AtomicBool>,
    stats: Arc<Stats>,
}

/// A line after the checker.
pub struct Checked {
    pub line: InputLine,
    result: Result<OpenEvent, String>,
}

/// An event opened and checked, ready to queue.
struct OpenEvent {
    file: File,
    path: PathBuf,
    unique_id: String,
    integrity: Option<String>,
}

impl Worker {
    pub fn new(
        settings: CollectorSettings,
        reopen_index: Arc<AtomicBool>,
        stats: Arc<Stats>,
    ) -> io::Result<Worker> {
        let queue = Queue::open(&settings.queue_dir)?;
        let index = match &settings.index_file {
            Some(p) => Some(open_index(p)?),
            None => None,
        };
        Ok(Worker {
            checker: Checker {
                settings: settings.clone(),
                event_dir: None,
                buf: vec![0; 64 * 1024],
            },
            committer: Committer {
                settings,
                queue,
                index,
                reopen_index,
                stats,
            },
        })
    }

    pub fn queue(&self) -> &Queue {
        &self.committer.queue
    }

    /// Handles one line on this thread; never fails: what cannot be queued goes to the backlog.
    pub fn handle(&mut self, line: &InputLine) -> LineOutcome {
        let checked = self.checker.check(line.clone());
        self.committer.commit(checked)
    }

    /// The two halves, for the pipeline's two threads.
    pub fn into_stages(self) -> Stages<Checked> {
        let Worker {
            mut checker,
            mut committer,
        } = self;
        Stages {
            check: Box::new(move |line| checker.check(line)),
            commit: Box::new(move |checked| {
                committer.commit(checked);
            }),
            line_of: |c: &Checked| &c.line,
        }
    }
}

impl Checker {
    /// Parses the line and opens and checks its event.
    pub fn check(&mut self, line: InputLine) -> Checked {
        let result = self.open_and_check(&line);
        Checked { line, result }
    }

    fn open_and_check(&mut self, line: &InputLine) -> Result<OpenEvent, String> {
        if line.full_len > line.bytes.len() {
            return Err(format!(
                "line of {} bytes is longer than {MAX_LINE_BYTES}; kept cut",
                line.full_len
            ));
        }
        let parsed = parse_index_line(&line.bytes).map_err(|e| e.to_string())?;
        let path = resolve_event_path(&self.settings.storage_dir, &parsed)?;
        let mut file = self.open_event(&path)?;
        let integrity = self.check_integrity(&mut file, &path, &parsed)?;
        Ok(OpenEvent {
            file,
            path,
            unique_id: parsed.unique_id,
            integrity,
        })
    }

    /// Opens the event below the storage dir without following any symlink on the way:
    /// each directory with `O_DIRECTORY|O_NOFOLLOW` from the one above, the file with
    /// `O_NOFOLLOW|O_NONBLOCK` (a planted FIFO must not hang the worker).
    fn open_event(&mut self, path: &Path) -> Result<File, String> {
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
            let cached = matches!(&self.event_dir, Some((p, _)) if p == parent);
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
                self.event_dir = Some((parent.to_path_buf(), dir));
            }
            let Some((_, dir)) = self.event_dir.as_ref() else {
                break;
            };
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
            match openat(dir, name, flags, Mode::empty()) {
                Ok(fd) => return Ok(File::from(fd)),
                // The cached directory may have been removed and made anew: walk again once.
                Err(e) if e == rustix::io::Errno::NOENT && cached && attempt == 0 => {
                    self.event_dir = None
                }
                Err(e) => return Err(explain(path, e)),
            }
        }
        Err(format!("{}: No such file or directory", path.display()))
    }

    /// Checks the opened event is a regular file and compares it with the line's size
    /// (always) and md5 (when enabled).
    fn check_integrity(
        &mut self,
        file: &mut File,
        path: &Path,
        line: &IndexLine,
    ) -> Result<Option<String>, String> {
        let shown = || path.display().to_string();
        let meta = file.metadata().map_err(|e| format!("{}: {e}", shown()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", shown()));
        }
        let mut problems = Vec::new();
        if meta.len() != line.size {
            problems.push(format!(
                "size {} bytes, index line says {}",
                meta.len(),
                line.size
            ));
        }
        if self.settings.verify_md5 {
            let digest = md5_of(file, &mut self.buf).map_err(|e| format!("{}: {e}", shown()))?;
            if digest != line.md5 {
                problems.push(format!(
                    "md5 differs from the index line's {}",
                    line.md5_hex()
                ));
            }
        }
        Ok((!problems.is_empty())
            .then(|| format!("truncated or changed event file: {}", problems.join(", "))))
    }
}

impl Committer {
    /// Appends the line to the index file and queues its event, or backlogs the line.
    pub fn commit(&mut self, checked: Checked) -> LineOutcome {
        let line = &checked.line;
        if line.bytes.iter().all(|b| b.is_ascii_whitespace()) && line.full_len == line.bytes.len() {
            return LineOutcome::Empty;
        }
        if let Err(e) = self.append_index(&line.bytes) {
            log::error!("cannot append to the index file: {e}");
        }
        let result = checked.result.and_then(|event| self.queue_event(event));
        match result {
            Ok((entry, linked, integrity)) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
                log::debug!("queued {entry} ({linked:?})");
                LineOutcome::Queued {
                    entry,
                    linked,
                    integrity,
                }
            }
            Err(reason) => {
                let id = parse_index_line(&line.bytes)
                    .map(|l| l.unique_id)
                    .unwrap_or_else(|_| "-".into());
                log::warn!("not queued (unique id {id}): {reason}; line kept in the backlog");
                self.backlog(&line.bytes, &reason);
                LineOutcome::Backlogged { reason }
            }
        }
    }

    /// Appends to the backlog; if even that fails, the line goes to the log in full.
    fn backlog(&self, raw: &[u8], reason: &str) {
        self.stats.backlogged.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.queue.backlog(raw, reason) {
            log::error!(
                "cannot write the backlog ({e}); lost line follows: {}",
                String::from_utf8_lossy(raw).trim_end()
            );
        }
    }

    fn append_index(&mut self, raw: &[u8]) -> io::Result<()> {
        let Some(path) = &self.settings.index_file else {
            return Ok(());
        };
        if self.reopen_index.swap(false, Ordering::Relaxed) || self.index.is_none() {
            self.index = Some(open_index(path)?);
        }
        let Some(f) = self.index.as_mut() else {
            return Ok(());
        };
        if raw.ends_with(b"\n") {
            f.write_all(raw)
        } else {
            f.write_all(&[raw, b"\n"].concat())
        }
    }

    fn queue_event(
        &mut self,
        event: OpenEvent,
    ) -> Result<(String, Linked, Option<String>), String> {
        let OpenEvent {
            file,
            path,
            unique_id,
            integrity,
        } = event;
        let (name, linked) = self
            .queue
            .add_file(&file, &path, self.settings.link_mode)
            .map_err(|e| format!("cannot queue {}: {e}", path.display()))?;
        if let Some((uid, gid)) = self.settings.runas {
            let entry = self.queue.dir().join(name.to_string());
            // A hard link is the opened inode: chown that, never a path that could
            // have been swapped. Copies and symlinks are ours, in the queue.
            let done = match linked {
                Linked::Hardlink => std::os::unix::fs::fchown(&file, Some(uid), Some(gid)),
                Linked::Copy | Linked::Symlink => {
                    std::os::unix::fs::lchown(&entry, Some(uid), Some(gid))
                }
            };
            if let Err(e) = done {
                log::error!("cannot chown {} to RUNAS {uid}:{gid}: {e}", entry.display());
            }
        }
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

fn open_index(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// MD5 of a regular file from its current offset, reading into `buf`. A read shorter
/// than asked for is the end of a regular file, which saves the extra read() that would
/// only return 0 (one syscall per event).
fn md5_of(f: &mut File, buf: &mut [u8]) -> io::Result<[u8; 16]> {
    let mut h = Md5::new();
    loop {
        let n = match f.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        if n < buf.len() {
            return Ok(h.finalize().into());
        }
    }
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

/// Reads lines of at most [`MAX_LINE_BYTES`] (the rest of a longer line is skipped and
/// counted). Returns `None` at end of input.
pub fn read_line(input: &mut impl BufRead) -> io::Result<Option<InputLine>> {
    let mut bytes = Vec::new();
    let mut full_len = 0usize;
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok((full_len > 0).then_some(InputLine { bytes, full_len }));
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(p) => (&buf[..=p], true),
            None => (buf, false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(bytes.len());
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        full_len += chunk.len();
        let n = chunk.len();
        input.consume(n);
        if done {
            return Ok(Some(InputLine { bytes, full_len }));
        }
    }
}

/// Something that acts on lines in one step: a test's stand-in for the [`Worker`].
pub trait LineSink: Send {
    fn handle(&mut self, line: &InputLine);
}

/// The two steps the pipeline runs on two threads, in order: `check` (may be slow,
/// changes nothing) and `commit`. `line_of` gives back the line of a checked item, so a
/// second SIGTERM can put unfinished ones in the backlog.
pub struct Stages<T> {
    pub check: Box<dyn FnMut(InputLine) -> T + Send>,
    pub commit: Box<dyn FnMut(T) + Send>,
    pub line_of: fn(&T) -> &InputLine,
}

impl Stages<InputLine> {
    /// A one-step sink: nothing to check, all the work in `commit`.
    pub fn from_sink(mut sink: impl LineSink + 'static) -> Stages<InputLine> {
        Stages {
            check: Box::new(|line| line),
            commit: Box::new(move |line| sink.handle(&line)),
            line_of: |l| l,
        }
    }
}

/// Lines checked and waiting for the committer.
const CHECKED_QUEUE_LINES: usize = 256;

/// The running pipeline: a reader thread, a worker thread and a spill thread.
pub struct Pipeline<T> {
    reader: std::thread::JoinHandle<io::Result<()>>,
    checker: std::thread::JoinHandle<()>,
    worker: std::thread::JoinHandle<()>,
    spill: std::thread::JoinHandle<()>,
    pending: Receiver<InputLine>,
    checked: Receiver<T>,
    line_of: fn(&T) -> &InputLine,
    spilling: Receiver<InputLine>,
    spill_outstanding: Arc<AtomicU64>,
    /// Set by [`Pipeline::abandon`]: the checker takes no more work.
    stop: Arc<AtomicBool>,
}

/// Spilled lines written with one fsync, at most this many at a time.
const SPILL_BATCH: usize = 4096;
/// Lines on their way to the spool. Only a disk that takes no writes at all fills this;
/// the reader then waits (holding more would only grow memory until the OOM killer came,
/// and Apache cannot write its event files to that disk either).
const SPILL_CHANNEL_LINES: usize = 16 * 1024;
/// How often an idle worker looks for spilled lines.
const SPOOL_POLL: std::time::Duration = std::time::Duration::from_millis(50);
/// Prefix of the per-process overflow files in the queue: `.spool.<pid>`.
pub const SPOOL_PREFIX: &str = ".spool.";

/// Overflow lines of one collector process: `.spool.<pid>` in the queue dir, raw index
/// lines, appended by the spill thread and drained by the worker whenever it has
/// nothing else to do. A spool left by a dead process is drained at start-up, so a
/// crash loses nothing (lines of a batch being drained when it crashed may be queued
/// twice).
struct Spool {
    dir: PathBuf,
    path: PathBuf,
    /// Held while appending and while taking the file away, so no append is lost.
    lock: Arc<std::sync::Mutex<()>>,
}

impl Spool {
    fn new(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
            path: dir.join(format!("{SPOOL_PREFIX}{}", std::process::id())),
            lock: Arc::new(std::sync::Mutex::new(())),
        }
    }

    fn append(&self, lines: &[InputLine]) -> io::Result<()> {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l.bytes.strip_suffix(b"\n").unwrap_or(&l.bytes));
            out.push(b'\n');
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&out)?;
        f.sync_data()
    }

    /// Takes this process's spool (if any) and feeds its lines to `handle`.
    fn drain(&self, handle: &mut dyn FnMut(&InputLine)) {
        let taken = self
            .dir
            .join(format!("{SPOOL_PREFIX}{}.draining", std::process::id()));
        {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            match std::fs::rename(&self.path, &taken) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(e) => {
                    log::error!("cannot take the spool {}: {e}", self.path.display());
                    return;
                }
            }
        }
        drain_file(&taken, handle);
    }

    /// Drains spools that dead processes left behind (including an earlier process with
    /// this same pid).
    fn recover(&self, handle: &mut dyn FnMut(&InputLine)) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SPOOL_PREFIX)) else {
                continue;
            };
            let pid: u32 = match rest.split('.').next().and_then(|p| p.parse().ok()) {
                Some(p) => p,
                None => continue,
            };
            let alive = pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists();
            if alive {
                continue;
            }
            let path = entry.path();
            let taken = self.dir.join(format!(
                "{SPOOL_PREFIX}{}.recovered-{pid}-{}",
                std::process::id(),
                rest.len()
            ));
            if std::fs::rename(&path, &taken).is_ok() {
                log::warn!("draining {} left by process {pid}", path.display());
                drain_file(&taken, handle);
            }
        }
    }
}

fn drain_file(path: &Path, handle: &mut dyn FnMut(&InputLine)) {
    match File::open(path) {
        Ok(f) => {
            let mut r = io::BufReader::new(f);
            loop {
                match read_line(&mut r) {
                    Ok(Some(line)) => handle(&line),
                    Ok(None) => break,
                    Err(e) => {
                        log::error!(
                            "reading the spool {} failed: {e}; it is kept",
                            path.display()
                        );
                        return;
                    }
                }
            }
            if let Err(e) = std::fs::remove_file(path) {
                log::error!("cannot remove the drained spool {}: {e}", path.display());
            }
        }
        Err(e) => log::error!("cannot open the spool {}: {e}", path.display()),
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// Starts reading `input`. Lines the worker cannot take at once are spilled to this
    /// process's spool in `spool_dir` (the queue), which the worker drains when it
    /// catches up; the reader never waits for the worker.
    pub fn start<R>(input: R, stages: Stages<T>, spool_dir: &Path, stats: Arc<Stats>) -> Pipeline<T>
    where
        R: Read + Send + 'static,
    {
        let Stages {
            mut check,
            mut commit,
            line_of,
        } = stages;
        let (checked_tx, checked_rx) = bounded::<T>(CHECKED_QUEUE_LINES);
        let checked = checked_rx.clone();
        let (work_tx, work_rx) = bounded::<InputLine>(WORK_QUEUE_LINES);
        let (spill_tx, spill_rx) = bounded::<InputLine>(SPILL_CHANNEL_LINES);
        let (spill_done_tx, spill_done_rx) = bounded::<()>(0);
        let pending = work_rx.clone();
        let spilling = spill_rx.clone();
        // Lines handed to the spill thread and not yet in the spool.
        let spill_outstanding = Arc::new(AtomicU64::new(0));
        let outstanding = spill_outstanding.clone();
        let reader_outstanding = spill_outstanding.clone();
        let reader_stats = stats.clone();
        let spool = Arc::new(Spool::new(spool_dir));
        let stop = Arc::new(AtomicBool::new(false));
        let checker_stop = stop.clone();
        let writer_spool = spool.clone();
        let reader = std::thread::Builder::new()
            .name("reader".into())
            .spawn(move || read_loop(input, work_tx, spill_tx, &reader_stats, &reader_outstanding))
            .expect("spawn reader thread");
        let checker = std::thread::Builder::new()
            .name("checker".into())
            .spawn(move || {
                let mut handle = |line: &InputLine| {
                    let _ = checked_tx.send(check(line.clone()));
                };
                spool.recover(&mut handle);
                loop {
                    if checker_stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match work_rx.recv_timeout(SPOOL_POLL) {
                        Ok(line) => handle(&line),
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            if !checker_stop.load(Ordering::SeqCst) {
                                spool.drain(&mut handle);
                            }
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                            // Input is over: wait for the last spilled batch, then drain.
                            let _ = spill_done_rx.recv();
                            spool.drain(&mut handle);
                            break;
                        }
                    }
                }
            })
            .expect("spawn checker thread");
        let worker = std::thread::Builder::new()
            .name("worker".into())
            .spawn(move || {
                for item in checked_rx {
                    commit(item);
                }
            })
            .expect("spawn worker thread");
        let spill = std::thread::Builder::new()
            .name("spill".into())
            .spawn(move || {
                let _done = spill_done_tx;
                while let Ok(first) = spill_rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < SPILL_BATCH {
                        match spill_rx.try_recv() {
                            Ok(line) => batch.push(line),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = writer_spool.append(&batch) {
                        let reason = format!("collector busy and the spool cannot be written: {e}");
                        match Queue::open(&writer_spool.dir) {
                            Ok(q) => write_backlog(&q, &batch, &reason, &stats),
                            Err(_) => {
                                for l in &batch {
                                    log::error!(
                                        "{reason}; lost line follows: {}",
                                        String::from_utf8_lossy(&l.bytes).trim_end()
                                    );
                                }
                            }
                        }
                    }
                    outstanding.fetch_sub(batch.len() as u64, Ordering::SeqCst);
                }
            })
            .expect("spawn spill thread");
        Pipeline {
            reader,
            checker,
            checked,
            line_of,
            worker,
            spill,
            pending,
            spilling,
            spill_outstanding,
            stop,
        }
    }

    /// Waits for end of input, then for the spill thread and the worker to finish
    /// (the worker drains the spool last).
    pub fn finish(self) -> io::Result<()> {
        let read = self
            .reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("reader thread panicked")));
        drop(self.pending);
        drop(self.checked);
        drop(self.spilling);
        let _ = self.spill.join();
        let _ = self.checker.join();
        let _ = self.worker.join();
        read
    }

    /// Whether the reader has reached end of input.
    pub fn input_done(&self) -> bool {
        self.reader.is_finished()
    }

    /// Cuts the grace short (a second SIGTERM): lines still waiting for the worker or
    /// for the spill thread go to `backlog`, and a spool write in progress is waited for
    /// (up to `grace`). The worker finishes the line it is on; the spool stays on disk
    /// for the next collector, which drains it at start-up.
    pub fn abandon(self, grace: std::time::Duration, backlog: impl Fn(&[InputLine])) {
        self.stop.store(true, Ordering::SeqCst);
        // The checker may still hold one line; it hands it over once there is room.
        let mut left: Vec<InputLine> = Vec::new();
        let mut quiet_rounds = 0;
        while quiet_rounds < 3 {
            let before = left.len();
            left.extend(self.pending.try_iter());
            left.extend(self.checked.try_iter().map(|c| (self.line_of)(&c).clone()));
            quiet_rounds = if left.len() == before {
                quiet_rounds + 1
            } else {
                0
            };
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let taken_from_spill: Vec<InputLine> = self.spilling.try_iter().collect();
        self.spill_outstanding
            .fetch_sub(taken_from_spill.len() as u64, Ordering::SeqCst);
        left.extend(taken_from_spill);
        if !left.is_empty() {
            backlog(&left);
        }
        let deadline = std::time::Instant::now() + grace;
        while self.spill_outstanding.load(Ordering::SeqCst) > 0
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// Writes lines to the backlog with one reason; if that fails they go to the log in full.
pub fn write_backlog(queue: &Queue, lines: &[InputLine], reason: &str, stats: &Stats) {
    stats
        .backlogged
        .fetch_add(lines.len() as u64, Ordering::Relaxed);
    let records: Vec<(&[u8], &str)> = lines.iter().map(|l| (l.bytes.as_slice(), reason)).collect();
    if let Err(e) = queue.backlog_many(&records) {
        for l in lines {
            log::error!(
                "cannot write the backlog ({e}); lost line follows: {}",
                String::from_utf8_lossy(&l.bytes).trim_end()
            );
        }
    }
}

fn read_loop(
    input: impl Read,
    work: Sender<InputLine>,
    spill: Sender<InputLine>,
    stats: &Stats,
    spill_outstanding: &AtomicU64,
) -> io::Result<()> {
    let mut input = io::BufReader::with_capacity(64 * 1024, input);
    let mut spilling = false;
    while let Some(line) = read_line(&mut input)? {
        stats.read.fetch_add(1, Ordering::Relaxed);
        if line.full_len > line.bytes.len() {
            log::warn!(
                "index line of {} bytes cut to {MAX_LINE_BYTES}",
                line.full_len
            );
        }
        match work.try_send(line) {
            Ok(()) => spilling = false,
            Err(TrySendError::Full(line)) | Err(TrySendError::Disconnected(line)) => {
                if !spilling {
                    log::info!("the worker is behind; spooling lines until it catches up");
                    spilling = true;
                }
                stats.spilled.fetch_add(1, Ordering::Relaxed);
                spill_outstanding.fetch_add(1, Ordering::SeqCst);
                let _ = spill.send(line);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, Instant};

    struct Setup {
        dir: tempfile::TempDir,
        worker: Worker,
    }

    fn setup(verify_md5: bool) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let settings = CollectorSettings {
            storage_dir: dir.path().join("audit"),
            queue_dir: dir.path().join("queue"),
            index_file: Some(dir.path().join("index.log")),
            link_mode: LinkMode::Hardlink,
            verify_md5,
            runas: None,
        };
        std::fs::create_dir_all(&settings.storage_dir).unwrap();
        let worker = Worker::new(
            settings,
            Arc::new(AtomicBool::new(false)),
            Arc::new(Stats::default()),
        )
        .unwrap();
        Setup { dir, worker }
    }

    /// Writes an event file under the storage dir and returns its index line.
    fn event(s: &Setup, rel: &str, content: &[u8]) -> Vec<u8> {
        let path = s.dir.path().join("audit").join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        line_for(rel, content.len(), &Md5::digest(content).into())
    }

    fn line_for(rel: &str, size: usize, md5: &[u8; 16]) -> Vec<u8> {
        let hex: String = md5.iter().map(|b| format!("{b:02x}")).collect();
        format!("lab.example 127.0.0.1 - - [28/Nov/2026:02:14:31.009836 +0000] \"GET / HTTP/1.1\" 403 239 \"-\" \"-\" awo5B9rt9m7QJiOqXPD3lQAAAEg \"-\" {rel} 0 {size} md5:{hex} \n").into_bytes()
    }

    fn input(bytes: &[u8]) -> InputLine {
        InputLine {
            bytes: bytes.to_vec(),
            full_len: bytes.len(),
        }
    }

    fn backlog(s: &Setup) -> String {
        std::fs::read_to_string(s.dir.path().join("queue/.backlog")).unwrap_or_default()
    }

    #[test]
    fn queues_a_hard_link_and_keeps_the_index_line() {
        let mut s = setup(true);
        let line = event(
            &s,
            "/www-data/20261128/20261128-0214/20261128-021431-x",
            b"event body",
        );
        let LineOutcome::Queued {
            entry,
            linked,
            integrity,
        } = s.worker.handle(&input(&line))
        else {
            panic!()
        };
        assert_eq!((linked, integrity), (Linked::Hardlink, None));
        let queued = std::fs::metadata(s.dir.path().join("queue").join(&entry)).unwrap();
        let original = std::fs::metadata(
            s.dir
                .path()
                .join("audit/www-data/20261128/20261128-0214/20261128-021431-x"),
        )
        .unwrap();
        assert_eq!(queued.ino(), original.ino());
        assert_eq!(std::fs::read(s.dir.path().join("index.log")).unwrap(), line);
    }

    #[test]
    fn every_refusal_goes_to_the_backlog_with_its_reason() {
        let mut s = setup(true);
        event(&s, "/secret", b"x");
        std::os::unix::fs::symlink("/etc/passwd", s.dir.path().join("audit/planted")).unwrap();
        std::fs::create_dir_all(s.dir.path().join("audit/adir")).unwrap();
        std::os::unix::fs::symlink(
            s.dir.path().join("audit/adir"),
            s.dir.path().join("audit/linkdir"),
        )
        .unwrap();
        event(&s, "/adir/f", b"x");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (line_for("/missing/file", 1, &[0; 16]), "No such file"),
            (
                line_for("/../etc/passwd", 1, &[0; 16]),
                "leaves the storage dir",
            ),
            (
                line_for("/adir/../../x", 1, &[0; 16]),
                "leaves the storage dir",
            ),
            (line_for("/planted", 1, &[0; 16]), "symbolic link"),
            (line_for("/linkdir/f", 1, &[0; 16]), "symbolic link"),
            (line_for("/adir", 1, &[0; 16]), "not a regular file"),
            (
                b"this is not an index line\n".to_vec(),
                "malformed index line",
            ),
        ];
        for (line, why) in &cases {
            match s.worker.handle(&input(line)) {
                LineOutcome::Backlogged { reason } => {
                    assert!(reason.contains(why), "{why}: {reason}")
                }
                other => panic!("{why}: {other:?}"),
            }
        }
        let backlog = backlog(&s);
        assert_eq!(backlog.lines().count(), cases.len());
        assert!(backlog.contains("/../etc/passwd"));
        assert!(
            s.worker.queue().entries().unwrap().is_empty(),
            "nothing was queued"
        );
        // The index file keeps every line, good or bad, as modsec-auditlog-collector did.
        assert_eq!(
            std::fs::read_to_string(s.dir.path().join("index.log"))
                .unwrap()
                .lines()
                .count(),
            cases.len()
        );
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_after_use_is_not_followed() {
        let mut s = setup(false);
        let first = event(&s, "/d/f1", b"one");
        assert!(matches!(
            s.worker.handle(&input(&first)),
            LineOutcome::Queued { .. }
        ));
        // www-data (the storage dir's owner) swaps the directory for a link elsewhere.
        let outside = s.dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("f2"), b"secret").unwrap();
        let audit = s.dir.path().join("audit");
        std::fs::rename(audit.join("d"), audit.join("d-old")).unwrap();
        std::os::unix::fs::symlink(&outside, audit.join("d")).unwrap();
        let second = line_for("/d/f2", 6, &Md5::digest(b"secret").into());
        match s.worker.handle(&input(&second)) {
            LineOutcome::Backlogged { reason } => {
                assert!(reason.contains("symbolic link"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.worker.queue().entries().unwrap().len(), 1);
    }

    #[test]
    fn a_minute_directory_made_anew_is_walked_again() {
        let mut s = setup(false);
        let first = event(&s, "/d/f1", b"one");
        assert!(matches!(
            s.worker.handle(&input(&first)),
            LineOutcome::Queued { .. }
        ));
        std::fs::remove_dir_all(s.dir.path().join("audit/d")).unwrap();
        let second = event(&s, "/d/f2", b"two");
        assert!(matches!(
            s.worker.handle(&input(&second)),
            LineOutcome::Queued { .. }
        ));
    }

    #[test]
    fn a_planted_fifo_does_not_hang_the_worker() {
        let mut s = setup(true);
        let fifo = s.dir.path().join("audit/fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        match s.worker.handle(&input(&line_for("/fifo", 1, &[0; 16]))) {
            LineOutcome::Backlogged { reason } => {
                assert!(reason.contains("not a regular file"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn absolute_v3_paths_must_lie_under_the_storage_dir() {
        let s = setup(false);
        let storage = s.dir.path().join("audit");
        let mut line = parse_index_line(&line_for("/x", 1, &[0; 16])).unwrap();
        line.flavor = IndexFlavor::LibModSecurity3;
        line.filename = storage
            .join("20261128/f")
            .into_os_string()
            .into_encoded_bytes();
        assert_eq!(
            resolve_event_path(&storage, &line).unwrap(),
            storage.join("20261128/f")
        );
        line.filename = b"/etc/shadow".to_vec();
        assert!(resolve_event_path(&storage, &line)
            .unwrap_err()
            .contains("not under the storage dir"));
        line.filename = storage.join("../x").into_os_string().into_encoded_bytes();
        assert!(resolve_event_path(&storage, &line).is_err());
    }

    #[test]
    fn size_or_md5_mismatch_is_queued_and_marked() {
        let mut s = setup(true);
        let mut line = event(&s, "/f", b"complete event");
        // Same size, other content: only md5 catches it.
        std::fs::write(s.dir.path().join("audit/f"), b"COMPLETE EVENT").unwrap();
        let LineOutcome::Queued {
            entry, integrity, ..
        } = s.worker.handle(&input(&line))
        else {
            panic!()
        };
        assert!(integrity.unwrap().contains("md5"));
        let marker =
            std::fs::read_to_string(s.dir.path().join("queue/.integrity").join(&entry)).unwrap();
        assert!(marker.contains("md5 differs"), "{marker}");
        // A short file: size catches it even with md5 checks off.
        let mut s = setup(false);
        line = event(&s, "/g", b"complete event");
        std::fs::write(s.dir.path().join("audit/g"), b"compl").unwrap();
        let LineOutcome::Queued { integrity, .. } = s.worker.handle(&input(&line)) else {
            panic!()
        };
        assert!(integrity
            .unwrap()
            .contains("size 5 bytes, index line says 14"));
    }

    #[test]
    fn over_long_line_is_cut_kept_in_the_backlog_and_reading_goes_on() {
        let long = [vec![b'a'; MAX_LINE_BYTES * 3], b"\nnext\n".to_vec()].concat();
        let mut r = io::Cursor::new(long);
        let first = read_line(&mut r).unwrap().unwrap();
        assert_eq!(
            (first.bytes.len(), first.full_len),
            (MAX_LINE_BYTES, MAX_LINE_BYTES * 3 + 1)
        );
        assert_eq!(read_line(&mut r).unwrap().unwrap().bytes, b"next\n");
        assert!(read_line(&mut r).unwrap().is_none());
        let mut s = setup(true);
        let LineOutcome::Backlogged { reason } = s.worker.handle(&first) else {
            panic!()
        };
        assert!(reason.contains("longer than"), "{reason}");
    }

    #[test]
    fn last_line_without_newline_is_still_read() {
        let mut r = io::Cursor::new(b"a\nb".to_vec());
        assert_eq!(read_line(&mut r).unwrap().unwrap().bytes, b"a\n");
        assert_eq!(read_line(&mut r).unwrap().unwrap().bytes, b"b");
        assert!(read_line(&mut r).unwrap().is_none());
    }

    #[test]
    fn sighup_reopens_the_index_file() {
        let mut s = setup(false);
        let flag = s.worker.committer.reopen_index.clone();
        let line = event(&s, "/f1", b"1");
        s.worker.handle(&input(&line));
        let index = s.dir.path().join("index.log");
        std::fs::rename(&index, s.dir.path().join("index.log.1")).unwrap();
        flag.store(true, Ordering::Relaxed);
        let line2 = event(&s, "/f2", b"2");
        s.worker.handle(&input(&line2));
        assert_eq!(std::fs::read(&index).unwrap(), line2);
        assert_eq!(
            std::fs::read(s.dir.path().join("index.log.1")).unwrap(),
            line
        );
    }

    #[test]
    fn settings_from_a_modsec2sguil_config_and_the_command_line() {
        let conf = ConfigFile::parse(
            "set EVENT_DIR /nsm/queue\nset SYMLINK 1\nset RUNAS nobody\nset VERIFY_MD5 0\n",
            Path::new("/etc/m.conf"),
        )
        .unwrap();
        let o = CollectorOverrides {
            storage_dir: Some("/var/log/audit".into()),
            ..Default::default()
        };
        let s = CollectorSettings::resolve(Some(&conf), o).unwrap();
        assert_eq!(s.queue_dir, Path::new("/nsm/queue"));
        assert_eq!(s.link_mode, LinkMode::Symlink);
        assert!(!s.verify_md5);
        assert!(s.runas.is_some());
        let o = CollectorOverrides {
            storage_dir: Some("/a".into()),
            link_mode: Some(LinkMode::Copy),
            verify_md5: Some(true),
            ..Default::default()
        };
        let s = CollectorSettings::resolve(Some(&conf), o).unwrap();
        assert_eq!(
            (s.link_mode, s.verify_md5),
            (LinkMode::Copy, true),
            "the command line wins"
        );
    }

    #[test]
    fn bad_settings_name_what_is_wrong() {
        let parse = |t: &str| ConfigFile::parse(t, Path::new("/etc/m.conf")).unwrap();
        let storage = || CollectorOverrides {
            storage_dir: Some("/a".into()),
            ..Default::default()
        };
        for (text, want) in [
            ("set X 1\n", "no queue"),
            (
                "set EVENT_DIR relative\n",
                "/etc/m.conf:1: EVENT_DIR: bad value `relative`",
            ),
            (
                "set EVENT_DIR /q\nset LINK_MODE teleport\n",
                "/etc/m.conf:2: LINK_MODE",
            ),
            (
                "set EVENT_DIR /q\nset RUNAS no-such-user-here\n",
                "no such user",
            ),
            (
                "set EVENT_DIR /q\nset VERIFY_MD5 perhaps\n",
                "VERIFY_MD5: bad value",
            ),
        ] {
            let e = CollectorSettings::resolve(Some(&parse(text)), storage()).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        let e = CollectorSettings::resolve(
            None,
            CollectorOverrides {
                queue_dir: Some("/q".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.contains("no storage dir"), "{e}");
        let e = CollectorSettings::resolve(
            None,
            CollectorOverrides {
                queue_dir: Some("/q".into()),
                storage_dir: Some("rel".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.contains("absolute"), "{e}");
    }

    #[test]
    fn runas_chowns_each_entry() {
        let mut s = setup(false);
        let (uid, gid) = resolve_owner("nobody").unwrap();
        s.worker.committer.settings.runas = Some((uid, gid));
        let line = event(&s, "/f", b"x");
        let LineOutcome::Queued { entry, .. } = s.worker.handle(&input(&line)) else {
            panic!()
        };
        let meta = std::fs::metadata(s.dir.path().join("queue").join(entry)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    }

    /// A sink that is slow, then hangs for good once `frozen` is set (a disk that dies).
    struct Stalled {
        handled: Arc<AtomicU64>,
        frozen: Arc<AtomicBool>,
    }
    impl LineSink for Stalled {
        fn handle(&mut self, _line: &InputLine) {
            std::thread::sleep(Duration::from_millis(50));
            while self.frozen.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            self.handled.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn spool_lines(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(SPOOL_PREFIX))
            .map(|e| {
                std::fs::read(e.path())
                    .unwrap()
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count() as u64
            })
            .sum()
    }

    #[test]
    fn a_stalled_worker_never_stalls_the_reader_and_no_line_is_lost() {
        const LINES: u64 = 100_000;
        let dir = tempfile::tempdir().unwrap();
        let mut input = Vec::new();
        for i in 0..LINES {
            input.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let handled = Arc::new(AtomicU64::new(0));
        let frozen = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let started = Instant::now();
        let sink = Stalled {
            handled: handled.clone(),
            frozen: frozen.clone(),
        };
        let p = Pipeline::start(
            io::Cursor::new(input),
            Stages::from_sink(sink),
            dir.path(),
            stats.clone(),
        );
        while !p.input_done() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the reader is stuck behind the worker"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // The disk dies for good; then a second SIGTERM cuts the grace short.
        frozen.store(true, Ordering::SeqCst);
        let q = Queue::open(dir.path()).unwrap();
        let tally = Stats::default();
        p.abandon(Duration::from_secs(10), move |lines| {
            write_backlog(&q, lines, "shutdown", &tally)
        });
        let in_backlog = std::fs::read_to_string(dir.path().join(".backlog"))
            .map(|b| b.lines().count() as u64)
            .unwrap_or(0);
        let done = handled.load(Ordering::SeqCst);
        let spooled = spool_lines(dir.path());
        // One line may be inside the hung worker.
        let total = done + in_backlog + spooled;
        assert!(
            total == LINES || total + 1 == LINES,
            "handled {done} + backlog {in_backlog} + spool {spooled} != {LINES}"
        );
        assert!(
            done < 1000,
            "the reader did not wait for the worker ({done} handled)"
        );
        assert!(spooled > 0 && in_backlog > 0, "lines went to the spool ({spooled}) and, at the second SIGTERM, to the backlog ({in_backlog})");
    }

    #[derive(Clone)]
    struct Counting(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);
    impl LineSink for Counting {
        fn handle(&mut self, line: &InputLine) {
            self.0.lock().unwrap().push(line.bytes.clone());
        }
    }

    #[test]
    fn a_burst_is_spooled_and_then_every_line_is_handled() {
        let dir = tempfile::tempdir().unwrap();
        let n = WORK_QUEUE_LINES * 5;
        let input: Vec<u8> = (0..n)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let seen = Counting(Arc::new(std::sync::Mutex::new(Vec::new())));
        let p = Pipeline::start(
            io::Cursor::new(input),
            Stages::from_sink(seen.clone()),
            dir.path(),
            Arc::new(Stats::default()),
        );
        p.finish().unwrap();
        let mut got = seen.0.lock().unwrap().clone();
        assert_eq!(got.len(), n);
        got.sort();
        got.dedup();
        assert_eq!(got.len(), n, "each line once");
        assert_eq!(
            spool_lines(dir.path()),
            0,
            "the spool is drained and removed"
        );
    }

    #[test]
    fn a_spool_left_by_a_dead_collector_is_drained_at_start() {
        let dir = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22 on Linux: this pid cannot be alive.
        std::fs::write(
            dir.path().join(format!("{SPOOL_PREFIX}99999999")),
            b"left 1\nleft 2\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(format!("{SPOOL_PREFIX}99999998.draining")),
            b"left 3\n",
        )
        .unwrap();
        let seen = Counting(Arc::new(std::sync::Mutex::new(Vec::new())));
        let p = Pipeline::start(
            io::Cursor::new(b"new\n".to_vec()),
            Stages::from_sink(seen.clone()),
            dir.path(),
            Arc::new(Stats::default()),
        );
        p.finish().unwrap();
        let mut got = seen.0.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, [&b"left 1\n"[..], b"left 2\n", b"left 3\n", b"new\n"]);
        assert_eq!(spool_lines(dir.path()), 0);
    }
}
