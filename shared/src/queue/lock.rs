//! The queue lock: one shipper at a time (a cron `drain` and a daemon, or two crons).

use std::fs::File;
use std::io;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use super::layout::LOCK_FILE;

/// Held until dropped (the kernel releases it when the process dies, even by SIGKILL).
#[derive(Debug)]
pub struct QueueLock {
    _file: File,
}

impl QueueLock {
    /// Takes the lock if it is free; `Ok(None)` when another process holds it. (Never
    /// waits in `flock`: a shipper waiting for the lock must still see a SIGTERM, so
    /// `ship::run` polls.)
    pub fn acquire(queue_dir: &Path) -> io::Result<Option<QueueLock>> {
        // Not followed if planted: a shipper without RUNAS runs as root here.
        let file = crate::safefs::Open::append(crate::safefs::Keeper::DirOwner)
            .at(&queue_dir.join(LOCK_FILE))?;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Some(QueueLock { _file: file })),
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => return Ok(None),
                Err(e) if e == rustix::io::Errno::INTR => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = QueueLock::acquire(dir.path()).unwrap();
        assert!(first.is_some());
        assert!(QueueLock::acquire(dir.path()).unwrap().is_none());
        drop(first);
        assert!(QueueLock::acquire(dir.path()).unwrap().is_some());
    }

    #[test]
    fn a_planted_lock_link_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me\n").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(LOCK_FILE)).unwrap();
        let e = QueueLock::acquire(dir.path()).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
    }
}
