//! The index file the collector keeps for Apache (SecAuditLog's file, as
//! modsec-auditlog-collector kept it): every line, unchanged, in the order read.
//!
//! It is opened and written by the committer, never by the reader, and never before the
//! first line: an index file whose `open()` hangs (a dead NFS mount, a stuck disk, a FIFO
//! nobody reads) then holds up the committer only, while the reader goes on reading and
//! lines spill to the spool, exactly as when the committer is slow. (Opened at start-up,
//! on the main thread, it kept the reader from ever starting: Apache's children blocked on
//! the full pipe, 18 requests/s instead of 899.) A file that cannot be opened or written
//! is tried again with each line; the lines meanwhile are held, up to [`MAX_HELD_BYTES`],
//! and written first once it works again.
//!
//! Root opens it where the configuration says; in a directory another user may write,
//! a link, FIFO or device planted in its place is refused, never written through
//! ([`crate::safefs::Open::configured`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Index lines held while the index file cannot be written: ~10,000 lines of ModSecurity's
/// usual 400 bytes. Past it the oldest line is logged in full (it is queued or in the
/// backlog either way) and left out of the index file.
pub const MAX_HELD_BYTES: usize = 4 * 1024 * 1024;

/// The index file, opened on first use.
pub struct IndexFile {
    path: PathBuf,
    file: Option<File>,
    /// Lines not yet written, oldest first.
    held: VecDeque<Vec<u8>>,
    held_bytes: usize,
    /// The last attempt failed (said once per outage).
    failing: bool,
}

impl IndexFile {
    /// The index file at `path`; nothing is opened yet.
    pub fn new(path: &Path) -> IndexFile {
        IndexFile {
            path: path.to_path_buf(),
            file: None,
            held: VecDeque::new(),
            held_bytes: 0,
            failing: false,
        }
    }

    /// Opens the file again before the next line (SIGHUP: it was rotated).
    pub fn reopen(&mut self) {
        self.file = None;
    }

    /// Lines held because the file could not be written.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Appends `raw` (a newline added if it has none), after any lines still held.
    pub fn append(&mut self, raw: &[u8]) {
        // Per index line: while the file works, the line goes straight to it, with no
        // copy and no queue.
        if self.held.is_empty() && raw.ends_with(b"\n") {
            if let Some(f) = self.file.as_mut() {
                match f.write_all(raw) {
                    Ok(()) => return,
                    Err(e) => {
                        self.file = None;
                        self.failed(&e);
                    }
                }
            }
        }
        let mut line = raw.to_vec();
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        self.held_bytes += line.len();
        self.held.push_back(line);
        while self.held_bytes > MAX_HELD_BYTES {
            let Some(old) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= old.len();
            log::error!(
                "{}: more than {MAX_HELD_BYTES} bytes of lines wait for the index file; this one is left out of it (its event is queued or in the backlog): {}",
                self.path.display(),
                String::from_utf8_lossy(&old).trim_end()
            );
        }
        self.write_held();
    }

    fn write_held(&mut self) {
        if self.file.is_none() {
            match crate::safefs::Open::append(crate::safefs::Keeper::DirOwner)
                .configured()
                .at(&self.path)
            {
                Ok(f) => self.file = Some(f),
                Err(e) => return self.failed(&e),
            }
        }
        let Some(f) = self.file.as_mut() else {
            return;
        };
        while let Some(line) = self.held.front() {
            if let Err(e) = f.write_all(line) {
                self.file = None;
                return self.failed(&e);
            }
            self.held_bytes -= line.len();
            self.held.pop_front();
        }
        if self.failing {
            self.failing = false;
            log::info!(
                "{}: writable again; the lines held meanwhile are written",
                self.path.display()
            );
        }
    }

    fn failed(&mut self, e: &std::io::Error) {
        if !self.failing {
            log::error!(
                "cannot write the index file {}: {e}; holding its lines (up to {MAX_HELD_BYTES} bytes) and trying again with each line",
                self.path.display()
            );
        }
        self.failing = true;
    }
}

impl Drop for IndexFile {
    /// Lines still held at exit are logged in full: the log is then the only copy of
    /// them outside the queue and the backlog.
    fn drop(&mut self) {
        for line in &self.held {
            log::error!(
                "{}: never written to the index file: {}",
                self.path.display(),
                String::from_utf8_lossy(line).trim_end()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_opened_before_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.log");
        let mut f = IndexFile::new(&path);
        assert!(!path.exists());
        f.append(b"one");
        assert_eq!(std::fs::read(&path).unwrap(), b"one\n");
    }

    #[test]
    fn lines_that_could_not_be_written_go_first_once_the_file_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/index.log");
        let mut f = IndexFile::new(&path);
        f.append(b"one\n");
        f.append(b"two\n");
        assert_eq!(f.held(), 2);
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        f.append(b"three\n");
        assert_eq!(f.held(), 0);
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\nthree\n");
        // Rotated: SIGHUP, then the next line opens the new file.
        std::fs::rename(&path, dir.path().join("logs/index.log.1")).unwrap();
        f.reopen();
        f.append(b"four\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"four\n");
    }

    #[test]
    fn in_a_directory_others_write_a_planted_link_or_fifo_is_refused_and_the_lines_held() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me\n").unwrap();
        let path = logs.join("index.log");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let mut f = IndexFile::new(&path);
        f.append(b"one\n");
        assert_eq!((f.held(), f.failing), (1, true));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
        // A FIFO nobody reads: refused at once, not waited on.
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        f.append(b"two\n");
        assert_eq!(f.held(), 2);
        // Once a regular file is there again, the held lines go first.
        std::fs::remove_file(&path).unwrap();
        f.append(b"three\n");
        assert_eq!((f.held(), f.failing), (0, false));
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\nthree\n");
    }

    #[test]
    fn as_root_dev_null_is_opened_as_it_is() {
        // /dev/null is the usual "no index file" of modsec-auditlog-collector users;
        // /dev is root's alone, so only root (the collector) opens it as it is.
        if !crate::testdata::root_or_skip("as_root_dev_null_is_opened_as_it_is") {
            return;
        }
        let mut f = IndexFile::new(Path::new("/dev/null"));
        f.append(b"one\n");
        assert_eq!((f.held(), f.failing), (0, false));
    }

    #[test]
    fn in_a_directory_only_we_write_the_configured_path_is_opened_as_it_is() {
        // A link we made ourselves in our own directory is followed.
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.log");
        let link = dir.path().join("index.log");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut f = IndexFile::new(&link);
        f.append(b"one\n");
        assert_eq!(std::fs::read(&real).unwrap(), b"one\n");
    }

    #[test]
    fn a_write_that_fails_holds_the_line_and_opens_the_file_again() {
        // /dev/full opens, and every write to it fails with ENOSPC.
        let mut f = IndexFile::new(Path::new("/dev/full"));
        f.append(b"one\n");
        assert_eq!(f.held(), 1);
        assert!(f.failing);
        f.append(b"two\n");
        assert_eq!(f.held(), 2);
        // The file works again (here: another path, as after a rotation fixed it).
        let dir = tempfile::tempdir().unwrap();
        f.path = dir.path().join("index.log");
        f.append(b"three\n");
        assert_eq!((f.held(), f.failing), (0, false));
        assert_eq!(std::fs::read(&f.path).unwrap(), b"one\ntwo\nthree\n");
    }

    #[test]
    fn held_lines_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = IndexFile::new(&dir.path().join("missing/index.log"));
        let line = vec![b'x'; 1000];
        for _ in 0..(MAX_HELD_BYTES / 1001 + 10) {
            f.append(&line);
        }
        assert!(f.held_bytes <= MAX_HELD_BYTES);
        assert_eq!(f.held(), MAX_HELD_BYTES / 1001);
    }
}
