//! `modsec-shipper drain` throughput (`cargo bench -p modsec2sguil-e2e --bench drain`):
//! 10,000 and 100,000 queued real-sized events (a 3.8 KB CRS-blocked request each) to
//! the test server over TLS, with the shipper's peak RSS; the time of a cron run on an
//! empty queue; and, when SGUILD_ADDR (host:port) and SGUILD_CA are set, `drain` to a
//! real sguild next to a bare client sending the same number of prebuilt events
//! (rounds of SGUILD_BENCH_EVENTS, default 1,000, SGUILD_BENCH_ROUNDS times, default 4,
//! at SGUILD_BENCH_WINDOW, default 1; SGUILD_BENCH_ONLY skips the test-server part).
//!
//! BENCH_DIR puts the queues on a chosen filesystem (default: the system temp dir).
//! The test server runs in this process; its store goes to TMPDIR.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use modsec2sguil::alert::{map_event, AlertSettings};
use modsec2sguil::auditlog::{read_event_file, ParseLimits};
use modsec2sguil::sguil::client::{AgentSession, Answer};
use modsec2sguil::sguil::conn::{ConnectSettings, Connection, TlsMode};
use modsec2sguil::sguil::wire::SguilEvent;
use modsec2sguil_e2e::binary;
use modsec2sguil_e2e::sguild::TestSguild;
use modsec2sguil_e2e::shipper::{drain_summary, fill_queue};

fn work_dir() -> tempfile::TempDir {
    match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// Runs `drain`; returns (seconds, events/s from the summary, peak RSS in KiB).
fn drain(conf: &Path) -> (f64, String, u64) {
    let start = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kib=%M"])
        .arg(binary("modsec-shipper"))
        .args(["drain", "-c", conf.to_str().unwrap()])
        .output()
        .expect("run /usr/bin/time modsec-shipper (apt-get install time)");
    let secs = start.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let summary = drain_summary(&err);
    let rss = err
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (secs, summary, rss)
}

/// A work dir with a queue of `n` events and a config for it (plus `extra`).
fn queued(n: usize, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = work_dir();
    let queue = dir.path().join("queue");
    fill_queue(&queue, 1, n);
    let conf = conf_for(dir.path(), &queue, extra);
    (dir, conf)
}

fn conf_for(dir: &Path, queue: &Path, extra: &str) -> PathBuf {
    let p = dir.join("bench.conf");
    std::fs::write(
        &p,
        format!(
            "set EVENT_DIR {}\nset HOSTNAME bench-{}\nset NET_GROUP bench\n{extra}",
            queue.display(),
            std::process::id()
        ),
    )
    .unwrap();
    p
}

fn main() {
    // Build (or find) the release binary before anything is timed.
    binary("modsec-shipper");
    if std::env::var_os("SGUILD_BENCH_ONLY").is_some() {
        return real_sguild_from_env();
    }
    for (n, window) in [(10_000usize, 1), (10_000, 32), (100_000, 32)] {
        let server = TestSguild::start();
        let (_dir, conf) = queued(
            n,
            &format!(
                "set SERVER_HOST 127.0.0.1\nset SERVER_PORT {}\nset TLS_CA_FILE {}\nset SEND_WINDOW {window}\n",
                server.addr.port(),
                server.cert_pem.display()
            ),
        );
        let (secs, summary, rss) = drain(&conf);
        assert_eq!(server.events().len(), n);
        println!(
            "drain {n:>7} events -> test server (TLS, window {window:>2}): {:>6.0} events/s, {secs:.2} s wall, peak RSS {:.1} MiB  [{summary}]",
            n as f64 / secs,
            rss as f64 / 1024.0
        );
    }

    // A cron run with nothing to do: no connection is made.
    let dir = work_dir();
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    let conf = conf_for(
        dir.path(),
        &queue,
        "set SERVER_HOST 127.0.0.1\nset TLS_VERIFY 0\n",
    );
    let mut times: Vec<f64> = (0..21)
        .map(|_| {
            let t = Instant::now();
            let st = Command::new(binary("modsec-shipper"))
                .args(["drain", "-c", conf.to_str().unwrap()])
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(st.success());
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "drain of an empty queue: median {:.1} ms, max {:.1} ms (21 runs)",
        times[10], times[20]
    );

    real_sguild_from_env();
}

fn real_sguild_from_env() {
    if let (Ok(addr), Ok(ca)) = (std::env::var("SGUILD_ADDR"), std::env::var("SGUILD_CA")) {
        real_sguild(&addr, &ca);
    }
}

/// `drain` against a real sguild next to a bare client: each round drains N events
/// (timed from process start to exit: connection, registration, reading, parsing,
/// journaling, removal) and has the bare client send N prebuilt events (timed from its
/// connection, registration included, to its last answer) at the same window; the order alternates between
/// rounds, so that sguild's tables growing during the run weigh on both alike.
fn real_sguild(addr: &str, ca: &str) {
    let (host, port) = addr.rsplit_once(':').expect("SGUILD_ADDR is host:port");
    let n: usize = env_or("SGUILD_BENCH_EVENTS", 1000);
    let rounds: usize = env_or("SGUILD_BENCH_ROUNDS", 4);
    let window: usize = env_or("SGUILD_BENCH_WINDOW", 1);
    let settings = ConnectSettings {
        host: host.into(),
        port: port.parse().unwrap(),
        tls: TlsMode::CaFile(ca.into()),
        expect_version: None,
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
    };
    let hostname = format!("bench-bare-{}", std::process::id());
    let events = prebuilt(n);
    let (mut drain_secs, mut bare_secs) = (0.0, 0.0);
    for round in 0..rounds {
        let drain_round = || {
            let (_dir, conf) = queued(
                n,
                &format!(
                    "set SERVER_HOST {host}\nset SERVER_PORT {port}\nset TLS_CA_FILE {ca}\nset SEND_WINDOW {window}\n"
                ),
            );
            drain(&conf).0
        };
        let bare_round = || {
            let t = Instant::now();
            let conn = Connection::open(&settings).unwrap();
            let mut s = AgentSession::register(
                conn,
                "modsecurity",
                &hostname,
                "bench",
                Duration::from_secs(30),
            )
            .unwrap();
            let building = Instant::now();
            let mine: Vec<SguilEvent> = events
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let mut f = e.fields().clone();
                    (f.sid, f.cid, f.hostname) =
                        (s.sid, s.max_cid + 1 + i as u32, hostname.clone());
                    SguilEvent::new(f).unwrap()
                })
                .collect();
            let build_time = building.elapsed();
            let mut ok = 0;
            s.send(&mine, window, |_, o| {
                ok += usize::from(o == Answer::Confirmed)
            })
            .unwrap();
            assert_eq!(ok, n);
            (t.elapsed() - build_time).as_secs_f64()
        };
        let (d, b) = if round % 2 == 0 {
            let d = drain_round();
            (d, bare_round())
        } else {
            let b = bare_round();
            (drain_round(), b)
        };
        drain_secs += d;
        bare_secs += b;
        println!(
            "real sguild, round {} (window {window}, {n} events each): drain {:.0} events/s, bare client {:.0} events/s, ratio {:.2}",
            round + 1,
            n as f64 / d,
            n as f64 / b,
            b / d
        );
    }
    println!(
        "real sguild, {rounds} rounds: drain {:.0} events/s, bare client {:.0} events/s, ratio {:.2}",
        (n * rounds) as f64 / drain_secs,
        (n * rounds) as f64 / bare_secs,
        bare_secs / drain_secs
    );
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` events of the queue's kind, read, parsed and mapped before any clock starts.
fn prebuilt(n: usize) -> Vec<SguilEvent> {
    let src = work_dir();
    fill_queue(&src.path().join("q"), 1, n);
    let limits = ParseLimits::default();
    std::fs::read_dir(src.path().join("q"))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let raw = read_event_file(&path, std::fs::File::open(&path).unwrap(), &limits).unwrap();
            let ev = raw.parse(&limits).unwrap();
            let mut f = map_event(&ev, &raw.bytes, &[], &AlertSettings::default()).fields;
            (f.sid, f.cid, f.hostname) = (1, 1, "bench".into());
            SguilEvent::new(f).unwrap()
        })
        .collect()
}
