//! The `--follow` position file (`follow.<hash>` in the collector's state dir, one per
//! followed index file; `.follow.<hash>` in the queue before 0.2): where the collector
//! stands in that file, so a restart resumes there.
//!
//! One line: `v1\tdev\tinode\toffset\tdigest\tpath`, numbers in decimal but the digest
//! (16 hex digits of the 256 bytes before the offset), the path last (it may hold tabs).
//! 0.1.0 wrote the same without `v1\t` ([`super::version`]).

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
        "{}{}\t{}\t{}\t{:016x}\t{}\n",
        super::version::LINE_TAG,
        p.dev,
        p.ino,
        p.offset,
        p.tail,
        index.display()
    );
    crate::safefs::replace(
        state,
        text.as_bytes(),
        crate::safefs::Keeper::ThisProcess,
        crate::safefs::Durability::Synced,
    )
    .map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot save the position in {}: {e}", state.display()),
        )
    })
}

/// The position file's name for `path` in the state dir: `follow.<16 hex digits of its
/// SHA-256>` (0.1.0 kept it in the queue as `.follow.<same>`: [`FOLLOW_PREFIX`]).
pub fn state_name(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    format!(
        "{}{}",
        FOLLOW_PREFIX.trim_start_matches('.'),
        crate::hex::lower(&digest[..8])
    )
}

/// The positions saved in the state dir at `state_dir`: (followed file, position), for
/// `status`. Files that do not parse are skipped.
pub fn saved_positions(state_dir: &Path) -> io::Result<Vec<(PathBuf, Position)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(state_dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(FOLLOW_PREFIX.trim_start_matches('.')) || name.ends_with(".tmp") {
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

/// The position saved in `state`, and the path of the file it is for, read checked
/// ([`crate::safefs`]: no link, no FIFO) and at most [`MAX_POSITION_BYTES`] of it.
/// `keeper` is [`crate::safefs::Keeper::ThisProcess`] where the collector resumes from it (it
/// must be root's own), `Anyone` where `status` shows it.
pub fn read(
    state: &Path,
    keeper: crate::safefs::Keeper,
) -> io::Result<Option<(Position, PathBuf)>> {
    let text = match crate::safefs::Open::read(keeper).contents(state, MAX_POSITION_BYTES) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let fields = super::version::split_text(text.trim_end_matches('\n')).map_err(|newer| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: a follow position {newer}; remove it to start at the end of the index file",
                state.display()
            ),
        )
    })?;
    let mut f = fields.1.split('\t');
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safefs::Keeper;

    #[test]
    fn positions_carry_their_version_and_older_and_newer_ones_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".follow.test");
        let p = Position {
            dev: 1,
            ino: 2,
            offset: 3,
            tail: 0xab,
        };
        write(&state, &p, Path::new("/var/log/a\tb.log")).unwrap();
        let text = fs::read_to_string(&state).unwrap();
        assert_eq!(text, "v1\t1\t2\t3\t00000000000000ab\t/var/log/a\tb.log\n");
        let back = read(&state, Keeper::Anyone).unwrap().unwrap();
        assert_eq!(back, (p, PathBuf::from("/var/log/a\tb.log")));
        // 0.1.0's line: still read.
        fs::write(&state, "1\t2\t3\t00000000000000ab\t/x.log\n").unwrap();
        assert_eq!(read(&state, Keeper::Anyone).unwrap().unwrap().0, p);
        // A newer release's: refused, saying so.
        fs::write(&state, "v3\twhatever\n").unwrap();
        let e = read(&state, Keeper::Anyone).unwrap_err();
        assert!(e.to_string().contains("format version 3"), "{e}");
    }
}
