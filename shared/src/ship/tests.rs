//! Shipper state across sessions, with a sink that answers every event it was given.

use super::pass::Taken;
use super::read_ahead::load_and_map;
use super::*;
use crate::sguil::client::Answer;
use crate::testdata::event_text;
use std::collections::VecDeque;
use std::fs;
use std::sync::atomic::AtomicBool;

/// Confirms each event submitted to it, in order; asked for an answer with nothing
/// submitted, it times out (as sguild would never answer).
#[derive(Default)]
struct Confirming {
    waiting: VecDeque<u32>,
    stored: Vec<u32>,
}

impl Sink for Confirming {
    fn name(&self) -> String {
        "test sink".into()
    }
    fn sid(&self) -> u32 {
        1
    }
    fn hostname(&self) -> &str {
        "websrv"
    }
    fn max_cid(&self) -> u32 {
        0
    }
    fn submit(&mut self, events: &[SguilEvent]) -> Result<(), SessionError> {
        self.waiting.extend(events.iter().map(|e| e.fields().cid));
        Ok(())
    }
    fn next_answer(&mut self) -> Result<Answer, SessionError> {
        let cid = self.waiting.pop_front().ok_or(SessionError::Timeout {
            server: self.name(),
            cid: 0,
            secs: 15,
        })?;
        self.stored.push(cid);
        Ok(Answer::Confirmed)
    }
    fn ping(&mut self) -> Result<(), SessionError> {
        Ok(())
    }
}

fn settings() -> DeliverySettings {
    DeliverySettings {
        alert: AlertSettings::default(),
        load: LoadOptions::default(),
        remove_orig: false,
        window: 4,
        thresholds: None,
    }
}

/// A session that broke on a journal write after sending (ship() returned with events in
/// flight) must not leave the next session waiting for their answers: it would wait for
/// ever (sguild answers only what it was sent on its own connection) and reconnect in a
/// loop. They are resent, under their cids, and everything ships once.
#[test]
fn events_in_flight_on_a_broken_session_are_resent_not_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path();
    for (i, id) in ["ID-first", "ID-second"].iter().enumerate() {
        fs::write(
            q.join(format!("modsec.log.100.00000{}", i + 1)),
            event_text(id, 403),
        )
        .unwrap();
    }
    let mut shipper = Shipper::open(q, settings()).unwrap();
    let mut old_session = Confirming::default();
    // The first entry journaled and sent on a session whose journal write then failed.
    let first = shipper.queue.entries().unwrap().remove(0);
    let ready = load_and_map(q, &first.file_name, &shipper.settings);
    let Some(Taken::Send(p)) = shipper.decide(&first, ready, &old_session).unwrap() else {
        panic!("not an event to send");
    };
    shipper
        .journal_batch(std::slice::from_ref(&p), &[])
        .unwrap()
        .wait()
        .unwrap();
    let events = [p.event.clone()];
    old_session.submit(&events).unwrap();
    shipper.sent.push_back(p);

    let mut new_session = Confirming::default();
    let left = shipper
        .ship(&mut new_session, Bounds::default(), &AtomicBool::new(false))
        .unwrap();
    assert!(!left);
    assert_eq!(
        new_session.stored,
        [1, 2],
        "the first resent under cid 1, then the second"
    );
    assert_eq!(shipper.stats.shipped, 2);
    assert_eq!(shipper.unanswered(), 0);
    assert_eq!(shipper.remaining().unwrap(), 0);
}

/// A sink that confirms the first `limit` events, then never answers (a session that
/// dies mid-run).
struct ConfirmingUpTo {
    inner: Confirming,
    limit: usize,
}

impl Sink for ConfirmingUpTo {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn sid(&self) -> u32 {
        1
    }
    fn hostname(&self) -> &str {
        "websrv"
    }
    fn max_cid(&self) -> u32 {
        0
    }
    fn submit(&mut self, events: &[SguilEvent]) -> Result<(), SessionError> {
        self.inner.submit(events)
    }
    fn next_answer(&mut self) -> Result<Answer, SessionError> {
        if self.inner.stored.len() >= self.limit {
            return Err(SessionError::Timeout {
                server: self.name(),
                cid: 0,
                secs: 15,
            });
        }
        self.inner.next_answer()
    }
    fn ping(&mut self) -> Result<(), SessionError> {
        Ok(())
    }
}

/// A long run keeps its journal small: past its in-run bound it is rewritten between
/// windows to the records not yet answered, and every one of those is still in it (a
/// session that breaks after a compaction resends them all, under their cids).
#[test]
fn a_long_run_compacts_its_journal_between_windows_and_keeps_what_is_unanswered() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path();
    for i in 0..300 {
        fs::write(
            q.join(format!("modsec.log.100.{i:06}")),
            event_text(&format!("ID-{i:04}"), 403),
        )
        .unwrap();
    }
    let mut shipper = Shipper::open(q, settings()).unwrap();
    shipper.journal.compact_in_run_above(2048);
    let mut session = ConfirmingUpTo {
        inner: Confirming::default(),
        limit: 250,
    };
    let e = shipper
        .ship(&mut session, Bounds::default(), &AtomicBool::new(false))
        .unwrap_err();
    assert!(matches!(e, ShipError::Session(_)), "{e}");
    // 250 records of ~70 bytes were appended: without compaction 17 KB and more.
    let len = fs::metadata(q.join(crate::queue::layout::JOURNAL_FILE))
        .unwrap()
        .len();
    assert!(len < 4096, "the journal holds {len} bytes");
    assert_eq!(len, shipper.journal.len());
    // Whatever was sent and not answered is on record, under its cid.
    let (_, on_record) = Journal::open(q).unwrap();
    let unanswered: Vec<&JournalRecord> = shipper.unanswered.iter().map(|f| &f.record).collect();
    assert!(!unanswered.is_empty());
    for r in unanswered {
        assert!(on_record.contains(r), "{r:?} is not in the journal");
    }
    // The next session resends them and ships the rest: each event once.
    let mut next = Confirming::default();
    shipper
        .ship(&mut next, Bounds::default(), &AtomicBool::new(false))
        .unwrap();
    let mut cids: Vec<u32> = session
        .inner
        .stored
        .iter()
        .chain(&next.stored)
        .copied()
        .collect();
    let n = cids.len();
    cids.sort_unstable();
    cids.dedup();
    assert_eq!((n, cids.len()), (300, 300));
    assert_eq!(shipper.remaining().unwrap(), 0);
}
