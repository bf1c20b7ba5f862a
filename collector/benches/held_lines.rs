//! The collector's memory under a flood it cannot keep up with (`cargo bench -p
//! modsec-collector --bench held_lines`): the release binary reads 60,000 ordinary index
//! lines, and then 60,000 ordinary lines with 9,000 lines of 60 KiB among them, while
//! its committer is stalled (the index file is a FIFO nobody reads, so its `open()`
//! hangs, as on a dead NFS mount). Every line then waits in memory or in the spool. A
//! last run plants what hung 0.1.0's spill thread (issue 25): a dangling link where it
//! spooled in the queue, and the queue's backlog locked by another process (`flock`).
//! The collector now spools and backlogs in its own STATE_DIR, so that run shows the
//! trick costs nothing. It prints the
//! collector's peak RSS (`VmHWM` in /proc/<pid>/status) once the input is read (or the
//! reader waits), and again just before it exits (the stall ended, the spool drained),
//! and checks that every line was queued or backlogged.
//!
//! `HELD_LINES_LONG` and `HELD_LINES_ORDINARY` change the counts.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

const LONG_BYTES: usize = 60 * 1024;
const EVENT_BYTES: usize = 512;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let ordinary = count("HELD_LINES_ORDINARY", 60_000);
    let long = count("HELD_LINES_LONG", 9_000);
    for (long, spill_hangs) in [(0, false), (long, false), (long, true)] {
        if ordinary + long == 0 {
            continue;
        }
        let run = run(ordinary, long, spill_hangs);
        let stalled = if spill_hangs {
            "committer and spill thread stalled"
        } else {
            "committer stalled"
        };
        println!(
            "{ordinary} ordinary lines + {long} lines of 60 KiB, {stalled}: \
             peak RSS {:.1} MiB with all input read ({:.0} MB spooled), {:.1} MiB at exit; \
             {} queued, {} in the backlog, {:.1} s",
            run.read_hwm_kb as f64 / 1024.0,
            run.spooled_bytes as f64 / 1e6,
            run.exit_hwm_kb as f64 / 1024.0,
            run.queued,
            run.backlogged,
            run.seconds
        );
        assert_eq!(
            run.queued + run.backlogged,
            ordinary + long,
            "every line queued or in the backlog"
        );
    }
}

struct Run {
    read_hwm_kb: u64,
    exit_hwm_kb: u64,
    spooled_bytes: u64,
    queued: usize,
    backlogged: usize,
    seconds: f64,
}

/// The index lines: `long` of them (evenly among the others) with a request line that
/// makes them [`LONG_BYTES`] long, each naming its own event file, made here.
fn make_input(storage: &Path, ordinary: usize, long: usize) -> Vec<Vec<u8>> {
    let minute = "www-data/20261128/20261128-0214";
    std::fs::create_dir_all(storage.join(minute)).unwrap();
    as_web_user(&storage.join(minute));
    let total = ordinary + long;
    (0..total)
        .map(|i| {
            let mut content = vec![b'x'; EVENT_BYTES];
            content[..8].copy_from_slice(format!("{i:08}").as_bytes());
            let rel = format!("{minute}/20261128-021431-ev{i:06}");
            std::fs::write(storage.join(&rel), &content).unwrap();
            as_web_user(&storage.join(&rel));
            let md5 = modsec2sguil::hex::lower(&Md5::digest(&content));
            // Spread the long lines evenly: line i is long when it crosses a multiple.
            let is_long = long > 0 && (i * long) / total != ((i + 1) * long) / total;
            let mut line = format!(
                "lab.example 127.0.0.1 - - [28/Nov/2026:02:14:31.009836 +0000] \"GET /?id=1%27%20UNION%20SELECT PAD HTTP/1.1\" 403 239 \"-\" \"-\" ev{i:06}AAAAAAAAAAAAAAAAAAA \"-\" /{rel} 0 {EVENT_BYTES} md5:{md5} \n"
            );
            let pad = if is_long {
                LONG_BYTES.saturating_sub(line.len() - 3)
            } else {
                0
            };
            line = line.replace("PAD", &"A".repeat(pad));
            line.into_bytes()
        })
        .collect()
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// The collector's peak RSS so far, in kB (None once it is gone).
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Where 0.1.0 spooled: in the queue, where its owner could plant a link (the last
/// run's trick; the collector now spools in its own STATE_DIR, so the trick stalls
/// nothing).
fn planted_spool(queue: &Path, pid: u32) -> PathBuf {
    queue.join(format!(".spool.{pid}"))
}

/// The collector's overflow file, in its state dir.
fn spool_of(state: &Path, pid: u32) -> PathBuf {
    state.join(format!("{}{pid}", modsec2sguil::state::SPOOL_PREFIX))
}

/// Event files are the web server's (the collector queues none of root's): when the
/// bench runs as root, `nobody`'s.
fn as_web_user(path: &Path) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
    }
}

fn run(ordinary: usize, long: usize, spill_hangs: bool) -> Run {
    let dir = tempfile::Builder::new()
        .prefix("collector-held-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let storage = dir.path().join("audit");
    let queue = dir.path().join("queue");
    let state = dir.path().join("state");
    let index = dir.path().join("index.fifo");
    let log = dir.path().join("collector.log");
    let input = make_input(&storage, ordinary, long);
    mkfifo(&index);
    assert!(std::fs::metadata(&index).unwrap().file_type().is_fifo());

    let started = Instant::now();
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_modsec-collector"))
        .args(["--verify-md5", "on", "--queue"])
        .arg(&queue)
        .arg("--state-dir")
        .arg(&state)
        .arg("--index")
        .arg(&index)
        .arg("--log-file")
        .arg(&log)
        .arg(&storage)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let backlog_lock = spill_hangs.then(|| {
        // Before any line is written, so before anything is spilled; and again once the
        // collector's start-up has set aside a spool of its own pid (it takes it for a
        // dead process's) if it found this one.
        std::fs::create_dir_all(&queue).unwrap();
        let plant = || {
            let _ =
                std::os::unix::fs::symlink(dir.path().join("nowhere"), planted_spool(&queue, pid));
        };
        plant();
        std::thread::sleep(Duration::from_secs(2));
        plant();
        let f = std::fs::File::create(queue.join(".backlog")).unwrap();
        // SAFETY: flock on a descriptor we own.
        assert_eq!(
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) },
            0
        );
        f
    });
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for line in &input {
            stdin.write_all(line).unwrap();
        }
        stdin
    });
    // The collector has read what it can once its spool and its memory stop growing
    // (the committer is stalled, so every line read is held or spooled).
    let spool = spool_of(&state, pid);
    let mut last = ((0, 0), Instant::now());
    loop {
        let now = (
            std::fs::symlink_metadata(&spool).map_or(0, |m| m.len()),
            vm_hwm_kb(pid).expect("the collector is running"),
        );
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ((spooled_bytes, read_hwm_kb), _) = last;
    drop(backlog_lock);

    // End the stall: a reader on the FIFO lets the committer's open() through.
    let index_reader = {
        let index = index.clone();
        std::thread::spawn(move || std::fs::read(&index).unwrap().len())
    };
    drop(writer.join().unwrap());
    let mut exit_hwm_kb = read_hwm_kb;
    while child.try_wait().unwrap().is_none() {
        if let Some(kb) = vm_hwm_kb(pid) {
            exit_hwm_kb = exit_hwm_kb.max(kb);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    // A collector that wrote no line never opened the index file: let the reader go.
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&index);
    index_reader.join().unwrap();
    let queued = modsec2sguil::queue::Queue::open(&queue)
        .and_then(|q| q.entries())
        .unwrap()
        .len();
    let backlogged = std::fs::read(state.join(modsec2sguil::state::BACKLOG_FILE))
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0);
    if queued + backlogged != ordinary + long {
        eprintln!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    Run {
        read_hwm_kb,
        exit_hwm_kb,
        spooled_bytes,
        queued,
        backlogged,
        seconds,
    }
}
