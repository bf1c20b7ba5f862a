//! Reading ahead of the sender: loader threads read, parse and map entries a few
//! batches ahead, and hand them back in queue order.

use std::path::{Path, PathBuf};

use super::load::{load_entry, LoadError};
use super::ShipSettings;
use crate::alert::map_event;

/// Threads reading and parsing entries ahead of the sender: parsing is most of the
/// work, and the sender mostly waits on the disk and the network.
pub(super) const LOADERS: usize = 2;

/// Entries a loader reads before it hands them over, at once.
pub(super) const LOAD_CHUNK: usize = 16;

/// An entry read, parsed and mapped (by the loader thread).
pub(super) struct Ready {
    pub(super) mapped: crate::alert::Mapped,
    pub(super) unique_id: String,
    pub(super) ino: u64,
    pub(super) target: Option<PathBuf>,
    /// The real addresses (IPv6 ones too) and the event's own time, for thresholds.
    pub(super) src: std::net::IpAddr,
    pub(super) dst: std::net::IpAddr,
    pub(super) time: i64,
}

/// Reads, parses and maps the entry `file_name` of the queue at `dir`.
pub(super) fn load_and_map(
    dir: &Path,
    file_name: &str,
    s: &ShipSettings,
) -> Result<Ready, LoadError> {
    let loaded = load_entry(dir, file_name, &s.load)?;
    let notes: Vec<String> = crate::queue::integrity_note(dir, file_name)
        .map(|n| format!("collector: {n}"))
        .into_iter()
        .collect();
    let mapped = map_event(&loaded.event, &loaded.raw.bytes, &notes, &s.alert);
    Ok(Ready {
        mapped,
        src: loaded.event.client.addr,
        dst: loaded.event.server.addr,
        time: loaded.event.time.timestamp(),
        unique_id: loaded.event.unique_id,
        ino: loaded.ino,
        target: loaded.target,
    })
}
