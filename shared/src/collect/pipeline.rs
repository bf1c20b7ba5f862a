//! The threads of a collector: the reader (only reads), the checker, the hasher and
//! the committer (the three steps of the work, in order), and the spill thread (writes
//! the spool).

use std::collections::VecDeque;
use std::io::{self, Read};
use std::mem::take;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use super::spool::{Spool, SPOOL_POLL};
use super::{read_line, InputLine, Stats, MAX_LINE_BYTES, WORK_QUEUE_LINES};
use crate::queue::Queue;

/// Something that acts on lines in one step: a test's stand-in for the [`Worker`](super::Worker).
pub trait LineSink: Send {
    fn handle(&mut self, line: &InputLine);
}

/// The steps the pipeline runs on a thread each, in order: `check` and `verify` (may be
/// slow, change nothing; `verify` may be absent) and `commit`. `line_of` gives back the
/// line of a checked item, so a second SIGTERM can put unfinished ones in the backlog.
pub struct Stages<T> {
    pub check: Box<dyn FnMut(InputLine) -> T + Send>,
    pub verify: Option<Box<dyn FnMut(T) -> T + Send>>,
    pub commit: Box<dyn FnMut(T) + Send>,
    pub line_of: fn(&T) -> &InputLine,
}

impl Stages<InputLine> {
    /// A one-step sink: nothing to check, all the work in `commit`.
    pub fn from_sink(mut sink: impl LineSink + 'static) -> Stages<InputLine> {
        Stages {
            check: Box::new(|line| line),
            verify: None,
            commit: Box::new(move |line| sink.handle(&line)),
            line_of: |l| l,
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
    pending: Receiver<InputLine>,
    /// Lines between the checker and the hasher (the checked lines when there is none).
    opened: Receiver<Vec<T>>,
    checked: Receiver<Vec<T>>,
    /// Lines checked and not yet handed over.
    in_checker: Arc<Mutex<Vec<T>>>,
    /// Lines handed to the hasher and not yet hashed (but the one being hashed).
    hasher_in: Arc<Mutex<VecDeque<T>>>,
    /// Lines hashed and not yet handed over.
    hasher_out: Arc<Mutex<Vec<T>>>,
    /// Lines handed over and not yet committed (but the one being committed).
    in_worker: Arc<Mutex<VecDeque<T>>>,
    line_of: fn(&T) -> &InputLine,
    spilling: Receiver<InputLine>,
    spill_outstanding: Arc<AtomicU64>,
    /// Set by [`Pipeline::abandon`]: the checker and the hasher take no more work.
    stop: Arc<AtomicBool>,
}

/// A step's end of the channel to the next: what it did, in batches. The batch is
/// shared so that [`Pipeline::abandon`] can take it from a step stuck on a line (a hung
/// disk).
struct Handover<I, T> {
    step: Box<dyn FnMut(I) -> T + Send>,
    tx: Sender<Vec<T>>,
    batch: Arc<Mutex<Vec<T>>>,
    /// Counts of lines handed on and not yet committed, each raised per line.
    handed: Vec<Arc<AtomicUsize>>,
}

impl<I, T> Handover<I, T> {
    /// Does the step on `item`, then hands it on.
    fn push(&mut self, item: I, waiting: bool) {
        let done = (self.step)(item);
        self.hand(done, waiting);
    }

    /// Hands `done` on: the batch goes unless more items are `waiting` and it has room.
    fn hand(&mut self, done: T, waiting: bool) {
        for count in &self.handed {
            count.fetch_add(1, Ordering::SeqCst);
        }
        let len = {
            let mut batch = lock(&self.batch);
            batch.push(done);
            batch.len()
        };
        if !waiting || len >= CHECKED_BATCH_LINES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let full = std::mem::take(&mut *lock(&self.batch));
        if !full.is_empty() {
            let _ = self.tx.send(full);
        }
    }
}

/// Takes batches from `rx` into `queue`, where [`Pipeline::abandon`] can take them (only
/// the item being worked on is out of its reach), and gives each item in turn to `work`
/// with whether more wait in `queue`. False when it stopped early because `stop` was set.
fn each_in_turn<T>(
    rx: &Receiver<Vec<T>>,
    queue: &Mutex<VecDeque<T>>,
    stop: &AtomicBool,
    mut work: impl FnMut(T, bool),
) -> bool {
    for batch in rx.iter() {
        lock(queue).extend(batch);
        loop {
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            let (next, more) = {
                let mut queue = lock(queue);
                let next = queue.pop_front();
                (next, !queue.is_empty())
            };
            match next {
                Some(item) => work(item, more),
                None => break,
            }
        }
    }
    true
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spilled lines written with one fsync, at most this many at a time.
const SPILL_BATCH: usize = 4096;
/// Lines on their way to the spool. Only a disk that takes no writes at all fills this;
/// the reader then waits (holding more would only grow memory until the OOM killer came,
/// and Apache cannot write its event files to that disk either).
const SPILL_CHANNEL_LINES: usize = 16 * 1024;
impl<T: Send + 'static> Pipeline<T> {
    /// Starts reading `input`. Lines the worker cannot take at once are spilled to this
    /// process's spool in `spool_dir` (the queue), which the checker drains as soon as
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
        let Stages {
            check,
            verify,
            commit,
            line_of,
        } = stages;
        // A line that finds the pipeline idle, or only a few lines (one gather of the
        // reader's) waiting behind it, is taken through every step by the thread that
        // has it (the checker; the hasher for the last step): at Apache's usual rates
        // a line then wakes one thread, not three (each wake-up costs more CPU than
        // the step, on a VM most of all). Lines go from thread to thread only while
        // more wait, and never past one handed on earlier, so the order holds.
        let verify = verify.map(|v| Arc::new(Mutex::new(v)));
        let commit = Arc::new(Mutex::new(commit));
        // Lines the checker handed on, and lines handed to the committer, not yet
        // committed. Without a hasher the checker hands straight to the committer, so
        // it raises both.
        let after_checker = Arc::new(AtomicUsize::new(0));
        let after_hasher = Arc::new(AtomicUsize::new(0));
        let (checked_tx, checked_rx) = bounded::<Vec<T>>(CHECKED_QUEUE_BATCHES);
        let checked = checked_rx.clone();
        // With a verify step the checker hands over to it, else to the committer.
        let (opened_tx, checker_handed, hasher_parts) = match &verify {
            Some(verify) => {
                let (opened_tx, opened_rx) = bounded::<Vec<T>>(OPENED_QUEUE_BATCHES);
                (
                    opened_tx,
                    vec![after_checker.clone()],
                    Some((verify.clone(), opened_rx, checked_tx)),
                )
            }
            None => (
                checked_tx,
                vec![after_checker.clone(), after_hasher.clone()],
                None,
            ),
        };
        let opened = match &hasher_parts {
            Some((_, opened_rx, _)) => opened_rx.clone(),
            None => checked_rx.clone(),
        };
        let (work_tx, work_rx) = bounded::<InputLine>(WORK_QUEUE_LINES);
        let (spill_tx, spill_rx) = bounded::<InputLine>(SPILL_CHANNEL_LINES);
        let (spill_done_tx, spill_done_rx) = bounded::<()>(0);
        let pending = work_rx.clone();
        let spilling = spill_rx.clone();
        // Lines handed to the spill thread and not yet in the spool.
        let spill_outstanding = Arc::new(AtomicU64::new(0));
        let outstanding = spill_outstanding.clone();
        let spooled = Arc::new(AtomicBool::new(false));
        let spill_wrote = spooled.clone();
        let mut watch = SpoolWatch {
            spooled,
            spilling: spill_outstanding.clone(),
            failed_at: None,
        };
        let reader_outstanding = spill_outstanding.clone();
        let reader_stats = stats.clone();
        let spool = Arc::new(Spool::new(spool_dir));
        let stop = Arc::new(AtomicBool::new(false));
        let checker_stop = stop.clone();
        let hasher_stop = stop.clone();
        let in_checker = Arc::new(Mutex::new(Vec::new()));
        let checker_batch = in_checker.clone();
        let hasher_in = Arc::new(Mutex::new(VecDeque::new()));
        let hasher_queue = hasher_in.clone();
        let hasher_out = Arc::new(Mutex::new(Vec::new()));
        let hasher_batch = hasher_out.clone();
        let in_worker = Arc::new(Mutex::new(VecDeque::new()));
        let worker_batch = in_worker.clone();
        let writer_spool = spool.clone();
        // Closed when the reader is done, so the caller can wait for it without polling.
        let (input_end_tx, input_end) = bounded::<()>(0);
        let reader = std::thread::Builder::new()
            .name("reader".into())
            .spawn(move || {
                let _end = input_end_tx;
                read_loop(
                    input,
                    work_tx,
                    spill_tx,
                    &reader_stats,
                    &reader_outstanding,
                    gather,
                )
            })
            .expect("spawn reader thread");
        let (checker_verify, checker_commit) = (verify.clone(), commit.clone());
        let checker_after = after_checker.clone();
        let checker = std::thread::Builder::new()
            .name("checker".into())
            .spawn(move || {
                let mut out = Handover {
                    step: check,
                    tx: opened_tx,
                    batch: checker_batch,
                    handed: checker_handed,
                };
                // Spooled lines go a batch at a time, whatever else waits.
                spool.recover(&mut |line| out.push(line.clone(), true));
                out.flush();
                loop {
                    if checker_stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // Spooled lines are older than any still to come: they go as soon
                    // as nothing newer waits, not after a quiet spell, which steady
                    // traffic may never leave.
                    if work_rx.is_empty() && watch.take(&spool, &mut out) {
                        continue;
                    }
                    // While the spool has lines or is getting some, look again soon.
                    // Otherwise sleep until a line comes: the reader spills only when
                    // the work channel is full, and then this wakes anyway.
                    let next = if watch.pending() {
                        work_rx.recv_timeout(SPOOL_POLL)
                    } else {
                        work_rx
                            .recv()
                            .map_err(|_| crossbeam_channel::RecvTimeoutError::Disconnected)
                    };
                    match next {
                        Ok(line)
                            if work_rx.len() < INLINE_BELOW
                                && checker_after.load(Ordering::SeqCst) == 0 =>
                        {
                            // Few wait and nothing is ahead: every step here.
                            let done = (out.step)(line);
                            let done = match &checker_verify {
                                Some(verify) => (lock(verify))(done),
                                None => done,
                            };
                            (lock(&checker_commit))(done);
                        }
                        Ok(line) => out.push(line, !work_rx.is_empty()),
                        // The spill thread is still writing: the top of the loop
                        // takes what it wrote.
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                            // Input is over: wait for the last spilled batch, then drain.
                            let _ = spill_done_rx.recv();
                            if let Err(e) = spool.drain(&mut |line| out.push(line.clone(), true)) {
                                log::error!("{e}; the next collector queues its lines");
                            }
                            break;
                        }
                    }
                }
                out.flush();
            })
            .expect("spawn checker thread");
        let hasher_commit = commit.clone();
        let (hasher_after_checker, hasher_after) = (after_checker.clone(), after_hasher.clone());
        let hasher = hasher_parts.map(|(verify, opened_rx, checked_tx)| {
            std::thread::Builder::new()
                .name("hasher".into())
                .spawn(move || {
                    let mut out = Handover {
                        step: Box::new(move |item| (lock(&verify))(item)),
                        tx: checked_tx,
                        batch: hasher_batch,
                        handed: vec![hasher_after.clone()],
                    };
                    let finished =
                        each_in_turn(&opened_rx, &hasher_queue, &hasher_stop, |item, more| {
                            let done = (out.step)(item);
                            let waiting = more || !opened_rx.is_empty();
                            if !waiting && hasher_after.load(Ordering::SeqCst) == 0 {
                                // The committer has nothing: commit it here.
                                (lock(&hasher_commit))(done);
                                hasher_after_checker.fetch_sub(1, Ordering::SeqCst);
                            } else {
                                out.hand(done, waiting);
                            }
                        });
                    // Stopped: what is left stays in the batches, for abandon().
                    if finished {
                        out.flush();
                    }
                })
                .expect("spawn hasher thread")
        });
        let worker = std::thread::Builder::new()
            .name("worker".into())
            .spawn(move || {
                // It never stops early: what abandon() leaves it, it commits.
                let never = AtomicBool::new(false);
                each_in_turn(&checked_rx, &worker_batch, &never, |item, _| {
                    (lock(&commit))(item);
                    after_hasher.fetch_sub(1, Ordering::SeqCst);
                    after_checker.fetch_sub(1, Ordering::SeqCst);
                });
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
                    match writer_spool.append(&batch) {
                        Ok(()) => spill_wrote.store(true, Ordering::SeqCst),
                        Err(e) => {
                            let reason = format!(
                                "collector busy and the spool {} cannot be written: {e}",
                                writer_spool.path.display()
                            );
                            match Queue::open(&writer_spool.dir) {
                                Ok(q) => write_backlog(&q, &batch, &reason, &stats),
                                Err(qe) => {
                                    for l in &batch {
                                        log::error!(
                                            "{reason}; nor the backlog ({qe}); lost line follows: {}",
                                            String::from_utf8_lossy(&l.bytes).trim_end()
                                        );
                                    }
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
            input_end,
            checker,
            hasher,
            opened,
            checked,
            in_checker,
            hasher_in,
            hasher_out,
            in_worker,
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
        drop(self.opened);
        drop(self.checked);
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

    /// Cuts the grace short (a second SIGTERM): lines still waiting for the worker or
    /// for the spill thread go to `backlog`, and a spool write in progress is waited for
    /// (up to `grace`). Each step finishes the line it is on; the spool stays on disk
    /// for the next collector, which drains it at start-up.
    pub fn abandon(self, grace: std::time::Duration, backlog: impl Fn(&[InputLine])) {
        self.stop.store(true, Ordering::SeqCst);
        // The checker and the hasher may still be on one line each; they hand it over
        // once there is room. What they did before is taken from their batches.
        let line_of = self.line_of;
        let lines_of = |items: Vec<T>| -> Vec<InputLine> {
            items.iter().map(|c| line_of(c).clone()).collect()
        };
        let mut left: Vec<InputLine> = Vec::new();
        let mut quiet_rounds = 0;
        while quiet_rounds < 3 {
            let before = left.len();
            left.extend(self.pending.try_iter());
            left.extend(lines_of(self.checked.try_iter().flatten().collect()));
            left.extend(lines_of(take(&mut *lock(&self.in_worker)).into()));
            left.extend(lines_of(take(&mut *lock(&self.hasher_out))));
            left.extend(lines_of(take(&mut *lock(&self.hasher_in)).into()));
            left.extend(lines_of(self.opened.try_iter().flatten().collect()));
            left.extend(lines_of(take(&mut *lock(&self.in_checker))));
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

/// What the checker knows of its spool.
struct SpoolWatch {
    /// Set by the spill thread after each write to the spool (before it counts the
    /// lines as no longer outstanding); cleared when the checker takes the spool.
    spooled: Arc<AtomicBool>,
    /// Lines handed to the spill thread and not yet in the spool.
    spilling: Arc<AtomicU64>,
    /// When the spool could last not be taken.
    failed_at: Option<std::time::Instant>,
}

impl SpoolWatch {
    /// Whether the spool holds lines or is about to.
    fn pending(&self) -> bool {
        self.spilling.load(Ordering::SeqCst) > 0 || self.spooled.load(Ordering::SeqCst)
    }

    /// Takes the spool into `out` when it has lines and, after a failure, SPOOL_POLL has
    /// passed. True when it tried.
    fn take<T>(&mut self, spool: &Spool, out: &mut Handover<InputLine, T>) -> bool {
        if self.failed_at.is_some_and(|t| t.elapsed() < SPOOL_POLL)
            || !self.spooled.swap(false, Ordering::SeqCst)
        {
            return false;
        }
        match spool.drain(&mut |line| out.push(line.clone(), true)) {
            Ok(()) if self.failed_at.take().is_some() => log::info!("the spool is taken again"),
            Ok(()) => {}
            Err(e) => {
                if self.failed_at.is_none() {
                    log::error!("{e}; trying again every {SPOOL_POLL:?}");
                }
                // Its lines are still there: the timed wait comes back for them.
                self.spooled.store(true, Ordering::SeqCst);
                self.failed_at = Some(std::time::Instant::now());
            }
        }
        out.flush();
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

fn read_loop(
    input: impl Read,
    work: Sender<InputLine>,
    spill: Sender<InputLine>,
    stats: &Stats,
    spill_outstanding: &AtomicU64,
    gather: Option<std::time::Duration>,
) -> io::Result<()> {
    let mut input = io::BufReader::with_capacity(READ_BUFFER, input);
    let mut spilling = false;
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
