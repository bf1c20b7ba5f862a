//! Exactly once under SIGKILL: `drain` of 2,000 events to the test server, killed at 20
//! random moments and restarted each time; then every event is stored exactly once and
//! the queue is empty. Then the same with sguild restarted, its database going down,
//! replies delayed past the timeout, and the connection cut mid-window.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use modsec2sguil_e2e::sguild::TestSguild;
use modsec2sguil_e2e::shipper::{
    assert_each_stored_once, config, drain, drain_killed_mid_queue, entries_left, fill_queue,
    stored_unique_id, unique_id, Rng,
};

const EVENTS: usize = 2000;
const KILLS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Trouble {
    None,
    ServerRestarts,
    DatabaseDown,
    SlowReplies,
    ConnectionCut,
}

fn run(trouble: Trouble, seed: u64) {
    let mut server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let want: HashSet<String> = fill_queue(&queue, 1, EVENTS).into_iter().collect();
    let extra = "set SEND_WINDOW 32\nset REPLY_TIMEOUT 1\n";
    let mut conf = config(dir.path(), &queue, &server, extra);
    let mut rng = Rng(seed);
    eprintln!("{trouble:?}: seed {seed}");
    let started = Instant::now();
    for kill in 0..KILLS {
        match (trouble, kill % 4) {
            (Trouble::ServerRestarts, 2) => {
                server = server.restart();
                conf = config(dir.path(), &queue, &server, extra);
            }
            (Trouble::DatabaseDown, 1) => server.set(|f| f.db_down = true),
            (Trouble::DatabaseDown, 3) => {
                server.set(|f| f.db_down = false);
                server = server.restart();
                conf = config(dir.path(), &queue, &server, extra);
            }
            (Trouble::SlowReplies, 1) => {
                server.set(|f| f.event_delay = Some(Duration::from_millis(1200)))
            }
            (Trouble::SlowReplies, 2) => server.set(|f| f.event_delay = None),
            (Trouble::ConnectionCut, _) => {
                let n = 10 + rng.below(60) as usize;
                server.set(|f| f.close_after = Some(n));
            }
            _ => {}
        }
        drain_killed_mid_queue(&conf, &queue, kill, &mut rng);
        // Whatever sguild holds is still queued or on record as delivered (what
        // `requeue --failed` relies on to not send it again).
        let delivered = modsec2sguil::queue::delivered::delivered_ids(&queue).unwrap();
        let queued: HashSet<String> = entries_left(&queue)
            .iter()
            .filter_map(|e| e.rsplit('.').next()?.parse::<usize>().ok())
            .map(unique_id)
            .collect();
        for e in server.events() {
            let id = stored_unique_id(&e);
            assert!(
                delivered.contains(&id) || queued.contains(&id),
                "{trouble:?}: {id} is stored, gone from the queue and not on record"
            );
        }
    }
    let before_final = server.events().len();
    assert!(
        before_final > 0 && before_final < EVENTS,
        "{trouble:?}: the kills must land mid-queue ({before_final} of {EVENTS} stored before the last run)"
    );
    server.set(|f| *f = Default::default());
    if trouble == Trouble::DatabaseDown {
        server = server.restart();
        conf = config(dir.path(), &queue, &server, extra);
    }
    let mut last = String::new();
    for _ in 0..5 {
        let (code, err) = drain(&conf, &[]);
        last = err;
        if code == 0 {
            break;
        }
    }
    assert_each_stored_once(&server.events(), &want, &format!("{trouble:?}\n{last}"));
    assert!(
        entries_left(&queue).is_empty(),
        "{trouble:?}: queue left: {:?}",
        entries_left(&queue).len()
    );
    assert!(
        !Path::new(&queue.join("failed")).exists(),
        "nothing quarantined"
    );
    eprintln!(
        "{trouble:?}: {EVENTS} events, {KILLS} SIGKILLs, {before_final} stored before the last run, exactly once, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn sigkill_at_random_moments() {
    run(Trouble::None, 0x5eed_0001);
}

#[test]
fn sigkill_with_sguild_restarts() {
    run(Trouble::ServerRestarts, 0x5eed_0002);
}

#[test]
fn sigkill_with_the_database_going_down() {
    run(Trouble::DatabaseDown, 0x5eed_0003);
}

#[test]
fn sigkill_with_replies_delayed_past_the_timeout() {
    run(Trouble::SlowReplies, 0x5eed_0004);
}

#[test]
fn sigkill_with_the_connection_cut_mid_window() {
    run(Trouble::ConnectionCut, 0x5eed_0005);
}
