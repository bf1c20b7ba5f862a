//! nginx + libmodsecurity 3 end to end: real traffic, v3 writes event files and its
//! index file, `modsec-collector --follow` queues them, `drain` ships them to the test
//! sguild. The index is rotated (copytruncate, as v3 keeps appending to the file it
//! opened) and the collector is SIGKILLed and restarted under load: every index line
//! ends up as exactly one stored event.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use modsec2sguil_e2e::nginx::Nginx;
use modsec2sguil_e2e::sguild::TestSguild;
use modsec2sguil_e2e::shipper::{config, drain, entries_left, stored_unique_id};
use modsec2sguil_e2e::{binary, state};

/// The follower, killed (by its PID) if the test ends early; its log appended to `log`.
struct Follower(Child);

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn collector(conf: &Path, index: &Path, log: &Path) -> Follower {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Follower(
        Command::new(binary("modsec-collector"))
            .args(["-c", conf.to_str().unwrap(), "--follow"])
            .arg(index)
            .arg("--from-start")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Unique ids of the index lines in these files, in order.
fn index_ids(files: &[&Path]) -> Vec<String> {
    let mut ids = Vec::new();
    for f in files {
        let text = std::fs::read(f).unwrap_or_default();
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let parsed = modsec2sguil::index::parse_index_line(line)
                .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(line)));
            ids.push(parsed.unique_id);
        }
    }
    ids
}

#[test]
fn nginx_v3_events_are_followed_through_rotation_and_restarts_and_stored_once() {
    let Some(nginx) =
        Nginx::start("nginx_v3_events_are_followed_through_rotation_and_restarts_and_stored_once")
    else {
        return;
    };
    let server = TestSguild::start();
    let work = tempfile::tempdir().unwrap();
    let queue = work.path().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    let conf = config(
        work.path(),
        &queue,
        &server,
        &format!("set STORAGE_DIR {}\n", nginx.storage.display()),
    );
    let log = work.path().join("collector.log");
    let mut child = collector(&conf, &nginx.index, &log);
    let attack = |n: usize| {
        let status = nginx.get(&format!(
            "/?id={n}%27%20UNION%20SELECT%20password%20FROM%20users--"
        ));
        assert_eq!(status, 403, "the CRS blocks request {n}");
    };
    let caught_up = |n: usize| {
        let until = Instant::now() + Duration::from_secs(30);
        while entries_left(&queue).len() < n && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for n in 0..20 {
        attack(n);
    }
    caught_up(10);
    // logrotate's copytruncate while requests keep coming (lines not read yet when the
    // file is copied are read from the copy).
    let rotated = nginx.index.with_extension("log.1");
    std::fs::copy(&nginx.index, &rotated).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&nginx.index)
        .unwrap()
        .set_len(0)
        .unwrap();
    for n in 20..40 {
        attack(n);
        if n == 30 {
            child.0.kill().unwrap(); // SIGKILL mid-stream
            child.0.wait().unwrap();
            child = collector(&conf, &nginx.index, &log);
        }
    }
    // The collector catches up: as many entries as index lines, nothing in the backlog.
    let want = index_ids(&[&rotated, &nginx.index]);
    assert_eq!(want.len(), 40, "one index line per blocked request");
    caught_up(want.len());
    std::thread::sleep(Duration::from_millis(500)); // nothing more (no duplicates) comes
    let queued = entries_left(&queue).len();
    let backlog = state::backlog_text(&state::dir(work.path()));
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(queued, want.len(), "backlog: {backlog}\ncollector: {said}");
    assert!(backlog.is_empty(), "{backlog}");
    // SIGTERM: it saves its position and exits 0.
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.0.wait().unwrap().success());

    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    let stored: Vec<String> = server.events().iter().map(stored_unique_id).collect();
    assert_eq!(stored.len(), want.len(), "each event stored once: {err}");
    assert_eq!(
        stored.iter().collect::<HashSet<_>>(),
        want.iter().collect::<HashSet<_>>()
    );
    // v3 events map like 2.x ones: the CRS rule behind the block, not the evaluation.
    let e = &server.events()[0];
    let message = String::from_utf8_lossy(&e.message).into_owned();
    assert!(message.starts_with("MSc 403 "), "{message}");
    assert!(!message.contains("Inbound Anomaly Score"), "{message}");
    assert_eq!(e.src_ip, "127.0.0.1");
}
