//! `modsec-collector` in real Apache's pipe: every index line Apache writes reaches the
//! index file, and every event file is in the queue (same inode), in order — through a
//! graceful restart and a stop under load.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use modsec2sguil::state::BACKLOG_FILE;
use modsec2sguil_e2e::apache::{self, Apache, ApacheOptions};
use modsec2sguil_e2e::collector::{event_inode, lines, queue_entries, wait_for_collectors};
use modsec2sguil_e2e::{binary, skip_or_fail, state};

#[test]
fn every_line_apache_writes_is_indexed_and_queued_through_restarts() {
    if let Some(why) = apache::unavailable() {
        skip_or_fail("collector_in_apache", &why);
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let queue = work.path().join("queue");
    let index = work.path().join("index.log");
    let log = work.path().join("collector.log");
    let state_dir = state::dir(work.path());
    let collector = binary("modsec-collector");
    let conf = work.path().join("collector.conf");
    std::fs::write(
        &conf,
        format!(
            "set EVENT_DIR {}\nset VERIFY_MD5 1\nset LOG_FILE {}\n{}",
            queue.display(),
            log.display(),
            state::setting(work.path())
        ),
    )
    .unwrap();
    // Invoked as modsec_queue.pl was: -c CONF STORAGE_DIR INDEX_FILE.
    let pipe = format!(
        "{} -c {} STORAGE {}",
        collector.display(),
        conf.display(),
        index.display()
    );
    let apache = Apache::start_with(
        &ApacheOptions {
            audit_log2: true,
            ..ApacheOptions::default()
        },
        |root| pipe.replace("STORAGE", &root.join("audit").display().to_string()),
    );

    // Phase 1: one request at a time; queue order must be index order.
    let sqli = "/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--";
    for i in 0..10 {
        let reply = apache.get(i % 2 == 1, &format!("{sqli}&n={i}"), "");
        assert_eq!(reply.status, 403);
        std::thread::sleep(Duration::from_millis(5));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while lines(&index).len() < 10 {
        assert!(
            Instant::now() < deadline,
            "collector did not index 10 lines; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let first: Vec<u64> = lines(&index)
        .iter()
        .map(|l| event_inode(&apache.storage, l))
        .collect();
    let entries: Vec<u64> = queue_entries(&queue).into_values().collect();
    assert_eq!(
        entries, first,
        "queue order (by name) is arrival order, hard links to the event files"
    );

    // Phase 2: load from 4 clients; a graceful restart in the middle, then a stop while
    // requests are still coming.
    let apache_ref = Arc::new(apache);
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let a = apache_ref.clone();
            std::thread::spawn(move || {
                for i in 0..150 {
                    let target = if i % 3 == 0 {
                        "/index.html".to_string()
                    } else {
                        format!("/?q=<script>alert({c}{i})</script>")
                    };
                    a.get(i % 2 == 0, &target, "");
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    apache_ref.signal("-USR1");
    std::thread::sleep(Duration::from_millis(1500));
    apache_ref.signal("-TERM");
    for c in clients {
        let _ = c.join();
    }
    let mut apache = Arc::try_unwrap(apache_ref).ok().expect("clients are done");
    apache.stop();
    wait_for_collectors(&log);

    let truth = lines(&apache.index2());
    let got = lines(&index);
    assert!(
        truth.len() > 50,
        "the load produced only {} index lines",
        truth.len()
    );
    eprintln!(
        "{} index lines from Apache, {} in the collector's index file",
        truth.len(),
        got.len()
    );
    let mut truth_sorted = truth.clone();
    truth_sorted.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(
        got_sorted, truth_sorted,
        "the index file holds exactly the lines Apache wrote"
    );

    let queued: HashSet<u64> = queue_entries(&queue).into_values().collect();
    assert_eq!(queued.len(), truth.len(), "one queue entry per line");
    for line in &truth {
        assert!(
            queued.contains(&event_inode(&apache.storage, line)),
            "event of {} not queued",
            String::from_utf8_lossy(line)
        );
    }
    assert!(
        !state_dir.join(BACKLOG_FILE).exists(),
        "nothing went to the backlog: {}",
        state::backlog_text(&state_dir)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.matches(" started: ").count() >= 3,
        "boot (twice) and the graceful restart each start one:\n{text}"
    );
    assert!(
        text.contains("SIGTERM: finishing when Apache closes the pipe"),
        "{text}"
    );
}
