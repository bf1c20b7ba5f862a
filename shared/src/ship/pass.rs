//! One pass over the queue: what the journal holds unanswered first, then every entry,
//! a batch at a time (read ahead, decided, journaled, sent), within the [`Bounds`].

use std::collections::HashSet;
use std::iter::Peekable;
use std::time::Instant;

use super::journaling::{batch_size, HELD_BATCH};
use super::load::LoadError;
use super::read_ahead::{read_ahead, Loaded, MappedEntry};
use super::thresholds::HeldBack;
use super::{io_err, Bounds, Outgoing, ShipError, Shipper, Sink};
use crate::alert::Decision;
use crate::queue::QueueEntry;
use crate::sguil::wire::SguilEvent;

/// What one pass may do: its [`Bounds`], the count of entries handled when it
/// started, and the events journaled with one fsync.
pub(super) struct PassLimits {
    bounds: Bounds,
    start: u64,
    batch: usize,
}

/// A batch taken: the events to send, and the entries held back (none on record yet).
type Batch = (Vec<Outgoing>, Vec<(HeldBack, bool)>);

/// What [`Shipper::decide`] made of an entry.
pub(super) enum Taken {
    Send(Outgoing),
    Held(HeldBack),
}

impl Shipper {
    /// Ships what is in the queue: first what the journal holds unanswered, then every
    /// entry present, oldest first, a window at a time, until the queue as listed at the
    /// start is done, `bounds` are reached or `stop` is set. Limits are checked before
    /// each write to the server, and what is in flight is answered before returning;
    /// events journaled but not yet written stay journaled and go first next time.
    /// Returns whether entries were left for later.
    pub fn ship(
        &mut self,
        sink: &mut dyn Sink,
        bounds: Bounds,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<bool, ShipError> {
        use std::sync::atomic::Ordering;
        // Events still in flight belong to a session that broke (a journal write failed
        // after they were sent): their answers will never come on this one.
        if !self.sent.is_empty() {
            self.session_broke();
        }
        self.next_cid = self.next_cid.max(sink.max_cid().saturating_add(1));
        let start = self.stats.handled();
        let limit_reached = |s: &Shipper| {
            bounds
                .max_events
                .is_some_and(|m| s.stats.handled() - start + s.sent.len() as u64 >= m)
                || bounds.deadline.is_some_and(|d| Instant::now() >= d)
                || stop.load(Ordering::Relaxed)
        };
        self.resend_unresolved(sink)?;
        let todo = self.pass_entries()?;
        let batch = batch_size(self.settings.window);
        let settings = self.settings.clone();
        let dir = self.queue.dir().to_path_buf();
        // Reading and parsing run in LOADERS threads, a few batches ahead: the main
        // thread only journals, sends, and removes.
        let left_over = std::thread::scope(|scope| -> Result<bool, ShipError> {
            let pending = read_ahead(scope, &todo, batch, &dir, &settings);
            let run = PassLimits {
                bounds,
                start,
                batch,
            };
            self.ship_batches(sink, pending.peekable(), run, &limit_reached)
        })?;
        self.end_pass(sink)?;
        Ok(left_over)
    }

    /// The entries this pass ships: those listed now that the journal does not hold
    /// (it holds the unanswered, resent first, and held-back ones not yet moved). The
    /// release markers and whether `.integrity/` holds any are read again here.
    fn pass_entries(&mut self) -> Result<Vec<QueueEntry>, ShipError> {
        let dir = self.queue.dir().to_path_buf();
        let entries = self.queue.entries().map_err(io_err(&dir))?;
        self.released = crate::queue::held::released(&dir);
        self.integrity_any = self.queue.any_integrity();
        let journaled: HashSet<String> = self
            .unanswered
            .iter()
            .map(|f| f.record.entry.clone())
            .chain(self.held_journaled.iter().map(|r| r.entry.clone()))
            .collect();
        Ok(entries
            .into_iter()
            .filter(|e| !journaled.contains(&e.file_name))
            .collect())
    }

    /// Ships the entries `pending` yields, a batch at a time: batch k is sent while
    /// batch k+1 is journaled, so the journal's fsync overlaps the wait for sguild's
    /// answers; nothing is sent before its record is durable. Returns whether entries
    /// were left for later (a limit, or a cid collision).
    fn ship_batches(
        &mut self,
        sink: &mut dyn Sink,
        mut pending: Peekable<impl Iterator<Item = Loaded>>,
        run: PassLimits,
        limit_reached: &dyn Fn(&Shipper) -> bool,
    ) -> Result<bool, ShipError> {
        let journal_path = self.journal.path().to_path_buf();
        let mut current: Vec<Outgoing> = Vec::new();
        let mut expired_closed = false;
        loop {
            if limit_reached(self) || self.collision.is_some() {
                return Ok(true);
            }
            let (mut next, held_next) = self.take_batch(&mut pending, sink, &run, current.len())?;
            if pending.peek().is_none() && !expired_closed {
                // The queue is done: windows the clock has passed close now (their
                // summaries go in this batch).
                expired_closed = true;
                self.tracker.close_expired(chrono::Utc::now().timestamp());
            }
            self.save_thresholds()?;
            next.extend(self.new_summaries(sink));
            if next.is_empty() && current.is_empty() && held_next.is_empty() {
                if pending.peek().is_none() {
                    return Ok(false);
                }
                continue; // a limit was reached, or the batch held only non-alerts
            }
            let written = self.journal_batch(&next, &held_next)?;
            let sent = self.submit(sink, std::mem::take(&mut current), limit_reached);
            let durable = written.wait();
            sent?;
            durable.map_err(io_err(&journal_path))?;
            self.move_held(held_next, false)?;
            // No append is pending here: a journal grown past its in-run bound is
            // rewritten to what is not yet answered, so that it stays far below
            // MAX_JOURNAL_BYTES however long the run.
            if self.journal.wants_compaction_in_run() {
                let keep = self.journal_keep();
                self.journal.rewrite(&keep).map_err(io_err(&journal_path))?;
            }
            current = next;
        }
    }

    /// The next batch from `pending`: events to send (up to the batch size) and entries
    /// held back (up to HELD_BATCH), stopping early at `max_events`, counting the events
    /// in flight and the `ahead` about to be sent.
    fn take_batch(
        &mut self,
        pending: &mut impl Iterator<Item = Loaded>,
        sink: &dyn Sink,
        run: &PassLimits,
        ahead: usize,
    ) -> Result<Batch, ShipError> {
        let mut next = Vec::with_capacity(run.batch);
        let mut held_next: Vec<(HeldBack, bool)> = Vec::new();
        while next.len() < run.batch && held_next.len() < HELD_BATCH {
            let queued = self.sent.len() + ahead + next.len();
            let taken = self.stats.handled() - run.start + queued as u64;
            if run.bounds.max_events.is_some_and(|m| taken >= m) {
                break;
            }
            let Some((entry, ready)) = pending.next() else {
                break;
            };
            match self.decide(&entry, ready, sink)? {
                Some(Taken::Send(p)) => next.push(p),
                Some(Taken::Held(h)) => held_next.push((h, false)),
                None => {}
            }
        }
        Ok((next, held_next))
    }

    /// The end of a pass: what is in flight is answered, a cid collision is the pass's
    /// error, and an emptied journal that wants it is compacted.
    fn end_pass(&mut self, sink: &mut dyn Sink) -> Result<(), ShipError> {
        self.await_answers(sink, 0)?;
        if let Some(c) = self.collision.take() {
            return Err(c);
        }
        if self.unanswered.is_empty()
            && self.held_journaled.is_empty()
            && self.journal.wants_compaction()
        {
            let path = self.journal.path().to_path_buf();
            self.journal.rewrite(&[]).map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Acts on an entry the loader read: quarantines what could not be read, removes
    /// non-alerts, gives the rest a cid. `None` when there is nothing to send.
    pub(super) fn decide(
        &mut self,
        entry: &QueueEntry,
        ready: Result<MappedEntry, LoadError>,
        sink: &dyn Sink,
    ) -> Result<Option<Taken>, ShipError> {
        let ready = match ready {
            Ok(r) => r,
            Err(LoadError::Gone) => return Ok(None),
            Err(LoadError::Refused(why)) => {
                self.quarantine(&entry.file_name, &why)?;
                return Ok(None);
            }
        };
        if ready.mapped.decision == Decision::Skip {
            log::debug!(
                "{}: {} is not an alert; removed",
                entry.file_name,
                ready.unique_id
            );
            self.remove_entry(&entry.file_name, ready.target.as_deref());
            self.stats.skipped += 1;
            return Ok(None);
        }
        if let Some(rules) = self.settings.thresholds.clone() {
            let facts = crate::threshold::Facts {
                sig: ready.mapped.fields.sig_id,
                src: Some(ready.src),
                dst: Some(ready.dst),
                // Never later than now: an event dated in the future (its time is the
                // attacker's to write) would open a window that closes only then, and
                // hold every later alert of its key back with no summary.
                time: ready.time.min(chrono::Utc::now().timestamp()),
                unique_id: &ready.unique_id,
            };
            // `requeue --suppressed` put it back: shipped whatever the thresholds say.
            let verdict = if self.released.contains(&entry.file_name) {
                crate::threshold::Verdict::Pass
            } else {
                self.tracker.decide(&rules, &facts)
            };
            if let crate::threshold::Verdict::Hold(why) = verdict {
                return Ok(Some(Taken::Held(HeldBack {
                    entry: entry.file_name.clone(),
                    ino: ready.ino,
                    unique_id: ready.unique_id,
                    why,
                })));
            }
        }
        match self.new_event(ready.mapped.fields, sink) {
            Ok(event) => Ok(Some(Taken::Send(Outgoing {
                event,
                entry: entry.file_name.clone(),
                unique_id: ready.unique_id,
                ino: ready.ino,
                target: ready.target,
                ipv6: ready.mapped.ipv6,
            }))),
            Err(e) => {
                self.quarantine(&entry.file_name, &format!("cannot be sent to Sguil: {e}"))?;
                Ok(None)
            }
        }
    }

    /// A new event of this session: its sid and hostname, the next cid (taken only when
    /// the event is valid).
    pub(super) fn new_event(
        &mut self,
        mut fields: crate::sguil::wire::EventFields,
        sink: &dyn Sink,
    ) -> Result<SguilEvent, crate::sguil::wire::EventError> {
        fields.sid = sink.sid();
        fields.hostname = sink.hostname().to_string();
        fields.cid = self.next_cid;
        let event = SguilEvent::new(fields)?;
        self.next_cid = self.next_cid.saturating_add(1);
        Ok(event)
    }
}
