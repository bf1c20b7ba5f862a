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
