//! The in-flight ledger: every line from when it is read (or taken from the spool)
//! until the committer claims it, and the ledger's share of the pipeline's memory.

use std::mem::take;

use super::{lock, Shared};
use crate::collect::{InputLine, MAX_PIPELINE_BYTES};

/// The ledger's share of [`MAX_PIPELINE_BYTES`]: lines read (or taken from the spool) and
/// not yet committed, counted twice (the ledger's copy and the steps').
pub(super) const LEDGER_BYTES: usize = MAX_PIPELINE_BYTES / 2;

/// What the reader may fill of the ledger's share; lines beyond it are spilled. The rest
/// is for lines the checker takes from the spool, so that it can always go on with
/// them once the steps after it are done: the reader's lines waiting in the work
/// channel are the checker's own to take, and it is busy with the spool.
pub(super) const READER_LEDGER_BYTES: usize = LEDGER_BYTES - 4 * 1024 * 1024;

/// What a copy of a line costs besides its bytes: its `InputLine`, a slot in a channel
/// or the ledger's map, the allocator's own.
pub(super) const LINE_OVERHEAD: usize = 64;

/// The memory one copy of `line` takes.
pub(super) fn copy_cost(line: &InputLine) -> usize {
    line.bytes.capacity() + LINE_OVERHEAD
}

/// The memory a line in the ledger takes: the ledger's copy (a clone, as long as the
/// line) and the one the steps work on.
pub(super) fn ledger_cost(line: &InputLine) -> usize {
    line.bytes.len() + LINE_OVERHEAD + copy_cost(line)
}

/// The in-flight ledger: every line from the moment it is read (or taken from the
/// spool) until the committer claims it. [`Pipeline::abandon`](super::Pipeline::abandon) closes it and takes what
/// is left, in order; a step that finishes a line after that finds it gone and drops
/// it. So each line is committed or backlogged, never both and never neither, wherever
/// a step is stuck.
#[derive(Default)]
pub(super) struct Ledger {
    /// Each line with its [`ledger_cost`].
    pub(super) lines: std::collections::BTreeMap<u64, (InputLine, usize)>,
    pub(super) next: u64,
    pub(super) closed: bool,
    /// Lines claimed and still being committed.
    pub(super) committing: usize,
    /// Bytes of the lines in it and being committed. Not given back when it closes: the
    /// copies on the steps stay where they are until the process exits.
    pub(super) bytes: usize,
}

impl Ledger {
    /// Records a line that takes `cost` bytes, if that keeps it within `limit`; `None`
    /// when it would not, or once closed.
    pub(super) fn enter(&mut self, line: &InputLine, cost: usize, limit: usize) -> Option<u64> {
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
    pub(super) fn forget(&mut self, seq: u64) -> Option<usize> {
        let (_, cost) = self.lines.remove(&seq)?;
        self.bytes -= cost;
        Some(cost)
    }

    /// Takes a line out for its commit, and its cost (given back by [`Ledger::done`]);
    /// `None` if abandon took it first.
    pub(super) fn claim(&mut self, seq: u64) -> Option<usize> {
        let (_, cost) = self.lines.remove(&seq)?;
        self.committing += 1;
        Some(cost)
    }

    /// A claimed line is committed.
    pub(super) fn done(&mut self, cost: usize) {
        self.committing -= 1;
        self.bytes -= cost;
    }

    /// Closes the ledger and returns every line not claimed, in order.
    pub(super) fn close(&mut self) -> Vec<InputLine> {
        self.closed = true;
        take(&mut self.lines)
            .into_values()
            .map(|(line, _)| line)
            .collect()
    }
}

impl<T> Shared<T> {
    /// Records a line the reader read in the ledger, while the reader's share of it has
    /// room; `None` (the line is to be spilled) when it has not, or the ledger is closed.
    pub(super) fn enter_read(&self, line: &InputLine) -> Option<u64> {
        let cost = ledger_cost(line);
        let mut ledger = lock(&self.ledger);
        let seq = ledger.enter(line, cost, READER_LEDGER_BYTES)?;
        self.holds(cost);
        Some(seq)
    }

    /// Takes a line the reader entered out of the ledger again (it spills it instead).
    pub(super) fn forget(&self, seq: u64) {
        let mut ledger = lock(&self.ledger);
        if let Some(cost) = ledger.forget(seq) {
            self.freed(cost);
            self.ledger_room.notify_all();
        }
    }

    /// Records a line taken from the spool in the ledger once it has room (after
    /// `before_wait`, when it has to wait for it): lines ahead of it are committed
    /// meanwhile. `None` once the ledger is closed (which ends the wait too).
    pub(super) fn enter_spooled(
        &self,
        line: &InputLine,
        before_wait: impl FnOnce(),
    ) -> Option<u64> {
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
}
