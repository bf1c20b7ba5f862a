//! Apache's request rate with the collector in the pipe, next to the same Apache with
//! `/bin/cat` in the pipe (its stdout is /dev/null: `cat > /dev/null`), measured with
//! `ab` in one run (`cargo bench -p modsec2sguil-e2e --bench apache_rate`). Every request
//! is a CRS-blocked attack, so every one writes an event file and an index line.
//! Needs root, apache2, libapache2-mod-security2, modsecurity-crs and ab (apache2-utils).

use std::process::Command;

use modsec2sguil_e2e::apache::{self, Apache, ApacheOptions};
use modsec2sguil_e2e::{binary, which};

const REQUESTS: &str = "4000";
const CONCURRENCY: &str = "16";
/// Rounds of each (APACHE_RATE_ROUNDS): the rate of one round varies by ±20% on an
/// aged disk, so more rounds narrow the mean.
const ROUNDS: usize = 4;

fn rate(parent: Option<&std::path::Path>, pipe: &dyn Fn(&std::path::Path) -> String) -> f64 {
    let opts = ApacheOptions {
        parent_dir: parent.map(Into::into),
        ..ApacheOptions::default()
    };
    let apache = Apache::start_with(&opts, pipe);
    let url = format!(
        "http://127.0.0.1:{}/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--",
        apache.port
    );
    // Warm up (CRS, worker threads), then measure.
    let _ = Command::new("ab")
        .args(["-q", "-n", "200", "-c", CONCURRENCY, &url])
        .output();
    let ab = Command::new("ab")
        .args(["-q", "-n", REQUESTS, "-c", CONCURRENCY, &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run ab");
    if std::env::var_os("APACHE_RATE_TOP").is_some() {
        std::thread::sleep(std::time::Duration::from_secs(3));
        let top = Command::new("top")
            .args(["-b", "-n", "1", "-w", "200"])
            .output()
            .unwrap();
        eprintln!(
            "{}",
            String::from_utf8_lossy(&top.stdout)
                .lines()
                .take(15)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let out = ab.wait_with_output().expect("run ab");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests per second:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rate in ab's output:\n{text}"))
}

fn main() {
    if let Some(why) = apache::unavailable() {
        eprintln!("apache_rate: skipped: {why}");
        return;
    }
    if which("ab").is_none() {
        eprintln!("apache_rate: skipped: ab is missing (apt-get install apache2-utils)");
        return;
    }
    let collector = binary("modsec-collector");
    // APACHE_RATE_DIR=/some/dir puts the instances (and so the event files and the
    // queue) there, e.g. on a fresh tmpfs, away from an aged disk's inode allocation.
    let parent = std::env::var_os("APACHE_RATE_DIR").map(std::path::PathBuf::from);
    let work = match &parent {
        Some(p) => tempfile::tempdir_in(p).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let rounds = std::env::var("APACHE_RATE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS);
    let (mut cat, mut ours) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let queue = work.path().join(format!("queue-{round}"));
        let extra = std::env::var("APACHE_RATE_COLLECTOR_ARGS").unwrap_or_default();
        let with_cat = |_: &std::path::Path| "/bin/cat".to_string();
        let with_collector = |root: &std::path::Path| {
            format!(
                "{} {extra} --queue {} {}",
                collector.display(),
                queue.display(),
                root.join("audit").display()
            )
        };
        // Alternate which goes first, so warm-up and filesystem ageing favour neither.
        if round % 2 == 0 {
            cat.push(rate(parent.as_deref(), &with_cat));
            ours.push(rate(parent.as_deref(), &with_collector));
        } else {
            ours.push(rate(parent.as_deref(), &with_collector));
            cat.push(rate(parent.as_deref(), &with_cat));
        }
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!("ab -n {REQUESTS} -c {CONCURRENCY}, every request blocked and logged, {rounds} rounds each:");
    println!(
        "  cat > /dev/null in the pipe: mean {:>7.0} req/s, best {:>7.0}  {cat:.0?}",
        mean(&cat),
        best(&cat)
    );
    println!(
        "  modsec-collector in the pipe: mean {:>7.0} req/s, best {:>7.0}  {ours:.0?}",
        mean(&ours),
        best(&ours)
    );
    println!(
        "  collector / cat: {:.3} (mean), {:.3} (best)",
        mean(&ours) / mean(&cat),
        best(&ours) / best(&cat)
    );
}
