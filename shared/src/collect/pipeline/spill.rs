//! The spill thread: lines the reader could not hand on, written to the spool; and the
//! spill's share of the pipeline's memory.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::backlog::backlog_or_log;
use super::ledger::{copy_cost, LEDGER_BYTES};
use super::{lock, spawn, Shared};
use crate::collect::{InputLine, MAX_PIPELINE_BYTES};

/// The spill's share: lines on their way to the spool, until written. Only a disk that
/// writes slower than lines come spends it; the reader then waits (see
/// [`SPILL_CHANNEL_LINES`]).
pub(super) const SPILL_BYTES: usize = MAX_PIPELINE_BYTES - LEDGER_BYTES;

/// Bytes of lines the spill thread writes with one fsync, at most (beyond one line),
/// and the most it copies to write them in one go. 4096 ordinary lines take about this.
pub const SPILL_BATCH_BYTES: usize = 2 * 1024 * 1024;

/// Spilled lines written with one fsync, at most this many at a time (and at most
/// [`SPILL_BATCH_BYTES`]).
pub(super) const SPILL_BATCH: usize = 4096;

/// Lines on their way to the spool, and at most [`SPILL_BYTES`] of them. Only a disk that
/// takes no writes at all (or writes slower than lines come) fills this; the reader then
/// waits (holding more would only grow memory until the OOM killer came, and Apache
/// cannot write its event files to that disk either).
pub(super) const SPILL_CHANNEL_LINES: usize = 16 * 1024;

/// The spill thread: writes what the reader could not hand on to the spool, in batches
/// with one fsync; a spool that cannot be written sends them to the backlog.
pub(super) fn spawn_spill<T: Send + 'static>(
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

impl<T> Shared<T> {
    /// Counts a line on its way to the spool, first waiting (after `before_wait`)
    /// while the spill's share is spent: the spill thread is writing behind.
    pub(super) fn reserve_spill(&self, line: &InputLine, before_wait: impl FnOnce()) {
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
    pub(super) fn release_spill(&self, lines: &[InputLine]) {
        let cost: usize = lines.iter().map(copy_cost).sum();
        let mut held = lock(&self.spill_bytes);
        *held -= cost;
        self.freed(cost);
        self.spill_room.notify_all();
    }
}
