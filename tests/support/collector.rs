//! Helpers for the tests of `modsec-collector` in real Apache's pipe.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use modsec2sguil::index::parse_index_line;
use modsec2sguil::queue::EntryName;

/// The lines of the file at `path` (none if it is missing), newlines kept.
pub fn lines(path: &Path) -> Vec<Vec<u8>> {
    std::fs::read(path)
        .unwrap_or_default()
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// Waits until every collector instance that started has logged its exit.
pub fn wait_for_collectors(log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let started = text.matches(" started: ").count();
        let exited = text.matches(" exiting: ").count();
        if started > 0 && started == exited {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "collectors did not exit ({started} started, {exited} exited):\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The queue's entries and the inode each is a link to.
pub fn queue_entries(queue: &Path) -> BTreeMap<EntryName, u64> {
    std::fs::read_dir(queue)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = EntryName::parse(e.file_name().to_str()?)?;
            Some((name, e.metadata().unwrap().ino()))
        })
        .collect()
}

/// The inode of the event file an index line names.
pub fn event_inode(storage: &Path, line: &[u8]) -> u64 {
    let parsed = parse_index_line(line).unwrap();
    let path: PathBuf = storage.join(
        std::str::from_utf8(&parsed.filename)
            .unwrap()
            .trim_start_matches('/'),
    );
    std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}
