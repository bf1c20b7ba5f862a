//! Soak with faults: real Apache + ModSecurity under load (loopback, bounded rate and
//! duration) with `modsec-collector` in its pipe, the queue on a small tmpfs, and
//! `modsec-shipper run` shipping to the sguild test server, while a fault driver injects
//! at random: shipper SIGKILL and restart, sguild restart, database down for 30 s,
//! replies delayed past the timeout, connection cuts, Apache graceful restarts, the
//! queue filesystem full for a while, and (once) a burst of 10,000 requests.
//!
//! Afterwards, as an operator would: `requeue --backlog`, then `requeue --index` for
//! what neither reached the queue nor the backlog (the queue's filesystem was full), and
//! a final drain. Then every index line Apache wrote (its own SecAuditLog2 copy) is
//! reconciled: exactly one stored event, a non-alert skip, a quarantined entry with a
//! reason, or a backlog line with a reason. Nothing missing, nothing stored twice.
//!
//! On demand (it is not part of `cargo test`; needs root for the tmpfs):
//!
//!     SOAK_SECONDS=600 cargo test -p modsec2sguil-e2e --test soak -- --ignored --nocapture
//!
//! SOAK_RATE sets the steady request rate (default 40/s).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use modsec2sguil::index::parse_index_line;
use modsec2sguil_e2e::apache::{self, Apache, ApacheOptions};
use modsec2sguil_e2e::sguild::TestSguild;
use modsec2sguil_e2e::shipper::{shipper, stored_unique_id, Rng};
use modsec2sguil_e2e::{binary, skip_or_fail, state, Tmpfs};

/// The shipper daemon, killed when dropped.
struct Daemon {
    child: Option<Child>,
    conf: PathBuf,
}

impl Daemon {
    fn start(conf: &Path) -> Daemon {
        let mut d = Daemon {
            child: None,
            conf: conf.to_path_buf(),
        };
        d.spawn();
        d
    }
    fn spawn(&mut self) {
        self.child = Some(
            Command::new(binary("modsec-shipper"))
                .args(["run", "-c", self.conf.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    fn term(&mut self) {
        if let Some(mut c) = self.child.take() {
            modsec2sguil_e2e::process::signal(c.id(), "TERM");
            modsec2sguil_e2e::process::wait_exit(&mut c, Duration::from_secs(30));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the load sends, and what ModSecurity makes of it.
const ATTACKS: &[&str] = &[
    "/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--",
    "/?q=%3Cscript%3Ealert(1)%3C/script%3E",
    "/?file=../../../../etc/passwd",
    "/?cmd=%3Bcat%20/etc/shadow",
];

fn one_request(apache: &Apache, n: u64, sent: &AtomicU64) {
    let v6 = matches!(n % 5, 0);
    let target = match n % 10 {
        0..=5 => ATTACKS[(n / 10 % ATTACKS.len() as u64) as usize].to_string(),
        6 | 7 => format!("/missing-{n}"), // 404: logged, not an alert
        _ => "/".to_string(),             // 200: not logged (RelevantOnly)
    };
    let _ = std::panic::catch_unwind(|| apache.get(v6, &target, ""));
    sent.fetch_add(1, Ordering::Relaxed);
}

fn count_entries(queue: &Path) -> usize {
    std::fs::read_dir(queue)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("modsec.log."))
                .count()
        })
        .unwrap_or(0)
}

#[test]
#[ignore = "a soak of minutes: run on demand (see the file's header)"]
fn soak_with_faults() {
    if let Some(why) = apache::unavailable() {
        skip_or_fail("soak", &why);
        return;
    }
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let rate: u64 = std::env::var("SOAK_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let work = tempfile::tempdir().unwrap();
    let qfs = work.path().join("qfs");
    let Some(_tmpfs) = Tmpfs::mount(&qfs, "48m", "soak") else {
        return;
    };
    let queue = qfs.join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    let collector_conf = work.path().join("collector.conf");
    let collector_log = work.path().join("collector.log");
    // The collector's state (spool, backlog) is off the queue's small filesystem.
    let state_dir = state::dir(work.path());
    std::fs::write(
        &collector_conf,
        format!(
            "set EVENT_DIR {}\nset LOG_FILE {}\n{}",
            queue.display(),
            collector_log.display(),
            state::setting(work.path())
        ),
    )
    .unwrap();
    let index = work.path().join("index.log");
    let pipe = format!(
        "{} -c {} STORAGE {}",
        binary("modsec-collector").display(),
        collector_conf.display(),
        index.display()
    );
    let opts = ApacheOptions {
        audit_log2: true,
        ..ApacheOptions::default()
    };
    let apache = Arc::new(Apache::start_with(&opts, |root| {
        pipe.replace("STORAGE", &root.join("audit").display().to_string())
    }));
    let storage = apache.storage.clone();

    let store_dir = tempfile::tempdir().unwrap();
    let server = TestSguild::start_at(store_dir, 0);
    let port = server.addr.port();
    let server = Arc::new(Mutex::new(Some(server)));
    let shipper_log = work.path().join("shipper.log");
    let conf = work.path().join("shipper.conf");
    let cert = server.lock().unwrap().as_ref().unwrap().cert_pem.clone();
    std::fs::write(
        &conf,
        format!(
            "set EVENT_DIR {}\nset STORAGE_DIR {}\nset SERVER_HOST 127.0.0.1\nset SERVER_PORT {port}\n\
             set HOSTNAME websrv\nset NET_GROUP webfarm\nset TLS_CA_FILE {}\nset SEND_WINDOW 8\n\
             set REPLY_TIMEOUT 2\nset PING_DELAY 5000\nset SHIPPER_LOG_FILE {}\n{}",
            queue.display(),
            storage.display(),
            cert.display(),
            shipper_log.display(),
            state::setting(work.path())
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&conf);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let max_depth = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);

    // Steady load at `rate` requests/s.
    let load = {
        let (apache, stop, sent) = (apache.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                one_request(&apache, n, &sent);
                n += 1;
                let due = t0 + Duration::from_secs_f64(n as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };
    // Queue depth, every second.
    let sampler = {
        let (stop, max_depth, queue) = (stop.clone(), max_depth.clone(), queue.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                max_depth.fetch_max(count_entries(&queue), Ordering::Relaxed);
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };

    // The fault driver.
    let mut faults: BTreeMap<&str, u32> = BTreeMap::new();
    let mut rng = Rng(0x50a4_0001 ^ seconds);
    let mut burst_done = false;
    let restart_server = |server: &Mutex<Option<TestSguild>>| {
        let mut g = server.lock().unwrap();
        let s = g.take().unwrap();
        *g = Some(s.restart_on(port));
    };
    let set = |server: &Mutex<Option<TestSguild>>,
               f: &dyn Fn(&mut modsec2sguil_e2e::sguild::Faults)| {
        let g = server.lock().unwrap();
        g.as_ref().unwrap().set(|x| f(x));
    };
    while Instant::now() + Duration::from_secs(40) < until {
        std::thread::sleep(Duration::from_secs(5 + rng.below(15)));
        let kind = if !burst_done && Instant::now() > started + Duration::from_secs(seconds / 3) {
            7
        } else {
            rng.below(7)
        };
        match kind {
            0 => {
                daemon.kill();
                std::thread::sleep(Duration::from_millis(rng.below(2000)));
                daemon.spawn();
                *faults.entry("shipper SIGKILL + restart").or_default() += 1;
            }
            1 => {
                restart_server(&server);
                *faults.entry("sguild restart").or_default() += 1;
            }
            2 => {
                set(&server, &|f| f.db_down = true);
                std::thread::sleep(Duration::from_secs(30));
                set(&server, &|f| f.db_down = false);
                restart_server(&server); // sguild never reconnects to its database
                *faults.entry("database down 30 s").or_default() += 1;
            }
            3 => {
                set(&server, &|f| {
                    f.event_delay = Some(Duration::from_millis(2500))
                });
                std::thread::sleep(Duration::from_secs(10));
                set(&server, &|f| f.event_delay = None);
                *faults
                    .entry("replies delayed past the timeout, 10 s")
                    .or_default() += 1;
            }
            4 => {
                let n = 3 + rng.below(40) as usize;
                set(&server, &|f| f.close_after = Some(n));
                std::thread::sleep(Duration::from_secs(10));
                set(&server, &|f| f.close_after = None);
                *faults
                    .entry("connections cut mid-window, 10 s")
                    .or_default() += 1;
            }
            5 => {
                apache.signal("-USR1");
                *faults.entry("Apache graceful restart").or_default() += 1;
            }
            6 => {
                // Fill the queue's filesystem, hold it full, free it.
                let ballast = qfs.join("ballast");
                let _ = Command::new("dd")
                    .args(["if=/dev/zero", "bs=1M", "count=64"])
                    .arg(format!("of={}", ballast.display()))
                    .stderr(Stdio::null())
                    .status();
                std::thread::sleep(Duration::from_secs(15));
                let _ = std::fs::remove_file(&ballast);
                *faults.entry("queue filesystem full, 15 s").or_default() += 1;
            }
            _ => {
                burst_done = true;
                let next = Arc::new(AtomicU64::new(1_000_000));
                let workers: Vec<_> = (0..8)
                    .map(|_| {
                        let (apache, sent, next) = (apache.clone(), sent.clone(), next.clone());
                        std::thread::spawn(move || loop {
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            if n >= 1_010_000 {
                                break;
                            }
                            one_request(&apache, n, &sent);
                        })
                    })
                    .collect();
                for w in workers {
                    w.join().unwrap();
                }
                *faults.entry("burst of 10,000 requests").or_default() += 1;
            }
        }
    }
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    sampler.join().unwrap();
    set(&server, &|f| *f = Default::default());
    let load_secs = started.elapsed().as_secs_f64();

    // Let the daemon catch up, then recover as an operator would.
    let drained = |limit: Duration| {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if count_entries(&queue) == 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        false
    };
    let tail = |path: &Path| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    let stuck = |what: &str, daemon: &mut Daemon| -> String {
        let exited = daemon
            .child
            .as_mut()
            .map(|c| c.try_wait().ok().flatten().map(|s| s.to_string()));
        format!(
            "{what}: {} entries left; shipper exited: {:?} (Some(None) = running)\n--- shipper log ---\n{}\n--- collector log ---\n{}",
            count_entries(&queue),
            exited,
            tail(&shipper_log),
            tail(&collector_log)
        )
    };
    assert!(
        drained(Duration::from_secs(300)),
        "{}",
        stuck("the queue did not drain", &mut daemon)
    );
    let recovery_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let backlog_before = work.path().join("backlog.before-requeue");
    let _ = std::fs::copy(
        state_dir.join(modsec2sguil::state::BACKLOG_FILE),
        &backlog_before,
    );
    let conf_s = conf.to_str().unwrap();
    let backlog = shipper(&["requeue", "-c", conf_s, "--backlog"]);
    let by_index = shipper(&["requeue", "-c", conf_s, "--index", index.to_str().unwrap()]);
    let recovery = format!(
        "requeue --backlog: {}\nrequeue --index: {}",
        String::from_utf8_lossy(&backlog.stderr).trim(),
        String::from_utf8_lossy(&by_index.stderr).trim()
    );
    assert!(
        drained(Duration::from_secs(300)),
        "{}",
        stuck("the queue did not drain after requeue", &mut daemon)
    );
    std::thread::sleep(Duration::from_secs(3));
    daemon.term();
    let mut apache = Arc::try_unwrap(apache)
        .ok()
        .expect("the load threads are done");
    apache.stop();
    let truth = std::fs::read(apache.index2()).unwrap_or_default();
    drop(apache);

    // Reconcile every line Apache wrote.
    let stored = server.lock().unwrap().as_ref().unwrap().events();
    let mut by_id: HashMap<String, Vec<f64>> = HashMap::new();
    for e in &stored {
        by_id
            .entry(stored_unique_id(e))
            .or_default()
            .push(e.stored_at);
    }
    let failed_dir = queue.join("failed");
    let failed: Vec<String> = std::fs::read_dir(&failed_dir)
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| p.extension() != Some(std::ffi::OsStr::new("reason")))
                .map(|p| std::fs::read_to_string(&p).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    let backlog_text = state::backlog_text(&state_dir);
    let mut table: BTreeMap<&str, usize> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut problems = Vec::new();
    let lines: Vec<&[u8]> = truth
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    for raw in &lines {
        let Ok(line) = parse_index_line(raw) else {
            problems.push(format!(
                "unparsable index line: {}",
                String::from_utf8_lossy(raw)
            ));
            continue;
        };
        let id = line.unique_id.clone();
        match by_id.get(&id).map(Vec::len) {
            Some(1) if by_id[&id][0] >= recovery_at => {
                *table
                    .entry("stored once (after requeue by the operator)")
                    .or_default() += 1;
            }
            Some(1) => {
                *table.entry("stored once").or_default() += 1;
                let written = line.time.timestamp_micros() as f64 / 1e6;
                latencies.push(by_id[&id][0] - written);
            }
            Some(n) => {
                *table.entry("STORED MORE THAN ONCE").or_default() += 1;
                // Everything that says where this one went, for the report.
                let grep = |path: &Path| -> Vec<String> {
                    std::fs::read_to_string(path)
                        .unwrap_or_default()
                        .lines()
                        .filter(|l| l.contains(&id))
                        .take(10)
                        .map(|l| l.chars().take(300).collect())
                        .collect()
                };
                let copies: Vec<String> = stored
                    .iter()
                    .filter(|e| stored_unique_id(e) == id)
                    .map(|e| format!("sid {} cid {} at {:.3}", e.sid, e.cid, e.stored_at))
                    .collect();
                problems.push(format!(
                    "{id} stored {n} times ({}; operator requeue began at {recovery_at:.3})\n  delivered log: {:?}\n  backlog: {:?}\n  collector log: {:?}\n  shipper log: {:?}",
                    copies.join(", "),
                    grep(&queue.join(".delivered")),
                    grep(&backlog_before),
                    grep(&collector_log),
                    grep(&shipper_log),
                ));
            }
            None if line.status == 404 => {
                *table.entry("skipped (404: not an alert)").or_default() += 1
            }
            None if failed.iter().any(|f| f.contains(&id)) => {
                *table.entry("quarantined with a reason").or_default() += 1
            }
            None if backlog_text.contains(&id) => {
                *table.entry("in the backlog with a reason").or_default() += 1
            }
            None => {
                *table.entry("MISSING").or_default() += 1;
                problems.push(format!("{id} (status {}) is nowhere", line.status));
            }
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    eprintln!(
        "\n=== soak: {load_secs:.0} s of load, {} requests sent ===",
        sent.load(Ordering::Relaxed)
    );
    eprintln!("index lines written by Apache: {}", lines.len());
    for (k, v) in &table {
        eprintln!("  {v:>7}  {k}");
    }
    eprintln!("events stored: {}", stored.len());
    eprintln!("faults injected:");
    for (k, v) in &faults {
        eprintln!("  {v:>3} × {k}");
    }
    eprintln!("max queue depth: {}", max_depth.load(Ordering::Relaxed));
    eprintln!(
        "latency Apache write → stored (not counting the operator's requeue): p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    eprintln!("{recovery}");
    // Why the collector backlogged what the operator requeued (reason, lines).
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (reason, _) in state::backlog_records(&backlog_before) {
        *reasons.entry(reason).or_default() += 1;
    }
    for (reason, n) in &reasons {
        eprintln!("  backlogged {n:>6} × {reason}");
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(!faults.is_empty());
}
