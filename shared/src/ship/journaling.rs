//! The journal's side of shipping: batches of new events journaled with one fsync
//! before they are sent, the records still unanswered, and resending them first.

use chrono::{TimeZone, Utc};

use super::load::LoadError;
use super::read_ahead::load_and_map;
use super::thresholds::{summary_fields, HeldBack};
use super::{io_err, Outgoing, ShipError, Shipper, Sink};
use crate::queue::journal::JournalRecord;
use crate::sguil::wire::SguilEvent;

/// Held-back entries journaled with one fsync at most: a held-back event costs no round
/// trip, so their batches are much larger than a window of sends.
pub(super) const HELD_BATCH: usize = 4096;

/// Events journaled with one fsync, whatever the window: an fsync per event would cost
/// more than sguild's own work per event with a window of 1 (measured: 0.68 of a bare
/// client's rate). More journaled than sent only means more resends, answered as
/// duplicates, after a crash.
pub(super) const JOURNAL_BATCH: usize = 32;

pub(super) fn batch_size(window: usize) -> usize {
    window.max(JOURNAL_BATCH)
}

/// A journaled event still waiting for its answer.
#[derive(Debug, Clone)]
pub(super) struct Unanswered {
    pub(super) record: JournalRecord,
    /// Sent before in a way that may have reached sguild (an earlier run, or a session
    /// that broke): a duplicate then means "stored".
    pub(super) maybe_sent: bool,
}

impl Shipper {
    /// Starts journaling a batch of new events (one write, one fsync, on another thread);
    /// none of it may be sent before [`Pending::wait`](crate::queue::journal::Pending::wait) says it is durable.
    pub(super) fn journal_batch(
        &mut self,
        window: &[Outgoing],
        held: &[(HeldBack, bool)],
    ) -> Result<crate::queue::journal::Pending, ShipError> {
        let held: Vec<JournalRecord> = held
            .iter()
            .map(|(h, _)| JournalRecord {
                sid: 0,
                cid: 0,
                time: 0,
                ino: h.ino,
                hostname: String::new(),
                entry: h.entry.clone(),
                held: true,
            })
            .collect();
        let records: Vec<JournalRecord> = window
            .iter()
            .map(|p| {
                let f = p.event.fields();
                JournalRecord {
                    sid: f.sid,
                    cid: f.cid,
                    time: f.time.timestamp(),
                    ino: p.ino,
                    hostname: f.hostname.clone(),
                    entry: p.entry.clone(),
                    held: false,
                }
            })
            .collect();
        let path = self.journal.path().to_path_buf();
        let all: Vec<JournalRecord> = records.iter().chain(held.iter()).cloned().collect();
        let pending = self.journal.append_async(&all).map_err(io_err(&path))?;
        self.held_journaled.extend(held);
        self.unanswered
            .extend(records.into_iter().map(|record| Unanswered {
                record,
                maybe_sent: false,
            }));
        Ok(pending)
    }

    /// The journal's records not yet resolved: sends not answered, held-back entries not
    /// yet moved.
    pub(super) fn journal_keep(&self) -> Vec<JournalRecord> {
        self.unanswered
            .iter()
            .map(|f| f.record.clone())
            .chain(self.held_journaled.iter().cloned())
            .collect()
    }

    /// Resends what the journal holds unanswered, with its sid, cid, time and hostname.
    pub(super) fn resend_unresolved(&mut self, sink: &mut dyn Sink) -> Result<(), ShipError> {
        let todo: Vec<JournalRecord> = self.unanswered.iter().map(|f| f.record.clone()).collect();
        for chunk in todo.chunks(batch_size(self.settings.window)) {
            let mut window = Vec::new();
            for r in chunk {
                if let Some(s) = self.tracker.summary(&r.entry).cloned() {
                    let mut fields = summary_fields(&s, &self.settings.alert);
                    as_journaled(&mut fields, r);
                    match SguilEvent::new(fields) {
                        Ok(event) => window.push(Outgoing {
                            event,
                            entry: r.entry.clone(),
                            unique_id: r.entry.clone(),
                            ino: 0,
                            target: None,
                            ipv6: false,
                        }),
                        Err(e) => {
                            log::error!("{}: cannot be sent to Sguil: {e}; dropped", r.entry);
                            self.forget_unanswered(&r.entry);
                            self.tracker.summary_done(&r.entry);
                        }
                    }
                    continue;
                }
                let ready = if r.entry_present(self.queue.dir()) {
                    load_and_map(self.queue.dir(), &r.entry, &self.settings)
                } else {
                    Err(LoadError::Gone)
                };
                let ready = match ready {
                    Ok(l) => l,
                    Err(LoadError::Gone) => {
                        self.forget_unanswered(&r.entry);
                        continue;
                    }
                    Err(LoadError::Refused(why)) => {
                        self.forget_unanswered(&r.entry);
                        self.quarantine(&r.entry, &why)?;
                        continue;
                    }
                };
                // Sent before: the same sid, cid, time and hostname, whatever the
                // decision would be now.
                let mut fields = ready.mapped.fields;
                as_journaled(&mut fields, r);
                match SguilEvent::new(fields) {
                    Ok(event) => window.push(Outgoing {
                        event,
                        entry: r.entry.clone(),
                        unique_id: ready.unique_id,
                        ino: ready.ino,
                        target: ready.target,
                        ipv6: ready.mapped.ipv6,
                    }),
                    Err(e) => {
                        self.forget_unanswered(&r.entry);
                        self.quarantine(&r.entry, &format!("cannot be sent to Sguil: {e}"))?;
                    }
                }
            }
            if !window.is_empty() {
                self.submit(sink, window, &|_| false)?;
            }
        }
        self.await_answers(sink, 0)
    }

    pub(super) fn forget_unanswered(&mut self, entry: &str) {
        self.unanswered.retain(|f| f.record.entry != entry);
    }
}

/// An event sent before goes again as it was journaled: the same sid, cid, hostname and
/// time (which picks sguild's day table, so a copy stored is a duplicate).
pub(super) fn as_journaled(fields: &mut crate::sguil::wire::EventFields, r: &JournalRecord) {
    fields.sid = r.sid;
    fields.cid = r.cid;
    fields.hostname = r.hostname.clone();
    if let Some(t) = Utc.timestamp_opt(r.time, 0).single() {
        fields.time = t;
    }
}
