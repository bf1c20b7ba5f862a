//! The threads of a collector: the reader (only reads), the checker, the hasher and
//! the committer (the three steps of the work, in order), and the spill thread (writes
//! the spool).

use std::io::{self, Read};
use std::mem::take;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use super::spool::{Spool, SPOOL_POLL};
use super::{read_line, InputLine, Stats, MAX_LINE_BYTES, MAX_PIPELINE_BYTES, WORK_QUEUE_LINES};
use crate::state::StateDir;

/// Something that acts on lines in one step: a test's stand-in for the [`Worker`](super::Worker).
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

impl Stages<InputLine> {
    /// A one-step sink: nothing to check, all the work in `commit`.
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
/// Lines a step hands over at once while more are waiting for it: under load the next
/// step then wakes once per batch, not once per line (on two cores its spinning and
/// waking cost the slower step about a tenth of its time). A line that finds the steps
/// idle goes on alone, at once.
const CHECKED_BATCH_LINES: usize = 16;

/// The running pipeline: reader, checker, hasher, committer ("worker") and spill threads.
pub struct Pipeline<T> {
    reader: std::thread::JoinHandle<io::Result<()>>,
    input_end: Receiver<()>,
    checker: std::thread::JoinHandle<()>,
    /// The verify step's thread, when there is one.
    hasher: Option<std::thread::JoinHandle<()>>,
    worker: std::thread::JoinHandle<()>,
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
    /// Set while the checker takes lines from a spool ([`CheckStep::spool_pass`]).
    in_spool: AtomicBool,
    /// Set by the spill thread after each write to the spool (before it counts the
    /// lines as no longer outstanding); cleared when the checker takes the spool.
    spooled: AtomicBool,
    /// Lines handed to the spill thread and not yet in the spool.
    spill_outstanding: AtomicU64,
    /// Notified when the ledger's lines take fewer bytes, or it closes.
    ledger_room: Condvar,
    /// Bytes of the lines on their way to the spool ([`copy_cost`] each), until written.
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

    /// Records a line the reader read in the ledger, while the reader's share of it has
    /// room; `None` (the line is to be spilled) when it has not, or the ledger is closed.
    fn enter_read(&self, line: &InputLine) -> Option<u64> {
        let cost = ledger_cost(line);
        let mut ledger = lock(&self.ledger);
        let seq = ledger.enter(line, cost, READER_LEDGER_BYTES)?;
        self.holds(cost);
        Some(seq)
    }

    /// Takes a line the reader entered out of the ledger again (it spills it instead).
    fn forget(&self, seq: u64) {
        let mut ledger = lock(&self.ledger);
        if let Some(cost) = ledger.forget(seq) {
            self.freed(cost);
            self.ledger_room.notify_all();
        }
    }

    /// Records a line taken from the spool in the ledger once it has room (after
    /// `before_wait`, when it has to wait for it): lines ahead of it are committed
    /// meanwhile. `None` once the ledger is closed (which ends the wait too).
    fn enter_spooled(&self, line: &InputLine, before_wait: impl FnOnce()) -> Option<u64> {
        let cost = ledger_cost(line);
        let full = |l: &mut Ledger| !l.closed && l.bytes + cost > LEDGER_BYTES;
        let mut ledger = lock(&self.ledger);
        if full(&mut ledger) {
            drop(ledger);
            before_wait();
            ledger = self
                .ledger_room
                .wait_while(lock(&self.ledger), full)
                .unwrap_or_else(|e| e.into_inner());
        }
        let seq = ledger.enter(line, cost, usize::MAX)?;
        self.holds(cost);
        Some(seq)
    }

    /// Counts a line on its way to the spool, first waiting (after `before_wait`)
    /// while the spill's share is spent: the spill thread is writing behind.
    fn reserve_spill(&self, line: &InputLine, before_wait: impl FnOnce()) {
        let cost = copy_cost(line);
        let full = |held: &mut usize| *held > 0 && *held + cost > SPILL_BYTES;
        let mut held = lock(&self.spill_bytes);
        if full(&mut held) {
            before_wait();
            held = self
                .spill_room
                .wait_while(held, full)
                .unwrap_or_else(|e| e.into_inner());
        }
        *held += cost;
        self.holds(cost);
    }

    /// Lines no longer on their way to the spool (written, backlogged or taken).
    fn release_spill(&self, lines: &[InputLine]) {
        let cost: usize = lines.iter().map(copy_cost).sum();
        let mut held = lock(&self.spill_bytes);
        *held -= cost;
        self.freed(cost);
        self.spill_room.notify_all();
    }
}

/// The ledger's share of [`MAX_PIPELINE_BYTES`]: lines read (or taken from the spool) and
/// not yet committed, counted twice (the ledger's copy and the steps').
const LEDGER_BYTES: usize = MAX_PIPELINE_BYTES / 2;
/// What the reader may fill of the ledger's share; lines beyond it are spilled. The rest
/// is for lines the checker takes from the spool, so that it can always go on with
/// them once the steps after it are done: the reader's lines waiting in the work
/// channel are the checker's own to take, and it is busy with the spool.
const READER_LEDGER_BYTES: usize = LEDGER_BYTES - 4 * 1024 * 1024;
/// The spill's share: lines on their way to the spool, until written. Only a disk that
/// writes slower than lines come spends it; the reader then waits (see
/// [`SPILL_CHANNEL_LINES`]).
const SPILL_BYTES: usize = MAX_PIPELINE_BYTES - LEDGER_BYTES;
/// Bytes of lines the spill thread writes with one fsync, at most (beyond one line),
/// and the most it copies to write them in one go. 4096 ordinary lines take about this.
pub const SPILL_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// What a copy of a line costs besides its bytes: its `InputLine`, a slot in a channel
/// or the ledger's map, the allocator's own.
const LINE_OVERHEAD: usize = 64;

/// The memory one copy of `line` takes.
fn copy_cost(line: &InputLine) -> usize {
    line.bytes.capacity() + LINE_OVERHEAD
}

/// The memory a line in the ledger takes: the ledger's copy (a clone, as long as the
/// line) and the one the steps work on.
fn ledger_cost(line: &InputLine) -> usize {
    line.bytes.len() + LINE_OVERHEAD + copy_cost(line)
}

/// The in-flight ledger: every line from the moment it is read (or taken from the
/// spool) until the committer claims it. [`Pipeline::abandon`] closes it and takes what
/// is left, in order; a step that finishes a line after that finds it gone and drops
/// it. So each line is committed or backlogged, never both and never neither, wherever
/// a step is stuck.
#[derive(Default)]
struct Ledger {
    /// Each line with its [`ledger_cost`].
    lines: std::collections::BTreeMap<u64, (InputLine, usize)>,
    next: u64,
    closed: bool,
    /// Lines claimed and still being committed.
    committing: usize,
    /// Bytes of the lines in it and being committed. Not given back when it closes: the
    /// copies on the steps stay where they are until the process exits.
    bytes: usize,
}

impl Ledger {
    /// Records a line that takes `cost` bytes, if that keeps it within `limit`; `None`
    /// when it would not, or once closed.
    fn enter(&mut self, line: &InputLine, cost: usize, limit: usize) -> Option<u64> {
        if self.closed || self.bytes + cost > limit {
            return None;
        }
        let seq = self.next;
        self.next += 1;
        self.lines.insert(seq, (line.clone(), cost));
        self.bytes += cost;
        Some(seq)
    }

    /// Forgets a line the reader spilled instead of handing it on; its cost.
    fn forget(&mut self, seq: u64) -> Option<usize> {
        let (_, cost) = self.lines.remove(&seq)?;
        self.bytes -= cost;
        Some(cost)
    }

    /// Takes a line out for its commit, and its cost (given back by [`Ledger::done`]);
    /// `None` if abandon took it first.
    fn claim(&mut self, seq: u64) -> Option<usize> {
        let (_, cost) = self.lines.remove(&seq)?;
        self.committing += 1;
        Some(cost)
    }

    /// A claimed line is committed.
    fn done(&mut self, cost: usize) {
        self.committing -= 1;
        self.bytes -= cost;
    }

    /// Closes the ledger and returns every line not claimed, in order.
    fn close(&mut self) -> Vec<InputLine> {
        self.closed = true;
        take(&mut self.lines)
            .into_values()
            .map(|(line, _)| line)
            .collect()
    }
}

/// A step's end of the channel to the next: what it did, in batches.
struct Handover<T> {
    tx: Sender<Vec<Tracked<T>>>,
    batch: Vec<Tracked<T>>,
}

impl<T> Handover<T> {
    /// Hands `done` on: the batch goes unless more items are `waiting` and it has room.
    fn hand(&mut self, done: Tracked<T>, waiting: bool) {
        self.batch.push(done);
        if !waiting || self.batch.len() >= CHECKED_BATCH_LINES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let full = take(&mut self.batch);
        if !full.is_empty() {
            let _ = self.tx.send(full);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The backlog reason of the lines [`Pipeline::abandon`] takes.
const ABANDONED: &str = "collector stopped by a second SIGTERM before handling it";

/// Spilled lines written with one fsync, at most this many at a time (and at most
/// [`SPILL_BATCH_BYTES`]).
const SPILL_BATCH: usize = 4096;
/// Lines on their way to the spool, and at most [`SPILL_BYTES`] of them. Only a disk that
/// takes no writes at all (or writes slower than lines come) fills this; the reader then
/// waits (holding more would only grow memory until the OOM killer came, and Apache
/// cannot write its event files to that disk either).
const SPILL_CHANNEL_LINES: usize = 16 * 1024;

impl<T: Send + 'static> Pipeline<T> {
    /// Starts reading `input`. Lines the worker cannot take at once are spilled to this
    /// process's spool in `spool_dir` (the state dir), which the checker drains as soon as
    /// it catches up; the reader never waits for the worker. Slow input gathers for
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
    /// Lines flow reader → checker → hasher (when there is a verify step) → worker over
    /// bounded channels; what the worker cannot take at once goes reader → spill thread
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
        // With a verify step the checker hands over to the hasher, else to the worker.
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
            worker: spawn_worker(&shared, checked_rx),
            spill: spawn_spill(&shared, spill_rx.clone(), spill_done_tx),
            spilling: spill_rx,
            shared,
        }
    }

    /// Waits for end of input, then for the spill thread and the worker to finish
    /// (the worker drains the spool last).
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
        let _ = self.worker.join();
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

/// The reader: reads lines, records each in the ledger and hands it to the checker, or
/// to the spill thread when the checker has no room. It never waits for the steps.
fn spawn_reader<T: Send + 'static, R: Read + Send + 'static>(
    input: R,
    shared: &Arc<Shared<T>>,
    work: Sender<Tracked<InputLine>>,
    spill: Sender<InputLine>,
    input_end: Sender<()>,
    gather: Option<std::time::Duration>,
) -> std::thread::JoinHandle<io::Result<()>> {
    let shared = shared.clone();
    spawn("reader", move || {
        let _end = input_end;
        read_loop(input, &shared, &work, &spill, gather)
    })
}

/// The checker: the first step, on lines from the reader and from the spool (which go
/// first once nothing newer waits). A line that finds the pipeline idle, or only a few
/// lines (one gather of the reader's) behind it, is taken through every step here: at
/// Apache's usual rates a line then wakes one thread, not three (each wake-up costs
/// more CPU than the step, on a VM most of all). Lines go from thread to thread only
/// while more wait, and never past one handed on earlier, so the order holds.
fn spawn_checker<T: Send + 'static>(
    shared: &Arc<Shared<T>>,
    check: Step<InputLine, T>,
    work: Receiver<Tracked<InputLine>>,
    next: Sender<Vec<Tracked<T>>>,
    spill_done: Receiver<()>,
) -> std::thread::JoinHandle<()> {
    let shared = shared.clone();
    spawn("checker", move || {
        let mut step = CheckStep {
            check,
            out: Handover {
                tx: next,
                batch: Vec::new(),
            },
            shared: &shared,
            late: Vec::new(),
            late_bytes: 0,
        };
        let mut watch = SpoolWatch { failed_at: None };
        step.spool_pass(|step| {
            shared.spool.recover(&mut |line| step.spooled(line));
            true
        });
        while !shared.stopped() {
            if work.is_empty() && step.spool_pass(|step| watch.take(step)) {
                continue;
            }
            // While the spool has lines or is getting some, look again soon. Otherwise
            // sleep until a line comes: the reader spills only when the work channel is
            // full, and then this wakes anyway.
            let next = if watch.pending(&shared) {
                work.recv_timeout(SPOOL_POLL)
            } else {
                work.recv()
                    .map_err(|_| crossbeam_channel::RecvTimeoutError::Disconnected)
            };
            match next {
                Ok((seq, line)) => {
                    let done = (step.check)(line);
                    let alone = work.len() < INLINE_BELOW
                        && shared.after_checker.load(Ordering::SeqCst) == 0;
                    if alone {
                        let done = match &shared.verify {
                            Some(verify) => (lock(verify))(done),
                            None => done,
                        };
                        shared.commit((seq, done));
                    } else {
                        step.hand((seq, done), !work.is_empty());
                    }
                }
                // The spill thread is still writing: the top of the loop takes it.
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    // Input is over: wait for the last spilled batch, then drain.
                    let _ = spill_done.recv();
                    step.spool_pass(|step| {
                        if let Err(e) = shared.spool.drain(&mut |line| step.spooled(line)) {
                            log::error!("{e}; the next collector queues its lines");
                        }
                        true
                    });
                    break;
                }
            }
        }
        step.out.flush();
    })
}

/// The hasher: the verify step, committing a line itself when the worker has nothing.
fn spawn_hasher<T: Send + 'static>(
    shared: &Arc<Shared<T>>,
    opened: Receiver<Vec<Tracked<T>>>,
    checked: Sender<Vec<Tracked<T>>>,
) -> std::thread::JoinHandle<()> {
    let shared = shared.clone();
    spawn("hasher", move || {
        let verify = shared.verify.as_ref().expect("a hasher has a verify step");
        let mut out = Handover {
            tx: checked,
            batch: Vec::new(),
        };
        'batches: for batch in opened.iter() {
            let mut items = batch.into_iter().peekable();
            while let Some((seq, item)) = items.next() {
                if shared.stopped() {
                    break 'batches; // what is left is in the ledger
                }
                let done = (lock(verify))(item);
                let waiting = items.peek().is_some() || !opened.is_empty();
                if !waiting && shared.after_hasher.load(Ordering::SeqCst) == 0 {
                    shared.commit((seq, done));
                    shared.after_checker.fetch_sub(1, Ordering::SeqCst);
                } else {
                    shared.after_hasher.fetch_add(1, Ordering::SeqCst);
                    out.hand((seq, done), waiting);
                }
            }
        }
        out.flush();
    })
}

/// The worker: commits what the steps before it handed on. It never stops early: a
/// line abandon() took, it finds gone and skips.
fn spawn_worker<T: Send + 'static>(
    shared: &Arc<Shared<T>>,
    checked: Receiver<Vec<Tracked<T>>>,
) -> std::thread::JoinHandle<()> {
    let shared = shared.clone();
    spawn("worker", move || {
        for item in checked.iter().flatten() {
            shared.commit(item);
            shared.after_hasher.fetch_sub(1, Ordering::SeqCst);
            shared.after_checker.fetch_sub(1, Ordering::SeqCst);
        }
    })
}

/// The spill thread: writes what the reader could not hand on to the spool, in batches
/// with one fsync; a spool that cannot be written sends them to the backlog.
fn spawn_spill<T: Send + 'static>(
    shared: &Arc<Shared<T>>,
    spill: Receiver<InputLine>,
    done: Sender<()>,
) -> std::thread::JoinHandle<()> {
    let shared = shared.clone();
    spawn("spill", move || {
        let _done = done;
        while let Ok(first) = spill.recv() {
            let mut bytes = first.bytes.len();
            let mut batch = vec![first];
            while batch.len() < SPILL_BATCH && bytes < SPILL_BATCH_BYTES {
                let Ok(line) = spill.try_recv() else { break };
                bytes += line.bytes.len();
                batch.push(line);
            }
            match shared.spool.append(&batch) {
                Ok(()) => shared.spooled.store(true, Ordering::SeqCst),
                Err(e) => {
                    let reason = format!(
                        "collector busy and the spool {} cannot be written: {e}",
                        shared.spool.path.display()
                    );
                    backlog_or_log(&shared.spool.dir, &batch, &reason, &shared.stats);
                }
            }
            shared.release_spill(&batch);
            shared
                .spill_outstanding
                .fetch_sub(batch.len() as u64, Ordering::SeqCst);
        }
    })
}

/// [`write_backlog`] into the state dir `dir` (the spool's), [`SPILL_BATCH_BYTES`] at
/// a time (each write is one copy of its lines); lines that cannot go there are logged
/// in full.
fn backlog_or_log(dir: &Path, lines: &[InputLine], reason: &str, stats: &Stats) {
    let state = StateDir::at(dir);
    let mut rest = lines;
    while !rest.is_empty() {
        let mut bytes = 0;
        let n = rest
            .iter()
            .take_while(|l| {
                let fits = bytes == 0 || bytes + l.bytes.len() <= SPILL_BATCH_BYTES;
                bytes += l.bytes.len();
                fits
            })
            .count();
        let (chunk, later) = rest.split_at(n);
        write_backlog(&state, chunk, reason, stats);
        rest = later;
    }
}

/// The checker's step and its end of the channel to the next step.
struct CheckStep<'a, T> {
    check: Step<InputLine, T>,
    out: Handover<T>,
    shared: &'a Shared<T>,
    /// Spool lines that came after abandon() closed the ledger: the spool file they
    /// came from is gone, so they go to the backlog from here, [`SPILL_BATCH_BYTES`] at
    /// a time.
    late: Vec<InputLine>,
    late_bytes: usize,
}

impl<T> CheckStep<'_, T> {
    /// Hands a checked line on, counting it as ahead of the checker (and, without a
    /// hasher, ahead of the worker's inline commits too).
    fn hand(&mut self, done: Tracked<T>, waiting: bool) {
        self.shared.after_checker.fetch_add(1, Ordering::SeqCst);
        if self.shared.verify.is_none() {
            self.shared.after_hasher.fetch_add(1, Ordering::SeqCst);
        }
        self.out.hand(done, waiting);
    }

    /// A line taken from the spool: it enters the ledger here, once the ledger has
    /// room for it (what this step holds is handed on first, to make room).
    fn spooled(&mut self, line: &InputLine) {
        let out = &mut self.out;
        let entered = self.shared.enter_spooled(line, || out.flush());
        match entered {
            Some(seq) => {
                let done = (self.check)(line.clone());
                self.hand((seq, done), true);
            }
            None => {
                self.late.push(line.clone());
                self.late_bytes += line.bytes.len();
                if self.late_bytes >= SPILL_BATCH_BYTES {
                    self.backlog_late();
                }
            }
        }
    }

    fn backlog_late(&mut self) {
        let late = take(&mut self.late);
        self.late_bytes = 0;
        if !late.is_empty() {
            let shared = self.shared;
            backlog_or_log(&shared.spool.dir, &late, ABANDONED, &shared.stats);
        }
    }

    /// One look at the spool, marked busy meanwhile: skipped once stopped (the spool
    /// stays for the next collector); lines taken after abandon() closed the ledger go
    /// to the backlog before busy clears, which abandon() waits for. Returns `pass`'s
    /// answer (whether it tried), false when stopped.
    fn spool_pass(&mut self, pass: impl FnOnce(&mut Self) -> bool) -> bool {
        let shared = self.shared;
        // Busy first, then the stop: abandon() sets the stop, then waits while busy.
        shared.in_spool.store(true, Ordering::SeqCst);
        let tried = !shared.stopped() && pass(self);
        self.out.flush();
        self.backlog_late();
        shared.in_spool.store(false, Ordering::SeqCst);
        tried
    }
}

/// Writes lines to the backlog with one reason; if that fails they go to the log in full.
pub fn write_backlog(state: &StateDir, lines: &[InputLine], reason: &str, stats: &Stats) {
    stats
        .backlogged
        .fetch_add(lines.len() as u64, Ordering::Relaxed);
    let records: Vec<(&[u8], &str)> = lines.iter().map(|l| (l.bytes.as_slice(), reason)).collect();
    if let Err(e) = state.backlog_many(&records) {
        for l in lines {
            log::error!(
                "cannot write the backlog ({e}); lost line follows: {}",
                String::from_utf8_lossy(&l.bytes).trim_end()
            );
        }
    }
}

/// When the checker could last not take its spool.
struct SpoolWatch {
    failed_at: Option<std::time::Instant>,
}

impl SpoolWatch {
    /// Whether the spool holds lines or is about to.
    fn pending<T>(&self, shared: &Shared<T>) -> bool {
        shared.spill_outstanding.load(Ordering::SeqCst) > 0 || shared.spooled.load(Ordering::SeqCst)
    }

    /// Takes the spool into `step` when it has lines and, after a failure, SPOOL_POLL
    /// has passed. True when it tried.
    fn take<T>(&mut self, step: &mut CheckStep<'_, T>) -> bool {
        let shared = step.shared;
        if self.failed_at.is_some_and(|t| t.elapsed() < SPOOL_POLL)
            || !shared.spooled.swap(false, Ordering::SeqCst)
        {
            return false;
        }
        match shared.spool.drain(&mut |line| step.spooled(line)) {
            Ok(()) if self.failed_at.take().is_some() => log::info!("the spool is taken again"),
            Ok(()) => {}
            Err(e) => {
                if self.failed_at.is_none() {
                    log::error!("{e}; trying again every {SPOOL_POLL:?}");
                }
                // Its lines are still there: the timed wait comes back for them.
                shared.spooled.store(true, Ordering::SeqCst);
                self.failed_at = Some(std::time::Instant::now());
            }
        }
        true
    }
}

/// With fewer lines than this waiting, the checker takes a line through every step
/// itself (when nothing is ahead of it on the other threads); with more, it hands lines
/// on so the steps spread over the cores. A gather of the reader's at Apache's usual
/// rates is a handful of lines.
const INLINE_BELOW: usize = 16;
/// The reader's buffer: as much as a default pipe holds.
const READ_BUFFER: usize = 64 * 1024;
/// A read that brings less than this means the input is coming slowly; the reader then
/// waits [`GATHER`] before its next read. At this much per 10 ms (1.6 MB/s, some 4,000
/// index lines a second) it reads as fast as lines come.
const GATHER_BELOW: usize = 16 * 1024;
/// How long a slowly coming input gathers before the reader reads it again: the most a
/// line waits in the pipe for that, when the reader's last read brought little.
pub const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

fn read_loop<T>(
    input: impl Read,
    shared: &Shared<T>,
    work: &Sender<Tracked<InputLine>>,
    spill: &Sender<InputLine>,
    gather: Option<std::time::Duration>,
) -> io::Result<()> {
    let stats = &shared.stats;
    let mut input = io::BufReader::with_capacity(READ_BUFFER, input);
    let mut spilling = false;
    // Whether the reader waited for the spool since it last handed a line on (it says
    // so once).
    let mut spool_behind = false;
    // Bytes the last read brought; a full buffer's worth to start with, so the first
    // read does not wait.
    let mut last_read = READ_BUFFER;
    loop {
        if input.buffer().is_empty() {
            // The next line needs a read. When the last one brought little, let the
            // input gather first: a few lines then cost one wake-up of this thread
            // and one of the checker, not one each (Apache writes one line per
            // request, and on a VM a wake-up costs more than the line's work). The
            // lines read so far are already handed on; what comes meanwhile waits in
            // the pipe, which the collector enlarges so Apache does not wait.
            match gather {
                Some(wait) if last_read < GATHER_BELOW => std::thread::sleep(wait),
                _ => {}
            }
            last_read = loop {
                match io::BufRead::fill_buf(&mut input) {
                    Ok(b) => break b.len(),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
        }
        let Some(line) = read_line(&mut input)? else {
            break;
        };
        stats.read.fetch_add(1, Ordering::Relaxed);
        if line.full_len > line.bytes.len() {
            log::warn!(
                "index line of {} bytes cut to {MAX_LINE_BYTES}",
                line.full_len
            );
        }
        // In the ledger before it is in the channel: a line is never in neither.
        let seq = shared.enter_read(&line);
        let sent = match seq {
            Some(seq) => work.try_send((seq, line)).map_err(|e| match e {
                TrySendError::Full((_, l)) | TrySendError::Disconnected((_, l)) => l,
            }),
            // The lines held for the worker fill the reader's share of memory, or
            // abandoned (the process is stopping): this one waits in the spool.
            None => Err(line),
        };
        match sent {
            Ok(()) => (spilling, spool_behind) = (false, false),
            Err(line) => {
                if let Some(seq) = seq {
                    shared.forget(seq);
                }
                if !spilling {
                    log::info!("the worker is behind; spooling lines until it catches up");
                    spilling = true;
                }
                stats.spilled.fetch_add(1, Ordering::Relaxed);
                shared.spill_outstanding.fetch_add(1, Ordering::SeqCst);
                shared.reserve_spill(&line, || {
                    if !spool_behind {
                        log::warn!(
                            "{SPILL_BYTES} bytes of lines wait to be written to the spool (its disk is slow or hung): reading waits for it"
                        );
                        spool_behind = true;
                    }
                });
                let _ = spill.send(line);
            }
        }
    }
    Ok(())
}
