//! Writing inside a directory someone else may write to, without following links.
//!
//! The collector runs as root (Apache starts it so) and writes into the queue, which
//! belongs to the shipper's user. A symbolic link planted there (`.backlog ->
//! /etc/cron.d/x`, `.tmp -> /etc`) must not turn root's writes — of index lines, which
//! carry attacker-chosen request lines — into writes elsewhere. So every file the
//! collector creates or appends to below the queue is opened with `O_NOFOLLOW`, and the
//! queue's own subdirectories are opened as directories without following a link and
//! written through that handle (`openat`, `linkat`), so swapping one for a link between
//! a check and a use gains nothing.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, CWD};

fn nofollow_error(path: &Path, e: rustix::io::Errno) -> io::Error {
    if e == rustix::io::Errno::LOOP {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a symbolic link; not followed", path.display()),
        )
    } else {
        io::Error::from(e)
    }
}

/// Opens `path` for appending (created with the umask's mode if missing, as `File::create` does), refusing a symbolic link.
pub fn append_nofollow(path: &Path) -> io::Result<File> {
    let fd = rustix::fs::open(
        path,
        OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )
    .map_err(|e| nofollow_error(path, e))?;
    Ok(File::from(fd))
}

/// Creates or truncates `path` for writing (the umask's mode if new), refusing a symbolic link.
pub fn create_nofollow(path: &Path) -> io::Result<File> {
    let fd = rustix::fs::open(
        path,
        OFlags::WRONLY | OFlags::TRUNC | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )
    .map_err(|e| nofollow_error(path, e))?;
    Ok(File::from(fd))
}

/// Appends `bytes` to `f` (opened for appending, and not written by anyone else
/// meanwhile: under a lock) whole or not at all: a write cut short (a full disk) is
/// taken back, so the file never ends in half a record. With `sync`, the data is on
/// disk when this returns.
pub fn append_whole(f: &mut File, bytes: &[u8], sync: bool) -> io::Result<()> {
    use std::io::Write;
    let before = f.metadata()?.len();
    let written = f
        .write_all(bytes)
        .and_then(|()| if sync { f.sync_data() } else { Ok(()) });
    if let Err(e) = written {
        let _ = f.set_len(before);
        return Err(e);
    }
    Ok(())
}

/// Disk space held past the end of an append-only file (`fallocate` with
/// `FALLOC_FL_KEEP_SIZE`: allocated, but not part of the file), so that its next appends
/// do not need free space.
///
/// The shipper's journal and delivered log live in the queue, whose filesystem the
/// queue itself can fill (copies of event files, while sguild is away). Every send needs
/// a journal record first and every removal a delivered record, so a queue filesystem
/// full to the last block could never drain: nothing would be sent, so nothing removed.
/// With space held in advance, the shipper goes on appending on a full filesystem,
/// and each event it delivers frees its entry. The space is topped up after appends
/// while the filesystem has room; on a filesystem without `fallocate` there is none
/// (and a full disk stops the shipper until there is room, as before).
#[derive(Debug)]
pub struct Headroom {
    /// Bytes to hold past the end.
    ahead: u64,
    /// The file's length up to which its blocks are known to be allocated.
    until: u64,
    /// The last top-up failed for want of space (said once, until it succeeds again).
    short: bool,
    /// `fallocate` is not supported here: never tried again.
    unsupported: bool,
}

impl Headroom {
    pub fn new(ahead: u64) -> Headroom {
        Headroom {
            ahead,
            until: 0,
            short: false,
            unsupported: false,
        }
    }

    /// Bytes held past `len`, as far as is known.
    pub fn left(&self, len: u64) -> u64 {
        self.until.saturating_sub(len)
    }

    /// The file was truncated or replaced: what was held is gone.
    pub fn forget(&mut self) {
        self.until = 0;
    }

    /// Makes sure `ahead` bytes are held past `len` (the file's length now) when less
    /// than half of it is left. A full filesystem is said once (naming `path`) and
    /// leaves the appends to what is still held.
    pub fn keep(&mut self, f: &File, len: u64, path: &Path) {
        if self.unsupported || self.until >= len + self.ahead / 2 {
            return;
        }
        use rustix::io::Errno;
        match rustix::fs::fallocate(f, rustix::fs::FallocateFlags::KEEP_SIZE, len, self.ahead) {
            Ok(()) => {
                if self.short {
                    log::info!("{}: room on the filesystem again", path.display());
                }
                self.until = len + self.ahead;
                self.short = false;
            }
            Err(Errno::NOSPC | Errno::DQUOT) => {
                if !self.short {
                    log::warn!(
                        "{}: the filesystem is full; appending goes on in the {} bytes held in advance",
                        path.display(),
                        self.left(len)
                    );
                }
                self.short = true;
            }
            Err(e @ (Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL)) => {
                log::debug!(
                    "{}: cannot hold space in advance ({e}); a full filesystem will stop appends",
                    path.display()
                );
                self.unsupported = true;
            }
            Err(e) => {
                if !self.short {
                    log::warn!("{}: cannot hold space in advance: {e}", path.display());
                }
                self.short = true;
            }
        }
    }
}

/// A directory (created if missing; the umask applies), opened without following a link.
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    pub fn open_or_create(path: &Path) -> io::Result<Dir> {
        match rustix::fs::mkdir(path, Mode::from_raw_mode(0o777)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a directory (a symbolic link?); not followed",
                    path.display()
                ),
            ),
            e => e.into(),
        })?;
        Ok(Dir { fd })
    }

    /// Creates `name` in this directory, failing if it exists (as anything).
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )?;
        Ok(File::from(fd))
    }

    /// Creates or truncates `name` in this directory, refusing a symbolic link.
    pub fn create(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )?;
        Ok(File::from(fd))
    }

    /// Hard-links `name` (in this directory) to the absolute or relative `target`.
    pub fn link_to(&self, name: &str, target: &Path) -> io::Result<()> {
        rustix::fs::linkat(&self.fd, name, CWD, target, rustix::fs::AtFlags::empty())
            .map_err(io::Error::from)
    }

    pub fn remove(&self, name: &str) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, name, rustix::fs::AtFlags::empty()).map_err(io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::symlink;

    #[test]
    fn headroom_holds_space_past_the_end_without_growing_the_file() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut f = append_nofollow(&path).unwrap();
        let mut room = Headroom::new(1 << 20);
        room.keep(&f, 0, &path);
        if room.unsupported {
            eprintln!("SKIP: no fallocate on this filesystem");
            return;
        }
        let m = f.metadata().unwrap();
        assert_eq!(m.len(), 0, "the held space is not part of the file");
        assert!(m.blocks() * 512 >= 1 << 20, "{} blocks", m.blocks());
        assert_eq!(room.left(0), 1 << 20);
        // Appends use it; it is topped up once less than half is left.
        f.write_all(&[b'x'; 600 * 1024]).unwrap();
        room.keep(&f, 600 * 1024, &path);
        assert_eq!(room.left(600 * 1024), 1 << 20);
        assert!(f.metadata().unwrap().blocks() * 512 >= 600 * 1024 + (1 << 20));
        room.forget();
        assert_eq!(room.left(0), 0);
    }

    #[test]
    fn planted_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep\n").unwrap();
        let link = dir.path().join("link");
        symlink(&victim, &link).unwrap();
        let e = append_nofollow(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = create_nofollow(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let sub = dir.path().join("sub");
        symlink(dir.path(), &sub).unwrap();
        let e = Dir::open_or_create(&sub).err().unwrap();
        assert!(e.to_string().contains("not a directory"), "{e}");
        let real = Dir::open_or_create(&dir.path().join("real")).unwrap();
        symlink(&victim, dir.path().join("real/x")).unwrap();
        assert!(real.create("x").is_err());
        assert!(real.create_new("x").is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
        let mut f = real.create_new("y").unwrap();
        f.write_all(b"y").unwrap();
        real.link_to("y", &dir.path().join("y2")).unwrap();
        real.remove("y").unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("y2")).unwrap(), "y");
        let mut f = append_nofollow(&dir.path().join("log")).unwrap();
        f.write_all(b"a").unwrap();
    }
}
