//! How long entries waited, from the moment the collector linked them (the time their
//! name carries) to sguild's answer: a histogram with fixed buckets, kept by the daemon
//! (`run`) since it started and written to `.latency` (JSON, `"version": 1`) with its
//! last-run record, for `status --prometheus`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::layout::LATENCY_FILE;
use super::EntryName;

/// Upper bounds of the buckets, in microseconds (a last bucket, +Inf, holds the rest):
/// fine where the goal is (p50 ≤ 20 ms, p99 ≤ 50 ms), coarse up to the outage range.
pub const BUCKETS_MICROS: [u64; 14] = [
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
];

/// The largest `.latency` read: its JSON is under 1 KiB.
pub const MAX_LATENCY_BYTES: u64 = 16 * 1024;

/// Counts per bucket (not cumulative), the sum and the count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Upper bounds in microseconds, increasing ([`BUCKETS_MICROS`] when written).
    pub buckets_us: Vec<u64>,
    /// One count per bucket, and one more for above the last bound.
    pub counts: Vec<u64>,
    pub sum_us: u64,
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets_us: BUCKETS_MICROS.to_vec(),
            counts: vec![0; BUCKETS_MICROS.len() + 1],
            sum_us: 0,
            count: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = self.buckets_us.partition_point(|&b| b < us);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum_us = self.sum_us.saturating_add(us);
        self.count += 1;
    }

    /// Records how long the entry named `entry` has waited since the collector linked it
    /// (its name is the time of the link). A name of the future (clocks stepped back)
    /// counts as no wait; a name that is not an entry's is not recorded.
    pub fn record_entry(&mut self, entry: &str, now: SystemTime) {
        let Some(name) = EntryName::parse(entry) else {
            return;
        };
        let linked = UNIX_EPOCH + Duration::new(name.sec, name.usec * 1000);
        self.record(now.duration_since(linked).unwrap_or_default());
    }

    /// Whether the record is one this reads: buckets increasing, one count more than
    /// buckets, counts adding up.
    fn check(&self) -> Result<(), String> {
        if self.buckets_us.windows(2).any(|w| w[0] >= w[1]) {
            return Err("buckets_us not increasing".into());
        }
        if self.counts.len() != self.buckets_us.len() + 1 {
            return Err(format!(
                "{} counts for {} buckets (expected one more)",
                self.counts.len(),
                self.buckets_us.len()
            ));
        }
        let total = self
            .counts
            .iter()
            .try_fold(0u64, |a, &c| a.checked_add(c))
            .ok_or("counts overflow")?;
        if total != self.count {
            return Err(format!("counts add up to {total}, count is {}", self.count));
        }
        Ok(())
    }
}

/// The `.latency` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyRecord {
    /// The daemon's pid and when it started (unix seconds): the histogram is since then.
    pub pid: u32,
    pub since: i64,
    #[serde(flatten)]
    pub histogram: Histogram,
}

/// The latency record's path in the queue `queue_dir` (for messages).
pub fn path(queue_dir: &Path) -> PathBuf {
    queue_dir.join(LATENCY_FILE)
}

impl LatencyRecord {
    /// Writes the record atomically (lazily: it is only reported).
    pub fn write(&self, queue_dir: &Path) -> io::Result<()> {
        super::version::write_json(&queue_dir.join(LATENCY_FILE), self)
    }

    /// Reads the record, if there is one; one that does not parse, is of another
    /// version or does not add up is an error (InvalidData).
    pub fn read(queue_dir: &Path) -> io::Result<Option<LatencyRecord>> {
        let path = queue_dir.join(LATENCY_FILE);
        let record: Option<LatencyRecord> =
            super::version::read_json(&path, MAX_LATENCY_BYTES, "MAX_LATENCY_BYTES", false)?;
        if let Some(r) = &record {
            r.histogram
                .check()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_fall_in_their_buckets_and_the_record_reads_back() {
        let mut h = Histogram::default();
        h.record(Duration::from_millis(3));
        h.record(Duration::from_millis(5)); // on a bound: that bucket (le)
        h.record(Duration::from_millis(15));
        h.record(Duration::from_secs(3600));
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[2], 1);
        assert_eq!(h.counts[BUCKETS_MICROS.len()], 1);
        assert_eq!(h.count, 4);
        assert_eq!(h.sum_us, 3_000 + 5_000 + 15_000 + 3_600_000_000);
        // From an entry's name: linked 12 ms before "now".
        let now = UNIX_EPOCH + Duration::new(1_790_000_000, 12_000_000);
        h.record_entry("modsec.log.1790000000.000000", now);
        h.record_entry("modsec.log.1790000001.000000", now); // the future: no wait
        h.record_entry("failed", now);
        assert_eq!(h.counts[2], 2);
        assert_eq!(h.counts[0], 3);
        assert_eq!(h.count, 6);
        let dir = tempfile::tempdir().unwrap();
        let r = LatencyRecord {
            pid: 7,
            since: 1_790_000_000,
            histogram: h,
        };
        r.write(dir.path()).unwrap();
        assert_eq!(LatencyRecord::read(dir.path()).unwrap(), Some(r));
    }

    #[test]
    fn a_record_that_does_not_add_up_or_is_too_big_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LATENCY_FILE);
        assert_eq!(LatencyRecord::read(dir.path()).unwrap(), None);
        let cases = [
            r#"{"version":1,"pid":1,"since":0,"buckets_us":[5,1],"counts":[0,0,0],"sum_us":0,"count":0}"#,
            r#"{"version":1,"pid":1,"since":0,"buckets_us":[1,5],"counts":[0,0],"sum_us":0,"count":0}"#,
            r#"{"version":1,"pid":1,"since":0,"buckets_us":[1,5],"counts":[1,0,0],"sum_us":0,"count":2}"#,
            r#"{"version":2,"pid":1,"since":0,"buckets_us":[1,5],"counts":[0,0,0],"sum_us":0,"count":0}"#,
            "not json",
        ];
        for text in cases {
            std::fs::write(&path, text).unwrap();
            let e = LatencyRecord::read(dir.path()).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{text}: {e}");
        }
        std::fs::write(&path, vec![b' '; MAX_LATENCY_BYTES as usize + 1]).unwrap();
        let e = LatencyRecord::read(dir.path()).unwrap_err();
        assert!(e.to_string().contains("MAX_LATENCY_BYTES"), "{e}");
    }
}
