//! The checker thread: the first step, on lines from the reader and from the spool.

use std::mem::take;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::backlog::{backlog_or_log, ABANDONED};
use super::handover::Handover;
use super::spill::SPILL_BATCH_BYTES;
use super::spool_watch::SpoolWatch;
use super::{lock, spawn, Shared, Step, Tracked};
use crate::collect::spool::SPOOL_POLL;
use crate::collect::InputLine;

/// With fewer lines than this waiting, the checker takes a line through every step
/// itself (when nothing is ahead of it on the other threads); with more, it hands lines
/// on so the steps spread over the cores. A gather of the reader's at Apache's usual
/// rates is a handful of lines.
pub(super) const INLINE_BELOW: usize = 16;

/// The checker: the first step, on lines from the reader and from the spool (which go
/// first once nothing newer waits). A line that finds the pipeline idle, or only a few
/// lines (one gather of the reader's) behind it, is taken through every step here: at
/// Apache's usual rates a line then wakes one thread, not three (each wake-up costs
/// more CPU than the step, on a VM most of all). Lines go from thread to thread only
/// while more wait, and never past one handed on earlier, so the order holds.
pub(super) fn spawn_checker<T: Send + 'static>(
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
            if work.is_empty() && step.spool_pass(|step| watch.drain_into(step)) {
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

/// The checker's step and its end of the channel to the next step.
pub(super) struct CheckStep<'a, T> {
    pub(super) check: Step<InputLine, T>,
    pub(super) out: Handover<T>,
    pub(super) shared: &'a Shared<T>,
    /// Spool lines that came after abandon() closed the ledger: the spool file they
    /// came from is gone, so they go to the backlog from here, [`SPILL_BATCH_BYTES`] at
    /// a time.
    pub(super) late: Vec<InputLine>,
    pub(super) late_bytes: usize,
}

impl<T> CheckStep<'_, T> {
    /// Hands a checked line on, counting it as ahead of the checker (and, without a
    /// hasher, ahead of the committer's inline commits too).
    pub(super) fn hand(&mut self, done: Tracked<T>, waiting: bool) {
        self.shared.after_checker.fetch_add(1, Ordering::SeqCst);
        if self.shared.verify.is_none() {
            self.shared.after_hasher.fetch_add(1, Ordering::SeqCst);
        }
        self.out.hand(done, waiting);
    }

    /// A line taken from the spool: it enters the ledger here, once the ledger has
    /// room for it (what this step holds is handed on first, to make room).
    pub(super) fn spooled(&mut self, line: &InputLine) {
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

    pub(super) fn backlog_late(&mut self) {
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
    pub(super) fn spool_pass(&mut self, pass: impl FnOnce(&mut Self) -> bool) -> bool {
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
