//! The shipper's two ways of running: [`drain`] (ship the queue once, the cron job) and
//! [`daemon`] (keep shipping: reconnect with capped, jittered backoff, keep the session
//! alive with PING, reload on request). Both take the binary's signals as a channel of
//! [`Control`]s, so tests drive them directly; the binary parses arguments, sets up
//! logging and privileges, and calls them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::settings::ShipperSettings;
use super::sink::connect;
use super::{Bounds, ShipError, ShipStats, Shipper, Sink};
use crate::control::Control;
use crate::exit::Exit;
use crate::queue::last_run::{LastRun, RunResult};
use crate::queue::latency::LatencyRecord;
use crate::queue::lock::QueueLock;
use crate::queue::watch::{Watch, Woken};
use crate::sguil::client::SessionError;

/// Whether the session is still in step after `e`, and can be ended politely
/// ([`super::sink::Sink::close`]): not after the connection broke, a reply timed out or
/// the answers went out of step.
fn in_step(e: &ShipError) -> bool {
    !matches!(
        e,
        ShipError::Session(
            SessionError::Conn(_) | SessionError::Timeout { .. } | SessionError::OutOfStep { .. }
        )
    )
}

/// What a [`ShipError`] means for the run and its record.
fn ended_by(e: &ShipError) -> (Exit, RunResult) {
    match e {
        ShipError::Io { .. } => (Exit::Failed, RunResult::IoError),
        ShipError::Session(_) | ShipError::CidCollision { .. } => (Exit::Outage, RunResult::Outage),
    }
}

/// The binary's [`Control`]s as flags a long call can look at ([`Shipper::ship`] checks
/// `stop` between windows). A thread moves them over until the channel closes.
struct ControlFlags {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl ControlFlags {
    fn watch(control: &Receiver<Control>) -> ControlFlags {
        let flags = ControlFlags {
            stop: Arc::new(AtomicBool::new(false)),
            reload: Arc::new(AtomicBool::new(false)),
        };
        let (stop, reload, control) = (flags.stop.clone(), flags.reload.clone(), control.clone());
        let watching = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for c in control.iter() {
                    match c {
                        Control::Stop => stop.store(true, Ordering::SeqCst),
                        Control::Reload => reload.store(true, Ordering::SeqCst),
                    }
                }
            });
        if let Err(e) = watching {
            log::error!("cannot watch for signals: {e}");
        }
        flags
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`, waking early when stopped. Returns false if stopped.
    fn sleep_unless_stopped(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stopped() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
        !self.stopped()
    }
}

fn queue_exists(queue_dir: &Path) -> bool {
    match crate::queue::not_a_queue(queue_dir) {
        Some(why) => {
            log::error!("{why}");
            false
        }
        None => true,
    }
}

/// `drain`'s bounds and lock behaviour.
#[derive(Debug, Clone, Default)]
pub struct DrainOptions {
    /// Wait for another shipper's lock instead of leaving the queue to it.
    pub wait: bool,
    pub max_events: Option<u64>,
    pub max_seconds: Option<u64>,
}

/// Ships what the queue holds, then returns. Every end is recorded for `status`.
pub fn drain(settings: &ShipperSettings, o: &DrainOptions, control: &Receiver<Control>) -> Exit {
    let started = Instant::now();
    let flags = ControlFlags::watch(control);
    let queue_dir = &settings.queue_dir;
    if !queue_exists(queue_dir) {
        return Exit::Config;
    }
    let _lock = match lock_queue(queue_dir, &flags, o.wait) {
        Ok(l) => l,
        Err(end) => return end,
    };
    let mut shipper = match Shipper::open(queue_dir, settings.ship.clone()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return Exit::Failed;
        }
    };
    let queued = match shipper.remaining() {
        Ok(n) => n,
        Err(e) => {
            log::error!("{e}");
            return Exit::Failed;
        }
    };
    let record = |shipper: &Shipper, result, error, remaining| {
        record_run(
            queue_dir,
            "drain",
            started,
            &shipper.stats,
            (result, error, remaining),
        )
    };
    if queued == 0
        && shipper.unanswered() == 0
        && !shipper.summaries_due(chrono::Utc::now().timestamp())
    {
        log::info!("drain: the queue is empty");
        // Recorded too: `status` shows the cron job is alive.
        record(&shipper, RunResult::Ok, None, 0);
        return Exit::Ok;
    }
    let mut sink = match connect(settings) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}; the queue is untouched ({queued} entries)");
            record(&shipper, RunResult::Unreachable, Some(e), queued);
            return Exit::Unreachable;
        }
    };
    let bounds = Bounds {
        max_events: o.max_events,
        deadline: o.max_seconds.map(|s| started + Duration::from_secs(s)),
    };
    let result = shipper.ship(sink.as_mut(), bounds, &flags.stop);
    if result.as_ref().map_or_else(in_step, |_| true) {
        sink.close();
    }
    let remaining = shipper.remaining().unwrap_or(0);
    summary("drain", &shipper.stats, remaining, started.elapsed());
    let (end, result, error) = match result {
        Ok(_) if shipper.stats.undeletable > 0 => {
            let why = format!(
                "{} delivered entries could not be removed",
                shipper.stats.undeletable
            );
            (Exit::Failed, RunResult::IoError, Some(why))
        }
        Ok(_) => (Exit::Ok, RunResult::Ok, None),
        Err(e) => {
            let (end, result) = ended_by(&e);
            match end {
                Exit::Outage => log::error!("drain: {e}; {remaining} entries stay queued"),
                _ => log::error!("drain: {e}"),
            }
            (end, result, Some(e.to_string()))
        }
    };
    record(&shipper, result, error, remaining);
    end
}

/// First wait after a failure; doubled per failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// sguild needs its operator after an outage; retrying more often than this only
/// fills the log.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often a lock held by another shipper is tried again.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Pause between rounds while entries keep arriving, when the queue is not watched
/// (watched, the next round starts as soon as an entry is linked).
const BUSY_POLL: Duration = Duration::from_millis(250);
/// How often the last-run record is rewritten while all is well.
const RECORD_EVERY: Duration = Duration::from_secs(5);

/// A delay between `d/2` and `d` ("equal jitter"), so many agents restarted together
/// do not reconnect in step.
fn jittered(d: Duration) -> Duration {
    // Each RandomState is freshly keyed: hashing nothing gives a random number.
    let frac = (RandomState::new().build_hasher().finish() % 1000) as f64 / 1000.0;
    d.mul_f64(0.5 + frac / 2.0)
}

/// The daemon's capped exponential backoff.
struct Backoff(Duration);

impl Backoff {
    /// The next wait (jittered), doubling the one after it.
    fn next(&mut self) -> Duration {
        let wait = jittered(self.0);
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        wait
    }

    fn reset(&mut self) {
        self.0 = MIN_BACKOFF;
    }
}

/// Ships entries as they arrive until a [`Control::Stop`]. A [`Control::Reload`] calls
/// `reload` for new settings (a config that does not load keeps the running one; a new
/// output reconnects; EVENT_DIR stays: switching queues needs a restart).
pub fn daemon(
    mut settings: ShipperSettings,
    control: &Receiver<Control>,
    mut reload: impl FnMut() -> Result<ShipperSettings, String>,
) -> Exit {
    let started = Instant::now();
    let flags = ControlFlags::watch(control);
    let queue_dir = settings.queue_dir.clone();
    if !queue_exists(&queue_dir) {
        return Exit::Config;
    }
    let _lock = match lock_queue(&queue_dir, &flags, true) {
        Ok(l) => l,
        Err(end) => return end,
    };
    // Set before the queue is first listed: an entry linked from then on rings it, so
    // none waits for the poll.
    let mut watch = start_watch(&queue_dir, settings.poll);
    let mut backoff = Backoff(MIN_BACKOFF);
    let mut shipper = match open_retrying(&queue_dir, &settings, &flags, &mut backoff) {
        Ok(s) => s,
        Err(end) => return end,
    };
    log::info!("run: shipping {} as it fills", queue_dir.display());
    backoff.reset();
    let mut recorder = Recorder {
        queue_dir: &queue_dir,
        started,
        since: chrono::Utc::now().timestamp(),
        recorded: None,
    };
    'connect: while !flags.stopped() {
        let mut sink = match connect(&settings) {
            Ok(s) => s,
            Err(e) => {
                let wait = backoff.next();
                log::error!("{e}; retrying in {:.1} s", wait.as_secs_f64());
                recorder.record(&shipper, RunResult::Unreachable, Some(e), true);
                flags.sleep_unless_stopped(wait);
                continue;
            }
        };
        let mut last_traffic = Instant::now();
        loop {
            if flags.stopped() {
                sink.close();
                break 'connect;
            }
            if flags.reload.swap(false, Ordering::SeqCst)
                && reload_into(&mut settings, &mut shipper, &mut reload)
            {
                sink.close();
                continue 'connect;
            }
            let before = shipper.stats.handled();
            match shipper.ship(sink.as_mut(), Bounds::default(), &flags.stop) {
                Ok(_) if shipper.stats.handled() > before => {
                    recorder.record(&shipper, RunResult::Ok, None, false);
                    last_traffic = Instant::now();
                    backoff.reset();
                    let ping_due = settings.output.ping_delay().map(|p| last_traffic + p);
                    wait_for_entries(&mut watch, &flags, &settings, true, ping_due);
                }
                Ok(_) => {
                    recorder.record(&shipper, RunResult::Ok, None, false);
                    if !keep_alive(sink.as_mut(), &settings, &mut last_traffic) {
                        continue 'connect;
                    }
                    let ping_due = settings.output.ping_delay().map(|p| last_traffic + p);
                    wait_for_entries(&mut watch, &flags, &settings, false, ping_due);
                }
                Err(e) => {
                    let wait = backoff.next();
                    let (_, result) = ended_by(&e);
                    recorder.record(&shipper, result, Some(e.to_string()), true);
                    log::error!(
                        "{e}; {} event(s) wait for an answer, {} entries queued; reconnecting in {:.1} s",
                        shipper.unanswered(),
                        shipper.remaining().unwrap_or(0),
                        wait.as_secs_f64()
                    );
                    drop(sink);
                    flags.sleep_unless_stopped(wait);
                    continue 'connect;
                }
            }
        }
    }
    recorder.record(&shipper, RunResult::Ok, None, true);
    summary(
        "run",
        &shipper.stats,
        shipper.remaining().unwrap_or(0),
        started.elapsed(),
    );
    log::info!("run: stopped");
    Exit::Ok
}

/// The daemon's last-run record: rewritten at most every RECORD_EVERY while all is
/// well, at once when something goes wrong, and at the end.
struct Recorder<'a> {
    queue_dir: &'a Path,
    started: Instant,
    /// When the daemon started, for the latency record.
    since: i64,
    recorded: Option<Instant>,
}

impl Recorder<'_> {
    /// Records the run so far, if `now` or RECORD_EVERY has passed since last time.
    fn record(&mut self, shipper: &Shipper, result: RunResult, error: Option<String>, now: bool) {
        if now || self.recorded.map_or(true, |t| t.elapsed() >= RECORD_EVERY) {
            let remaining = shipper.remaining().unwrap_or(0);
            let end = (result, error, remaining);
            record_run(self.queue_dir, "run", self.started, &shipper.stats, end);
            record_latency(self.queue_dir, self.since, &shipper.stats);
            self.recorded = Some(Instant::now());
        }
    }
}

/// Sends the keep-alive PING when the session has been quiet for PING_DELAY (a path
/// that has one); false when it failed (the caller reconnects).
fn keep_alive(sink: &mut dyn Sink, settings: &ShipperSettings, last_traffic: &mut Instant) -> bool {
    if let Some(ping) = settings.output.ping_delay() {
        if last_traffic.elapsed() >= ping {
            if let Err(e) = sink.ping() {
                log::warn!("{}: keep-alive PING failed: {e}; reconnecting", sink.name());
                return false;
            }
            *last_traffic = Instant::now();
        }
    }
    true
}

/// The watch on the queue ([`Watch`]), said in the log either way.
fn start_watch(queue_dir: &Path, poll: Duration) -> Watch {
    match Watch::start_or_why(queue_dir) {
        Ok(w) => {
            log::info!(
                "run: new entries in {} wake the shipper (inotify); it also lists the queue every {} s (POLL_INTERVAL)",
                queue_dir.display(),
                poll.as_secs()
            );
            w
        }
        Err((w, e)) => {
            log::warn!(
                "{}: cannot watch for new entries ({e}); they are found by listing the queue every {} s (POLL_INTERVAL)",
                queue_dir.display(),
                poll.as_secs()
            );
            w
        }
    }
}

/// Waits for the next round: until an entry is linked (at once if one was during the
/// round just done), the poll is due (POLL_INTERVAL; after a busy round [`BUSY_POLL`]
/// when the queue is not watched), a PING is due (`ping_due`), or a Stop. A lost watch
/// is set again once (the directory may have been replaced); failing that, the poll
/// finds the entries.
fn wait_for_entries(
    watch: &mut Watch,
    flags: &ControlFlags,
    settings: &ShipperSettings,
    busy: bool,
    ping_due: Option<Instant>,
) {
    let poll = if busy && !watch.watching() {
        settings.poll.min(BUSY_POLL)
    } else {
        settings.poll
    };
    let mut until = Instant::now() + poll;
    if let Some(due) = ping_due {
        until = until.min(due);
    }
    match watch.wait(until, &|| flags.stopped()) {
        Woken::Overflowed => log::debug!(
            "{}: more entries arrived than inotify could tell; listing them all",
            settings.queue_dir.display()
        ),
        Woken::Lost => *watch = start_watch(&settings.queue_dir, settings.poll),
        Woken::Arrived | Woken::TimedOut | Woken::Stopped => {}
    }
}

/// The queue lock. Held by another shipper, the queue is left to it, or with `wait` the
/// lock is waited for (polled, so a Stop still ends the wait). Err is how the run ends
/// instead: Ok (left, or stopped while waiting) or Io (said in the log).
fn lock_queue(queue_dir: &Path, flags: &ControlFlags, wait: bool) -> Result<QueueLock, Exit> {
    let mut told = false;
    loop {
        match QueueLock::acquire(queue_dir) {
            Ok(Some(l)) => return Ok(l),
            Ok(None) if !wait => {
                log::info!(
                    "{}: another shipper holds the queue lock; leaving the queue to it",
                    queue_dir.display()
                );
                return Err(Exit::Ok);
            }
            Ok(None) => {
                if !told {
                    log::info!(
                        "{}: another shipper holds the queue lock; waiting for it",
                        queue_dir.display()
                    );
                    told = true;
                }
                if !flags.sleep_unless_stopped(IDLE_POLL) {
                    return Err(Exit::Ok);
                }
            }
            Err(e) => {
                log::error!(
                    "{}: cannot take the queue lock: {e}{}",
                    queue_dir.display(),
                    not_the_owner(queue_dir, &e)
                );
                return Err(Exit::Failed);
            }
        }
    }
}

/// Why the queue refused us, when it is not ours: whose it is, who we are, and the fix.
fn not_the_owner(queue_dir: &Path, e: &std::io::Error) -> String {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    match std::fs::metadata(queue_dir) {
        Ok(m) if e.kind() == std::io::ErrorKind::PermissionDenied && m.uid() != me => format!(
            " (the queue belongs to uid {}, and this shipper runs as uid {me}: set RUNAS to \
             the queue's owner, or give the queue to RUNAS with `chown RUNAS: {}`)",
            m.uid(),
            queue_dir.display()
        ),
        _ => String::new(),
    }
}

/// Opens the queue and its journal, retrying with backoff: they may be unreadable for
/// a while (a full disk), and a daemon waits for them rather than exiting. Stopped
/// meanwhile, the run ends as Io (the queue never opened).
fn open_retrying(
    queue_dir: &Path,
    settings: &ShipperSettings,
    flags: &ControlFlags,
    backoff: &mut Backoff,
) -> Result<Shipper, Exit> {
    loop {
        match Shipper::open(queue_dir, settings.ship.clone()) {
            Ok(s) => return Ok(s),
            Err(e) => {
                let wait = backoff.next();
                log::error!("{e}; retrying in {:.1} s", wait.as_secs_f64());
                if !flags.sleep_unless_stopped(wait) {
                    return Err(Exit::Failed);
                }
            }
        }
    }
}

/// Applies reloaded settings; true when the session must be rebuilt.
fn reload_into(
    settings: &mut ShipperSettings,
    shipper: &mut Shipper,
    reload: &mut impl FnMut() -> Result<ShipperSettings, String>,
) -> bool {
    match reload() {
        Ok(mut new) => {
            if new.queue_dir != settings.queue_dir {
                log::warn!(
                    "SIGHUP: EVENT_DIR changed to {}; restart the shipper to switch queues",
                    new.queue_dir.display()
                );
                new.queue_dir = settings.queue_dir.clone();
            }
            let reconnect = new.output != settings.output;
            shipper.set_settings(new.ship.clone());
            *settings = new;
            log::info!(
                "SIGHUP: configuration reloaded{}",
                if reconnect { "; reconnecting" } else { "" }
            );
            reconnect
        }
        Err(e) => {
            log::error!("SIGHUP: {e}; keeping the running configuration");
            false
        }
    }
}

/// Writes the last-run record `status` reports (a failure to write it is only logged:
/// it must not change the run's outcome).
pub fn record_run(
    queue_dir: &Path,
    program: &str,
    started: Instant,
    s: &ShipStats,
    (result, error, remaining): (RunResult, Option<String>, usize),
) {
    let record = LastRun {
        program: program.to_string(),
        pid: std::process::id(),
        finished: chrono::Utc::now().timestamp(),
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        result,
        error,
        shipped: s.shipped,
        already_stored: s.already_stored,
        skipped: s.skipped,
        quarantined: s.quarantined,
        held: s.held,
        remaining: remaining as u64,
    };
    if let Err(e) = record.write(queue_dir) {
        log::warn!(
            "{}: cannot write the last-run record: {e}",
            crate::queue::last_run::path(queue_dir).display()
        );
    }
}

/// Writes the daemon's latency histogram (since it started at `since`, unix seconds)
/// for `status --prometheus`; a failure is only logged.
fn record_latency(queue_dir: &Path, since: i64, s: &ShipStats) {
    let record = LatencyRecord {
        pid: std::process::id(),
        since,
        histogram: s.latency.clone(),
    };
    if let Err(e) = record.write(queue_dir) {
        log::warn!(
            "{}: cannot write the latency record: {e}",
            crate::queue::latency::path(queue_dir).display()
        );
    }
}

/// The one summary line, for `program` (`drain` or `run`).
pub fn summary(program: &str, s: &ShipStats, remaining: usize, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        s.handled() as f64 / secs
    } else {
        0.0
    };
    let mut extra = String::new();
    if s.already_stored > 0 {
        extra.push_str(&format!(
            ", {} of them found already stored",
            s.already_stored
        ));
    }
    if s.ipv6 > 0 {
        extra.push_str(&format!(
            ", {} with IPv6 addresses (sent empty, named in the detail)",
            s.ipv6
        ));
    }
    if s.undeletable > 0 {
        extra.push_str(&format!(", {} delivered but not removable", s.undeletable));
    }
    if s.held > 0 || s.summaries > 0 {
        extra.push_str(&format!(
            ", held back {} by thresholds (in held/), {} threshold summaries",
            s.held, s.summaries
        ));
    }
    log::info!(
        "{program}: shipped {}{extra}, skipped {} non-alerts, quarantined {}, remaining {remaining}, {secs:.2} s, {rate:.0} events/s",
        s.shipped,
        s.skipped,
        s.quarantined,
    );
}

#[cfg(test)]
mod tests;
