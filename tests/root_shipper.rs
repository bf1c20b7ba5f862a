//! Root and the queue's owner (ARCHITECTURE.md, "What root may touch"): the account
//! that owns EVENT_DIR is the first one an attacker gets, so root-run shipper commands
//! become it before they touch the queue, root trusts only a config root alone can
//! write, and nothing the queue holds reaches root's terminal unescaped. Each test plays
//! the attacker as `nobody` owning the queue, with the real binaries, as root.

use std::io::Write as _;
use std::os::unix::fs::{chown, lchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use modsec2sguil_e2e::process::wait_exit;
use modsec2sguil_e2e::shipper::{entries_left, fill_queue, move_to_failed, shipper, stdout_config};
use modsec2sguil_e2e::{binary, skip_or_fail};

/// `nobody`'s uid and primary gid, when the tests run as root and it exists; otherwise
/// the test is skipped (a failure in CI).
fn nobody(test: &str) -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip_or_fail(test, "needs root (a queue another user owns)");
        return None;
    }
    // SAFETY: a NUL-terminated name; the result is read at once, before any other call.
    let pw = unsafe { libc::getpwnam(c"nobody".as_ptr()) };
    if pw.is_null() {
        skip_or_fail(test, "there is no user `nobody`");
        return None;
    }
    // SAFETY: pw is a valid passwd entry (checked above).
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A test directory others may enter (a queue inside must be reachable by its owner),
/// and in it `queue/`, owned by `owner`, mode 0750, with `n` good entries of theirs.
fn queue_of(owner: (u32, u32), n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let queue = dir.path().join("queue");
    fill_queue(&queue, 1, n);
    give(&queue, owner);
    chmod(&queue, 0o750);
    (dir, queue)
}

/// Gives `path` and everything below it to `owner` (links themselves, not followed).
fn give(path: &Path, owner: (u32, u32)) {
    lchown(path, Some(owner.0), Some(owner.1)).unwrap();
    if path.is_dir() && !path.is_symlink() {
        for e in std::fs::read_dir(path).unwrap() {
            give(&e.unwrap().path(), owner);
        }
    }
}

/// A directory only root may enter, which must stay empty.
fn root_only(dir: &Path) -> PathBuf {
    let p = dir.join("root-only");
    std::fs::create_dir(&p).unwrap();
    chmod(&p, 0o700);
    p
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Attack 5 of issue 25: the queue's owner replaces `failed/` by a link to a directory
/// only root may write, and queues an entry that cannot be parsed. `drain`, run by root
/// without RUNAS, becomes the queue's owner first: the link leads nowhere it may go, and
/// the quarantine refuses to enter `failed/` through a link anyway. Nothing is created
/// behind it, the poison entry stays queued, and the run says why.
#[test]
fn drain_as_root_works_as_the_queues_owner_and_never_enters_a_planted_failed_link() {
    let Some(nobody) = nobody("drain_as_root_…_planted_failed_link") else {
        return;
    };
    let (dir, queue) = queue_of(nobody, 0);
    let secret = root_only(dir.path());
    std::os::unix::fs::symlink(&secret, queue.join("failed")).unwrap();
    let poison = queue.join("modsec.log.1790000000.000001");
    std::fs::write(&poison, "not an audit-log event\n").unwrap();
    give(&queue, nobody);
    let conf = stdout_config(dir.path(), &queue, "");
    let (code, _, err) = text(&shipper(&["drain", "-c", conf.to_str().unwrap()]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("failed"), "{err}");
    assert!(
        listing(&secret).is_empty(),
        "created behind the link: {:?}",
        listing(&secret)
    );
    assert_eq!(
        entries_left(&queue),
        ["modsec.log.1790000000.000001"],
        "{err}"
    );
    // What the run wrote is the queue owner's, not root's, and so is the queue.
    for name in [".journal", ".last-run", ".lock"] {
        let m = std::fs::metadata(queue.join(name)).unwrap();
        assert_eq!((m.uid(), m.gid()), nobody, "{name}");
    }
    // The library's quarantine refuses the link even as root (defence in depth).
    let q = modsec2sguil::queue::Queue::at(&queue);
    let e = q
        .quarantine("modsec.log.1790000000.000001", "bad")
        .unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert!(listing(&secret).is_empty());
}

/// The uid, gid and groups of a running process, from /proc: the `Uid:`, `Gid:` and
/// `Groups:` lines.
fn credentials(pid: u32) -> (String, String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

/// While it works on the queue, a root-started `drain` is the queue's owner for good:
/// real, effective and saved uid and gid, and no other group (seen in /proc while it
/// waits for the lock the test holds). Without RUNAS that is EVENT_DIR's owner; with
/// RUNAS, RUNAS.
#[test]
fn a_root_started_drain_runs_as_runas_or_else_the_queues_owner() {
    let Some(nobody) = nobody("a_root_started_drain_runs_as_runas_or_else_the_queues_owner") else {
        return;
    };
    let (dir, queue) = queue_of(nobody, 2);
    let lock = queue.join(".lock");
    std::fs::write(&lock, "").unwrap();
    chown(&lock, Some(nobody.0), Some(nobody.1)).unwrap();
    let want = (
        format!("{0} {0} {0} {0}", nobody.0),
        format!("{0} {0} {0} {0}", nobody.1),
        nobody.1.to_string(),
    );
    for runas in ["", "set RUNAS nobody\n"] {
        let conf = stdout_config(dir.path(), &queue, runas);
        let held = std::fs::File::open(&lock).unwrap();
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let mut child = Command::new(binary("modsec-shipper"))
            .args(["drain", "--wait", "-c", conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It says it waits once it holds the queue open: by then it has switched.
        let mut said = String::new();
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        while !said.contains("waiting for it") {
            let mut line = String::new();
            if std::io::BufRead::read_line(&mut err, &mut line).unwrap() == 0 {
                panic!("{runas:?}: drain ended: {said}");
            }
            said.push_str(&line);
        }
        assert_eq!(credentials(child.id()), want, "{runas:?}");
        drop(held);
        assert_eq!(
            wait_exit(&mut child, Duration::from_secs(20)),
            Some(0),
            "{runas:?}"
        );
        assert!(entries_left(&queue).is_empty(), "{runas:?}: shipped");
        fill_queue(&queue, 10, 2);
        give(&queue, nobody);
    }
}

/// `requeue --failed` as root moves files in `failed/` as the queue's owner: a
/// `failed/history` planted as a link to a root-only directory gets nothing, and the
/// entry still goes back into the queue.
#[test]
fn requeue_failed_as_root_moves_files_as_the_queues_owner() {
    let Some(nobody) = nobody("requeue_failed_as_root_moves_files_as_the_queues_owner") else {
        return;
    };
    let (dir, queue) = queue_of(nobody, 1);
    let failed = move_to_failed(&queue, "modsec.log.1790000000.000001");
    std::fs::write(
        failed.join("modsec.log.1790000000.000001.reason"),
        "version: 1\nreason: sguild refused the event\n",
    )
    .unwrap();
    let secret = root_only(dir.path());
    std::os::unix::fs::symlink(&secret, failed.join("history")).unwrap();
    give(&queue, nobody);
    let conf = stdout_config(dir.path(), &queue, "");
    let (code, out, err) = text(&shipper(&[
        "requeue",
        "-c",
        conf.to_str().unwrap(),
        "--failed",
        "--all",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("queued modsec.log.1790000000.000001"),
        "{out}{err}"
    );
    assert!(err.contains("not moved to the history"), "{err}");
    assert!(listing(&secret).is_empty(), "{:?}", listing(&secret));
    assert_eq!(entries_left(&queue), ["modsec.log.1790000000.000001"]);
}

/// `status` as root reads the queue as its owner: a record only root may read is not
/// shown (it is a problem, named), and a queue whose owner has no account cannot be
/// worked on as root at all: `status`, `drain` and `requeue --failed` refuse with exit 3
/// and say how to fix it.
#[test]
fn status_as_root_reads_as_the_queues_owner_and_an_ownerless_queue_is_refused() {
    let Some(nobody) = nobody("status_as_root_reads_as_the_queues_owner…") else {
        return;
    };
    let (dir, queue) = queue_of(nobody, 1);
    let record = queue.join(".last-run");
    std::fs::write(
        &record,
        r#"{"program":"ROOT-ONLY","pid":1,"finished":1790000000,"seconds":1.0,"result":"ok","shipped":0,"already_stored":0,"skipped":0,"quarantined":0,"remaining":0}"#,
    )
    .unwrap();
    chmod(&record, 0o600);
    let conf = stdout_config(dir.path(), &queue, "");
    let (code, out, err) = text(&shipper(&["status", "-c", conf.to_str().unwrap()]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("ROOT-ONLY"), "{out}");
    assert!(
        out.contains("problem:") && out.contains(".last-run") && out.contains("Permission denied"),
        "{out}"
    );
    // No account owns the queue: nothing to become.
    give(&queue, (54321, 54321));
    let (code, out, _) = text(&shipper(&["status", "-c", conf.to_str().unwrap()]));
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("belongs to uid 54321") && out.contains("set RUNAS"),
        "{out}"
    );
    for args in [vec!["drain"], vec!["requeue", "--failed", "--all"]] {
        let mut args = args.clone();
        args.extend(["-c", conf.to_str().unwrap()]);
        let (code, _, err) = text(&shipper(&args));
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(
            err.contains("uid 54321") && err.contains("set RUNAS"),
            "{args:?}: {err}"
        );
    }
}

/// RUNAS set, but the queue is another user's: the drain, now RUNAS, cannot take the
/// lock, and says whose the queue is and how to fix it (a second attacker review found
/// only "Permission denied").
#[test]
fn a_queue_runas_cannot_enter_is_named_with_its_owner_and_the_fix() {
    let Some(nobody) = nobody("a_queue_runas_cannot_enter_is_named_with_its_owner_and_the_fix")
    else {
        return;
    };
    let (dir, queue) = queue_of(nobody, 1);
    give(&queue, (54321, 54321));
    let conf = stdout_config(dir.path(), &queue, "set RUNAS nobody\n");
    let (code, _, err) = text(&shipper(&["drain", "-c", conf.to_str().unwrap()]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("Permission denied")
            && err.contains("belongs to uid 54321")
            && err.contains("runs as uid 65534")
            && err.contains("set RUNAS"),
        "{err}"
    );
}

/// An index line for an event file of `size` bytes at `rel` below `storage`, written.
fn event_line(storage: &Path, rel: &str, size: usize) -> Vec<u8> {
    use md5::Digest;
    let path = storage.join(rel.trim_start_matches('/'));
    let content = vec![b'e'; size];
    modsec2sguil_e2e::web_user::write_event(&path, &content);
    format!(
        "lab.example 127.0.0.1 - - [28/Nov/2026:02:14:31.009836 +0000] \"GET / HTTP/1.1\" 403 239 \"-\" \"-\" id00001 \"-\" {rel} 0 {size} md5:{}\n",
        modsec2sguil::hex::lower(&md5::Md5::digest(&content))
    )
    .into_bytes()
}

/// Runs the collector as Apache does (`-c CONF STORAGE_DIR INDEX_FILE`) on `lines`.
fn collector(conf: &Path, storage: &Path, index: &Path, lines: &[u8]) -> (Option<i32>, String) {
    let mut child = Command::new(binary("modsec-collector"))
        .arg("-c")
        .arg(conf)
        .arg(storage)
        .arg(index)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(lines).unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(20));
    let out = child.wait_with_output().unwrap();
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Attack 6: a config another user owns, or may write, would let them choose EVENT_DIR,
/// RUNAS and LOG_FILE for root. Both binaries, run as root, refuse it, naming the file,
/// its owner and mode and the fix: the collector runs degraded (it still drains the pipe
/// and keeps the index lines where its command line says, never where the refused
/// config does), `drain` exits 3. The Debian package's `root:<group> 0640` passes.
#[test]
fn a_config_anyone_but_root_could_write_is_refused_by_both_binaries() {
    let Some(nobody) = nobody("a_config_anyone_but_root_could_write_is_refused_by_both_binaries")
    else {
        return;
    };
    let (dir, queue) = queue_of((0, 0), 0);
    chmod(&queue, 0o755);
    let storage = dir.path().join("audit");
    let index = dir.path().join("index.log");
    let planted_log = dir.path().join("chosen-by-nobody.log");
    let conf = stdout_config(
        dir.path(),
        &queue,
        &format!(
            "set STORAGE_DIR {}\nset LOG_FILE {}\n",
            storage.display(),
            planted_log.display()
        ),
    );
    let line = event_line(&storage, "/www-data/20261128/20261128-0214/e1", 100);
    chown(&conf, Some(nobody.0), Some(nobody.1)).unwrap();
    chmod(&conf, 0o666);
    let (code, err) = collector(&conf, &storage, &index, &line);
    assert_eq!(code, Some(2), "degraded: {err}");
    let named = format!(
        "{} is owned by uid {} (nobody), mode 0666",
        conf.display(),
        nobody.0
    );
    assert!(
        err.contains("cannot queue events") && err.contains(&named),
        "{err}"
    );
    assert!(
        err.contains("chown root") && err.contains("chmod go-w"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&index).unwrap(),
        line,
        "the index line is kept"
    );
    assert!(entries_left(&queue).is_empty());
    assert!(
        !planted_log.exists(),
        "the refused config's LOG_FILE was opened"
    );
    let (code, err) = modsec2sguil_e2e::shipper::drain(&conf, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&named) && err.contains("chmod go-w"), "{err}");
    // Root's, mode 0640, readable by the shipper's group: trusted.
    chown(&conf, Some(0), Some(nobody.1)).unwrap();
    chmod(&conf, 0o640);
    std::fs::remove_file(&index).unwrap();
    let (code, err) = collector(&conf, &storage, &index, &line);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(entries_left(&queue).len(), 1, "{err}");
    let (code, err) = modsec2sguil_e2e::shipper::drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
}

/// Attack 4: the queue's owner writes terminal controls into what root's `status` and
/// `requeue` print (the last run's program and error, reason files, file names). Every
/// such string is escaped: no ESC, no other C0 control but newline and tab, no C1
/// control, in any output mode.
#[test]
fn nothing_the_queue_holds_drives_roots_terminal() {
    let Some(nobody) = nobody("nothing_the_queue_holds_drives_roots_terminal") else {
        return;
    };
    let (dir, queue) = queue_of(nobody, 1);
    let forged = "\u{1b}[2J\u{1b}[1;32mOK - all is well\u{1b}[0m\u{9b}2J\u{7}";
    let record = serde_json::json!({
        "program": forged, "pid": 1, "finished": 1_790_000_000, "seconds": 1.0,
        "result": "outage", "error": forged, "shipped": 0, "already_stored": 0,
        "skipped": 0, "quarantined": 0, "remaining": 0,
    });
    std::fs::write(queue.join(".last-run"), record.to_string()).unwrap();
    let failed = queue.join("failed");
    std::fs::create_dir(&failed).unwrap();
    std::fs::write(failed.join("modsec.log.1.000001"), "x").unwrap();
    std::fs::write(
        failed.join("modsec.log.1.000001.reason"),
        format!("version: 1\nreason: {forged}: more\n"),
    )
    .unwrap();
    // A file name with controls, whose reason file is over its bound (warned of, named).
    let name = format!("modsec.log.2.000002{forged}");
    std::fs::write(failed.join(&name), "x").unwrap();
    std::fs::write(failed.join(format!("{name}.reason")), vec![b'x'; 70_000]).unwrap();
    // And one that cannot be read, which status names as a problem.
    nix_mkfifo(&queue.join(format!(".spool.{forged}")));
    give(&queue, nobody);
    let conf = stdout_config(dir.path(), &queue, "");
    let conf = conf.to_str().unwrap();
    for args in [
        vec!["status", "-c", conf],
        vec!["status", "-c", conf, "--json"],
        vec!["status", "-c", conf, "--warn-age", "1s"],
        vec!["status", "-c", conf, "--json", "--crit-failed", "1"],
        vec!["requeue", "-c", conf, "--failed", "--all", "--dry-run"],
        vec!["requeue", "-c", conf, "--failed", "--dry-run", &name],
    ] {
        let out = shipper(&args);
        let (_, stdout, stderr) = text(&out);
        let both = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
        let bad: Vec<u8> = both
            .iter()
            .copied()
            .filter(|&b| (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f)
            .collect();
        assert!(
            bad.is_empty(),
            "{args:?}: control bytes {bad:?} in:\n{stdout}\n{stderr}"
        );
        let text = String::from_utf8_lossy(&both);
        assert!(
            !text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)),
            "{args:?}: a C1 control in:\n{text}"
        );
        assert!(
            text.contains("OK - all is well") || args[0] == "requeue",
            "{args:?}: {text}"
        );
    }
    let (_, out, err) = text(&shipper(&["status", "-c", conf]));
    assert!(out.contains("\\x1b[2J"), "shown escaped: {out}");
    assert!(out.contains("problem:") && out.contains(".spool."), "{out}");
    assert!(err.contains("MAX_REASON_BYTES"), "{err}");
}

fn nix_mkfifo(path: &Path) {
    use rustix::fs::{mknodat, FileType, Mode, CWD};
    mknodat(CWD, path, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).unwrap();
}

/// `show`, run as root, parses attacker-written files (a queue entry, an event a client
/// shaped): it opens the files it was given as root (one only root may read is still
/// shown), then drops to `nobody` for good before reading a byte. Seen in /proc while
/// it waits on a full stdout pipe, mid-way through its output.
#[test]
fn show_as_root_opens_its_files_then_parses_as_nobody() {
    let Some(nobody) = nobody("show_as_root_opens_its_files_then_parses_as_nobody") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap(); // root's, 0700: nobody cannot enter it
    let event = dir.path().join("event");
    std::fs::copy(
        modsec2sguil_e2e::fixtures().join(modsec2sguil_e2e::shipper::TEMPLATE),
        &event,
    )
    .unwrap();
    chmod(&event, 0o600);
    // Enough output to fill the pipe the test does not read yet.
    let n = 400;
    let child = Command::new(binary("modsec-shipper"))
        .arg("show")
        .args(std::iter::repeat_n(&event, n))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let want = (
        format!("{0} {0} {0} {0}", nobody.0),
        format!("{0} {0} {0} {0}", nobody.1),
        nobody.1.to_string(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = credentials(child.id());
    while seen != want && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        seen = credentials(child.id());
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(seen, want, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        shown.matches("awo5Btrt9m7QJiOqXPD3lAAAAEc").count(),
        n,
        "{shown:.2000}"
    );
}

/// A `failed/` an earlier release made root's (a root-run drain without RUNAS) is not
/// the queue owner's to write: the quarantine fails, the entry stays, and the message
/// says how to give it back; once given back, the entry is quarantined.
#[test]
fn a_root_owned_failed_dir_left_by_an_older_root_run_is_named_with_the_fix() {
    let Some(nobody) =
        nobody("a_root_owned_failed_dir_left_by_an_older_root_run_is_named_with_the_fix")
    else {
        return;
    };
    let (dir, queue) = queue_of(nobody, 0);
    std::fs::write(queue.join("modsec.log.1790000000.000001"), "not an event\n").unwrap();
    give(&queue, nobody);
    std::fs::create_dir(queue.join("failed")).unwrap(); // root's, 0755
    let conf = stdout_config(dir.path(), &queue, "");
    let (code, err) = modsec2sguil_e2e::shipper::drain(&conf, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("Permission denied") && err.contains("chown -R --reference="),
        "{err}"
    );
    assert_eq!(entries_left(&queue).len(), 1);
    give(&queue.join("failed"), nobody);
    let (code, err) = modsec2sguil_e2e::shipper::drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(entries_left(&queue).is_empty(), "{err}");
    assert_eq!(
        listing(&queue.join("failed")).len(),
        2,
        "the entry and its reason"
    );
}

/// `show` run as root over a queue its owner (`nobody`) fills: a link planted there to a
/// secret only root may read is not followed, a file of root's (one hard-linked or
/// steered there) is not read, and a file larger than MAX_EVENT_BYTES is not read to its
/// end; each is named with why, and not a byte of the secrets reaches the output. The
/// owner's own event, hard-linked into the queue as the collector does, is still shown.
#[test]
fn show_as_root_follows_no_planted_link_and_reads_no_file_of_roots() {
    let Some(nobody) = nobody("show_as_root_follows_no_planted_link_and_reads_no_file_of_roots")
    else {
        return;
    };
    let (dir, queue) = queue_of(nobody, 0);
    let template = std::fs::read_to_string(
        modsec2sguil_e2e::fixtures().join(modsec2sguil_e2e::shipper::TEMPLATE),
    )
    .unwrap();
    // A secret only root may read, in a directory only root may enter.
    let secret = root_only(dir.path()).join("shadow");
    let secret_line = "root:$6$SECRETxHASHxOFxROOT:19000:0:99999:7:::";
    std::fs::write(&secret, format!("{secret_line}\n")).unwrap();
    chmod(&secret, 0o600);
    // Root's own event-shaped file, mode 0600.
    let secret_id = "ROOTxONLYxEVENTxIDxxxxxxxx";
    let link = queue.join("modsec.log.300.000003");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let roots = queue.join("modsec.log.300.000004");
    std::fs::write(
        &roots,
        template.replace("awo5Btrt9m7QJiOqXPD3lAAAAEc", secret_id),
    )
    .unwrap();
    chmod(&roots, 0o600);
    // The owner's event in its storage dir, hard-linked into the queue.
    let storage = dir.path().join("storage");
    std::fs::create_dir(&storage).unwrap();
    std::fs::write(storage.join("ev"), &template).unwrap();
    let linked = queue.join("modsec.log.300.000005");
    std::fs::hard_link(storage.join("ev"), &linked).unwrap();
    // Larger than MAX_EVENT_BYTES (16 MiB by default), sparse.
    let big = queue.join("modsec.log.300.000006");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    give(&storage, nobody);
    for p in [&link, &linked, &big] {
        lchown(p, Some(nobody.0), Some(nobody.1)).unwrap();
    }
    assert_eq!(std::fs::metadata(&linked).unwrap().nlink(), 2);
    let out = Command::new(binary("modsec-shipper"))
        .arg("show")
        .args([&link, &roots, &linked, &big])
        .output()
        .unwrap();
    let (code, shown, err) = text(&out);
    assert_eq!(code, 1, "{err}");
    for (file, why) in [
        (&link, "is a symbolic link; not followed".to_string()),
        (&roots, "belongs to root: not an event".to_string()),
        (
            &big,
            format!("{} bytes, more than MAX_EVENT_BYTES (16777216)", 17 << 20),
        ),
    ] {
        assert!(
            err.contains(&format!("{}: {why}", file.display())),
            "{why}: {err}"
        );
    }
    assert!(err.contains("3 of 4 file(s)"), "{err}");
    for leak in ["SECRETxHASHxOFxROOT", secret_id] {
        assert!(
            !shown.contains(leak) && !err.contains(leak),
            "{leak} leaked:\n{shown}\n{err}"
        );
    }
    assert_eq!(
        shown.matches("awo5Btrt9m7QJiOqXPD3lAAAAEc").count(),
        1,
        "{shown}\n{err}"
    );
}

/// The `Uid:` line of a running process: real, effective, saved and filesystem uid.
fn uids(pid: u32) -> Vec<u32> {
    credentials(pid)
        .0
        .split(' ')
        .map(|u| u.parse().unwrap())
        .collect()
}

/// Every file and directory below `dir` (not `dir` itself), links not followed.
fn everything_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if p.is_dir() && !p.is_symlink() {
            out.extend(everything_below(&p));
        }
    }
    out
}

/// Waits (up to 60 s, a backstop) until `cond`.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// RUNAS is who the shipper is (README: root-started, it drops to RUNAS): a root-started
/// `drain` and `run`, with RUNAS `nobody` and a queue that root owns (group `nobody`'s,
/// 0770: so the queue's owner is not RUNAS, and only RUNAS can be the answer), run as
/// `nobody` (all four uids, read from /proc while they wait on a sguild that answers
/// late), and everything they write in EVENT_DIR (.journal, .delivered, .last-run,
/// .lock, failed/ and the quarantined entry with its reason) is `nobody`'s.
#[test]
fn drain_and_run_started_by_root_are_runas_and_so_is_all_they_write() {
    use modsec2sguil_e2e::sguild::TestSguild;
    let Some(nobody) = nobody("drain_and_run_started_by_root_are_runas_and_so_is_all_they_write")
    else {
        return;
    };
    let server = TestSguild::start();
    // Each reply 1 s late: the runs are caught at work.
    server.set(|f| f.event_delay = Some(Duration::from_millis(1000)));
    let (dir, queue) = queue_of((0, nobody.1), 3);
    chmod(&queue, 0o770);
    // A poison entry: quarantined into failed/ with its reason.
    std::fs::write(queue.join("modsec.log.1790000000.000099"), "not an event\n").unwrap();
    let conf = modsec2sguil_e2e::shipper::config(
        dir.path(),
        &queue,
        &server,
        "set RUNAS nobody\nset SEND_WINDOW 1\n",
    );
    let conf = conf.to_str().unwrap();
    let start = |command: &str| {
        Command::new(binary("modsec-shipper"))
            .args([command, "-c", conf])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let owners = |when: &str| {
        let all = everything_below(&queue);
        for name in [".journal", ".delivered", ".last-run", ".lock", "failed"] {
            assert!(queue.join(name).exists(), "{when}: no {name}: {all:?}");
        }
        for p in all {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy();
            // A quarantined entry is moved, not written: it stays its writer's (here
            // the test's, root); its reason is the shipper's.
            let want = if name.starts_with("modsec.log.") && !name.ends_with(".reason") {
                0
            } else {
                nobody.0
            };
            assert_eq!(
                m.uid(),
                want,
                "{when}: {} is uid {}'s",
                p.display(),
                m.uid()
            );
        }
    };

    let mut child = start("drain");
    // Journaled, so at work on the queue (and waiting for the late reply).
    wait_until("drain to journal", || {
        std::fs::metadata(queue.join(".journal")).is_ok_and(|m| m.len() > 0)
    });
    assert_eq!(uids(child.id()), vec![nobody.0; 4], "drain");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(120)),
        Some(0),
        "drain"
    );
    assert_eq!(server.events().len(), 3);
    assert_eq!(
        listing(&queue.join("failed")).len(),
        2,
        "the entry and its reason"
    );
    owners("after drain");

    let mut child = start("run");
    for i in [20, 21] {
        // Written aside and renamed in, as the collector links: never seen half-written.
        let (name, _, text) = modsec2sguil_e2e::shipper::test_entry(i);
        std::fs::write(dir.path().join(&name), text).unwrap();
        std::fs::rename(dir.path().join(&name), queue.join(&name)).unwrap();
    }
    wait_until("run to send the first new event", || {
        server.events().len() > 3
    });
    assert_eq!(uids(child.id()), vec![nobody.0; 4], "run");
    wait_until("run to ship both", || entries_left(&queue).is_empty());
    modsec2sguil_e2e::process::signal(child.id(), "TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(60)),
        Some(0),
        "run"
    );
    assert_eq!(server.events().len(), 5);
    owners("after run");
}
