//! `modsec-collector` in real Apache's pipe with an index file whose `open()` hangs:
//! Apache keeps its rate. A test binary of its own, so that no other test shares the
//! two cores while the rates are measured.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use modsec2sguil::collect::PIPE_BYTES;
use modsec2sguil_e2e::apache::{self, Apache, ApacheOptions};
use modsec2sguil_e2e::collector::{event_inode, lines, queue_entries, wait_for_collectors};
use modsec2sguil_e2e::{binary, skip_or_fail, state};

/// Apache answers `n` requests (every one a blocked SQL injection, so every one writes
/// an event and an index line into the collector's pipe) from `ab` with `clients`
/// connections: how many it answered and the rate (a figure to print, not to compare:
/// it varies with the machine's load). Apache blocked on a full pipe answers nothing,
/// and ab gives up on a request after `-s` seconds: a blocked Apache makes this return
/// fewer than `n`. (ab, not threads of this test: a client in C leaves the two cores to
/// Apache and the collector.)
fn serve(apache: &Apache, clients: usize, n: usize) -> (usize, f64) {
    let url = format!(
        "http://127.0.0.1:{}/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--",
        apache.port
    );
    let mut ab = std::process::Command::new("ab")
        .args(["-q", "-s", "60", "-n", &n.to_string()])
        .args(["-c", &clients.to_string(), &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run ab");
    let started = Instant::now();
    // ab's own -s ends it when Apache stops answering; this is only a backstop.
    let deadline = Instant::now() + Duration::from_secs(600);
    while ab.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = ab.kill();
            let _ = ab.wait();
            return (0, 0.0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = ab.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    // ab that gave up says only how many were done ("Total of N requests completed").
    let done = field("Complete requests:").or_else(|| {
        text.split("Total of ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    let done = done.unwrap_or_else(|| panic!("nothing done in ab's output:\n{text}")) as usize;
    let failed = field("Failed requests:").unwrap_or(0.0) as usize;
    (
        done - failed.min(done),
        done as f64 / started.elapsed().as_secs_f64(),
    )
}

/// Reads the FIFO at `path` to its end on a thread (its writer's open then goes through).
fn drain_fifo(path: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    let path = path.to_path_buf();
    std::thread::spawn(move || std::fs::read(&path).unwrap())
}

fn mkfifo(path: &Path) {
    use rustix::fs::{mknodat, FileType, Mode, CWD};
    mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
}

/// PIDs of the collectors started with `conf` (read from /proc, as pgrep -f would).
fn collectors_of(conf: &Path) -> Vec<u32> {
    let needle = conf.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            cmd.windows(needle.len())
                .any(|w| w == needle)
                .then_some(pid)
        })
        .collect()
}

/// Waits until the queue holds an entry for every line Apache wrote so far (the
/// collector has caught up, its spool drained).
fn wait_caught_up(apache: &Apache, queue: &Path, log: &Path) {
    // A backstop for a collector that never catches up: seconds are enough, and a busy
    // machine must not make it fail.
    let deadline = Instant::now() + Duration::from_secs(300);
    while queue_entries(queue).len() < lines(&apache.index2()).len() {
        assert!(
            Instant::now() < deadline,
            "the collector did not catch up:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An index file whose `open()` hangs (a FIFO nobody reads, as a dead NFS mount or a
/// stuck disk would) — at start-up, and again after a SIGHUP mid-run — holds up the
/// committer only: while it hangs, Apache answers [`HUNG_REQUESTS`] requests, whose
/// index lines are many times what the pipe holds, so the collector kept reading; and
/// once the hang ends every line Apache wrote is in the index file and the queue.
/// Before the fix a hang at open held Apache from the first window on (~0.02x its
/// rate): ab's requests time out (after 60 s each) and fewer are answered. The rates, hung and working,
/// are printed as figures (`--nocapture`), not compared: on a loaded 2-core machine one
/// window varies by more than any margin that would still catch a slowdown.
/// Requests answered in each hung window: their index lines (~330 bytes each, ~2.6 MB)
/// are more than twice what the collector's pipe holds ([`PIPE_BYTES`], 1 MiB; the
/// test checks it), so Apache cannot answer them all unless the collector reads on.
const HUNG_REQUESTS: usize = 8000;
/// Requests of each window while the index file works: only for the rate printed.
const WORKING_REQUESTS: usize = 2000;

#[test]
fn an_index_file_that_hangs_at_open_does_not_slow_apache() {
    if let Some(why) = apache::unavailable() {
        skip_or_fail("collector_index_hang", &why);
        return;
    }
    if modsec2sguil_e2e::which("ab").is_none() {
        skip_or_fail(
            "collector_index_hang",
            "ab (apache2-utils) is not installed",
        );
        return;
    }
    const CLIENTS: usize = 16;
    const ROUNDS: usize = 3;
    let work = tempfile::tempdir().unwrap();
    let queue = work.path().join("queue");
    let index = work.path().join("index.log");
    let log = work.path().join("collector.log");
    let conf = work.path().join("collector.conf");
    std::fs::write(
        &conf,
        format!(
            "set EVENT_DIR {}\nset LOG_FILE {}\n{}",
            queue.display(),
            log.display(),
            state::setting(work.path())
        ),
    )
    .unwrap();
    let pipe = format!(
        "{} -c {} STORAGE {}",
        binary("modsec-collector").display(),
        conf.display(),
        index.display()
    );
    // The index file hangs at open from the start.
    mkfifo(&index);
    let apache = Apache::start_with(
        &ApacheOptions {
            audit_log2: true,
            ..ApacheOptions::default()
        },
        |root| pipe.replace("STORAGE", &root.join("audit").display().to_string()),
    );
    let mut hung = Vec::new();
    let mut working = Vec::new();
    let mut readers = Vec::new();
    for round in 0..ROUNDS {
        if round > 0 {
            // ... and again mid-run: rotated to a FIFO nobody reads, then SIGHUP.
            std::fs::remove_file(&index).unwrap();
            mkfifo(&index);
            for pid in collectors_of(&conf) {
                modsec2sguil_e2e::process::signal(pid, "HUP");
            }
        }
        let before = std::fs::metadata(apache.index2()).map_or(0, |m| m.len());
        let (answered, rate) = serve(&apache, CLIENTS, HUNG_REQUESTS);
        assert_eq!(
            answered,
            HUNG_REQUESTS,
            "round {round}: Apache answered {answered} of {HUNG_REQUESTS} requests while the index file hung at open\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // The premise: what Apache piped meanwhile is more than the pipe holds.
        let piped = std::fs::metadata(apache.index2()).unwrap().len() - before;
        assert!(
            piped > 2 * PIPE_BYTES as u64,
            "only {piped} bytes of index lines: raise HUNG_REQUESTS"
        );
        hung.push(rate);
        readers.push(drain_fifo(&index));
        wait_caught_up(&apache, &queue, &log);
        let (answered, rate) = serve(&apache, CLIENTS, WORKING_REQUESTS);
        assert_eq!(
            answered, WORKING_REQUESTS,
            "round {round}, the index file working"
        );
        working.push(rate);
        eprintln!(
            "round {round}: {:.0} requests/s while the index file hangs at open, {:.0} while it works",
            hung[round], working[round]
        );
    }
    let mut apache = apache;
    apache.stop();
    wait_for_collectors(&log);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (hung_mean, working_mean) = (mean(&hung), mean(&working));
    eprintln!(
        "requests/s while the index file works: {working:.0?}, mean {working_mean:.0}; \
         hung at open (from the start, then after a SIGHUP): {hung:.0?}, mean {hung_mean:.0} ({:.2}x)",
        hung_mean / working_mean
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();

    let truth = lines(&apache.index2());
    let mut written: Vec<Vec<u8>> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect::<Vec<u8>>()
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    written.sort();
    let mut want = truth.clone();
    want.sort();
    assert_eq!(
        written.len(),
        want.len(),
        "lines in the index file against Apache's\n{text}"
    );
    assert_eq!(
        written, want,
        "the index file holds exactly the lines Apache wrote"
    );
    let queued: HashSet<u64> = queue_entries(&queue).into_values().collect();
    assert_eq!(
        queued.len(),
        truth.len(),
        "one queue entry per line\n{text}"
    );
    for line in &truth {
        assert!(queued.contains(&event_inode(&apache.storage, line)));
    }
}
