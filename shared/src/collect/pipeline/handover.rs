//! A step's end of the channel to the next step: what it did, handed on in batches.

use std::mem::take;

use crossbeam_channel::Sender;

use super::Tracked;

/// Lines a step hands over at once while more are waiting for it: under load the next
/// step then wakes once per batch, not once per line (on two cores its spinning and
/// waking cost the slower step about a tenth of its time). A line that finds the steps
/// idle goes on alone, at once.
pub(super) const CHECKED_BATCH_LINES: usize = 16;

/// A step's end of the channel to the next: what it did, in batches.
pub(super) struct Handover<T> {
    pub(super) tx: Sender<Vec<Tracked<T>>>,
    pub(super) batch: Vec<Tracked<T>>,
}

impl<T> Handover<T> {
    /// Hands `done` on: the batch goes unless more items are `waiting` and it has room.
    pub(super) fn hand(&mut self, done: Tracked<T>, waiting: bool) {
        self.batch.push(done);
        if !waiting || self.batch.len() >= CHECKED_BATCH_LINES {
            self.flush();
        }
    }

    pub(super) fn flush(&mut self) {
        let full = take(&mut self.batch);
        if !full.is_empty() {
            let _ = self.tx.send(full);
        }
    }
}
