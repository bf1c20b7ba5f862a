//! Following an index file (`modsec-collector --follow`): libmodsecurity 3 (nginx, or
//! Apache through the v3 connector) cannot pipe its index lines to a program; it appends
//! them to a plain file (ARCHITECTURE.md, "The formats we read"). The follower reads that file like
//! `tail -F` and gives each complete line to the collector's [`Worker`].
//!
//! - **Where it is** is kept in the state dir (root's, [`crate::state`]), in
//!   `follow.<hash of the path>`: the file's device, inode and the byte offset after the
//!   last line handled, written atomically (temp file, rename) after each batch of lines
//!   is queued. A restart resumes there. A crash between queueing a batch and saving the
//!   offset could repeat at most that batch: on start-up, the lines of the first batch
//!   whose event the collector recorded as queued are skipped.
//! - **Rotation by rename** (logrotate's default): when the path names another file, the
//!   old one is read to its end first; lines written to it after that (before the writer
//!   reopened its log) are still read until it has been quiet for [`OLD_FILE_GRACE`]
//!   (such late lines are not remembered across a restart). If the collector was down
//!   during the rotation, the old file is looked for beside the new one by its inode
//!   (and its content, since inode numbers are reused).
//! - **Rotation by copytruncate**: the file shrinks under the offset; the lines between
//!   the offset and the truncation are read from the copy (`<path>.1`) when it is the
//!   copy of what was read, then the file is read from its start.
//! - **Event files not complete yet**: v3 writes the index line after closing the event
//!   file, but the size is checked anyway: a line waits up to [`EVENT_WAIT`] for its
//!   file to exist with the size the line gives, then is handled as the pipe collector
//!   would (queued and marked, or backlogged with the reason).
//! - A partial last line (the writer is mid-line) waits for its newline.
//! - First start (no saved position): from the end of the file, like `tail -F`, unless
//!   asked to read it from the start; older events can be loaded with `requeue --index`.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{InputLine, LineOutcome, Worker, MAX_LINE_BYTES};
use crate::index::parse_index_line;
use crate::queue::position::{self, Position};
use crate::state::StateDir;

/// Lines handled between two saves of the position (and the most a crash can repeat).
pub const BATCH_LINES: usize = 64;
/// How long a line waits for its event file to appear complete.
pub const EVENT_WAIT: Duration = Duration::from_secs(2);
/// How long a file rotated away by rename is still read after it last grew (the writer
/// may go on writing to it until it reopens its log; libmodsecurity 3 does so only when
/// nginx reloads its configuration).
pub const OLD_FILE_GRACE: Duration = Duration::from_secs(30);
/// Bytes before the offset that [`Position::tail`] covers.
const TAIL_BYTES: u64 = 256;

/// The digest of the (up to) [`TAIL_BYTES`] bytes of `f` before `offset`.
fn tail_digest(f: &File, offset: u64) -> io::Result<u64> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::FileExt;
    let start = offset.saturating_sub(TAIL_BYTES);
    let mut buf = vec![0u8; (offset - start) as usize];
    f.read_exact_at(&mut buf, start)?;
    let d = Sha256::digest(&buf);
    Ok(u64::from_be_bytes(d[..8].try_into().expect("8 bytes")))
}

/// Where to start when no position was saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The end of the file (new lines only), like `tail -F`.
    End,
    /// The start of the file.
    Start,
}

/// One open file being read.
struct Open {
    file: File,
    dev: u64,
    ino: u64,
    offset: u64,
    /// Bytes read after the last complete line.
    partial: Vec<u8>,
    /// [`tail_digest`] at `offset`: the file is still the one read up to there only
    /// while its bytes before `offset` are unchanged (a copytruncate followed by new
    /// lines can make it as long as before).
    tail: u64,
}

impl Open {
    fn at(file: File, offset: u64) -> io::Result<Open> {
        let meta = file.metadata()?;
        let tail = tail_digest(&file, offset)?;
        let mut o = Open {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            offset,
            partial: Vec::new(),
            tail,
        };
        o.file.seek(SeekFrom::Start(offset))?;
        Ok(o)
    }

    /// Reads the next complete lines (at most `max`), after checking that the file was not
    /// truncated under the offset; `None` when it was (the offset is left where it was,
    /// for the caller to look for the rest in a copy and start the file over).
    fn next_lines(&mut self, max: usize) -> io::Result<Option<Vec<Vec<u8>>>> {
        let offset = self.offset;
        if !self.intact_at(offset)? {
            return Ok(None);
        }
        let lines = self.read_lines(max)?;
        // Truncated and rewritten while we read? Then what was read is the new file's.
        if !self.intact_at(offset)? {
            self.offset = offset;
            return Ok(None);
        }
        if !lines.is_empty() {
            self.tail = tail_digest(&self.file, self.offset)?;
        }
        Ok(Some(lines.into_iter().map(|(l, _)| l).collect()))
    }

    /// Whether the file still holds, before `offset`, the bytes read up to there.
    fn intact_at(&self, offset: u64) -> io::Result<bool> {
        let len = self.file.metadata()?.len();
        Ok(len >= offset && tail_digest(&self.file, offset)? == self.tail)
    }

    /// Starts the file over from its first byte.
    fn restart(&mut self) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.offset = 0;
        self.partial.clear();
        self.tail = tail_digest(&self.file, 0)?;
        Ok(())
    }

    /// Complete lines available now (at most `max`), with the offset after each.
    fn read_lines(&mut self, max: usize) -> io::Result<Vec<(Vec<u8>, u64)>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=nl).collect();
                self.offset += line.len() as u64;
                out.push((line, self.offset));
                if out.len() >= max {
                    return Ok(out);
                }
            }
            if self.partial.len() > MAX_LINE_BYTES {
                // Not an index line; handed on cut (the worker backlogs it as too long).
                let line = std::mem::take(&mut self.partial);
                self.offset += line.len() as u64;
                out.push((line, self.offset));
                return Ok(out);
            }
            let n = match self.file.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(out);
            }
            self.partial.extend_from_slice(&buf[..n]);
        }
    }
}

/// Counts of a follower, for its log lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FollowStats {
    pub lines: u64,
    pub queued: u64,
    pub backlogged: u64,
    /// Lines of the first batch after a restart found already queued or delivered.
    pub repeats_skipped: u64,
    pub rotations: u64,
    pub truncations: u64,
}

/// Follows one index file into the queue.
pub struct Follower {
    path: PathBuf,
    state: PathBuf,
    current: Option<Open>,
    /// The file rotated away by rename, still read for a while.
    old: Option<(Open, Instant)>,
    /// Unique ids of the events queued (the state dir's record), for the first batch
    /// after a start.
    known: Option<HashSet<String>>,
    pub stats: FollowStats,
}

impl Follower {
    /// Opens the follower of `path`, its position kept in the state dir `state_dir`: the
    /// saved position, or `start` when there is none. The file need not exist yet.
    pub fn open(path: &Path, state_dir: &StateDir, start: StartAt) -> io::Result<Follower> {
        let state = state_dir.join(&position::state_name(path));
        let saved = position::read(&state, crate::safefs::Keeper::ThisProcess)?.map(|(p, _)| p);
        let mut f = Follower {
            path: path.to_path_buf(),
            state,
            current: None,
            old: None,
            known: None,
            stats: FollowStats::default(),
        };
        if saved.is_some() {
            // The last batch before a crash may be read again: know what is queued.
            f.known = Some(state_dir.queued_ids()?);
        }
        let file = match open_index(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                log::warn!("{}: does not exist (yet); waiting for it", path.display());
                // Renamed away while we were down, the new one not created yet.
                if let Some(p) = saved {
                    if let Some(old_path) = rest_of(path, &p) {
                        log::info!(
                            "{}: reading the rest of {} from byte {} first",
                            path.display(),
                            old_path.display(),
                            p.offset
                        );
                        let old = Open::at(open_index(&old_path)?, p.offset)?;
                        f.old = Some((old, Instant::now()));
                    }
                }
                return Ok(f);
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        match saved {
            Some(p)
                if (p.dev, p.ino) == (meta.dev(), meta.ino())
                    && meta.len() >= p.offset
                    && tail_digest(&file, p.offset)? == p.tail =>
            {
                log::info!("{}: resuming at byte {}", path.display(), p.offset);
                f.current = Some(Open::at(file, p.offset)?);
            }
            Some(p) => {
                // Rotated (renamed, or copied and truncated) while we were down: read the
                // rest of what was being read first, if it is still there.
                match rest_of(path, &p) {
                    Some(old_path) => {
                        log::info!(
                            "{}: rotated while the collector was down; reading the rest of {} from byte {} first",
                            path.display(),
                            old_path.display(),
                            p.offset
                        );
                        let old = open_index(&old_path)?;
                        f.old = Some((Open::at(old, p.offset)?, Instant::now()));
                    }
                    None => log::error!(
                        "{}: rotated while the collector was down and the file it was reading (inode {}) is gone: its lines after byte {} were not queued; load them with `modsec-shipper requeue --index` from the rotated file",
                        path.display(),
                        p.ino,
                        p.offset
                    ),
                }
                f.stats.rotations += 1;
                f.current = Some(Open::at(file, 0)?);
            }
            None => {
                let offset = match start {
                    StartAt::End => meta.len(),
                    StartAt::Start => 0,
                };
                log::info!(
                    "{}: first start; reading from byte {offset}{}",
                    path.display(),
                    if offset > 0 {
                        " (the end; older lines: modsec-shipper requeue --index)"
                    } else {
                        ""
                    }
                );
                let mut open = Open::at(file, offset)?;
                if offset > 0 {
                    // Start at a line boundary: a partial line at the end is its writer's.
                    let keep = last_partial_len(&mut open.file, offset)?;
                    open.offset = offset - keep;
                    open.file.seek(SeekFrom::Start(open.offset))?;
                    open.tail = tail_digest(&open.file, open.offset)?;
                }
                f.current = Some(open);
                f.save()?;
            }
        }
        Ok(f)
    }

    /// The position file.
    pub fn state_path(&self) -> &Path {
        &self.state
    }

    /// Reads and handles what is available now: the old file's rest, then the current
    /// file's lines, a batch at a time, saving the position after each batch. Returns the
    /// number of lines handled; 0 means nothing new (then rotation is checked).
    pub fn poll(&mut self, worker: &mut Worker, stop: &dyn Fn() -> bool) -> io::Result<usize> {
        let mut handled = 0;
        if let Some((old, last_data)) = &mut self.old {
            let n = read_to_end(old, worker, &mut self.known, &mut self.stats)?;
            if n > 0 {
                handled += n;
                *last_data = Instant::now();
            }
            if last_data.elapsed() >= OLD_FILE_GRACE {
                self.old = None;
            }
        }
        loop {
            if stop() {
                break;
            }
            let Some(cur) = self.current.as_mut() else {
                break;
            };
            let Some(lines) = cur.next_lines(BATCH_LINES)? else {
                handled += self.truncated(worker)?;
                continue;
            };
            if lines.is_empty() {
                break;
            }
            for line in &lines {
                handle(worker, line, &mut self.known, &mut self.stats);
            }
            handled += lines.len();
            self.save()?;
            // Only the first batch after a start can repeat one before the crash.
            self.known = None;
        }
        if handled == 0 {
            self.known = None;
            if self.check_rotation()? {
                // Another file (or the same from its start): read it now.
                return self.poll(worker, stop);
            }
        }
        Ok(handled)
    }

    /// At the end of the current file: has the path moved to another file (or appeared)?
    /// True when reading goes on in another file.
    fn check_rotation(&mut self) -> io::Result<bool> {
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false), // mid-rotation
            Err(e) => return Err(e),
        };
        let Some(cur) = self.current.as_mut() else {
            // The file appeared.
            let file = open_index(&self.path)?;
            log::info!("{}: appeared; reading it", self.path.display());
            self.current = Some(Open::at(file, 0)?);
            self.save()?;
            return Ok(true);
        };
        if (meta.dev(), meta.ino()) != (cur.dev, cur.ino) {
            log::info!(
                "{}: rotated (a new file); the old one is still read for {} s",
                self.path.display(),
                OLD_FILE_GRACE.as_secs()
            );
            self.stats.rotations += 1;
            let file = open_index(&self.path)?;
            let new = Open::at(file, 0)?;
            let old = std::mem::replace(cur, new);
            self.old = Some((old, Instant::now()));
            self.save()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The current file was truncated under the offset (copytruncate): reads the lines
    /// past the offset from the copy (`<path>.1`) if it is the copy of what was read,
    /// then starts the file over. Returns the lines handled from the copy.
    fn truncated(&mut self, worker: &mut Worker) -> io::Result<usize> {
        let cur = self.current.as_mut().expect("a current file");
        let (offset, tail) = (cur.offset, cur.tail);
        cur.restart()?;
        self.stats.truncations += 1;
        let mut copy_path = self.path.clone().into_os_string();
        copy_path.push(".1");
        let mut count = 0;
        let copy = open_index(Path::new(&copy_path))
            .ok()
            .filter(|c| tail_digest(c, offset).is_ok_and(|t| t == tail));
        if let Some(copy) = copy {
            let mut open = Open::at(copy, offset)?;
            count = read_to_end(&mut open, worker, &mut self.known, &mut self.stats)?;
        }
        log::warn!(
            "{}: truncated (copytruncate?) under byte {offset}; {count} line(s) written before the truncation read from {}; reading from the start",
            self.path.display(),
            if count > 0 { PathBuf::from(&copy_path).display().to_string() } else { "nowhere (no matching copy)".into() }
        );
        self.save()?;
        Ok(count)
    }

    /// Saves the current file's position (atomically).
    pub fn save(&self) -> io::Result<()> {
        match &self.current {
            Some(cur) => position::write(
                &self.state,
                &Position {
                    dev: cur.dev,
                    ino: cur.ino,
                    offset: cur.offset,
                    tail: cur.tail,
                },
                &self.path,
            ),
            None => Ok(()),
        }
    }
}

/// Handles every complete line left in `open` (a file no longer at the path: the
/// position is not saved for it). Returns how many.
fn read_to_end(
    open: &mut Open,
    worker: &mut Worker,
    known: &mut Option<HashSet<String>>,
    stats: &mut FollowStats,
) -> io::Result<usize> {
    let mut count = 0;
    loop {
        let lines = open.read_lines(BATCH_LINES)?;
        if lines.is_empty() {
            return Ok(count);
        }
        for (line, _) in &lines {
            handle(worker, line, known, stats);
        }
        count += lines.len();
    }
}

/// Handles one line: waits for its event file, skips a repeat of a line queued before a
/// crash, then gives it to the worker.
fn handle(
    worker: &mut Worker,
    line: &[u8],
    known: &mut Option<HashSet<String>>,
    stats: &mut FollowStats,
) {
    stats.lines += 1;
    let input = InputLine {
        bytes: line[..line.len().min(MAX_LINE_BYTES)].to_vec(),
        full_len: line.len(),
    };
    let parsed = parse_index_line(&input.bytes).ok();
    if let Some(p) = &parsed {
        let path = super::resolve_event_path(worker.storage_dir(), p).ok();
        if known.as_ref().is_some_and(|k| k.contains(&p.unique_id)) {
            log::info!(
                "line read again after a restart, not queued twice: unique id {} was queued before",
                crate::escape::escape_text(&p.unique_id)
            );
            stats.repeats_skipped += 1;
            return;
        }
        if let Some(path) = path {
            wait_for_event(&path, p.size);
        }
    }
    match worker.handle(&input) {
        LineOutcome::Queued { .. } => stats.queued += 1,
        LineOutcome::Backlogged { .. } => stats.backlogged += 1,
        LineOutcome::Empty => {}
    }
}

/// Waits (up to [`EVENT_WAIT`]) for `path` to exist with `size` bytes.
fn wait_for_event(path: &Path, size: u64) {
    let until = Instant::now() + EVENT_WAIT;
    loop {
        if fs::symlink_metadata(path).is_ok_and(|m| m.len() >= size) || Instant::now() >= until {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many bytes at the end of the first `len` bytes of `f` follow its last newline.
fn last_partial_len(f: &mut File, len: u64) -> io::Result<u64> {
    let back = len.min(MAX_LINE_BYTES as u64);
    let mut buf = vec![0u8; back as usize];
    f.seek(SeekFrom::Start(len - back))?;
    f.read_exact(&mut buf)?;
    Ok(match buf.iter().rposition(|&b| b == b'\n') {
        Some(i) => back - (i as u64 + 1),
        None if back < len => 0, // a line longer than any index line: start after it anyway
        None => back,
    })
}

/// The file that holds what was being read at `p`, now that `path` is another file: the
/// renamed file (found by its inode beside `path`) or a copytruncate's copy
/// (`<path>.1`), provided its bytes before the offset are the ones read.
fn rest_of(path: &Path, p: &Position) -> Option<PathBuf> {
    let same = |c: &Path| {
        open_index(c).is_ok_and(|c| tail_digest(&c, p.offset).is_ok_and(|t| t == p.tail))
    };
    let mut copy = path.as_os_str().to_owned();
    copy.push(".1");
    find_inode(path, p.dev, p.ino)
        .into_iter()
        .chain([PathBuf::from(copy)])
        .find(|c| c.as_path() != path && same(c))
}

/// A file beside `path` (same directory, name starting with its name) with this inode.
fn find_inode(path: &Path, dev: u64, ino: u64) -> Option<PathBuf> {
    let dir = path.parent()?;
    let name = path.file_name()?.to_str()?;
    fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let n = e.file_name();
        let m = e.metadata().ok()?;
        (n.to_str()?.starts_with(name) && m.dev() == dev && m.ino() == ino).then(|| e.path())
    })
}

#[cfg(test)]
mod tests;
/// Opens the followed index file (or its rotated copy), a file the configuration names:
/// as configured where only root writes, else checked ([`crate::safefs::Open::configured`]).
fn open_index(path: &Path) -> std::io::Result<std::fs::File> {
    crate::safefs::Open::read(crate::safefs::Keeper::Anyone)
        .configured()
        .at(path)
}
