//! Taking over what a 0.1.0 collector kept in the queue: its backlog (`.backlog`), the
//! spools of dead collectors (`.spool.<pid>`) and `--follow` positions (`.follow.<hash>`)
//! move into the state dir, once, at start-up.
//!
//! This is the one place the collector reads a file in the queue: each is opened through
//! the queue's checked handle, never followed, and must be a regular file with one link
//! ([`crate::safefs::Open::contents_in`]) owned by root — or, for the backlog, which
//! 0.1.0 gave to the queue's owner, by that owner (its records are index lines, checked
//! like Apache's). Anything else is left where it is, named in a warning. Each read is
//! bounded, and one start looks at [`MAX_MIGRATED_FILES`] files at most. Contents are appended to the state dir and fsynced before the old
//! file is removed, so a crash in between may list a line twice, never lose one.

use std::io;

use crate::queue::layout::{legacy, Legacy};
use crate::safefs::{Dir, Open};
use crate::state::StateDir;

/// The largest 0.1.0 backlog or spool taken over: larger ones are left for the operator
/// (named in the log), since root reads no more than this of a file in the queue.
pub const MAX_MIGRATED_BYTES: u64 = 256 * 1024 * 1024;
/// The most 0.1.0 files looked at in one start. A real 0.1.0 queue has a backlog, a
/// spool per collector that died and a position per followed file; the queue's owner can
/// plant hundreds of thousands of such names, and each costs root an open and a log
/// line before the collector reads Apache's pipe. The rest wait for the next start.
pub const MAX_MIGRATED_FILES: usize = 64;
/// Refusals logged one by one; the rest are counted in one line.
const REFUSALS_LOGGED: usize = 8;

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
    let candidates = candidate_names(queue, queue_dir)?;
    for name in candidates {
        let Some(what) = kind_of(&name, queue_dir) else {
            continue;
        };
        // 0.1.0 gave its backlog to the queue's owner (who removed what `requeue
        // --backlog` took); its spools and positions it kept root's. The backlog's
        // records are index lines, which go through every check the collector makes on
        // Apache's lines: read from the owner's file (bounded, not followed, one link),
        // they give its owner nothing Apache's pipe does not.
        let keeper = match what {
            Kind::Backlog => crate::safefs::Keeper::DirOwner,
            _ => crate::safefs::Keeper::ThisProcess,
        };
        let bytes = match Open::read(keeper).contents_in(queue, &name, MAX_MIGRATED_BYTES) {
            Ok(b) => b,
            Err(e) => {
                let why = crate::escape::escape_text(&format!("{}/{e}", queue_dir.display()))
                    .into_owned();
                if done.refused.len() < REFUSALS_LOGGED {
                    log::warn!("0.1.0's {why}: left in the queue, not taken over");
                }
                done.refused.push(why);
                continue;
            }
        };
        take_over(what, &name, &bytes, state, &mut done)?;
        queue.remove(&name)?;
        log::info!(
            "took over 0.1.0's {} from the queue into {}",
            crate::escape::escape_text(&name),
            state.path().display()
        );
    }
    if done.refused.len() > REFUSALS_LOGGED {
        log::warn!(
            "{}: {} more of 0.1.0's files left in the queue, not taken over",
            queue_dir.display(),
            done.refused.len() - REFUSALS_LOGGED
        );
    }
    if done != Migrated::default() {
        queue.sync()?;
    }
    Ok(done)
}

/// The names in the queue that may be 0.1.0's files, [`MAX_MIGRATED_FILES`] at most
/// (the rest are counted in a warning).
fn candidate_names(queue: &Dir, queue_dir: &std::path::Path) -> io::Result<Vec<String>> {
    let mut candidates = Vec::new();
    let mut more = 0usize;
    queue.for_each_name(|name| {
        if legacy(name).is_some() {
            if candidates.len() < MAX_MIGRATED_FILES {
                candidates.push(name.to_string());
            } else {
                more += 1;
            }
        }
    })?;
    if more > 0 {
        log::warn!(
            "{}: {more} more names of 0.1.0's files than the {MAX_MIGRATED_FILES} looked at in one start (planted?); the rest wait for the next start",
            queue_dir.display()
        );
    }
    Ok(candidates)
}

/// Which of 0.1.0's files `name` is; `None` for a name not to take over (now).
fn kind_of(name: &str, queue_dir: &std::path::Path) -> Option<Kind> {
    let dead = |pid: &str| pid.parse::<u32>().is_ok_and(|pid| !collector_alive(pid));
    Some(match legacy(name)? {
        Legacy::Backlog => Kind::Backlog,
        // A backlog a killed 0.1.0 `requeue --backlog` had taken.
        Legacy::TakenBacklog { pid } if dead(pid) => Kind::Backlog,
        Legacy::TakenBacklog { .. } => return None,
        Legacy::Spool { rest } => {
            // Only a dead collector's: a 0.1.0 one still running keeps writing it.
            let pid = rest.split('.').next().and_then(|p| p.parse::<u32>().ok());
            match pid {
                Some(pid) if collector_alive(pid) => {
                    log::info!(
                        "{}/{}: the spool of collector {pid}, still running; taken over at a later start",
                        queue_dir.display(),
                        crate::escape::escape_text(name)
                    );
                    return None;
                }
                Some(_) => Kind::Spool,
                None => return None,
            }
        }
        Legacy::Position => Kind::Position,
    })
}

/// Appends what 0.1.0's file `name` held (`bytes`) to its place in `state`, counted in
/// `done`.
fn take_over(
    what: Kind,
    name: &str,
    bytes: &[u8],
    state: &StateDir,
    done: &mut Migrated,
) -> io::Result<()> {
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
            let mut f =
                crate::safefs::Open::append(crate::safefs::Keeper::ThisProcess).at(&target)?;
            crate::safefs::append_whole(&mut f, bytes, true)?;
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
                    bytes,
                    crate::safefs::Keeper::ThisProcess,
                    crate::safefs::Durability::Synced,
                )?;
            }
            done.positions += 1;
        }
    }
    Ok(())
}

/// Whether `pid` is a running collector (0.1.0's or ours). A pid alone is not enough: a
/// spool renamed by the queue's owner to the pid of some other live process (`.spool.1`)
/// would never be taken over, its lines lost without a word.
fn collector_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim_end().starts_with("modsec-collecto"))
}

enum Kind {
    Backlog,
    Spool,
    Position,
}
