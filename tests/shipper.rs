//! `modsec-shipper drain` and `run` against the sguild-faithful test server: what is
//! shipped, what is quarantined, what each failure leaves behind, and the exit codes.

use std::collections::HashSet;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use modsec2sguil_e2e::process::{signal, wait_exit};
use modsec2sguil_e2e::sguild::TestSguild;
use modsec2sguil_e2e::shipper::{
    config, drain, entries_left, fill_queue, shipper, stored_unique_id, test_entry, unique_id,
    wait_for_events,
};
use modsec2sguil_e2e::{binary, fixtures};

fn ids(server: &TestSguild) -> Vec<String> {
    server.events().iter().map(stored_unique_id).collect()
}

#[test]
fn drain_ships_each_event_once_in_queue_order_and_empties_the_queue() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let want = fill_queue(&queue, 1, 150);
    // An unpadded name from modsec_queue.pl: 5 µs, so it sorts before `.000006`, not
    // after `.000150` as string order would have it.
    std::fs::rename(
        queue.join("modsec.log.1790000000.000005"),
        queue.join("modsec.log.1790000000.5"),
    )
    .unwrap();
    let conf = config(dir.path(), &queue, &server, "");
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids(&server), want, "every event once, in queue order");
    let cids: Vec<u32> = server.events().iter().map(|e| e.cid).collect();
    assert_eq!(cids, (1..=150).collect::<Vec<u32>>());
    assert!(entries_left(&queue).is_empty());
    assert!(
        err.contains("drain: shipped 150, skipped 0 non-alerts, quarantined 0, remaining 0"),
        "{err}"
    );
    let e = &server.events()[0];
    assert_eq!(
        (e.src_ip.as_str(), e.dst_ip.as_str(), e.sig_id.as_str()),
        ("127.0.0.1", "127.0.0.1", "942100")
    );
    assert_eq!(e.timestamp, "2026-11-28 02:14:31");

    // A second run continues the cids after what sguild holds.
    fill_queue(&queue, 151, 3);
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    let cids: Vec<u32> = server.events().iter().map(|e| e.cid).collect();
    assert_eq!(&cids[150..], [151, 152, 153]);
}

#[test]
fn an_empty_queue_is_done_without_a_server() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    let conf = config(dir.path(), &queue, &server, "set SERVER_PORT 1\n");
    let started = Instant::now();
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the queue is empty"), "{err}");
    eprintln!("empty-queue drain: {:?}", started.elapsed());
}

#[test]
fn unreachable_or_refusing_server_exits_4_and_leaves_the_queue_alone() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    fill_queue(&queue, 1, 5);
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let conf = config(
        dir.path(),
        &queue,
        &server,
        &format!("set SERVER_PORT {port}\n"),
    );
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("the queue is untouched"),
        "{err}"
    );
    assert_eq!(entries_left(&queue).len(), 5);

    server.set(|f| f.refuse = true);
    let conf = config(dir.path(), &queue, &server, "");
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("sguild.access"), "{err}");
    assert_eq!(entries_left(&queue).len(), 5);
    assert!(server.events().is_empty());
}

#[test]
fn configuration_errors_exit_3_and_name_the_line() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    for (extra, want) in [
        ("set OUTPUT carrier-pigeon\n", ":7: OUTPUT"),
        ("set IGNORE_HTTP_CODES lots\n", ":7: IGNORE_HTTP_CODES"),
        ("set MAX_EVENT_BYTES 12\n", ":7: MAX_EVENT_BYTES"),
        ("set SYMLINK 1\n", "symlink mode needs STORAGE_DIR"),
        (
            "set TLS_CA_FILE {}\nset TLS_PIN_SHA256 xyz\n",
            ":8: TLS_PIN_SHA256",
        ),
        (
            "set TLS_VERIFY 0\n",
            ":7: TLS_VERIFY 0 turns off the certificate check that TLS_CA_FILE (line 6)",
        ),
        (
            &format!("set TLS_VERIFY 0\nset TLS_PIN_SHA256 {}\n", "0a".repeat(32)),
            ":7: TLS_VERIFY 0 turns off the certificate check that TLS_PIN_SHA256 (line 8)",
        ),
    ] {
        let conf = config(dir.path(), &queue, &server, extra);
        let (code, err) = drain(&conf, &[]);
        assert_eq!(code, 3, "{extra}: {err}");
        assert!(err.contains(want), "{extra}: {err}");
    }
    let conf = config(dir.path(), &dir.path().join("nope"), &server, "");
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("nope: the queue (EVENT_DIR) does not exist"),
        "{err}"
    );
    let (code, err) = drain(&dir.path().join("missing.conf"), &[]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("missing.conf"), "{err}");
}

#[test]
fn a_world_writable_config_or_queue_is_refused_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    fill_queue(&queue, 1, 1);
    let conf = config(dir.path(), &queue, &server, "");
    let chmod = |p: &Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // Run as root, a config anyone but root may write is refused by the StrictModes
    // check, whatever --allow-world-writable says (tests/root_shipper.rs has more).
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    for (path, mode) in [(&conf, 0o666), (&queue, 0o1777)] {
        chmod(path, mode);
        let (code, err) = drain(&conf, &[]);
        assert_eq!(code, 3, "{err}");
        let fix = if path == &conf && as_root {
            "chmod go-w"
        } else {
            "chmod o-w"
        };
        assert!(
            err.contains(&format!("{}", path.display()))
                && err.contains("writable by everyone")
                && err.contains(fix),
            "{err}"
        );
        if path == &conf && as_root {
            let (code, err) = drain(&conf, &["--allow-world-writable"]);
            assert_eq!(code, 3, "{err}");
        }
        assert_eq!(entries_left(&queue).len(), 1);
        chmod(path, if mode == 0o666 { 0o644 } else { 0o755 });
    }
    chmod(&queue, 0o777);
    let (code, err) = drain(&conf, &["--allow-world-writable"]);
    assert_eq!((code, server.events().len()), (0, 1), "{err}");
}

#[test]
fn a_second_drain_leaves_the_queue_to_the_one_holding_the_lock() {
    let server = TestSguild::start();
    server.set(|f| f.event_delay = Some(Duration::from_millis(1500)));
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    fill_queue(&queue, 1, 4);
    let conf = config(dir.path(), &queue, &server, "set SEND_WINDOW 1\n");
    let first = Command::new(binary("modsec-shipper"))
        .args(["drain", "-c", conf.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first holds the lock once it has journaled its first event (it journals under
    // the lock, before sending); from then on it keeps it for 4 replies 1.5 s late each:
    // 6 s for the second drain to start and try the lock, which takes ~0.1 s.
    let journal = queue.join(".journal");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&journal).map_or(0, |m| m.len()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first drain journaled nothing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("another shipper holds the queue lock"),
        "{err}"
    );
    // --wait waits for it, then finds nothing left to do.
    let (code, err) = drain(&conf, &["--wait"]);
    assert_eq!(code, 0, "{err}");
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(server.events().len(), 4);
}

#[test]
fn max_events_and_max_seconds_bound_a_run() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let ids_in_order = fill_queue(&queue, 1, 50);
    let conf = config(dir.path(), &queue, &server, "set SEND_WINDOW 8\n");
    let (code, err) = drain(&conf, &["--max-events", "20"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(server.events().len(), 20);
    assert!(err.contains("remaining 30"), "{err}");
    // A 3 s run at most 5 events/s (each reply 200 ms late) cannot ship the 30 left
    // (6 s), however fast the machine; it ships some unless starting and connecting
    // alone take it 3 s (they take ~0.1 s, ~0.3 s with both cores busy).
    server.set(|f| f.delay = Some(Duration::from_millis(200)));
    let (code, err) = drain(&conf, &["--max-seconds", "3"]);
    assert_eq!(code, 0, "{err}");
    let n = server.events().len();
    assert!(
        n > 20 && n < 50,
        "a 3 s run at 5 events/s ships some, not all: {n}"
    );
    assert_eq!(entries_left(&queue).len(), 50 - n);
    // What the bounded run journaled but had no time to send goes with the next run,
    // once: every event stored exactly once, in queue order.
    server.set(|f| f.delay = None);
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    let ids: Vec<String> = server.events().iter().map(stored_unique_id).collect();
    assert_eq!(ids, ids_in_order, "{err}");
    assert!(entries_left(&queue).is_empty());
}

#[test]
fn poison_entries_are_quarantined_with_reasons_while_good_ones_ship() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let good = fill_queue(&queue, 1, 10);
    let poison = |n: u32| queue.join(format!("modsec.log.1790000000.{:06}", 100 + n));
    std::fs::write(poison(1), b"").unwrap();
    std::fs::write(
        poison(2),
        (0..4096u32)
            .map(|i| (i * 7 % 256) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let template = std::fs::read(fixtures().join(modsec2sguil_e2e::shipper::TEMPLATE)).unwrap();
    std::fs::write(poison(3), &template[..40]).unwrap();
    std::fs::create_dir(poison(4)).unwrap();
    symlink(dir.path().join("gone"), poison(5)).unwrap();
    // A 50 MB request body: over MAX_EVENT_BYTES (16 MiB).
    let mut big = template.clone();
    big.resize(big.len() + 50 * 1024 * 1024, b'x');
    std::fs::write(poison(6), &big).unwrap();
    nix_mkfifo(&poison(7));
    symlink(
        fixtures().join(modsec2sguil_e2e::shipper::TEMPLATE),
        poison(8),
    )
    .unwrap();
    let conf = config(dir.path(), &queue, &server, "");
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids(&server), good);
    assert!(
        entries_left(&queue).is_empty(),
        "{:?}",
        entries_left(&queue)
    );
    assert!(err.contains("quarantined 8"), "{err}");
    let reason = |n: u32| {
        std::fs::read_to_string(
            queue
                .join("failed")
                .join(format!("modsec.log.1790000000.{:06}.reason", 100 + n)),
        )
        .unwrap()
    };
    for (n, want) in [
        (1, "the file is empty"),
        (2, "not a ModSecurity audit-log event"),
        (3, "not a ModSecurity audit-log event"),
        (4, "a directory"),
        (5, "a symlink, and symlink mode"),
        (6, "over MAX_EVENT_BYTES"),
        (7, "a FIFO"),
        (8, "a symlink"),
    ] {
        let r = reason(n);
        assert!(r.contains(want) && r.contains("time: "), "{n}: {r}");
        assert!(
            std::fs::symlink_metadata(
                queue
                    .join("failed")
                    .join(format!("modsec.log.1790000000.{:06}", 100 + n))
            )
            .is_ok(),
            "{n} moved to failed/"
        );
    }
}

fn nix_mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

#[test]
fn symlink_mode_follows_links_into_the_storage_dir_only_and_can_remove_the_original() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let storage = dir.path().join("storage");
    let outside = dir.path().join("outside");
    fill_queue(&storage, 1, 2);
    fill_queue(&outside, 3, 1);
    std::fs::create_dir(&queue).unwrap();
    symlink(
        storage.join("modsec.log.1790000000.000001"),
        queue.join("modsec.log.1.000001"),
    )
    .unwrap();
    symlink(
        storage.join("modsec.log.1790000000.000002"),
        queue.join("modsec.log.1.000002"),
    )
    .unwrap();
    symlink(
        outside.join("modsec.log.1790000000.000003"),
        queue.join("modsec.log.1.000003"),
    )
    .unwrap();
    let conf = config(
        dir.path(),
        &queue,
        &server,
        &format!(
            "set SYMLINK 1\nset STORAGE_DIR {}\nset SYMLINK_REMOVE_ORIG 1\n",
            storage.display()
        ),
    );
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids(&server), [unique_id(1), unique_id(2)]);
    assert!(entries_left(&storage).is_empty(), "originals removed");
    assert_eq!(entries_left(&outside).len(), 1, "never touched");
    let r = std::fs::read_to_string(queue.join("failed/modsec.log.1.000003.reason")).unwrap();
    assert!(r.contains("outside the storage dir"), "{r}");
}

#[test]
fn non_alerts_are_removed_unless_handle_all_events() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    // native-on logged every request: benign 200s, 404s and alerts.
    let mut n = 0;
    let files = modsec2sguil_e2e::files_below(&fixtures().join("modsec-2.9/native-on"));
    for f in &files {
        n += 1;
        std::fs::copy(f, queue.join(format!("modsec.log.1790000000.{n:06}"))).unwrap();
    }
    let conf = config(dir.path(), &queue, &server, "set IGNORE_HTTP_CODES 404\n");
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    let shipped = server.events().len();
    assert!(shipped > 10 && shipped < n, "{shipped} of {n}");
    assert!(
        err.contains(&format!("skipped {} non-alerts", n - shipped)),
        "{err}"
    );
    assert!(entries_left(&queue).is_empty());
    for e in server.events() {
        let msg = String::from_utf8_lossy(&e.message).into_owned();
        assert!(msg.starts_with("MSc "), "{msg}");
    }
}

#[test]
fn outage_mid_run_exits_5_keeps_the_rest_and_the_next_run_finishes_exactly_once() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let want = fill_queue(&queue, 1, 60);
    // The connection is cut after 25 events: part of a window is unanswered.
    server.set(|f| f.close_after = Some(25));
    let conf = config(
        dir.path(),
        &queue,
        &server,
        "set SEND_WINDOW 16\nset REPLY_TIMEOUT 5\n",
    );
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 5, "{err}");
    assert_eq!(entries_left(&queue).len(), 60 - confirmed_in(&err), "{err}");
    // The database goes away mid-run: sguild answers `Failed … Lost connection`.
    server.set(|f| {
        f.close_after = None;
        f.event_delay = Some(Duration::from_millis(40));
    });
    let flip = {
        let faults = server.faults.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            faults.lock().unwrap().db_down = true;
        })
    };
    let (code, err) = drain(&conf, &[]);
    flip.join().unwrap();
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("database is unavailable"), "{err}");
    let left = entries_left(&queue).len();
    assert!(left > 0 && left < 60 - 16, "{left}: {err}");
    // While the database is down, sguild does not answer a registration: exit 4.
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 4, "{err}");
    // sguild restarted by its operator, database back.
    server.set(|f| {
        f.db_down = false;
        f.event_delay = None;
    });
    let server = server.restart();
    let conf = config(dir.path(), &queue, &server, "set SEND_WINDOW 16\n");
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    let mut got = ids(&server);
    got.sort();
    assert_eq!(got, want, "each exactly once");
    assert!(entries_left(&queue).is_empty());
}

/// The `shipped N` of a summary line.
fn confirmed_in(err: &str) -> usize {
    err.split("drain: shipped ")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {err}"))
}

#[test]
fn replies_later_than_the_timeout_are_resent_and_found_stored() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let want = fill_queue(&queue, 1, 6);
    server.set(|f| f.event_delay = Some(Duration::from_millis(1500)));
    let conf = config(
        dir.path(),
        &queue,
        &server,
        "set REPLY_TIMEOUT 1\nset SEND_WINDOW 2\n",
    );
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("no reply for cid"), "{err}");
    server.set(|f| f.event_delay = None);
    // The server stores what it read, late (the window of 2 sent before the timeout);
    // then the resend is answered `Duplicate entry`.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while server.events().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server stored nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("found already stored"), "{err}");
    let mut got = ids(&server);
    got.sort();
    assert_eq!(got, want);
}

/// A config with OUTPUT stdout for `queue`, in `dir`.
fn stdout_config(dir: &Path, queue: &Path) -> PathBuf {
    let conf = dir.join("c.conf");
    std::fs::write(
        &conf,
        format!(
            "set EVENT_DIR {}\nset OUTPUT stdout\nset HOSTNAME web1\n",
            queue.display()
        ),
    )
    .unwrap();
    conf
}

#[test]
fn stdout_output_prints_one_decoded_json_line_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let want = fill_queue(&queue, 1, 3);
    let conf = stdout_config(dir.path(), &queue);
    let out = shipper(&["drain", "-c", conf.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let v = &lines[0];
    assert_eq!(v["hostname"], "web1");
    assert_eq!(v["sig_id"], 942100);
    assert_eq!(v["priority"], 2);
    assert_eq!(v["class"], "attack-sqli");
    assert_eq!(v["time"], "2026-11-28 02:14:31");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("MSc 403 SQL Injection Attack"),
        "{v}"
    );
    assert!(v["detail"].as_str().unwrap().contains(&want[0]));
    assert!(entries_left(&queue).is_empty());
}

/// `--output text` (the demo's): one line a person reads per event, over the config's
/// OUTPUT stdout, and the queue emptied as with any output.
#[test]
fn text_output_prints_one_readable_line_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    fill_queue(&queue, 1, 3);
    let conf = stdout_config(dir.path(), &queue);
    let out = shipper(&["drain", "-c", conf.to_str().unwrap(), "--output", "text"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for line in lines {
        let (time, rest) = line.split_once(" UTC  ").unwrap();
        assert_eq!(time, "2026-11-28 02:14:31", "{line}");
        let (route, rest) = rest.split_once("  priority 2  ").unwrap();
        assert!(route.contains(" -> "), "{line}");
        assert!(rest.starts_with("MSc 403 SQL Injection Attack"), "{line}");
    }
    assert!(entries_left(&queue).is_empty());
}

#[test]
fn the_daemon_ships_as_entries_arrive_reconnects_and_stops_on_sigterm() {
    let mut server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    let log = dir.path().join("shipper.log");
    let port = server.addr.port();
    let conf = config(
        dir.path(),
        &queue,
        &server,
        &format!("set PING_DELAY 1000\nset LOG_FILE {}\n", log.display()),
    );
    let mut child = Command::new(binary("modsec-shipper"))
        .args(["run", "-c", conf.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    fill_queue(&queue, 1, 5);
    wait_for_events(&server, 5, &log);
    // Idle past PING_DELAY: the session is kept alive, not dropped.
    std::thread::sleep(Duration::from_millis(2500));
    fill_queue(&queue, 6, 5);
    wait_for_events(&server, 10, &log);
    // sguild restarts on the same port: the daemon reconnects and goes on.
    server = server.restart_on(port);
    fill_queue(&queue, 11, 5);
    wait_for_events(&server, 15, &log);
    // SIGHUP reloads (a bad value is refused, the running config kept).
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{text}set SEND_WINDOW nope\n")).unwrap();
    signal(child.id(), "HUP");
    std::thread::sleep(Duration::from_millis(500));
    fill_queue(&queue, 16, 2);
    wait_for_events(&server, 17, &log);
    signal(child.id(), "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status, Some(0));
    let mut got = ids(&server);
    got.sort();
    assert_eq!(got, (1..=17).map(unique_id).collect::<Vec<_>>());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("SIGHUP") && text.contains("SEND_WINDOW"),
        "{text}"
    );
    assert!(text.contains("reconnecting"), "{text}");
    let uniq: HashSet<_> = got.iter().collect();
    assert_eq!(uniq.len(), 17);
}

/// A queue the daemon cannot open for a while (here its journal is a directory; a full
/// disk does the same) is waited for, not given up on.
#[test]
fn the_daemon_waits_for_a_queue_it_cannot_open_yet() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    fill_queue(&queue, 1, 2);
    std::fs::create_dir(queue.join(".journal")).unwrap();
    let log = dir.path().join("shipper.log");
    let conf = config(
        dir.path(),
        &queue,
        &server,
        &format!("set LOG_FILE {}\n", log.display()),
    );
    let mut child = Command::new(binary("modsec-shipper"))
        .args(["run", "-c", conf.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let alive = child.try_wait().unwrap().is_none();
    if !alive {
        panic!(
            "the daemon gave up: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(".journal: Is a directory") && text.contains("retrying"),
        "{text}"
    );
    std::fs::remove_dir(queue.join(".journal")).unwrap();
    wait_for_events(&server, 2, &log);
    signal(child.id(), "TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
}

#[test]
fn a_full_disk_stops_the_run_before_anything_is_sent_and_loses_nothing() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let Some(_fs) = modsec2sguil_e2e::Tmpfs::mount(&queue, "1m", "shipper full disk") else {
        return;
    };
    let want = fill_queue(&queue, 1, 5);
    // Fill the filesystem to the last block.
    let filler = std::fs::File::create(queue.join(".filler")).unwrap();
    let mut w = std::io::BufWriter::new(filler);
    while std::io::Write::write_all(&mut w, &[0u8; 4096]).is_ok() {}
    drop(w);
    let conf = config(dir.path(), &queue, &server, "");
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(".journal") && err.contains("No space left"),
        "{err}"
    );
    assert!(
        server.events().is_empty(),
        "nothing sent without a journal record"
    );
    assert_eq!(entries_left(&queue).len(), 5);
    // Room again: everything ships, once.
    std::fs::remove_file(queue.join(".filler")).unwrap();
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids(&server), want);
}

/// The queue's own entries (copies, while sguild was away) fill its filesystem to the
/// last block: the journal and delivered-log appends that delivery needs use space the
/// shipper held in advance, and each delivery frees an entry. (Without it, nothing
/// could be sent for want of a journal record, so nothing removed: found by the soak.)
#[test]
fn a_queue_that_filled_its_own_filesystem_still_drains() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let Some(_fs) = modsec2sguil_e2e::Tmpfs::mount(&queue, "4m", "shipper self-filled queue")
    else {
        return;
    };
    let conf = config(dir.path(), &queue, &server, "");
    // A journal long enough to be compacted at the end of the next run, as after weeks
    // of deliveries (records of entries long gone).
    let history: String = (1..=5000)
        .map(|cid| format!("1\t{cid}\t1790000000\t1\twebsrv\tmodsec.log.1780000000.{cid:06}\n"))
        .collect();
    std::fs::write(queue.join(".journal"), history).unwrap();
    let mut want = fill_queue(&queue, 1, 3);
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::metadata(queue.join(".journal")).unwrap().len(),
        0,
        "compacted"
    );
    // Entries until the filesystem takes no more, then its last bytes.
    let mut i = 4;
    loop {
        let (name, id, text) = test_entry(i);
        if std::fs::write(queue.join(&name), text).is_err() {
            let _ = std::fs::remove_file(queue.join(&name));
            break;
        }
        want.push(id);
        i += 1;
    }
    let mut filler = std::fs::File::create(queue.join(".filler")).unwrap();
    while std::io::Write::write_all(&mut filler, &[0u8; 512]).is_ok() {}
    while std::io::Write::write_all(&mut filler, &[0u8; 1]).is_ok() {}
    drop(filler);
    assert!(want.len() > 500, "only {} entries fit", want.len());
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids(&server), want, "every event once, in order");
    assert!(entries_left(&queue).is_empty());
}

#[test]
fn a_read_only_queue_is_an_io_error_that_names_it() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let Some(_fs) = modsec2sguil_e2e::Tmpfs::mount(&queue, "1m", "shipper read-only queue") else {
        return;
    };
    fill_queue(&queue, 1, 2);
    assert!(Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&queue)
        .status()
        .unwrap()
        .success());
    let conf = config(dir.path(), &queue, &server, "");
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("queue lock") && err.contains("Read-only file system"),
        "{err}"
    );
    assert!(server.events().is_empty());
    assert_eq!(entries_left(&queue).len(), 2);
}

/// SHIPPER_LOG_FILE is opened before the shipper drops root, in a directory its user
/// owns: a link planted in the log's place is refused, and the run goes on.
#[test]
fn a_planted_log_link_is_refused_and_the_run_goes_on() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let want = fill_queue(&queue, 1, 2);
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "root:$6$x\n").unwrap();
    let log = dir.path().join("shipper.log");
    std::os::unix::fs::symlink(&victim, &log).unwrap();
    let conf = config(
        dir.path(),
        &queue,
        &server,
        &format!("set SHIPPER_LOG_FILE {}\n", log.display()),
    );
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("cannot open the log file") && err.contains("is a symbolic link"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:$6$x\n");
    assert_eq!(server.events().len(), want.len());
}

/// Text from an event reaches the shipper's log, `failed/<entry>.reason`, and `show` on
/// the terminal; a JSON event's fields can hold any character. None of it may start a
/// line of its own (a forged log record) or reach the terminal as a control sequence.
#[test]
fn event_text_cannot_forge_log_lines_or_drive_the_terminal() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    let fixture = std::fs::read_dir(fixtures().join("modsec-2.9/json/www-data/20261128"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|e| e.path())
        .min()
        .unwrap();
    let mut event: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&fixture).unwrap()).unwrap();
    let forged = "x\n2026-12-02 00:00:00.000 +0000 modsec-shipper[1] ERROR: forged\u{1b}[2J";
    event["transaction"]["transaction_id"] = forged.into();
    // A time that does not parse: quarantined with a reason that quotes the event.
    let mut bad = event.clone();
    bad["transaction"]["time"] = format!("28/Nov/2026\n{forged}").into();
    let ok_path = queue.join("modsec.log.1790000000.000001");
    std::fs::write(&ok_path, event.to_string()).unwrap();
    std::fs::write(queue.join("modsec.log.1790000000.000002"), bad.to_string()).unwrap();
    let log = dir.path().join("shipper.log");
    let conf = config(
        dir.path(),
        &queue,
        &server,
        &format!("set SHIPPER_LOG_FILE {}\nset DEBUG 1\n", log.display()),
    );
    // `show` before the drain removes the entry.
    let out = shipper(&["show", ok_path.to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        shown.contains("unique id:    x\\n2026-12-02") && !shown.contains("\n2026-12-02"),
        "{shown}"
    );
    drain(&conf, &[]);
    let mut texts = vec![
        ("show", shown),
        ("log", std::fs::read_to_string(&log).unwrap()),
    ];
    for e in std::fs::read_dir(queue.join("failed")).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".reason") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            // version, time, entry, reason: nothing the event wrote added a line.
            assert_eq!(text.lines().count(), 4, "{text}");
            texts.push(("reason", text));
        }
    }
    assert!(texts.len() >= 3, "nothing was quarantined: {texts:?}");
    for (what, text) in &texts {
        assert!(!text.contains('\u{1b}'), "{what}: {text}");
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("2026-12-02 00:00:00.000")),
            "{what}: a forged line: {text}"
        );
    }
    assert!(
        texts[1].1.contains("forged"),
        "the log never quoted the event"
    );
}
