//! Writing lines to the backlog, when they can be neither queued nor spooled.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::spill::SPILL_BATCH_BYTES;
use crate::collect::{InputLine, Stats};
use crate::state::StateDir;

/// The backlog reason of the lines [`Pipeline::abandon`](super::Pipeline::abandon) takes.
pub(super) const ABANDONED: &str = "collector stopped by a second SIGTERM before handling it";

/// [`write_backlog`] into the state dir `dir` (the spool's), [`SPILL_BATCH_BYTES`] at
/// a time (each write is one copy of its lines); lines that cannot go there are logged
/// in full.
pub(super) fn backlog_or_log(dir: &Path, lines: &[InputLine], reason: &str, stats: &Stats) {
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
