//! Helpers for the shipper's end-to-end tests: a queue of real-sized events with
//! distinct unique ids, a config pointing at a test server, and reading back what the
//! server stored.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::sguild::{Stored, TestSguild};
use super::{binary, fixtures};

/// A real CRS-blocked SQL injection event (native 2.9, 3.8 KB).
pub const TEMPLATE: &str =
    "modsec-2.9/native/www-data/20261128/20261128-0214/20261128-021431-awo5Btrt9m7QJiOqXPD3lAAAAEc";
const TEMPLATE_ID: &str = "awo5Btrt9m7QJiOqXPD3lAAAAEc";

/// A unique id as ModSecurity makes them (27 characters), numbered.
pub fn unique_id(n: usize) -> String {
    format!("TEST{n:023}")
}

/// Writes `n` copies of the template into `queue` as entries with distinct unique ids
/// (`unique_id(first..first+n)`), named in order. Returns their ids.
pub fn fill_queue(queue: &Path, first: usize, n: usize) -> Vec<String> {
    std::fs::create_dir_all(queue).unwrap();
    let template = template();
    (first..first + n)
        .map(|i| {
            let (name, id, text) = entry_of(&template, i);
            put_entry(queue, &name, text.as_bytes());
            id
        })
        .collect()
}

/// Puts an entry into `queue` whole, as the collector (link) and `requeue` (rename) do:
/// written under a hidden name in it, then renamed. A daemon woken by the entry's creation
/// (inotify) must never find it half-written.
pub fn put_entry(queue: &Path, name: &str, bytes: &[u8]) {
    // A hidden name in the queue itself (the same filesystem; not an entry's name).
    let part = queue.join(format!(".part.{name}"));
    std::fs::write(&part, bytes).unwrap();
    std::fs::rename(&part, queue.join(name)).unwrap();
}

/// Entry `i` of [`fill_queue`]: its name, unique id and contents.
pub fn test_entry(i: usize) -> (String, String, String) {
    entry_of(&template(), i)
}

fn template() -> String {
    std::fs::read_to_string(fixtures().join(TEMPLATE)).unwrap()
}

fn entry_of(template: &str, i: usize) -> (String, String, String) {
    let id = unique_id(i);
    let text = template.replace(TEMPLATE_ID, &id);
    (format!("modsec.log.1790000000.{i:06}"), id, text)
}

/// A config for the test server: TLS pinned to its certificate; `extra` from line 7
/// on; last, STATE_DIR [`crate::state::dir`]`(dir)`, for the collector or
/// `requeue --backlog/--index` run with it (and `status`).
pub fn config(dir: &Path, queue: &Path, server: &TestSguild, extra: &str) -> PathBuf {
    let path = dir.join("shipper.conf");
    let newline = if extra.is_empty() || extra.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    std::fs::write(
        &path,
        format!(
            "set EVENT_DIR {}\nset SERVER_HOST 127.0.0.1\nset SERVER_PORT {}\nset HOSTNAME websrv\n\
             set NET_GROUP webfarm\nset TLS_CA_FILE {}\n{extra}{newline}{}",
            queue.display(),
            server.addr.port(),
            server.cert_pem.display(),
            crate::state::setting(dir)
        ),
    )
    .unwrap();
    path
}

/// A config that sends events to stdout (no server needed) from the queue `queue`,
/// written as `dir/shipper.conf`, with `extra` settings.
pub fn stdout_config(dir: &Path, queue: &Path, extra: &str) -> PathBuf {
    let conf = dir.join("shipper.conf");
    std::fs::write(
        &conf,
        format!(
            "set EVENT_DIR {}\nset OUTPUT stdout\nset HOSTNAME websrv\n{}{extra}",
            queue.display(),
            crate::state::setting(dir)
        ),
    )
    .unwrap();
    conf
}

/// Moves the entry `name` of `queue` into `queue/failed/` (created if missing), as a
/// quarantine without its reason file; returns `failed/`.
pub fn move_to_failed(queue: &Path, name: &str) -> PathBuf {
    let failed = queue.join("failed");
    std::fs::create_dir_all(&failed).unwrap();
    std::fs::rename(queue.join(name), failed.join(name)).unwrap();
    failed
}

/// Runs `modsec-shipper <args>`.
pub fn shipper(args: &[&str]) -> Output {
    Command::new(binary("modsec-shipper"))
        .args(args)
        .output()
        .expect("run modsec-shipper")
}

/// The summary line `drain` logs ("shipped N, ..."), without its log prefix; panics
/// naming the whole stderr when there is none.
pub fn drain_summary(err: &str) -> String {
    err.lines()
        .find(|l| l.contains("drain: shipped"))
        .unwrap_or_else(|| panic!("no summary: {err}"))
        .split("INFO: ")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// `drain -c conf`, returning (exit code, stderr).
pub fn drain(conf: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["drain", "-c", conf.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = shipper(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The unique id a stored event's detail names.
pub fn stored_unique_id(e: &Stored) -> String {
    let detail = modsec2sguil::hex::decode(e.detail_hex.as_bytes()).unwrap_or_default();
    modsec2sguil::alert::unique_id_in_detail(&detail)
        .unwrap_or("")
        .to_string()
}

/// Queue entries left (not the tools' hidden files or `failed/`).
pub fn entries_left(queue: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(queue)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("modsec.log."))
        .collect();
    v.sort();
    v
}

/// A small deterministic generator (xorshift): tests seed it and print the seed, so a
/// failing sequence of kill moments can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Starts `drain -c conf`, SIGKILLs it after `after` (unless it ended before) and reaps
/// it.
pub fn drain_killed_after(conf: &Path, after: std::time::Duration) {
    drain_killed_when(conf, |t| t >= after, after);
}

/// Round `round` of a crash run: `drain -c conf` over `queue`, SIGKILLed mid-queue.
/// Even rounds: at a random moment (5-155 ms in: before connecting, mid-window, ...) or
/// once 60 more entries are gone from the queue (each only once the server answered it);
/// odd rounds: once 1-60 more are gone (or it ended by itself), however long a busy
/// machine takes to get there. So some events are stored before a final run (an odd
/// round with the server up), and at most 60 a round plus a window in flight: the kills
/// land mid-queue on any machine.
pub fn drain_killed_mid_queue(conf: &Path, queue: &Path, round: usize, rng: &mut Rng) {
    let left_before = entries_left(queue).len();
    let (moment, more) = if round.is_multiple_of(2) {
        (
            Some(std::time::Duration::from_millis(5 + rng.below(150))),
            60,
        )
    } else {
        (None, 1 + rng.below(60) as usize)
    };
    drain_killed_when(
        conf,
        |t| moment.is_some_and(|m| t >= m) || entries_left(queue).len() + more <= left_before,
        std::time::Duration::from_secs(60),
    );
}

/// Starts `drain -c conf` and SIGKILLs it as soon as `kill_now(time since the start)`
/// says so (asked every 2 ms), or once `backstop` has passed, then reaps it. Returns
/// whether it had ended by itself first. Unlike [`drain_killed_after`], the moment can
/// follow the run's progress (events stored, the journal), which a busy machine slows
/// but cannot skip.
pub fn drain_killed_when(
    conf: &Path,
    kill_now: impl Fn(std::time::Duration) -> bool,
    backstop: std::time::Duration,
) -> bool {
    let mut child = Command::new(binary("modsec-shipper"))
        .args(["drain", "-c", conf.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        let t = started.elapsed();
        if kill_now(t) || t >= backstop {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    false
}

/// Asserts that the server stored each of `want` exactly once and nothing else (by the
/// unique id each stored detail names). `context` goes into the messages.
pub fn assert_each_stored_once(stored: &[Stored], want: &HashSet<String>, context: &str) {
    let ids: Vec<String> = stored.iter().map(stored_unique_id).collect();
    let distinct: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        ids.len(),
        distinct.len(),
        "an event stored twice: {context}"
    );
    assert_eq!(&distinct, want, "every event stored: {context}");
}

/// Waits up to 20 s for the server to hold `n` events; the panic shows the log file.
pub fn wait_for_events(server: &TestSguild, n: usize, log: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.events().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n}: {}",
            server.events().len(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `modsec-shipper run -c conf` (stderr discarded: give the config a LOG_FILE), killed
/// if the test panics, so that a leaked daemon cannot outlive the test run.
pub struct Daemon(pub std::process::Child);

impl Daemon {
    pub fn start(conf: &Path) -> Daemon {
        Daemon(
            Command::new(binary("modsec-shipper"))
                .args(["run", "-c", conf.to_str().unwrap()])
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("run modsec-shipper run"),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The client of [`fill_flood`]'s flood.
pub const FLOODER: &str = "203.0.113.9";

/// A small native event (an SQL injection CRS blocked) from `src` at unix time `t`.
pub fn flood_event(id: &str, src: &str, t: i64) -> String {
    let when = chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .format("%d/%b/%Y:%H:%M:%S%.6f +0000");
    format!(
        "--a1b2c3d4-A--\n[{when}] {id} {src} 50000 192.0.2.80 80\n\
         --a1b2c3d4-B--\nGET /?q=1'%20or%201=1 HTTP/1.1\nHost: lab.example\n\n\
         --a1b2c3d4-F--\nHTTP/1.1 403 Forbidden\n\n\
         --a1b2c3d4-H--\nMessage: Access denied with code 403 (phase 2). [id \"942100\"] [msg \"SQL Injection Attack Detected via libinjection\"] [severity \"CRITICAL\"]\n\n\
         --a1b2c3d4-Z--\n\n"
    )
}

pub fn flood_id(n: usize) -> String {
    format!("FLOOD{n:022}")
}

/// Queues `n` events (entry i has unique id `flood_id(first + i)`): from the flooder, but
/// for `attacks` of them spread evenly, each from its own client. `time(i)` is entry
/// i's event time. Returns the attacks' unique ids.
pub fn fill_flood(
    queue: &Path,
    first: usize,
    n: usize,
    attacks: usize,
    time: impl Fn(usize) -> i64,
) -> std::collections::HashSet<String> {
    std::fs::create_dir_all(queue).unwrap();
    let mut attack_ids = std::collections::HashSet::new();
    let every = n.checked_div(attacks).unwrap_or(usize::MAX);
    for i in 0..n {
        let id = flood_id(first + i);
        let src = if attacks > 0 && i % every == every / 2 && attack_ids.len() < attacks {
            attack_ids.insert(id.clone());
            format!("198.51.100.{}", attack_ids.len())
        } else {
            FLOODER.to_string()
        };
        let name = format!("modsec.log.1790000000.{:06}", first + i);
        put_entry(queue, &name, flood_event(&id, &src, time(i)).as_bytes());
    }
    attack_ids
}
