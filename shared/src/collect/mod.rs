//! What `modsec-collector` does with each index line, and the pipeline of threads that
//! keeps Apache from ever waiting on it (ARCHITECTURE.md, "The collector never blocks
//! Apache and never loses a line").
//!
//! The reader thread only reads lines and hands them over; it never touches the disk and
//! never waits for the work, which three more threads do in order (checker, hasher,
//! committer). When the checker falls behind (a burst, a slow or hung disk), lines go to
//! the spill thread, which appends them to this process's spool, and the checker drains
//! the spool as soon as it catches up. Every line read ends up queued or in the backlog
//! (with its reason logged), or in a spool that this or the next collector drains.
//!
//! - [`settings`]: the collector's settings from the config file and command line;
//! - [`worker`]: what happens to one line (check, hash, commit);
//! - [`index_file`]: the index file, written by the committer and opened on first use;
//! - [`pipeline`]: the reader, checker, hasher, committer and spill threads;
//! - [`spool`]: the overflow file the worker drains when it catches up;
//! - [`follow`]: reading an index file instead of a pipe (libmodsecurity 3).

use std::io::{self, BufRead};
use std::sync::atomic::AtomicU64;

pub mod degraded;
pub mod follow;
pub mod index_file;
pub mod migrate;
pub mod pipeline;
pub mod run;
pub mod settings;
pub mod spool;
pub mod worker;

#[cfg(test)]
pub use pipeline::LineSink;
pub use pipeline::{write_backlog, Pipeline, Stages};
pub use settings::{CollectorOverrides, CollectorSettings};
pub use worker::{resolve_event_path, Checked, Checker, Committer, LineOutcome, Worker};

/// ModSecurity 2 keeps index lines under 4 KiB (PIPE_BUF); a line 16 times that is not
/// an index line. Longer lines are cut to this, logged and put in the backlog.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Lines waiting for the worker in memory before new ones are spooled to disk (fsynced),
/// and fewer when they are long: all the lines held count against [`MAX_PIPELINE_BYTES`].
/// Small on purpose: lines held in memory are what a SIGKILL of the collector loses, and
/// the spool absorbs bursts at disk speed anyway.
pub const WORK_QUEUE_LINES: usize = 512;
/// Bytes of index lines the pipeline holds in memory at most, by its own count of every
/// copy of a line ([`Stats::held_peak`]): half for lines read and not yet committed (the
/// ledger's copy and the one the steps work on), half for lines on their way to the
/// spool. A count of lines bounded nothing: 512 lines of up to 64 KiB, held twice, and
/// 16,384 on their way to the spool took a flood of 60 KiB lines to 576 MB. Ordinary lines
/// (a few hundred bytes) never reach it, the line counts stop them first; long ones keep
/// a hundred or so in hand, enough to write the spool in batches of
/// [`pipeline::SPILL_BATCH_BYTES`], i.e. at disk speed. Beyond it the collector holds
/// at most one batch's copy being written, one line being read and one taken from the
/// spool, and the index file's [`index_file::MAX_HELD_BYTES`].
pub const MAX_PIPELINE_BYTES: usize = 32 * 1024 * 1024;

/// What the collector asks its input pipe to hold: the kernel's default ceiling
/// (fs.pipe-max-size), 16 times the default 64 KiB. The reader lets slow input gather
/// for [`pipeline::GATHER`] between reads, and may be descheduled on a busy box; room in
/// the pipe is what keeps Apache's children from waiting meanwhile.
pub const PIPE_BYTES: usize = 1024 * 1024;

/// Asks the kernel to make the pipe behind `fd` hold [`PIPE_BYTES`]; returns what it
/// holds now. Fails when `fd` is not a pipe, or the size is over the ceiling for an
/// unprivileged process.
pub fn enlarge_pipe(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<usize> {
    let stat = rustix::fs::fstat(fd)?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Fifo {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a pipe"));
    }
    Ok(rustix::pipe::fcntl_setpipe_size(fd, PIPE_BYTES)?)
}

/// One line as read: at most [`MAX_LINE_BYTES`], and how long it really was.
#[derive(Debug, Clone)]
pub struct InputLine {
    pub bytes: Vec<u8>,
    pub full_len: usize,
}

/// Counters a collector reports when it exits.
#[derive(Debug, Default)]
pub struct Stats {
    /// Lines the reader took from the input.
    pub read: AtomicU64,
    pub queued: AtomicU64,
    pub backlogged: AtomicU64,
    pub spilled: AtomicU64,
    pub integrity_mismatches: AtomicU64,
    /// The most bytes of lines the pipeline held in memory at once, by its own count: at
    /// most [`MAX_PIPELINE_BYTES`].
    pub held_peak: AtomicU64,
}

/// Reads lines of at most [`MAX_LINE_BYTES`] (the rest of a longer line is skipped and
/// counted). Returns `None` at end of input.
pub fn read_line(input: &mut impl BufRead) -> io::Result<Option<InputLine>> {
    let mut bytes = Vec::new();
    let mut full_len = 0usize;
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok((full_len > 0).then_some(InputLine { bytes, full_len }));
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(p) => (&buf[..=p], true),
            None => (buf, false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(bytes.len());
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        full_len += chunk.len();
        let n = chunk.len();
        input.consume(n);
        if done {
            return Ok(Some(InputLine { bytes, full_len }));
        }
    }
}

#[cfg(test)]
mod tests;
