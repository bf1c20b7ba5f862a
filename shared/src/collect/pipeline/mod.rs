//! The threads of a collector: the reader (only reads), the checker, the hasher and
//! the committer (the three steps of the work, in order), and the spill thread (writes
//! the spool).
//!
//! - `ledger`: every line from when it is read until it is committed, and the bytes
//!   held, so a second SIGTERM knows what is left;
//! - `reader`: the reader thread; `checker` (with `spool_watch`), `hasher` and
//!   `committer`: the steps, each on its thread, handing lines on in batches
//!   (`handover`);
//! - `spill`: the spill thread and its share of memory; `backlog`: writing lines to
//!   the backlog.

mod backlog;
mod checker;
mod committer;
mod handover;
mod hasher;
mod ledger;
mod reader;
mod spill;
mod spool_watch;

use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crossbeam_channel::{bounded, Receiver};

use super::spool::Spool;
use super::{InputLine, Stats, WORK_QUEUE_LINES};
pub use backlog::write_backlog;
use backlog::{backlog_or_log, ABANDONED};
use checker::spawn_checker;
use committer::spawn_committer;
use hasher::spawn_hasher;
use ledger::Ledger;
use reader::spawn_reader;
pub use reader::GATHER;
pub use spill::SPILL_BATCH_BYTES;
use spill::{spawn_spill, SPILL_CHANNEL_LINES};

/// Something that acts on lines in one step: a test's stand-in for the [`Worker`](super::Worker).
#[cfg(test)]
pub trait LineSink: Send {
    fn handle(&mut self, line: &InputLine);
}

/// One step of the work: an item in, what it became out.
pub type Step<I, O> = Box<dyn FnMut(I) -> O + Send>;

/// The steps the pipeline runs on a thread each, in order: `check` and `verify` (may be
/// slow, change nothing; `verify` may be absent) and `commit`. Which lines are not yet
/// committed the pipeline knows by itself (its ledger), for a second SIGTERM.
pub struct Stages<T> {
    pub check: Step<InputLine, T>,
    pub verify: Option<Step<T, T>>,
    pub commit: Step<T, ()>,
}

#[cfg(test)]
impl Stages<InputLine> {
    /// A one-step sink: nothing to check, all the work in `commit` (tests').
    pub fn from_sink(mut sink: impl LineSink + 'static) -> Stages<InputLine> {
        Stages {
            check: Box::new(|line| line),
            verify: None,
            commit: Box::new(move |line| sink.handle(&line)),
        }
    }
}

/// Batches of lines opened by the checker waiting for the hasher: it is the slower.
const OPENED_QUEUE_BATCHES: usize = 4;

/// Batches of checked lines waiting for the committer: enough to keep the threads busy.
/// Every line between the checker and the committer holds its event open: with the
/// batches in hand, at most ~250 descriptors.
const CHECKED_QUEUE_BATCHES: usize = 8;

/// The running pipeline: reader, checker, hasher, committer ("worker") and spill threads.
pub struct Pipeline<T> {
    reader: std::thread::JoinHandle<io::Result<()>>,
    input_end: Receiver<()>,
    checker: std::thread::JoinHandle<()>,
    /// The verify step's thread, when there is one.
    hasher: Option<std::thread::JoinHandle<()>>,
    committer: std::thread::JoinHandle<()>,
    spill: std::thread::JoinHandle<()>,
    /// Lines on their way to the spill thread, for [`Pipeline::abandon`].
    spilling: Receiver<InputLine>,
    shared: Arc<Shared<T>>,
}

/// An item on its way through the steps, with its place in the [`Ledger`].
type Tracked<T> = (u64, T);

/// What the pipeline's threads share.
struct Shared<T> {
    /// Every line read (or taken from the spool) and not yet committed.
    ledger: Mutex<Ledger>,
    commit: Mutex<Step<T, ()>>,
    verify: Option<Mutex<Step<T, T>>>,
    /// Lines the checker handed on, and lines handed to the committer, not yet
    /// committed: a step commits a line itself only when nothing is ahead of it.
    after_checker: AtomicUsize,
    after_hasher: AtomicUsize,
    /// Set by [`Pipeline::abandon`]: the checker and the hasher take no more work.
    stop: AtomicBool,
    /// Set while the checker takes lines from a spool ([`CheckStep::spool_pass`](checker::CheckStep::spool_pass)).
    in_spool: AtomicBool,
    /// Set by the spill thread after each write to the spool (before it counts the
    /// lines as no longer outstanding); cleared when the checker takes the spool.
    spooled: AtomicBool,
    /// Lines handed to the spill thread and not yet in the spool.
    spill_outstanding: AtomicU64,
    /// Notified when the ledger's lines take fewer bytes, or it closes.
    ledger_room: Condvar,
    /// Bytes of the lines on their way to the spool ([`copy_cost`](ledger::copy_cost) each), until written.
    spill_bytes: Mutex<usize>,
    /// Notified when `spill_bytes` goes down.
    spill_room: Condvar,
    /// Bytes of lines held: the ledger's and the spill's (for [`Stats::held_peak`]).
    held: AtomicUsize,
    spool: Spool,
    stats: Arc<Stats>,
}

impl<T> Shared<T> {
    /// Commits a line, if it claims it from the ledger first (abandon() may have taken
    /// it: it is in the backlog then).
    fn commit(&self, (seq, item): Tracked<T>) {
        let Some(cost) = lock(&self.ledger).claim(seq) else {
            return;
        };
        (lock(&self.commit))(item);
        let mut ledger = lock(&self.ledger);
        ledger.done(cost);
        self.freed(cost);
        self.ledger_room.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Counts `bytes` more of lines held, and the peak. Called (as [`Shared::freed`])
    /// under the lock of the ledger or of the spill's count, whichever changed, so the
    /// total never counts one side above its share, even for a moment.
    fn holds(&self, bytes: usize) {
        let now = self.held.fetch_add(bytes, Ordering::SeqCst) + bytes;
        self.stats
            .held_peak
            .fetch_max(now as u64, Ordering::Relaxed);
    }

    fn freed(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::SeqCst);
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// Starts reading `input`. Lines the checker cannot take at once are spilled to this
    /// process's spool in `spool_dir` (the state dir), which the checker drains as soon as
    /// it catches up; the reader never waits for the steps. Slow input gathers for
    /// [`GATHER`] between reads.
    pub fn start<R>(input: R, stages: Stages<T>, spool_dir: &Path, stats: Arc<Stats>) -> Pipeline<T>
    where
        R: Read + Send + 'static,
    {
        Pipeline::start_gathering(input, stages, spool_dir, stats, Some(GATHER))
    }

    /// [`Pipeline::start`], with how long slow input gathers between reads: `None`
    /// reads each line as soon as it comes (for a pipe that could not be enlarged, where
    /// a burst during the wait could fill it and make Apache's children wait).
    ///
    /// Lines flow reader → checker → hasher (when there is a verify step) → committer over
    /// bounded channels; what the checker cannot take at once goes reader → spill thread
    /// → spool, and back to the checker when it catches up.
    pub fn start_gathering<R>(
        input: R,
        stages: Stages<T>,
        spool_dir: &Path,
        stats: Arc<Stats>,
        gather: Option<std::time::Duration>,
    ) -> Pipeline<T>
    where
        R: Read + Send + 'static,
    {
        let has_verify = stages.verify.is_some();
        let shared = Arc::new(Shared {
            ledger: Mutex::new(Ledger::default()),
            commit: Mutex::new(stages.commit),
            verify: stages.verify.map(Mutex::new),
            after_checker: AtomicUsize::new(0),
            after_hasher: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            in_spool: AtomicBool::new(false),
            spooled: AtomicBool::new(false),
            spill_outstanding: AtomicU64::new(0),
            ledger_room: Condvar::new(),
            spill_bytes: Mutex::new(0),
            spill_room: Condvar::new(),
            held: AtomicUsize::new(0),
            spool: Spool::new(spool_dir),
            stats,
        });
        let (work_tx, work_rx) = bounded(WORK_QUEUE_LINES);
        let (spill_tx, spill_rx) = bounded(SPILL_CHANNEL_LINES);
        let (spill_done_tx, spill_done_rx) = bounded::<()>(0);
        let (checked_tx, checked_rx) = bounded(CHECKED_QUEUE_BATCHES);
        // Closed when the reader is done, so the caller can wait for it without polling.
        let (input_end_tx, input_end) = bounded::<()>(0);
        let reader = spawn_reader(input, &shared, work_tx, spill_tx, input_end_tx, gather);
        // With a verify step the checker hands over to the hasher, else to the committer.
        let (checker, hasher) = if has_verify {
            let (opened_tx, opened_rx) = bounded(OPENED_QUEUE_BATCHES);
            let checker = spawn_checker(&shared, stages.check, work_rx, opened_tx, spill_done_rx);
            (checker, Some(spawn_hasher(&shared, opened_rx, checked_tx)))
        } else {
            let checker = spawn_checker(&shared, stages.check, work_rx, checked_tx, spill_done_rx);
            (checker, None)
        };
        Pipeline {
            reader,
            input_end,
            checker,
            hasher,
            committer: spawn_committer(&shared, checked_rx),
            spill: spawn_spill(&shared, spill_rx.clone(), spill_done_tx),
            spilling: spill_rx,
            shared,
        }
    }

    /// Waits for end of input, then for the spill thread and the steps to finish
    /// (the checker drains the spool last).
    pub fn finish(self) -> io::Result<()> {
        let read = self
            .reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("reader thread panicked")));
        drop(self.spilling);
        let _ = self.spill.join();
        let _ = self.checker.join();
        if let Some(hasher) = self.hasher {
            let _ = hasher.join();
        }
        let _ = self.committer.join();
        read
    }

    /// Disconnected once the reader has reached end of input (or failed): select on it
    /// to wait for that without polling.
    pub fn input_end(&self) -> &Receiver<()> {
        &self.input_end
    }

    /// Cuts the grace short (a second SIGTERM): every line read and not yet committed,
    /// and every line still on its way to the spool, goes to the backlog (of the state dir
    /// the spool is in), in order. A commit in progress and a spool write in progress are
    /// waited for (up to `grace`); the spool stays on disk for the next collector, which
    /// drains it at start-up.
    pub fn abandon(self, grace: std::time::Duration) {
        let shared = &self.shared;
        shared.stop.store(true, Ordering::SeqCst);
        let mut left = lock(&shared.ledger).close();
        shared.ledger_room.notify_all();
        let taken_from_spill: Vec<InputLine> = self.spilling.try_iter().collect();
        shared.release_spill(&taken_from_spill);
        shared
            .spill_outstanding
            .fetch_sub(taken_from_spill.len() as u64, Ordering::SeqCst);
        left.extend(taken_from_spill);
        if !left.is_empty() {
            backlog_or_log(&shared.spool.dir, &left, ABANDONED, &shared.stats);
        }
        let deadline = std::time::Instant::now() + grace;
        let busy = || {
            lock(&shared.ledger).committing > 0
                || shared.spill_outstanding.load(Ordering::SeqCst) > 0
                || shared.in_spool.load(Ordering::SeqCst)
        };
        while busy() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

fn spawn<F: FnOnce() -> R + Send + 'static, R: Send + 'static>(
    name: &str,
    f: F,
) -> std::thread::JoinHandle<R> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .unwrap_or_else(|e| panic!("cannot start the {name} thread: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
