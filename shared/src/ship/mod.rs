//! Delivery: from queue entries to events stored in Sguil, each exactly once
//! (ARCHITECTURE.md, "Exactly once into Sguil").
//!
//! A [`Shipper`] owns the queue (under its lock) and the journal. Each window of
//! entries is read, decided, mapped, journaled (one fsync), sent, and each entry is
//! removed only when its event is answered: `ConfirmEvent`, or `Duplicate entry` for a
//! resend. What is left unanswered (a crash, a lost connection, a timeout) stays in the
//! journal and goes first, under the same sid, cid and time, the next time a session
//! starts. An entry that cannot be read or is refused by sguild goes to `failed/`.
//!
//! Where the events go is a [`Sink`]: sguild ([`crate::sguil::client::AgentSession`])
//! or JSON lines on stdout.

pub mod load;
pub mod lock;
pub mod run;
pub mod settings;
pub mod sink;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{TimeZone, Utc};
use thiserror::Error;

use crate::alert::{map_event, AlertSettings, Decision};
use crate::queue::delivered::{Delivered, DeliveredLog};
use crate::queue::journal::{Journal, JournalRecord};
use crate::queue::{Queue, QueueEntry};
use crate::sguil::client::{Outcome, SessionError};
use crate::sguil::wire::SguilEvent;
use load::{load_entry, LoadError, LoadOptions};
pub use sink::Sink;

/// What shipping needs besides the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipSettings {
    pub alert: AlertSettings,
    pub load: LoadOptions,
    /// SYMLINK_REMOVE_ORIG: remove a symlinked entry's target once delivered.
    pub remove_orig: bool,
    /// SEND_WINDOW: events in flight at most (journaled in batches of at least 32).
    pub window: usize,
    /// THRESHOLD_FILE's rules, if one is set.
    pub thresholds: Option<std::sync::Arc<crate::threshold::Rules>>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Stored by sguild (confirmed, or a resend answered as a duplicate).
    pub shipped: u64,
    /// Of those, resends found already stored.
    pub already_stored: u64,
    /// Not alerts (and HANDLE_ALL_EVENTS off): removed without sending.
    pub skipped: u64,
    pub quarantined: u64,
    /// Shipped with empty addresses because they were IPv6 (the detail has them).
    pub ipv6: u64,
    /// Delivered, but the entry could not be removed; it stays journaled.
    pub undeletable: u64,
    /// From the collector's link (the entry's name) to sguild's answer, per event
    /// stored.
    pub latency: crate::queue::latency::Histogram,
    /// Held back by a threshold: kept in held/, recorded as suppressed.
    pub held: u64,
    /// Threshold summaries stored (counted in `shipped` too).
    pub summaries: u64,
}

impl Stats {
    /// Entries handled (shipped, skipped, quarantined or held back).
    pub fn handled(&self) -> u64 {
        self.shipped + self.skipped + self.quarantined + self.held
    }
}

/// Held-back entries journaled with one fsync at most: a held-back event costs no round
/// trip, so their batches are much larger than a window of sends.
const HELD_BATCH: usize = 4096;

/// Why shipping stopped before the queue was done.
#[derive(Debug, Error)]
pub enum ShipError {
    /// The session broke; whatever was answered is done, the rest stays journaled.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// sguild said a *first* send was a duplicate: another agent stores events under the
    /// same sid (two sensors with one HOSTNAME?). The entry stays; a new session gets a
    /// fresh maxCid.
    #[error("{server}: cid {cid} of sid {sid} was already taken by someone else: does another agent register as hostname `{hostname}`?")]
    CidCollision {
        server: String,
        sid: u32,
        cid: u32,
        hostname: String,
    },
    /// The queue or journal cannot be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ShipError + '_ {
    move |source| ShipError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Threads reading and parsing entries ahead of the sender: parsing is most of the
/// work, and the sender mostly waits on the disk and the network.
const LOADERS: usize = 2;

/// Entries a loader reads before it hands them over, at once.
const LOAD_CHUNK: usize = 16;

/// Events journaled with one fsync, whatever the window: an fsync per event would cost
/// more than sguild's own work per event with a window of 1 (measured: 0.68 of a bare
/// client's rate). More journaled than sent only means more resends, answered as
/// duplicates, after a crash.
const JOURNAL_BATCH: usize = 32;

fn batch_size(window: usize) -> usize {
    window.max(JOURNAL_BATCH)
}

/// Events written with one write: half the window, so that the server works on one
/// half while the other is answered and replaced.
fn chunk_size(window: usize) -> usize {
    window.div_ceil(2).max(1)
}

/// Limits on one call of [`Shipper::ship`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Bounds {
    pub max_events: Option<u64>,
    pub deadline: Option<Instant>,
}

/// A journaled event still waiting for its answer.
#[derive(Debug, Clone)]
struct InFlight {
    record: JournalRecord,
    /// Sent before in a way that may have reached sguild (an earlier run, or a session
    /// that broke): a duplicate then means "stored".
    maybe_sent: bool,
}

/// A mapped event ready to be sent, with what is needed to finish its entry.
struct Prepared {
    event: SguilEvent,
    entry: String,
    unique_id: String,
    ino: u64,
    target: Option<PathBuf>,
    ipv6: bool,
}

/// An entry read, parsed and mapped (by the loader thread).
struct Ready {
    mapped: crate::alert::Mapped,
    unique_id: String,
    ino: u64,
    target: Option<PathBuf>,
    /// The real addresses (IPv6 ones too) and the event's own time, for thresholds.
    src: std::net::IpAddr,
    dst: std::net::IpAddr,
    time: i64,
}

/// An entry a threshold held back, journaled and not yet finished.
struct HeldBack {
    entry: String,
    ino: u64,
    unique_id: String,
    why: String,
}

/// What [`Shipper::take`] made of an entry.
enum Taken {
    Send(Prepared),
    Held(HeldBack),
}

/// Reads, parses and maps the entry `file_name` of the queue at `dir`.
fn load_and_map(dir: &Path, file_name: &str, s: &ShipSettings) -> Result<Ready, LoadError> {
    let loaded = load_entry(dir, file_name, &s.load)?;
    let notes: Vec<String> = crate::queue::integrity_note(dir, file_name)
        .map(|n| format!("collector: {n}"))
        .into_iter()
        .collect();
    let mapped = map_event(&loaded.event, &loaded.raw.bytes, &notes, &s.alert);
    Ok(Ready {
        mapped,
        src: loaded.event.client.addr,
        dst: loaded.event.server.addr,
        time: loaded.event.time.timestamp(),
        unique_id: loaded.event.unique_id,
        ino: loaded.ino,
        target: loaded.target,
    })
}

/// The queue, its journal, and the next cid.
pub struct Shipper {
    queue: Queue,
    journal: Journal,
    /// What was delivered, by unique id (for `requeue` and for operators).
    delivered_log: DeliveredLog,
    settings: ShipSettings,
    /// Journaled and not yet answered, oldest first.
    unresolved: Vec<InFlight>,
    /// Submitted and not yet answered, oldest first.
    flight: std::collections::VecDeque<Prepared>,
    /// A first send was answered `Duplicate entry`: stop after the window in flight.
    collision: Option<ShipError>,
    next_cid: u32,
    /// The thresholds' windows and summaries (`.thresholds`).
    tracker: crate::threshold::Tracker,
    /// Held-back records journaled whose entries are not yet in held/.
    held_journaled: Vec<JournalRecord>,
    /// Entries `requeue --suppressed` marked released (`.released/`), read once a pass
    /// (after the queue is listed: a release is marked before its entry is back).
    released: HashSet<String>,
    /// Whether `.integrity/` held any marker when the pass began (else held-back
    /// entries skip the removal of a marker they cannot have).
    integrity_any: bool,
    pub stats: Stats,
}

impl Shipper {
    /// Opens the queue at `dir` (which must exist) and reads the journal. The caller
    /// holds the queue lock.
    pub fn open(dir: &Path, settings: ShipSettings) -> Result<Shipper, ShipError> {
        let meta = fs::metadata(dir).map_err(io_err(dir))?;
        if !meta.is_dir() {
            return Err(ShipError::Io {
                path: dir.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
            });
        }
        let queue = Queue::open(dir).map_err(io_err(dir))?;
        let journal_path = dir.join(crate::queue::layout::JOURNAL_FILE);
        let (journal, records) = Journal::open(dir).map_err(io_err(&journal_path))?;
        let next_cid = records.iter().map(|r| r.cid).max().unwrap_or(0);
        let tracker = crate::queue::threshold_state::load(dir).map_err(|source| ShipError::Io {
            path: dir.join(crate::queue::layout::THRESHOLD_STATE_FILE),
            source,
        })?;
        let (held, records): (Vec<JournalRecord>, Vec<JournalRecord>) =
            records.into_iter().partition(|r| r.held);
        // A held-back record is done once its entry is in held/. Its entry back in the
        // queue with a release marker was put back by `requeue --suppressed` (the same
        // name and inode): that record is stale, never acted on again.
        let released = names_in(&dir.join(crate::queue::layout::RELEASED_DIR));
        let held_journaled: Vec<JournalRecord> = held
            .into_iter()
            .filter(|r| r.entry_present(dir) && !released.contains(&r.entry))
            .collect();
        let unresolved: Vec<InFlight> = records
            .into_iter()
            .filter(|r| r.entry_present(dir) || tracker.summary(&r.entry).is_some())
            .map(|record| InFlight {
                record,
                maybe_sent: true,
            })
            .collect();
        if !unresolved.is_empty() {
            log::info!(
                "{}: {} event(s) sent before without an answer; resending them first",
                journal.path().display(),
                unresolved.len()
            );
        }
        let mut shipper = Shipper {
            queue,
            journal,
            delivered_log: DeliveredLog::open(dir),
            settings,
            unresolved,
            flight: std::collections::VecDeque::new(),
            collision: None,
            next_cid: next_cid.saturating_add(1),
            tracker,
            held_journaled: Vec::new(),
            released,
            integrity_any: true,
            stats: Stats::default(),
        };
        if !held_journaled.is_empty() {
            // Decided before a crash: held back whatever the thresholds say now. Those
            // already on record as suppressed are not recorded twice.
            let on_record: HashSet<String> = crate::queue::delivered::read_delivered(dir)
                .map_err(io_err(dir))?
                .into_iter()
                .filter(|d| d.suppressed.is_some())
                .map(|d| d.entry)
                .collect();
            let mut todo = Vec::new();
            for r in held_journaled {
                let (unique_id, recorded) = if on_record.contains(&r.entry) {
                    (String::new(), true)
                } else {
                    let id = crate::queue::known::unique_id_of(
                        &dir.join(&r.entry),
                        &crate::auditlog::ParseLimits::default(),
                    )
                    .unwrap_or_default();
                    (id, false)
                };
                shipper.held_journaled.push(r.clone());
                todo.push((
                    HeldBack {
                        entry: r.entry,
                        ino: r.ino,
                        unique_id,
                        why: "held back by a threshold (finished after a restart)".into(),
                    },
                    recorded,
                ));
            }
            shipper.finish_held(todo, true)?;
        }
        Ok(shipper)
    }

    /// Held-back entries are journaled: each is recorded as suppressed in the delivered
    /// log (unless `recorded` already), then moved to `held/`.
    /// `verify`: the entry's inode is checked first (after a restart: the name may have
    /// come back with another file); in a pass, the entry was just read under the lock.
    fn finish_held(&mut self, held: Vec<(HeldBack, bool)>, verify: bool) -> Result<(), ShipError> {
        if held.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp();
        let records: Vec<Delivered> = held
            .iter()
            .filter(|(_, recorded)| !recorded)
            .map(|(h, _)| Delivered {
                time: now,
                sid: 0,
                cid: 0,
                unique_id: if h.unique_id.is_empty() {
                    "-".into()
                } else {
                    h.unique_id.clone()
                },
                entry: h.entry.clone(),
                suppressed: Some(h.why.clone()),
            })
            .collect();
        self.delivered_log
            .record_many(&records)
            .map_err(|e| ShipError::Io {
                path: self.queue.dir().join(crate::queue::layout::DELIVERED_FILE),
                source: e,
            })?;
        let dir = self.queue.dir().to_path_buf();
        let held_dir = dir.join(crate::queue::layout::HELD_DIR);
        match fs::create_dir(&held_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&held_dir)(e)),
        }
        for (h, _) in &held {
            let from = dir.join(&h.entry);
            if verify {
                match fs::symlink_metadata(&from) {
                    Ok(m) if std::os::unix::fs::MetadataExt::ino(&m) == h.ino => {}
                    _ => continue, // gone, or another file under the name
                }
            }
            match fs::rename(&from, held_dir.join(&h.entry)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&from)(e)),
            }
            if self.integrity_any {
                self.queue.clear_integrity(&h.entry);
            }
            self.stats.held += 1;
        }
        let done: HashSet<&str> = held.iter().map(|(h, _)| h.entry.as_str()).collect();
        self.held_journaled
            .retain(|r| !done.contains(r.entry.as_str()));
        Ok(())
    }

    /// The journal's records not yet resolved: sends not answered, held-back entries not
    /// yet moved.
    fn journal_keep(&self) -> Vec<JournalRecord> {
        self.unresolved
            .iter()
            .map(|f| f.record.clone())
            .chain(self.held_journaled.iter().cloned())
            .collect()
    }

    /// Saves the thresholds' state if it changed (before the decisions that changed it
    /// are journaled: a crash between the two counts those events again, never loses
    /// one, and a summary is on record before it can be sent).
    fn save_thresholds(&mut self) -> Result<(), ShipError> {
        if self.tracker.take_changed() {
            crate::queue::threshold_state::save(self.queue.dir(), &self.tracker).map_err(
                |source| ShipError::Io {
                    path: self
                        .queue
                        .dir()
                        .join(crate::queue::layout::THRESHOLD_STATE_FILE),
                    source,
                },
            )?;
        }
        Ok(())
    }

    /// A new event of this session: its sid and hostname, the next cid (taken only when
    /// the event is valid).
    fn new_event(
        &mut self,
        mut fields: crate::sguil::wire::EventFields,
        sink: &dyn Sink,
    ) -> Result<SguilEvent, crate::sguil::wire::EventError> {
        fields.sid = sink.sid();
        fields.hostname = sink.hostname().to_string();
        fields.cid = self.next_cid;
        let event = SguilEvent::new(fields)?;
        self.next_cid = self.next_cid.saturating_add(1);
        Ok(event)
    }

    /// Summaries waiting in the state and not yet journaled, as events with new cids.
    fn new_summaries(&mut self, sink: &dyn Sink) -> Vec<Prepared> {
        let journaled: HashSet<String> = self
            .unresolved
            .iter()
            .map(|f| f.record.entry.clone())
            .collect();
        let waiting: Vec<crate::threshold::Summary> = self
            .tracker
            .summaries
            .iter()
            .filter(|s| !journaled.contains(&s.name()))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for s in waiting {
            match self.new_event(summary_fields(&s, &self.settings.alert), sink) {
                Ok(event) => {
                    out.push(Prepared {
                        event,
                        entry: s.name(),
                        unique_id: s.name(),
                        ino: 0,
                        target: None,
                        ipv6: false,
                    });
                }
                Err(e) => {
                    log::error!("{}: cannot be sent to Sguil: {e}; dropped", s.name());
                    self.tracker.summary_done(&s.name());
                }
            }
        }
        out
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Replaces the settings (SIGHUP).
    pub fn set_settings(&mut self, settings: ShipSettings) {
        self.settings = settings;
    }

    /// Events journaled and not yet answered.
    pub fn unresolved(&self) -> usize {
        self.unresolved.len()
    }

    /// Whether the thresholds have something to send though the queue is empty: a
    /// summary waiting, or a window that held events back and that the clock has passed
    /// (its summary is due). A `drain` of an empty queue still sends those.
    pub fn summaries_due(&self, now: i64) -> bool {
        !self.tracker.summaries.is_empty()
            || self
                .tracker
                .windows
                .values()
                .any(|w| w.held > 0 && w.start.saturating_add(i64::from(w.seconds)) <= now)
    }

    /// Entries in the queue now.
    pub fn remaining(&self) -> Result<usize, ShipError> {
        Ok(self
            .queue
            .entries()
            .map_err(io_err(self.queue.dir()))?
            .len())
    }

    /// Ships what is in the queue: first what the journal holds unanswered, then every
    /// entry present, oldest first, a window at a time, until the queue as listed at the
    /// start is done, `bounds` are reached or `stop` is set. Limits are checked before
    /// each write to the server, and what is in flight is answered before returning;
    /// events journaled but not yet written stay journaled and go first next time.
    /// Returns whether entries were left for later.
    pub fn ship(
        &mut self,
        sink: &mut dyn Sink,
        bounds: Bounds,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<bool, ShipError> {
        use std::sync::atomic::Ordering;
        // Events still in flight belong to a session that broke (a journal write failed
        // after they were sent): their answers will never come on this one.
        if !self.flight.is_empty() {
            self.abandon_flight();
        }
        self.next_cid = self.next_cid.max(sink.max_cid().saturating_add(1));
        let start = self.stats.handled();
        let limit_reached = |s: &Shipper| {
            bounds
                .max_events
                .is_some_and(|m| s.stats.handled() - start + s.flight.len() as u64 >= m)
                || bounds.deadline.is_some_and(|d| Instant::now() >= d)
                || stop.load(Ordering::Relaxed)
        };
        self.resend_unresolved(sink)?;
        let dir = self.queue.dir().to_path_buf();
        let entries = self.queue.entries().map_err(io_err(&dir))?;
        self.released = names_in(&dir.join(crate::queue::layout::RELEASED_DIR));
        self.integrity_any = !names_in(&dir.join(crate::queue::INTEGRITY_DIR)).is_empty();
        let journaled: HashSet<String> = self
            .unresolved
            .iter()
            .map(|f| f.record.entry.clone())
            .chain(self.held_journaled.iter().map(|r| r.entry.clone()))
            .collect();
        let todo: Vec<QueueEntry> = entries
            .into_iter()
            .filter(|e| !journaled.contains(&e.file_name))
            .collect();
        let batch = batch_size(self.settings.window);
        let settings = self.settings.clone();
        let journal_path = self.journal.path().to_path_buf();
        // Reading and parsing run in a second thread, a few batches ahead: the main
        // thread only journals, sends, and removes.
        let left_over = std::thread::scope(|scope| -> Result<bool, ShipError> {
            // Chunk i of LOAD_CHUNK entries goes to loader i % LOADERS; reading the
            // channels in turn gives the entries back in queue order. A chunk is one
            // hand-over: one per entry made the threads spin on each other (a flood of
            // held-back events is mostly hand-overs otherwise).
            let chunks: Vec<&[QueueEntry]> = todo.chunks(LOAD_CHUNK).collect();
            let mut channels = Vec::with_capacity(LOADERS);
            for k in 0..LOADERS {
                let (tx, rx) = crossbeam_channel::bounded((batch * 2).div_ceil(LOAD_CHUNK).max(2));
                channels.push(rx);
                let mine: Vec<&[QueueEntry]> =
                    chunks.iter().skip(k).step_by(LOADERS).copied().collect();
                let (dir, settings) = (&dir, &settings);
                scope.spawn(move || {
                    for chunk in mine {
                        let loaded: Vec<(QueueEntry, Result<Ready, LoadError>)> = chunk
                            .iter()
                            .map(|e| (e.clone(), load_and_map(dir, &e.file_name, settings)))
                            .collect();
                        if tx.send(loaded).is_err() {
                            break; // shipping stopped
                        }
                    }
                });
            }
            let total = chunks.len();
            let channels = &channels;
            let mut pending = (0..total)
                .map_while(|i| channels[i % LOADERS].recv().ok())
                .flatten()
                .peekable();
            // Batch k is sent while batch k+1 is journaled, so the journal's fsync
            // overlaps the wait for sguild's answers; nothing is sent before its record
            // is durable.
            let mut current: Vec<Prepared> = Vec::new();
            let mut expired_closed = false;
            loop {
                if limit_reached(self) || self.collision.is_some() {
                    return Ok(true);
                }
                let mut next = Vec::with_capacity(batch);
                let mut held_next: Vec<(HeldBack, bool)> = Vec::new();
                while next.len() < batch && held_next.len() < HELD_BATCH {
                    let queued = self.flight.len() + current.len() + next.len();
                    let taken = self.stats.handled() - start + queued as u64;
                    if bounds.max_events.is_some_and(|m| taken >= m) {
                        break;
                    }
                    let Some((entry, ready)) = pending.next() else {
                        break;
                    };
                    match self.take(&entry, ready, sink)? {
                        Some(Taken::Send(p)) => next.push(p),
                        Some(Taken::Held(h)) => held_next.push((h, false)),
                        None => {}
                    }
                }
                if pending.peek().is_none() && !expired_closed {
                    // The queue is done: windows the clock has passed close now (their
                    // summaries go in this batch).
                    expired_closed = true;
                    self.tracker.close_expired(chrono::Utc::now().timestamp());
                }
                self.save_thresholds()?;
                next.extend(self.new_summaries(sink));
                if next.is_empty() && current.is_empty() && held_next.is_empty() {
                    if pending.peek().is_none() {
                        return Ok(false);
                    }
                    continue; // a limit was reached, or the batch held only non-alerts
                }
                let written = self.journal_batch(&next, &held_next)?;
                let sent = self.submit(sink, std::mem::take(&mut current), &limit_reached);
                let durable = written.wait();
                sent?;
                durable.map_err(io_err(&journal_path))?;
                self.finish_held(held_next, false)?;
                // No append is pending here: a journal grown past its in-run bound is
                // rewritten to what is not yet answered, so that it stays far below
                // MAX_JOURNAL_BYTES however long the run.
                if self.journal.wants_compaction_in_run() {
                    let keep = self.journal_keep();
                    self.journal.rewrite(&keep).map_err(io_err(&journal_path))?;
                }
                current = next;
            }
        })?;
        self.pump(sink, 0)?;
        if let Some(c) = self.collision.take() {
            return Err(c);
        }
        if self.unresolved.is_empty()
            && self.held_journaled.is_empty()
            && self.journal.wants_compaction()
        {
            let path = self.journal.path().to_path_buf();
            self.journal.rewrite(&[]).map_err(io_err(&path))?;
        }
        Ok(left_over)
    }

    /// Acts on an entry the loader read: quarantines what could not be read, removes
    /// non-alerts, gives the rest a cid. `None` when there is nothing to send.
    fn take(
        &mut self,
        entry: &QueueEntry,
        ready: Result<Ready, LoadError>,
        sink: &dyn Sink,
    ) -> Result<Option<Taken>, ShipError> {
        let ready = match ready {
            Ok(r) => r,
            Err(LoadError::Gone) => return Ok(None),
            Err(LoadError::Refused(why)) => {
                self.quarantine(&entry.file_name, &why)?;
                return Ok(None);
            }
        };
        if ready.mapped.decision == Decision::Skip {
            log::debug!(
                "{}: {} is not an alert; removed",
                entry.file_name,
                ready.unique_id
            );
            self.finish(&entry.file_name, ready.target.as_deref());
            self.stats.skipped += 1;
            return Ok(None);
        }
        if let Some(rules) = self.settings.thresholds.clone() {
            let facts = crate::threshold::Facts {
                sig: ready.mapped.fields.sig_id,
                src: Some(ready.src),
                dst: Some(ready.dst),
                // Never later than now: an event dated in the future (its time is the
                // attacker's to write) would open a window that closes only then, and
                // hold every later alert of its key back with no summary.
                time: ready.time.min(chrono::Utc::now().timestamp()),
                unique_id: &ready.unique_id,
            };
            // `requeue --suppressed` put it back: shipped whatever the thresholds say.
            let verdict = if self.released.contains(&entry.file_name) {
                crate::threshold::Verdict::Pass
            } else {
                self.tracker.decide(&rules, &facts)
            };
            if let crate::threshold::Verdict::Hold(why) = verdict {
                return Ok(Some(Taken::Held(HeldBack {
                    entry: entry.file_name.clone(),
                    ino: ready.ino,
                    unique_id: ready.unique_id,
                    why,
                })));
            }
        }
        match self.new_event(ready.mapped.fields, sink) {
            Ok(event) => Ok(Some(Taken::Send(Prepared {
                event,
                entry: entry.file_name.clone(),
                unique_id: ready.unique_id,
                ino: ready.ino,
                target: ready.target,
                ipv6: ready.mapped.ipv6,
            }))),
            Err(e) => {
                self.quarantine(&entry.file_name, &format!("cannot be sent to Sguil: {e}"))?;
                Ok(None)
            }
        }
    }

    /// Starts journaling a batch of new events (one write, one fsync, on another thread);
    /// none of it may be sent before [`Pending::wait`](crate::queue::journal::Pending::wait) says it is durable.
    fn journal_batch(
        &mut self,
        window: &[Prepared],
        held: &[(HeldBack, bool)],
    ) -> Result<crate::queue::journal::Pending, ShipError> {
        let held: Vec<JournalRecord> = held
            .iter()
            .map(|(h, _)| JournalRecord {
                sid: 0,
                cid: 0,
                time: 0,
                ino: h.ino,
                hostname: String::new(),
                entry: h.entry.clone(),
                held: true,
            })
            .collect();
        let records: Vec<JournalRecord> = window
            .iter()
            .map(|p| {
                let f = p.event.fields();
                JournalRecord {
                    sid: f.sid,
                    cid: f.cid,
                    time: f.time.timestamp(),
                    ino: p.ino,
                    hostname: f.hostname.clone(),
                    entry: p.entry.clone(),
                    held: false,
                }
            })
            .collect();
        let path = self.journal.path().to_path_buf();
        let all: Vec<JournalRecord> = records.iter().chain(held.iter()).cloned().collect();
        let pending = self.journal.append_async(&all).map_err(io_err(&path))?;
        self.held_journaled.extend(held);
        self.unresolved
            .extend(records.into_iter().map(|record| InFlight {
                record,
                maybe_sent: false,
            }));
        Ok(pending)
    }

    /// Resends what the journal holds unanswered, with its sid, cid, time and hostname.
    fn resend_unresolved(&mut self, sink: &mut dyn Sink) -> Result<(), ShipError> {
        let todo: Vec<JournalRecord> = self.unresolved.iter().map(|f| f.record.clone()).collect();
        for chunk in todo.chunks(batch_size(self.settings.window)) {
            let mut window = Vec::new();
            for r in chunk {
                if let Some(s) = self.tracker.summary(&r.entry).cloned() {
                    let mut fields = summary_fields(&s, &self.settings.alert);
                    as_journaled(&mut fields, r);
                    match SguilEvent::new(fields) {
                        Ok(event) => window.push(Prepared {
                            event,
                            entry: r.entry.clone(),
                            unique_id: r.entry.clone(),
                            ino: 0,
                            target: None,
                            ipv6: false,
                        }),
                        Err(e) => {
                            log::error!("{}: cannot be sent to Sguil: {e}; dropped", r.entry);
                            self.resolve(&r.entry);
                            self.tracker.summary_done(&r.entry);
                        }
                    }
                    continue;
                }
                let ready = if r.entry_present(self.queue.dir()) {
                    load_and_map(self.queue.dir(), &r.entry, &self.settings)
                } else {
                    Err(LoadError::Gone)
                };
                let ready = match ready {
                    Ok(l) => l,
                    Err(LoadError::Gone) => {
                        self.resolve(&r.entry);
                        continue;
                    }
                    Err(LoadError::Refused(why)) => {
                        self.resolve(&r.entry);
                        self.quarantine(&r.entry, &why)?;
                        continue;
                    }
                };
                // Sent before: the same sid, cid, time and hostname, whatever the
                // decision would be now.
                let mut fields = ready.mapped.fields;
                as_journaled(&mut fields, r);
                match SguilEvent::new(fields) {
                    Ok(event) => window.push(Prepared {
                        event,
                        entry: r.entry.clone(),
                        unique_id: ready.unique_id,
                        ino: ready.ino,
                        target: ready.target,
                        ipv6: ready.mapped.ipv6,
                    }),
                    Err(e) => {
                        self.resolve(&r.entry);
                        self.quarantine(&r.entry, &format!("cannot be sent to Sguil: {e}"))?;
                    }
                }
            }
            if !window.is_empty() {
                self.submit(sink, window, &|_| false)?;
            }
        }
        self.pump(sink, 0)
    }

    /// Sends a journaled batch once there is room for it in the window, collecting
    /// earlier answers to make room: the server works on the events in flight while
    /// the next batch is read, mapped and journaled. Stops writing once `stop` says so;
    /// the events not written stay journaled (unresolved, never sent).
    fn submit(
        &mut self,
        sink: &mut dyn Sink,
        batch: Vec<Prepared>,
        stop: &dyn Fn(&Shipper) -> bool,
    ) -> Result<(), ShipError> {
        let window = self.settings.window.max(1);
        let mut rest = batch.into_iter().peekable();
        while rest.peek().is_some() {
            if stop(self) {
                return Ok(());
            }
            let chunk: Vec<Prepared> = rest.by_ref().take(chunk_size(window)).collect();
            // Room is made by reading answers; the chunk goes out before they are acted
            // on, so that sguild works on it while the answered entries are recorded and
            // removed (with a window of 1, that disk work would otherwise add to every
            // round trip).
            let (answered, broke) = self.collect(sink, window.saturating_sub(chunk.len()));
            let sent = match broke {
                Some(e) => Err(e),
                None => {
                    let events: Vec<SguilEvent> = chunk.iter().map(|p| p.event.clone()).collect();
                    sink.submit(&events).map(|()| self.flight.extend(chunk))
                }
            };
            self.settle_all(answered, sent, sink)?;
        }
        Ok(())
    }

    /// Collects answers until at most `keep` events are in flight, acting on each.
    /// On an error, everything still in flight is left journaled (to be resent).
    fn pump(&mut self, sink: &mut dyn Sink, keep: usize) -> Result<(), ShipError> {
        let (answered, broke) = self.collect(sink, keep);
        self.settle_all(answered, broke.map_or(Ok(()), Err), sink)
    }

    /// Reads answers until at most `keep` events are in flight: the events answered,
    /// with their answers, and the error that stopped the reading, if one did.
    fn collect(
        &mut self,
        sink: &mut dyn Sink,
        keep: usize,
    ) -> (Vec<(Prepared, Outcome)>, Option<SessionError>) {
        let mut answered = Vec::new();
        while self.flight.len() > keep {
            match sink.next_answer() {
                Ok(outcome) => {
                    let p = self.flight.pop_front().expect("an event in flight");
                    answered.push((p, outcome));
                }
                Err(e) => return (answered, Some(e)),
            }
        }
        (answered, None)
    }

    /// Acts on the answers read, then on how the session fared since: when it broke,
    /// everything still in flight is left journaled (to be resent). Answers are acted
    /// on first, so that a first send answered as a duplicate is still told from a
    /// resend.
    fn settle_all(
        &mut self,
        answered: Vec<(Prepared, Outcome)>,
        session: Result<(), SessionError>,
        sink: &dyn Sink,
    ) -> Result<(), ShipError> {
        let mut settled = Ok(());
        for (p, outcome) in answered {
            let r = self.settle(&p, outcome, sink);
            settled = settled.and(r);
        }
        if session.is_err() {
            self.abandon_flight();
        }
        settled?;
        Ok(session?)
    }

    /// The session broke: nothing in flight is known to be stored or not.
    fn abandon_flight(&mut self) {
        self.flight.clear();
        for f in &mut self.unresolved {
            f.maybe_sent = true;
        }
    }

    /// Acts on sguild's answer for one event.
    fn settle(&mut self, p: &Prepared, outcome: Outcome, sink: &dyn Sink) -> Result<(), ShipError> {
        let maybe_sent = self
            .unresolved
            .iter()
            .find(|f| f.record.entry == p.entry)
            .is_some_and(|f| f.maybe_sent);
        match outcome {
            Outcome::Confirmed => self.delivered(p, false),
            Outcome::AlreadyStored if maybe_sent => self.delivered(p, true),
            Outcome::AlreadyStored => {
                // Not ours: the entry stays in the queue for a later cid, and the record
                // goes from the journal (that cid is someone else's).
                self.resolve(&p.entry);
                let path = self.journal.path().to_path_buf();
                let keep = self.journal_keep();
                self.journal.rewrite(&keep).map_err(io_err(&path))?;
                let f = p.event.fields();
                log::error!(
                    "{}: cid {} of sid {} is taken by another agent; {} stays queued",
                    sink.name(),
                    f.cid,
                    f.sid,
                    p.entry
                );
                self.collision.get_or_insert(ShipError::CidCollision {
                    server: sink.name(),
                    sid: f.sid,
                    cid: f.cid,
                    hostname: f.hostname.clone(),
                });
            }
            Outcome::Rejected(text) => {
                self.resolve(&p.entry);
                self.quarantine(
                    &p.entry,
                    &format!("sguild refused the event: Failed {text}"),
                )?;
            }
        }
        Ok(())
    }

    /// An event is stored: it goes on record in the delivered log, then its entry goes.
    /// When either cannot be done, the entry stays, journaled, so a later resend finds
    /// it stored (and records and removes it then) instead of sending it anew.
    fn delivered(&mut self, p: &Prepared, already: bool) {
        self.stats.shipped += 1;
        self.stats
            .latency
            .record_entry(&p.entry, std::time::SystemTime::now());
        if already {
            self.stats.already_stored += 1;
        }
        if p.ipv6 {
            self.stats.ipv6 += 1;
        }
        let f = p.event.fields();
        let recorded = self.delivered_log.record(&Delivered {
            time: chrono::Utc::now().timestamp(),
            sid: f.sid,
            cid: f.cid,
            unique_id: p.unique_id.clone(),
            entry: p.entry.clone(),
            suppressed: None,
        });
        if let Err(e) = recorded {
            log::error!(
                "{}: delivered (sid {} cid {}) but not on record ({e}); it stays queued and journaled until it can be",
                p.entry,
                f.sid,
                f.cid
            );
            self.stats.undeletable += 1;
            return;
        }
        if p.entry.starts_with(crate::threshold::SUMMARY_PREFIX) {
            // Stored: off the state (saved now, so it is never sent anew), then off
            // the journal.
            self.stats.summaries += 1;
            self.tracker.summary_done(&p.entry);
            if let Err(e) = self.save_thresholds() {
                log::error!(
                    "{}: stored but not on record ({e}); it stays journaled",
                    p.entry
                );
                self.stats.undeletable += 1;
                return;
            }
            self.resolve(&p.entry);
            return;
        }
        if self.finish(&p.entry, p.target.as_deref()) {
            self.resolve(&p.entry);
        } else {
            self.stats.undeletable += 1;
        }
    }

    /// Removes a done entry (and, with SYMLINK_REMOVE_ORIG, its target). False when the
    /// entry could not be removed.
    fn finish(&self, entry: &str, target: Option<&Path>) -> bool {
        let path = self.queue.dir().join(entry);
        let removed = match fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => {
                log::error!("{}: delivered but cannot be removed: {e}", path.display());
                false
            }
        };
        self.queue.clear_integrity(entry);
        if removed && self.released.contains(entry) {
            let _ = fs::remove_file(
                self.queue
                    .dir()
                    .join(crate::queue::layout::RELEASED_DIR)
                    .join(entry),
            );
        }
        if removed && self.settings.remove_orig {
            if let Some(t) = target {
                if let Err(e) = fs::remove_file(t) {
                    log::warn!("{}: SYMLINK_REMOVE_ORIG: {e}", t.display());
                }
            }
        }
        removed
    }

    fn resolve(&mut self, entry: &str) {
        self.unresolved.retain(|f| f.record.entry != entry);
    }

    fn quarantine(&mut self, entry: &str, why: &str) -> Result<(), ShipError> {
        let dir = self.queue.dir().to_path_buf();
        match self.queue.quarantine(entry, why) {
            Ok(to) => {
                log::warn!(
                    "{}: quarantined to {}: {why}",
                    dir.join(entry).display(),
                    to.display()
                );
                self.stats.quarantined += 1;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            // An earlier release, run as root without RUNAS, made failed/ root's.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(ShipError::Io {
                path: dir.join(crate::queue::FAILED_DIR),
                source: io::Error::new(
                    e.kind(),
                    format!(
                        "{e} (the shipper works on the queue as its owner: give failed/ to \
                         them, e.g. chown -R --reference={} {}/failed)",
                        dir.display(),
                        dir.display()
                    ),
                ),
            }),
            Err(e) => Err(ShipError::Io {
                path: dir.join(crate::queue::FAILED_DIR),
                source: e,
            }),
        }
    }
}

/// The Sguil fields of a threshold summary (sid, cid and hostname are the caller's).
fn summary_fields(
    s: &crate::threshold::Summary,
    alert: &crate::alert::AlertSettings,
) -> crate::sguil::wire::EventFields {
    use std::net::IpAddr;
    let v4 = |a: Option<IpAddr>| match a {
        Some(IpAddr::V4(v)) => Some(v),
        _ => None,
    };
    let (src, dst) = match s.key.track {
        crate::threshold::Track::BySrc => (v4(s.key.addr), None),
        crate::threshold::Track::ByDst => (None, v4(s.key.addr)),
        crate::threshold::Track::ByRule => (None, None),
    };
    let lines = s.detail_lines();
    let detail = match alert.detail_format {
        crate::alert::DetailFormat::Html => lines
            .iter()
            .map(|l| {
                l.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            })
            .collect::<Vec<_>>()
            .join("<br>\n"),
        _ => lines.join("\n"),
    };
    crate::sguil::wire::EventFields {
        status: 0,
        priority: 3,
        class: alert.alert_class.clone(),
        hostname: String::new(),
        time: Utc
            .timestamp_opt(s.time(), 0)
            .single()
            .unwrap_or_else(Utc::now),
        sid: 0,
        cid: 0,
        ref_id: 0,
        message: s.message().into_bytes(),
        src_ip: src,
        dst_ip: dst,
        ip_proto: 6,
        src_port: 0,
        dst_port: 0,
        generator: crate::threshold::GEN_ID,
        sig_id: crate::threshold::SUMMARY_SIG_ID,
        revision: 1,
        detail: detail.into_bytes(),
    }
}

/// The names in directory `dir` (none when it is missing or unreadable).
fn names_in(dir: &Path) -> HashSet<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// An event sent before goes again as it was journaled: the same sid, cid, hostname and
/// time (which picks sguild's day table, so a copy stored is a duplicate).
fn as_journaled(fields: &mut crate::sguil::wire::EventFields, r: &JournalRecord) {
    fields.sid = r.sid;
    fields.cid = r.cid;
    fields.hostname = r.hostname.clone();
    if let Some(t) = Utc.timestamp_opt(r.time, 0).single() {
        fields.time = t;
    }
}
