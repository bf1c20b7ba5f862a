//! Opening the queue for shipping: the journal read back, and what a crash left
//! (events sent without an answer, held-back entries not yet moved).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;

use super::journaling::Unanswered;
use super::thresholds::HeldBack;
use super::{io_err, DeliverySettings, ShipError, ShipStats, Shipper};
use crate::queue::delivered::DeliveredLog;
use crate::queue::journal::{Journal, JournalRecord};
use crate::queue::Queue;

impl Shipper {
    /// Opens the queue at `dir` (which must exist) and reads the journal. The caller
    /// holds the queue lock.
    pub fn open(dir: &Path, settings: DeliverySettings) -> Result<Shipper, ShipError> {
        let meta = fs::metadata(dir).map_err(io_err(dir))?;
        if !meta.is_dir() {
            return Err(ShipError::Io {
                path: dir.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
            });
        }
        let queue = Queue::open(dir).map_err(io_err(dir))?;
        let (journal, records) =
            Journal::open(dir).map_err(io_err(&crate::queue::journal::path(dir)))?;
        let next_cid = records.iter().map(|r| r.cid).max().unwrap_or(0);
        let tracker = crate::queue::threshold_state::load(dir).map_err(|source| ShipError::Io {
            path: crate::queue::threshold_state::path(dir),
            source,
        })?;
        let (held, records): (Vec<JournalRecord>, Vec<JournalRecord>) =
            records.into_iter().partition(|r| r.held);
        // A held-back record is done once its entry is in held/. Its entry back in the
        // queue with a release marker was put back by `requeue --suppressed` (the same
        // name and inode): that record is stale, never acted on again.
        let released = crate::queue::held::released(dir);
        let held_journaled: Vec<JournalRecord> = held
            .into_iter()
            .filter(|r| r.entry_present(dir) && !released.contains(&r.entry))
            .collect();
        let unanswered: Vec<Unanswered> = records
            .into_iter()
            .filter(|r| r.entry_present(dir) || tracker.summary(&r.entry).is_some())
            .map(|record| Unanswered {
                record,
                maybe_sent: true,
            })
            .collect();
        if !unanswered.is_empty() {
            log::info!(
                "{}: {} event(s) sent before without an answer; resending them first",
                journal.path().display(),
                unanswered.len()
            );
        }
        let mut shipper = Shipper {
            queue,
            journal,
            delivered_log: DeliveredLog::open(dir),
            settings,
            unanswered,
            sent: std::collections::VecDeque::new(),
            collision: None,
            next_cid: next_cid.saturating_add(1),
            tracker,
            held_journaled: Vec::new(),
            released,
            integrity_any: true,
            stats: ShipStats::default(),
        };
        if !held_journaled.is_empty() {
            // Decided before a crash: held back whatever the thresholds say now. Those
            // already on record as suppressed are not recorded twice.
            let on_record: HashSet<String> = crate::queue::delivered::read_delivered(dir)
                .map_err(io_err(dir))?
                .into_iter()
                .filter(|d| d.suppressed.is_some())
                .map(|d| d.entry)
                .collect();
            let mut todo = Vec::new();
            for r in held_journaled {
                let (unique_id, recorded) = if on_record.contains(&r.entry) {
                    (String::new(), true)
                } else {
                    let id = crate::queue::known::unique_id_of(
                        &dir.join(&r.entry),
                        &crate::auditlog::ParseLimits::default(),
                    )
                    .unwrap_or_default();
                    (id, false)
                };
                shipper.held_journaled.push(r.clone());
                todo.push((
                    HeldBack {
                        entry: r.entry,
                        ino: r.ino,
                        unique_id,
                        why: "held back by a threshold (finished after a restart)".into(),
                    },
                    recorded,
                ));
            }
            shipper.move_held(todo, true)?;
        }
        Ok(shipper)
    }
}
