//! What `modsec-shipper status` reports: the queue's depth and age, the failed area,
//! the backlog, the journal, and the last run, read without taking the queue lock or
//! changing anything (it may run as a monitoring user, beside a running shipper).
//!
//! Also the record of the last run (`EVENT_DIR/.last-run`, JSON), written by `drain` and
//! `run`, and the Nagios-style check over a [`QueueStatus`].

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::queue::failed::failed_entries;
use crate::queue::journal::read_journal;
use crate::queue::last_run::LastRun;
use crate::queue::latency::LatencyRecord;
use crate::queue::layout::{legacy, Legacy};
use crate::queue::{failed, held, reason, Queue};

/// An index file a collector follows, and how far it has read.
#[derive(Debug, Clone, Serialize)]
pub struct Followed {
    pub index: PathBuf,
    /// Bytes of it handled.
    pub offset: u64,
    /// Its size now, if it is still the file being read (not rotated since).
    pub size: Option<u64>,
}

/// The state of one queue.
#[derive(Debug, Clone, Serialize)]
pub struct QueueStatus {
    pub queue: PathBuf,
    /// Entries waiting to be shipped.
    pub entries: usize,
    /// Arrival time (unix seconds, from its name) of the oldest and newest entries.
    pub oldest: Option<u64>,
    pub newest: Option<u64>,
    /// Events sent and not yet answered (journaled, entry still queued).
    pub in_flight: usize,
    /// Entries in failed/, and how many per reason (the reason up to its first `:`).
    pub failed: usize,
    pub failed_by_reason: BTreeMap<String, usize>,
    /// Events a threshold held back (THRESHOLD_FILE), kept in held/ and recorded as
    /// suppressed in the delivered log (`requeue --suppressed` ships them).
    pub held: usize,
    /// Threshold summaries waiting to be stored in Sguil (`.thresholds`).
    pub summaries_waiting: usize,
    /// Index lines the collector could not act on (`requeue --backlog` retries them).
    pub backlog: usize,
    /// Index lines a collector spilled to disk and has not handled yet.
    pub overflow: usize,
    /// Queued entries whose file did not match its index line (size or md5).
    pub integrity_marked: usize,
    pub last_run: Option<LastRun>,
    /// How long entries waited until stored, as the running (or last) daemon measured.
    pub latency: Option<LatencyRecord>,
    /// Index files followed by `modsec-collector --follow` into this queue.
    pub followed: Vec<Followed>,
    /// Problems met while reading (an unreadable reason file, a bad last-run record).
    pub problems: Vec<String>,
    /// Nothing ever reached this queue: no entry, none failed, delivered, backlogged or
    /// spooled (see [`rule_engine_off`]).
    pub never_used: bool,
}

impl QueueStatus {
    /// Reads the queue at `dir`, and the collector's backlog, spools and `--follow`
    /// positions in its state dir `state_dir` (and any 0.1.0 ones still in the queue).
    /// Only an unreadable queue directory is an error; a part that cannot be read is
    /// named in `problems`.
    pub fn gather(dir: &Path, state_dir: &Path) -> io::Result<QueueStatus> {
        let queue = Queue::at(dir);
        let entries = queue.entries()?;
        let mut problems = Vec::new();
        let in_flight = match read_journal(dir) {
            Ok(records) => records.iter().filter(|r| r.entry_present(dir)).count(),
            Err(e) => {
                note(&mut problems, &crate::queue::journal::path(dir), &e);
                0
            }
        };
        let (failed, failed_by_reason) = match failed_reasons(dir) {
            Ok(v) => v,
            Err(e) => {
                note(&mut problems, &failed::dir(dir), &e);
                (0, BTreeMap::new())
            }
        };
        let lines = count_backlogs_and_spools(dir, state_dir, &mut problems);
        let integrity_marked = queue.integrity_marked().unwrap_or_else(|(at, e)| {
            note(&mut problems, &at, &e);
            0
        });
        let last_run = match LastRun::read(dir) {
            Ok(r) => r,
            Err(e) => {
                note(&mut problems, &crate::queue::last_run::path(dir), &e);
                None
            }
        };
        let latency = match LatencyRecord::read(dir) {
            Ok(r) => r,
            Err(e) => {
                note(&mut problems, &crate::queue::latency::path(dir), &e);
                None
            }
        };
        let followed = followed_indexes(state_dir, &mut problems);
        let held = held::count(dir).unwrap_or_else(|(at, e)| {
            note(&mut problems, &at, &e);
            0
        });
        let summaries_waiting = match crate::queue::threshold_state::load(dir) {
            Ok(t) => t.summaries.len(),
            Err(e) => {
                problems.push(e.to_string());
                0
            }
        };
        // One unreadable directory is met by more than one count: said once.
        let mut said = std::collections::HashSet::new();
        problems.retain(|p| said.insert(p.clone()));
        let never_used = entries.is_empty()
            && failed == 0
            && lines.backlog == 0
            && lines.overflow == 0
            && !lines.delivered;
        Ok(QueueStatus {
            never_used,
            queue: dir.to_path_buf(),
            followed,
            entries: entries.len(),
            oldest: entries.first().map(|e| e.name.sec),
            newest: entries.last().map(|e| e.name.sec),
            in_flight,
            failed,
            failed_by_reason,
            held,
            summaries_waiting,
            backlog: lines.backlog,
            overflow: lines.overflow,
            integrity_marked,
            last_run,
            latency,
            problems,
        })
    }

    /// Age in seconds of the oldest entry at `now` (unix seconds).
    pub fn oldest_age(&self, now: i64) -> Option<u64> {
        self.oldest
            .map(|t| u64::try_from(now).unwrap_or(0).saturating_sub(t))
    }
}

/// Adds to `problems` that `what` could not be read, and why.
fn note(problems: &mut Vec<String>, what: &Path, e: &dyn std::fmt::Display) {
    let text = e.to_string();
    if text.contains(&what.display().to_string()) {
        problems.push(text);
    } else {
        problems.push(format!("{}: {text}", what.display()));
    }
}

/// The lines of the collector's backlogs and spools, and whether the queue has a
/// delivered log with anything in it.
struct CountedLines {
    /// Lines of backlogs, the current one and any taken.
    backlog: usize,
    /// Lines of spools.
    overflow: usize,
    /// A non-empty delivered log (or rotated one) is in the queue.
    delivered: bool,
}

/// What a file whose lines `status` counts holds.
enum Lines {
    /// Index lines the collector could not act on.
    Backlog,
    /// Index lines a collector spilled to disk.
    Spool,
}

/// Which of a directory's files `name` is, if its lines are counted.
type Classify = fn(&str) -> Option<Lines>;

/// Which of the state dir's files `name` is, if its lines are counted.
fn lines_in_state(name: &str) -> Option<Lines> {
    use crate::state::{BACKLOG_FILE, BACKLOG_TAKEN_PREFIX, SPOOL_PREFIX};
    if name == BACKLOG_FILE || name.starts_with(BACKLOG_TAKEN_PREFIX) {
        Some(Lines::Backlog)
    } else {
        name.starts_with(SPOOL_PREFIX).then_some(Lines::Spool)
    }
}

/// Which of 0.1.0's files in the queue `name` is, if its lines are counted.
fn lines_in_queue(name: &str) -> Option<Lines> {
    match legacy(name)? {
        Legacy::Backlog | Legacy::TakenBacklog { .. } => Some(Lines::Backlog),
        Legacy::Spool { .. } => Some(Lines::Spool),
        Legacy::Position => None,
    }
}

/// Counts the lines of the backlogs and spools in the state dir `state_dir`, then of
/// 0.1.0's in the queue `dir` (until a new collector takes them), and notes whether
/// `dir` has a non-empty delivered log. At most [`MAX_COUNTED_FILES`] files are
/// counted in each directory; the rest, and what cannot be read, go to `problems`.
fn count_backlogs_and_spools(
    dir: &Path,
    state_dir: &Path,
    problems: &mut Vec<String>,
) -> CountedLines {
    let mut lines = CountedLines {
        backlog: 0,
        overflow: 0,
        delivered: false,
    };
    lines.delivered = crate::queue::delivered::any_recorded(dir);
    // Each directory, and which of its names are backlogs and spools.
    let counted: [(&Path, Classify); 2] = [(state_dir, lines_in_state), (dir, lines_in_queue)];
    for (at, backlog_or_spool) in counted {
        // In the queue its owner can plant any number of these names, each any size.
        let mut files_left = MAX_COUNTED_FILES;
        let mut not_counted = 0usize;
        let listing = match fs::read_dir(at) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound && at != dir => continue,
            Err(e) => {
                note(problems, at, &e);
                continue;
            }
        };
        for entry in listing.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let counter = match backlog_or_spool(name) {
                Some(Lines::Backlog) => &mut lines.backlog,
                Some(Lines::Spool) => &mut lines.overflow,
                None => continue,
            };
            if files_left == 0 {
                not_counted += 1;
                continue;
            }
            files_left -= 1;
            match count_lines(&entry.path()) {
                Ok(n) => *counter += n,
                Err(e) => note(problems, &entry.path(), &e),
            }
        }
        if not_counted > 0 {
            note(
                problems,
                at,
                &format!("{not_counted} more backlog or spool files, not counted (the first {MAX_COUNTED_FILES} are)"),
            );
        }
    }
    lines
}

/// The index files `modsec-collector --follow` saved its position in, in `state_dir`,
/// each with its size when it is still the file read (same device and inode). An
/// unreadable state dir goes to `problems`; a missing one means none.
fn followed_indexes(state_dir: &Path, problems: &mut Vec<String>) -> Vec<Followed> {
    match crate::queue::position::saved_positions(state_dir) {
        Ok(list) => list
            .into_iter()
            .map(|(index, p)| {
                let size = fs::metadata(&index)
                    .ok()
                    .filter(|m| {
                        use std::os::unix::fs::MetadataExt;
                        (m.dev(), m.ino()) == (p.dev, p.ino)
                    })
                    .map(|m| m.len());
                Followed {
                    index,
                    offset: p.offset,
                    size,
                }
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            note(problems, state_dir, &e);
            Vec::new()
        }
    }
}

/// Where Debian keeps ModSecurity 2's settings: Apache's mods-enabled/security2.conf
/// includes every `*.conf` there.
pub const MODSECURITY_CONF_DIR: &str = "/etc/modsecurity";

/// Why ModSecurity logs nothing at all, if its config in `dir` (Debian's layout) says
/// so: its rule engine is off by default, and Debian ships only
/// `modsecurity.conf-recommended`, so until the admin makes `modsecurity.conf` (or sets
/// `SecRuleEngine` elsewhere, which this cannot see) no event is written, piped or
/// queued. Also a `modsecurity.conf` whose last `SecRuleEngine` is `Off`. `None` when
/// the engine looks on, or `dir` is not there or not readable.
pub fn rule_engine_off(dir: &Path) -> Option<String> {
    let conf = dir.join("modsecurity.conf");
    let recommended = dir.join("modsecurity.conf-recommended");
    let turn_on = format!(
        "cp {} {} and set SecRuleEngine On (or DetectionOnly), then reload Apache",
        recommended.display(),
        conf.display()
    );
    let text = match fs::read_to_string(&conf) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound && recommended.is_file() => {
            return Some(format!(
                "{} does not exist: unless SecRuleEngine is set elsewhere, ModSecurity's rule \
                 engine is off and nothing is logged or queued ({turn_on})",
                conf.display()
            ));
        }
        Err(_) => return None,
    };
    let last = text
        .lines()
        .enumerate()
        .filter_map(|(n, l)| {
            let mut words = l.split_whitespace();
            let directive = words.next()?;
            directive
                .eq_ignore_ascii_case("SecRuleEngine")
                .then(|| (n + 1, words.next().unwrap_or("").to_string()))
        })
        .last()?;
    last.1.eq_ignore_ascii_case("off").then(|| {
        format!(
            "{}:{}: SecRuleEngine Off: ModSecurity's rule engine is off and nothing is logged or \
             queued (set it On or DetectionOnly, then reload Apache)",
            conf.display(),
            last.0
        )
    })
}

/// Counts the entries in failed/ ([`failed_entries`], as `requeue --failed` lists
/// them) and groups their reasons.
fn failed_reasons(dir: &Path) -> io::Result<(usize, BTreeMap<String, usize>)> {
    let mut by_reason = BTreeMap::new();
    let entries = failed_entries(dir)?;
    for e in &entries {
        let reason = e
            .reason
            .as_deref()
            .map(reason::kind)
            .unwrap_or_else(|| "(no reason file)".to_string());
        *by_reason.entry(reason).or_insert(0) += 1;
    }
    Ok((entries.len(), by_reason))
}

/// Counts the lines of a backlog or spool, opened checked (a link planted where one
/// should be is a problem named, not followed; `status` may run as root).
fn count_lines(path: &Path) -> io::Result<usize> {
    use std::io::Read;
    let f = crate::safefs::Open::read(crate::safefs::Keeper::Anyone).at(path)?;
    let mut r = io::BufReader::with_capacity(64 * 1024, f.take(MAX_COUNTED_BYTES + 1));
    let mut n = 0;
    let mut read = 0u64;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(n);
        }
        read += buf.len() as u64;
        if read > MAX_COUNTED_BYTES {
            return Err(crate::queue::bounded::over_bound(
                path,
                MAX_COUNTED_BYTES,
                "MAX_COUNTED_BYTES",
            ));
        }
        n += buf.iter().filter(|&&b| b == b'\n').count();
        let len = buf.len();
        r.consume(len);
    }
}

/// The most bytes of one backlog or spool `status` reads to count its lines: the most a
/// collector takes over from 0.1.0 (a spool or backlog of its own is rotated long before;
/// a sparse 8 TB one planted in the queue would keep a monitoring check reading for a day).
pub const MAX_COUNTED_BYTES: u64 = crate::collect::migrate::MAX_MIGRATED_BYTES;
/// The most backlog or spool files counted in one directory: a real one holds a backlog,
/// a taken backlog and a spool per collector, where the queue's owner can plant
/// hundreds of thousands.
pub const MAX_COUNTED_FILES: usize = crate::collect::migrate::MAX_MIGRATED_FILES;

/// Nagios-style levels, with their exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
            Level::Unknown => "UNKNOWN",
        }
    }
}

/// Thresholds of the check; none set is always OK.
#[derive(Debug, Clone, Copy, Default)]
pub struct Thresholds {
    /// Oldest entry older than this many seconds: WARNING.
    pub warn_age: Option<u64>,
    /// Oldest entry older than this many seconds: CRITICAL.
    pub crit_age: Option<u64>,
    /// At least this many entries in failed/: CRITICAL.
    pub crit_failed: Option<usize>,
}

impl Thresholds {
    /// The level and the reasons for it.
    pub fn check(&self, s: &QueueStatus, now: i64) -> (Level, Vec<String>) {
        let mut level = Level::Ok;
        let mut why = Vec::new();
        let age = s.oldest_age(now).unwrap_or(0);
        if let Some(c) = self.crit_age.filter(|&c| s.entries > 0 && age > c) {
            level = level.max(Level::Critical);
            why.push(format!("oldest entry {age} s old (critical above {c} s)"));
        } else if let Some(w) = self.warn_age.filter(|&w| s.entries > 0 && age > w) {
            level = level.max(Level::Warning);
            why.push(format!("oldest entry {age} s old (warning above {w} s)"));
        }
        if let Some(c) = self.crit_failed.filter(|&c| s.failed >= c) {
            level = level.max(Level::Critical);
            why.push(format!("{} entries in failed/ (critical at {c})", s.failed));
        }
        (level, why)
    }
}

pub mod prometheus;
pub mod text;
mod verdict;

pub use verdict::{evaluate, Found, Request, Verdict};

#[cfg(test)]
mod tests;
