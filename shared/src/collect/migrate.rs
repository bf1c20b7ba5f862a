//! Taking over what a 0.1.0 collector kept in the queue: its backlog (`.backlog`), the
//! spools of dead collectors (`.spool.<pid>`) and `--follow` positions (`.follow.<hash>`)
//! move into the state dir, once, at start-up.
//!
//! This is the one place the collector reads a file in the queue, and only a file that
//! 0.1.0 wrote as root: each is opened through the queue's checked handle, never
//! followed, and must be a regular file with one link owned by root
//! ([`crate::safefs::Dir::read_ours`]); anything else (planted by the queue's owner, who
//! can create but not forge root's files) is left where it is, named in a warning. Each
//! read is bounded. Contents are appended to the state dir and fsynced before the old
//! file is removed, so a crash in between may list a line twice, never lose one.

use std::io;

use crate::queue::layout::{BACKLOG_FILE, BACKLOG_TAKEN_PREFIX, FOLLOW_PREFIX, SPOOL_PREFIX};
use crate::safefs::Dir;
use crate::state::StateDir;

/// The largest 0.1.0 backlog or spool taken over: larger ones are left for the operator
/// (named in the log), since root reads no more than this of a file in the queue.
pub const MAX_MIGRATED_BYTES: u64 = 256 * 1024 * 1024;

/// What [`from_queue`] moved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    pub backlog_records: usize,
    pub spool_lines: usize,
    pub positions: usize,
    /// Files left in place, and why.
    pub refused: Vec<String>,
}

/// Moves 0.1.0's files out of the queue `queue_dir` (through its checked handle
/// `queue`) into `state`.
pub fn from_queue(
    queue: &Dir,
    queue_dir: &std::path::Path,
    state: &StateDir,
) -> io::Result<Migrated> {
    let mut done = Migrated::default();
    let names = queue.names()?;
    for name in names {
        let dead = |pid: &str| {
            pid.parse::<u32>()
                .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        };
        let what = if name == BACKLOG_FILE {
            Kind::Backlog
        } else if name.strip_prefix(BACKLOG_TAKEN_PREFIX).is_some_and(dead) {
            // A backlog a killed 0.1.0 `requeue --backlog` had taken.
            Kind::Backlog
        } else if let Some(rest) = name.strip_prefix(SPOOL_PREFIX) {
            // Only a dead collector's: a 0.1.0 one still running keeps writing it.
            let pid = rest.split('.').next().and_then(|p| p.parse::<u32>().ok());
            match pid {
                Some(pid) if std::path::Path::new(&format!("/proc/{pid}")).exists() => continue,
                Some(_) => Kind::Spool,
                None => continue,
            }
        } else if name.starts_with(FOLLOW_PREFIX) && !name.ends_with(".tmp") {
            Kind::Position
        } else {
            continue;
        };
        let bytes = match queue.read_ours(&name, MAX_MIGRATED_BYTES) {
            Ok(b) => b,
            Err(e) => {
                let why = crate::escape::escape_text(&format!("{}/{e}", queue_dir.display()))
                    .into_owned();
                log::warn!("0.1.0's {why}: left in the queue, not taken over");
                done.refused.push(why);
                continue;
            }
        };
        match what {
            Kind::Backlog => {
                let mut records: Vec<(Vec<u8>, String)> = Vec::new();
                for r in bytes.split(|&b| b == b'\n').filter(|r| !r.is_empty()) {
                    match crate::state::parse_backlog_record(r) {
                        Some((_, reason, raw)) => records.push((raw, reason)),
                        None => records.push((r.to_vec(), "(0.1.0 backlog record)".into())),
                    }
                }
                let refs: Vec<(&[u8], &str)> = records
                    .iter()
                    .map(|(r, w)| (r.as_slice(), w.as_str()))
                    .collect();
                state.backlog_many(&refs)?;
                done.backlog_records += records.len();
            }
            Kind::Spool => {
                // pid 0 is never alive: the next spool recovery drains it.
                let target = state.join(&format!(
                    "{}0.migrated-{}",
                    crate::state::SPOOL_PREFIX,
                    name
                ));
                let mut f = crate::safefs::append_for(&target, crate::safefs::Keeper::Us)?;
                crate::safefs::append_whole(&mut f, &bytes, true)?;
                done.spool_lines += bytes
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count();
            }
            Kind::Position => {
                let target = state.join(name.trim_start_matches('.'));
                if !target.exists() {
                    crate::safefs::replace(
                        &target,
                        &bytes,
                        crate::safefs::Keeper::Us,
                        crate::safefs::Durability::Synced,
                    )?;
                }
                done.positions += 1;
            }
        }
        queue.remove(&name)?;
        log::info!(
            "took over 0.1.0's {} from the queue into {}",
            crate::escape::escape_text(&name),
            state.path().display()
        );
    }
    if done != Migrated::default() {
        queue.sync()?;
    }
    Ok(done)
}

enum Kind {
    Backlog,
    Spool,
    Position,
}
