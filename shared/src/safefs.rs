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
//!
//! Two doors, and no other in the product: [`Open`] for a file (every open below the
//! queue, STATE_DIR, the storage dir, a configured log or index file, a queue entry) and
//! [`Dir`] for a directory, `show`'s files among them. (The config file has its own,
//! stricter rule, OpenSSH's StrictModes, in `config`, a module below this one.)

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, CWD};

/// The mode of files created here: the shipper's user (by ownership) and the group read
/// them; nobody else does (index lines and events carry clients' addresses and requests).
pub const CREATE_MODE: u32 = 0o640;

/// The error for an `open` refused at `path`, saying why in the operator's terms.
fn open_error(path: &Path, e: rustix::io::Errno) -> io::Error {
    use rustix::io::Errno;
    match e {
        Errno::LOOP | Errno::MLINK => refused(path, "is a symbolic link; not followed"),
        // O_WRONLY|O_NONBLOCK on a FIFO nobody reads.
        Errno::NXIO => refused(path, "is a FIFO, not a regular file; not opened"),
        e => io::Error::new(
            io::Error::from(e).kind(),
            OpenFailed {
                path: path.to_path_buf(),
                errno: e,
            },
        ),
    }
}

/// An `open` the system refused: the path and its errno, said as `path: what`.
#[derive(Debug)]
struct OpenFailed {
    path: std::path::PathBuf,
    errno: rustix::io::Errno,
}

impl std::fmt::Display for OpenFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.path.display(),
            io::Error::from(self.errno)
        )
    }
}

impl std::error::Error for OpenFailed {}

/// The errno of a failed open through [`Open`] (`EMFILE`, `ENOENT`…), where the system
/// refused it; `None` for what the door refused itself (a link, a FIFO, an owner).
pub fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()?
            .downcast_ref::<OpenFailed>()
            .map(|f| f.errno.raw_os_error())
    })
}

fn refused(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} {why}", path.display()),
    )
}

/// Checks a file opened (without following a link) in a directory owned by `dir_owner`:
/// it must be a regular file (not a FIFO or device someone planted), with at most one
/// link (a second name is a hard link to a file elsewhere: with
/// `fs.protected_hardlinks=0`, a user can link `/etc/shadow` into their directory), owned
/// by us or by `dir_owner` (when given). Zero links is a file removed since it was opened.
fn check_opened(
    fd: &impl std::os::fd::AsFd,
    dir_owner: Option<u32>,
    path: &Path,
) -> io::Result<rustix::fs::Stat> {
    let st = rustix::fs::fstat(fd)?;
    must_be_regular(&st, path)?;
    if st.st_nlink > 1 {
        return Err(refused(
            path,
            format!(
                "has {} hard links (a link to a file elsewhere?); not opened",
                st.st_nlink
            ),
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if let Some(dir_owner) = dir_owner.filter(|&o| st.st_uid != me && st.st_uid != o) {
        let why = if dir_owner == me {
            format!(
                "belongs to uid {}, not to us (uid {me}); not opened",
                st.st_uid
            )
        } else {
            format!(
                "belongs to uid {}, neither us (uid {me}) nor the directory's owner (uid {dir_owner}); not opened",
                st.st_uid
            )
        };
        return Err(refused(path, why));
    }
    Ok(st)
}

/// What a file type is called in an error message.
pub(crate) fn kind_name(kind: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType as T;
    match kind {
        T::RegularFile => "regular file",
        T::Directory => "directory",
        T::Symlink => "symbolic link",
        T::Fifo => "FIFO",
        T::Socket => "socket",
        T::CharacterDevice => "character device",
        T::BlockDevice => "block device",
        T::Unknown => "special file",
    }
}

/// Whose a file in another user's directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keeper {
    /// Shared with the directory's owner (the backlog, integrity markers, a log): it may
    /// be theirs, and what root creates is given to them, who read and remove it.
    DirOwner,
    /// This process's user's own (the collector's spool, its follow position): what it
    /// reads back as index lines or as where to resume must be its own, or the
    /// directory's owner could forge them. Created ours, readable by the directory's
    /// group (for `status`).
    ThisProcess,
    /// Only read, to be shown (`status`, run by any user): anyone's. Never with create.
    Anyone,
}

/// Opens `name` relative to the directory `dir` with `flags`, never following a link and
/// never blocking on a FIFO, and checks what it got ([`check_opened`]; with
/// [`Keeper::ThisProcess`], that it is ours). `O_TRUNC` is applied only after the check, so a
/// planted hard link is refused before anything is cut. A file root creates in another
/// user's directory is given to that user ([`Keeper::DirOwner`]) or to their group.
fn open_checked_at(
    dir: &impl std::os::fd::AsFd,
    name: &std::ffi::OsStr,
    path: &Path,
    flags: OFlags,
    keeper: Keeper,
) -> io::Result<File> {
    let dir_st = rustix::fs::fstat(dir)?;
    let me = nix::unistd::geteuid().as_raw();
    let owners = match keeper {
        Keeper::DirOwner => Some(dir_st.st_uid),
        Keeper::ThisProcess => Some(me),
        Keeper::Anyone => None,
    };
    debug_assert!(owners.is_some() || !flags.contains(OFlags::CREATE));
    let truncate = flags.contains(OFlags::TRUNC);
    let fd = rustix::fs::openat(
        dir,
        name,
        (flags - OFlags::TRUNC)
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::NOCTTY
            | OFlags::CLOEXEC,
        Mode::from_raw_mode(CREATE_MODE),
    )
    .map_err(|e| open_error(path, e))?;
    let st = check_opened(&fd, owners, path)?;
    if flags.contains(OFlags::CREATE) {
        give_to_owner_of(&fd, &st, &dir_st, keeper)?;
    }
    // (O_NONBLOCK stays: a regular file, which this now is, ignores it.)
    let file = File::from(fd);
    if truncate {
        file.set_len(0)?;
    }
    Ok(file)
}

/// Gives `fd` (whose status is `st`) to the owner and group of the directory `dir` holds
/// it in ([`Keeper::DirOwner`]), or only to its group ([`Keeper::ThisProcess`]), when we are root
/// and it is not so already.
fn give_to_owner_of(
    fd: &impl std::os::fd::AsFd,
    st: &rustix::fs::Stat,
    dir: &rustix::fs::Stat,
    keeper: Keeper,
) -> io::Result<()> {
    let uid = match keeper {
        Keeper::DirOwner => dir.st_uid,
        Keeper::ThisProcess | Keeper::Anyone => st.st_uid,
    };
    if !nix::unistd::geteuid().is_root() || (st.st_uid, st.st_gid) == (uid, dir.st_gid) {
        return Ok(());
    }
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(dir.st_gid)),
    )
    .map_err(io::Error::from)
}

/// Opens `path` as [`open_checked_at`] does, relative to its directory. The directory
/// itself is the one configured (its path is root's to choose, and may be a link);
/// only the last component is in the hands of the directory's owner.
fn open_checked(path: &Path, flags: OFlags, keeper: Keeper) -> io::Result<File> {
    let (dir, name) = open_parent(path)?;
    open_checked_at(&dir, name, path, flags, keeper)
}

/// The directory `path` is in, opened (following links: its path is the configured
/// one), and the name of `path` in it.
fn open_parent(path: &Path) -> io::Result<(OwnedFd, &std::ffi::OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| refused(path, "names no file"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| open_error(parent, e))?;
    Ok((dir, name))
}

/// What an open is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    /// Appending, created [`CREATE_MODE`] if missing.
    Append,
    /// Reading back, then appending (the journal), created if missing.
    ReadAppend,
    /// Writing from empty, created if missing (truncated only after the checks).
    Truncate,
}

impl Access {
    fn flags(self) -> OFlags {
        match self {
            Access::Read => OFlags::RDONLY,
            Access::Append => OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE,
            Access::ReadAppend => OFlags::RDWR | OFlags::APPEND | OFlags::CREATE,
            Access::Truncate => OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
        }
    }
}

/// How far the path is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// Its last component is in another user's hands: never followed, never a FIFO or
    /// device, one link, owned as the [`Keeper`] says (`open_checked_at`).
    Checked,
    /// Named by the configuration or the operator (an index file, a log file): in a
    /// directory only we may write, nobody could have planted anything, so it is opened
    /// as configured (`/dev/null`, a link we made; a read must still be a regular
    /// file); in any other directory, as [`Trust::Checked`].
    Configured,
    /// A queue entry: the event file itself, hard-linked from the storage dir (two
    /// links, www-data's), read by the shipper. Not followed, a regular file; its
    /// owner and links are not the question.
    Entry,
    /// Followed (symlink mode, where the link was judged already): a regular file.
    Followed,
}

/// The one door to a file in a directory another user writes, or a file such a user
/// may have put in place: what the open is for ([`Open::read`], [`Open::append`],
/// [`Open::read_append`], [`Open::truncate`]), whose the file must be ([`Keeper`]), and
/// how far its path is trusted (checked unless [`Open::configured`], [`Open::entry`] or
/// [`Open::following_links`] says otherwise). No open waits on a FIFO someone else
/// could have put there (only a configured file in a directory only we write may be
/// one, a FIFO a reader holds), and none gives a terminal. A directory is entered
/// through [`Dir`], the door for those.
///
/// ```
/// use modsec2sguil::safefs::{Keeper, Open};
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("backlog");
/// let mut log = Open::append(Keeper::DirOwner).at(&path)?;
/// let bytes = Open::read(Keeper::Anyone).contents(&path, 1 << 20)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Open {
    access: Access,
    keeper: Keeper,
    trust: Trust,
}

impl Open {
    const fn new(access: Access, keeper: Keeper) -> Open {
        Open {
            access,
            keeper,
            trust: Trust::Checked,
        }
    }

    /// For reading.
    pub const fn read(keeper: Keeper) -> Open {
        Open::new(Access::Read, keeper)
    }

    /// For appending, created [`CREATE_MODE`] if missing (and, by root in another user's
    /// directory, given to that user or their group: see [`Keeper`]).
    pub const fn append(keeper: Keeper) -> Open {
        Open::new(Access::Append, keeper)
    }

    /// For reading, then appending (a record file read back, then added to: the
    /// journal), created if missing.
    pub const fn read_append(keeper: Keeper) -> Open {
        Open::new(Access::ReadAppend, keeper)
    }

    /// For writing from empty, created if missing; cut only once the checks passed, so a
    /// planted hard link is refused before anything is lost.
    pub const fn truncate(keeper: Keeper) -> Open {
        Open::new(Access::Truncate, keeper)
    }

    /// The path is one the configuration or the operator names: see `Trust::Configured`.
    pub const fn configured(self) -> Open {
        Open {
            trust: Trust::Configured,
            ..self
        }
    }

    /// The file is a queue entry (reading only): see `Trust::Entry`.
    pub const fn entry(self) -> Open {
        Open {
            trust: Trust::Entry,
            ..self
        }
    }

    /// A symbolic link is followed (reading only; symlink mode, where the link was
    /// judged already); the file must still be a regular one.
    pub const fn following_links(self) -> Open {
        Open {
            trust: Trust::Followed,
            ..self
        }
    }

    /// Opens `path` (its directory is the configured one and may be reached through a
    /// link; only its last component is judged).
    pub fn at(self, path: &Path) -> io::Result<File> {
        let flags = self.access.flags();
        debug_assert!(
            self.access == Access::Read || matches!(self.trust, Trust::Checked | Trust::Configured),
            "only reads follow links or open entries"
        );
        match self.trust {
            Trust::Checked => open_checked(path, flags, self.keeper),
            Trust::Configured => open_configured(path, flags, self.keeper),
            Trust::Entry => open_regular(path, flags | OFlags::NOFOLLOW),
            Trust::Followed => open_regular(path, flags),
        }
    }

    /// Opens `name` in the directory `dir` (entered already through its checked handle),
    /// checked whatever the trust: nothing in another user's directory is configured.
    pub fn in_dir(self, dir: &Dir, name: &str) -> io::Result<File> {
        open_checked_at(
            &dir.fd,
            name.as_ref(),
            Path::new(name),
            self.access.flags(),
            self.keeper,
        )
    }

    /// Reads `path` whole if it holds at most `max_bytes`; a larger file is refused
    /// unread past the bound (a link to `/dev/zero` is refused as a device anyway).
    pub fn contents(self, path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
        read_bounded(self.at(path)?, max_bytes, path)
    }

    /// [`Open::contents`] of `name` in the directory `dir`, as [`Open::in_dir`] opens it.
    pub fn contents_in(self, dir: &Dir, name: &str, max_bytes: u64) -> io::Result<Vec<u8>> {
        read_bounded(self.in_dir(dir, name)?, max_bytes, Path::new(name))
    }
}

/// Reads `f` whole if it holds at most `max_bytes`, else refuses it naming `path`.
fn read_bounded(f: File, max_bytes: u64, path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    f.take(max_bytes + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max_bytes {
        return Err(refused(
            path,
            format!("holds more than {max_bytes} bytes; not read"),
        ));
    }
    Ok(out)
}

/// Opens `path`, a file the configuration names, with `flags`: in a directory only we
/// may write, as configured (a read must be a regular file); in any other directory,
/// checked for `keeper` (`open_checked_at`).
fn open_configured(path: &Path, flags: OFlags, keeper: Keeper) -> io::Result<File> {
    let (dir, name) = open_parent(path)?;
    if !only_ours(&dir)? {
        return open_checked_at(&dir, name, path, flags, keeper);
    }
    let reading = !flags.intersects(OFlags::WRONLY | OFlags::RDWR);
    let extra = if reading {
        OFlags::NONBLOCK
    } else {
        OFlags::empty()
    };
    let fd = rustix::fs::openat(
        &dir,
        name,
        flags | extra | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::from_raw_mode(CREATE_MODE),
    )
    .map_err(|e| open_error(path, e))?;
    if reading {
        must_be_regular(&rustix::fs::fstat(&fd)?, path)?;
    }
    Ok(File::from(fd))
}

/// Opens `path` with `flags` (with `O_NOFOLLOW` among them, a link is refused), never
/// waiting on a FIFO, and refuses anything but a regular file.
fn open_regular(path: &Path, flags: OFlags) -> io::Result<File> {
    let fd = rustix::fs::open(
        path,
        flags | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| open_error(path, e))?;
    must_be_regular(&rustix::fs::fstat(&fd)?, path)?;
    Ok(File::from(fd))
}

/// Refuses what `st` describes unless it is a regular file (not a FIFO that would block
/// a reader, not a device).
fn must_be_regular(st: &rustix::fs::Stat, path: &Path) -> io::Result<()> {
    let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
    if kind != rustix::fs::FileType::RegularFile {
        return Err(refused(
            path,
            format!("is a {}, not a regular file; not opened", kind_name(kind)),
        ));
    }
    Ok(())
}

/// Whether only we may write in `dir`: it is ours, without group or other write.
fn only_ours(dir: &impl std::os::fd::AsFd) -> io::Result<bool> {
    let st = rustix::fs::fstat(dir)?;
    Ok(st.st_uid == nix::unistd::geteuid().as_raw() && st.st_mode & 0o022 == 0)
}

/// How sure a replaced file must be to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Nothing waits for the disk: after a crash the old contents may be back (a
    /// record shown by `status`).
    Lazy,
    /// The new contents and the rename are on disk when [`replace`] returns (the
    /// journal, the `--follow` position).
    Synced,
}

/// Replaces the contents of `path` by `bytes` atomically: they are written to
/// `<name>.tmp` beside it (opened [`Open::truncate`] for `keeper`), then renamed over
/// `path`, so a reader or a crash sees the old contents or the new, never a mix. With
/// [`Durability::Synced`] the data is fsynced before the rename and the directory after
/// it. The temporary file is removed when anything fails.
pub fn replace(
    path: &Path,
    bytes: &[u8],
    keeper: Keeper,
    durability: Durability,
) -> io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let written = (|| {
        let mut f = Open::truncate(keeper).at(&tmp)?;
        f.write_all(bytes)?;
        if durability == Durability::Synced {
            f.sync_data()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if durability == Durability::Synced {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Appends `bytes` to `f` (opened for appending, and not written by anyone else
/// meanwhile: under a lock) whole or not at all: a write cut short (a full disk) is
/// taken back, so the file never ends in half a record. With `sync`, the data is on
/// disk when this returns.
pub fn append_whole(f: &mut File, bytes: &[u8], sync: bool) -> io::Result<()> {
    let before = f.metadata()?.len();
    let file = f.try_clone()?;
    append_whole_through(f, &file, before, bytes, sync)
}

/// [`append_whole`] with the writes going through `out` (for a test, a disk that fills
/// up) to `file`, whose length was `before`.
pub(crate) fn append_whole_through(
    out: &mut impl std::io::Write,
    file: &File,
    before: u64,
    bytes: &[u8],
    sync: bool,
) -> io::Result<()> {
    let written = out
        .write_all(bytes)
        .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
    if let Err(e) = written {
        if let Err(cut) = file.set_len(before) {
            log::warn!("a write cut short could not be taken back ({cut}): the file ends in part of a record");
        }
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

/// A directory (created 0750 if missing), opened without following a link.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    /// A directory root creates or opens is given to the owner of the one above it (the
    /// queue's `.integrity/` to the shipper's user, who removes its markers).
    pub fn open_or_create(path: &Path) -> io::Result<Dir> {
        match rustix::fs::mkdir(path, Mode::from_raw_mode(0o750)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let Dir { fd } = Self::open_nofollow(path)?;
        // Also one an earlier release created as root's.
        if let Some(parent) = path.parent() {
            let st = rustix::fs::fstat(&fd)?;
            give_to_owner_of(&fd, &st, &rustix::fs::stat(parent)?, Keeper::DirOwner)?;
        }
        Ok(Dir { fd })
    }

    /// Opens the directory at `path` (a link to one is followed: the shipper's side,
    /// whose EVENT_DIR may be configured through one).
    pub fn open(path: &Path) -> io::Result<Dir> {
        Self::open_with(path, OFlags::empty())
    }

    /// Opens the directory at `path`, refusing a symbolic link in its last component.
    pub fn open_nofollow(path: &Path) -> io::Result<Dir> {
        Self::open_with(path, OFlags::NOFOLLOW)
    }

    fn open_with(path: &Path, extra: OFlags) -> io::Result<Dir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | extra,
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
            e => io::Error::new(
                io::Error::from(e).kind(),
                format!("{}: {}", path.display(), io::Error::from(e)),
            ),
        })?;
        Ok(Dir { fd })
    }

    /// Hard-links `source` (itself: a symbolic link is not followed) as `name` here.
    pub fn link_from(&self, source: &Path, name: &str) -> io::Result<()> {
        rustix::fs::linkat(CWD, source, &self.fd, name, rustix::fs::AtFlags::empty())
            .map_err(io::Error::from)
    }

    /// Hard-links `from_name` in the directory `from` (itself: a symbolic link is not
    /// followed) as `name` here.
    pub fn link_from_dir(&self, from: &Dir, from_name: &str, name: &str) -> io::Result<()> {
        rustix::fs::linkat(
            &from.fd,
            from_name,
            &self.fd,
            name,
            rustix::fs::AtFlags::empty(),
        )
        .map_err(io::Error::from)
    }

    /// Whether `name` here is a regular file (not followed), and its status.
    pub fn regular(&self, name: &str) -> io::Result<bool> {
        let st = rustix::fs::statat(&self.fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile)
    }

    /// Makes `name` here a symbolic link to `target`.
    pub fn symlink(&self, target: &Path, name: &str) -> io::Result<()> {
        rustix::fs::symlinkat(target, &self.fd, name).map_err(io::Error::from)
    }

    /// Creates `name` in this directory, failing if it exists (as anything).
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(CREATE_MODE),
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

    /// The subdirectory `name` of this one (created 0750 if missing), entered through this
    /// handle without following a link, and given to this directory's owner.
    pub fn sub_or_create(&self, name: &str) -> io::Result<Dir> {
        let at = |e: rustix::io::Errno| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name} is not a directory (a symbolic link?); not followed"),
            ),
            e => io::Error::new(
                io::Error::from(e).kind(),
                format!("{name}: {}", io::Error::from(e)),
            ),
        };
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o750)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(at(e)),
        }
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(at)?;
        let st = rustix::fs::fstat(&fd)?;
        give_to_owner_of(&fd, &st, &rustix::fs::fstat(&self.fd)?, Keeper::DirOwner)?;
        Ok(Dir { fd })
    }

    /// Calls `each` with every name in this directory (read through the handle), holding
    /// none of them: a directory of a million names costs no memory.
    pub fn for_each_name(&self, mut each: impl FnMut(&str)) -> io::Result<()> {
        let dup = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)?;
        let mut dir = rustix::fs::Dir::new(dup)?;
        dir.rewind();
        while let Some(e) = dir.read() {
            if let Ok(name) = e?.file_name().to_str() {
                if name != "." && name != ".." {
                    each(name);
                }
            }
        }
        Ok(())
    }

    /// The directory's handle, for `*at` calls.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Flushes the directory's entries to disk (after a link or rename in it).
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd).map_err(io::Error::from)
    }

    /// Whether `name` exists in this directory, as anything (a link is not followed).
    pub fn has(&self, name: &str) -> bool {
        rustix::fs::statat(&self.fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    /// Renames `from` (a path) to `name` in this directory.
    pub fn move_here(&self, from: &Path, name: &str) -> io::Result<()> {
        rustix::fs::renameat(CWD, from, &self.fd, name).map_err(io::Error::from)
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
        let mut f = Open::append(Keeper::DirOwner).at(&path).unwrap();
        let mut room = Headroom::new(1 << 20);
        room.keep(&f, 0, &path);
        if room.unsupported {
            crate::testdata::skip_or_fail(
                "headroom_holds_space_past_the_end_without_growing_the_file",
                "no fallocate on this filesystem",
            );
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
        let e = Open::append(Keeper::DirOwner).at(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = Open::truncate(Keeper::DirOwner).at(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let sub = dir.path().join("sub");
        symlink(dir.path(), &sub).unwrap();
        let e = Dir::open_or_create(&sub).err().unwrap();
        assert!(e.to_string().contains("not a directory"), "{e}");
        let real = Dir::open_or_create(&dir.path().join("real")).unwrap();
        symlink(&victim, dir.path().join("real/x")).unwrap();
        assert!(Open::truncate(Keeper::DirOwner).in_dir(&real, "x").is_err());
        assert!(real.create_new("x").is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
        let mut f = real.create_new("y").unwrap();
        f.write_all(b"y").unwrap();
        real.link_to("y", &dir.path().join("y2")).unwrap();
        real.remove("y").unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("y2")).unwrap(), "y");
        let mut f = Open::append(Keeper::DirOwner)
            .at(&dir.path().join("log"))
            .unwrap();
        f.write_all(b"a").unwrap();
    }

    /// A directory that belongs to `uid` (the shipper's user), as EVENT_DIR does.
    fn dir_of(uid: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
        dir
    }

    #[test]
    fn planted_fifos_hard_links_and_foreign_files_are_refused_without_blocking() {
        use std::os::unix::fs::MetadataExt;
        if !crate::testdata::root_or_skip(
            "planted_fifos_hard_links_and_foreign_files_are_refused_without_blocking",
        ) {
            return;
        }
        let dir = dir_of(65534);
        let secret = tempfile::NamedTempFile::new_in(dir.path().parent().unwrap()).unwrap();
        std::fs::write(secret.path(), "root:$6$x\n").unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let hard = dir.path().join("hard");
        std::fs::hard_link(secret.path(), &hard).unwrap();
        let foreign = dir.path().join("foreign");
        std::fs::write(&foreign, "x").unwrap();
        std::os::unix::fs::chown(&foreign, Some(12345), None).unwrap();
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (path, why) in [
                (&fifo, "is a FIFO, not a regular file"),
                (&hard, "has 2 hard links"),
                (&foreign, "belongs to uid 12345, neither us (uid 0) nor the directory's owner (uid 65534)"),
            ] {
                for e in [
                    Open::append(Keeper::DirOwner).at(path).unwrap_err(),
                    Open::truncate(Keeper::DirOwner).at(path).unwrap_err(),
                    Open::read(Keeper::DirOwner).at(path).unwrap_err(),
                    Open::read(Keeper::DirOwner).contents(path, 100).unwrap_err(),
                ] {
                    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
                    assert!(e.to_string().contains(why), "{e}");
                    seen.push(e.to_string());
                }
            }
            done.send(seen).unwrap();
        });
        let seen = wait
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("an open blocked (on the FIFO?)");
        assert_eq!(seen.len(), 12);
        // Nothing was cut or written through the hard link, nor given away.
        let meta = std::fs::metadata(secret.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(secret.path()).unwrap(),
            "root:$6$x\n"
        );
        assert_eq!(meta.uid(), 0);
    }

    #[test]
    fn what_root_creates_in_another_users_directory_is_theirs_and_not_world_readable() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !crate::testdata::root_or_skip(
            "what_root_creates_in_another_users_directory_is_theirs_and_not_world_readable",
        ) {
            return;
        }
        let dir = dir_of(65534);
        let mut f = Open::append(Keeper::DirOwner)
            .at(&dir.path().join(".backlog"))
            .unwrap();
        f.write_all(b"line\n").unwrap();
        let sub = Dir::open_or_create(&dir.path().join(".integrity")).unwrap();
        Open::truncate(Keeper::DirOwner)
            .in_dir(&sub, "modsec.log.1.000001")
            .unwrap();
        // A directory an earlier release created as root's is given over too.
        std::fs::create_dir(dir.path().join(".tmp")).unwrap();
        Dir::open_or_create(&dir.path().join(".tmp")).unwrap();
        for (name, mode) in [
            (".backlog", 0o640),
            (".integrity", 0o750),
            (".integrity/modsec.log.1.000001", 0o640),
            (".tmp", 0o755),
        ] {
            let m = std::fs::metadata(dir.path().join(name)).unwrap();
            assert_eq!((m.uid(), m.gid()), (65534, 65534), "{name}");
            if name != ".tmp" {
                assert_eq!(m.permissions().mode() & 0o777, mode, "{name}");
            }
        }
        // Root's own directory: root keeps what it creates.
        let mine = tempfile::tempdir().unwrap();
        Open::append(Keeper::DirOwner)
            .at(&mine.path().join("log"))
            .unwrap();
        assert_eq!(std::fs::metadata(mine.path().join("log")).unwrap().uid(), 0);
    }

    #[test]
    fn an_entry_may_share_its_inode_but_is_never_a_link_or_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let event = dir.path().join("event");
        std::fs::write(&event, "event").unwrap();
        // The queue's hard link to the storage dir's file: two links, fine for an entry,
        // refused where one link is the rule.
        let entry = dir.path().join("modsec.log.1.000001");
        std::fs::hard_link(&event, &entry).unwrap();
        assert!(Open::read(Keeper::Anyone).entry().at(&entry).is_ok());
        let e = Open::read(Keeper::Anyone).at(&entry).unwrap_err();
        assert!(e.to_string().contains("has 2 hard links"), "{e}");
        // Symlink mode's entry: refused as an entry, followed when asked to.
        let link = dir.path().join("modsec.log.2.000002");
        symlink(&event, &link).unwrap();
        let e = Open::read(Keeper::Anyone).entry().at(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(Open::read(Keeper::Anyone)
            .following_links()
            .at(&link)
            .is_ok());
        // A FIFO, reached either way: refused at once, never waited on.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let to_fifo = dir.path().join("modsec.log.3.000003");
        symlink(&fifo, &to_fifo).unwrap();
        for e in [
            Open::read(Keeper::Anyone).entry().at(&fifo).unwrap_err(),
            Open::read(Keeper::Anyone)
                .following_links()
                .at(&to_fifo)
                .unwrap_err(),
            Open::read(Keeper::Anyone)
                .configured()
                .at(&fifo)
                .unwrap_err(),
        ] {
            assert!(
                e.to_string().contains("is a FIFO, not a regular file"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_system_s_errno_is_kept_and_the_door_s_own_refusals_have_none() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = Open::read(Keeper::Anyone).at(&missing).unwrap_err();
        assert_eq!(errno(&e), Some(libc::ENOENT));
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(
            e.to_string()
                .starts_with(&format!("{}: ", missing.display())),
            "{e}"
        );
        let link = dir.path().join("link");
        symlink(&missing, &link).unwrap();
        let e = Open::read(Keeper::Anyone).entry().at(&link).unwrap_err();
        assert_eq!(errno(&e), None, "{e}");
    }

    #[test]
    fn contents_reads_at_most_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pos");
        std::fs::write(&p, [b'1'; 100]).unwrap();
        assert_eq!(
            Open::read(Keeper::ThisProcess)
                .contents(&p, 100)
                .unwrap()
                .len(),
            100
        );
        let e = Open::read(Keeper::ThisProcess)
            .contents(&p, 99)
            .unwrap_err();
        assert!(e.to_string().contains("holds more than 99 bytes"), "{e}");
        symlink("/dev/zero", dir.path().join("zero")).unwrap();
        assert!(Open::read(Keeper::Anyone)
            .contents(&dir.path().join("zero"), 1 << 30)
            .is_err());
    }

    #[test]
    fn the_collectors_own_files_stay_its_own() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !crate::testdata::root_or_skip("the_collectors_own_files_stay_its_own") {
            return;
        }
        let dir = dir_of(65534);
        // Created: root's, readable by the directory's group (status), nobody else.
        Open::append(Keeper::ThisProcess)
            .at(&dir.path().join(".spool.1"))
            .unwrap();
        let m = std::fs::metadata(dir.path().join(".spool.1")).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.permissions().mode() & 0o777),
            (0, 65534, 0o640)
        );
        assert!(Open::read(Keeper::ThisProcess)
            .at(&dir.path().join(".spool.1"))
            .is_ok());
        // One the directory's owner wrote (forged index lines): refused for the
        // collector, fine to show.
        let forged = dir.path().join(".spool.2");
        std::fs::write(&forged, "forged\n").unwrap();
        std::os::unix::fs::chown(&forged, Some(65534), Some(65534)).unwrap();
        let e = Open::read(Keeper::ThisProcess).at(&forged).unwrap_err();
        assert!(e.to_string().contains("belongs to uid 65534"), "{e}");
        assert!(Open::read(Keeper::DirOwner).at(&forged).is_ok());
        assert!(Open::read(Keeper::Anyone).at(&forged).is_ok());
    }

    #[test]
    fn replace_is_all_or_nothing_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".journal");
        for durability in [Durability::Lazy, Durability::Synced] {
            replace(&p, b"one\n", Keeper::DirOwner, durability).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), b"one\n");
            replace(&p, b"two\n", Keeper::DirOwner, durability).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), b"two\n");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A link planted at the temporary name: refused, the old contents stay, the
        // victim is untouched.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        symlink(&victim, dir.path().join(".journal.tmp")).unwrap();
        let e = replace(&p, b"three\n", Keeper::DirOwner, Durability::Synced).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"two\n");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }
}
