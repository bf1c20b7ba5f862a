//! The drain and daemon loops, driven through their control channel as the binary's
//! signals drive them (OUTPUT stdout: no server needed; the events' JSON lines go to
//! the test's stdout).

use super::*;
use crate::config::ConfigFile;
use crate::queue::last_run::LastRun;
use crate::ship::settings::ShipperOverrides;
use crate::testdata::{entries_in, event_text, wait_for};
use crossbeam_channel::unbounded;

fn queue_with(n: usize) -> (tempfile::TempDir, ShipperSettings) {
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    for i in 1..=n {
        std::fs::write(
            queue.join(format!("modsec.log.1790000000.{i:06}")),
            event_text(&format!("RUN-TEST-{i}"), 403),
        )
        .unwrap();
    }
    (dir, settings_for(&queue, ""))
}

/// Puts an entry into a queue a running daemon watches the way the collector and
/// requeue do: whole (written under a hidden name, renamed in). A plain write lets the
/// daemon, woken by the file's creation, read it half-written (a loaded machine made
/// the late entry of the test below a non-alert: shipped 2 instead of 3).
fn put_entry(queue: &Path, name: &str, text: &str) {
    let hidden = queue.join(format!(".part.{name}"));
    std::fs::write(&hidden, text).unwrap();
    std::fs::rename(&hidden, queue.join(name)).unwrap();
}

fn settings_for(queue: &Path, extra: &str) -> ShipperSettings {
    let text = format!(
        "set EVENT_DIR {}\nset OUTPUT stdout\nset HOSTNAME websrv\n{extra}",
        queue.display()
    );
    let c = ConfigFile::parse(&text, Path::new("/etc/test.conf")).unwrap();
    ShipperSettings::resolve(&c, ShipperOverrides::default()).unwrap()
}

#[test]
fn drain_ships_the_queue_records_the_run_and_says_how_it_ended() {
    let (_dir, settings) = queue_with(3);
    let (_tx, control) = unbounded();
    assert_eq!(
        drain(&settings, &DrainOptions::default(), &control),
        Exit::Ok
    );
    assert_eq!(entries_in(&settings.queue_dir), 0);
    let last = LastRun::read(&settings.queue_dir).unwrap().unwrap();
    assert_eq!(
        (last.program.as_str(), last.result, last.shipped),
        ("drain", RunResult::Ok, 3)
    );
    // An empty queue is a run too (status shows the cron job is alive).
    assert_eq!(
        drain(&settings, &DrainOptions::default(), &control),
        Exit::Ok
    );
    let missing = settings_for(&settings.queue_dir.join("nope"), "");
    assert_eq!(
        drain(&missing, &DrainOptions::default(), &control),
        Exit::Config
    );
    assert_eq!(
        [
            Exit::Ok,
            Exit::Failed,
            Exit::Config,
            Exit::Unreachable,
            Exit::Outage
        ]
        .map(Exit::code),
        [0, 1, 3, 4, 5]
    );
}

#[test]
fn drain_leaves_a_locked_queue_to_its_holder_unless_told_to_wait() {
    let (_dir, settings) = queue_with(1);
    let held = QueueLock::acquire(&settings.queue_dir).unwrap().unwrap();
    let (_tx, control) = unbounded();
    assert_eq!(
        drain(&settings, &DrainOptions::default(), &control),
        Exit::Ok
    );
    assert_eq!(entries_in(&settings.queue_dir), 1, "left to the holder");
    // Told to wait, it ships once the holder lets go.
    let queue = settings.queue_dir.clone();
    let waiting = std::thread::spawn(move || {
        let wait = DrainOptions {
            wait: true,
            ..DrainOptions::default()
        };
        drain(&settings, &wait, &control)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiting.is_finished(), "it waits for the lock");
    assert_eq!(entries_in(&queue), 1);
    drop(held);
    assert_eq!(waiting.join().unwrap(), Exit::Ok);
    assert_eq!(entries_in(&queue), 0);
}

#[test]
fn the_daemon_ships_what_arrives_and_stops_when_told() {
    let (_dir, settings) = queue_with(2);
    let queue = settings.queue_dir.clone();
    let (tx, control) = unbounded();
    let running = std::thread::spawn(move || daemon(settings, &control, || Err("unused".into())));
    wait_for("the first two entries to ship", || entries_in(&queue) == 0);
    put_entry(
        &queue,
        "modsec.log.1790000001.000001",
        &event_text("RUN-TEST-LATE", 403),
    );
    wait_for("an entry that arrived later to ship", || {
        entries_in(&queue) == 0
    });
    let asked = Instant::now();
    tx.send(Control::Stop).unwrap();
    assert_eq!(running.join().unwrap(), Exit::Ok);
    // Its naps end on a Stop: it returns at once, not after waiting out a nap or the
    // backoff (up to MAX_BACKOFF, 60 s). 20 s leaves a busy machine ample margin.
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "{:?}",
        asked.elapsed()
    );
    let last = LastRun::read(&queue).unwrap().unwrap();
    assert_eq!((last.program.as_str(), last.shipped), ("run", 3));
}

/// With the poll an hour apart, an entry hard-linked into the queue (as the collector
/// links one) is shipped at once: the daemon woke on it. Its wait is then in the latency
/// record.
#[test]
fn the_daemon_wakes_on_a_linked_entry_instead_of_waiting_for_its_poll() {
    let (dir, _) = queue_with(1);
    let queue = dir.path().join("queue");
    let settings = settings_for(&queue, "set POLL_INTERVAL 3600\n");
    let (tx, control) = unbounded();
    let running = std::thread::spawn(move || daemon(settings, &control, || Err("unused".into())));
    wait_for("the first entry to ship", || entries_in(&queue) == 0);
    // Idle now, in its wait for the next poll an hour away.
    std::thread::sleep(Duration::from_millis(300));
    let event = dir.path().join("event");
    std::fs::write(&event, event_text("RUN-TEST-LINKED", 403)).unwrap();
    std::fs::hard_link(
        &event,
        queue.join(crate::queue::EntryName::now().to_string()),
    )
    .unwrap();
    // Far under the poll, generous for a loaded machine.
    let linked = Instant::now();
    while entries_in(&queue) > 0 {
        assert!(
            linked.elapsed() < Duration::from_secs(10),
            "the linked entry waits for the poll: the daemon did not wake on it"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    tx.send(Control::Stop).unwrap();
    assert_eq!(running.join().unwrap(), Exit::Ok);
    let latency = crate::queue::latency::LatencyRecord::read(&queue)
        .unwrap()
        .expect("the daemon's latency record");
    assert_eq!(latency.histogram.count, 2, "{latency:?}");
    assert_eq!(latency.pid, std::process::id());
}

#[test]
fn the_daemon_reloads_on_request_and_keeps_its_settings_when_the_new_ones_fail() {
    let (_dir, settings) = queue_with(0);
    let queue = settings.queue_dir.clone();
    let (tx, control) = unbounded();
    let (calls_tx, calls) = unbounded::<()>();
    let reloaded = settings_for(&queue, "set HANDLE_ALL_EVENTS 1\n");
    let mut n = 0;
    let running = std::thread::spawn(move || {
        daemon(settings, &control, move || {
            n += 1;
            calls_tx.send(()).unwrap();
            if n == 1 {
                Err("/etc/test.conf:3: bad".into())
            } else {
                Ok(reloaded.clone())
            }
        })
    });
    tx.send(Control::Reload).unwrap();
    calls
        .recv_timeout(Duration::from_secs(10))
        .expect("reloaded");
    tx.send(Control::Reload).unwrap();
    calls
        .recv_timeout(Duration::from_secs(10))
        .expect("reloaded again");
    // The daemon applies what the loader returned after the call: a third reload's call
    // comes only once the second's settings are in force (the entry below was otherwise
    // sometimes handled before, under a loaded machine).
    tx.send(Control::Reload).unwrap();
    calls
        .recv_timeout(Duration::from_secs(10))
        .expect("reloaded a third time");
    // A 200 without a rule match is no alert: it ships only under the reloaded
    // HANDLE_ALL_EVENTS 1, and is skipped under the settings the daemon started with.
    let quiet: String = event_text("RUN-TEST-200", 200)
        .lines()
        .filter(|l| !l.starts_with("Message:"))
        .map(|l| format!("{l}\n"))
        .collect();
    put_entry(&queue, "modsec.log.1790000002.000001", &quiet);
    wait_for("the entry to be handled", || entries_in(&queue) == 0);
    tx.send(Control::Stop).unwrap();
    assert_eq!(running.join().unwrap(), Exit::Ok);
    let last = LastRun::read(&queue).unwrap().unwrap();
    assert_eq!((last.shipped, last.skipped), (1, 0), "{last:?}");
}

/// `drain --wait` waits for the lock by polling, not in a blocking `flock`: a SIGTERM
/// meanwhile ends it (before, it waited on until the holder let go).
#[test]
fn a_drain_waiting_for_the_queue_lock_stops_when_told() {
    let (_dir, settings) = queue_with(1);
    let queue = settings.queue_dir.clone();
    let held = QueueLock::acquire(&queue).unwrap().unwrap();
    let (tx, control) = unbounded();
    let running = std::thread::spawn(move || {
        let wait = DrainOptions {
            wait: true,
            ..DrainOptions::default()
        };
        drain(&settings, &wait, &control)
    });
    std::thread::sleep(Duration::from_millis(300));
    tx.send(Control::Stop).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while !running.is_finished() {
        assert!(
            Instant::now() < until,
            "drain --wait did not stop while waiting"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(running.join().unwrap(), Exit::Ok);
    assert_eq!(entries_in(&queue), 1, "nothing shipped");
    drop(held);
}

/// `run` started while another shipper holds the lock waits for it (it does not leave
/// the queue as `drain` does, nor ship past the lock), and a Stop ends the wait.
#[test]
fn a_daemon_waiting_for_the_queue_lock_stops_when_told() {
    let (_dir, settings) = queue_with(1);
    let queue = settings.queue_dir.clone();
    let held = QueueLock::acquire(&queue).unwrap().unwrap();
    let (tx, control) = unbounded();
    let (ended, end) = unbounded();
    let running = std::thread::spawn(move || {
        ended
            .send(daemon(settings, &control, || Err("unused".into())))
            .unwrap()
    });
    // Time to go wrong (leave the queue, or ship past the lock): on a slow machine a
    // wrong daemon may not have yet, so this can only pass a wrong one, never fail a
    // right one.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !running.is_finished(),
        "the daemon did not wait for the lock"
    );
    assert_eq!(entries_in(&queue), 1, "shipped without the lock");
    tx.send(Control::Stop).unwrap();
    let end = end
        .recv_timeout(Duration::from_secs(20))
        .expect("the daemon did not stop while waiting for the lock");
    assert_eq!(end, Exit::Ok);
    running.join().unwrap();
    // Still waiting when stopped: nothing shipped, no run recorded.
    assert_eq!(entries_in(&queue), 1);
    assert!(LastRun::read(&queue).unwrap().is_none());
    drop(held);
}
