//! The `--follow` position file (`.follow.<hash>`, one per followed index file): where
//! the collector stands in that file, so a restart resumes there.
//!
//! One line: `dev\tinode\toffset\tdigest\tpath`, numbers in decimal but the digest
//! (16 hex digits of the 256 bytes before the offset), the path last (it may hold tabs).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::layout::FOLLOW_PREFIX;

/// The largest position file read: four numbers and a path (PATH_MAX is 4,096).
pub const MAX_POSITION_BYTES: u64 = 8192;

/// Where reading stands: which file, and the offset after the last line handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    /// Digest of the bytes just before `offset`: inode numbers are reused, so a new
    /// file with the old one's inode is told apart by its content.
    pub tail: u64,
}

/// Writes `p` for `index` to `state` (atomically, fsynced, root's own).
pub fn write(state: &Path, p: &Position, index: &Path) -> io::Result<()> {
    let text = format!(
        "{}\t{}\t{}\t{:016x}\t{}\n",
        p.dev,
        p.ino,
        p.offset,
        p.tail,
        index.display()
    );
    crate::safefs::replace(
        state,
        text.as_bytes(),
        crate::safefs::Keeper::Us,
        crate::safefs::Durability::Synced,
    )
    .map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot save the position in {}: {e}", state.display()),
        )
    })
}

/// The position file's name for `path`: `.follow.<16 hex digits of its SHA-256>`.
pub fn state_name(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    format!("{FOLLOW_PREFIX}{}", crate::hex::lower(&digest[..8]))
}

/// The positions saved in the queue at `queue_dir`: (followed file, position), for
/// `status`. Files that do not parse are skipped.
pub fn saved_positions(queue_dir: &Path) -> io::Result<Vec<(PathBuf, Position)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(queue_dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(FOLLOW_PREFIX) || name.ends_with(".tmp") {
            continue;
        }
        let Ok(Some((p, index))) = read(&e.path(), crate::safefs::Keeper::Anyone) else {
            continue;
        };
        out.push((index, p));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The position saved in `state`, and the path of the file it is for.
/// The file lives in the queue, which the shipper's user writes: it is read as root reads
/// files there ([`crate::safefs`]), and at most [`MAX_POSITION_BYTES`] of it.
/// `keeper` is [`crate::safefs::Keeper::Us`] where the collector resumes from it (the
/// shipper's user must not be able to choose where), `Anyone` where `status` shows it.
pub fn read(
    state: &Path,
    keeper: crate::safefs::Keeper,
) -> io::Result<Option<(Position, PathBuf)>> {
    let text = match crate::safefs::read_checked(state, MAX_POSITION_BYTES, keeper) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut f = text.trim_end_matches('\n').split('\t');
    let mut num = || f.next().and_then(|v| v.parse::<u64>().ok());
    let (dev, ino, offset) = (num(), num(), num());
    let tail = f.next().and_then(|v| u64::from_str_radix(v, 16).ok());
    let index = PathBuf::from(f.collect::<Vec<_>>().join("\t")); // the rest: a path may hold tabs
    match (dev, ino, offset, tail) {
        (Some(dev), Some(ino), Some(offset), Some(tail)) => Ok(Some((
            Position {
                dev,
                ino,
                offset,
                tail,
            },
            index,
        ))),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: not a follow position (expected dev, inode, offset and digest); remove it to start at the end of the index file",
                state.display()
            ),
        )),
    }
}
