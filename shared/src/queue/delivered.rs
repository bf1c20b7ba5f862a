//! The delivered log: which event (by ModSecurity unique id) sguild stored under which
//! sid and cid, and from which queue entry.
//!
//! The journal forgets an event once it is answered; this log remembers, so that
//! `requeue` does not put back an event that was already delivered (unless forced), and
//! so that an operator can find where a transaction went. Each record is written
//! after sguild confirmed and before the entry is removed, without fsync: a SIGKILL
//! keeps it; a power cut may lose the last ones (then `requeue --index` could put
//! those events back), never an event.
//!
//! One line per event: `v1\t<unix time>\t<sid>\t<cid>\t<unique id>\t<entry>\n`; an event
//! a threshold held back (THRESHOLD_FILE) is recorded as suppressed, with no sid or cid
//! and why: `v2\t<unix time>\t\t\t<unique id>\t<entry>\t<why>\n`
//! ([`super::version`]; 0.1.0 wrote the same without `v1\t`; a record of a newer
//! version is skipped with a warning: this log only keeps `requeue` from adding an event
//! twice). When the file passes [`ROTATE_BYTES`] it becomes `.delivered.1` (replacing
//! the older one), so about the last 300,000 deliveries are remembered.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::layout::DELIVERED_FILE;
/// Size at which the log is rotated to `.delivered.1`.
pub const ROTATE_BYTES: u64 = 8 * 1024 * 1024;
/// The most of one delivered log (`.delivered` or `.delivered.1`) read: twice the size
/// it is rotated at, so a log we wrote is read whole. A bigger one (the queue's owner may
/// write anything there, a 4 GB sparse file) is read only for its last this many bytes,
/// the newest records, with a warning: an event delivered before them could be queued
/// again by `requeue`, never lost.
pub const MAX_DELIVERED_BYTES: u64 = 2 * ROTATE_BYTES;
/// The longest delivered-log line read as a record: one is at most ~250 bytes (numbers,
/// a unique id of at most 128 bytes, an entry name). A longer line is skipped (and
/// counted in the warning) without being held in memory.
pub const MAX_DELIVERED_LINE_BYTES: usize = 1024;
/// Disk space held past the log's end ([`crate::safefs::Headroom`]): ~600 records, so
/// that deliveries on a queue filesystem filled by the queue itself are recorded, and
/// their entries removed, until the removals have made room again.
pub const HEADROOM_BYTES: u64 = 64 * 1024;

/// One delivered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub time: i64,
    pub sid: u32,
    pub cid: u32,
    pub unique_id: String,
    pub entry: String,
    /// Not delivered: held back by a threshold, for this reason (sid and cid are 0).
    pub suppressed: Option<String>,
}

impl Delivered {
    fn to_line(&self) -> String {
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        if let Some(why) = &self.suppressed {
            return format!(
                "{}{}\t\t\t{}\t{}\t{}\n",
                super::version::LINE_TAG_V2,
                self.time,
                clean(&self.unique_id),
                clean(&self.entry),
                clean(why)
            );
        }
        format!(
            "{}{}\t{}\t{}\t{}\t{}\n",
            super::version::LINE_TAG,
            self.time,
            self.sid,
            self.cid,
            clean(&self.unique_id),
            clean(&self.entry)
        )
    }

    fn parse(line: &str) -> Option<Delivered> {
        let (version, fields) =
            super::version::split_text_up_to(line, super::version::LINES_UP_TO).ok()?;
        let mut f = fields.split('\t');
        if version == super::version::Version::V2 {
            let time = f.next()?.parse().ok()?;
            let ("", "") = (f.next()?, f.next()?) else {
                return None;
            };
            let d = Delivered {
                time,
                sid: 0,
                cid: 0,
                unique_id: f.next()?.to_string(),
                entry: f.next()?.to_string(),
                suppressed: Some(f.next()?.to_string()),
            };
            return (f.next().is_none() && !d.unique_id.is_empty()).then_some(d);
        }
        let d = Delivered {
            time: f.next()?.parse().ok()?,
            sid: f.next()?.parse().ok()?,
            cid: f.next()?.parse().ok()?,
            unique_id: f.next()?.to_string(),
            entry: f.next()?.to_string(),
            suppressed: None,
        };
        (f.next().is_none() && !d.unique_id.is_empty()).then_some(d)
    }
}

/// The log, open for appending. Each record is written (one `write`) before the entry
/// it names is removed: `requeue --index` trusts it to tell delivered events from lost
/// ones, so a crash between the two must leave the record, not the removal (the soak
/// test found 30 events stored twice when records waited in memory for a batch and the
/// shipper was killed).
#[derive(Debug)]
pub struct DeliveredLog {
    path: PathBuf,
    file: Option<File>,
    len: u64,
    headroom: crate::safefs::Headroom,
}

impl DeliveredLog {
    /// Opens (creating) the log in `queue_dir`. One that cannot be opened now is tried
    /// again at the next record.
    pub fn open(queue_dir: &Path) -> DeliveredLog {
        let path = queue_dir.join(DELIVERED_FILE);
        let mut log = DeliveredLog {
            path,
            file: None,
            len: 0,
            headroom: crate::safefs::Headroom::new(HEADROOM_BYTES),
        };
        let _ = log.reopen();
        log
    }

    fn reopen(&mut self) -> io::Result<()> {
        let f = crate::safefs::Open::append(crate::safefs::Keeper::DirOwner).at(&self.path)?;
        self.len = f.metadata()?.len();
        self.headroom.forget();
        self.headroom.keep(&f, self.len, &self.path);
        self.file = Some(f);
        Ok(())
    }

    /// Appends `d` now, rotating the log first when it has grown too big. An error
    /// (full disk, no permission) names the log; the caller must then keep the entry.
    pub fn record(&mut self, d: &Delivered) -> io::Result<()> {
        self.record_many(std::slice::from_ref(d))
    }

    /// Appends `records` with one write (suppressed ones come by the thousand).
    pub fn record_many(&mut self, records: &[Delivered]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.append(records)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }

    fn append(&mut self, records: &[Delivered]) -> io::Result<()> {
        if self.len >= ROTATE_BYTES {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            fs::rename(&self.path, &old)?;
            self.file = None;
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let line: String = records.iter().map(Delivered::to_line).collect();
        let f = self.file.as_mut().expect("opened above");
        self.headroom.keep(f, self.len, &self.path);
        if let Err(e) = crate::safefs::append_whole(f, line.as_bytes(), false) {
            self.headroom.forget(); // taken back by truncation, which may free it
            return Err(e);
        }
        self.len += line.len() as u64;
        Ok(())
    }
}

/// Whether the queue at `queue_dir` has a delivered log (or rotated one) with anything
/// in it: something was ever delivered or held back there.
pub fn any_recorded(queue_dir: &Path) -> bool {
    [format!("{DELIVERED_FILE}.1"), DELIVERED_FILE.to_string()]
        .iter()
        .any(|name| fs::metadata(queue_dir.join(name)).is_ok_and(|m| m.len() > 0))
}

/// The delivered log's path in the queue `queue_dir` (for messages).
pub fn path(queue_dir: &Path) -> PathBuf {
    queue_dir.join(DELIVERED_FILE)
}

/// Every delivered record in the queue at `queue_dir` (the rotated log first), oldest
/// first; a missing log is an empty one. Lines that are not records are skipped, each
/// file's with one warning: an event whose record was skipped may be queued again.
pub fn read_delivered(queue_dir: &Path) -> io::Result<Vec<Delivered>> {
    let mut out = Vec::new();
    for name in [format!("{DELIVERED_FILE}.1"), DELIVERED_FILE.to_string()] {
        let path = queue_dir.join(name);
        let skipped = match read_log(&path, &mut out) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            read => read?,
        };
        if let Some(first) = skipped.first_line {
            log::warn!(
                "{}: {} line(s) skipped, the first at line {first}{}: {} of a newer format \
                 version (a newer modsec2sguil wrote them), {} not records, {} longer than \
                 {MAX_DELIVERED_LINE_BYTES} bytes (MAX_DELIVERED_LINE_BYTES); requeue may \
                 queue the events they name again",
                path.display(),
                skipped.newer + skipped.garbled + skipped.too_long,
                if skipped.tail_only {
                    " of its last bytes"
                } else {
                    ""
                },
                skipped.newer,
                skipped.garbled,
                skipped.too_long
            );
        }
    }
    Ok(out)
}

/// Lines of one delivered log that [`read_log`] did not take.
#[derive(Debug, Default, PartialEq, Eq)]
struct Skipped {
    /// Records of a format version newer than ours.
    newer: usize,
    /// Lines that are no record (a power cut's NULs, an edit).
    garbled: usize,
    /// Lines over [`MAX_DELIVERED_LINE_BYTES`].
    too_long: usize,
    /// The first skipped line's number (from 1; of the part read, with `tail_only`).
    first_line: Option<usize>,
    /// The log was over [`MAX_DELIVERED_BYTES`]: only its last bytes were read.
    tail_only: bool,
}

/// Appends the records of the log at `path` to `out`: all of them, or those in its last
/// [`MAX_DELIVERED_BYTES`] when it is bigger (warned of, naming the bound).
fn read_log(path: &Path, out: &mut Vec<Delivered>) -> io::Result<Skipped> {
    use std::io::{Read, Seek};
    // Read by root too (`requeue --backlog`, `--index`): no link is followed.
    let mut f = crate::safefs::Open::read(crate::safefs::Keeper::DirOwner).at(path)?;
    let mut skipped = Skipped::default();
    let size = f.metadata()?.len();
    if size > MAX_DELIVERED_BYTES {
        log::warn!(
            "{}: {size} bytes, over the bound of {MAX_DELIVERED_BYTES} (MAX_DELIVERED_BYTES; \
             the log is rotated at {ROTATE_BYTES}): only its last {MAX_DELIVERED_BYTES} bytes \
             are read, so requeue may queue events delivered before them again",
            path.display()
        );
        f.seek(io::SeekFrom::Start(size - MAX_DELIVERED_BYTES))?;
        skipped.tail_only = true;
    }
    let reader = io::BufReader::with_capacity(64 * 1024, f.take(MAX_DELIVERED_BYTES));
    super::bounded::for_each_line(reader, MAX_DELIVERED_LINE_BYTES, |n, line| {
        // Read from the middle: the first line is the end of one, not a record.
        if skipped.tail_only && n == 1 {
            return Ok(());
        }
        let kind = match line.bytes {
            Some([]) => return Ok(()),
            Some(bytes) => {
                if let Some(d) = std::str::from_utf8(bytes).ok().and_then(Delivered::parse) {
                    out.push(d);
                    return Ok(());
                }
                match super::version::split_line_up_to(bytes, super::version::LINES_UP_TO) {
                    Err(_) => &mut skipped.newer,
                    Ok(_) => &mut skipped.garbled,
                }
            }
            None => &mut skipped.too_long,
        };
        *kind += 1;
        skipped.first_line.get_or_insert(n);
        Ok(())
    })?;
    Ok(skipped)
}

/// The unique ids of every delivered event the log remembers (not the suppressed ones).
pub fn delivered_ids(queue_dir: &Path) -> io::Result<HashSet<String>> {
    Ok(read_delivered(queue_dir)?
        .into_iter()
        .filter(|d| d.suppressed.is_none())
        .map(|d| d.unique_id)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn record(n: u32) -> Delivered {
        Delivered {
            time: 1_790_000_000 + i64::from(n),
            sid: 3,
            cid: n,
            unique_id: format!("id\t{n}"),
            entry: format!("modsec.log.1790000000.{n:06}"),
            suppressed: None,
        }
    }

    #[test]
    fn suppressed_records_are_version_two_without_sid_and_cid_and_not_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DeliveredLog::open(dir.path());
        let mut held = record(2);
        held.suppressed = Some("threshold, line 3: limit".into());
        log.record_many(&[record(1), held]).unwrap();
        let text = fs::read_to_string(dir.path().join(DELIVERED_FILE)).unwrap();
        assert!(
            text.ends_with("v2\t1790000002\t\t\tid 2\tmodsec.log.1790000000.000002\tthreshold, line 3: limit\n"),
            "{text}"
        );
        let back = read_delivered(dir.path()).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            back[1].suppressed.as_deref(),
            Some("threshold, line 3: limit")
        );
        assert_eq!((back[1].sid, back[1].cid), (0, 0));
        let ids = delivered_ids(dir.path()).unwrap();
        assert!(ids.contains("id 1") && !ids.contains("id 2"), "{ids:?}");
    }

    #[test]
    fn records_carry_their_version_and_untagged_ones_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DeliveredLog::open(dir.path());
        log.record(&record(1)).unwrap();
        let path = dir.path().join(DELIVERED_FILE);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("v1\t1790000001\t3\t1\t"), "{text}");
        // 0.1.0's record, and one of a newer version (skipped: not guessed at).
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        use std::io::Write as _;
        f.write_all(b"1790000002\t3\t2\tOLD-ID\tmodsec.log.1.000002\nv9\tNEW-ID\n")
            .unwrap();
        let ids = delivered_ids(dir.path()).unwrap();
        assert!(ids.contains("id 1") && ids.contains("OLD-ID"), "{ids:?}");
        assert_eq!(ids.len(), 2, "{ids:?}");
        // The skipped lines are counted (and warned of), by kind, with the first's line.
        f.write_all(b"\0\0\0\n").unwrap();
        let mut records = Vec::new();
        assert_eq!(
            read_log(&path, &mut records).unwrap(),
            Skipped {
                newer: 1,
                garbled: 1,
                first_line: Some(3),
                ..Skipped::default()
            }
        );
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn records_round_trip_and_rotate_without_forgetting_the_last_generation() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DeliveredLog::open(dir.path());
        log.record(&record(1)).unwrap();
        log.record(&record(2)).unwrap();
        // Written at once, not when the log is dropped (a SIGKILL would lose it).
        let got = read_delivered(dir.path()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].cid, 2);
        assert_eq!(
            got[1].unique_id, "id 2",
            "a tab in an id cannot split a record"
        );
        drop(log);
        // A log past the limit is rotated at the next record; both generations are read.
        let f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(DELIVERED_FILE))
            .unwrap();
        f.set_len(ROTATE_BYTES + 10).unwrap(); // NULs: not records, skipped when read
        let mut log = DeliveredLog::open(dir.path());
        log.record(&record(3)).unwrap();
        assert!(dir.path().join(".delivered.1").exists());
        let ids = delivered_ids(dir.path()).unwrap();
        assert!(ids.contains("id 1") && ids.contains("id 3"), "{ids:?}");
        assert_eq!(
            fs::read_to_string(dir.path().join(DELIVERED_FILE)).unwrap(),
            record(3).to_line().replace("id\t3", "id 3")
        );
    }

    #[test]
    fn an_unwritable_log_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(DELIVERED_FILE)).unwrap(); // cannot be opened
        let mut log = DeliveredLog::open(dir.path());
        let e = log.record(&record(1)).unwrap_err();
        assert!(e.to_string().contains(DELIVERED_FILE), "{e}");
        assert!(read_delivered(&dir.path().join("absent"))
            .unwrap()
            .is_empty());
    }
}
