//! The thresholds' side of shipping: held-back entries moved to `held/` and on record,
//! the state saved, and summaries made into Sguil events.

use std::collections::HashSet;

use chrono::{TimeZone, Utc};

use super::{Outgoing, ShipError, Shipper, Sink};
use crate::queue::delivered::Delivered;

/// An entry a threshold held back, journaled and not yet finished.
pub(super) struct HeldBack {
    pub(super) entry: String,
    pub(super) ino: u64,
    pub(super) unique_id: String,
    pub(super) why: String,
}

impl Shipper {
    /// Held-back entries are journaled: each is recorded as suppressed in the delivered
    /// log (unless `recorded` already), then moved to `held/`.
    /// `verify`: the entry's inode is checked first (after a restart: the name may have
    /// come back with another file); in a pass, the entry was just read under the lock.
    pub(super) fn move_held(
        &mut self,
        held: Vec<(HeldBack, bool)>,
        verify: bool,
    ) -> Result<(), ShipError> {
        if held.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp();
        let records: Vec<Delivered> = held
            .iter()
            .filter(|(_, recorded)| !recorded)
            .map(|(h, _)| Delivered {
                time: now,
                sid: 0,
                cid: 0,
                unique_id: if h.unique_id.is_empty() {
                    "-".into()
                } else {
                    h.unique_id.clone()
                },
                entry: h.entry.clone(),
                suppressed: Some(h.why.clone()),
            })
            .collect();
        self.delivered_log
            .record_many(&records)
            .map_err(|e| ShipError::Io {
                path: crate::queue::delivered::path(self.queue.dir()),
                source: e,
            })?;
        let moved = crate::queue::held::hold(
            self.queue.dir(),
            held.iter()
                .map(|(h, _)| (h.entry.as_str(), verify.then_some(h.ino))),
        )
        .map_err(|(path, source)| ShipError::Io { path, source })?;
        for entry in &moved {
            if self.integrity_any {
                self.queue.clear_integrity(entry);
            }
            self.stats.held += 1;
        }
        let done: HashSet<&str> = held.iter().map(|(h, _)| h.entry.as_str()).collect();
        self.held_journaled
            .retain(|r| !done.contains(r.entry.as_str()));
        Ok(())
    }

    /// Saves the thresholds' state if it changed (before the decisions that changed it
    /// are journaled: a crash between the two counts those events again, never loses
    /// one, and a summary is on record before it can be sent).
    pub(super) fn save_thresholds(&mut self) -> Result<(), ShipError> {
        if self.tracker.take_changed() {
            crate::queue::threshold_state::save(self.queue.dir(), &self.tracker).map_err(
                |source| ShipError::Io {
                    path: crate::queue::threshold_state::path(self.queue.dir()),
                    source,
                },
            )?;
        }
        Ok(())
    }

    /// Summaries waiting in the state and not yet journaled, as events with new cids.
    pub(super) fn new_summaries(&mut self, sink: &dyn Sink) -> Vec<Outgoing> {
        let journaled: HashSet<String> = self
            .unanswered
            .iter()
            .map(|f| f.record.entry.clone())
            .collect();
        let waiting: Vec<crate::threshold::Summary> = self
            .tracker
            .summaries
            .iter()
            .filter(|s| !journaled.contains(&s.name()))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for s in waiting {
            match self.new_event(summary_fields(&s, &self.settings.alert), sink) {
                Ok(event) => {
                    out.push(Outgoing {
                        event,
                        entry: s.name(),
                        unique_id: s.name(),
                        ino: 0,
                        target: None,
                        ipv6: false,
                    });
                }
                Err(e) => {
                    log::error!("{}: cannot be sent to Sguil: {e}; dropped", s.name());
                    self.tracker.summary_done(&s.name());
                }
            }
        }
        out
    }
}

/// The Sguil fields of a threshold summary (sid, cid and hostname are the caller's).
pub(super) fn summary_fields(
    s: &crate::threshold::Summary,
    alert: &crate::alert::AlertSettings,
) -> crate::sguil::wire::EventFields {
    use std::net::IpAddr;
    let v4 = |a: Option<IpAddr>| match a {
        Some(IpAddr::V4(v)) => Some(v),
        _ => None,
    };
    let (src, dst) = match s.key.track {
        crate::threshold::Track::BySrc => (v4(s.key.addr), None),
        crate::threshold::Track::ByDst => (None, v4(s.key.addr)),
        crate::threshold::Track::ByRule => (None, None),
    };
    let lines = s.detail_lines();
    let detail = match alert.detail_format {
        crate::alert::DetailFormat::Html => lines
            .iter()
            .map(|l| {
                l.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            })
            .collect::<Vec<_>>()
            .join("<br>\n"),
        _ => lines.join("\n"),
    };
    crate::sguil::wire::EventFields {
        status: 0,
        priority: 3,
        class: alert.alert_class.clone(),
        hostname: String::new(),
        time: Utc
            .timestamp_opt(s.time(), 0)
            .single()
            .unwrap_or_else(Utc::now),
        sid: 0,
        cid: 0,
        ref_id: 0,
        message: s.message().into_bytes(),
        src_ip: src,
        dst_ip: dst,
        ip_proto: 6,
        src_port: 0,
        dst_port: 0,
        generator: crate::threshold::GEN_ID,
        sig_id: crate::threshold::SUMMARY_SIG_ID,
        revision: 1,
        detail: detail.into_bytes(),
    }
}
