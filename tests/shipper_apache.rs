//! Real Apache + ModSecurity → `modsec-collector` → queue → `modsec-shipper drain` → the
//! sguild test server: every blocked request arrives exactly once, with the rule that
//! blocked it, its addresses and ports, and its time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};
use modsec2sguil_e2e::apache;
use modsec2sguil_e2e::sguild::TestSguild;
use modsec2sguil_e2e::shipper::{config, drain, entries_left, stored_unique_id};
use modsec2sguil_e2e::skip_or_fail;

#[test]
fn blocked_requests_arrive_in_sguil_once_with_rule_addresses_ports_and_time() {
    if let Some(why) = apache::unavailable() {
        skip_or_fail("shipper_apache", &why);
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let queue = work.path().join("queue");
    let log = work.path().join("collector.log");
    let apache = apache::with_collector(work.path(), &queue);

    let before = Utc::now().naive_utc() - chrono::Duration::seconds(1);
    // (target, v6, POST body, the rule Sguil must name)
    let cases: &[(&str, bool, Option<&str>, u32)] = &[
        (
            "/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--",
            false,
            None,
            942100,
        ),
        (
            "/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--",
            true,
            None,
            942100,
        ),
        ("/?q=%3Cscript%3Ealert(1)%3C/script%3E", false, None, 941100),
        ("/wp-login.php", false, None, 100001),
        ("/wp-login.php", true, None, 100001),
        ("/cgi-bin/echo.cgi", false, Some("comment=evil"), 100003),
    ];
    let mut expected: HashMap<String, (u32, bool)> = HashMap::new();
    for (target, v6, body, rule) in cases {
        for _ in 0..3 {
            let reply = match body {
                Some(b) => apache.post(
                    *v6,
                    target,
                    "application/x-www-form-urlencoded",
                    b.as_bytes(),
                ),
                None => apache.get(*v6, target, ""),
            };
            // Each is denied with 403: custom-rules.conf's `deny,status:403` (100001,
            // 100003) and CRS's anomaly-score block (949110), as requests.tsv recorded.
            assert_eq!(reply.status, 403, "{target}");
            expected.insert(reply.unique_id.clone().expect("X-Unique-ID"), (*rule, *v6));
        }
    }
    // Benign requests are not logged (RelevantOnly) and must not show up.
    for _ in 0..5 {
        assert_eq!(apache.get(false, "/index.html", "").status, 200);
    }
    let after = Utc::now().naive_utc() + chrono::Duration::seconds(1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while entries_left(&queue).len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} queued; collector log:\n{}",
            entries_left(&queue).len(),
            expected.len(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let server = TestSguild::start();
    let conf = config(work.path(), &queue, &server, "");
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(entries_left(&queue).is_empty());
    let stored = server.events();
    assert_eq!(stored.len(), expected.len(), "{err}");
    for e in &stored {
        let id = stored_unique_id(e);
        let (rule, v6) = expected
            .remove(&id)
            .unwrap_or_else(|| panic!("{id}: not a blocked request, or stored twice"));
        assert_eq!(e.sig_id, rule.to_string(), "{id}");
        let addr = if v6 { "" } else { "127.0.0.1" };
        assert_eq!((e.src_ip.as_str(), e.dst_ip.as_str()), (addr, addr), "{id}");
        assert_eq!(e.dst_port, u32::from(apache.port), "{id}");
        assert!(
            e.src_port > 1024,
            "{id}: ephemeral client port, got {}",
            e.src_port
        );
        let t = NaiveDateTime::parse_from_str(&e.timestamp, "%Y-%m-%d %H:%M:%S").unwrap();
        assert!(
            before <= t && t <= after,
            "{id}: {t} not within the test's UTC time"
        );
        let msg = String::from_utf8_lossy(&e.message).into_owned();
        assert!(msg.starts_with("MSc 403 "), "{msg}");
        if v6 {
            let detail = String::from_utf8_lossy(
                &modsec2sguil::hex::decode(e.detail_hex.as_bytes()).unwrap(),
            )
            .into_owned();
            // The addresses Sguil cannot store are in the (default, HTML) detail.
            assert!(
                detail.contains("<b>Client -&gt; server:</b> [::1]:"),
                "{detail}"
            );
            assert!(detail.contains("Sguil stores only IPv4"), "{detail}");
        }
    }
    assert!(expected.is_empty(), "never stored: {expected:?}");
}

/// Real Apache + ModSecurity → `modsec-collector` → queue → `modsec-shipper run` (the
/// daemon) → the sguild test server, with the poll set to 30 s: each blocked request
/// is stored well before a poll could have found its entry, so the daemon woke on the
/// link (inotify). The figures are the latency benchmark's (tests/benches/latency.rs);
/// this only shows that no entry waits for the poll. Then `status --prometheus` reports
/// what the daemon shipped and measured.
#[test]
fn the_daemon_wakes_on_each_entry_the_collector_links_instead_of_waiting_for_the_poll() {
    use modsec2sguil_e2e::binary;
    use modsec2sguil_e2e::process::{signal, wait_exit};
    use modsec2sguil_e2e::shipper::Daemon;
    use std::process::Command;

    if let Some(why) = apache::unavailable() {
        skip_or_fail("shipper_apache wake-up", &why);
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let queue = work.path().join("queue");
    let apache = apache::with_collector(work.path(), &queue);
    let server = TestSguild::start();
    let log = work.path().join("shipper.log");
    let conf = config(
        work.path(),
        &queue,
        &server,
        &format!("set POLL_INTERVAL 30\nset LOG_FILE {}\n", log.display()),
    );
    let mut daemon = Daemon::start(&conf);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    // Well under the 30 s poll, generous for a loaded machine.
    let bound = Duration::from_secs(10);
    let n = 3;
    for i in 1..=n {
        let reply = apache.get(
            false,
            &format!("/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--&n={i}"),
            "",
        );
        assert_eq!(reply.status, 403);
        let id = reply.unique_id.expect("X-Unique-ID");
        let asked = Instant::now();
        while !server.events().iter().any(|e| stored_unique_id(e) == id) {
            assert!(
                asked.elapsed() < bound,
                "request {i} ({id}) not stored within {bound:?} of its reply, with a 30 s poll: \
                 the daemon did not wake on its entry; queued {:?}; shipper log:\n{}",
                entries_left(&queue),
                log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Apart, so that each entry finds the daemon idle in its wait.
        std::thread::sleep(Duration::from_millis(300));
    }
    signal(daemon.0.id(), "TERM");
    assert_eq!(wait_exit(&mut daemon.0, Duration::from_secs(10)), Some(0));
    let text = log_text();
    assert!(
        text.contains("wake the shipper (inotify)") && text.contains("every 30 s"),
        "{text}"
    );
    assert_eq!(server.events().len(), n);
    // What the daemon recorded, as Prometheus gets it.
    let out = Command::new(binary("modsec-shipper"))
        .args(["status", "-c", conf.to_str().unwrap(), "--prometheus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let metrics = String::from_utf8(out.stdout).unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert_eq!(value("modsec2sguil_shipped_total"), n as f64, "{metrics}");
    assert_eq!(value("modsec2sguil_queue_entries"), 0.0, "{metrics}");
    assert_eq!(
        value("modsec2sguil_delivery_latency_seconds_count"),
        n as f64,
        "{metrics}"
    );
}
