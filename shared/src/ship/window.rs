//! The send window: batches written once there is room, sguild's answers read and acted
//! on, and what is in flight when a session breaks.

use super::{io_err, Outgoing, ShipError, Shipper, Sink};
use crate::queue::delivered::Delivered;
use crate::sguil::client::{Answer, SessionError};
use crate::sguil::wire::SguilEvent;

/// Events written with one write: half the window, so that the server works on one
/// half while the other is answered and replaced.
pub(super) fn chunk_size(window: usize) -> usize {
    window.div_ceil(2).max(1)
}

impl Shipper {
    /// Sends a journaled batch once there is room for it in the window, collecting
    /// earlier answers to make room: the server works on the events in flight while
    /// the next batch is read, mapped and journaled. Stops writing once `stop` says so;
    /// the events not written stay journaled (unanswered, never sent).
    pub(super) fn submit(
        &mut self,
        sink: &mut dyn Sink,
        batch: Vec<Outgoing>,
        stop: &dyn Fn(&Shipper) -> bool,
    ) -> Result<(), ShipError> {
        let window = self.settings.window.max(1);
        let mut rest = batch.into_iter().peekable();
        while rest.peek().is_some() {
            if stop(self) {
                return Ok(());
            }
            let chunk: Vec<Outgoing> = rest.by_ref().take(chunk_size(window)).collect();
            // Room is made by reading answers; the chunk goes out before they are acted
            // on, so that sguild works on it while the answered entries are recorded and
            // removed (with a window of 1, that disk work would otherwise add to every
            // round trip).
            let (answered, broke) = self.read_answers(sink, window.saturating_sub(chunk.len()));
            let sent = match broke {
                Some(e) => Err(e),
                None => {
                    let events: Vec<SguilEvent> = chunk.iter().map(|p| p.event.clone()).collect();
                    sink.submit(&events).map(|()| self.sent.extend(chunk))
                }
            };
            self.act_on_answers(answered, sent, sink)?;
        }
        Ok(())
    }

    /// Collects answers until at most `keep` events are in flight, acting on each.
    /// On an error, everything still in flight is left journaled (to be resent).
    pub(super) fn await_answers(
        &mut self,
        sink: &mut dyn Sink,
        keep: usize,
    ) -> Result<(), ShipError> {
        let (answered, broke) = self.read_answers(sink, keep);
        self.act_on_answers(answered, broke.map_or(Ok(()), Err), sink)
    }

    /// Reads answers until at most `keep` events are in flight: the events answered,
    /// with their answers, and the error that stopped the reading, if one did.
    pub(super) fn read_answers(
        &mut self,
        sink: &mut dyn Sink,
        keep: usize,
    ) -> (Vec<(Outgoing, Answer)>, Option<SessionError>) {
        let mut answered = Vec::new();
        while self.sent.len() > keep {
            match sink.next_answer() {
                Ok(outcome) => {
                    let p = self.sent.pop_front().expect("an event in flight");
                    answered.push((p, outcome));
                }
                Err(e) => return (answered, Some(e)),
            }
        }
        (answered, None)
    }

    /// Acts on the answers read, then on how the session fared since: when it broke,
    /// everything still in flight is left journaled (to be resent). Answers are acted
    /// on first, so that a first send answered as a duplicate is still told from a
    /// resend.
    pub(super) fn act_on_answers(
        &mut self,
        answered: Vec<(Outgoing, Answer)>,
        session: Result<(), SessionError>,
        sink: &dyn Sink,
    ) -> Result<(), ShipError> {
        let mut settled = Ok(());
        for (p, outcome) in answered {
            let r = self.act_on_answer(&p, outcome, sink);
            settled = settled.and(r);
        }
        if session.is_err() {
            self.session_broke();
        }
        settled?;
        Ok(session?)
    }

    /// The session broke: nothing in flight is known to be stored or not.
    pub(super) fn session_broke(&mut self) {
        self.sent.clear();
        for f in &mut self.unanswered {
            f.maybe_sent = true;
        }
    }

    /// Acts on sguild's answer for one event.
    pub(super) fn act_on_answer(
        &mut self,
        p: &Outgoing,
        outcome: Answer,
        sink: &dyn Sink,
    ) -> Result<(), ShipError> {
        let maybe_sent = self
            .unanswered
            .iter()
            .find(|f| f.record.entry == p.entry)
            .is_some_and(|f| f.maybe_sent);
        match outcome {
            Answer::Confirmed => self.delivered(p, false),
            Answer::AlreadyStored if maybe_sent => self.delivered(p, true),
            Answer::AlreadyStored => {
                // Not ours: the entry stays in the queue for a later cid, and the record
                // goes from the journal (that cid is someone else's).
                self.forget_unanswered(&p.entry);
                let path = self.journal.path().to_path_buf();
                let keep = self.journal_keep();
                self.journal.rewrite(&keep).map_err(io_err(&path))?;
                let f = p.event.fields();
                log::error!(
                    "{}: cid {} of sid {} is taken by another agent; {} stays queued",
                    sink.name(),
                    f.cid,
                    f.sid,
                    p.entry
                );
                self.collision.get_or_insert(ShipError::CidCollision {
                    server: sink.name(),
                    sid: f.sid,
                    cid: f.cid,
                    hostname: f.hostname.clone(),
                });
            }
            Answer::Rejected(text) => {
                self.forget_unanswered(&p.entry);
                self.quarantine(
                    &p.entry,
                    &format!("sguild refused the event: Failed {text}"),
                )?;
            }
        }
        Ok(())
    }

    /// An event is stored: it goes on record in the delivered log, then its entry goes.
    /// When either cannot be done, the entry stays, journaled, so a later resend finds
    /// it stored (and records and removes it then) instead of sending it anew.
    pub(super) fn delivered(&mut self, p: &Outgoing, already: bool) {
        self.stats.shipped += 1;
        self.stats
            .latency
            .record_entry(&p.entry, std::time::SystemTime::now());
        if already {
            self.stats.already_stored += 1;
        }
        if p.ipv6 {
            self.stats.ipv6 += 1;
        }
        let f = p.event.fields();
        let recorded = self.delivered_log.record(&Delivered {
            time: chrono::Utc::now().timestamp(),
            sid: f.sid,
            cid: f.cid,
            unique_id: p.unique_id.clone(),
            entry: p.entry.clone(),
            suppressed: None,
        });
        if let Err(e) = recorded {
            log::error!(
                "{}: delivered (sid {} cid {}) but not on record ({e}); it stays queued and journaled until it can be",
                p.entry,
                f.sid,
                f.cid
            );
            self.stats.undeletable += 1;
            return;
        }
        if p.entry.starts_with(crate::threshold::SUMMARY_PREFIX) {
            // Stored: off the state (saved now, so it is never sent anew), then off
            // the journal.
            self.stats.summaries += 1;
            self.tracker.summary_done(&p.entry);
            if let Err(e) = self.save_thresholds() {
                log::error!(
                    "{}: stored but not on record ({e}); it stays journaled",
                    p.entry
                );
                self.stats.undeletable += 1;
                return;
            }
            self.forget_unanswered(&p.entry);
            return;
        }
        if self.remove_entry(&p.entry, p.target.as_deref()) {
            self.forget_unanswered(&p.entry);
        } else {
            self.stats.undeletable += 1;
        }
    }
}
