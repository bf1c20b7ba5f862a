//! Real-time latency, end to end: real Apache + ModSecurity with `modsec-collector` in
//! its pipe, `modsec-shipper run` (the daemon), and the real sguild with its MariaDB
//! (`tests/support/run-sguild.sh`, from SGUIL_SRC). Blocked requests are sent at
//! LATENCY_RATE a second (20); for each, the time from the moment the collector linked
//! its entry into the queue to the moment its row is in sguild's `event` table. Prints
//! p50, p95, p99 and max (`cargo bench -p modsec2sguil-e2e --bench latency`).
//!
//! - Linked: the entry's name, `modsec.log.<sec>.<usec>`, is the collector's clock read
//!   just before its `link()` (µs).
//! - Stored: one `mariadb` client kept open polls `SELECT MAX(cid) FROM event` about
//!   every millisecond; sguild stores an agent's events in cid order, so the first poll
//!   that sees a cid at or above an event's marks it stored. The error of this method is
//!   one poll (measured and printed: the mean and the largest gap between polls), ≪ the
//!   20 ms goal.
//! - Which cid is which entry: the shipper's delivered log (`.delivered`).
//!
//! The first WARMUP events (sguild makes the day's tables, the sensor's rows) are not
//! counted. Needs root, apache2, libapache2-mod-security2, modsecurity-crs, SGUIL_SRC
//! and what run-sguild.sh needs; without them it says what is missing (through
//! `skip_or_fail`: a failure under `MODSEC2SGUIL_REQUIRE_ALL=1`) and exits 0.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use modsec2sguil::queue::delivered::read_delivered;
use modsec2sguil::queue::latency::LatencyRecord;
use modsec2sguil::queue::EntryName;
use modsec2sguil_e2e::apache;
use modsec2sguil_e2e::process::{signal, wait_exit};
use modsec2sguil_e2e::real_sguild::{RealSguild, DB_PASS, DB_USER};
use modsec2sguil_e2e::shipper::{entries_left, Daemon};
use modsec2sguil_e2e::skip_or_fail;

const WARMUP: usize = 10;

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// When each cid was first seen stored (µs since the epoch), from polling MAX(cid).
struct Poller {
    /// (max cid seen, at) each time it grew.
    seen: Arc<Mutex<Vec<(u32, u64)>>>,
    stop: Arc<AtomicBool>,
    polls: Arc<AtomicU64>,
    worst_gap_us: Arc<AtomicU64>,
    started: Instant,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(sguild: &RealSguild) -> Poller {
        let mut client = Command::new("mariadb")
            .args(["--protocol=tcp", "-h127.0.0.1"])
            .arg(format!("-P{}", sguild.db_port))
            .arg(format!("-u{DB_USER}"))
            .arg(format!("-p{DB_PASS}"))
            .args(["-N", "-B", "-n", "sguildb"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mariadb client");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicU64::new(0));
        let worst_gap_us = Arc::new(AtomicU64::new(0));
        let (s, st, p, w) = (
            seen.clone(),
            stop.clone(),
            polls.clone(),
            worst_gap_us.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut input = client.stdin.take().unwrap();
            let mut output = BufReader::new(client.stdout.take().unwrap());
            let mut max = 0u32;
            let mut last_poll = micros_now();
            let mut line = String::new();
            while !st.load(Ordering::Relaxed) {
                input.write_all(b"SELECT MAX(cid) FROM event;\n").unwrap();
                line.clear();
                if output.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                let at = micros_now();
                let cid: u32 = line.trim().parse().unwrap_or(0);
                p.fetch_add(1, Ordering::Relaxed);
                w.fetch_max(at - last_poll, Ordering::Relaxed);
                last_poll = at;
                if cid > max {
                    max = cid;
                    s.lock().unwrap().push((cid, at));
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            drop(input);
            let _ = client.wait();
        });
        Poller {
            seen,
            stop,
            polls,
            worst_gap_us,
            started: Instant::now(),
            thread: Some(thread),
        }
    }

    fn max_cid(&self) -> u32 {
        self.seen.lock().unwrap().last().map_or(0, |s| s.0)
    }

    /// When `cid` was first seen stored.
    fn stored_at(&self, cid: u32) -> Option<u64> {
        let seen = self.seen.lock().unwrap();
        seen.iter().find(|(c, _)| *c >= cid).map(|(_, at)| *at)
    }

    fn finish(&mut self) -> (u64, f64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let polls = self.polls.load(Ordering::Relaxed);
        let mean_gap_ms = self.started.elapsed().as_secs_f64() * 1000.0 / polls.max(1) as f64;
        (
            polls,
            mean_gap_ms,
            self.worst_gap_us.load(Ordering::Relaxed),
        )
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    if let Some(why) = apache::unavailable() {
        skip_or_fail("latency", &why);
        return;
    }
    let Some(sguild) = RealSguild::start("latency") else {
        return;
    };
    let rate = env_or("LATENCY_RATE", 20).max(1);
    let n = env_or("LATENCY_EVENTS", 400);
    let work = tempfile::tempdir().unwrap();
    let queue = work.path().join("queue");
    let apache = apache::with_collector(work.path(), &queue);
    let log = work.path().join("shipper.log");
    let conf = work.path().join("shipper.conf");
    std::fs::write(
        &conf,
        format!(
            "set EVENT_DIR {}\nset SERVER_HOST 127.0.0.1\nset SERVER_PORT {}\n\
             set TLS_CA_FILE {}\nset HOSTNAME m2s-latency\nset NET_GROUP m2s-test\n\
             set LOG_FILE {}\n",
            queue.display(),
            sguild.port,
            sguild.cert.display(),
            log.display()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&conf);
    let send = |i: usize| {
        let r = apache.get(
            false,
            &format!("/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--&n={i}"),
            "",
        );
        assert_eq!(r.status, 403, "request {i}");
    };
    for i in 0..WARMUP {
        send(i);
    }
    // sguild makes the `event` table with the first event: the poller starts once the
    // warm-up is confirmed (the delivered log), then checks that it sees it too.
    let deadline = Instant::now() + Duration::from_secs(120);
    while read_delivered(&queue).map_or(0, |d| d.len()) < WARMUP {
        assert!(
            Instant::now() < deadline,
            "warm-up not delivered; shipper log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut poller = Poller::start(&sguild);
    let wait_stored = |cids: u32, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while poller.max_cid() < cids {
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {cids} stored; queued {}; shipper log:\n{}",
                poller.max_cid(),
                entries_left(&queue).len(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_stored(WARMUP as u32, "warm-up");
    // At `rate` a second, on a schedule (a slow request does not slow the rest).
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    for i in 0..n {
        let due = start + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        send(WARMUP + i);
    }
    let sent_in = start.elapsed().as_secs_f64();
    wait_stored((WARMUP + n) as u32, "the run");
    std::thread::sleep(Duration::from_millis(50));
    let (polls, mean_gap_ms, worst_gap_us) = poller.finish();
    signal(daemon.0.id(), "TERM");
    let _ = wait_exit(&mut daemon.0, Duration::from_secs(10));

    let delivered = read_delivered(&queue).expect("the delivered log");
    let by_cid: HashMap<u32, String> = delivered.into_iter().map(|d| (d.cid, d.entry)).collect();
    let mut ms: Vec<f64> = Vec::new();
    for cid in (WARMUP as u32 + 1)..=((WARMUP + n) as u32) {
        let entry = by_cid
            .get(&cid)
            .unwrap_or_else(|| panic!("cid {cid} not in the delivered log"));
        let name = EntryName::parse(entry).expect("an entry name");
        let linked = name.sec * 1_000_000 + u64::from(name.usec);
        let stored = poller.stored_at(cid).expect("seen stored");
        ms.push(stored.saturating_sub(linked) as f64 / 1000.0);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "latency: {n} alerts at {rate}/s (sent in {sent_in:.1} s) through Apache + ModSecurity, \
         modsec-collector, modsec-shipper run, the real sguild; entry linked -> row in \
         sguild's event table:"
    );
    println!(
        "latency: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms (min {:.1} ms)",
        percentile(&ms, 50.0),
        percentile(&ms, 95.0),
        percentile(&ms, 99.0),
        ms[ms.len() - 1],
        ms[0]
    );
    println!(
        "latency: the DB was polled {polls} times, every {mean_gap_ms:.2} ms on average, \
         {:.1} ms at most (the method's error)",
        worst_gap_us as f64 / 1000.0
    );
    // The daemon's own view (link -> sguild's ConfirmEvent), as status --prometheus
    // reports it.
    if let Ok(Some(r)) = LatencyRecord::read(&queue) {
        let h = &r.histogram;
        let mut cumulative = 0;
        let mut buckets = Vec::new();
        for (b, c) in h.buckets_us.iter().zip(&h.counts) {
            cumulative += c;
            buckets.push(format!("<={} ms: {cumulative}", b / 1000));
            if cumulative == h.count {
                break;
            }
        }
        println!(
            "latency: the daemon's histogram (link -> ConfirmEvent, {} events, mean {:.1} ms): {}",
            h.count,
            h.sum_us as f64 / 1000.0 / h.count.max(1) as f64,
            buckets.join(", ")
        );
    }
    drop(apache);
    drop(sguild);
}
