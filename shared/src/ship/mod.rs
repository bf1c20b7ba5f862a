//! Delivery: from queue entries to events stored in Sguil, each exactly once
//! (ARCHITECTURE.md, "Exactly once into Sguil").
//!
//! A [`Shipper`] owns the queue (under its lock) and the journal. Each window of
//! entries is read, decided, mapped, journaled (one fsync), sent, and each entry is
//! removed only when its event is answered: `ConfirmEvent`, or `Duplicate entry` for a
//! resend. What is left unanswered (a crash, a lost connection, a timeout) stays in the
//! journal and goes first, under the same sid, cid and time, the next time a session
//! starts. An entry that cannot be read or is refused by sguild goes to `failed/`.
//!
//! Where the events go is a [`Sink`]: sguild ([`crate::sguil::client::AgentSession`])
//! or JSON lines on stdout.

pub mod load;
pub mod run;
pub mod settings;
pub mod sink;

mod dispose;
mod journaling;
mod open;
mod pass;
mod read_ahead;
#[cfg(test)]
mod tests;
mod thresholds;
mod window;

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use thiserror::Error;

use crate::alert::AlertSettings;
use crate::queue::delivered::DeliveredLog;
use crate::queue::journal::{Journal, JournalRecord};
use crate::queue::Queue;
use crate::sguil::client::SessionError;
use crate::sguil::wire::SguilEvent;
use journaling::Unanswered;
use load::LoadOptions;
pub use sink::Sink;

/// What shipping needs besides the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySettings {
    pub alert: AlertSettings,
    pub load: LoadOptions,
    /// SYMLINK_REMOVE_ORIG: remove a symlinked entry's target once delivered.
    pub remove_orig: bool,
    /// SEND_WINDOW: events in flight at most (journaled in batches of at least 32).
    pub window: usize,
    /// THRESHOLD_FILE's rules, if one is set.
    pub thresholds: Option<std::sync::Arc<crate::threshold::Rules>>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipStats {
    /// Stored by sguild (confirmed, or a resend answered as a duplicate).
    pub shipped: u64,
    /// Of those, resends found already stored.
    pub already_stored: u64,
    /// Not alerts (and HANDLE_ALL_EVENTS off): removed without sending.
    pub skipped: u64,
    pub quarantined: u64,
    /// Shipped with empty addresses because they were IPv6 (the detail has them).
    pub ipv6: u64,
    /// Delivered, but the entry could not be removed; it stays journaled.
    pub undeletable: u64,
    /// From the collector's link (the entry's name) to sguild's answer, per event
    /// stored.
    pub latency: crate::queue::latency::Histogram,
    /// Held back by a threshold: kept in held/, recorded as suppressed.
    pub held: u64,
    /// Threshold summaries stored (counted in `shipped` too).
    pub summaries: u64,
}

impl ShipStats {
    /// Entries handled (shipped, skipped, quarantined or held back).
    pub fn handled(&self) -> u64 {
        self.shipped + self.skipped + self.quarantined + self.held
    }
}

/// Why shipping stopped before the queue was done.
#[derive(Debug, Error)]
pub enum ShipError {
    /// The session broke; whatever was answered is done, the rest stays journaled.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// sguild said a *first* send was a duplicate: another agent stores events under the
    /// same sid (two sensors with one HOSTNAME?). The entry stays; a new session gets a
    /// fresh maxCid.
    #[error("{server}: cid {cid} of sid {sid} was already taken by someone else: does another agent register as hostname `{hostname}`?")]
    CidCollision {
        server: String,
        sid: u32,
        cid: u32,
        hostname: String,
    },
    /// The queue or journal cannot be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ShipError + '_ {
    move |source| ShipError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Limits on one call of [`Shipper::ship`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Bounds {
    pub max_events: Option<u64>,
    pub deadline: Option<Instant>,
}

/// A mapped event ready to be sent, with what is needed to finish its entry.
struct Outgoing {
    event: SguilEvent,
    entry: String,
    unique_id: String,
    ino: u64,
    target: Option<PathBuf>,
    ipv6: bool,
}

/// The queue, its journal, and the next cid.
pub struct Shipper {
    queue: Queue,
    journal: Journal,
    /// What was delivered, by unique id (for `requeue` and for operators).
    delivered_log: DeliveredLog,
    settings: DeliverySettings,
    /// Journaled and not yet answered, oldest first.
    unanswered: Vec<Unanswered>,
    /// Submitted and not yet answered, oldest first.
    sent: std::collections::VecDeque<Outgoing>,
    /// A first send was answered `Duplicate entry`: stop after the window in flight.
    collision: Option<ShipError>,
    next_cid: u32,
    /// The thresholds' windows and summaries (`.thresholds`).
    tracker: crate::threshold::Tracker,
    /// Held-back records journaled whose entries are not yet in held/.
    held_journaled: Vec<JournalRecord>,
    /// Entries `requeue --suppressed` marked released (`.released/`), read once a pass
    /// (after the queue is listed: a release is marked before its entry is back).
    released: HashSet<String>,
    /// Whether `.integrity/` held any marker when the pass began (else held-back
    /// entries skip the removal of a marker they cannot have).
    integrity_any: bool,
    pub stats: ShipStats,
}

impl Shipper {
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Replaces the settings (SIGHUP).
    pub fn set_settings(&mut self, settings: DeliverySettings) {
        self.settings = settings;
    }

    /// Events journaled and not yet answered.
    pub fn unanswered(&self) -> usize {
        self.unanswered.len()
    }

    /// Whether the thresholds have something to send though the queue is empty: a
    /// summary waiting, or a window that held events back and that the clock has passed
    /// (its summary is due). A `drain` of an empty queue still sends those.
    pub fn summaries_due(&self, now: i64) -> bool {
        !self.tracker.summaries.is_empty()
            || self
                .tracker
                .windows
                .values()
                .any(|w| w.held > 0 && w.start.saturating_add(i64::from(w.seconds)) <= now)
    }

    /// Entries in the queue now.
    pub fn remaining(&self) -> Result<usize, ShipError> {
        Ok(self
            .queue
            .entries()
            .map_err(io_err(self.queue.dir()))?
            .len())
    }
}
