//! Thresholds (THRESHOLD_FILE) with the built shipper and the test server: a flood of
//! 100,000 events buries nothing (ten of it, one summary and every other attack are
//! stored; the rest is held back, on record, and in held/); SIGKILLs in the middle of a
//! flood lose nothing and store nothing twice, summaries included; SIGHUP reloads the
//! rules (a bad file keeps the old ones); `requeue --suppressed` ships what was held
//! back, once; a bad file is refused at start naming its file and line.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use modsec2sguil_e2e::binary;
use modsec2sguil_e2e::process::{signal, wait_exit};
use modsec2sguil_e2e::sguild::{Stored, TestSguild};
use modsec2sguil_e2e::shipper::{
    config, drain, drain_killed_after, entries_left, fill_flood as fill, flood_id as id_of,
    shipper, stored_unique_id, Rng, FLOODER,
};

/// The summary events' signature id (ARCHITECTURE.md, "Thresholds").
const SUMMARY_SIG: &str = "99000001";

fn rules_file(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("thresholds.conf");
    std::fs::write(&p, text).unwrap();
    p
}

/// What a test starts from: the test sguild, a scratch dir, its queue (made by whoever
/// fills it), a THRESHOLD_FILE holding `rules`, and a shipper config naming both, plus
/// `extra` lines.
struct Scene {
    server: TestSguild,
    dir: tempfile::TempDir,
    queue: PathBuf,
    rules: PathBuf,
    conf: PathBuf,
}

fn scene(rules: &str, extra: &str) -> Scene {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let rules = rules_file(dir.path(), rules);
    let conf = config(
        dir.path(),
        &queue,
        &server,
        &format!("set THRESHOLD_FILE {}\n{extra}", rules.display()),
    );
    Scene {
        server,
        dir,
        queue,
        rules,
        conf,
    }
}

const LIMIT_10: &str = "# 10 a source a minute\nthreshold gen_id 10001, sig_id *, type limit, track by_src, count 10, seconds 60\n";

fn summaries(stored: &[Stored]) -> Vec<&Stored> {
    stored.iter().filter(|e| e.sig_id == SUMMARY_SIG).collect()
}

fn detail(e: &Stored) -> String {
    String::from_utf8_lossy(&modsec2sguil::hex::decode(e.detail_hex.as_bytes()).unwrap())
        .into_owned()
}

/// The delivered log's records: (delivered ids, suppressed ids with how often each).
fn on_record(queue: &Path) -> (Vec<String>, HashMap<String, usize>) {
    let mut delivered = Vec::new();
    let mut suppressed = HashMap::new();
    for d in modsec2sguil::queue::delivered::read_delivered(queue).unwrap() {
        if d.suppressed.is_some() {
            *suppressed.entry(d.unique_id).or_insert(0) += 1;
        } else {
            delivered.push(d.unique_id);
        }
    }
    (delivered, suppressed)
}

fn logged(log: &Path, text: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(text)
}

fn held_files(queue: &Path) -> usize {
    std::fs::read_dir(queue.join("held")).map_or(0, |d| d.count())
}

#[test]
fn a_flood_of_100000_buries_no_attack_and_everything_is_accounted_for() {
    let Scene {
        server,
        dir: _dir,
        queue,
        rules: _,
        conf,
    } = scene(LIMIT_10, "set SEND_WINDOW 32\n");
    const N: usize = 100_020;
    // Ten minutes ago, in one minute: the window has closed by the time of the drain.
    let t0 = chrono::Utc::now().timestamp() - 600;
    let built = Instant::now();
    let attacks = fill(&queue, 1, N, 20, |i| t0 + (i * 50 / N) as i64);
    eprintln!(
        "{N} events queued in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    binary("modsec-shipper"); // built now, not inside the drain's time
    let started = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    let stored = server.events();
    let ids: Vec<String> = stored
        .iter()
        .filter(|e| e.sig_id != SUMMARY_SIG)
        .map(stored_unique_id)
        .collect();
    let flood: Vec<&Stored> = stored
        .iter()
        .filter(|e| e.sig_id != SUMMARY_SIG && e.src_ip == FLOODER)
        .collect();
    assert_eq!(flood.len(), 10, "limit 10 per source per 60 s");
    let got_attacks: HashSet<String> = stored
        .iter()
        .filter(|e| e.sig_id != SUMMARY_SIG && e.src_ip != FLOODER)
        .map(stored_unique_id)
        .collect();
    assert_eq!(got_attacks, attacks, "every distinct attack is stored");
    let last_attack = stored
        .iter()
        .filter(|e| e.sig_id != SUMMARY_SIG && e.src_ip != FLOODER)
        .map(|e| e.stored_at)
        .fold(0.0, f64::max);
    eprintln!(
        "last attack stored {:.2} s after the drain started",
        last_attack - started
    );
    let sums = summaries(&stored);
    assert_eq!(
        sums.len(),
        1,
        "one summary for the one window that held events"
    );
    let message = String::from_utf8_lossy(&sums[0].message).into_owned();
    assert_eq!(
        message,
        "MSc threshold: 99,990 more of 942100 from 203.0.113.9 in 60 s held back"
    );
    let d = detail(sums[0]);
    let held_ids: Vec<String> = (1..=N).map(id_of).filter(|i| !ids.contains(i)).collect();
    assert!(
        d.contains(&held_ids[0]) && d.contains(held_ids.last().unwrap()),
        "{d}"
    );
    assert!(d.contains("requeue --suppressed --since"), "{d}");
    // Nothing left; all 100,020 accounted for: stored once or on record as suppressed.
    assert!(entries_left(&queue).is_empty());
    let (delivered, suppressed) = on_record(&queue);
    assert_eq!(ids.len(), 30);
    assert_eq!(delivered.len(), 31, "30 events and the summary");
    assert_eq!(suppressed.len(), N - 30);
    assert!(suppressed.values().all(|&n| n == 1));
    let all: HashSet<String> = ids.iter().chain(suppressed.keys()).cloned().collect();
    assert_eq!(all, (1..=N).map(id_of).collect::<HashSet<_>>());
    assert_eq!(held_files(&queue), N - 30);
    let out = shipper(&["status", "-c", conf.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("held back:  99990 event(s)"), "{text}");
    eprintln!("{}", err.lines().last().unwrap_or(""));
}

#[test]
fn sigkills_in_a_flood_lose_nothing_store_nothing_twice_and_each_summary_once() {
    let Scene {
        server,
        dir: _dir,
        queue,
        rules: _,
        conf,
    } = scene(LIMIT_10, "set SEND_WINDOW 8\nset REPLY_TIMEOUT 1\n");
    const N: usize = 6000;
    const WINDOWS: usize = 30;
    // Thirty windows of the flooder (200 events each, ten shipped), two minutes apart,
    // all closed before the drains: kills land around the closing of windows.
    let t0 = chrono::Utc::now().timestamp() - 4000;
    let attacks = fill(&queue, 1, N, 20, |i| t0 + (i / (N / WINDOWS)) as i64 * 120);
    let seed = 0x5eed_u64 ^ std::process::id() as u64;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed | 1);
    // Killed at random moments, while a good part of the queue is left (a debug build
    // drains it in a few seconds).
    let mut kills = 0;
    while kills < 15 && entries_left(&queue).len() > N / 4 {
        drain_killed_after(&conf, Duration::from_millis(20 + rng.below(300)));
        kills += 1;
    }
    eprintln!("{kills} kills");
    assert!(
        !entries_left(&queue).is_empty(),
        "the kills must land mid-queue"
    );
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(entries_left(&queue).is_empty());
    let stored = server.events();
    let ids: Vec<String> = stored
        .iter()
        .filter(|e| e.sig_id != SUMMARY_SIG)
        .map(stored_unique_id)
        .collect();
    let distinct: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(distinct.len(), ids.len(), "an event stored twice");
    assert!(attacks.is_subset(&distinct), "every attack stored");
    let (_, suppressed) = on_record(&queue);
    for (id, n) in &suppressed {
        assert_eq!(*n, 1, "{id} recorded as suppressed {n} times");
        assert!(!distinct.contains(id), "{id} both stored and suppressed");
    }
    let all: HashSet<String> = distinct.iter().chain(suppressed.keys()).cloned().collect();
    assert_eq!(
        all,
        (1..=N).map(id_of).collect::<HashSet<_>>(),
        "an event lost"
    );
    assert_eq!(held_files(&queue), suppressed.len());
    // One summary a window, each window held events back (the windows are told apart
    // by their start in the detail).
    let sums = summaries(&stored);
    let windows: Vec<String> = sums
        .iter()
        .map(|e| {
            let d = detail(e);
            d.lines()
                .find(|l| l.starts_with("Window: "))
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let distinct_windows: HashSet<&String> = windows.iter().collect();
    assert_eq!(
        distinct_windows.len(),
        windows.len(),
        "a summary twice: {windows:?}"
    );
    assert_eq!(windows.len(), WINDOWS, "a summary lost: {windows:?}");
}

#[test]
fn requeue_suppressed_ships_what_was_held_back_once() {
    let Scene {
        server,
        dir: _dir,
        queue,
        rules: _,
        conf,
    } = scene(LIMIT_10, "");
    let t0 = chrono::Utc::now().timestamp() - 600;
    fill(&queue, 1, 30, 0, |_| t0);
    let c = conf.to_str().unwrap();
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(server.events().len(), 11, "10 and the summary");
    assert_eq!(held_files(&queue), 20);
    // Delivered events are not offered; the held-back ones are, and ship whatever the
    // thresholds say.
    let out = shipper(&[
        "requeue",
        "-c",
        c,
        "--suppressed",
        "--since",
        "2000-01-01",
        "--dry-run",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("would queue held/").count(), 20, "{text}");
    let out = shipper(&["requeue", "-c", c, "--suppressed", "--since", "2000-01-01"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(entries_left(&queue).len(), 20);
    assert_eq!(held_files(&queue), 0);
    assert_eq!(
        std::fs::read_dir(queue.join(".released")).unwrap().count(),
        20
    );
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    let stored = server.events();
    let ids: Vec<String> = stored
        .iter()
        .filter(|e| e.sig_id != SUMMARY_SIG)
        .map(stored_unique_id)
        .collect();
    assert_eq!(ids.len(), 30, "{err} held {}", held_files(&queue));
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        30,
        "each stored once"
    );
    assert!(entries_left(&queue).is_empty());
    assert!(!queue.join(".released").read_dir().unwrap().any(|_| true));
    // Nothing is left to requeue; a --since after the holding finds nothing.
    let out = shipper(&["requeue", "-c", c, "--suppressed", "--since", "2000-01-01"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("queued held/"), "{text}");
    let out = shipper(&["requeue", "-c", c, "--since", "2000-01-01"]);
    assert_eq!(out.status.code(), Some(2), "--since alone is a usage error");
}

#[test]
fn a_bad_thresholds_file_is_refused_at_start_naming_file_and_line() {
    let text = concat!(
        "# ok\n",
        "threshold gen_id 10001, sig_id *, type limit, track by_src, count 10, seconds 60\n",
        "suppress gen_id 10001, sig_id 5, track by_src\n"
    );
    let Scene {
        server,
        dir: _dir,
        queue,
        rules,
        conf,
    } = scene(text, "");
    fill(&queue, 1, 3, 0, |_| 1_790_000_000);
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "{}:3: suppress with `track` needs `ip`",
            rules.display()
        )),
        "{err}"
    );
    assert_eq!(entries_left(&queue).len(), 3);
    assert!(server.events().is_empty());
}

/// As root, THRESHOLD_FILE is config root reads (a root-started `drain` loads it before
/// it drops to the queue's owner): one the queue's owner could rewrite (a `suppress …
/// sig_id *` silences every alert) is refused like a config file they could write.
#[test]
fn as_root_a_thresholds_file_another_user_could_write_is_refused() {
    const TEST: &str = "as_root_a_thresholds_file_another_user_could_write_is_refused";
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        modsec2sguil_e2e::skip_or_fail(TEST, "needs root (a file another user owns)");
        return;
    }
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    fill(&queue, 1, 3, 0, |_| 1_790_000_000);
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let rules = rules_file(&theirs, "suppress gen_id 10001, sig_id *\n");
    std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
    let conf = config(
        dir.path(),
        &queue,
        &server,
        &format!("set THRESHOLD_FILE {}\n", rules.display()),
    );
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&rules.display().to_string()), "{err}");
    assert!(
        err.contains("65534") || err.contains("nobody"),
        "names the owner: {err}"
    );
    assert_eq!(
        entries_left(&queue).len(),
        3,
        "nothing shipped or held back"
    );
    assert!(server.events().is_empty());
}

/// An event's time is the attacker's to write: one dated 2099 must not open a window
/// that closes only in 2099 (every later alert of its key held back, no summary until
/// then). Its window starts no later than the drain.
#[test]
fn an_event_dated_in_the_future_opens_no_window_in_the_future() {
    let Scene {
        server,
        dir: _dir,
        queue,
        rules: _,
        conf,
    } = scene(
        "threshold gen_id 10001, sig_id *, type limit, track by_rule, count 1, seconds 60\n",
        "",
    );
    // 2099-12-04
    fill(&queue, 1, 1, 0, |_| 4_100_000_000);
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(server.events().len(), 1, "{err}");
    let drained = chrono::Utc::now().timestamp();
    let state = std::fs::read_to_string(queue.join(".thresholds")).unwrap();
    let starts: Vec<i64> = state
        .lines()
        .filter_map(|l| l.strip_prefix("v1\twindow\t"))
        .map(|w| w.split('\t').nth(3).unwrap().parse().unwrap())
        .collect();
    assert_eq!(starts.len(), 1, "{state}");
    assert!(
        starts[0] <= drained,
        "a window starting at {} ({state})",
        starts[0]
    );
}

/// What `requeue --suppressed` moves back is what the shipper put in held/, a regular
/// file: a symbolic link or a FIFO the queue's owner planted under a held entry's name
/// stays where it is, and is named.
#[test]
fn requeue_suppressed_leaves_a_planted_link_or_fifo_in_held() {
    let Scene {
        server: _server,
        dir,
        queue,
        rules: _,
        conf,
    } = scene(
        "threshold gen_id 10001, sig_id *, type limit, track by_src, count 1, seconds 60\n",
        "",
    );
    let t0 = chrono::Utc::now().timestamp() - 600;
    fill(&queue, 1, 3, 0, |_| t0);
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    let mut held: Vec<PathBuf> = std::fs::read_dir(queue.join("held"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    held.sort();
    assert_eq!(held.len(), 2, "{err}");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "not an event\n").unwrap();
    std::fs::remove_file(&held[0]).unwrap();
    std::os::unix::fs::symlink(&secret, &held[0]).unwrap();
    std::fs::remove_file(&held[1]).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&held[1])
        .status()
        .unwrap();
    assert!(made.success());
    let out = shipper(&[
        "requeue",
        "-c",
        conf.to_str().unwrap(),
        "--suppressed",
        "--since",
        "2000-01-01",
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("not a regular file").count(), 2, "{text}");
    assert!(entries_left(&queue).is_empty(), "{text}");
    for h in &held {
        assert!(
            std::fs::symlink_metadata(h).is_ok(),
            "{} stays",
            h.display()
        );
    }
}

/// A cron `drain` that finds the queue empty still sends the summary of a window the
/// clock has passed since the last run: a flood that stopped is summed up at the next
/// run, not at the next event (which on a quiet site may never come).
#[test]
fn a_drain_of_an_empty_queue_sends_the_summary_that_came_due() {
    let Scene {
        server,
        dir: _dir,
        queue,
        rules: _,
        conf,
    } = scene(
        "threshold gen_id 10001, sig_id *, type limit, track by_src, count 1, seconds 10\n",
        "",
    );
    // The binary is built and run once before the clock is read: the window must open
    // at the events' time, moments before the first drain.
    assert!(shipper(&["--version"]).status.success());
    let now = chrono::Utc::now().timestamp();
    fill(&queue, 1, 3, 0, |_| now);
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(held_files(&queue), 2, "{err}");
    assert!(
        summaries(&server.events()).is_empty(),
        "the window (10 s) is still open after the first drain: {err}"
    );
    // The window is open until now + 10 s (the clock, not a timed assertion).
    while chrono::Utc::now().timestamp() < now + 11 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(entries_left(&queue).is_empty());
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summaries(&server.events()).len(), 1, "{err}");
    // Sent once: the next empty drain has nothing to send.
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the queue is empty"), "{err}");
    assert_eq!(summaries(&server.events()).len(), 1, "{err}");
}

#[test]
fn sighup_reloads_the_thresholds_and_a_bad_file_keeps_the_old_rules() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    let log = dir.path().join("shipper.log");
    let rules = rules_file(dir.path(), "suppress gen_id 10001, sig_id 942100\n");
    let conf = config(
        dir.path(),
        &queue,
        &server,
        &format!(
            "set THRESHOLD_FILE {}\nset LOG_FILE {}\n",
            rules.display(),
            log.display()
        ),
    );
    let child = Command::new(binary("modsec-shipper"))
        .args(["run", "-c", conf.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed (by its pid) if the test fails before it is stopped.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reaped(child);
    let now = chrono::Utc::now().timestamp();
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "{what}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Suppressed: held back.
    fill(&queue, 1, 3, 0, |_| now);
    wait("3 held back", &|| held_files(&queue) == 3);
    // A bad file: refused, the old rules kept (still held back).
    std::fs::write(&rules, "suppress gen_id 1, sig_id 942100\n").unwrap();
    signal(child.0.id(), "HUP");
    wait("the bad reload said", &|| {
        logged(&log, "keeping the running configuration")
    });
    fill(&queue, 4, 2, 0, |_| now);
    wait("5 held back", &|| held_files(&queue) == 5);
    // A good one: no rules, events ship.
    std::fs::write(&rules, "# nothing held back\n").unwrap();
    signal(child.0.id(), "HUP");
    wait("reloaded", &|| {
        logged(&log, "SIGHUP: configuration reloaded")
    });
    fill(&queue, 6, 2, 0, |_| now);
    wait("2 stored", &|| server.events().len() == 2);
    signal(child.0.id(), "TERM");
    assert_eq!(wait_exit(&mut child.0, Duration::from_secs(10)), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("{}:1: gen_id must be 10001", rules.display())),
        "{text}"
    );
    assert_eq!(held_files(&queue), 5);
    let got: HashSet<String> = server.events().iter().map(stored_unique_id).collect();
    assert_eq!(got, [id_of(6), id_of(7)].into_iter().collect());
}
