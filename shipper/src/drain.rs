//! `modsec-shipper drain`: ship the queue once, then exit (the cron job).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use modsec2sguil::queue::last_run::{LastRun, RunResult};
use modsec2sguil::ship::lock::QueueLock;
use modsec2sguil::ship::{Bounds, ShipError, Shipper, Stats};

use crate::exit;
use crate::setup::{connect, drop_privileges, start};
use crate::Common;

pub fn run(common: &Common, wait: bool, max_events: Option<u64>, max_seconds: Option<u64>) -> u8 {
    let started = Instant::now();
    let (_config, settings) = match start(common) {
        Ok(v) => v,
        Err(code) => return code,
    };
    if let Err(e) = drop_privileges(settings.runas) {
        log::error!("{e}");
        return exit::CONFIG;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            log::warn!("cannot handle signal {sig}: {e}");
        }
    }
    let queue_dir = &settings.queue_dir;
    if !queue_dir.is_dir() {
        log::error!(
            "{}: the queue (EVENT_DIR) does not exist or is not a directory",
            queue_dir.display()
        );
        return exit::CONFIG;
    }
    let _lock = match QueueLock::acquire(queue_dir, wait) {
        Ok(Some(l)) => l,
        Ok(None) => {
            log::info!(
                "{}: another shipper holds the queue lock; leaving the queue to it",
                queue_dir.display()
            );
            return exit::OK;
        }
        Err(e) => {
            log::error!("{}: cannot take the queue lock: {e}", queue_dir.display());
            return exit::IO;
        }
    };
    let mut shipper = match Shipper::open(queue_dir, settings.ship.clone()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return exit::IO;
        }
    };
    let queued = match shipper.remaining() {
        Ok(n) => n,
        Err(e) => {
            log::error!("{e}");
            return exit::IO;
        }
    };
    if queued == 0 && shipper.unresolved() == 0 {
        log::info!("drain: the queue is empty");
        // Recorded too: `status` shows the cron job is alive.
        record_run(
            queue_dir,
            "drain",
            started,
            &shipper.stats,
            (RunResult::Ok, None, 0),
        );
        return exit::OK;
    }
    let mut sink = match connect(&settings) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}; the queue is untouched ({queued} entries)");
            let error = Some(e.to_string());
            let end = (RunResult::Unreachable, error, queued);
            record_run(queue_dir, "drain", started, &shipper.stats, end);
            return exit::UNREACHABLE;
        }
    };
    let bounds = Bounds {
        max_events,
        deadline: max_seconds.map(|s| started + Duration::from_secs(s)),
    };
    let result = shipper.ship(sink.as_mut(), bounds, &stop);
    let remaining = shipper.remaining().unwrap_or(0);
    summary(&shipper.stats, remaining, started.elapsed());
    let (code, end) = match result {
        Ok(_) if shipper.stats.undeletable > 0 => {
            let why = format!(
                "{} delivered entries could not be removed",
                shipper.stats.undeletable
            );
            (exit::IO, (RunResult::IoError, Some(why)))
        }
        Ok(_) => (exit::OK, (RunResult::Ok, None)),
        Err(e @ (ShipError::Session(_) | ShipError::CidCollision { .. })) => {
            log::error!("drain: {e}; {remaining} entries stay queued");
            (exit::OUTAGE, (RunResult::Outage, Some(e.to_string())))
        }
        Err(e @ ShipError::Io { .. }) => {
            log::error!("drain: {e}");
            (exit::IO, (RunResult::IoError, Some(e.to_string())))
        }
    };
    let end = (end.0, end.1, remaining);
    record_run(queue_dir, "drain", started, &shipper.stats, end);
    code
}

/// Writes the last-run record `status` reports (a failure to write it is only logged:
/// it must not change the run's outcome).
pub fn record_run(
    queue_dir: &std::path::Path,
    program: &str,
    started: Instant,
    s: &Stats,
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
        remaining: remaining as u64,
    };
    if let Err(e) = record.write(queue_dir) {
        log::warn!(
            "{}: cannot write the last-run record: {e}",
            queue_dir
                .join(modsec2sguil::queue::layout::LAST_RUN_FILE)
                .display()
        );
    }
}

/// The one summary line.
pub fn summary(s: &Stats, remaining: usize, elapsed: Duration) {
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
    log::info!(
        "drain: shipped {}{extra}, skipped {} non-alerts, quarantined {}, remaining {remaining}, {secs:.2} s, {rate:.0} events/s",
        s.shipped,
        s.skipped,
        s.quarantined,
    );
}
