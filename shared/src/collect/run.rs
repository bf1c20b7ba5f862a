//! The collector's two ways of running: [`piped`] (Apache's pipe on standard input) and
//! [`follow`] (an index file that grows: libmodsecurity 3). Both take the binary's
//! signals as a channel of [`Control`]s, so tests drive them directly; the binary
//! parses arguments, sets up logging, and calls them.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::follow::{Follower, StartAt};
use super::pipeline::Pipeline;
use super::{CollectorSettings, Stats, Worker};
use crate::control::Control;

/// How often a followed index file is looked at when nothing new was there.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How long a second Stop waits for a backlog write in progress.
pub const ABANDON_GRACE: Duration = Duration::from_secs(5);

/// Queues the event of every index line read from `input` until it ends (Apache closed
/// the pipe). The first [`Control::Stop`] is only announced: Apache's old children may
/// still write after a graceful restart; a second stops at once, with the lines not yet
/// handled written to the backlog. [`Control::Reload`] reopens the index file.
/// `gather`: how long slow input may gather between reads ([`Pipeline::start_gathering`]).
///
/// Returns the statistics, or the error that kept it from starting (the queue cannot be
/// opened; nothing was read. The index file is opened later, by the committer).
pub fn piped<R: Read + Send + 'static>(
    settings: CollectorSettings,
    input: R,
    gather: Option<Duration>,
    control: &Receiver<Control>,
) -> std::io::Result<Arc<Stats>> {
    let reopen = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let worker = open_worker(settings, reopen.clone(), stats.clone())?;
    // The spool goes where only root writes: the state dir, as the worker opened it.
    let state_dir = worker.state().path().to_path_buf();
    let pipeline = Pipeline::start_gathering(
        input,
        worker.into_stages(),
        &state_dir,
        stats.clone(),
        gather,
    );
    let mut stops = 0;
    // Until the input ends (or no more signals can come): then finish; or until a
    // second Stop: then abandon.
    let finish = loop {
        crossbeam_channel::select! {
            recv(pipeline.input_end()) -> _ => break true,
            recv(control) -> c => match c {
                Ok(Control::Reload) => reopen.store(true, Ordering::SeqCst),
                Ok(Control::Stop) if stops == 0 => {
                    stops += 1;
                    // configtest's Apache ends the collector it started this way too.
                    let target = if stats.read.load(Ordering::Relaxed) == 0 {
                        crate::logging::LOG_ONLY
                    } else {
                        module_path!()
                    };
                    log::info!(
                        target: target,
                        "SIGTERM: finishing when Apache closes the pipe (send it again to stop now)"
                    );
                }
                Ok(Control::Stop) => break false,
                Err(_) => break true,
            },
        }
    };
    if finish {
        if let Err(e) = pipeline.finish() {
            log::error!("reading standard input failed: {e}");
        }
    } else {
        log::warn!("second SIGTERM: stopping now; lines not yet handled go to the backlog");
        pipeline.abandon(ABANDON_GRACE);
    }
    let s = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    // Apache starts the collector for every `apachectl configtest`, and ends it (SIGTERM,
    // the pipe closed) before any line: that says nothing on the admin's terminal, only
    // in the log.
    let target = if s(&stats.read) == 0 {
        crate::logging::LOG_ONLY
    } else {
        module_path!()
    };
    log::info!(
        target: target,
        "exiting: {} lines read, {} queued, {} in the backlog, {} spooled while busy, {} size/md5 mismatches, at most {} KiB of lines held in memory",
        s(&stats.read),
        s(&stats.queued),
        s(&stats.backlogged),
        s(&stats.spilled),
        s(&stats.integrity_mismatches),
        s(&stats.held_peak) / 1024
    );
    Ok(stats)
}

/// The worker over the queue, or an error naming the queue (both ways of running).
fn open_worker(
    settings: CollectorSettings,
    reopen_index: Arc<AtomicBool>,
    stats: Arc<Stats>,
) -> std::io::Result<Worker> {
    let queue_dir = settings.queue_dir.clone();
    let state_dir = settings.state_dir.clone();
    Worker::new(settings, reopen_index, stats).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot open the queue {} or the state dir {}: {e}",
                queue_dir.display(),
                state_dir.display()
            ),
        )
    })
}

/// Follows `index` as it grows, across rotation, until a [`Control::Stop`]; saves where
/// it stopped. Errors reading it are retried every second.
pub fn follow(
    settings: CollectorSettings,
    index: &Path,
    start: StartAt,
    control: &Receiver<Control>,
) -> std::io::Result<super::follow::FollowStats> {
    let queue_dir = settings.queue_dir.clone();
    log::info!(
        "following {}: storage dir {}, queue {}, {:?}, md5 {}",
        index.display(),
        settings.storage_dir.display(),
        queue_dir.display(),
        settings.link_mode,
        if settings.verify_md5 { "on" } else { "off" }
    );
    let stats = Arc::new(Stats::default());
    let mut worker = open_worker(settings, Arc::new(AtomicBool::new(false)), stats)?;
    let state = worker.state().clone();
    let mut follower = Follower::open(index, &state, start)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", index.display())))?;
    let stopped = AtomicBool::new(false);
    let stopping = || {
        if control.try_iter().any(|c| c == Control::Stop) {
            stopped.store(true, Ordering::SeqCst);
        }
        stopped.load(Ordering::SeqCst)
    };
    while !stopping() {
        let wait = match follower.poll(&mut worker, &stopping) {
            Ok(0) => FOLLOW_POLL,
            Ok(_) => Duration::ZERO,
            Err(e) => {
                log::error!("{}: {e}; trying again in 1 s", index.display());
                Duration::from_secs(1)
            }
        };
        if !wait.is_zero() {
            // Woken early by a Stop; with no one left to send one, just wait.
            match control.recv_timeout(wait) {
                Ok(Control::Stop) => stopped.store(true, Ordering::SeqCst),
                Ok(Control::Reload) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
        }
    }
    if let Err(e) = follower.save() {
        log::error!("{}: {e}", follower.state_path().display());
    }
    let s = &follower.stats;
    log::info!(
        "stopped: {} lines read, {} queued, {} in the backlog, {} read again after a restart and not queued twice, {} rotations, {} truncations",
        s.lines,
        s.queued,
        s.backlogged,
        s.repeats_skipped,
        s.rotations,
        s.truncations
    );
    Ok(follower.stats.clone())
}

#[cfg(test)]
mod tests;
