//! Every name in EVENT_DIR, in one place (ARCHITECTURE.md, "The queue"). Entries are
//! `modsec.log.<sec>.<usec>`; everything else a tool keeps there is hidden (a leading
//! dot), but for `failed/`.

/// Prefix of every entry name.
pub const ENTRY_PREFIX: &str = "modsec.log.";
/// Where copies are written before they are linked into place.
pub const TMP_DIR: &str = ".tmp";
/// Index lines the collector could not act on: `v1\t<unix time>\t<reason>\t<raw line>`
/// (0.1.0: without `v1\t`).
pub const BACKLOG_FILE: &str = ".backlog";
/// Prefix of a backlog taken by `requeue --backlog` (left behind if it was killed).
pub const BACKLOG_TAKEN_PREFIX: &str = ".backlog.requeue-";
/// One marker per entry whose file did not match its index line.
pub const INTEGRITY_DIR: &str = ".integrity";
/// Quarantined entries, each beside `<entry>.reason`.
pub const FAILED_DIR: &str = "failed";
/// Suffix of the file that says why an entry was quarantined.
pub const REASON_SUFFIX: &str = ".reason";
/// Inside `failed/`: the reason files of entries `requeue --failed` put back.
pub const HISTORY_DIR: &str = "history";
/// Prefix of the collector's per-process overflow files: `.spool.<pid>` (raw index
/// lines, as read: ModSecurity's format, so it carries no version of ours).
pub const SPOOL_PREFIX: &str = ".spool.";
/// Prefix a spool that is not one (a link, a FIFO, a file not ours) is renamed with.
pub const REFUSED_PREFIX: &str = ".refused";
/// Prefix of a `--follow` position file: `.follow.<hash of the followed path>`.
pub const FOLLOW_PREFIX: &str = ".follow.";
/// The shipper's lock (flock), held while it works on the queue.
pub const LOCK_FILE: &str = ".lock";
/// The shipper's journal of events in flight.
pub const JOURNAL_FILE: &str = ".journal";
/// The unique ids delivered to Sguil (rotated to `.delivered.1`).
pub const DELIVERED_FILE: &str = ".delivered";
/// How the last `drain` (or pass of `run`) ended.
pub const LAST_RUN_FILE: &str = ".last-run";
/// How long entries waited until delivered, as the daemon measured them (JSON).
pub const LATENCY_FILE: &str = ".latency";
/// Events a threshold held back (THRESHOLD_FILE), each under its entry name, until
/// `requeue --suppressed` puts them back.
pub const HELD_DIR: &str = "held";
/// One marker per entry `requeue --suppressed` put back: it is shipped whatever the
/// thresholds say.
pub const RELEASED_DIR: &str = ".released";
/// The thresholds' open windows and the summaries not yet stored in Sguil.
pub const THRESHOLD_STATE_FILE: &str = ".thresholds";

/// One of the files a 0.1.0 collector kept in the queue (now in STATE_DIR): the new
/// collector takes them over once (`collect::migrate`); `status` counts their
/// lines until it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legacy<'a> {
    /// `.backlog`.
    Backlog,
    /// `.backlog.requeue-<pid>`: a backlog a 0.1.0 `requeue --backlog` had taken.
    TakenBacklog { pid: &'a str },
    /// `.spool.<pid>[.…]`: what follows the prefix.
    Spool { rest: &'a str },
    /// `.follow.<hash>` (not a `.tmp` being written).
    Position,
}

/// Which of 0.1.0's files `name` (a name in the queue) is, if any.
pub fn legacy(name: &str) -> Option<Legacy<'_>> {
    if name == BACKLOG_FILE {
        Some(Legacy::Backlog)
    } else if let Some(pid) = name.strip_prefix(BACKLOG_TAKEN_PREFIX) {
        Some(Legacy::TakenBacklog { pid })
    } else if let Some(rest) = name.strip_prefix(SPOOL_PREFIX) {
        Some(Legacy::Spool { rest })
    } else if name.starts_with(FOLLOW_PREFIX) && !name.ends_with(".tmp") {
        Some(Legacy::Position)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names_are_told_apart() {
        assert_eq!(legacy(".backlog"), Some(Legacy::Backlog));
        assert_eq!(
            legacy(".backlog.requeue-42"),
            Some(Legacy::TakenBacklog { pid: "42" })
        );
        assert_eq!(
            legacy(".spool.7.draining"),
            Some(Legacy::Spool { rest: "7.draining" })
        );
        assert_eq!(legacy(".follow.abc"), Some(Legacy::Position));
        assert_eq!(legacy(".follow.abc.tmp"), None);
        for other in [
            ".backlogx",
            ".journal",
            "modsec.log.1.000001",
            "backlog",
            ".spool",
        ] {
            assert_eq!(legacy(other), None, "{other}");
        }
    }
}
