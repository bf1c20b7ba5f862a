//! `modsec-shipper run`: the daemon. Ships entries as they arrive, keeps the session
//! alive with PING, reconnects with capped exponential backoff and jitter.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use modsec2sguil::queue::last_run::RunResult;
use modsec2sguil::ship::lock::QueueLock;
use modsec2sguil::ship::settings::ShipperSettings;
use modsec2sguil::ship::{Bounds, ShipError, Shipper};

use crate::drain::{record_run, summary};
use crate::exit;
use crate::setup::{connect, drop_privileges, load_settings, start};
use crate::Common;

/// First wait after a failure; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// sguild needs its operator after an outage; retrying more often than this only
/// fills the log.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often an idle queue is looked at (modsec_agent.pl polled every second).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Pause between rounds while entries keep arriving.
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

/// Sleeps up to `d`, waking early when `stop` is set. Returns false if stopped.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
    !stop.load(Ordering::Relaxed)
}

pub fn run(common: &Common, foreground: bool) -> u8 {
    let started = Instant::now();
    let (_config, mut settings) = match start(common) {
        Ok(v) => v,
        Err(code) => return code,
    };
    if settings.daemon && !foreground {
        // Before any thread exists: fork keeps only the calling thread.
        if let Err(e) = nix::unistd::daemon(false, false) {
            log::error!("DAEMON 1: cannot detach: {e}");
            return exit::IO;
        }
    }
    if let Err(e) = drop_privileges(settings.runas) {
        log::error!("{e}");
        return exit::CONFIG;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            log::warn!("cannot handle signal {sig}: {e}");
        }
    }
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()) {
        log::warn!("cannot handle SIGHUP: {e}");
    }
    let queue_dir = settings.queue_dir.clone();
    if !queue_dir.is_dir() {
        log::error!(
            "{}: the queue (EVENT_DIR) does not exist or is not a directory",
            queue_dir.display()
        );
        return exit::CONFIG;
    }
    let mut waited = false;
    let _lock = loop {
        match QueueLock::acquire(&queue_dir, false) {
            Ok(Some(l)) => break l,
            Ok(None) => {
                if !waited {
                    log::info!(
                        "{}: another shipper holds the queue lock; waiting for it",
                        queue_dir.display()
                    );
                    waited = true;
                }
                if !nap(IDLE_POLL, &stop) {
                    return exit::OK;
                }
            }
            Err(e) => {
                log::error!("{}: cannot take the queue lock: {e}", queue_dir.display());
                return exit::IO;
            }
        }
    };
    // The queue and its journal may be unreadable for a while (a full disk): a daemon
    // waits for them rather than exiting.
    let mut backoff = MIN_BACKOFF;
    let mut shipper = loop {
        match Shipper::open(&queue_dir, settings.ship.clone()) {
            Ok(s) => break s,
            Err(e) => {
                let wait = jittered(backoff);
                log::error!("{e}; retrying in {:.1} s", wait.as_secs_f64());
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if !nap(wait, &stop) {
                    return exit::IO;
                }
            }
        }
    };
    log::info!("run: shipping {} as it fills", queue_dir.display());
    backoff = MIN_BACKOFF;
    // The last-run record: rewritten at most every RECORD_EVERY while all is well, at
    // once when something goes wrong, and at the end.
    let mut recorded: Option<Instant> = None;
    let mut record = |shipper: &Shipper, result: RunResult, error: Option<String>, now: bool| {
        if now || recorded.map_or(true, |t| t.elapsed() >= RECORD_EVERY) {
            let remaining = shipper.remaining().unwrap_or(0);
            record_run(
                &queue_dir,
                "run",
                started,
                &shipper.stats,
                (result, error, remaining),
            );
            recorded = Some(Instant::now());
        }
    };
    'connect: while !stop.load(Ordering::Relaxed) {
        let mut sink = match connect(&settings) {
            Ok(s) => s,
            Err(e) => {
                let wait = jittered(backoff);
                log::error!("{e}; retrying in {:.1} s", wait.as_secs_f64());
                record(&shipper, RunResult::Unreachable, Some(e.to_string()), true);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                nap(wait, &stop);
                continue;
            }
        };
        let mut last_traffic = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                break 'connect;
            }
            if hup.swap(false, Ordering::Relaxed) && reload(common, &mut settings, &mut shipper) {
                continue 'connect;
            }
            let before = shipper.stats.handled();
            match shipper.ship(sink.as_mut(), Bounds::default(), &stop) {
                Ok(_) if shipper.stats.handled() > before => {
                    record(&shipper, RunResult::Ok, None, false);
                    last_traffic = Instant::now();
                    backoff = MIN_BACKOFF;
                    nap(BUSY_POLL, &stop);
                }
                Ok(_) => {
                    record(&shipper, RunResult::Ok, None, false);
                    let ping_delay = settings.output.ping_delay();
                    if let Some(ping) = ping_delay {
                        if last_traffic.elapsed() >= ping {
                            if let Err(e) = sink.ping() {
                                log::warn!(
                                    "{}: keep-alive PING failed: {e}; reconnecting",
                                    sink.name()
                                );
                                continue 'connect;
                            }
                            last_traffic = Instant::now();
                        }
                    }
                    nap(IDLE_POLL, &stop);
                }
                Err(e) => {
                    let wait = jittered(backoff);
                    let result = match e {
                        ShipError::Io { .. } => RunResult::IoError,
                        _ => RunResult::Outage,
                    };
                    record(&shipper, result, Some(e.to_string()), true);
                    log::error!(
                        "{e}; {} event(s) wait for an answer, {} entries queued; reconnecting in {:.1} s",
                        shipper.unresolved(),
                        shipper.remaining().unwrap_or(0),
                        wait.as_secs_f64()
                    );
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    drop(sink);
                    nap(wait, &stop);
                    continue 'connect;
                }
            }
        }
    }
    record(&shipper, RunResult::Ok, None, true);
    summary(
        &shipper.stats,
        shipper.remaining().unwrap_or(0),
        started.elapsed(),
    );
    log::info!("run: stopped");
    exit::OK
}

/// SIGHUP: reads the config again. Returns true when the session must be rebuilt.
/// A config that does not load is logged and the running one kept.
fn reload(common: &Common, settings: &mut ShipperSettings, shipper: &mut Shipper) -> bool {
    match load_settings(common) {
        Ok((_, new)) => {
            if new.queue_dir != settings.queue_dir {
                log::warn!(
                    "SIGHUP: EVENT_DIR changed to {}; restart the shipper to switch queues",
                    new.queue_dir.display()
                );
            }
            let reconnect = new.output != settings.output;
            shipper.set_settings(new.ship.clone());
            let queue_dir = settings.queue_dir.clone();
            *settings = new;
            settings.queue_dir = queue_dir;
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
