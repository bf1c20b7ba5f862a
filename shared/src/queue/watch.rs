//! Waking the shipper when an entry arrives (ARCHITECTURE.md, "The queue"): inotify on
//! EVENT_DIR for names linked (`IN_CREATE`: hard links, symbolic links and the copies
//! linked in from `.tmp/` all appear as creates) or renamed (`IN_MOVED_TO`, `requeue`)
//! into it.
//!
//! The watch is only a doorbell; the listing stays the truth. It is set before the
//! queue is first listed, so an entry linked while a listing runs rings it afterwards
//! and none waits for the poll. When the kernel's event queue overflows
//! (`IN_Q_OVERFLOW`) that is a ring too (the caller lists everything). When inotify is
//! not available, the watch cannot be set, or is lost (the directory removed or
//! unmounted), [`Watch::wait`] only sleeps: the caller's poll then finds the entries,
//! as it does on filesystems whose changes inotify does not see (NFS written by
//! another host).

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchMask};

use super::EntryName;

/// How often a wait looks at `stopped` (a Stop is obeyed within this).
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Why [`Watch::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// An entry was linked or renamed into the queue.
    Arrived,
    /// The kernel dropped events: anything may have arrived.
    Overflowed,
    /// The watch is gone (the directory was removed, or reading it failed); from now on
    /// only the poll finds entries.
    Lost,
    /// `until` passed: time for the poll.
    TimedOut,
    /// `stopped` said so.
    Stopped,
}

/// A watch on a queue directory, or none (then waits only sleep).
pub struct Watch {
    dir: PathBuf,
    inotify: Option<Inotify>,
    buffer: Vec<u8>,
}

impl Watch {
    /// Starts watching `dir`. Never fails: why it could not watch is in
    /// [`Watch::start_or_why`]'s error, here only logged by the caller's choice.
    pub fn start(dir: &Path) -> Watch {
        Watch::start_or_why(dir).unwrap_or_else(|(w, _)| w)
    }

    /// Starts watching `dir`; Err holds an unwatched `Watch` (waits only sleep) and
    /// why inotify could not be used.
    pub fn start_or_why(dir: &Path) -> Result<Watch, (Watch, io::Error)> {
        let unwatched = |e| {
            let w = Watch {
                dir: dir.to_path_buf(),
                inotify: None,
                buffer: Vec::new(),
            };
            (w, e)
        };
        let inotify = Inotify::init().map_err(unwatched)?;
        inotify
            .watches()
            .add(
                dir,
                WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::ONLYDIR,
            )
            .map_err(unwatched)?;
        Ok(Watch {
            dir: dir.to_path_buf(),
            inotify: Some(inotify),
            buffer: vec![0; 16 * 1024],
        })
    }

    /// Whether entries wake [`Watch::wait`] (else only the poll finds them).
    pub fn watching(&self) -> bool {
        self.inotify.is_some()
    }

    /// Waits until an entry arrives (or may have: an overflow), `until` passes, or
    /// `stopped()` says so. Rings that came since the last wait (entries linked while
    /// the queue was being listed) return at once, even past `until`.
    pub fn wait(&mut self, until: Instant, stopped: &dyn Fn() -> bool) -> Woken {
        loop {
            if stopped() {
                return Woken::Stopped;
            }
            if let Some(rang) = self.take_rings() {
                return rang;
            }
            let now = Instant::now();
            if now >= until {
                return Woken::TimedOut;
            }
            let slice = STOP_CHECK.min(until - now);
            match &self.inotify {
                Some(inotify) => {
                    let fd = inotify.as_fd();
                    let mut fds = [rustix::event::PollFd::new(
                        &fd,
                        rustix::event::PollFlags::IN,
                    )];
                    let timeout = rustix::event::Timespec {
                        tv_sec: 0,
                        tv_nsec: slice.as_nanos() as _,
                    };
                    match rustix::event::poll(&mut fds, Some(&timeout)) {
                        Ok(_) | Err(rustix::io::Errno::INTR) => {}
                        Err(e) => {
                            self.lose(&io::Error::from(e));
                            return Woken::Lost;
                        }
                    }
                }
                None => std::thread::sleep(slice),
            }
        }
    }

    /// Reads every pending event without blocking: the strongest ring among them, or
    /// `None` when nothing of interest came.
    fn take_rings(&mut self) -> Option<Woken> {
        let inotify = self.inotify.as_mut()?;
        let mut rang = None;
        loop {
            let events = match inotify.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return rang,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.lose(&e);
                    return Some(Woken::Lost);
                }
            };
            let mut lost = false;
            for event in events {
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    rang = Some(Woken::Overflowed);
                } else if event.mask.contains(EventMask::IGNORED) {
                    lost = true;
                } else if rang.is_none()
                    && event
                        .name
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| EntryName::parse(n).is_some())
                {
                    rang = Some(Woken::Arrived);
                }
            }
            if lost {
                self.lose(&io::Error::other("the directory was removed or unmounted"));
                return Some(Woken::Lost);
            }
        }
    }

    fn lose(&mut self, why: &io::Error) {
        log::warn!(
            "{}: no longer watched ({why}); new entries are found by the poll",
            self.dir.display()
        );
        self.inotify = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(200)
    }

    #[test]
    fn an_entry_linked_or_renamed_in_rings_and_the_tools_own_files_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Watch::start_or_why(dir.path()).map_err(|(_, e)| e).unwrap();
        assert!(w.watching());
        // The shipper's own records, replaced by rename, and hidden dirs: no ring.
        fs::write(dir.path().join(".last-run.tmp"), "{}").unwrap();
        fs::rename(
            dir.path().join(".last-run.tmp"),
            dir.path().join(".last-run"),
        )
        .unwrap();
        fs::create_dir(dir.path().join(".tmp")).unwrap();
        assert_eq!(w.wait(soon(), &|| false), Woken::TimedOut);
        // A hard link, as the collector makes one: rings, even with `until` passed.
        let event = dir.path().join(".tmp/event");
        fs::write(&event, "x").unwrap();
        fs::hard_link(&event, dir.path().join("modsec.log.1790000000.000001")).unwrap();
        assert_eq!(w.wait(Instant::now(), &|| false), Woken::Arrived);
        // Taken: the next wait times out.
        assert_eq!(w.wait(soon(), &|| false), Woken::TimedOut);
        // A symbolic link (LINK_MODE symlink) and a rename (requeue) ring too.
        std::os::unix::fs::symlink(&event, dir.path().join("modsec.log.1790000000.000002"))
            .unwrap();
        assert_eq!(w.wait(soon(), &|| false), Woken::Arrived);
        fs::rename(&event, dir.path().join("modsec.log.1790000000.000003")).unwrap();
        assert_eq!(w.wait(soon(), &|| false), Woken::Arrived);
        assert_eq!(
            w.wait(Instant::now() + Duration::from_secs(30), &|| true),
            Woken::Stopped
        );
    }

    #[test]
    fn an_entry_linked_during_the_wait_ends_it_before_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Watch::start(dir.path());
        let at = dir.path().to_path_buf();
        let linker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            fs::write(at.join("modsec.log.1790000000.000001"), "x").unwrap();
        });
        // A minute's wait: only the ring can end it early (the test would hang for
        // the minute and then fail on TimedOut).
        let woken = w.wait(Instant::now() + Duration::from_secs(60), &|| false);
        linker.join().unwrap();
        assert_eq!(woken, Woken::Arrived);
    }

    #[test]
    fn a_removed_directory_loses_the_watch_and_waits_then_only_sleep() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("queue");
        fs::create_dir(&dir).unwrap();
        let mut w = Watch::start(&dir);
        assert!(w.watching());
        fs::remove_dir(&dir).unwrap();
        assert_eq!(w.wait(soon(), &|| false), Woken::Lost);
        assert!(!w.watching());
        assert_eq!(w.wait(soon(), &|| false), Woken::TimedOut);
        // No directory, no watch: said, and waits sleep.
        let (w, e) = Watch::start_or_why(&dir).err().expect("nothing to watch");
        assert!(!w.watching());
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
