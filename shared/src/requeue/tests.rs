//! requeue: each source, the known-event check, dry runs, crash leftovers.

use super::*;
use crate::auditlog::ParseLimits;
use crate::queue::delivered::{Delivered, DeliveredLog};
use crate::queue::known::unique_id_of;
use crate::queue::layout::HISTORY_DIR;
use crate::queue::{EntryName, LinkMode, FAILED_DIR, INTEGRITY_DIR};
use crate::testdata::event_text;
use md5::{Digest, Md5};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("audit")).unwrap();
        fs::create_dir_all(dir.path().join("queue")).unwrap();
        Setup { dir }
    }
    fn queue_dir(&self) -> PathBuf {
        self.dir.path().join("queue")
    }
    fn state(&self) -> StateDir {
        StateDir::open(&self.dir.path().join("state"), None).unwrap()
    }
    fn settings(&self) -> CollectorSettings {
        CollectorSettings {
            storage_dir: self.dir.path().join("audit"),
            queue_dir: self.queue_dir(),
            index_file: None,
            link_mode: LinkMode::Hardlink,
            verify_md5: true,
            runas: None,
            max_event_bytes: crate::queue::DEFAULT_MAX_EVENT_BYTES,
            state_dir: self.dir.path().join("state"),
            event_owner: None,
        }
    }
    fn requeuer(&self, dry_run: bool, force: bool) -> LineRequeuer {
        LineRequeuer::new(self.settings(), dry_run, force).unwrap()
    }
    /// Writes an event file in the storage dir; returns its index line.
    fn event(&self, id: &str, time: &str, status: u16) -> String {
        let rel = format!("/www-data/20261128/20261128-0214/20261128-021431-{id}");
        let body = event_text(id, status);
        let path = self.dir.path().join("audit").join(&rel[1..]);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &body).unwrap();
        crate::testdata::give_to_web_user(&path);
        let md5 = crate::hex::lower(Md5::digest(body.as_bytes()).as_slice());
        format!(
            "lab.example 127.0.0.1 - - [{time}] \"GET / HTTP/1.1\" {status} 239 \"-\" \"-\" {id} \"-\" {rel} 0 {} md5:{md5}\n",
            body.len()
        )
    }
    fn entries(&self) -> Vec<String> {
        Queue::at(&self.queue_dir())
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| e.file_name)
            .collect()
    }
    fn queued_ids(&self) -> Vec<String> {
        self.entries()
            .iter()
            .map(|e| unique_id_of(&self.queue_dir().join(e), &ParseLimits::default()).unwrap())
            .collect()
    }
}

const T1: &str = "28/Nov/2026:02:14:31.009836 +0000";
const T2: &str = "28/Nov/2026:03:00:00.000001 +0000";
const T3: &str = "29/Nov/2026:01:00:00.000001 +0100";

// ---- failed/

/// Quarantines an event under `name` with `why` (as the shipper does).
fn quarantined(s: &Setup, name: &str, content: &str, why: &str) {
    let q = Queue::open(&s.queue_dir()).unwrap();
    fs::write(s.queue_dir().join(name), content).unwrap();
    q.quarantine(name, why).unwrap();
}

#[test]
fn failed_entries_go_back_under_their_names_with_their_reasons_kept() {
    let s = Setup::new();
    let qd = s.queue_dir();
    let q = Queue::open(&qd).unwrap();
    // One with a collector note (a truncated file), one plain, one quarantined twice.
    fs::write(qd.join("modsec.log.100.000001"), event_text("ID-one", 403)).unwrap();
    q.mark_integrity(
        EntryName::parse("modsec.log.100.000001").unwrap(),
        "truncated or changed event file: size 5 bytes, index line says 9",
    )
    .unwrap();
    q.quarantine(
        "modsec.log.100.000001",
        "sguild refused the event: Failed {x}",
    )
    .unwrap();
    assert!(!qd
        .join(INTEGRITY_DIR)
        .join("modsec.log.100.000001")
        .exists());
    quarantined(
        &s,
        "modsec.log.100.2",
        &event_text("ID-two", 403),
        "cannot open: denied",
    );
    quarantined(
        &s,
        "modsec.log.100.000003",
        "garbage",
        "not a ModSecurity audit-log event: no A",
    );
    quarantined(
        &s,
        "modsec.log.100.000003",
        "garbage again",
        "not a ModSecurity audit-log event: no A",
    );

    let failed = failed_entries(&qd).unwrap();
    let names: Vec<&str> = failed.iter().map(|f| f.file_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "modsec.log.100.000001",
            "modsec.log.100.2",
            "modsec.log.100.000003",
            "modsec.log.100.000003.1"
        ]
    );
    assert_eq!(failed[1].reason.as_deref(), Some("cannot open: denied"));
    assert_eq!(failed[0].unique_id(&qd).as_deref(), Some("ID-one"));

    // A dry run changes nothing.
    let mut known = KnownEvents::load(&qd).unwrap();
    let mut queue = Queue::open(&qd).unwrap();
    for f in &failed {
        assert_eq!(
            requeue_failed(&mut queue, f, &mut known, true, false),
            Outcome::WouldQueue
        );
    }
    assert!(s.entries().is_empty());
    assert_eq!(failed_entries(&qd).unwrap().len(), 4);

    let outcomes: Vec<Outcome> = failed
        .iter()
        .map(|f| requeue_failed(&mut queue, f, &mut known, false, false))
        .collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Queued("modsec.log.100.000001".into()),
            Outcome::Queued("modsec.log.100.000002".into()),
            Outcome::Queued("modsec.log.100.000003".into()),
            // Its old name is taken by the first copy: the next free one.
            Outcome::Queued("modsec.log.100.000004".into()),
        ]
    );
    assert!(failed_entries(&qd).unwrap().is_empty());
    // Reasons moved to the history, saying when and as what.
    let history = qd.join(FAILED_DIR).join(HISTORY_DIR);
    let kept = fs::read_to_string(history.join("modsec.log.100.000001.reason")).unwrap();
    assert!(kept.contains("reason: sguild refused the event"), "{kept}");
    assert!(
        kept.contains("requeued: ") && kept.ends_with("as modsec.log.100.000001\n"),
        "{kept}"
    );
    assert!(history.join("modsec.log.100.000003.1.reason").exists());
    // The collector's note is back, so the Sguil event will say the file was truncated.
    assert_eq!(
        q.integrity_note("modsec.log.100.000001").as_deref(),
        Some("truncated or changed event file: size 5 bytes, index line says 9")
    );
    // Quarantined again and requeued again: a second history file.
    q.quarantine("modsec.log.100.000001", "sguild refused the event: again")
        .unwrap();
    let again = failed_entries(&qd).unwrap();
    let mut known = KnownEvents::load(&qd).unwrap();
    assert!(matches!(
        requeue_failed(&mut queue, &again[0], &mut known, false, false),
        Outcome::Queued(_)
    ));
    assert!(history.join("modsec.log.100.000001.reason.1").exists());
}

#[test]
fn a_failed_entry_already_queued_or_delivered_is_not_added_twice_unless_forced() {
    let s = Setup::new();
    let qd = s.queue_dir();
    fs::write(
        qd.join("modsec.log.200.000001"),
        event_text("ID-queued", 403),
    )
    .unwrap();
    quarantined(
        &s,
        "modsec.log.100.000001",
        &event_text("ID-queued", 403),
        "x: y",
    );
    quarantined(
        &s,
        "modsec.log.100.000002",
        &event_text("ID-sent", 403),
        "x: y",
    );
    {
        let mut log = DeliveredLog::open(&qd);
        log.record(&Delivered {
            time: 1,
            sid: 1,
            cid: 9,
            unique_id: "ID-sent".into(),
            entry: "modsec.log.1.1".into(),
            suppressed: None,
        })
        .unwrap();
    }
    let failed = failed_entries(&qd).unwrap();
    let mut known = KnownEvents::load(&qd).unwrap();
    let mut queue = Queue::open(&qd).unwrap();
    let got: Vec<Outcome> = failed
        .iter()
        .map(|f| requeue_failed(&mut queue, f, &mut known, false, false))
        .collect();
    assert_eq!(
        got,
        [
            Outcome::AlreadyKnown("unique id ID-queued is already queued".into()),
            Outcome::AlreadyKnown("unique id ID-sent was already delivered to Sguil".into()),
        ]
    );
    assert_eq!(
        failed_entries(&qd).unwrap().len(),
        2,
        "left where they were"
    );
    for f in &failed {
        assert!(matches!(
            requeue_failed(&mut queue, f, &mut known, false, true),
            Outcome::Queued(_)
        ));
    }
    assert_eq!(s.entries().len(), 3);
}

#[test]
fn a_directory_in_failed_is_refused_with_a_reason() {
    let s = Setup::new();
    let qd = s.queue_dir();
    fs::create_dir_all(qd.join("modsec.log.100.000001")).unwrap();
    Queue::open(&qd)
        .unwrap()
        .quarantine("modsec.log.100.000001", "a directory, not an event file")
        .unwrap();
    let failed = failed_entries(&qd).unwrap();
    let mut known = KnownEvents::load(&qd).unwrap();
    let mut queue = Queue::open(&qd).unwrap();
    match requeue_failed(&mut queue, &failed[0], &mut known, false, false) {
        Outcome::Failed(why) => assert!(why.contains("not a file or symbolic link"), "{why}"),
        other => panic!("{other:?}"),
    }
}

// ---- backlog

#[test]
fn the_backlog_is_retried_and_what_still_fails_stays_with_its_new_reason() {
    let s = Setup::new();
    let qd = s.state().path().to_path_buf();
    let good = s.event("ID-good", T1, 403);
    let gone = s.event("ID-gone", T1, 403);
    fs::remove_file(
        s.dir
            .path()
            .join("audit/www-data/20261128/20261128-0214/20261128-021431-ID-gone"),
    )
    .unwrap();
    s.state()
        .backlog(good.as_bytes(), "file missing: not yet written")
        .unwrap();
    s.state().backlog(gone.as_bytes(), "file missing").unwrap();
    s.state()
        .backlog(b"not an index line", "unparsable")
        .unwrap();
    s.state()
        .backlog(good.as_bytes(), "file missing: twice")
        .unwrap();

    // Dry run: reads, changes nothing.
    let mut seen = Vec::new();
    let report = requeue_backlog(&mut s.requeuer(true, false), &mut |r| {
        seen.push((r.reason_before.to_string(), r.outcome.clone()))
    })
    .unwrap();
    assert_eq!((report.would_queue, report.failed, report.known), (1, 2, 1));
    assert_eq!(seen[0].0, "file missing: not yet written");
    assert!(s.entries().is_empty());
    assert_eq!(
        fs::read(qd.join(BACKLOG_FILE))
            .unwrap()
            .split(|&b| b == b'\n')
            .count(),
        5
    );

    let report = requeue_backlog(&mut s.requeuer(false, false), &mut |_| {}).unwrap();
    assert_eq!(
        (report.queued, report.failed, report.known),
        (1, 2, 1),
        "{report:?}"
    );
    assert_eq!(s.queued_ids(), ["ID-good"]);
    let left = fs::read(qd.join(BACKLOG_FILE)).unwrap();
    let records: Vec<(u64, String, Vec<u8>)> = left
        .split(|&b| b == b'\n')
        .filter(|r| !r.is_empty())
        .map(|r| parse_backlog_record(r).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].2, gone.trim_end().as_bytes());
    assert!(records[0].1.contains("No such file"), "{}", records[0].1);
    assert_eq!(records[1].2, b"not an index line");
    // Nothing taken is left behind.
    let leftovers: Vec<_> = fs::read_dir(&qd)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(BACKLOG_TAKEN_PREFIX)
        })
        .collect();
    assert!(leftovers.is_empty());
}

/// requeue may run as root; the queue is another user's. A backlog that is a link (to
/// /etc/shadow, say) is not read, so none of its lines go back into the backlog as
/// malformed ones, where the queue's owner could read them.
#[test]
fn a_backlog_link_planted_in_the_queue_is_neither_taken_over_nor_read() {
    // 0.1.0 kept the backlog in the queue, where its owner can plant a link; the
    // collector's work (requeue --backlog opens the queue as the collector does) takes
    // over only a root-owned regular file with one link from there.
    let s = Setup::new();
    let qd = s.queue_dir();
    let secret = s.dir.path().join("shadow");
    fs::write(&secret, "root:$6$secret:19000:0:99999:7:::\n").unwrap();
    std::os::unix::fs::symlink(&secret, qd.join(crate::queue::BACKLOG_FILE)).unwrap();
    let report = requeue_backlog(&mut s.requeuer(false, false), &mut |_| {}).unwrap();
    assert_eq!(report, Report::default());
    for dir in [qd.clone(), s.state().path().to_path_buf()] {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            if e.file_type().unwrap().is_file() {
                let text = fs::read(e.path()).unwrap();
                assert!(
                    !text.windows(6).any(|w| w == b"$6$sec"),
                    "{} holds the secret",
                    e.path().display()
                );
            }
        }
    }
    assert!(fs::symlink_metadata(qd.join(crate::queue::BACKLOG_FILE))
        .unwrap()
        .is_symlink());
    assert_eq!(
        fs::read_to_string(&secret).unwrap(),
        "root:$6$secret:19000:0:99999:7:::\n"
    );
}

#[test]
fn a_planted_reason_link_is_neither_moved_to_the_history_nor_written_through() {
    let s = Setup::new();
    let qd = s.queue_dir();
    quarantined(
        &s,
        "modsec.log.100.000001",
        &event_text("ID-one", 403),
        "why",
    );
    let reason = qd.join(FAILED_DIR).join("modsec.log.100.000001.reason");
    let victim = s.dir.path().join("victim");
    fs::write(&victim, "keep me\n").unwrap();
    fs::remove_file(&reason).unwrap();
    std::os::unix::fs::symlink(&victim, &reason).unwrap();
    let mut queue = Queue::open(&qd).unwrap();
    let mut known = KnownEvents::load(&qd).unwrap();
    let failed = failed_entries(&qd).unwrap();
    assert!(matches!(
        requeue_failed(&mut queue, &failed[0], &mut known, false, false),
        Outcome::Queued(_)
    ));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me\n");
    assert!(fs::symlink_metadata(&reason).unwrap().is_symlink());
}

#[test]
fn a_backlog_taken_by_a_killed_requeue_is_picked_up() {
    let s = Setup::new();
    let qd = s.state().path().to_path_buf();
    let line = s.event("ID-left", T1, 403);
    // pid 1 is alive but never ours; a pid that cannot exist is dead.
    let dead = qd.join(format!("{BACKLOG_TAKEN_PREFIX}4294967295"));
    fs::write(&dead, format!("1\tfile missing\t{line}")).unwrap();
    let report = requeue_backlog(&mut s.requeuer(false, false), &mut |_| {}).unwrap();
    assert_eq!(report.queued, 1);
    assert!(!dead.exists());
    assert_eq!(s.queued_ids(), ["ID-left"]);
}

// ---- index files

fn write_index(s: &Setup, lines: &[String], gz: bool) -> PathBuf {
    let text: String = lines.concat();
    let path = s.dir.path().join(if gz { "index.1.gz" } else { "index" });
    if gz {
        let f = File::create(&path).unwrap();
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();
    } else {
        fs::write(&path, text).unwrap();
    }
    path
}

#[test]
fn index_files_plain_or_gzip_are_filtered_and_queued_in_order() {
    for gz in [false, true] {
        let s = Setup::new();
        let lines = vec![
            s.event("ID-1", T1, 403),
            s.event("ID-2", T2, 200),
            "a broken line\n".to_string(),
            s.event("ID-3", T3, 503),
            "\n".to_string(),
            s.event("ID-4", T3, 403),
        ];
        let index = write_index(&s, &lines, gz);
        let mut failures = Vec::new();
        let filter = LineFilter {
            since: Some(DateTime::parse_from_rfc3339("2026-11-28T02:30:00Z").unwrap()),
            statuses: vec![
                StatusMatch::parse("4xx").unwrap(),
                StatusMatch::parse("503").unwrap(),
            ],
            ..LineFilter::default()
        };
        let report = requeue_index_file(&index, &filter, &mut s.requeuer(false, false), &mut |l| {
            if let Outcome::Failed(why) = l.outcome {
                failures.push((l.line_no, why.clone()));
            }
        })
        .unwrap();
        assert_eq!(
            (report.queued, report.filtered, report.failed),
            (2, 2, 1),
            "{report:?}"
        );
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0, 3, "the line number of the broken line");
        assert_eq!(
            s.queued_ids(),
            ["ID-3", "ID-4"],
            "in the index file's order"
        );
        // Hard links: the same inodes as the storage dir's files.
        let (entry, ino) = {
            let e = &s.entries()[0];
            (
                e.clone(),
                fs::metadata(s.queue_dir().join(e)).unwrap().ino(),
            )
        };
        let src = s
            .dir
            .path()
            .join("audit/www-data/20261128/20261128-0214/20261128-021431-ID-3");
        assert_eq!(fs::metadata(src).unwrap().ino(), ino, "{entry}");

        // Again, with no filter: the two queued are known, the other two are added.
        let report = requeue_index_file(
            &index,
            &LineFilter::default(),
            &mut s.requeuer(false, false),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!((report.queued, report.known), (2, 2), "{report:?}");
        assert_eq!(s.queued_ids(), ["ID-3", "ID-4", "ID-1", "ID-2"]);
    }
}

#[test]
fn events_the_collector_queued_are_skipped_unless_forced_and_unique_ids_select() {
    let s = Setup::new();
    let lines = vec![s.event("ID-1", T1, 403), s.event("ID-2", T1, 403)];
    let index = write_index(&s, &lines, false);
    // The collector queued ID-1 earlier (its entry since shipped and gone): its record
    // in the state dir, not the shipper's files in the queue, says so.
    s.state().record_queued(&["ID-1"]).unwrap();
    let only = LineFilter {
        unique_ids: vec!["ID-1".into()],
        ..LineFilter::default()
    };
    let report =
        requeue_index_file(&index, &only, &mut s.requeuer(false, false), &mut |_| {}).unwrap();
    assert_eq!((report.known, report.filtered, report.queued), (1, 1, 0));
    let report =
        requeue_index_file(&index, &only, &mut s.requeuer(false, true), &mut |_| {}).unwrap();
    assert_eq!(report.queued, 1);
    assert_eq!(s.queued_ids(), ["ID-1"]);
}

#[test]
fn status_filters_parse() {
    assert_eq!(StatusMatch::parse("403"), Ok(StatusMatch::Code(403)));
    assert_eq!(StatusMatch::parse("5XX"), Ok(StatusMatch::Class(5)));
    assert!(StatusMatch::parse("9xx").is_err());
    assert!(StatusMatch::parse("42").is_err());
    assert!(StatusMatch::parse("abc")
        .unwrap_err()
        .contains("not an HTTP status"));
}

#[test]
fn a_missing_index_file_is_an_error_naming_it() {
    let s = Setup::new();
    let err = match requeue_index_file(
        &s.dir.path().join("nope"),
        &LineFilter::default(),
        &mut s.requeuer(false, false),
        &mut |_| {},
    ) {
        Err(e) => e,
        Ok(r) => panic!("{r:?}"),
    };
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

#[test]
fn times_parse_as_rfc3339_or_local() {
    let t = parse_time("2026-11-28T02:00:00+01:00").unwrap();
    assert_eq!(t.timestamp(), 1_795_827_600);
    let local = parse_time("2026-11-28 02:00").unwrap();
    assert_eq!(local, parse_time("2026-11-28 02:00:00").unwrap());
    assert_eq!(
        parse_time("2026-11-28").unwrap(),
        parse_time("2026-11-28 00:00").unwrap()
    );
    assert!(parse_time("yesterday").unwrap_err().contains("not a time"));
}

#[test]
fn a_damaged_gzip_index_is_an_error_naming_it() {
    let s = Setup::new();
    let path = s.dir.path().join("index.2.gz");
    fs::write(&path, [0x1f, 0x8b, 0x08, 0x00, b'n', b'o', b't']).unwrap();
    let err = match requeue_index_file(
        &path,
        &LineFilter::default(),
        &mut s.requeuer(false, false),
        &mut |_| {},
    ) {
        Err(e) => e,
        Ok(r) => panic!("{r:?}"),
    };
    assert!(err.to_string().contains("index.2.gz"), "{err}");
}

/// While a shipper delivers (record, then remove), every event is at each moment either
/// queued or on record: `KnownEvents::load` must never see one in neither.
///
/// The shipper waits at each checkpoint until another load has ended, so loads overlap
/// the delivery however fast or slow this machine is (CI once delivered all 3,000 in
/// less time than one load took).
#[test]
fn known_never_misses_an_event_a_shipper_is_delivering() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let s = Setup::new();
    let qd = s.queue_dir();
    let n = 3000;
    let checkpoint = 250;
    for i in 0..n {
        fs::write(
            qd.join(format!("modsec.log.1790000000.{i:06}")),
            event_text(&format!("ID-{i:05}"), 403),
        )
        .unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let loads = Arc::new(AtomicUsize::new(0));
    let shipper = {
        let (qd, done, loads) = (qd.clone(), done.clone(), loads.clone());
        std::thread::spawn(move || {
            let mut log = DeliveredLog::open(&qd);
            for i in 0..n {
                if i > 0 && i % checkpoint == 0 {
                    let seen = loads.load(SeqCst);
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while loads.load(SeqCst) == seen && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                log.record(&Delivered {
                    time: 1,
                    sid: 1,
                    cid: i as u32 + 1,
                    unique_id: format!("ID-{i:05}"),
                    entry: format!("modsec.log.1790000000.{i:06}"),
                    suppressed: None,
                })
                .unwrap();
                fs::remove_file(qd.join(format!("modsec.log.1790000000.{i:06}"))).unwrap();
            }
            done.store(true, SeqCst);
        })
    };
    while !done.load(SeqCst) {
        let known = KnownEvents::load(&qd).unwrap();
        let load = loads.fetch_add(1, SeqCst) + 1;
        for i in 0..n {
            let id = format!("ID-{i:05}");
            assert!(
                known.why(Some(&id), None).is_some(),
                "{id} was neither queued nor on record (load {load})"
            );
        }
    }
    shipper.join().unwrap();
    let loads = loads.load(SeqCst);
    assert!(
        loads >= n / checkpoint - 1,
        "only {loads} loads overlapped the delivery"
    );
}

#[test]
fn a_request_reports_each_event_and_problem_as_it_goes_and_stops_on_a_missing_queue() {
    let s = Setup::new();
    let qd = s.queue_dir();
    quarantined(
        &s,
        "modsec.log.100.000001",
        &event_text("ID-one", 403),
        "denied",
    );
    let request = |names: &[&str]| Request {
        source: Source::Failed {
            names: names.iter().map(|n| n.to_string()).collect(),
            unique_ids: Vec::new(),
            all: false,
        },
        config: None,
        queue: Some(qd.clone()),
        storage_dir: None,
        state_dir: None,
        dry_run: false,
        force: false,
    };
    let mut told = Vec::new();
    let report = run(
        request(&["modsec.log.100.000001", "modsec.log.7.000007"]),
        &mut |p| {
            told.push(match p {
                Progress::Outcome { what, outcome } => format!("{what}: {outcome:?}"),
                Progress::Problem(text) => format!("problem: {text}"),
                other => format!("{other:?}"),
            })
        },
    )
    .unwrap();
    assert_eq!(
        told,
        [
            "problem: modsec.log.7.000007: not in failed/",
            "failed/modsec.log.100.000001 (denied): Queued(\"modsec.log.100.000001\")",
        ]
    );
    assert_eq!((report.queued, report.failed), (1, 1));
    assert_eq!(s.entries(), ["modsec.log.100.000001"]);

    let mut missing = request(&[]);
    missing.queue = Some(s.dir.path().join("nowhere"));
    let e = run(missing, &mut |_| {}).unwrap_err();
    assert!(
        matches!(&e, Error::Config(why) if why.contains("nowhere")),
        "{e:?}"
    );
    assert_eq!(e.exit(), crate::exit::Exit::Config);
}

#[test]
fn a_failed_entry_not_named_as_a_queue_entry_is_counted_and_named_not_put_back() {
    let s = Setup::new();
    let qd = s.queue_dir();
    fs::create_dir_all(qd.join(FAILED_DIR)).unwrap();
    fs::write(qd.join(FAILED_DIR).join("modsec.log.junk"), "x").unwrap();
    let mut told = Vec::new();
    let request = Request {
        source: Source::Failed {
            names: Vec::new(),
            unique_ids: Vec::new(),
            all: true,
        },
        config: None,
        queue: Some(qd.clone()),
        storage_dir: None,
        state_dir: None,
        dry_run: false,
        force: false,
    };
    let report = run(request, &mut |p| {
        if let Progress::Outcome { outcome, .. } = p {
            told.push(outcome.clone());
        }
    })
    .unwrap();
    assert_eq!(report.failed, 1);
    assert!(
        matches!(&told[..], [Outcome::Failed(why)] if why.contains("not named as a queue entry")),
        "{told:?}"
    );
    assert!(qd.join(FAILED_DIR).join("modsec.log.junk").exists());
    assert!(s.entries().is_empty());
}
