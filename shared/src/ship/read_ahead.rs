//! Reading ahead of the sender: loader threads read, parse and map entries a few
//! batches ahead, and hand them back in queue order.

use std::path::{Path, PathBuf};
use std::thread::Scope;

use super::load::{load_entry, LoadError};
use super::DeliverySettings;
use crate::alert::map_event;
use crate::queue::QueueEntry;

/// Threads reading and parsing entries ahead of the sender: parsing is most of the
/// work, and the sender mostly waits on the disk and the network.
pub(super) const LOADERS: usize = 2;

/// Entries a loader reads before it hands them over, at once.
pub(super) const LOAD_CHUNK: usize = 16;

/// An entry read, parsed and mapped (by the loader thread).
pub(super) struct MappedEntry {
    pub(super) mapped: crate::alert::Mapped,
    pub(super) unique_id: String,
    pub(super) ino: u64,
    pub(super) target: Option<PathBuf>,
    /// The real addresses (IPv6 ones too) and the event's own time, for thresholds.
    pub(super) src: std::net::IpAddr,
    pub(super) dst: std::net::IpAddr,
    pub(super) time: i64,
}

/// Reads, parses and maps the entry `file_name` of the queue at `dir`. A panic on the
/// way (a parser bug a hostile file found) refuses the entry, which is quarantined with
/// the panic's message, instead of ending the run: otherwise every run would stop on
/// the same entry and the queue behind it would wait for ever.
pub(super) fn load_and_map(
    dir: &Path,
    file_name: &str,
    s: &DeliverySettings,
) -> Result<MappedEntry, LoadError> {
    refused_on_panic(|| load_and_map_unguarded(dir, file_name, s))
}

/// What `load` gives, or, if it panics, the entry refused with the panic's message.
fn refused_on_panic<T>(load: impl FnOnce() -> Result<T, LoadError>) -> Result<T, LoadError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(load)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(LoadError::Refused(format!(
            "the parser failed on this file (a bug; please report it with the file): {}",
            crate::escape::escape_text(&what)
        )))
    })
}

fn load_and_map_unguarded(
    dir: &Path,
    file_name: &str,
    s: &DeliverySettings,
) -> Result<MappedEntry, LoadError> {
    let loaded = load_entry(dir, file_name, &s.load)?;
    let notes: Vec<String> = crate::queue::integrity_note(dir, file_name)
        .map(|n| format!("collector: {n}"))
        .into_iter()
        .collect();
    let mapped = map_event(&loaded.event, &loaded.raw.bytes, &notes, &s.alert);
    Ok(MappedEntry {
        mapped,
        src: loaded.event.client.addr,
        dst: loaded.event.server.addr,
        time: loaded.event.time.timestamp(),
        unique_id: loaded.event.unique_id,
        ino: loaded.ino,
        target: loaded.target,
    })
}

/// An entry, and what reading, parsing and mapping it gave.
pub(super) type Loaded = (QueueEntry, Result<MappedEntry, LoadError>);

/// Starts the loaders on `todo` in `scope`: the entries come back loaded, in queue
/// order, about two batches ahead of the sender. Dropping what this returns stops them.
pub(super) fn read_ahead<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    todo: &'env [QueueEntry],
    batch: usize,
    dir: &'env Path,
    settings: &'env DeliverySettings,
) -> impl Iterator<Item = Loaded> {
    // Chunk i of LOAD_CHUNK entries goes to loader i % LOADERS; reading the
    // channels in turn gives the entries back in queue order. A chunk is one
    // hand-over: one per entry made the threads spin on each other (a flood of
    // held-back events is mostly hand-overs otherwise).
    let chunks: Vec<&[QueueEntry]> = todo.chunks(LOAD_CHUNK).collect();
    let mut channels = Vec::with_capacity(LOADERS);
    for k in 0..LOADERS {
        let (tx, rx) = crossbeam_channel::bounded((batch * 2).div_ceil(LOAD_CHUNK).max(2));
        channels.push(rx);
        let mine: Vec<&[QueueEntry]> = chunks.iter().skip(k).step_by(LOADERS).copied().collect();
        scope.spawn(move || {
            for chunk in mine {
                let loaded: Vec<Loaded> = chunk
                    .iter()
                    .map(|e| (e.clone(), load_and_map(dir, &e.file_name, settings)))
                    .collect();
                if tx.send(loaded).is_err() {
                    break; // shipping stopped
                }
            }
        });
    }
    let total = chunks.len();
    (0..total)
        .map_while(move |i| channels[i % LOADERS].recv().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_loading_refuses_the_entry_with_its_message() {
        for result in [
            refused_on_panic::<()>(|| panic!("begin > end (453 > 452)")),
            refused_on_panic::<()>(|| panic!("{} \u{1b}[31m", "formatted")),
        ] {
            let Err(LoadError::Refused(why)) = result else {
                panic!("not refused");
            };
            assert!(why.starts_with("the parser failed on this file"), "{why}");
            assert!(
                why.contains("453 > 452") || why.contains("formatted \\x1b[31m"),
                "{why}"
            );
        }
        assert!(matches!(refused_on_panic(|| Ok(7)), Ok(7)));
    }
}
