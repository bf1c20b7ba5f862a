//! What a flood costs the shipper (`cargo bench -p modsec2sguil-e2e --bench thresholds`),
//! in one run on one machine: `drain` of THRESHOLD_EVENTS (default 100,000) queued events
//! from one client, with 20 distinct attacks from 20 other clients spread through them,
//! under `limit 10 per source per 60 s` (all but ten of the flood held back: the disposal
//! rate; and when the last attack was stored, counted from the drain's start), and `drain` of THRESHOLD_SENT (default 5,000) events from as many
//! clients under the same rule (every one sent to the test server over TLS, SEND_WINDOW
//! 32: the sending rate). Each rate is the events handled over the drain's own time,
//! from its summary line. BENCH_DIR puts the queues on a chosen filesystem.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use modsec2sguil_e2e::binary;
use modsec2sguil_e2e::sguild::TestSguild;
use modsec2sguil_e2e::shipper::{
    config, drain_summary, fill_flood, flood_event, flood_id, FLOODER,
};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `drain -c conf`: its summary line and wall-clock seconds.
fn drain(conf: &Path) -> (String, f64) {
    let start = Instant::now();
    let out = Command::new(binary("modsec-shipper"))
        .args(["drain", "-c", conf.to_str().unwrap()])
        .output()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let summary = drain_summary(&err);
    (summary, secs)
}

fn main() {
    let held_n = env_or("THRESHOLD_EVENTS", 100_000);
    binary("modsec-shipper"); // built before anything is timed
    let sent_n = env_or("THRESHOLD_SENT", 5_000);
    let server = TestSguild::start();
    let base = match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let rules = base.path().join("thresholds.conf");
    std::fs::write(
        &rules,
        "threshold gen_id 10001, sig_id *, type limit, track by_src, count 10, seconds 60\n",
    )
    .unwrap();
    let extra = format!(
        "set THRESHOLD_FILE {}\nset SEND_WINDOW 32\n",
        rules.display()
    );
    let t0 = chrono::Utc::now().timestamp() - 600;

    // Disposal: one client's flood.
    let flood = base.path().join("flood");
    std::fs::create_dir(&flood).unwrap();
    const ATTACKS: usize = 20;
    fill_flood(&flood.join("queue"), 1, held_n, ATTACKS, |_| t0);
    let conf = config(&flood, &flood.join("queue"), &server, &extra);
    let started = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
    let (summary, secs) = drain(&conf);
    let held = held_n.saturating_sub(10 + ATTACKS);
    // The threshold summaries' signature (ARCHITECTURE.md, "Thresholds").
    const SUMMARY_SIG: &str = "99000001";
    let attacks: Vec<f64> = server
        .events()
        .iter()
        .filter(|e| e.sig_id != SUMMARY_SIG && e.src_ip != FLOODER)
        .map(|e| e.stored_at - started)
        .collect();
    println!(
        "flood: {held_n} events, {ATTACKS} of them attacks from other clients, limit 10/60 s: {secs:.2} s wall"
    );
    println!(
        "  attacks stored: {} of {ATTACKS}, the last {:.2} s after the drain started",
        attacks.len(),
        attacks.iter().copied().fold(0.0, f64::max)
    );
    println!("  {summary}");
    println!(
        "  disposal: {:.0} events/s ({held} held back: parsed, journaled, recorded, moved to held/)",
        held_n as f64 / secs
    );

    // Sending: as many clients as events, nothing held back.
    let sending = base.path().join("sending");
    let queue = sending.join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    for i in 0..sent_n {
        let src = format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256);
        std::fs::write(
            queue.join(format!("modsec.log.1790000000.{:06}", i + 1)),
            flood_event(&flood_id(held_n + 1 + i), &src, t0),
        )
        .unwrap();
    }
    let conf = config(&sending, &queue, &server, &extra);
    let (summary, secs) = drain(&conf);
    println!("sending: {sent_n} events from {sent_n} clients, none held back: {secs:.2} s wall");
    println!("  {summary}");
    println!(
        "  sending: {:.0} events/s to the test server",
        sent_n as f64 / secs
    );
}
