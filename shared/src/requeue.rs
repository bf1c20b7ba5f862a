//! `modsec-shipper requeue`: putting events back into the queue, in order, each once.
//!
//! Three sources: quarantined entries in `failed/` (after the operator fixed the
//! cause), the collector's backlog (index lines it could not act on), and index files
//! with the storage dir (a backfill after a Sguil database loss, or a first load).
//!
//! An event already in the queue, or remembered as delivered (the delivered log, see
//! [`crate::queue::delivered`]), is not added again unless forced. Queue entries are
//! known by their unique id and by their inode (a hard link shares the event file's).
//! Lines are queued by the collector's own checks ([`Worker::try_queue`]): the same path
//! rules, symlink refusal, size and md5 checks, RUNAS, hard link or copy.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};

use crate::collect::{CollectorSettings, InputLine, Stats, Worker};
use crate::index::{parse_index_line, IndexLine};
use crate::queue::known::KnownEvents;
use crate::queue::Queue;
use crate::state::{
    parse_backlog_record, StateDir, BACKLOG_FILE, BACKLOG_TAKEN_PREFIX, MAX_BACKLOG_RECORD_BYTES,
};

/// What happened (or, in a dry run, would happen) to one event or line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Put into the queue under this entry name.
    Queued(String),
    /// A dry run found nothing against it.
    WouldQueue,
    /// Not added: already queued or delivered (the reason says which).
    AlreadyKnown(String),
    /// Not matched by the filters (index mode).
    Filtered,
    /// Could not be queued; why.
    Failed(String),
}

/// Counts of a requeue run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub queued: u64,
    pub would_queue: u64,
    pub known: u64,
    pub filtered: u64,
    pub failed: u64,
}

impl Report {
    /// Adds another run's counts (one index file of several).
    pub fn add(&mut self, o: &Report) {
        self.queued += o.queued;
        self.would_queue += o.would_queue;
        self.known += o.known;
        self.filtered += o.filtered;
        self.failed += o.failed;
    }

    pub fn count(&mut self, o: &Outcome) {
        match o {
            Outcome::Queued(_) => self.queued += 1,
            Outcome::WouldQueue => self.would_queue += 1,
            Outcome::AlreadyKnown(_) => self.known += 1,
            Outcome::Filtered => self.filtered += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }
}

// ---------------------------------------------------------------------------------
// failed/

pub use crate::queue::failed::{failed_entries, FailedEntry};

/// Puts a quarantined entry back under its old name (or the next free one)
/// ([`crate::queue::failed::restore`]) unless the queue holds or delivered it already;
/// `force` skips that check.
pub fn requeue_failed(
    queue: &mut Queue,
    e: &FailedEntry,
    known: &mut KnownEvents,
    dry_run: bool,
    force: bool,
) -> Outcome {
    let r = match e.restorable(queue.dir()) {
        Ok(r) => r,
        Err(why) => return Outcome::Failed(why),
    };
    if !force {
        if let Some(why) = known.why(r.unique_id.as_deref(), r.dev_ino) {
            return Outcome::AlreadyKnown(why);
        }
    }
    if dry_run {
        return Outcome::WouldQueue;
    }
    match crate::queue::failed::restore(queue, e, r.name) {
        Ok(name) => {
            known.add(r.unique_id.as_deref(), r.dev_ino);
            Outcome::Queued(name.to_string())
        }
        Err(why) => Outcome::Failed(why),
    }
}

pub use crate::queue::held::suppressed_entries;

/// Puts a held-back event back into the queue under its old name (or the next free
/// one), released ([`crate::queue::held::release`]): the shipper sends it whatever the
/// thresholds say. `known` refuses one delivered since (unless `force`).
pub fn requeue_suppressed(
    queue: &mut Queue,
    entry: &str,
    unique_id: &str,
    known: &KnownEvents,
    dry_run: bool,
    force: bool,
) -> Outcome {
    let name = match crate::queue::held::check(queue.dir(), entry) {
        Ok(name) => name,
        Err(why) => return Outcome::Failed(why),
    };
    if !force {
        if let Some(why) = known.why(Some(unique_id), None) {
            return Outcome::AlreadyKnown(why);
        }
    }
    if dry_run {
        return Outcome::WouldQueue;
    }
    match crate::queue::held::release(queue, entry, name) {
        Ok(got) => Outcome::Queued(got.to_string()),
        Err(why) => Outcome::Failed(why),
    }
}

// ---------------------------------------------------------------------------------
// index lines (backlog and index files)

/// Which index lines to requeue (index mode).
#[derive(Debug, Clone, Default)]
pub struct LineFilter {
    pub since: Option<DateTime<FixedOffset>>,
    pub until: Option<DateTime<FixedOffset>>,
    pub unique_ids: Vec<String>,
    pub statuses: Vec<StatusMatch>,
}

/// An HTTP status or a class of them (`4xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Code(u16),
    Class(u16),
}

impl StatusMatch {
    /// Parses `403`, or `4xx` for 400–499.
    pub fn parse(text: &str) -> Result<StatusMatch, String> {
        let t = text.trim().to_ascii_lowercase();
        if let Some(d) = t.strip_suffix("xx") {
            if let Ok(c @ 1..=5) = d.parse::<u16>() {
                return Ok(StatusMatch::Class(c));
            }
        }
        match t.parse::<u16>() {
            Ok(c @ 100..=999) => Ok(StatusMatch::Code(c)),
            _ => Err(format!(
                "`{text}` is not an HTTP status (examples: 403, 5xx)"
            )),
        }
    }

    fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Code(c) => c == status,
            StatusMatch::Class(c) => status / 100 == c,
        }
    }
}

/// Parses a `--since`/`--until` time: RFC 3339 (`2026-11-28T02:00:00Z`, with any
/// offset), or `YYYY-MM-DD[ HH:MM[:SS]]` in the local time zone.
pub fn parse_time(text: &str) -> Result<DateTime<FixedOffset>, String> {
    use chrono::{Local, NaiveDate, NaiveDateTime, TimeZone};
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d);
    }
    let naive = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| {
            format!("`{text}` is not a time (examples: 2026-11-28, \"2026-11-28 14:00\", 2026-11-28T14:00:00+01:00)")
        })?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|d| d.fixed_offset())
        .ok_or_else(|| format!("`{text}` does not exist in the local time zone"))
}

impl LineFilter {
    pub fn matches(&self, line: &IndexLine) -> bool {
        self.since.map_or(true, |t| line.time >= t)
            && self.until.map_or(true, |t| line.time <= t)
            && (self.unique_ids.is_empty() || self.unique_ids.contains(&line.unique_id))
            && (self.statuses.is_empty() || self.statuses.iter().any(|s| s.matches(line.status)))
    }
}

/// Queues index lines with the collector's checks, minus the index file and backlog.
///
/// This is the collector's work, done by root as the collector does it: the queue is
/// entered through its checked handle, and what is already queued is known from the
/// collector's own record in STATE_DIR ([`StateDir::queued_ids`]), not from any file the
/// queue's owner writes. An event file still in the queue by hard link has two links and
/// is refused by the collector's checks anyway.
pub struct LineRequeuer {
    worker: Worker,
    known: std::collections::HashSet<String>,
    dry_run: bool,
    force: bool,
}

impl LineRequeuer {
    /// `settings` are the collector's (its index file is not used).
    pub fn new(
        mut settings: CollectorSettings,
        dry_run: bool,
        force: bool,
    ) -> io::Result<LineRequeuer> {
        settings.index_file = None;
        let worker = Worker::new(
            settings,
            Arc::new(AtomicBool::new(false)),
            Arc::new(Stats::default()),
        )?;
        let known = worker.state().queued_ids()?;
        Ok(LineRequeuer {
            worker,
            known,
            dry_run,
            force,
        })
    }

    pub fn queue(&self) -> &Queue {
        self.worker.queue()
    }

    /// The collector's state dir, whose backlog `requeue --backlog` takes.
    pub fn state(&self) -> &StateDir {
        self.worker.state()
    }

    /// Acts on one raw index line.
    pub fn requeue_line(&mut self, raw: &[u8], filter: &LineFilter) -> Outcome {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let parsed = match parse_index_line(raw) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        if !filter.matches(&parsed) {
            return Outcome::Filtered;
        }
        let id = parsed.unique_id.clone();
        if !self.force && self.known.contains(&id) {
            return Outcome::AlreadyKnown(format!(
                "unique id {} was queued before (the collector's record)",
                crate::escape::escape_text(&id)
            ));
        }
        let line = InputLine {
            bytes: raw.to_vec(),
            full_len: raw.len(),
        };
        if self.dry_run {
            return match self.worker.dry_check(&line) {
                Ok(_) => {
                    self.known.insert(id);
                    Outcome::WouldQueue
                }
                Err(why) => Outcome::Failed(why),
            };
        }
        match self.worker.try_queue(&line) {
            Ok((entry, _, _)) => {
                self.known.insert(id);
                Outcome::Queued(entry)
            }
            Err(why) => Outcome::Failed(why),
        }
    }
}

/// One line of an index file, with where it came from, for progress and errors.
pub struct IndexLineAt<'a> {
    pub line_no: u64,
    /// Bytes of the (possibly compressed) file read so far.
    pub read: u64,
    pub raw: &'a [u8],
    pub outcome: &'a Outcome,
}

/// Opens an index file, gunzipping it when it starts with the gzip magic.
fn open_index(path: &Path) -> io::Result<(Box<dyn BufRead>, Arc<std::sync::atomic::AtomicU64>)> {
    use std::os::unix::fs::FileExt;
    let f = crate::safefs::Open::read(crate::safefs::Keeper::Anyone)
        .configured()
        .at(path)?;
    let mut magic = [0u8; 2];
    let n = f.read_at(&mut magic, 0)?;
    let counted = Counting {
        inner: f,
        read: Arc::new(std::sync::atomic::AtomicU64::new(0)),
    };
    let read = counted.read.clone();
    let reader: Box<dyn BufRead> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(counted)))
    } else {
        Box::new(BufReader::new(counted))
    };
    Ok((reader, read))
}

/// Counts the bytes read from the file (for progress through a compressed one).
struct Counting {
    inner: File,
    read: Arc<std::sync::atomic::AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Requeues the lines of an index file (plain or gzip) that match `filter`, in order,
/// calling `each` after every line.
pub fn requeue_index_file(
    path: &Path,
    filter: &LineFilter,
    r: &mut LineRequeuer,
    each: &mut dyn FnMut(&IndexLineAt),
) -> io::Result<Report> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let (mut input, read) = open_index(path).map_err(named)?;
    let mut report = Report::default();
    let mut line_no = 0;
    while let Some(line) = crate::collect::read_line(&mut input).map_err(named)? {
        line_no += 1;
        let outcome = if line.full_len > line.bytes.len() {
            Outcome::Failed(format!(
                "line of {} bytes is not an index line",
                line.full_len
            ))
        } else if line.bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            r.requeue_line(&line.bytes, filter)
        };
        report.count(&outcome);
        each(&IndexLineAt {
            line_no,
            read: read.load(std::sync::atomic::Ordering::Relaxed),
            raw: &line.bytes,
            outcome: &outcome,
        });
    }
    Ok(report)
}

/// One backlog record acted on.
pub struct BacklogRecordAt<'a> {
    pub reason_before: &'a str,
    pub raw: &'a [u8],
    pub outcome: &'a Outcome,
}

/// Retries the collector's backlog (in STATE_DIR, root's): takes it (so the collector
/// starts a new one), queues what can be queued now, and appends what still cannot back
/// to the backlog with its new reason. Backlogs a killed run took are picked up again. A
/// dry run only reads. No lock is taken: a collector that wrote to the backlog after it
/// was taken writes its record again to the new one ([`StateDir::backlog_many`]).
/// Records are read up to [`MAX_BACKLOG_RECORD_BYTES`]; a taken backlog with a longer
/// one (not the collector's writing) is kept, renamed, and named in the error.
pub fn requeue_backlog(
    r: &mut LineRequeuer,
    each: &mut dyn FnMut(&BacklogRecordAt),
) -> io::Result<Report> {
    let state = r.state().clone();
    let mut sources = taken_by_dead_runs(state.path())?;
    let backlog = state.join(BACKLOG_FILE);
    if r.dry_run {
        sources.push(backlog.clone());
    } else if let Some(taken) = take_backlog(&state, &backlog)? {
        sources.push(taken);
    }
    let mut report = Report::default();
    for source in sources {
        retry_backlog_file(r, &state, &backlog, &source, &mut report, each)?;
    }
    Ok(report)
}

/// The backlogs in the state dir `dir` taken by runs no longer alive (a killed one's,
/// or an earlier run of this process id's), sorted by name.
fn taken_by_dead_runs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut sources = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if let Some(pid) = name.strip_prefix(BACKLOG_TAKEN_PREFIX) {
            let alive = pid.parse::<u32>().is_ok_and(|p| {
                p != std::process::id() && Path::new(&format!("/proc/{p}")).exists()
            });
            if !alive {
                sources.push(entry.path());
            }
        }
    }
    sources.sort();
    Ok(sources)
}

/// Takes the collector's backlog `backlog`: renames it to a name with this process's
/// id, so the collector starts a new one. `None` when there is no backlog.
fn take_backlog(state: &StateDir, backlog: &Path) -> io::Result<Option<PathBuf>> {
    let taken = state.join(&format!("{BACKLOG_TAKEN_PREFIX}{}", std::process::id()));
    match fs::rename(backlog, &taken) {
        Ok(()) => Ok(Some(taken)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("{}: {e}", backlog.display()),
        )),
    }
}

/// Retries the records of one backlog file `source`, counting them in `report` and
/// calling `each` after every one. Unless in a dry run, the records that still fail go
/// back to the collector's backlog `backlog` (as they come, a bounded number at a time),
/// then `source` is removed, or, if it had records too long to read, kept as
/// `backlog.unread-PID` and named in the error. A `source` gone already is skipped.
fn retry_backlog_file(
    r: &mut LineRequeuer,
    state: &StateDir,
    backlog: &Path,
    source: &Path,
    report: &mut Report,
    each: &mut dyn FnMut(&BacklogRecordAt),
) -> io::Result<()> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", source.display()));
    let f = match crate::safefs::Open::read(crate::safefs::Keeper::ThisProcess).at(source) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(named(e)),
    };
    let none = LineFilter::default();
    let mut still: Vec<(Vec<u8>, String)> = Vec::new();
    let mut too_long = 0u64;
    let dry_run = r.dry_run;
    crate::queue::bounded::for_each_line(BufReader::new(f), MAX_BACKLOG_RECORD_BYTES, |_, line| {
        let Some(record) = line.bytes else {
            too_long += 1;
            return Ok(());
        };
        if record.is_empty() {
            return Ok(());
        }
        let (reason_before, raw) = backlog_record(record);
        let outcome = r.requeue_line(&raw, &none);
        if let Outcome::Failed(why) = &outcome {
            still.push((raw.clone(), why.clone()));
        }
        report.count(&outcome);
        each(&BacklogRecordAt {
            reason_before: &reason_before,
            raw: &raw,
            outcome: &outcome,
        });
        // Memory stays bounded however long the backlog: put back as we go.
        if !dry_run && still.len() >= 1024 {
            put_back(state, backlog, &mut still)?;
        }
        Ok(())
    })
    .map_err(named)?;
    if r.dry_run {
        return Ok(());
    }
    // Back into the (new) backlog before the taken file goes: a crash in between
    // may list a line twice, never lose it.
    put_back(state, backlog, &mut still)?;
    if too_long > 0 {
        return Err(keep_unread(state, source, too_long));
    }
    fs::remove_file(source).map_err(named)
}

/// A backlog record's reason and index line. A line that is not a backlog record is
/// kept whole, as a line that fails, rather than guessed at; its reason says what it
/// is (a newer version's record, or not a backlog record).
fn backlog_record(record: &[u8]) -> (String, Vec<u8>) {
    match parse_backlog_record(record) {
        Some((_, reason, raw)) => (reason, raw),
        None => match crate::queue::version::split_line(record) {
            Err(newer) => (format!("(a backlog record {newer})"), record.to_vec()),
            Ok(_) => ("(not a backlog record)".to_string(), record.to_vec()),
        },
    }
}

/// Appends the records that still fail, `still` (line, new reason), to the
/// collector's backlog `backlog`, and empties `still`.
fn put_back(
    state: &StateDir,
    backlog: &Path,
    still: &mut Vec<(Vec<u8>, String)>,
) -> io::Result<()> {
    let records: Vec<(&[u8], &str)> = still
        .iter()
        .map(|(raw, why)| (raw.as_slice(), why.as_str()))
        .collect();
    if !records.is_empty() {
        state
            .backlog_many(&records)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", backlog.display())))?;
    }
    still.clear();
    Ok(())
}

/// Keeps a taken backlog `source` that had `too_long` records over
/// [`MAX_BACKLOG_RECORD_BYTES`] (not read) as `backlog.unread-PID`, and returns the
/// error that names it (or the error renaming it).
fn keep_unread(state: &StateDir, source: &Path, too_long: u64) -> io::Error {
    let kept = state.join(&format!("backlog.unread-{}", std::process::id()));
    if let Err(e) = fs::rename(source, &kept) {
        return io::Error::new(e.kind(), format!("{}: {e}", source.display()));
    }
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: {too_long} records longer than {MAX_BACKLOG_RECORD_BYTES} bytes were not read; the file is kept as {}",
            source.display(),
            kept.display()
        ),
    )
}

mod request;
pub use request::{run, Error, Progress, Request, Source};

#[cfg(test)]
mod tests;
