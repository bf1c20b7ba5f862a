//! The in-flight journal: which queue entry went out under which (sid, cid, time)
//! (ARCHITECTURE.md, "Exactly once into Sguil").
//!
//! A record is appended and fsynced before its event is sent. After a crash, a lost
//! connection or a timeout, every record whose entry is still in the queue is resent
//! with the same sid, cid, time and hostname: sguild then either stores it (the first
//! copy never arrived) or answers `Duplicate entry '<sid>-<cid>'` (it did), and the
//! entry goes either way. The entry's inode is recorded too, so an entry that was
//! removed and whose name came back (a clock stepped back, a requeue under the same
//! name of another file) is never mistaken for the one sent.
//!
//! One line per record: `v1\t<sid>\t<cid>\t<unix time>\t<inode>\t<hostname>\t<entry>\n`
//! ([`super::version`]; 0.1.0 wrote the same without `v1\t`). A record of a newer
//! version stops the shipper rather than be dropped: its event may be in flight.
//! A torn last line (a crash while appending) was never sent, so it is cut off when the
//! journal is opened: left in place, the next append would be glued to it and that
//! record lost at the next open. An append that fails part-way is rolled back to the
//! last whole record for the same reason.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::layout::JOURNAL_FILE;
/// Above this size the journal is rewritten (to its unresolved records, usually none)
/// once every event sent so far is answered.
pub const COMPACT_BYTES: u64 = 256 * 1024;
/// Above this size the journal is rewritten to its unresolved records between two
/// windows of a run (a drain of a million entries would otherwise journal them all before
/// the end-of-run compaction): it then never grows much past this plus two windows of
/// records (SEND_WINDOW 1,024 × ~160 bytes each), far below [`MAX_JOURNAL_BYTES`].
pub const COMPACT_IN_RUN_BYTES: u64 = 4 * 1024 * 1024;
/// The largest journal read. The shipper keeps its journal under
/// [`COMPACT_IN_RUN_BYTES`] and a few windows, so a bigger one is not one it wrote: the
/// shipper stops (it cannot know which events in it are in flight) and says so; `status`
/// names it as a problem. Bounds what a journal the queue's owner planted costs.
pub const MAX_JOURNAL_BYTES: u64 = 64 * 1024 * 1024;
/// The longest journal line read as a record: a record is at most ~160 bytes (numbers,
/// a hostname of 47 characters, an entry name). A longer line is not a record (a power
/// cut's zeros, an edit): skipped, with a warning naming the bound.
pub const MAX_JOURNAL_LINE_BYTES: usize = 1024;
/// Disk space held past the journal's end ([`crate::safefs::Headroom`]): a window of
/// SEND_WINDOW's largest (1,024 records of ~100 bytes) twice over, so that a queue
/// filesystem filled by the queue itself cannot stop the sends that would empty it.
pub const HEADROOM_BYTES: u64 = 256 * 1024;

/// One event sent (or about to be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    pub sid: u32,
    pub cid: u32,
    /// The event's time (whole seconds, UTC): it picks sguild's day table, which is
    /// what makes a resend a duplicate.
    pub time: i64,
    pub ino: u64,
    pub hostname: String,
    /// The entry's file name in the queue.
    pub entry: String,
    /// A threshold held the entry's event back: it is not sent, but kept in `held/` and
    /// recorded as suppressed. Written as `v2\theld\t<inode>\t<entry>` (sid, cid, time
    /// and hostname are 0 and empty).
    pub held: bool,
}

impl JournalRecord {
    fn to_line(&self) -> String {
        if self.held {
            return format!(
                "{}held\t{}\t{}\n",
                super::version::LINE_TAG_V2,
                self.ino,
                self.entry
            );
        }
        format!(
            "{}{}\t{}\t{}\t{}\t{}\t{}\n",
            super::version::LINE_TAG,
            self.sid,
            self.cid,
            self.time,
            self.ino,
            self.hostname,
            self.entry
        )
    }

    /// A record of either version ([`super::version`]); `None` for a line that is not one.
    fn parse(line: &str) -> Result<Option<JournalRecord>, super::version::Unknown> {
        let (version, fields) =
            super::version::split_text_up_to(line, super::version::LINES_UP_TO)?;
        if version == super::version::Version::V2 {
            return Ok(Self::parse_held(fields));
        }
        Ok(Self::parse_fields(fields))
    }

    fn parse_held(line: &str) -> Option<JournalRecord> {
        let f: Vec<&str> = line.split('\t').collect();
        let ["held", ino, entry] = f.as_slice() else {
            return None;
        };
        if entry.is_empty() || entry.contains('/') {
            return None;
        }
        Some(JournalRecord {
            sid: 0,
            cid: 0,
            time: 0,
            ino: ino.parse().ok()?,
            hostname: String::new(),
            entry: entry.to_string(),
            held: true,
        })
    }

    fn parse_fields(line: &str) -> Option<JournalRecord> {
        let f: Vec<&str> = line.split('\t').collect();
        let [sid, cid, time, ino, hostname, entry] = f.as_slice() else {
            return None;
        };
        if entry.is_empty() || entry.contains('/') || hostname.is_empty() {
            return None;
        }
        Some(JournalRecord {
            sid: sid.parse().ok()?,
            cid: cid.parse().ok()?,
            time: time.parse().ok()?,
            ino: ino.parse().ok()?,
            hostname: hostname.to_string(),
            entry: entry.to_string(),
            held: false,
        })
    }

    /// Whether the queue still holds the entry this record was written for.
    pub fn entry_present(&self, queue_dir: &Path) -> bool {
        fs::symlink_metadata(queue_dir.join(&self.entry)).is_ok_and(|m| m.ino() == self.ino)
    }
}

/// The journal file, open for appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    len: u64,
    headroom: crate::safefs::Headroom,
    /// [`COMPACT_IN_RUN_BYTES`] (smaller in tests).
    compact_in_run: u64,
}

impl Journal {
    /// Opens (creating) the journal in `queue_dir` and returns the records in it. A
    /// journal over [`MAX_JOURNAL_BYTES`] is an error naming it and the bound.
    pub fn open(queue_dir: &Path) -> io::Result<(Journal, Vec<JournalRecord>)> {
        let path = queue_dir.join(JOURNAL_FILE);
        // A shipper without RUNAS runs as root in its user's queue: a link planted
        // here is refused, never followed.
        let file = crate::safefs::Open::read_append(crate::safefs::Keeper::DirOwner).at(&path)?;
        let (records, len, size) = read_records(&path, &file, true)?;

        if len < size {
            file.set_len(len)?;
            file.sync_data()?;
        }
        let mut headroom = crate::safefs::Headroom::new(HEADROOM_BYTES);
        headroom.keep(&file, len, &path);
        Ok((
            Journal {
                path,
                file,
                len,
                headroom,
                compact_in_run: COMPACT_IN_RUN_BYTES,
            },
            records,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` and makes them durable.
    pub fn append(&mut self, records: &[JournalRecord]) -> io::Result<()> {
        self.append_async(records)?.wait()
    }

    /// Appends `records` on another thread (write and fsync), so that the caller can
    /// send what was journaled before while the disk works. Wait for the result before
    /// sending any of these records' events, and before the next append or a rewrite.
    pub fn append_async(&mut self, records: &[JournalRecord]) -> io::Result<Pending> {
        if records.is_empty() {
            return Ok(Pending(None));
        }
        let text: String = records.iter().map(JournalRecord::to_line).collect();
        // The length on disk, not the one counted: an append that failed was rolled back.
        self.len = self.file.metadata()?.len();
        self.headroom.keep(&self.file, self.len, &self.path);
        let mut file = self.file.try_clone()?;
        self.len += text.len() as u64;
        // Whole or not at all: a fragment left by a full disk would have the next record
        // glued to it (and if even the cut fails, the next open cuts it).
        let writer = std::thread::spawn(move || {
            crate::safefs::append_whole(&mut file, text.as_bytes(), true)
        });
        Ok(Pending(Some(writer)))
    }

    /// Whether the journal has grown enough to be worth rewriting at the end of a run.
    pub fn wants_compaction(&self) -> bool {
        self.len > COMPACT_BYTES
    }

    /// Whether the journal has grown enough to be rewritten in the middle of a run, to
    /// the records not yet answered ([`COMPACT_IN_RUN_BYTES`]).
    pub fn wants_compaction_in_run(&self) -> bool {
        self.len > self.compact_in_run
    }

    /// Compacts in a run above `bytes` instead (tests: a small journal shows it).
    #[cfg(test)]
    pub(crate) fn compact_in_run_above(&mut self, bytes: u64) {
        self.compact_in_run = bytes;
    }

    /// Its length, as counted.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Replaces the journal's contents by `keep` (atomically: nothing kept is a
    /// truncation, which needs no free space; else a new file, fsynced, renamed over the
    /// old one).
    pub fn rewrite(&mut self, keep: &[JournalRecord]) -> io::Result<()> {
        if keep.is_empty() {
            // Every record is resolved: a crash half-way leaves records whose entries
            // are gone, which are ignored.
            self.file.set_len(0)?;
            self.file.sync_data()?;
            self.len = 0;
            self.headroom.forget();
            self.headroom.keep(&self.file, 0, &self.path);
            return Ok(());
        }
        let text: String = keep.iter().map(JournalRecord::to_line).collect();
        crate::safefs::replace(
            &self.path,
            text.as_bytes(),
            crate::safefs::Keeper::DirOwner,
            crate::safefs::Durability::Synced,
        )?;
        self.file = crate::safefs::Open::append(crate::safefs::Keeper::DirOwner).at(&self.path)?;
        self.len = text.len() as u64;
        self.headroom.forget();
        self.headroom.keep(&self.file, self.len, &self.path);
        Ok(())
    }
}

/// A journal append in progress ([`Journal::append_async`]).
#[must_use = "the records are durable only once wait() says so"]
pub struct Pending(Option<std::thread::JoinHandle<io::Result<()>>>);

impl Pending {
    /// Waits for the write and the fsync.
    pub fn wait(self) -> io::Result<()> {
        match self.0 {
            None => Ok(()),
            Some(writer) => writer
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the journal writer panicked"))),
        }
    }
}

/// The journal's path in the queue `queue_dir` (for messages).
pub fn path(queue_dir: &Path) -> PathBuf {
    queue_dir.join(JOURNAL_FILE)
}

/// The records in the journal of the queue at `queue_dir`, without opening it for
/// writing (for `status`); no journal is no records. Over [`MAX_JOURNAL_BYTES`]: an error
/// naming it and the bound.
pub fn read_journal(queue_dir: &Path) -> io::Result<Vec<JournalRecord>> {
    let path = queue_dir.join(JOURNAL_FILE);
    // `status` may run as root: a link or FIFO planted in the journal's place is refused.
    match crate::safefs::Open::read(crate::safefs::Keeper::Anyone).at(&path) {
        Ok(f) => read_records(&path, &f, false).map(|(records, _, _)| records),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The complete records in the journal `file` (at `path`), with the length of its whole
/// lines and its size: a torn last line (no newline) is not a record, and lines that are
/// not records, or longer than [`MAX_JOURNAL_LINE_BYTES`], are left out (and logged when
/// `warn`). A record of a newer format version is an error: its event may be in
/// flight, and only that release can resolve it. So is a journal over
/// [`MAX_JOURNAL_BYTES`].
fn read_records(
    path: &Path,
    file: &File,
    warn: bool,
) -> io::Result<(Vec<JournalRecord>, u64, u64)> {
    let size = file.metadata()?.len();
    if size > MAX_JOURNAL_BYTES {
        return Err(journal_too_big(path));
    }
    let mut records = Vec::new();
    let mut whole = 0u64;
    let mut torn = 0u64;
    let reader = super::bounded::at_most(file, MAX_JOURNAL_BYTES, path, "MAX_JOURNAL_BYTES");
    let read = super::bounded::for_each_line(
        io::BufReader::with_capacity(64 * 1024, reader),
        MAX_JOURNAL_LINE_BYTES,
        |n, line| {
            if !line.terminated {
                torn = line.len;
                return Ok(());
            }
            whole += line.len + 1;
            let Some(bytes) = line.bytes else {
                if warn {
                    log::warn!(
                        "{}:{n}: a line of {} bytes, over the bound of {MAX_JOURNAL_LINE_BYTES} \
                         (MAX_JOURNAL_LINE_BYTES): not a journal record; ignored",
                        path.display(),
                        line.len
                    );
                }
                return Ok(());
            };
            if bytes.is_empty() {
                return Ok(());
            }
            let parsed = match std::str::from_utf8(bytes).map(JournalRecord::parse) {
                Ok(Err(newer)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}:{n}: a journal record {newer}; run that release to resolve it (moving the journal away may send its events twice)",
                            path.display(),
                        ),
                    ))
                }
                Ok(Ok(r)) => r,
                Err(_) => None,
            };
            match parsed {
                Some(r) => records.push(r),
                None if warn => {
                    log::warn!("{}:{n}: not a journal record; ignored", path.display())
                }
                None => {}
            }
            Ok(())
        },
    )?;
    if warn && torn > 0 {
        log::warn!(
            "{}: cutting off a torn last record ({torn} bytes; written by a run that stopped before sending it)",
            path.display(),
        );
    }
    Ok((records, whole, read))
}

/// The error for a journal over [`MAX_JOURNAL_BYTES`].
fn journal_too_big(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} holds more than {MAX_JOURNAL_BYTES} bytes, the bound MAX_JOURNAL_BYTES: not a \
             journal this shipper wrote (it keeps it under {COMPACT_IN_RUN_BYTES} bytes); \
             stopping, since which of its events are in flight is unknown. Look at it, then \
             move it away (its events that were in flight may be sent twice)",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    fn rec(cid: u32, entry: &str) -> JournalRecord {
        JournalRecord {
            sid: 3,
            cid,
            time: 1_790_000_000,
            ino: 42,
            hostname: "websrv".into(),
            entry: entry.into(),
            held: false,
        }
    }

    #[test]
    fn held_records_are_version_two_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        let held = JournalRecord {
            sid: 0,
            cid: 0,
            time: 0,
            ino: 7,
            hostname: String::new(),
            entry: "modsec.log.1.000002".into(),
            held: true,
        };
        j.append(&[rec(1, "modsec.log.1.000001"), held.clone()])
            .unwrap();
        let text = fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap();
        assert!(
            text.ends_with("v2\theld\t7\tmodsec.log.1.000002\n"),
            "{text}"
        );
        let (_, back) = Journal::open(dir.path()).unwrap();
        assert_eq!(back, vec![rec(1, "modsec.log.1.000001"), held]);
    }

    #[test]
    fn records_carry_their_version_and_older_and_newer_ones_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&[rec(1, "modsec.log.1.000001")]).unwrap();
        drop(j);
        let path = dir.path().join(JOURNAL_FILE);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "v1\t3\t1\t1790000000\t42\twebsrv\tmodsec.log.1.000001\n"
        );
        // 0.1.0 wrote no tag: still read.
        fs::write(&path, "3\t7\t1790000000\t42\twebsrv\tmodsec.log.1.000007\n").unwrap();
        let (_, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(records, vec![rec(7, "modsec.log.1.000007")]);
        // A newer release's record may be in flight: refused, not dropped.
        fs::write(&path, "v3\t3\t8\tsomething new\n").unwrap();
        let e = Journal::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("format version 3"), "{e}");
        assert!(read_journal(dir.path()).is_err());
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "v3\t3\t8\tsomething new\n"
        );
    }

    #[test]
    fn records_survive_reopening_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, old) = Journal::open(dir.path()).unwrap();
        assert!(old.is_empty());
        j.append(&[rec(1, "modsec.log.1.000001"), rec(2, "modsec.log.1.000002")])
            .unwrap();
        drop(j);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap();
        f.write_all(b"3\t3\t17900").unwrap();
        let (_, back) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            back,
            [rec(1, "modsec.log.1.000001"), rec(2, "modsec.log.1.000002")]
        );
    }

    #[test]
    fn a_record_appended_after_a_torn_tail_survives_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&[rec(1, "modsec.log.1.000001")]).unwrap();
        drop(j);
        let path = dir.path().join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"3\t2\t17900").unwrap();
        let (mut j, back) = Journal::open(dir.path()).unwrap();
        assert_eq!(back, [rec(1, "modsec.log.1.000001")]);
        j.append(&[rec(3, "modsec.log.1.000003")]).unwrap();
        let (_, back) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            back,
            [rec(1, "modsec.log.1.000001"), rec(3, "modsec.log.1.000003")]
        );
        assert!(fs::read(&path).unwrap().ends_with(b"modsec.log.1.000003\n"));
    }

    /// A disk that takes `room` more bytes, then fails as a full one does.
    struct FillingDisk<'a> {
        file: &'a File,
        room: usize,
    }

    impl Write for FillingDisk<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            let n = (&*self.file).write(&buf[..buf.len().min(self.room)])?;
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_append_cut_short_by_a_full_disk_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&[rec(1, "modsec.log.1.000001")]).unwrap();
        let start = fs::metadata(j.path()).unwrap().len();
        let text: String = [rec(2, "modsec.log.1.000002"), rec(3, "modsec.log.1.000003")]
            .iter()
            .map(JournalRecord::to_line)
            .collect();
        // Half a record, one and a half: whatever reached the disk is taken back.
        for room in [10, text.len() / 2 + 5] {
            let file = OpenOptions::new().append(true).open(j.path()).unwrap();
            let mut disk = FillingDisk { file: &file, room };
            let e =
                crate::safefs::append_whole_through(&mut disk, &file, start, text.as_bytes(), true)
                    .unwrap_err();
            assert_eq!(e.raw_os_error(), Some(28));
            assert_eq!(fs::metadata(j.path()).unwrap().len(), start, "room {room}");
        }
        // The journal counts from what is on disk: the next record is whole.
        j.append(&[rec(4, "modsec.log.1.000004")]).unwrap();
        let (_, back) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            back,
            [rec(1, "modsec.log.1.000001"), rec(4, "modsec.log.1.000004")]
        );
    }

    #[test]
    fn garbage_lines_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(JOURNAL_FILE),
            "nonsense\n3\t9\t1\t42\twebsrv\tmodsec.log.1.000009\n1\t2\t3\t4\th\t../escape\n",
        )
        .unwrap();
        let (_, back) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            back,
            [rec(9, "modsec.log.1.000009")].map(|mut r| {
                r.time = 1;
                r
            })
        );
    }

    #[test]
    fn rewrite_keeps_only_what_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&[rec(1, "a"), rec(2, "b")]).unwrap();
        j.rewrite(&[rec(2, "b")]).unwrap();
        j.append(&[rec(3, "c")]).unwrap();
        let (_, back) = Journal::open(dir.path()).unwrap();
        assert_eq!(back, [rec(2, "b"), rec(3, "c")]);
        j.rewrite(&[]).unwrap();
        assert_eq!(fs::metadata(j.path()).unwrap().len(), 0);
    }

    #[test]
    fn an_entry_counts_as_present_only_with_the_same_inode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("modsec.log.1.000001");
        fs::write(&p, b"x").unwrap();
        let mut r = rec(1, "modsec.log.1.000001");
        r.ino = fs::metadata(&p).unwrap().ino();
        assert!(r.entry_present(dir.path()));
        fs::remove_file(&p).unwrap();
        assert!(!r.entry_present(dir.path()));
        fs::write(dir.path().join("other"), b"keep the inode busy").unwrap();
        fs::write(&p, b"y").unwrap();
        r.ino = r.ino.wrapping_add(1_000_000);
        assert!(!r.entry_present(dir.path()));
    }

    #[test]
    fn a_planted_journal_link_is_refused_not_followed_or_cut() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "a torn line without its newline").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(JOURNAL_FILE)).unwrap();
        let e = Journal::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(
            fs::read_to_string(&victim).unwrap(),
            "a torn line without its newline"
        );
    }
}
