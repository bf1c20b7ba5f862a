use super::*;
use crate::queue::journal::{Journal, JournalRecord};
use crate::queue::last_run::{LastRun, RunResult};
use crate::queue::layout::{
    BACKLOG_FILE, BACKLOG_TAKEN_PREFIX, DELIVERED_FILE, FAILED_DIR, INTEGRITY_DIR, JOURNAL_FILE,
    LAST_RUN_FILE,
};
use crate::queue::{EntryName, Queue};

fn queue_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("queue");
    fs::create_dir(&q).unwrap();
    for i in 0..n {
        // Unpadded (Perl) names sort by number too: the oldest is 1000.
        fs::write(q.join(format!("modsec.log.{}.{}", 1000 + i * 10, i)), b"x").unwrap();
    }
    (dir, q)
}

#[test]
fn an_empty_queue_reports_nothing_and_is_ok_whatever_the_thresholds() {
    let (_d, q) = queue_with(0);
    let s = QueueStatus::gather(&q, &q.with_file_name("state")).unwrap();
    assert_eq!((s.entries, s.oldest, s.failed, s.backlog), (0, None, 0, 0));
    assert!(s.last_run.is_none() && s.problems.is_empty());
    let t = Thresholds {
        warn_age: Some(0),
        crit_age: Some(0),
        crit_failed: Some(1),
    };
    assert_eq!(t.check(&s, 5000).0, Level::Ok);
}

#[test]
fn counts_every_part_of_the_queue() {
    let (_d, q) = queue_with(5);
    let queue = Queue::open(&q).unwrap();
    fs::write(q.join("failed-not-an-entry"), b"").unwrap();
    for (name, why) in [
        (
            "modsec.log.1.000001",
            "not a ModSecurity audit-log event: line 3: no part A",
        ),
        (
            "modsec.log.1.000002",
            "not a ModSecurity audit-log event: empty file",
        ),
        (
            "modsec.log.1.000003",
            "sguild refused the event: Failed {x}",
        ),
    ] {
        fs::write(q.join(name), b"bad").unwrap();
        queue.quarantine(name, why).unwrap();
    }
    fs::create_dir_all(q.join(FAILED_DIR)).unwrap();
    fs::write(q.join(FAILED_DIR).join("modsec.log.1.000004"), b"").unwrap(); // no reason
    let state = crate::state::StateDir::open(&q.with_file_name("state"), None).unwrap();
    state.backlog(b"line one", "file missing").unwrap();
    state.backlog(b"line two", "file missing").unwrap();
    fs::write(state.join("spool.999998"), b"d\n").unwrap();
    fs::write(q.join(".spool.999999"), b"a\nb\nc\n").unwrap();
    fs::write(q.join(format!("{BACKLOG_TAKEN_PREFIX}77")), b"left\n").unwrap();
    queue
        .mark_integrity(
            EntryName::parse("modsec.log.1000.0").unwrap(),
            "md5 differs",
        )
        .unwrap();
    let (mut journal, _) = Journal::open(&q).unwrap();
    let ino = |name: &str| {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(q.join(name)).unwrap().ino()
    };
    let rec = |cid, entry: &str, ino| JournalRecord {
        sid: 1,
        cid,
        time: 1,
        ino,
        hostname: "h".into(),
        entry: entry.into(),
        held: false,
    };
    journal
        .append(&[
            rec(1, "modsec.log.1000.0", ino("modsec.log.1000.0")),
            rec(2, "modsec.log.1010.1", 1), // another inode: not this entry
            rec(3, "modsec.log.9.9", 5),    // gone: answered
        ])
        .unwrap();
    let last = LastRun {
        program: "drain".into(),
        pid: 42,
        finished: 2000,
        seconds: 1.5,
        result: RunResult::Outage,
        error: Some("sguild went away".into()),
        shipped: 3,
        already_stored: 1,
        skipped: 2,
        quarantined: 0,
        held: 0,
        remaining: 5,
    };
    last.write(&q).unwrap();

    let s = QueueStatus::gather(&q, &q.with_file_name("state")).unwrap();
    assert_eq!(s.entries, 5);
    assert_eq!((s.oldest, s.newest), (Some(1000), Some(1040)));
    assert_eq!(s.oldest_age(1100), Some(100));
    assert_eq!(s.in_flight, 1);
    assert_eq!(s.failed, 4);
    let reasons: Vec<(&str, usize)> = s
        .failed_by_reason
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        reasons,
        [
            ("(no reason file)", 1),
            ("not a ModSecurity audit-log event", 2),
            ("sguild refused the event", 1)
        ]
    );
    assert_eq!(
        s.backlog, 3,
        "the backlog (state dir) and a taken backlog left behind (0.1.0's, in the queue)"
    );
    assert_eq!(
        s.overflow, 4,
        "a spool in the state dir, and 0.1.0's in the queue"
    );
    assert_eq!(s.integrity_marked, 1);
    assert_eq!(s.last_run.as_ref(), Some(&last));
    assert!(s.problems.is_empty(), "{:?}", s.problems);

    let t = Thresholds {
        warn_age: Some(50),
        crit_age: Some(200),
        crit_failed: None,
    };
    let (level, why) = t.check(&s, 1100);
    assert_eq!(level, Level::Warning, "{why:?}");
    assert_eq!(t.check(&s, 1201).0, Level::Critical);
    assert_eq!(t.check(&s, 1040).0, Level::Ok);
    let f = Thresholds {
        crit_failed: Some(4),
        ..Thresholds::default()
    };
    let (level, why) = f.check(&s, 1100);
    assert_eq!(level, Level::Critical);
    assert!(why[0].contains("4 entries in failed/"), "{why:?}");
    assert_eq!(
        Thresholds {
            crit_failed: Some(5),
            ..f
        }
        .check(&s, 1100)
        .0,
        Level::Ok
    );
}

#[test]
fn a_broken_last_run_record_is_a_problem_not_a_failure() {
    let (_d, q) = queue_with(1);
    fs::write(q.join(LAST_RUN_FILE), b"{not json").unwrap();
    let s = QueueStatus::gather(&q, &q.with_file_name("state")).unwrap();
    assert_eq!(s.entries, 1);
    assert!(s.last_run.is_none());
    assert_eq!(s.problems.len(), 1);
    assert!(s.problems[0].contains(".last-run"), "{:?}", s.problems);
}

#[test]
fn a_missing_queue_is_an_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("nope");
    assert!(QueueStatus::gather(&q, &q.with_file_name("state")).is_err());
    assert!(!q.exists());
}

/// `status` may run as root (a monitoring check): the journal, the last-run record,
/// reason files and integrity markers are the queue owner's, and a link planted in
/// their place is reported, not followed, nor shown.
#[test]
fn links_planted_for_the_files_status_reads_are_problems_not_followed() {
    let (d, q) = queue_with(1);
    let secret = d.path().join("secret");
    std::fs::write(&secret, "reason: root:$6$secret\ncollector: $6$secret\n").unwrap();
    for name in [JOURNAL_FILE, LAST_RUN_FILE] {
        std::os::unix::fs::symlink(&secret, q.join(name)).unwrap();
    }
    let s = QueueStatus::gather(&q, &q.with_file_name("state")).unwrap();
    for name in [JOURNAL_FILE, LAST_RUN_FILE] {
        assert!(
            s.problems
                .iter()
                .any(|p| p.contains(name) && p.contains("symbolic link")),
            "{name}: {:?}",
            s.problems
        );
    }
    let failed = q.join(FAILED_DIR);
    std::fs::create_dir_all(&failed).unwrap();
    std::fs::write(failed.join("modsec.log.1.000009"), "x").unwrap();
    std::os::unix::fs::symlink(&secret, failed.join("modsec.log.1.000009.reason")).unwrap();
    assert_eq!(
        crate::queue::reason::read(&failed.join("modsec.log.1.000009.reason")),
        None
    );
    assert_eq!(
        crate::queue::reason::collector_note(&failed.join("modsec.log.1.000009.reason")),
        None
    );
    std::fs::create_dir_all(q.join(INTEGRITY_DIR)).unwrap();
    std::os::unix::fs::symlink(&secret, q.join(INTEGRITY_DIR).join("modsec.log.1.000009")).unwrap();
    assert_eq!(
        crate::queue::integrity_note(&q, "modsec.log.1.000009"),
        None
    );
    let shown = format!("{s:?}");
    assert!(!shown.contains("$6$"), "{shown}");
}

#[test]
fn a_fifo_where_a_file_should_be_is_a_problem_not_a_hang() {
    let (_d, q) = queue_with(2);
    nix::unistd::mkfifo(&q.join(BACKLOG_FILE), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let s = QueueStatus::gather(&q, &q.with_file_name("state")).unwrap();
    assert_eq!(s.entries, 2);
    assert!(
        s.problems
            .iter()
            .any(|p| p.contains(".backlog is a FIFO, not a regular file")),
        "{:?}",
        s.problems
    );
    // requeue's list of what is queued does not hang on a FIFO entry either.
    nix::unistd::mkfifo(
        &q.join("modsec.log.1.000001"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    assert!(crate::queue::known::KnownEvents::load(&q).is_ok());
}

#[test]
fn a_queue_nothing_ever_reached_is_told_apart() {
    let (_d, q) = queue_with(0);
    assert!(
        QueueStatus::gather(&q, &q.with_file_name("state"))
            .unwrap()
            .never_used
    );
    // Delivered once, empty now: it was used.
    fs::write(q.join(DELIVERED_FILE), b"v1\t1\t2\tid\n").unwrap();
    assert!(
        !QueueStatus::gather(&q, &q.with_file_name("state"))
            .unwrap()
            .never_used
    );
    let (_d, q) = queue_with(1);
    assert!(
        !QueueStatus::gather(&q, &q.with_file_name("state"))
            .unwrap()
            .never_used
    );
    let (_d, q) = queue_with(0);
    crate::state::StateDir::open(&q.with_file_name("state"), None)
        .unwrap()
        .backlog(b"line", "file missing")
        .unwrap();
    assert!(
        !QueueStatus::gather(&q, &q.with_file_name("state"))
            .unwrap()
            .never_used
    );
}

#[test]
fn a_rule_engine_left_off_by_debians_modsecurity_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No ModSecurity config at all: nothing to say.
    assert_eq!(rule_engine_off(&d.join("none")), None);
    assert_eq!(rule_engine_off(d), None);
    // Debian's fresh install: only the -recommended file.
    fs::write(
        d.join("modsecurity.conf-recommended"),
        "SecRuleEngine DetectionOnly\n",
    )
    .unwrap();
    let why = rule_engine_off(d).expect("no modsecurity.conf");
    assert!(
        why.contains("modsecurity.conf does not exist") && why.contains("SecRuleEngine On"),
        "{why}"
    );
    // The last SecRuleEngine wins, comments do not count.
    let conf = d.join("modsecurity.conf");
    fs::write(
        &conf,
        "SecRuleEngine On\n# SecRuleEngine On\n  secruleengine Off\n",
    )
    .unwrap();
    let why = rule_engine_off(d).expect("engine off");
    assert!(
        why.contains("modsecurity.conf:3: SecRuleEngine Off"),
        "{why}"
    );
    for on in ["DetectionOnly", "On"] {
        fs::write(&conf, format!("SecRuleEngine Off\nSecRuleEngine {on}\n")).unwrap();
        assert_eq!(rule_engine_off(d), None, "{on}");
    }
}

/// What the queue's owner plants where 0.1.0 kept the collector's files cannot keep a
/// monitoring check reading: a sparse backlog past the bound is a problem named with the
/// bound, and past so many spool names the rest are counted as one problem.
#[test]
fn planted_backlogs_and_spools_are_counted_within_bounds() {
    let (_d, q) = queue_with(1);
    let f = fs::File::create(q.join(BACKLOG_FILE)).unwrap();
    f.set_len(MAX_COUNTED_BYTES + 1).unwrap();
    for i in 0..MAX_COUNTED_FILES + 5 {
        fs::write(q.join(format!(".spool.{i}")), "line\n").unwrap();
    }
    let s = QueueStatus::gather(&q, &q.with_file_name("state")).unwrap();
    assert!(
        s.problems.iter().any(|p| p.contains("MAX_COUNTED_BYTES")),
        "{:?}",
        s.problems
    );
    assert!(
        s.problems
            .iter()
            .any(|p| p.contains("6 more backlog or spool files")),
        "{:?}",
        s.problems
    );
    assert_eq!(s.overflow, MAX_COUNTED_FILES - 1);
    assert_eq!(s.entries, 1);
}

#[test]
fn a_state_dir_that_cannot_be_read_is_one_problem_not_two() {
    let (dir, q) = queue_with(1);
    // Not a directory: both the backlog count and the --follow positions fail on it.
    let state = dir.path().join("state");
    fs::write(&state, b"").unwrap();
    let s = QueueStatus::gather(&q, &state).unwrap();
    let about_state: Vec<&String> = s
        .problems
        .iter()
        .filter(|p| p.starts_with(&state.display().to_string()))
        .collect();
    assert_eq!(about_state.len(), 1, "{:?}", s.problems);
}

#[test]
fn held_or_failed_planted_as_links_are_problems_named_once() {
    let (dir, q) = queue_with(1);
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("modsec.log.1.000001"), b"planted").unwrap();
    std::os::unix::fs::symlink(&elsewhere, q.join("held")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, q.join(FAILED_DIR)).unwrap();
    let s = QueueStatus::gather(&q, &q.with_file_name("state")).unwrap();
    assert_eq!(
        (s.held, s.failed),
        (0, 0),
        "nothing counted through the links"
    );
    for area in ["held", FAILED_DIR] {
        let path = q.join(area).display().to_string();
        let p = s
            .problems
            .iter()
            .find(|p| p.contains(&path))
            .unwrap_or_else(|| panic!("{area}: {:?}", s.problems));
        assert!(p.contains("not followed"), "{p}");
        assert_eq!(p.matches(&path).count(), 1, "{p}");
    }
}
