//! Opening and parsing one queue entry, refusing what must not be read.
//!
//! Entries are opened with `O_NOFOLLOW` (a symlink planted in the queue is not followed)
//! and `O_NONBLOCK` (a FIFO cannot hang the shipper), then checked to be regular files
//! of a sane size. In symlink mode (the collector's `SYMLINK 1`) a symlink is followed
//! only to a file inside the storage dir.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::auditlog::{read_event_file_unhashed, AuditEvent, ParseLimits, RawEvent};

use crate::queue::DEFAULT_MAX_EVENT_BYTES;
use crate::safefs::{Keeper, Open};

/// How entries are opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Follow symlinked entries (SYMLINK / LINK_MODE symlink), but only into `storage_dir`.
    pub follow_symlinks: bool,
    /// Canonical storage dir (required to follow symlinks).
    pub storage_dir: Option<PathBuf>,
    pub max_event_bytes: u64,
    pub limits: ParseLimits,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            follow_symlinks: false,
            storage_dir: None,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            limits: ParseLimits::default(),
        }
    }
}

/// An entry read and parsed.
#[derive(Debug)]
pub struct Loaded {
    pub raw: RawEvent,
    pub event: AuditEvent,
    /// Inode of the entry itself (of the symlink, in symlink mode).
    pub ino: u64,
    /// The file a symlinked entry points to.
    pub target: Option<PathBuf>,
}

/// Why an entry cannot be shipped (said in its `.reason` file).
#[derive(Debug)]
pub enum LoadError {
    /// The entry vanished (removed by an operator, or by another shipper without the
    /// lock): nothing to do.
    Gone,
    /// Anything else: the entry is quarantined with this text.
    Refused(String),
}

fn refused(text: impl Into<String>) -> LoadError {
    LoadError::Refused(text.into())
}

/// Opens an entry (or, in symlink mode, the canonical file it names) through the
/// safe-open door: not followed, a regular file, never waiting on a FIFO.
fn open_entry(path: &Path) -> io::Result<File> {
    Open::read(Keeper::Anyone).entry().at(path)
}

/// What a file type is called, with its article ("a FIFO").
fn kind(m: &fs::Metadata) -> String {
    let kind = crate::safefs::kind_name(rustix::fs::FileType::from_raw_mode(m.mode()));
    format!("a {kind}")
}

/// Reads and parses the entry `file_name` of `queue_dir`.
pub fn load_entry(queue_dir: &Path, file_name: &str, o: &LoadOptions) -> Result<Loaded, LoadError> {
    let path = queue_dir.join(file_name);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LoadError::Gone),
        Err(e) => return Err(refused(format!("cannot stat: {e}"))),
    };
    let ino = meta.ino();
    let (file, read_path, target) = if meta.file_type().is_symlink() {
        if !o.follow_symlinks {
            return Err(refused(
                "a symlink, and symlink mode (SYMLINK 1 / LINK_MODE symlink) is off: not followed",
            ));
        }
        let link = fs::read_link(&path).map_err(|e| refused(format!("cannot read link: {e}")))?;
        let real = match fs::canonicalize(queue_dir.join(&link)) {
            Ok(p) => p,
            Err(e) => {
                return Err(refused(format!(
                    "symlink to {}, which cannot be opened: {e}",
                    link.display()
                )))
            }
        };
        let inside = o.storage_dir.as_ref().is_some_and(|d| real.starts_with(d));
        if !inside {
            return Err(refused(format!(
                "symlink to {}, outside the storage dir {}",
                real.display(),
                o.storage_dir
                    .as_ref()
                    .map_or("(STORAGE_DIR not set)".into(), |d| d.display().to_string())
            )));
        }
        let f = open_entry(&real).map_err(|e| refused(format!("cannot open: {e}")))?;
        (f, real.clone(), Some(real))
    } else if !meta.is_file() {
        // Named here as the operator thinks of it; the door refuses it anyway.
        return Err(refused(format!("{}, not an event file", kind(&meta))));
    } else {
        match open_entry(&path) {
            Ok(f) => (f, path.clone(), None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LoadError::Gone),
            Err(e) => return Err(refused(format!("cannot open: {e}"))),
        }
    };
    let fmeta = file
        .metadata()
        .map_err(|e| refused(format!("cannot stat: {e}")))?;
    if fmeta.len() > o.max_event_bytes {
        return Err(refused(format!(
            "the file is {} bytes, over MAX_EVENT_BYTES ({}); raise it to ship such events",
            fmeta.len(),
            o.max_event_bytes
        )));
    }
    let raw = read_event_file_unhashed(&read_path, file, &o.limits)
        .map_err(|e| refused(format!("cannot read: {e}")))?;
    let event = raw.parse(&o.limits).map_err(|e| {
        // Every parse failure under one reason kind (`status` groups by it), said once.
        refused(match e {
            crate::auditlog::AuditLogError::NotAnEvent { .. } => e.to_string(),
            e => format!("not a ModSecurity audit-log event: {e}"),
        })
    })?;
    Ok(Loaded {
        raw,
        event,
        ino,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_no_event_is_refused_with_the_reason_said_once() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("modsec.log.1.000001", "just some text\n"),
            (
                "modsec.log.2.000002",
                "--abc-A--\nnot a header\n--abc-Z--\n",
            ),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
            let Err(LoadError::Refused(why)) =
                load_entry(dir.path(), name, &LoadOptions::default())
            else {
                panic!("{name} was not refused");
            };
            assert!(
                why.starts_with("not a ModSecurity audit-log event: "),
                "{why}"
            );
            assert_eq!(
                why.matches("not a ModSecurity audit-log event").count(),
                1,
                "{why}"
            );
        }
    }
}
