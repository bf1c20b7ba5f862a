//! `EVENT_DIR/.thresholds`: the thresholds' open windows and the summaries not yet
//! stored in Sguil ([`crate::threshold::Tracker`]), so that a cron `drain`, which exits
//! every minute, counts a window across runs, and a summary is stored once.
//!
//! Lines ([`super::version`]):
//! - `v1\tnext\t<last summary number>`
//! - `v1\twindow\t<sig>\t<track>\t<addr or ->\t<start>\t<seconds>\t<type>\t<count>\t<seen>\t<held>\t<first id>\t<last id>`
//! - `v1\tsummary\t<number>\t` and the window's fields.
//!
//! Replaced whole (fsynced) by the shipper before it journals the decisions that changed
//! it. A line it cannot read (a newer version, an edit) is skipped with a warning: the
//! counts of that window start again, no event is lost.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::layout::THRESHOLD_STATE_FILE;
use crate::threshold::{Key, Kind, Summary, Track, Tracker, Window};

/// The largest count or summary number read (2^53: far above any real one, and far
/// below u64's end, so counting on from it cannot overflow).
const MAX_COUNT: u64 = 1 << 53;

/// The largest state read: [`crate::threshold::MAX_WINDOWS`] windows of ~200 bytes.
pub const MAX_THRESHOLD_STATE_BYTES: u64 = 64 * 1024 * 1024;
/// The longest line: two unique ids of at most 128 bytes and a few numbers.
pub const MAX_THRESHOLD_STATE_LINE_BYTES: usize = 1024;

fn window_fields(k: &Key, w: &Window) -> String {
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        k.sig,
        k.track.as_str(),
        k.addr.map_or("-".to_string(), |a| a.to_string()),
        w.start,
        w.seconds,
        w.kind.as_str(),
        w.count,
        w.seen,
        w.held,
        clean(&w.first_held),
        clean(&w.last_held)
    )
}

fn parse_window(f: &[&str]) -> Option<(Key, Window)> {
    let [sig, track, addr, start, seconds, kind, count, seen, held, first, last] = f else {
        return None;
    };
    let addr = match *addr {
        "-" => None,
        a => Some(a.parse::<IpAddr>().ok()?),
    };
    let w = Window {
        start: start.parse().ok()?,
        seconds: seconds.parse().ok().filter(|&s| s > 0)?,
        kind: Kind::parse(kind)?,
        count: count.parse().ok().filter(|&c| c > 0)?,
        seen: seen.parse().ok()?,
        held: held.parse().ok()?,
        first_held: first.to_string(),
        last_held: last.to_string(),
    };
    // Ours never holds back more than it saw, nor counts near u64's end (the queue's
    // owner may write anything here): such a window is a damaged line.
    if w.held > w.seen || w.seen > MAX_COUNT {
        return None;
    }
    let key = Key {
        sig: sig.parse().ok()?,
        track: Track::parse(track)?,
        addr,
    };
    Some((key, w))
}

/// The text of the state file for `t`.
pub fn to_text(t: &Tracker) -> String {
    let tag = super::version::LINE_TAG;
    let mut out = format!("{tag}next\t{}\n", t.next_seq);
    for (k, w) in &t.windows {
        out.push_str(&format!("{tag}window\t{}\n", window_fields(k, w)));
    }
    for s in &t.summaries {
        out.push_str(&format!(
            "{tag}summary\t{}\t{}\n",
            s.seq,
            window_fields(&s.key, &s.window)
        ));
    }
    out
}

/// The state file's path in the queue `queue_dir` (for messages).
pub fn path(queue_dir: &Path) -> PathBuf {
    queue_dir.join(THRESHOLD_STATE_FILE)
}

/// Writes the state of `t` into the queue at `queue_dir` (replaced, fsynced).
pub fn save(queue_dir: &Path, t: &Tracker) -> io::Result<()> {
    let path = queue_dir.join(THRESHOLD_STATE_FILE);
    crate::safefs::replace(
        &path,
        to_text(t).as_bytes(),
        crate::safefs::Keeper::DirOwner,
        crate::safefs::Durability::Synced,
    )
    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Reads the state in the queue at `queue_dir`; none is an empty one.
pub fn load(queue_dir: &Path) -> io::Result<Tracker> {
    let path = queue_dir.join(THRESHOLD_STATE_FILE);
    let f = match crate::safefs::Open::read(crate::safefs::Keeper::DirOwner).at(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Tracker::default()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    let mut t = Tracker::default();
    let mut skipped = Vec::new();
    let reader = super::bounded::at_most(
        f,
        MAX_THRESHOLD_STATE_BYTES,
        &path,
        "MAX_THRESHOLD_STATE_BYTES",
    );
    super::bounded::for_each_line(
        io::BufReader::new(reader),
        MAX_THRESHOLD_STATE_LINE_BYTES,
        |n, line| {
            let Some(bytes) = line.bytes.filter(|b| !b.is_empty()) else {
                if line.len > 0 {
                    skipped.push(n);
                }
                return Ok(());
            };
            let ok = std::str::from_utf8(bytes)
                .ok()
                .and_then(|l| super::version::split_text(l).ok())
                .and_then(|(_, rest)| {
                    let f: Vec<&str> = rest.split('\t').collect();
                    match f.as_slice() {
                        ["next", n] => {
                            let n: u64 = n.parse().ok().filter(|&n| n <= MAX_COUNT)?;
                            t.next_seq = t.next_seq.max(n);
                        }
                        ["window", w @ ..] => {
                            let (k, w) = parse_window(w)?;
                            t.windows.insert(k, w);
                        }
                        ["summary", seq, w @ ..] => {
                            let (key, window) = parse_window(w)?;
                            let seq: u64 = seq.parse().ok().filter(|&n| n <= MAX_COUNT)?;
                            t.next_seq = t.next_seq.max(seq);
                            t.summaries.push(Summary { seq, key, window });
                        }
                        _ => return None,
                    }
                    Some(())
                });
            if ok.is_none() {
                skipped.push(n);
            }
            Ok(())
        },
    )
    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if let Some(first) = skipped.first() {
        log::warn!(
            "{}: {} line(s) not read, the first at line {first} (a newer release's, or damaged); the counts of those windows start again",
            path.display(),
            skipped.len()
        );
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threshold::{Facts, Rules};

    #[test]
    fn the_state_round_trips_and_bad_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Tracker::default());
        let rules = Rules::parse(
            Path::new("/t"),
            b"threshold gen_id 10001, sig_id *, type limit, track by_src, count 1, seconds 60",
        )
        .unwrap();
        let mut t = Tracker::default();
        for (time, src, id) in [
            (1, "10.0.0.1", "a\tb"),
            (2, "10.0.0.1", "c"),
            (3, "2001:db8::1", "d"),
            (100, "10.0.0.1", "e"),
        ] {
            t.decide(
                &rules,
                &Facts {
                    sig: 9,
                    src: Some(src.parse().unwrap()),
                    dst: None,
                    time,
                    unique_id: id,
                },
            );
        }
        assert_eq!(t.summaries.len(), 1);
        save(dir.path(), &t).unwrap();
        let mut back = load(dir.path()).unwrap();
        back.take_changed();
        t.take_changed();
        assert_eq!(back, t);
        let path = dir.path().join(THRESHOLD_STATE_FILE);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("v9\tnew\nv1\twindow\tx\n");
        std::fs::write(&path, text).unwrap();
        let mut again = load(dir.path()).unwrap();
        again.take_changed();
        assert_eq!(again, t);
    }

    /// The queue's owner writes this file: a window that held back more than it saw
    /// (the summary's "shipped" would underflow), counts or numbers at u64's end (the
    /// next event or summary would overflow) are damaged lines, not read, and what is
    /// read still counts on without a panic.
    #[test]
    fn hostile_counts_are_not_read_and_nothing_overflows() {
        let dir = tempfile::tempdir().unwrap();
        let max = u64::MAX;
        std::fs::write(
            dir.path().join(THRESHOLD_STATE_FILE),
            format!(
                "v1\tnext\t{max}\n\
                 v1\twindow\t942100\tby_src\t1.2.3.4\t1796620000\t1\tlimit\t1\t1\t2\ta\tb\n\
                 v1\twindow\t942100\tby_src\t1.2.3.5\t1796620000\t60\tlimit\t1\t{max}\t0\ta\tb\n\
                 v1\tsummary\t{max}\t942100\tby_src\t1.2.3.6\t1796620000\t1\tlimit\t1\t3\t2\ta\tb\n\
                 v1\twindow\t942100\tby_src\t1.2.3.7\t1796620000\t60\tlimit\t1\t3\t2\ta\tb\n"
            ),
        )
        .unwrap();
        let mut t = load(dir.path()).unwrap();
        assert_eq!(t.next_seq, 0, "the hostile `next` is not read");
        assert!(t.summaries.is_empty());
        assert_eq!(t.windows.len(), 1, "only the sound window is read: {t:?}");
        let rules = Rules::parse(
            Path::new("t.conf"),
            b"threshold gen_id 10001, sig_id 942100, type limit, track by_src, count 1, seconds 60\n",
        )
        .unwrap();
        let verdict = t.decide(
            &rules,
            &Facts {
                sig: 942100,
                src: Some("1.2.3.7".parse().unwrap()),
                dst: None,
                time: 1_796_620_001,
                unique_id: "x",
            },
        );
        assert!(matches!(verdict, crate::threshold::Verdict::Hold(_)));
        t.close_expired(i64::MAX);
        assert_eq!(t.summaries.len(), 1);
        assert!(
            t.summaries[0].detail_lines()[2].contains("4 event(s) seen, 1 shipped, 3 held back")
        );
    }
}
