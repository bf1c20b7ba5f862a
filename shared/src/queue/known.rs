//! What the queue already holds or delivered, so that an event is queued once: the
//! unique id and inode of every entry, and the unique ids in the delivered log.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::delivered::delivered_ids;
use super::Queue;
use crate::auditlog::{parse_event, unique_id_quick, ParseLimits};

/// Events the queue already has, or that were delivered.
#[derive(Debug, Default)]
pub struct KnownEvents {
    queued_ids: HashSet<String>,
    queued_inodes: HashSet<(u64, u64)>,
    delivered: HashSet<String>,
}

impl KnownEvents {
    /// Reads the unique id and inode of every queue entry, then the delivered log. An
    /// entry that cannot be read or parsed is known by its inode only.
    ///
    /// In that order: a running shipper writes an event's delivered record before it
    /// removes the entry, so an entry gone by the time the queue is read is on record
    /// when the log is read after it. Read the other way round, an event delivered in
    /// between was in neither (found by the soak test: `requeue --index` right after
    /// `requeue --backlog` queued two events a second time).
    pub fn load(queue_dir: &Path) -> io::Result<KnownEvents> {
        let queue = Queue::at(queue_dir);
        let mut known = KnownEvents::default();
        let limits = ParseLimits {
            max_body_bytes: 0,
            ..ParseLimits::default()
        };
        for entry in queue.entries()? {
            let path = queue_dir.join(&entry.file_name);
            // Follows a symlinked entry (SYMLINK mode) to the event it names.
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            known.queued_inodes.insert((meta.dev(), meta.ino()));
            if let Some(id) = unique_id_of(&path, &limits) {
                known.queued_ids.insert(id);
            }
        }
        known.delivered = delivered_ids(queue_dir)?;
        Ok(known)
    }

    /// Why an event is known, if it is.
    pub fn why(&self, unique_id: Option<&str>, dev_ino: Option<(u64, u64)>) -> Option<String> {
        if dev_ino.is_some_and(|d| self.queued_inodes.contains(&d)) {
            return Some("already queued (the same file)".into());
        }
        let id = unique_id?;
        if self.queued_ids.contains(id) {
            Some(format!("unique id {id} is already queued"))
        } else if self.delivered.contains(id) {
            Some(format!("unique id {id} was already delivered to Sguil"))
        } else {
            None
        }
    }

    /// Remembers an event just queued (two lines for one event queue it once).
    pub fn add(&mut self, unique_id: Option<&str>, dev_ino: Option<(u64, u64)>) {
        if let Some(id) = unique_id {
            self.queued_ids.insert(id.to_string());
        }
        if let Some(d) = dev_ino {
            self.queued_inodes.insert(d);
        }
    }
}

/// The unique id of the event in `path`: from the start of the file when it has the
/// usual shape, else by parsing the whole file.
pub fn unique_id_of(path: &Path, limits: &ParseLimits) -> Option<String> {
    // Symlink mode's entries are links: followed, to a regular file only.
    let mut f = crate::safefs::Open::read(crate::safefs::Keeper::Anyone)
        .following_links()
        .at(path)
        .ok()?;
    let mut bytes = Vec::with_capacity(QUICK_BYTES);
    (&mut f)
        .take(QUICK_BYTES as u64)
        .read_to_end(&mut bytes)
        .ok()?;
    if let Some(id) = unique_id_quick(&bytes) {
        return Some(id);
    }
    f.take(super::DEFAULT_MAX_EVENT_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    parse_event(&bytes, limits)
        .ok()
        .map(|e| e.unique_id)
        .filter(|id| !id.is_empty())
}

/// How much of a file is read to find its unique id the quick way.
const QUICK_BYTES: usize = 4096;
