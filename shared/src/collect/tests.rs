//! Collector tests: each failure path of a line, the settings, and the pipeline.

use super::worker::*;
use super::*;
use crate::config::resolve_owner;
use crate::config::ConfigFile;
use crate::index::{parse_index_line, IndexFlavor};
use crate::queue::{LinkMode, Linked};
use crate::state::SPOOL_PREFIX;
use md5::{Digest, Md5};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::testdata::root_or_skip;

struct Setup {
    dir: tempfile::TempDir,
    worker: Worker,
}

fn setup(verify_md5: bool) -> Setup {
    setup_with(verify_md5, |_| {})
}

/// [`setup`], with the settings changed by `change` before the worker starts.
fn setup_with(verify_md5: bool, change: impl FnOnce(&mut CollectorSettings)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = CollectorSettings {
        storage_dir: dir.path().join("audit"),
        queue_dir: dir.path().join("queue"),
        index_file: Some(dir.path().join("index.log")),
        link_mode: LinkMode::Hardlink,
        verify_md5,
        runas: None,
        max_event_bytes: crate::queue::DEFAULT_MAX_EVENT_BYTES,
        state_dir: dir.path().join("state"),
        event_owner: None,
    };
    change(&mut settings);
    std::fs::create_dir_all(&settings.storage_dir).unwrap();
    let worker = Worker::new(
        settings,
        Arc::new(AtomicBool::new(false)),
        Arc::new(Stats::default()),
    )
    .unwrap();
    Setup { dir, worker }
}

/// Writes an event file under the storage dir and returns its index line.
fn event(s: &Setup, rel: &str, content: &[u8]) -> Vec<u8> {
    let path = s.dir.path().join("audit").join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    crate::testdata::give_to_web_user(&path);
    line_for(rel, content.len(), &Md5::digest(content).into())
}

fn line_for(rel: &str, size: usize, md5: &[u8; 16]) -> Vec<u8> {
    let hex = crate::hex::lower(md5);
    format!("lab.example 127.0.0.1 - - [28/Nov/2026:02:14:31.009836 +0000] \"GET / HTTP/1.1\" 403 239 \"-\" \"-\" awo5B9rt9m7QJiOqXPD3lQAAAEg \"-\" {rel} 0 {size} md5:{hex} \n").into_bytes()
}

fn input(bytes: &[u8]) -> InputLine {
    InputLine {
        bytes: bytes.to_vec(),
        full_len: bytes.len(),
    }
}

fn backlog(s: &Setup) -> String {
    std::fs::read_to_string(s.dir.path().join("state/backlog")).unwrap_or_default()
}

#[test]
fn queues_a_hard_link_and_keeps_the_index_line() {
    let mut s = setup(true);
    let line = event(
        &s,
        "/www-data/20261128/20261128-0214/20261128-021431-x",
        b"event body",
    );
    let LineOutcome::Queued {
        entry,
        linked,
        integrity,
    } = s.worker.handle(&input(&line))
    else {
        panic!()
    };
    assert_eq!((linked, integrity), (Linked::Hardlink, None));
    let queued = std::fs::metadata(s.dir.path().join("queue").join(&entry)).unwrap();
    let original = std::fs::metadata(
        s.dir
            .path()
            .join("audit/www-data/20261128/20261128-0214/20261128-021431-x"),
    )
    .unwrap();
    assert_eq!(queued.ino(), original.ino());
    assert_eq!(std::fs::read(s.dir.path().join("index.log")).unwrap(), line);
}

#[test]
fn every_refusal_goes_to_the_backlog_with_its_reason() {
    let mut s = setup(true);
    event(&s, "/secret", b"x");
    std::os::unix::fs::symlink("/etc/passwd", s.dir.path().join("audit/planted")).unwrap();
    std::fs::create_dir_all(s.dir.path().join("audit/adir")).unwrap();
    std::os::unix::fs::symlink(
        s.dir.path().join("audit/adir"),
        s.dir.path().join("audit/linkdir"),
    )
    .unwrap();
    event(&s, "/adir/f", b"x");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (line_for("/missing/file", 1, &[0; 16]), "No such file"),
        (
            line_for("/../etc/passwd", 1, &[0; 16]),
            "leaves the storage dir",
        ),
        (
            line_for("/adir/../../x", 1, &[0; 16]),
            "leaves the storage dir",
        ),
        (line_for("/planted", 1, &[0; 16]), "symbolic link"),
        (line_for("/linkdir/f", 1, &[0; 16]), "symbolic link"),
        (line_for("/adir", 1, &[0; 16]), "not a regular file"),
        (
            b"this is not an index line\n".to_vec(),
            "malformed index line",
        ),
    ];
    for (line, why) in &cases {
        match s.worker.handle(&input(line)) {
            LineOutcome::Backlogged { reason } => {
                assert!(reason.contains(why), "{why}: {reason}")
            }
            other => panic!("{why}: {other:?}"),
        }
    }
    let backlog = backlog(&s);
    assert_eq!(backlog.lines().count(), cases.len());
    assert!(backlog.contains("/../etc/passwd"));
    assert!(
        s.worker.queue().entries().unwrap().is_empty(),
        "nothing was queued"
    );
    // The index file keeps every line, good or bad, as modsec-auditlog-collector did.
    assert_eq!(
        std::fs::read_to_string(s.dir.path().join("index.log"))
            .unwrap()
            .lines()
            .count(),
        cases.len()
    );
}

#[test]
fn a_directory_swapped_for_a_symlink_after_use_is_not_followed() {
    let mut s = setup(false);
    let first = event(&s, "/d/f1", b"one");
    assert!(matches!(
        s.worker.handle(&input(&first)),
        LineOutcome::Queued { .. }
    ));
    // www-data (the storage dir's owner) swaps the directory for a link elsewhere.
    let outside = s.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("f2"), b"secret").unwrap();
    let audit = s.dir.path().join("audit");
    std::fs::rename(audit.join("d"), audit.join("d-old")).unwrap();
    std::os::unix::fs::symlink(&outside, audit.join("d")).unwrap();
    let second = line_for("/d/f2", 6, &Md5::digest(b"secret").into());
    match s.worker.handle(&input(&second)) {
        LineOutcome::Backlogged { reason } => {
            assert!(reason.contains("symbolic link"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.worker.queue().entries().unwrap().len(), 1);
}

#[test]
fn a_minute_directory_made_anew_is_walked_again() {
    let mut s = setup(false);
    let first = event(&s, "/d/f1", b"one");
    assert!(matches!(
        s.worker.handle(&input(&first)),
        LineOutcome::Queued { .. }
    ));
    std::fs::remove_dir_all(s.dir.path().join("audit/d")).unwrap();
    let second = event(&s, "/d/f2", b"two");
    assert!(matches!(
        s.worker.handle(&input(&second)),
        LineOutcome::Queued { .. }
    ));
}

#[test]
fn a_planted_fifo_does_not_hang_the_worker() {
    let mut s = setup(true);
    let fifo = s.dir.path().join("audit/fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    match s.worker.handle(&input(&line_for("/fifo", 1, &[0; 16]))) {
        LineOutcome::Backlogged { reason } => {
            assert!(reason.contains("not a regular file"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn absolute_v3_paths_must_lie_under_the_storage_dir() {
    let s = setup(false);
    let storage = s.dir.path().join("audit");
    let mut line = parse_index_line(&line_for("/x", 1, &[0; 16])).unwrap();
    line.flavor = IndexFlavor::LibModSecurity3;
    line.filename = storage
        .join("20261128/f")
        .into_os_string()
        .into_encoded_bytes();
    assert_eq!(
        resolve_event_path(&storage, &line).unwrap(),
        storage.join("20261128/f")
    );
    line.filename = b"/etc/shadow".to_vec();
    assert!(resolve_event_path(&storage, &line)
        .unwrap_err()
        .contains("not under the storage dir"));
    line.filename = storage.join("../x").into_os_string().into_encoded_bytes();
    assert!(resolve_event_path(&storage, &line).is_err());
}

#[test]
fn size_or_md5_mismatch_is_queued_and_marked() {
    let mut s = setup(true);
    let mut line = event(&s, "/f", b"complete event");
    // Same size, other content: only md5 catches it.
    std::fs::write(s.dir.path().join("audit/f"), b"COMPLETE EVENT").unwrap();
    let LineOutcome::Queued {
        entry, integrity, ..
    } = s.worker.handle(&input(&line))
    else {
        panic!()
    };
    assert!(integrity.unwrap().contains("md5"));
    let marker =
        std::fs::read_to_string(s.dir.path().join("queue/.integrity").join(&entry)).unwrap();
    assert!(marker.contains("md5 differs"), "{marker}");
    // A short file: size catches it even with md5 checks off.
    let mut s = setup(false);
    line = event(&s, "/g", b"complete event");
    std::fs::write(s.dir.path().join("audit/g"), b"compl").unwrap();
    let LineOutcome::Queued { integrity, .. } = s.worker.handle(&input(&line)) else {
        panic!()
    };
    assert!(integrity
        .unwrap()
        .contains("size 5 bytes, index line says 14"));
}

#[test]
fn over_long_line_is_cut_kept_in_the_backlog_and_reading_goes_on() {
    let long = [vec![b'a'; MAX_LINE_BYTES * 3], b"\nnext\n".to_vec()].concat();
    let mut r = io::Cursor::new(long);
    let first = read_line(&mut r).unwrap().unwrap();
    assert_eq!(
        (first.bytes.len(), first.full_len),
        (MAX_LINE_BYTES, MAX_LINE_BYTES * 3 + 1)
    );
    assert_eq!(read_line(&mut r).unwrap().unwrap().bytes, b"next\n");
    assert!(read_line(&mut r).unwrap().is_none());
    let mut s = setup(true);
    let LineOutcome::Backlogged { reason } = s.worker.handle(&first) else {
        panic!()
    };
    assert!(reason.contains("longer than"), "{reason}");
}

#[test]
fn last_line_without_newline_is_still_read() {
    let mut r = io::Cursor::new(b"a\nb".to_vec());
    assert_eq!(read_line(&mut r).unwrap().unwrap().bytes, b"a\n");
    assert_eq!(read_line(&mut r).unwrap().unwrap().bytes, b"b");
    assert!(read_line(&mut r).unwrap().is_none());
}

#[test]
fn sighup_reopens_the_index_file() {
    let mut s = setup(false);
    let flag = s.worker.committer.reopen_index.clone();
    let line = event(&s, "/f1", b"1");
    s.worker.handle(&input(&line));
    let index = s.dir.path().join("index.log");
    std::fs::rename(&index, s.dir.path().join("index.log.1")).unwrap();
    flag.store(true, Ordering::Relaxed);
    let line2 = event(&s, "/f2", b"2");
    s.worker.handle(&input(&line2));
    assert_eq!(std::fs::read(&index).unwrap(), line2);
    assert_eq!(
        std::fs::read(s.dir.path().join("index.log.1")).unwrap(),
        line
    );
}

#[test]
fn settings_from_a_modsec2sguil_config_and_the_command_line() {
    let conf = ConfigFile::parse(
        "set EVENT_DIR /nsm/queue\nset SYMLINK 1\nset RUNAS nobody\nset VERIFY_MD5 0\n",
        Path::new("/etc/m.conf"),
    )
    .unwrap();
    let o = CollectorOverrides {
        storage_dir: Some("/var/log/audit".into()),
        ..Default::default()
    };
    let s = CollectorSettings::resolve(Some(&conf), o).unwrap();
    assert_eq!(s.queue_dir, Path::new("/nsm/queue"));
    assert_eq!(s.link_mode, LinkMode::Symlink);
    assert!(!s.verify_md5);
    assert!(s.runas.is_some());
    let o = CollectorOverrides {
        storage_dir: Some("/a".into()),
        link_mode: Some(LinkMode::Copy),
        verify_md5: Some(true),
        ..Default::default()
    };
    let s = CollectorSettings::resolve(Some(&conf), o).unwrap();
    assert_eq!(
        (s.link_mode, s.verify_md5),
        (LinkMode::Copy, true),
        "the command line wins"
    );
}

#[test]
fn bad_settings_name_what_is_wrong() {
    let parse = |t: &str| ConfigFile::parse(t, Path::new("/etc/m.conf")).unwrap();
    let storage = || CollectorOverrides {
        storage_dir: Some("/a".into()),
        ..Default::default()
    };
    for (text, want) in [
        ("set X 1\n", "EVENT_DIR is not set"),
        (
            "set EVENT_DIR relative\n",
            "/etc/m.conf:1: EVENT_DIR: bad value `relative`",
        ),
        (
            "set EVENT_DIR /q\nset LINK_MODE teleport\n",
            "/etc/m.conf:2: LINK_MODE",
        ),
        (
            "set EVENT_DIR /q\nset RUNAS no-such-user-here\n",
            "no such user",
        ),
        (
            "set EVENT_DIR /q\nset VERIFY_MD5 perhaps\n",
            "VERIFY_MD5: bad value",
        ),
    ] {
        let e = CollectorSettings::resolve(Some(&parse(text)), storage())
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{text}: {e}");
    }
    let e = CollectorSettings::resolve(
        None,
        CollectorOverrides {
            queue_dir: Some("/q".into()),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("STORAGE_DIR is not set") && e.contains("--storage-dir"),
        "{e}"
    );
    let e = CollectorSettings::resolve(
        None,
        CollectorOverrides {
            queue_dir: Some("/q".into()),
            storage_dir: Some("rel".into()),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("absolute"), "{e}");
}

/// RUNAS, the shipper's user, where a test needs it to differ from the web server's
/// user (who owns the events: [`crate::testdata::WEB_UID`]).
const SHIPPER: (u32, u32) = (4242, 4243);

#[test]
fn runas_chowns_each_entry() {
    use std::os::unix::fs::PermissionsExt;
    let (uid, gid) = SHIPPER;
    let mut s = setup_with(false, |c| c.runas = Some((uid, gid)));
    let line = event(&s, "/f", b"x");
    // The web server's user made its event writable by all before it was queued: once
    // it is RUNAS's, no one else may rewrite it through the storage dir's name.
    let original = s.dir.path().join("audit/f");
    std::fs::set_permissions(&original, std::fs::Permissions::from_mode(0o6777)).unwrap();
    let LineOutcome::Queued { entry, .. } = s.worker.handle(&input(&line)) else {
        panic!()
    };
    let meta = std::fs::metadata(s.dir.path().join("queue").join(entry)).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
}

#[test]
fn a_copy_is_given_to_runas_before_it_is_in_the_queue() {
    let (uid, gid) = SHIPPER;
    let mut s = setup_with(false, |c| {
        c.link_mode = LinkMode::Copy;
        c.runas = Some((uid, gid));
    });
    let line = event(&s, "/f", b"x");
    let LineOutcome::Queued { entry, linked, .. } = s.worker.handle(&input(&line)) else {
        panic!()
    };
    assert_eq!(linked, Linked::Copy);
    let meta = std::fs::metadata(s.dir.path().join("queue").join(entry)).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    // The original stays the web server's.
    assert_eq!(
        std::fs::metadata(s.dir.path().join("audit/f"))
            .unwrap()
            .uid(),
        crate::testdata::WEB_UID
    );
}

/// A sink that is slow, then hangs for good once `frozen` is set (a disk that dies).
struct Stalled {
    handled: Arc<AtomicU64>,
    frozen: Arc<AtomicBool>,
}
impl LineSink for Stalled {
    fn handle(&mut self, _line: &InputLine) {
        std::thread::sleep(Duration::from_millis(50));
        while self.frozen.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.handled.fetch_add(1, Ordering::SeqCst);
    }
}

/// Waits (up to a minute) for the reader to reach the end of input, runs `hang`, then
/// cuts the grace short as a second SIGTERM does (backlogging into the spool's queue).
fn read_all_then_abandon<T: Send + 'static>(p: Pipeline<T>, started: Instant, hang: impl FnOnce()) {
    let left = Duration::from_secs(60).saturating_sub(started.elapsed());
    assert!(
        matches!(
            p.input_end().recv_timeout(left),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        ),
        "the reader is stuck behind the steps"
    );
    hang();
    p.abandon(Duration::from_secs(10));
}

/// `line 0\n`, `line 1\n`, …: `n` lines.
fn numbered_lines(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect()
}

fn spool_lines(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(SPOOL_PREFIX))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            std::fs::read(e.path())
                .unwrap()
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64
        })
        .sum()
}

#[test]
fn a_stalled_worker_never_stalls_the_reader_and_no_line_is_lost() {
    const LINES: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let mut input = Vec::new();
    for i in 0..LINES {
        input.extend_from_slice(format!("line {i}\n").as_bytes());
    }
    let handled = Arc::new(AtomicU64::new(0));
    let frozen = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let sink = Stalled {
        handled: handled.clone(),
        frozen: frozen.clone(),
    };
    let p = Pipeline::start(
        io::Cursor::new(input),
        Stages::from_sink(sink),
        dir.path(),
        stats.clone(),
    );
    // The disk dies for good; then a second SIGTERM cuts the grace short.
    read_all_then_abandon(p, started, || frozen.store(true, Ordering::SeqCst));
    let in_backlog = std::fs::read_to_string(dir.path().join(crate::state::BACKLOG_FILE))
        .map(|b| b.lines().count() as u64)
        .unwrap_or(0);
    let done = handled.load(Ordering::SeqCst);
    let spooled = spool_lines(dir.path());
    // One line may be inside the hung worker.
    let total = done + in_backlog + spooled;
    assert!(
        total == LINES || total + 1 == LINES,
        "handled {done} + backlog {in_backlog} + spool {spooled} != {LINES}"
    );
    assert!(
        done < 1000,
        "the reader did not wait for the worker ({done} handled)"
    );
    assert!(spooled > 0 && in_backlog > 0, "lines went to the spool ({spooled}) and, at the second SIGTERM, to the backlog ({in_backlog})");
}

/// Asserts that `lines` are `expected` lines, none of them twice.
fn assert_each_once(lines: &[Vec<u8>], expected: usize) {
    assert_eq!(lines.len(), expected);
    let mut distinct = lines.to_vec();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), expected, "each line once");
}

#[derive(Clone)]
struct Counting(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);
impl LineSink for Counting {
    fn handle(&mut self, line: &InputLine) {
        self.0.lock().unwrap().push(line.bytes.clone());
    }
}

#[test]
fn a_burst_is_spooled_and_then_every_line_is_handled() {
    let dir = tempfile::tempdir().unwrap();
    let n = WORK_QUEUE_LINES * 5;
    let input = numbered_lines(n);
    let seen = Counting(Arc::new(std::sync::Mutex::new(Vec::new())));
    let p = Pipeline::start(
        io::Cursor::new(input),
        Stages::from_sink(seen.clone()),
        dir.path(),
        Arc::new(Stats::default()),
    );
    p.finish().unwrap();
    assert_each_once(&seen.0.lock().unwrap(), n);
    assert_eq!(
        spool_lines(dir.path()),
        0,
        "the spool is drained and removed"
    );
}

#[test]
fn a_dead_collectors_spool_does_not_queue_an_event_twice() {
    // It was draining its spool when it died: the first line's event is queued already.
    let mut s = setup(true);
    let body = |id: &str| {
        format!("--a1-A--\n[28/Nov/2026:02:14:31 +0000] {id} 127.0.0.1 1 127.0.0.1 80\n--a1-Z--\n")
    };
    let queued = event(&s, "/a", body("awo5B9rt9m7QJiOqXPD3lQAAAEg").as_bytes());
    let fresh = event(&s, "/b", body("awo5B9rt9m7QJiOqXPD3lQAAAEh").as_bytes());
    let fresh = String::from_utf8(fresh)
        .unwrap()
        .replace("awo5B9rt9m7QJiOqXPD3lQAAAEg", "awo5B9rt9m7QJiOqXPD3lQAAAEh");
    assert!(matches!(
        s.worker.handle(&input(&queued)),
        LineOutcome::Queued { .. }
    ));
    // Its spool in the state dir, beside the record of what the worker queued.
    let state = s.worker.state().path().to_path_buf();
    std::fs::write(
        state.join(format!("{SPOOL_PREFIX}99999997.draining")),
        [queued.clone(), fresh.clone().into_bytes()].concat(),
    )
    .unwrap();
    let seen = Counting(Arc::new(std::sync::Mutex::new(Vec::new())));
    let p = Pipeline::start(
        io::Cursor::new(Vec::new()),
        Stages::from_sink(seen.clone()),
        &state,
        Arc::new(Stats::default()),
    );
    p.finish().unwrap();
    assert_eq!(*seen.0.lock().unwrap(), [fresh.into_bytes()]);
}

#[test]
fn a_spool_left_by_a_dead_collector_is_drained_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // pid_max is at most 2^22 on Linux: this pid cannot be alive.
    std::fs::write(
        dir.path().join(format!("{SPOOL_PREFIX}99999999")),
        b"left 1\nleft 2\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(format!("{SPOOL_PREFIX}99999998.draining")),
        b"left 3\n",
    )
    .unwrap();
    let seen = Counting(Arc::new(std::sync::Mutex::new(Vec::new())));
    let p = Pipeline::start(
        io::Cursor::new(b"new\n".to_vec()),
        Stages::from_sink(seen.clone()),
        dir.path(),
        Arc::new(Stats::default()),
    );
    p.finish().unwrap();
    let mut got = seen.0.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, [&b"left 1\n"[..], b"left 2\n", b"left 3\n", b"new\n"]);
    assert_eq!(spool_lines(dir.path()), 0);
}

/// The spool lives in the state dir, which only root writes: no other user can plant
/// anything there (0.1.0 kept it in the queue, which the shipper's user writes). The
/// spool is still opened checked, as a second line of defence: whatever stands where a
/// dead collector's spool would be — a link to `/etc/shadow` (whose lines would reach
/// the index file and the backlog), a hard link to it, a FIFO (which would block the
/// start-up recovery for good), a file of forged lines not root's — is not read; each
/// is set aside and not taken up again.
#[test]
fn a_planted_spool_is_set_aside_unread() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("shadow");
    std::fs::write(&secret, b"root:$6$secret\n").unwrap();
    let state = crate::state::StateDir::open(&dir.path().join("state"), None).unwrap();
    let sd = state.path().to_path_buf();
    std::os::unix::fs::symlink(&secret, sd.join(format!("{SPOOL_PREFIX}4000001"))).unwrap();
    std::fs::hard_link(&secret, sd.join(format!("{SPOOL_PREFIX}4000002"))).unwrap();
    nix::unistd::mkfifo(
        &sd.join(format!("{SPOOL_PREFIX}4000003")),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    std::fs::write(sd.join(format!("{SPOOL_PREFIX}4000004")), b"left\n").unwrap();
    // A regular file of forged index lines, by someone else than the collector.
    let forged = sd.join(format!("{SPOOL_PREFIX}4000005"));
    std::fs::write(&forged, b"forged\n").unwrap();
    std::os::unix::fs::chown(&forged, Some(65534), Some(65534)).unwrap();
    for round in 0..2 {
        let seen = Counting(Arc::new(std::sync::Mutex::new(Vec::new())));
        let started = Instant::now();
        let p = Pipeline::start(
            io::Cursor::new(b"new\n".to_vec()),
            Stages::from_sink(seen.clone()),
            &sd,
            Arc::new(Stats::default()),
        );
        p.finish().unwrap();
        assert!(started.elapsed() < Duration::from_secs(10), "blocked");
        let mut got = seen.0.lock().unwrap().clone();
        got.sort();
        let want: &[&[u8]] = if round == 0 {
            &[b"left\n", b"new\n"]
        } else {
            &[b"new\n"]
        };
        assert_eq!(got, want, "round {round}");
    }
    let mut aside: Vec<String> = std::fs::read_dir(&sd)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    aside.sort();
    assert_eq!(aside.len(), 4, "{aside:?}");
    assert!(
        aside.iter().all(|n| n.starts_with("refused.spool.")),
        "{aside:?}"
    );
    assert_eq!(std::fs::read(&secret).unwrap(), b"root:$6$secret\n");
}

/// The queue belongs to the shipper's user; the collector runs as root. Links planted
/// in the queue (where 0.1.0 kept the backlog, the integrity and copy directories) are
/// never followed: the victim files stay as they were, and nothing is lost (the backlog
/// is in the state dir, out of that user's reach).
#[test]
fn links_planted_in_the_queue_are_not_followed() {
    use std::os::unix::fs::symlink;
    let mut s = setup(true);
    let queue = s.dir.path().join("queue");
    let victim = s.dir.path().join("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    let elsewhere = s.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    symlink(&victim, queue.join(".backlog")).unwrap();
    symlink(&elsewhere, queue.join(".integrity")).unwrap();
    symlink(&elsewhere, queue.join(".tmp")).unwrap();
    // A refused line: backlogged in the state dir, never through the planted link.
    let outcome = s.worker.handle(&input(b"not an index line\n"));
    assert!(
        matches!(outcome, LineOutcome::Backlogged { .. }),
        "{outcome:?}"
    );
    // A mismatching file: queued, but its marker cannot be written through the link.
    let line = event(&s, "/f", b"complete event");
    std::fs::write(s.dir.path().join("audit/f"), b"COMPLETE EVENT").unwrap();
    assert!(matches!(
        s.worker.handle(&input(&line)),
        LineOutcome::Queued { .. }
    ));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert!(backlog(&s).contains("not an index line"), "{}", backlog(&s));
    // Copy mode through a `.tmp` link: refused, the line goes to the backlog. A new
    // collector does not take the planted `.backlog` link over as 0.1.0's backlog.
    let settings = CollectorSettings {
        storage_dir: s.dir.path().join("audit"),
        queue_dir: queue.clone(),
        index_file: None,
        link_mode: LinkMode::Copy,
        verify_md5: true,
        runas: None,
        max_event_bytes: crate::queue::DEFAULT_MAX_EVENT_BYTES,
        state_dir: s.dir.path().join("state"),
        event_owner: None,
    };
    let mut w = Worker::new(
        settings,
        Arc::new(AtomicBool::new(false)),
        Arc::new(Stats::default()),
    )
    .unwrap();
    let line = event(&s, "/g", b"another event");
    let outcome = w.handle(&input(&line));
    assert!(
        matches!(outcome, LineOutcome::Backlogged { .. }),
        "{outcome:?}"
    );
    assert!(backlog(&s).contains("not a directory"), "{}", backlog(&s));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert!(std::fs::symlink_metadata(queue.join(".backlog"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
}

/// Stages with a verify step that tags each line, and a commit that records it.
fn tagging_stages(
    seen: Counting,
    verify_gate: Option<Arc<AtomicBool>>,
) -> (Stages<InputLine>, Arc<AtomicU64>) {
    let verified = Arc::new(AtomicU64::new(0));
    let count = verified.clone();
    let stages = Stages {
        check: Box::new(|line| line),
        verify: Some(Box::new(move |mut line: InputLine| {
            if let Some(frozen) = &verify_gate {
                std::thread::sleep(Duration::from_millis(50));
                while frozen.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            count.fetch_add(1, Ordering::SeqCst);
            line.bytes.extend_from_slice(b"verified");
            line
        })),
        commit: Box::new(move |line| {
            seen.0.lock().unwrap().push(line.bytes);
        }),
    };
    (stages, verified)
}

#[test]
fn with_a_verify_step_every_line_is_verified_once_and_committed_in_order() {
    // Fewer lines than the work queue holds: nothing spills, so the order is exact.
    let dir = tempfile::tempdir().unwrap();
    let n = WORK_QUEUE_LINES / 2;
    let input = numbered_lines(n);
    let seen = Counting(Arc::new(std::sync::Mutex::new(Vec::new())));
    let (stages, verified) = tagging_stages(seen.clone(), None);
    let p = Pipeline::start(
        io::Cursor::new(input),
        stages,
        dir.path(),
        Arc::new(Stats::default()),
    );
    p.finish().unwrap();
    let want: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("line {i}\nverified").into_bytes())
        .collect();
    assert_eq!(*seen.0.lock().unwrap(), want);
    assert_eq!(verified.load(Ordering::SeqCst), n as u64);

    // A burst: spooled, then every line verified and committed once.
    let dir = tempfile::tempdir().unwrap();
    let n = WORK_QUEUE_LINES * 5;
    let input = numbered_lines(n);
    let seen = Counting(Arc::new(std::sync::Mutex::new(Vec::new())));
    let (stages, verified) = tagging_stages(seen.clone(), None);
    let stats = Arc::new(Stats::default());
    let p = Pipeline::start(io::Cursor::new(input), stages, dir.path(), stats.clone());
    p.finish().unwrap();
    let got = seen.0.lock().unwrap().clone();
    assert!(
        stats.spilled.load(Ordering::Relaxed) > 0,
        "the burst spilled"
    );
    assert_each_once(&got, n);
    assert!(got.iter().all(|l| l.ends_with(b"\nverified")));
    assert_eq!(verified.load(Ordering::SeqCst), n as u64);
}

#[test]
fn a_hung_verify_step_never_stalls_the_reader_and_no_line_is_lost() {
    // The disk hangs while an event is being hashed; a second SIGTERM cuts the grace
    // short: what waits before and after the hasher goes to the backlog.
    const LINES: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let input = numbered_lines(LINES as usize);
    let seen = Counting(Arc::new(std::sync::Mutex::new(Vec::new())));
    let frozen = Arc::new(AtomicBool::new(false));
    let (stages, _) = tagging_stages(seen.clone(), Some(frozen.clone()));
    let started = Instant::now();
    let p = Pipeline::start(
        io::Cursor::new(input),
        stages,
        dir.path(),
        Arc::new(Stats::default()),
    );
    read_all_then_abandon(p, started, || {
        frozen.store(true, Ordering::SeqCst);
        // Let the committer take what the hasher had handed over.
        std::thread::sleep(Duration::from_millis(200));
    });
    let backlog =
        std::fs::read_to_string(dir.path().join(crate::state::BACKLOG_FILE)).unwrap_or_default();
    let mut all: Vec<String> = backlog
        .lines()
        .map(|l| l.rsplit('\t').next().unwrap().to_string())
        .collect();
    let done = seen.0.lock().unwrap().len() as u64;
    all.extend(
        seen.0
            .lock()
            .unwrap()
            .iter()
            .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\nverified").unwrap()).into_owned()),
    );
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with(SPOOL_PREFIX) {
            let text = std::fs::read_to_string(e.path()).unwrap();
            all.extend(text.lines().map(String::from));
        }
    }
    let in_backlog = backlog.lines().count();
    let total = all.len() as u64;
    all.sort();
    all.dedup();
    assert_eq!(all.len() as u64, total, "no line in two places");
    // The line inside the hung hasher too: the ledger has it until it is committed.
    assert_eq!(
        total, LINES,
        "committed {done} + backlog {in_backlog} + spool = {total} != {LINES}"
    );
    assert!(done < 1000, "the reader did not wait ({done} committed)");
    assert!(
        in_backlog > 0,
        "lines around the hung hasher went to the backlog"
    );
}

#[test]
fn the_worker_in_the_pipeline_hashes_on_its_own_thread() {
    // The real steps on their threads: a good event, one changed after its index line
    // (md5 only), a missing one; queued in order, marked, backlogged.
    let s = setup(true);
    let good = event(&s, "/a/good", b"a complete event");
    let changed = event(&s, "/a/changed", b"another event");
    std::fs::write(s.dir.path().join("audit/a/changed"), b"ANOTHER EVENT").unwrap();
    let missing = line_for("/a/missing", 5, &[0; 16]);
    let queue = s.dir.path().join("queue");
    // The spool and the backlog go to the state dir, as `collect::run` has them.
    let state = s.worker.state().path().to_path_buf();
    let stats = Arc::new(Stats::default());
    let p = Pipeline::start(
        io::Cursor::new([good, changed, missing].concat()),
        s.worker.into_stages(),
        &state,
        stats.clone(),
    );
    p.finish().unwrap();
    let mut entries: Vec<String> = std::fs::read_dir(&queue)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("modsec.log."))
        .collect();
    entries.sort_by_key(|n| crate::queue::EntryName::parse(n).unwrap());
    assert_eq!(entries.len(), 2, "{entries:?}");
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&queue.join(&entries[0])),
        ino(&s.dir.path().join("audit/a/good"))
    );
    assert_eq!(
        ino(&queue.join(&entries[1])),
        ino(&s.dir.path().join("audit/a/changed"))
    );
    assert!(crate::queue::integrity_note(&queue, &entries[0]).is_none());
    let note = crate::queue::integrity_note(&queue, &entries[1]).unwrap();
    assert!(note.contains("md5 differs"), "{note}");
    let backlog = std::fs::read_to_string(state.join(crate::state::BACKLOG_FILE)).unwrap();
    assert!(backlog.contains("/a/missing"), "{backlog}");
    assert_eq!(stats.read.load(Ordering::Relaxed), 3);
}

#[test]
fn a_line_that_finds_the_pipeline_idle_goes_through_on_one_thread() {
    // Lines one at a time (Apache's usual pace): the checker takes each through every
    // step, waking no other thread. A burst still spreads over the threads.
    let dir = tempfile::tempdir().unwrap();
    let (mut feed, input) = std::os::unix::net::UnixStream::pair().unwrap();
    let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (verified_on, committed_on) = (threads.clone(), threads.clone());
    let stages = Stages {
        check: Box::new(|line| line),
        verify: Some(Box::new(move |line: InputLine| {
            let name = std::thread::current().name().unwrap().to_string();
            verified_on.lock().unwrap().push(("verify", name));
            line
        })),
        commit: Box::new(move |_line| {
            let name = std::thread::current().name().unwrap().to_string();
            committed_on.lock().unwrap().push(("commit", name));
        }),
    };
    let p = Pipeline::start(input, stages, dir.path(), Arc::new(Stats::default()));
    for i in 0..5 {
        use std::io::Write;
        feed.write_all(format!("slow {i}\n").as_bytes()).unwrap();
        // The next line comes once this one is committed.
        let started = Instant::now();
        while threads.lock().unwrap().len() < 2 * (i + 1) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "line {i} not committed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let slow = threads.lock().unwrap().clone();
    assert_eq!(slow.len(), 10, "{slow:?}");
    assert!(
        slow.iter().all(|(_, t)| t == "checker"),
        "every step on the checker: {slow:?}"
    );
    threads.lock().unwrap().clear();
    use std::io::Write;
    let burst: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("burst {i}\n").into_bytes())
        .collect();
    feed.write_all(&burst).unwrap();
    drop(feed);
    p.finish().unwrap();
    let fast = threads.lock().unwrap().clone();
    assert_eq!(fast.len(), 40_000);
    let on = |step: &str, thread: &str| {
        fast.iter()
            .filter(|(s, t)| *s == step && t == thread)
            .count()
    };
    assert!(
        on("verify", "hasher") > 0 && on("commit", "worker") > 0,
        "the burst spread: {} verified on the hasher, {} committed on the worker",
        on("verify", "hasher"),
        on("commit", "worker")
    );
}

/// A pipeline fed through a socket whose check step waits while `held` is set, so
/// bursts can be made to spill; it records every committed line.
struct Gated {
    dir: tempfile::TempDir,
    feed: std::os::unix::net::UnixStream,
    held: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    stats: Arc<Stats>,
    pipeline: Pipeline<InputLine>,
}

impl Gated {
    fn start() -> Gated {
        let dir = tempfile::tempdir().unwrap();
        let (feed, input) = std::os::unix::net::UnixStream::pair().unwrap();
        let held = Arc::new(AtomicBool::new(false));
        let gate = held.clone();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let committed = seen.clone();
        let stages = Stages {
            check: Box::new(move |line| {
                while gate.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                line
            }),
            verify: None,
            commit: Box::new(move |line: InputLine| committed.lock().unwrap().push(line.bytes)),
        };
        let stats = Arc::new(Stats::default());
        let pipeline = Pipeline::start(input, stages, dir.path(), stats.clone());
        Gated {
            dir,
            feed,
            held,
            seen,
            stats,
            pipeline,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.feed.write_all(bytes).unwrap();
    }

    /// Holds the check step, writes `burst N` lines until part of them is in the
    /// spool, lets the step go on and returns how many were spooled.
    fn spool_a_burst(&mut self, n: usize) -> usize {
        self.held.store(true, Ordering::SeqCst);
        let before = self.stats.read.load(Ordering::SeqCst);
        self.write_burst(n);
        self.wait_for("burst not read", |g| {
            g.stats.read.load(Ordering::SeqCst) == before + n as u64
                && spool_lines(g.dir.path()) == g.stats.spilled.load(Ordering::SeqCst)
        });
        let spooled = spool_lines(self.dir.path()) as usize;
        assert!(spooled > 0, "part of the burst was spooled");
        self.held.store(false, Ordering::SeqCst);
        spooled
    }

    /// Writes `burst 0` … `burst n-1`.
    fn write_burst(&mut self, n: usize) {
        let burst: Vec<u8> = (0..n)
            .flat_map(|i| format!("burst {i}\n").into_bytes())
            .collect();
        self.write(&burst);
    }

    /// Writes a `first` line and waits for it (the start-up recovery is then done),
    /// then puts a directory, not empty, at this process's spool path + `suffix`.
    fn first_line_then_block(&mut self, suffix: &str) -> std::path::PathBuf {
        self.write(b"first\n");
        self.wait_for("first line", |g| g.count(b"first") == 1);
        let obstacle = self
            .dir
            .path()
            .join(format!("{SPOOL_PREFIX}{}{suffix}", std::process::id()));
        std::fs::create_dir(&obstacle).unwrap();
        std::fs::write(obstacle.join("in the way"), b"").unwrap();
        obstacle
    }

    /// Waits (up to 30 s) until `cond`.
    fn wait_for(&self, what: &str, cond: impl Fn(&Gated) -> bool) {
        let started = Instant::now();
        while !cond(self) {
            assert!(started.elapsed() < Duration::from_secs(30), "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Committed lines that start with `prefix`.
    fn count(&self, prefix: &[u8]) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// Writes `steady N` lines 5 ms apart (`steady` counts them) until `until`, for at
    /// most 10 s; the input stays open.
    fn trickle(&mut self, steady: &mut usize, until: impl Fn(&Gated) -> bool, what: &str) {
        let started = Instant::now();
        while !until(self) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{what} (after {steady} steady lines)"
            );
            self.write(format!("steady {steady}\n").as_bytes());
            *steady += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Ends the input and checks that each of `expected` lines was committed once and
    /// the spool is gone.
    fn finish(self, expected: usize) {
        let (dir, all) = self.close();
        assert_each_once(&all, expected);
        assert_eq!(
            spool_lines(dir.path()),
            0,
            "the spool is drained and removed"
        );
    }

    /// Ends the input, waits for the pipeline, and returns its directory (the queue)
    /// and the committed lines.
    fn close(self) -> (tempfile::TempDir, Vec<Vec<u8>>) {
        drop(self.feed);
        self.pipeline.finish().unwrap();
        let seen = self.seen.lock().unwrap().clone();
        (self.dir, seen)
    }

    /// Puts a directory where the spool would be renamed to while it is taken, so it
    /// cannot be (after a `first` line), and spools a burst of `n`. Returns the
    /// directory and how many lines were spooled.
    fn spool_a_burst_it_cannot_take(&mut self, n: usize) -> (std::path::PathBuf, usize) {
        let obstacle = self.first_line_then_block(".draining");
        (obstacle, self.spool_a_burst(n))
    }
}

#[test]
fn spooled_lines_go_while_lines_keep_coming() {
    // A burst the steps cannot take at once is spooled. Steady traffic after it, a line
    // every 5 ms (well under the spool's poll interval), must not keep the spooled lines
    // waiting for a quiet moment.
    let mut g = Gated::start();
    let burst = WORK_QUEUE_LINES * 4;
    g.spool_a_burst(burst);
    let mut steady = 0;
    g.trickle(
        &mut steady,
        |g| g.count(b"burst ") == burst,
        "spooled lines still waiting",
    );
    g.finish(burst + steady);
}

#[test]
fn a_spool_that_cannot_be_taken_is_tried_again_while_lines_keep_coming() {
    // The spool cannot be renamed away (a directory stands where it would go): new
    // lines still go through, and once the obstacle is gone the spooled lines follow
    // without waiting for the end of input.
    let mut g = Gated::start();
    let burst = WORK_QUEUE_LINES * 4;
    let (obstacle, spooled) = g.spool_a_burst_it_cannot_take(burst);
    let mut steady = 0;
    g.trickle(
        &mut steady,
        |g| g.count(b"burst ") == burst - spooled && g.count(b"steady ") >= 20,
        "lines stopped while the spool could not be taken",
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(g.count(b"burst "), burst - spooled, "the spool was taken");
    std::fs::remove_dir_all(&obstacle).unwrap();
    g.trickle(
        &mut steady,
        |g| g.count(b"burst ") == burst,
        "the spooled lines were not taken once they could be",
    );
    g.finish(1 + burst + steady);
}

#[test]
fn a_spool_that_cannot_be_taken_at_the_end_is_left_for_the_next_collector() {
    // Input ends while the spool cannot be taken: its lines stay in it, and the next
    // collector on the same queue queues them at start-up.
    let mut g = Gated::start();
    let burst = WORK_QUEUE_LINES * 4;
    let (obstacle, spooled) = g.spool_a_burst_it_cannot_take(burst);
    g.wait_for("the lines in memory", |g| {
        g.count(b"burst ") == burst - spooled
    });
    let (dir, seen) = g.close();
    assert_eq!(seen.len(), 1 + burst - spooled);
    assert_eq!(spool_lines(dir.path()), spooled as u64, "left in the spool");
    std::fs::remove_dir_all(&obstacle).unwrap();
    let next = Counting(Arc::new(std::sync::Mutex::new(Vec::new())));
    Pipeline::start(
        io::empty(),
        Stages::from_sink(next.clone()),
        dir.path(),
        Arc::new(Stats::default()),
    )
    .finish()
    .unwrap();
    let mut all: Vec<Vec<u8>> = seen;
    all.extend(next.0.lock().unwrap().iter().cloned());
    assert_each_once(&all, 1 + burst);
    assert_eq!(spool_lines(dir.path()), 0);
}

#[test]
fn a_spool_that_cannot_be_written_sends_the_burst_to_the_backlog_naming_it() {
    // A directory stands where the spool would be written: the lines the steps cannot
    // take at once go to the backlog, whose reason names the spool, and none is lost.
    let mut g = Gated::start();
    let spool = g.first_line_then_block("");
    g.held.store(true, Ordering::SeqCst);
    let burst = WORK_QUEUE_LINES * 4;
    g.write_burst(burst);
    g.wait_for("burst not read", |g| {
        g.stats.read.load(Ordering::SeqCst) == 1 + burst as u64
            && g.stats.backlogged.load(Ordering::SeqCst) == g.stats.spilled.load(Ordering::SeqCst)
    });
    g.held.store(false, Ordering::SeqCst);
    let (dir, seen) = g.close();
    let backlog = std::fs::read_to_string(dir.path().join(crate::state::BACKLOG_FILE)).unwrap();
    assert!(!backlog.is_empty(), "part of the burst went to the backlog");
    let mut all = seen;
    for record in backlog.lines() {
        let (_, reason, raw) = crate::state::parse_backlog_record(record.as_bytes()).unwrap();
        assert!(
            reason.contains(&spool.display().to_string()) && reason.contains("cannot be written"),
            "{record}"
        );
        all.push(raw);
    }
    assert_each_once(&all, 1 + burst);
}

/// A reader that counts its read calls.
struct CountingReads<R> {
    inner: R,
    reads: Arc<AtomicU64>,
}
impl<R: io::Read> io::Read for CountingReads<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read(buf)
    }
}

#[test]
fn slow_input_is_read_in_gathers_and_each_line_handled_soon() {
    // A line every 3 ms, as Apache writes them at a few hundred requests a second: the
    // reader lets them gather between reads (a few lines per wake-up, not one), and
    // still hands each on within about GATHER.
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let (mut feed, input) = std::os::unix::net::UnixStream::pair().unwrap();
    let reads = Arc::new(AtomicU64::new(0));
    let committed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = committed.clone();
    let stages = Stages {
        check: Box::new(|line| line),
        verify: None,
        commit: Box::new(move |line: InputLine| {
            seen.lock().unwrap().push((line.bytes, Instant::now()))
        }),
    };
    let input = CountingReads {
        inner: input,
        reads: reads.clone(),
    };
    let p = Pipeline::start(input, stages, dir.path(), Arc::new(Stats::default()));
    const LINES: usize = 200;
    let mut written = Vec::new();
    for i in 0..LINES {
        feed.write_all(format!("line {i}\n").as_bytes()).unwrap();
        written.push(Instant::now());
        std::thread::sleep(Duration::from_millis(3));
    }
    // Each line is handed on soon after it was written, with the input still open.
    let started = Instant::now();
    while committed.lock().unwrap().len() < LINES {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "lines left waiting"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let reads_made = reads.load(Ordering::SeqCst) as usize;
    let span = written[0].elapsed();
    drop(feed);
    p.finish().unwrap();
    let committed = committed.lock().unwrap().clone();
    let lines: Vec<Vec<u8>> = committed.iter().map(|(l, _)| l.clone()).collect();
    assert_eq!(
        lines,
        numbered_lines(LINES)
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>(),
        "each line once, in order"
    );
    // Gathering: after a read that brought little the reader waits GATHER, so it reads
    // at most once per GATHER (plus a few around the start). A busy machine only makes
    // it wake less often, so this bound holds under load; a reader that reads each
    // line as it comes makes ~LINES reads in ~LINES * 3 ms, more than twice the bound.
    let bound = (span.as_millis() / pipeline::GATHER.as_millis()) as usize + 5;
    assert!(
        reads_made <= bound,
        "{reads_made} reads for {LINES} lines written one at a time in {span:?} (at most {bound}): the reader did not let them gather"
    );
    // Soon: a line waits at most GATHER, plus what the machine's scheduling adds, which
    // the writer's own 3 ms sleeps show (its longest oversleep, counted twice: the
    // reader and the committer wake too), plus 50 ms. On a loaded machine both grow
    // together; a reader that held lines for long (until a buffer filled, or the input
    // ended) would still fail.
    let oversleep = written
        .windows(2)
        .map(|w| {
            w[1].duration_since(w[0])
                .saturating_sub(Duration::from_millis(3))
        })
        .max()
        .unwrap();
    let slowest = committed
        .iter()
        .zip(&written)
        .map(|((_, done), wrote)| done.duration_since(*wrote))
        .max()
        .unwrap();
    let limit = pipeline::GATHER + oversleep * 2 + Duration::from_millis(50);
    assert!(
        slowest < limit,
        "a line waited {slowest:?} to be handled (at most {limit:?}: the writer overslept up to {oversleep:?})"
    );
}

#[test]
fn a_planted_hard_link_is_neither_chowned_nor_copied() {
    for mode in [LinkMode::Hardlink, LinkMode::Copy] {
        let (uid, gid) = resolve_owner("nobody").unwrap();
        // RUNAS set as at start-up: the queue gives entries away.
        let mut s = setup_with(true, |c| {
            c.runas = Some((uid, gid));
            c.link_mode = mode;
        });
        // "/etc/shadow": a root file outside the storage dir, on the same filesystem.
        let secret = s.dir.path().join("shadow");
        std::fs::write(&secret, b"root:$6$secret\n").unwrap();
        let planted = s.dir.path().join("audit/planted");
        std::fs::hard_link(&secret, &planted).unwrap();
        let line = line_for("/planted", 15, &Md5::digest(b"root:$6$secret\n").into());
        let LineOutcome::Backlogged { reason } = s.worker.handle(&input(&line)) else {
            panic!("{mode:?}: a second link to a file was queued")
        };
        assert!(reason.contains("has 2 hard links"), "{reason}");
        let meta = std::fs::metadata(&secret).unwrap();
        assert_eq!(meta.uid(), 0, "{mode:?}: chowned");
        let queued: Vec<_> = std::fs::read_dir(s.dir.path().join("queue"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("modsec.log."))
            .collect();
        assert!(queued.is_empty(), "{mode:?}: {queued:?}");
        assert!(backlog(&s).contains("has 2 hard links"));
    }
}

/// Writes an event as [`event`] does (file and directory the web user's), then gives
/// the file to `uid`; returns its index line.
fn event_owned_by(s: &Setup, rel: &str, uid: u32) -> Vec<u8> {
    let line = event(s, rel, b"x");
    let path = s.dir.path().join("audit").join(rel.trim_start_matches('/'));
    std::os::unix::fs::chown(path, Some(uid), None).unwrap();
    line
}

/// The reason `line` was refused for; fails the test if it was queued.
fn refused(s: &mut Setup, line: &[u8], what: &str) -> String {
    match s.worker.handle(&input(line)) {
        LineOutcome::Backlogged { reason } => reason,
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn an_event_not_owned_by_its_directorys_owner_or_runas_is_refused() {
    if !root_or_skip("an_event_not_owned_by_its_directorys_owner_or_runas_is_refused") {
        return;
    }
    use crate::testdata::WEB_UID;
    let mut s = setup(false);
    // The minute directory belongs to the web server's user (`event` gives it to them).
    // A root file in it is not one the web server wrote (an inode whose other name was
    // replaced, say): refused by the rule for root, whoever owns the directory.
    let line = event_owned_by(&s, "/www/rootfile", 0);
    let reason = refused(&mut s, &line, "a root-owned event");
    assert!(
        reason.contains(
            "www/rootfile belongs to root; ModSecurity writes events as the web server's user"
        ),
        "{reason}"
    );
    // In a directory root owns too: still refused (the directory's owner is no guide).
    let rootdir = s.dir.path().join("audit/rootdir");
    let line = event_owned_by(&s, "/rootdir/rootfile", 0);
    std::os::unix::fs::chown(&rootdir, Some(0), Some(0)).unwrap();
    let reason = refused(
        &mut s,
        &line,
        "a root-owned event in a root-owned directory",
    );
    assert!(reason.contains("belongs to root"), "{reason}");
    // A third user's (neither the directory's owner nor RUNAS): refused by the old rule.
    let line = event_owned_by(&s, "/www/third", 12345);
    let reason = refused(&mut s, &line, "a third user's event");
    assert!(
        reason.contains("belongs to uid 12345, not to the user who writes the events")
            && reason.contains(&format!("(uid {WEB_UID})")),
        "{reason}"
    );
    assert!(s.worker.queue().entries().unwrap().is_empty());
    // Written by the directory's owner: queued; owned by RUNAS (delivered before,
    // given back by requeue): queued; a third user's still refused with RUNAS set.
    let line = event_owned_by(&s, "/www/ours", WEB_UID);
    assert!(matches!(
        s.worker.handle(&input(&line)),
        LineOutcome::Queued { .. }
    ));
    s.worker.checker_settings_mut().runas = Some(SHIPPER);
    let line = event_owned_by(&s, "/www/shipped", SHIPPER.0);
    assert!(matches!(
        s.worker.handle(&input(&line)),
        LineOutcome::Queued { .. }
    ));
    let line = event_owned_by(&s, "/www/third2", 12345);
    let reason = refused(&mut s, &line, "a third user's event, RUNAS set");
    assert!(reason.contains("belongs to uid 12345"), "{reason}");
    assert_eq!(s.worker.queue().entries().unwrap().len(), 2);
}

/// EVENT_OWNER names the web server's user: only their events (and RUNAS's) are
/// queued, whoever owns the directory — a user who owns a directory of the storage dir
/// (another site's, say) cannot have their own files queued by naming them in a line.
/// Root's never are, even when EVENT_OWNER says root.
#[test]
fn event_owner_is_the_only_owner_accepted_besides_runas_and_never_root() {
    if !root_or_skip("event_owner_is_the_only_owner_accepted_besides_runas_and_never_root") {
        return;
    }
    use crate::testdata::WEB_UID;
    const OTHER: u32 = 4244;
    let mut s = setup_with(false, |c| {
        c.event_owner = Some(WEB_UID);
        c.runas = Some(SHIPPER);
    });
    // A directory the other user owns, holding their own file: refused.
    let line = event_owned_by(&s, "/other/theirs", OTHER);
    std::os::unix::fs::chown(s.dir.path().join("audit/other"), Some(OTHER), None).unwrap();
    let reason = refused(
        &mut s,
        &line,
        "the directory owner's event, EVENT_OWNER set",
    );
    assert!(
        reason.contains(&format!(
            "other/theirs belongs to uid {OTHER}, not to the user who writes the events (uid {WEB_UID})"
        )),
        "{reason}"
    );
    // The web user's file in that directory, and RUNAS's: queued.
    let line = event_owned_by(&s, "/other/web", WEB_UID);
    std::os::unix::fs::chown(s.dir.path().join("audit/other"), Some(OTHER), None).unwrap();
    assert!(matches!(
        s.worker.handle(&input(&line)),
        LineOutcome::Queued { .. }
    ));
    let line = event_owned_by(&s, "/other/shipped", SHIPPER.0);
    std::os::unix::fs::chown(s.dir.path().join("audit/other"), Some(OTHER), None).unwrap();
    assert!(matches!(
        s.worker.handle(&input(&line)),
        LineOutcome::Queued { .. }
    ));
    // EVENT_OWNER root: a root file is refused all the same.
    s.worker.checker_settings_mut().event_owner = Some(0);
    let line = event_owned_by(&s, "/www/rootfile", 0);
    let reason = refused(&mut s, &line, "a root file, EVENT_OWNER root");
    assert!(reason.contains("belongs to root"), "{reason}");
    assert_eq!(s.worker.queue().entries().unwrap().len(), 2);
}

#[test]
fn an_event_over_max_event_bytes_is_neither_hashed_nor_copied() {
    for mode in [LinkMode::Hardlink, LinkMode::Copy] {
        let mut s = setup(true);
        s.worker.committer.settings.link_mode = mode;
        s.worker.checker_settings_mut().max_event_bytes = 4096;
        // A sparse 10 TB file: hashing it would keep root busy for hours.
        let path = s.dir.path().join("audit/huge");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(10 << 40)
            .unwrap();
        crate::testdata::give_to_web_user(&path);
        let line = line_for("/huge", 10 << 40, &[0; 16]);
        let started = Instant::now();
        let LineOutcome::Backlogged { reason } = s.worker.handle(&input(&line)) else {
            panic!("{mode:?}: queued")
        };
        // Refused on its size, unread: microseconds. Hashing 10 TB would take hours; a
        // minute's bound tells the two apart however busy the machine is.
        assert!(started.elapsed() < Duration::from_secs(60));
        assert!(
            reason.contains("10995116277760 bytes, more than MAX_EVENT_BYTES (4096)"),
            "{reason}"
        );
        // At the limit: queued.
        let line = event(&s, "/fits", &[b'x'; 4096]);
        assert!(matches!(
            s.worker.handle(&input(&line)),
            LineOutcome::Queued { .. }
        ));
    }
}

#[test]
fn a_copy_takes_only_the_bytes_that_were_checked() {
    let mut s = setup(false);
    s.worker.committer.settings.link_mode = LinkMode::Copy;
    let line = event(&s, "/grows", b"checked");
    let checked = s.worker.checker.check(input(&line));
    // The web server's user grows the file between the check and the copy.
    std::fs::OpenOptions::new()
        .append(true)
        .open(s.dir.path().join("audit/grows"))
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let LineOutcome::Queued { entry, .. } = s.worker.committer.commit(checked) else {
        panic!()
    };
    let copy = std::fs::read(s.dir.path().join("queue").join(entry)).unwrap();
    assert_eq!(copy, b"checked");
}

#[test]
fn max_event_bytes_is_read_from_the_config_as_the_shipper_reads_it() {
    let c = ConfigFile::parse(
        "set EVENT_DIR /q\nset STORAGE_DIR /s\nset MAX_EVENT_BYTES 2048\n",
        Path::new("/etc/m.conf"),
    )
    .unwrap();
    let s = CollectorSettings::resolve(Some(&c), CollectorOverrides::default()).unwrap();
    assert_eq!(s.max_event_bytes, 2048);
    let c = ConfigFile::parse(
        "set EVENT_DIR /q\nset STORAGE_DIR /s\nset MAX_EVENT_BYTES 12\n",
        Path::new("/etc/m.conf"),
    )
    .unwrap();
    let e = CollectorSettings::resolve(Some(&c), CollectorOverrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains(":3: MAX_EVENT_BYTES: bad value"), "{e}");
}

// ---- Entering the queue: Queue::open_checked

/// A directory `name` in `parent`, owned by `uid` with `mode`.
fn dir_as(parent: &Path, name: &str, uid: u32, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

/// Root enters the queue only where no one else can redirect it: a directory above it
/// that another user owns or anyone may write (no sticky bit) is refused, named, and
/// nothing is created under it.
#[test]
fn a_queue_below_a_directory_another_user_controls_is_refused_naming_it() {
    if !root_or_skip("a_queue_below_a_directory_another_user_controls_is_refused_naming_it") {
        return;
    }
    use crate::queue::Queue;
    use crate::testdata::WEB_UID;
    let top = tempfile::tempdir().unwrap();
    for (parent, why) in [
        (
            dir_as(top.path(), "nobodys", WEB_UID, 0o755),
            format!("owned by uid {WEB_UID}"),
        ),
        (
            dir_as(top.path(), "open", 0, 0o777),
            "mode 0777, writable by everyone".to_string(),
        ),
    ] {
        let queue = parent.join("queue");
        // Missing: not created there. Present: not entered.
        for present in [false, true] {
            if present {
                std::fs::create_dir(&queue).unwrap();
                std::os::unix::fs::chown(&queue, Some(SHIPPER.0), Some(SHIPPER.1)).unwrap();
            }
            let e = Queue::open_checked(&queue, Some(SHIPPER))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("{}: ", parent.display())) && e.contains(&why),
                "{e}"
            );
            assert_eq!(queue.exists(), present, "{e}");
        }
    }
}

/// The queue itself must be root's or RUNAS's, and writable by no one else.
#[test]
fn a_queue_a_third_user_owns_or_others_may_write_is_refused() {
    if !root_or_skip("a_queue_a_third_user_owns_or_others_may_write_is_refused") {
        return;
    }
    use crate::queue::Queue;
    let top = tempfile::tempdir().unwrap();
    let third = dir_as(top.path(), "third", 12345, 0o750);
    let e = Queue::open_checked(&third, Some(SHIPPER))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "the queue {} belongs to uid 12345, neither root nor RUNAS (uid {})",
            third.display(),
            SHIPPER.0
        )),
        "{e}"
    );
    let open = dir_as(top.path(), "open", SHIPPER.0, 0o757);
    let e = Queue::open_checked(&open, Some(SHIPPER))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is writable by everyone (mode 757)"), "{e}");
    // Group-writable: only for RUNAS's group.
    let group = dir_as(top.path(), "group", SHIPPER.0, 0o770);
    std::os::unix::fs::chown(&group, None, Some(4244)).unwrap();
    let e = Queue::open_checked(&group, Some(SHIPPER))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is writable by group 4244 (mode 770)"), "{e}");
    std::os::unix::fs::chown(&group, None, Some(SHIPPER.1)).unwrap();
    assert!(Queue::open_checked(&group, Some(SHIPPER)).is_ok());
    // RUNAS's own, and root's: entered.
    let ours = dir_as(top.path(), "runas", SHIPPER.0, 0o750);
    assert!(Queue::open_checked(&ours, Some(SHIPPER)).is_ok());
    let roots = dir_as(top.path(), "roots", 0, 0o755);
    assert!(Queue::open_checked(&roots, Some(SHIPPER)).is_ok());
    // One created: RUNAS's, 0750.
    let made = top.path().join("made");
    Queue::open_checked(&made, Some(SHIPPER)).unwrap();
    let m = std::fs::metadata(&made).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (SHIPPER.0, SHIPPER.1, 0o750)
    );
}

/// EVENT_DIR as a symbolic link (the queue's owner may swap the queue for one, to a
/// directory only root should write) is not entered.
#[test]
fn a_queue_that_is_a_symlink_is_refused() {
    use crate::queue::Queue;
    let top = tempfile::tempdir().unwrap();
    let target = top.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let link = top.path().join("queue");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let e = Queue::open_checked(&link, None).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "{} is not a directory (a symbolic link?); not followed",
            link.display()
        )),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
}

/// Once opened, the queue is entered through its handle only: a queue swapped for a
/// symbolic link afterwards (by its owner, the shipper's user) does not redirect an
/// entry, a copy (made in `.tmp/`) or an integrity marker to the link's target.
#[test]
fn entries_go_through_the_handle_even_if_the_queue_is_swapped_for_a_link() {
    use crate::queue::Queue;
    let top = tempfile::tempdir().unwrap();
    let queue = top.path().join("queue");
    let mut q = Queue::open_checked(&queue, None).unwrap();
    let moved = top.path().join("queue.moved");
    std::fs::rename(&queue, &moved).unwrap();
    let elsewhere = top.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &queue).unwrap();
    let event = top.path().join("event");
    std::fs::write(&event, b"event").unwrap();
    let file = std::fs::File::open(&event).unwrap();
    let (linked, how) = q.add_file(&file, &event, LinkMode::Hardlink, 5).unwrap();
    assert_eq!(how, Linked::Hardlink);
    let (copied, how) = q.add_file(&file, &event, LinkMode::Copy, 5).unwrap();
    assert_eq!(how, Linked::Copy);
    q.mark_integrity(copied, "size differs").unwrap();
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing through the link"
    );
    assert_eq!(crate::testdata::entries_in(&moved), 2);
    assert_eq!(
        std::fs::metadata(moved.join(linked.to_string()))
            .unwrap()
            .ino(),
        std::fs::metadata(&event).unwrap().ino()
    );
    assert_eq!(
        std::fs::read(moved.join(copied.to_string())).unwrap(),
        b"event"
    );
    assert!(moved.join(".integrity").join(copied.to_string()).is_file());
}

// ---- 0.1.0's files in the queue: collect::migrate::from_queue

/// A 0.1.0 queue, root's (as it ran), and a state dir.
fn old_queue() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    crate::state::StateDir,
) {
    let top = tempfile::tempdir().unwrap();
    let queue = top.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    let state = crate::state::StateDir::open(&top.path().join("state"), None).unwrap();
    (top, queue, state)
}

fn backlog_records(state: &crate::state::StateDir) -> Vec<(String, Vec<u8>)> {
    std::fs::read(state.join(crate::state::BACKLOG_FILE))
        .unwrap_or_default()
        .split_inclusive(|&b| b == b'\n')
        .map(|r| {
            let (_, reason, raw) = crate::state::parse_backlog_record(r).unwrap();
            (reason, raw)
        })
        .collect()
}

#[test]
fn files_a_0_1_0_collector_left_in_the_queue_move_to_the_state_dir_once() {
    use super::migrate::{from_queue, Migrated};
    use crate::queue::layout;
    use crate::queue::position::state_name;
    let (top, queue, state) = old_queue();
    // 0.1.0's backlog: its record (no version tag), one of ours, and a line that is
    // no record at all (kept whole, not lost).
    std::fs::write(
        queue.join(layout::BACKLOG_FILE),
        "1790000000\tfile missing\told line 1\nv1\t1790000001\tmd5\told line 2\ngarbage\n",
    )
    .unwrap();
    // The state dir's own backlog already has a record: kept, first.
    state.backlog(b"new line", "new reason").unwrap();
    // A dead collector's spool (pid_max is at most 2^22: not alive) and a live one's
    // (ours: a 0.1.0 collector still running keeps writing it).
    let dead = format!("{}99999999", layout::SPOOL_PREFIX);
    std::fs::write(queue.join(&dead), "spooled 1\nspooled 2\n").unwrap();
    // A running collector (a process whose name is the collector's: `sleep` started
    // through a link so named) keeps writing its spool.
    let named = top.path().join("modsec-collector");
    std::os::unix::fs::symlink("/bin/sleep", &named).unwrap();
    let mut running = std::process::Command::new(&named)
        .arg("30")
        .spawn()
        .unwrap();
    let live = format!("{}{}", layout::SPOOL_PREFIX, running.id());
    std::fs::write(queue.join(&live), "still written\n").unwrap();
    // A spool the queue's owner renamed to the pid of a live process that is no
    // collector (pid 1): taken over, not left for ever.
    let renamed = format!("{}1", layout::SPOOL_PREFIX);
    std::fs::write(queue.join(&renamed), "renamed 1\n").unwrap();
    // A --follow position.
    let followed = Path::new("/var/log/nginx/modsec_index.log");
    let position = state_name(followed);
    let old_position = format!(".{position}");
    let text = format!("1\t2\t3\t00000000000000ab\t{}\n", followed.display());
    std::fs::write(queue.join(&old_position), &text).unwrap();

    // A backlog a killed 0.1.0 `requeue --backlog` had taken (its pid is dead).
    let taken = format!("{}99999998", layout::BACKLOG_TAKEN_PREFIX);
    std::fs::write(queue.join(&taken), "1790000002\tfile missing\ttaken line\n").unwrap();

    let handle = crate::safefs::Dir::open_nofollow(&queue).unwrap();
    let done = from_queue(&handle, &queue, &state).unwrap();
    assert!(!queue.join(&taken).exists());
    assert_eq!(
        done,
        Migrated {
            backlog_records: 4,
            spool_lines: 3,
            positions: 1,
            refused: Vec::new(),
        }
    );
    let mut left: Vec<String> = std::fs::read_dir(&queue)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [live], "the live spool stays, the rest moved");
    assert_eq!(
        backlog_records(&state),
        [
            ("new reason".to_string(), b"new line".to_vec()),
            ("file missing".to_string(), b"old line 1".to_vec()),
            ("md5".to_string(), b"old line 2".to_vec()),
            ("(0.1.0 backlog record)".to_string(), b"garbage".to_vec()),
            ("file missing".to_string(), b"taken line".to_vec()),
        ]
    );
    assert_eq!(
        crate::queue::position::read(&state.join(&position), crate::safefs::Keeper::ThisProcess)
            .unwrap()
            .unwrap()
            .1,
        followed
    );
    // Again (the next start): nothing more to take, nothing doubled.
    let before = std::fs::read(state.join(crate::state::BACKLOG_FILE)).unwrap();
    assert_eq!(
        from_queue(&handle, &queue, &state).unwrap(),
        Migrated::default()
    );
    assert_eq!(
        std::fs::read(state.join(crate::state::BACKLOG_FILE)).unwrap(),
        before
    );
    // The spool is drained by the next collector's start-up recovery, each line once.
    let seen = Counting(Arc::new(std::sync::Mutex::new(Vec::new())));
    Pipeline::start(
        io::empty(),
        Stages::from_sink(seen.clone()),
        state.path(),
        Arc::new(Stats::default()),
    )
    .finish()
    .unwrap();
    let mut seen = seen.0.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            b"renamed 1\n".to_vec(),
            b"spooled 1\n".to_vec(),
            b"spooled 2\n".to_vec()
        ]
    );
    assert_eq!(spool_lines(state.path()), 0);
    let _ = running.kill();
    let _ = running.wait();
}

/// 0.1.0 gave its backlog to the queue's owner: that one is taken over too (its records
/// are index lines, checked like Apache's), read as checked (no link, one link). Its
/// spools were root's: one of the queue owner's is not.
#[test]
fn a_0_1_0_backlog_the_queues_owner_holds_is_taken_over_but_not_their_spool() {
    use super::migrate::from_queue;
    use crate::queue::layout;
    if !root_or_skip("a_0_1_0_backlog_the_queues_owner_holds_is_taken_over_but_not_their_spool") {
        return;
    }
    let (_top, queue, state) = old_queue();
    std::os::unix::fs::chown(&queue, Some(65534), Some(65534)).unwrap();
    for (name, text) in [
        (
            layout::BACKLOG_FILE.to_string(),
            "1790000000\tfile missing\towned line\n",
        ),
        (format!("{}99999999", layout::SPOOL_PREFIX), "spooled\n"),
    ] {
        std::fs::write(queue.join(&name), text).unwrap();
        std::os::unix::fs::chown(queue.join(&name), Some(65534), Some(65534)).unwrap();
    }
    let handle = crate::safefs::Dir::open_nofollow(&queue).unwrap();
    let done = from_queue(&handle, &queue, &state).unwrap();
    assert_eq!((done.backlog_records, done.spool_lines), (1, 0), "{done:?}");
    assert!(
        done.refused.len() == 1 && done.refused[0].contains("99999999"),
        "{done:?}"
    );
    assert_eq!(
        backlog_records(&state),
        [("file missing".to_string(), b"owned line".to_vec())]
    );
}

/// However many names the queue's owner plants, one start looks at a bounded number of
/// them (each costs root an open before it reads Apache's pipe); the rest wait.
#[test]
fn one_start_takes_over_at_most_max_migrated_files() {
    use super::migrate::{from_queue, MAX_MIGRATED_FILES};
    let (_top, queue, state) = old_queue();
    for i in 0..MAX_MIGRATED_FILES + 6 {
        std::fs::write(
            queue.join(format!(".follow.{i:016x}")),
            "v1\t1\t2\t3\t0\t/x\n",
        )
        .unwrap();
    }
    let handle = crate::safefs::Dir::open_nofollow(&queue).unwrap();
    assert_eq!(
        from_queue(&handle, &queue, &state).unwrap().positions,
        MAX_MIGRATED_FILES
    );
    assert_eq!(from_queue(&handle, &queue, &state).unwrap().positions, 6);
}

/// The worker takes 0.1.0's files over when it starts.
#[test]
fn a_new_collector_takes_a_0_1_0_backlog_over_at_start() {
    let s = setup_with(false, |c| {
        std::fs::create_dir_all(&c.queue_dir).unwrap();
        std::fs::write(
            c.queue_dir.join(crate::queue::layout::BACKLOG_FILE),
            "1790000000\tfile missing\told line\n",
        )
        .unwrap();
    });
    assert!(!s
        .dir
        .path()
        .join("queue")
        .join(crate::queue::layout::BACKLOG_FILE)
        .exists());
    assert_eq!(
        backlog_records(s.worker.state()),
        [("file missing".to_string(), b"old line".to_vec())]
    );
}

/// The queue's owner (the shipper's user) can put anything under 0.1.0's names; root
/// reads only files 0.1.0 wrote as root: a `.backlog` of theirs (forged index lines), a
/// link or a second hard link to a root file (its lines would reach the backlog and
/// the index file), a FIFO, is left where it is, unread, and named.
#[test]
fn a_planted_0_1_0_file_is_left_in_the_queue_unread() {
    if !root_or_skip("a_planted_0_1_0_file_is_left_in_the_queue_unread") {
        return;
    }
    use super::migrate::from_queue;
    use crate::queue::layout;
    let (top, queue, state) = old_queue();
    let secret = top.path().join("shadow");
    std::fs::write(&secret, "root:$6$secret\n").unwrap();
    let backlog = queue.join(layout::BACKLOG_FILE);
    let plant = |why: &str, p: &Path| match why {
        "belongs to uid 65534" => {
            std::fs::write(p, "1790000000\tforged\tforged line\n").unwrap();
            std::os::unix::fs::chown(p, Some(crate::testdata::WEB_UID), None).unwrap();
        }
        "is a symbolic link" => std::os::unix::fs::symlink(&secret, p).unwrap(),
        "has 2 hard links" => std::fs::hard_link(&secret, p).unwrap(),
        _ => nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap(),
    };
    let handle = crate::safefs::Dir::open_nofollow(&queue).unwrap();
    for why in [
        "belongs to uid 65534",
        "is a symbolic link",
        "has 2 hard links",
        "is a FIFO",
    ] {
        plant(why, &backlog);
        let done = from_queue(&handle, &queue, &state).unwrap();
        assert_eq!(done.backlog_records, 0, "{why}");
        assert!(
            done.refused.len() == 1
                && done.refused[0].contains(why)
                && done.refused[0].contains(&queue.display().to_string()),
            "{why}: {:?}",
            done.refused
        );
        assert!(std::fs::symlink_metadata(&backlog).is_ok(), "{why}: left");
        assert!(
            !state.join(crate::state::BACKLOG_FILE).exists(),
            "{why}: read"
        );
        std::fs::remove_file(&backlog).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "root:$6$secret\n"
    );
}
