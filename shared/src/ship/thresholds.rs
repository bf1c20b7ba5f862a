//! The thresholds' side of shipping: held-back entries moved to `held/` and on record,
//! the state saved, and summaries made into Sguil events.

use std::collections::HashSet;
use std::fs;
use std::io;

use chrono::{TimeZone, Utc};

use super::{io_err, Outgoing, ShipError, Shipper, Sink};
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
                path: self.queue.dir().join(crate::queue::layout::DELIVERED_FILE),
                source: e,
            })?;
        let dir = self.queue.dir().to_path_buf();
        let held_dir = dir.join(crate::queue::layout::HELD_DIR);
        match fs::create_dir(&held_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&held_dir)(e)),
        }
        for (h, _) in &held {
            let from = dir.join(&h.entry);
            if verify {
                match fs::symlink_metadata(&from) {
                    Ok(m) if std::os::unix::fs::MetadataExt::ino(&m) == h.ino => {}
                    _ => continue, // gone, or another file under the name
                }
            }
            match fs::rename(&from, held_dir.join(&h.entry)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&from)(e)),
            }
            if self.integrity_any {
                self.queue.clear_integrity(&h.entry);
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
                    path: self
                        .queue
                        .dir()
                        .join(crate::queue::layout::THRESHOLD_STATE_FILE),
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
