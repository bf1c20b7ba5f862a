//! The reader thread: reads lines, never touches the disk, never waits for the steps.

use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use super::spill::SPILL_BYTES;
use super::{spawn, Shared, Tracked};
use crate::collect::{read_line, InputLine, MAX_LINE_BYTES};

/// The reader's buffer: as much as a default pipe holds.
pub(super) const READ_BUFFER: usize = 64 * 1024;

/// A read that brings less than this means the input is coming slowly; the reader then
/// waits [`GATHER`] before its next read. At this much per 10 ms (1.6 MB/s, some 4,000
/// index lines a second) it reads as fast as lines come.
pub(super) const GATHER_BELOW: usize = 16 * 1024;

/// How long a slowly coming input gathers before the reader reads it again: the most a
/// line waits in the pipe for that, when the reader's last read brought little.
pub const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// The reader: reads lines, records each in the ledger and hands it to the checker, or
/// to the spill thread when the checker has no room. It never waits for the steps.
pub(super) fn spawn_reader<T: Send + 'static, R: Read + Send + 'static>(
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

pub(super) fn read_loop<T>(
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
            // The lines held for the steps fill the reader's share of memory, or
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
