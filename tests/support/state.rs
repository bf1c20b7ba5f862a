//! The collector's STATE_DIR in a test: its own for each test, and what the collector
//! keeps there (backlog, spools, `--follow` position).
//!
//! The collector keeps its state in a directory only root writes (ARCHITECTURE.md, "What
//! root may touch"); without one it uses `/var/lib/modsec2sguil`, which all tests would
//! share. So every test that runs the collector (or `requeue --backlog/--index`, which
//! do its work) gives it [`dir`] of its own working directory.

use std::path::{Path, PathBuf};

use modsec2sguil::state::{parse_backlog_record, BACKLOG_FILE, FOLLOW_PREFIX, SPOOL_PREFIX};

/// The state dir of the test whose own working directory is `work`: `work/collector-state`
/// (the collector creates it). `work` must stay root's and not writable by group or
/// others, as every directory above a STATE_DIR must (a `tempfile::tempdir()` is: mode
/// 0700 under the sticky /tmp); a test that gives its working directory to another user
/// keeps the state in a temp dir of its own instead.
pub fn dir(work: &Path) -> PathBuf {
    work.join("collector-state")
}

/// The config line that gives the collector [`dir`]`(work)`: `set STATE_DIR …` and a
/// newline.
pub fn setting(work: &Path) -> String {
    format!("set STATE_DIR {}\n", dir(work).display())
}

/// The backlog's records in `state` (none if it has no backlog): (reason, raw line).
pub fn backlog(state: &Path) -> Vec<(String, Vec<u8>)> {
    backlog_records(&state.join(BACKLOG_FILE))
}

/// The records of the backlog file at `path` (a copy, or the state dir's; none if it
/// is missing): (reason, raw line).
pub fn backlog_records(path: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read(path)
        .unwrap_or_default()
        .split_inclusive(|&b| b == b'\n')
        .map(|r| {
            let (_, reason, line) = parse_backlog_record(r).unwrap_or_else(|| {
                panic!(
                    "{}: a bad backlog record: {:?}",
                    path.display(),
                    String::from_utf8_lossy(r)
                )
            });
            (reason, line)
        })
        .collect()
}

/// The backlog in `state` as text (empty if it has none).
pub fn backlog_text(state: &Path) -> String {
    std::fs::read_to_string(state.join(BACKLOG_FILE)).unwrap_or_default()
}

/// Files in `state` whose names start with `prefix` (none if it does not exist).
fn files_named(state: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Index lines waiting in the collectors' overflow spools (`spool.<pid>`) in `state`.
pub fn spooled_lines(state: &Path) -> usize {
    files_named(state, SPOOL_PREFIX)
        .iter()
        .map(|p| {
            std::fs::read(p)
                .unwrap()
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
        })
        .sum()
}

/// The `--follow` position files (`follow.<hash>`) in `state`.
pub fn follow_files(state: &Path) -> Vec<PathBuf> {
    files_named(state, FOLLOW_PREFIX)
}
