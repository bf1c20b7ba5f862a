//! Privilege separation (ARCHITECTURE.md, "What root may touch"): the root collector
//! against the queue's owner. That account (RUNAS) parses attacker-written HTTP all day,
//! so it is the first one an attacker gets; from it they must not stall Apache, crash
//! the collector, or make root open what they plant. Each test is an attack that worked
//! on 0.1.0, run against the real binary, as root, with `nobody` owning the queue and
//! the storage dir.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use modsec2sguil_e2e::web_user::{self, WEB_UID as NOBODY};
use modsec2sguil_e2e::{binary, skip_or_fail};

struct Site {
    _work: tempfile::TempDir,
    root: PathBuf,
    storage: PathBuf,
    queue: PathBuf,
    state: PathBuf,
    conf: PathBuf,
    log: PathBuf,
}

/// A site as the Debian package lays it out, in a root-owned temporary directory:
/// storage dir and queue `nobody`'s (the web server's and RUNAS), the state dir root's.
/// `None` (after a loud skip) when not root.
fn site(test: &str) -> Option<Site> {
    if unsafe { libc::geteuid() } != 0 {
        skip_or_fail(test, "needs root (the collector's privilege separation)");
        return None;
    }
    let work = tempfile::tempdir().unwrap();
    let root = work.path().to_path_buf();
    let storage = root.join("audit");
    let queue = root.join("queue");
    let state = root.join("state");
    for d in [&storage, &queue] {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let conf = root.join("collector.conf");
    let log = root.join("collector.log");
    std::fs::write(
        &conf,
        format!(
            "set EVENT_DIR {}\nset STORAGE_DIR {}\nset STATE_DIR {}\nset RUNAS nobody\nset LOG_FILE {}\n",
            queue.display(),
            storage.display(),
            state.display(),
            log.display()
        ),
    )
    .unwrap();
    Some(Site {
        _work: work,
        root,
        storage,
        queue,
        state,
        conf,
        log,
    })
}

impl Site {
    /// Writes `n` events as the web server would (owned by nobody) and returns their
    /// index lines.
    fn events(&self, n: usize) -> Vec<u8> {
        let dir = self.storage.join("20261128/20261128-0214");
        std::fs::create_dir_all(&dir).unwrap();
        for d in [self.storage.join("20261128"), dir.clone()] {
            std::os::unix::fs::chown(&d, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        let mut lines = Vec::new();
        for i in 0..n {
            let body = format!("--a-A--\n[28/Nov/2026:02:14:31 +0000] PRIVSEP{i} 127.0.0.1 1 127.0.0.1 80\n--a-Z--\n");
            let name = format!("20261128-021431-PRIVSEP{i}");
            web_user::write_event(&dir.join(&name), body.as_bytes());
            lines.extend_from_slice(
                format!(
                    "lab.example 127.0.0.1 - - [28/Nov/2026:02:14:31.009836 +0000] \"GET / HTTP/1.1\" 403 239 \"-\" \"-\" PRIVSEP{i} \"-\" /20261128/20261128-0214/{name} 0 {} md5:{}\n",
                    body.len(),
                    md5_hex(body.as_bytes()),
                )
                .as_bytes(),
            );
        }
        lines
    }

    /// Starts the collector as Apache does (stdin a pipe), with an address-space limit.
    fn collector(&self, address_space: Option<u64>) -> Child {
        let mut cmd = Command::new(binary("modsec-collector"));
        cmd.arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(bytes) = address_space {
            modsec2sguil_e2e::process::limit(&mut cmd, libc::RLIMIT_AS, bytes);
        }
        cmd.spawn().unwrap()
    }

    fn entries(&self) -> usize {
        std::fs::read_dir(&self.queue)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("modsec.log."))
            .count()
    }

    /// Each entry and the unique id its event holds (for failure messages).
    fn listing(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = std::fs::read_dir(&self.queue)
            .unwrap()
            .flatten()
            .map(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let id = text.split_whitespace().find(|w| w.starts_with("PRIVSEP"));
                (
                    e.file_name().to_string_lossy().into_owned(),
                    id.unwrap_or("").to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Waits for `child` to exit, at most `limit`; kills it (by its PID) and fails if not.
fn wait_exit(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: the collector did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Attack 1 of issue 25: the queue's owner holds every lock it can take in the queue
/// (`flock -x .backlog`, the directory, every file) and plants a dangling
/// `.spool.<collector pid>` link. On 0.1.0 the spill fell back to the backlog, the
/// backlog waited on the lock, and Apache's writer blocked with 24,012 lines in. Now the
/// collector takes no lock and writes nothing by name in the queue: 60,000 lines go
/// through while the attacker holds on, and each is queued once.
#[test]
fn the_queues_owner_holding_every_lock_never_stalls_apaches_writer() {
    let Some(site) = site("the_queues_owner_holding_every_lock_never_stalls_apaches_writer") else {
        return;
    };
    const N: usize = 60_000;
    let lines = site.events(N);
    // What 0.1.0 used: its backlog, and the lock file, held for the whole run.
    let mut held = Vec::new();
    for name in [".backlog", ".lock", ".journal"] {
        let path = site.queue.join(name);
        let f = std::fs::File::create(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).unwrap();
        held.push(f);
    }
    let dir = std::fs::File::open(&site.queue).unwrap();
    rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive).unwrap();
    held.push(dir);
    // The worker held up, so that every line must spill: an index file whose open()
    // hangs (a FIFO nobody reads, in a directory only root writes, as a dead NFS mount).
    let index = site.root.join("index.fifo");
    mkfifo(&index);
    let conf = std::fs::read_to_string(&site.conf).unwrap();
    std::fs::write(
        &site.conf,
        format!("{conf}set INDEX_FILE {}\n", index.display()),
    )
    .unwrap();
    let mut child = site.collector(None);
    // Planted once the collector has started (and looked for spools left behind, which
    // would have set a link aside): where it would spill its next lines.
    let started = Instant::now();
    while !site.log().contains("started") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the collector did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let planted = site.queue.join(format!(".spool.{}", child.id()));
    std::os::unix::fs::symlink(site.root.join("nowhere/at/all"), &planted).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Apache's side of the pipe: it must get every line in. A writer blocked on the
    // full pipe never finishes; the deadline is far above the ~2 s this takes.
    let writer = std::thread::spawn(move || {
        for chunk in lines.chunks(64 * 1024) {
            stdin.write_all(chunk).unwrap();
        }
        stdin
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !writer.is_finished() {
        assert!(
            Instant::now() < deadline,
            "Apache's writer is blocked: the collector stopped reading; log:\n{}",
            site.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The hang ends: every line reaches the index file and the queue.
    let reader = {
        let index = index.clone();
        std::thread::spawn(move || std::fs::read(&index).unwrap())
    };
    drop(writer.join().unwrap()); // closes the pipe, as Apache does at stop
    let status = wait_exit(&mut child, Duration::from_secs(300), "after 60,000 lines");
    let indexed = reader.join().unwrap();
    assert_eq!(indexed.iter().filter(|&&b| b == b'\n').count(), N);
    assert!(status.success(), "{status:?}; log:\n{}", site.log());
    assert_eq!(site.entries(), N, "log:\n{}", site.log());
    // Nothing of the attacker's was used: the planted spool link still dangles, unread;
    // the locked (empty) backlog they hold, in 0.1.0's place, was at most taken over as
    // 0.1.0's backlog, without waiting for their lock, and brought no line.
    assert!(std::fs::symlink_metadata(&planted).unwrap().is_symlink());
    assert_eq!(
        std::fs::read(site.state.join("backlog")).unwrap_or_default(),
        b"",
        "no line went to the backlog"
    );
    drop(held);
}

/// Attack 2 of issue 25: an empty `.spool.<dead pid>` and a 4 GB sparse `.delivered`
/// planted in the queue made 0.1.0 read the whole delivered log into memory (abort,
/// rc 134) at every start. Now the collector reads nothing its owner wrote: under a
/// 2 GB address-space limit it starts, queues, and exits cleanly, and leaves the
/// planted files alone (the spool is not root's, so it is not taken over).
#[test]
fn a_planted_spool_and_a_huge_delivered_log_do_not_crash_the_collector() {
    let Some(site) = site("a_planted_spool_and_a_huge_delivered_log_do_not_crash_the_collector")
    else {
        return;
    };
    let lines = site.events(20);
    let spool = site.queue.join(".spool.4294967295");
    std::fs::write(&spool, b"").unwrap();
    std::os::unix::fs::chown(&spool, Some(NOBODY), Some(NOBODY)).unwrap();
    let delivered = site.queue.join(".delivered");
    let f = std::fs::File::create(&delivered).unwrap();
    f.set_len(4 << 30).unwrap();
    std::os::unix::fs::chown(&delivered, Some(NOBODY), Some(NOBODY)).unwrap();
    for _ in 0..2 {
        let mut child = site.collector(Some(2 << 30));
        child.stdin.take().unwrap().write_all(&lines).unwrap();
        let status = wait_exit(
            &mut child,
            Duration::from_secs(60),
            "with a huge .delivered",
        );
        assert!(status.success(), "{status:?}; log:\n{}", site.log());
    }
    assert_eq!(site.entries(), 20, "log:\n{}", site.log());
    assert!(
        spool.exists(),
        "the planted spool is not the collector's to take"
    );
    assert!(
        site.log().contains(".spool.4294967295"),
        "the refusal names it; log:\n{}",
        site.log()
    );
    assert_eq!(std::fs::metadata(&delivered).unwrap().len(), 4 << 30);
}

/// Attack 3 of issue 25: links planted in the queue — an entry, a spool, a follow
/// position, a backlog — to something root must not open (here a FIFO standing for
/// `/dev/zero` or a secret). Root never opens one: the FIFO never gets a reader.
#[test]
fn root_never_opens_what_the_queues_owner_links_into_the_queue() {
    let Some(site) = site("root_never_opens_what_the_queues_owner_links_into_the_queue") else {
        return;
    };
    let all = site.events(51);
    let cut = all.len() - all.iter().rev().skip(1).position(|&b| b == b'\n').unwrap();
    // 50 lines through the pipe, the 51st in a dead collector's spool (a real file, so
    // that the start-up recovery runs, which on 0.1.0 read every queue entry,
    // following links).
    let (lines, spooled) = all.split_at(cut);
    let target = site.root.join("root-only");
    std::fs::create_dir(&target).unwrap();
    let fifo = target.join("secret");
    mkfifo(&fifo);
    for name in [
        "modsec.log.1.000001",
        ".spool.4294967295",
        ".follow.0123456789abcdef",
        ".backlog",
    ] {
        std::os::unix::fs::symlink(&fifo, site.queue.join(name)).unwrap();
    }
    // A writer blocked in open() until someone opens the FIFO to read: if the collector
    // does, the writer gets through while the collector runs.
    let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let (fifo, released) = (fifo.clone(), released.clone());
        std::thread::spawn(move || {
            let _w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            !released.load(std::sync::atomic::Ordering::SeqCst)
        })
    };
    std::fs::write(site.queue.join(".spool.4294967294"), spooled).unwrap();
    let mut child = site.collector(None);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines).unwrap();
    drop(stdin);
    let status = wait_exit(&mut child, Duration::from_secs(60), "with planted links");
    released.store(true, std::sync::atomic::Ordering::SeqCst);
    // Lets a writer still waiting through now (non-blocking: it may be gone already).
    let _r = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let opened_by_collector = watch.join().unwrap();
    assert!(status.success(), "{status:?}; log:\n{}", site.log());
    assert!(
        !opened_by_collector,
        "root opened the FIFO behind a link the queue's owner planted"
    );
    assert_eq!(
        site.entries(),
        51 + 1,
        "the 51 events, and the planted link left alone: {:?}; log:\n{}",
        site.listing(),
        site.log()
    );
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// The upgrade: a queue left by 0.1.0, with a dead collector's spool, its backlog and
/// a follow position, is taken over by the new layout: the spool's lines queued once,
/// the backlog and position moved into the state dir, nothing left in the queue. A
/// second start changes nothing.
#[test]
fn a_queue_left_by_0_1_0_is_taken_over_without_losing_or_doubling_a_line() {
    let Some(site) = site("a_queue_left_by_0_1_0_is_taken_over_without_losing_or_doubling_a_line")
    else {
        return;
    };
    let lines = site.events(5);
    let all: Vec<&[u8]> = lines.split_inclusive(|&b| b == b'\n').collect();
    // 0.1.0 wrote these as root: the spool of a collector that died with 3 lines in it,
    // and a backlog of 2 records (untagged, as 0.1.0 wrote them).
    std::fs::write(site.queue.join(".spool.4294967295"), all[..3].concat()).unwrap();
    let backlog = format!(
        "1790000000\tfile missing\t{}1790000001\tfile missing\t{}",
        String::from_utf8_lossy(all[3]),
        String::from_utf8_lossy(all[4])
    );
    std::fs::write(site.queue.join(".backlog"), &backlog).unwrap();
    let position_name = ".follow.00112233445566ff";
    std::fs::write(
        site.queue.join(position_name),
        b"v1\t1\t2\t3\t0000000000000000\t/x\n",
    )
    .unwrap();
    for round in 0..2 {
        let mut child = site.collector(None);
        drop(child.stdin.take());
        let status = wait_exit(
            &mut child,
            Duration::from_secs(60),
            "taking over 0.1.0's files",
        );
        assert!(
            status.success(),
            "round {round}: {status:?}; log:\n{}",
            site.log()
        );
        assert_eq!(
            site.entries(),
            3,
            "round {round}: the spool's 3 lines, once; log:\n{}",
            site.log()
        );
    }
    for name in [".spool.4294967295", ".backlog", position_name] {
        assert!(
            !site.queue.join(name).exists(),
            "{name} is still in the queue"
        );
    }
    let moved = std::fs::read_to_string(site.state.join("backlog")).unwrap();
    assert_eq!(moved.lines().count(), 2, "{moved}");
    assert!(
        moved.contains("PRIVSEP3") && moved.contains("PRIVSEP4"),
        "{moved}"
    );
    assert!(site.state.join("follow.00112233445566ff").exists());
    // The state dir is root's, mode 0750, group RUNAS's.
    let meta = std::fs::metadata(&site.state).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, NOBODY, 0o750)
    );
}

/// A state dir, or a queue, that another user could swap is refused: the collector then
/// keeps Apache's lines moving (degraded: they reach the log) and says why.
#[test]
fn a_state_dir_below_a_directory_another_user_writes_is_refused() {
    let Some(site) = site("a_state_dir_below_a_directory_another_user_writes_is_refused") else {
        return;
    };
    let theirs = site.root.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    let conf = std::fs::read_to_string(&site.conf).unwrap().replace(
        &format!("STATE_DIR {}", site.state.display()),
        &format!("STATE_DIR {}", theirs.join("state").display()),
    );
    std::fs::write(&site.conf, conf).unwrap();
    let lines = site.events(3);
    let mut child = site.collector(None);
    child.stdin.take().unwrap().write_all(&lines).unwrap();
    let status = wait_exit(
        &mut child,
        Duration::from_secs(60),
        "with a state dir in theirs/",
    );
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let said = format!("{err}{}", site.log());
    assert!(
        said.contains(&theirs.display().to_string()) && said.contains("uid 65534"),
        "the refusal names the directory and its owner: {status:?}\n{said}"
    );
    assert!(
        !theirs.join("state").exists(),
        "nothing was created in their directory"
    );
    assert_eq!(site.entries(), 0);
    let _ = Path::new(&site.state);
}

/// Without RUNAS, a root-started shipper becomes the queue's owner (root_shipper.rs):
/// so the collector gives each entry to that owner and its group, or the shipper could
/// not read what the web server wrote 0640 (found by an attacker review: every entry
/// went to failed/ with "Permission denied", and nothing said so at collection time).
#[test]
fn without_runas_entries_go_to_the_queues_owner_whom_the_shipper_becomes() {
    let Some(site) = site("without_runas_entries_go_to_the_queues_owner_whom_the_shipper_becomes")
    else {
        return;
    };
    // The queue a user other than the web server's owns (no account needed for a uid).
    const QUEUE_OWNER: u32 = 54321;
    std::os::unix::fs::chown(&site.queue, Some(QUEUE_OWNER), Some(QUEUE_OWNER)).unwrap();
    let conf = std::fs::read_to_string(&site.conf).unwrap();
    std::fs::write(&site.conf, conf.replace("set RUNAS nobody\n", "")).unwrap();
    let lines = site.events(3);
    let mut child = site.collector(None);
    child.stdin.take().unwrap().write_all(&lines).unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30), "without RUNAS");
    assert!(status.success(), "{status:?}; log:\n{}", site.log());
    assert_eq!(site.entries(), 3, "log:\n{}", site.log());
    for e in std::fs::read_dir(&site.queue).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("modsec.log.") {
            let m = e.metadata().unwrap();
            assert_eq!((m.uid(), m.gid()), (QUEUE_OWNER, QUEUE_OWNER), "{e:?}");
        }
    }
}
