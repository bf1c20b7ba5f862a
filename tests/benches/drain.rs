//! `modsec-shipper drain` throughput (`cargo bench -p modsec2sguil-e2e --bench drain`):
//! 10,000 and 100,000 queued real-sized events (a 3.8 KB CRS-blocked request each) to
//! the test server over TLS, with the shipper's peak RSS; the time of a cron run on an
//! empty queue; and, when SGUILD_ADDR (host:port) and SGUILD_CA are set, `drain` to a
//! real sguild next to a bare client sending the same number of prebuilt events.
//!
//! BENCH_DIR puts the queues on a chosen filesystem (default: the system temp dir).
//! The test server runs in this process; its store goes to TMPDIR.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use modsec2sguil::alert::{map_event, AlertSettings};
use modsec2sguil::auditlog::{read_event_file, ParseLimits};
use modsec2sguil::sguil::client::{AgentSession, Outcome};
use modsec2sguil::sguil::conn::{ConnectSettings, Connection, TlsMode};
use modsec2sguil::sguil::wire::SguilEvent;
use modsec2sguil_e2e::binary;
use modsec2sguil_e2e::sguild::TestSguild;
use modsec2sguil_e2e::shipper::fill_queue;

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
    let summary = err
        .lines()
        .find(|l| l.contains("drain: shipped"))
        .unwrap_or_else(|| panic!("no summary: {err}"))
        .split("INFO: ")
        .nth(1)
        .unwrap_or_default()
        .to_string();
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

    if let (Ok(addr), Ok(ca)) = (std::env::var("SGUILD_ADDR"), std::env::var("SGUILD_CA")) {
        let (host, port) = addr.rsplit_once(':').expect("SGUILD_ADDR is host:port");
        let n = 2_000usize;
        let (_dir, conf) = queued(
            n,
            &format!("set SERVER_HOST {host}\nset SERVER_PORT {port}\nset TLS_CA_FILE {ca}\n"),
        );
        let (secs, summary, _) = drain(&conf);
        let drain_rate = n as f64 / secs;
        // The bare client: the same events, mapped and built before the clock starts.
        let settings = ConnectSettings {
            host: host.into(),
            port: port.parse().unwrap(),
            tls: TlsMode::CaFile(ca.into()),
            expect_version: None,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
        };
        let conn = Connection::open(&settings).unwrap();
        let hostname = format!("bench-bare-{}", std::process::id());
        let mut s = AgentSession::register(
            conn,
            "modsecurity",
            &hostname,
            "bench",
            Duration::from_secs(30),
        )
        .unwrap();
        let src = work_dir();
        fill_queue(&src.path().join("q"), 1, n);
        let mut events = Vec::with_capacity(n);
        for (i, entry) in std::fs::read_dir(src.path().join("q")).unwrap().enumerate() {
            let path = entry.unwrap().path();
            let limits = ParseLimits::default();
            let raw = read_event_file(&path, std::fs::File::open(&path).unwrap(), &limits).unwrap();
            let ev = raw.parse(&limits).unwrap();
            let mut f = map_event(&ev, &raw.bytes, &[], &AlertSettings::default()).fields;
            (f.sid, f.cid, f.hostname) = (s.sid, s.max_cid + 1 + i as u32, hostname.clone());
            events.push(SguilEvent::new(f).unwrap());
        }
        // Half with the drain's window (1, the default), half pipelined 32 deep.
        let mut rates = Vec::new();
        for (part, window) in events.chunks(n / 2).zip([1usize, 32]) {
            let t = Instant::now();
            let mut ok = 0;
            s.send(part, window, |_, o| {
                ok += usize::from(o == Outcome::Confirmed)
            })
            .unwrap();
            assert_eq!(ok, part.len());
            rates.push(part.len() as f64 / t.elapsed().as_secs_f64());
        }
        let (bare1, bare32) = (rates[0], rates[1]);
        println!(
            "real sguild: drain {drain_rate:.0} events/s (process start to exit, window 1); bare client {bare1:.0} events/s at window 1 (ratio {:.2}), {bare32:.0} at window 32 (ratio {:.2})  [{summary}]",
            drain_rate / bare1,
            drain_rate / bare32
        );
    }
}
