//! Where an entry goes once handled: removed when its event is stored (or it is not an
//! alert), or quarantined to `failed/` with its reason.

use std::fs;
use std::io;
use std::path::Path;

use super::{ShipError, Shipper};

impl Shipper {
    /// Removes a done entry (and, with SYMLINK_REMOVE_ORIG, its target). False when the
    /// entry could not be removed.
    pub(super) fn remove_entry(&self, entry: &str, target: Option<&Path>) -> bool {
        let removed = match self.queue.remove(entry) {
            Ok(()) => true,
            Err(e) => {
                let path = self.queue.dir().join(entry);
                log::error!("{}: delivered but cannot be removed: {e}", path.display());
                false
            }
        };
        if removed && self.released.contains(entry) {
            crate::queue::held::forget_release(self.queue.dir(), entry);
        }
        if removed && self.settings.remove_orig {
            if let Some(t) = target {
                if let Err(e) = fs::remove_file(t) {
                    log::warn!("{}: SYMLINK_REMOVE_ORIG: {e}", t.display());
                }
            }
        }
        removed
    }

    pub(super) fn quarantine(&mut self, entry: &str, why: &str) -> Result<(), ShipError> {
        let dir = self.queue.dir().to_path_buf();
        match self.queue.quarantine(entry, why) {
            Ok(to) => {
                log::warn!(
                    "{}: quarantined to {}: {why}",
                    dir.join(entry).display(),
                    to.display()
                );
                self.stats.quarantined += 1;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            // An earlier release, run as root without RUNAS, made failed/ root's.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(ShipError::Io {
                path: crate::queue::failed::dir(&dir),
                source: io::Error::new(
                    e.kind(),
                    format!(
                        "{e} (the shipper works on the queue as its owner: give failed/ to \
                         them, e.g. chown -R --reference={} {}/failed)",
                        dir.display(),
                        dir.display()
                    ),
                ),
            }),
            Err(e) => Err(ShipError::Io {
                path: crate::queue::failed::dir(&dir),
                source: e,
            }),
        }
    }
}
