//! Apache's request rate with the collector in the pipe, next to the same Apache with
//! `/bin/cat` in the pipe (its stdout is /dev/null: `cat > /dev/null`), measured with
//! `ab` in one run (`cargo bench -p modsec2sguil-e2e --bench apache_rate`). Every request
//! is a CRS-blocked attack, so every one writes an event file and an index line.
//! Needs root, apache2, libapache2-mod-security2, modsecurity-crs and ab (apache2-utils).
//!
//! Each measurement runs on a freshly made ext4 filesystem (an image in /var/tmp,
//! loop-mounted; needs mkfs.ext4 and loop devices), so cat and the collector start from
//! the same disk. `APACHE_RATE_DIR` runs them in a given directory instead (the aged
//! disk, a tmpfs); there every round's files stay until the last round is done. That
//! matters on ext4 without a journal (this machine's root filesystem): it will not
//! reuse an inode freed in the last 60 s (360 s while its inode table block is dirty)
//! and steps over each such inode whenever it creates a file, so a round that followed
//! the deletion of the round before paid for it on every event file ModSecurity wrote:
//! one round's kernel time per request varied by 2x with what had been deleted before
//! it. Besides the rate it prints the whole machine's CPU time per request, which is
//! what the collector takes from Apache on a busy box.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use modsec2sguil_e2e::apache::{self, Apache, ApacheOptions};
use modsec2sguil_e2e::{binary, which};

const REQUESTS: &str = "4000";
const CONCURRENCY: &str = "16";
/// Rounds of each (APACHE_RATE_ROUNDS): the rate of one round varies by ±20% on an
/// aged disk, so more rounds narrow the mean.
const ROUNDS: usize = 4;

#[derive(Clone, Copy)]
enum Piped {
    Cat,
    Collector,
}

/// One measurement: requests per second, and the machine's CPU milliseconds per request.
struct Sample {
    rate: f64,
    cpu_ms: f64,
}

/// The instance comes back stopped, its files still on disk.
fn measure(parent: &Path, pipe: &dyn Fn(&Path) -> String) -> (Sample, Apache) {
    let opts = ApacheOptions {
        parent_dir: Some(parent.into()),
        ..ApacheOptions::default()
    };
    let mut apache = Apache::start_with(&opts, pipe);
    let url = format!(
        "http://127.0.0.1:{}/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--",
        apache.port
    );
    // Warm up (CRS, worker threads), then measure.
    let _ = Command::new("ab")
        .args(["-q", "-n", "200", "-c", CONCURRENCY, &url])
        .output();
    let cpu_before = cpu_ticks();
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
    let busy = cpu_ticks() - cpu_before;
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests per second:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rate in ab's output:\n{text}"));
    let requests: f64 = REQUESTS.parse().unwrap();
    apache.stop();
    let sample = Sample {
        rate,
        cpu_ms: busy as f64 * 1000.0 / clock_ticks() as f64 / requests,
    };
    (sample, apache)
}

/// Busy (not idle, not iowait) CPU ticks of the whole machine so far, from /proc/stat.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("read /proc/stat");
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum()
}

fn clock_ticks() -> i64 {
    // SAFETY: sysconf only reads a system constant.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }
}

/// A freshly made ext4 filesystem, loop-mounted; unmounted and removed on drop.
struct FreshExt4 {
    mount: tempfile::TempDir,
    /// Removed on drop, after the unmount.
    _image: tempfile::TempPath,
}

impl FreshExt4 {
    /// Why not, when this machine cannot make one.
    fn new() -> Result<FreshExt4, String> {
        let image = tempfile::Builder::new()
            .prefix("apache-rate-")
            .suffix(".ext4")
            .tempfile_in("/var/tmp")
            .map_err(|e| format!("image in /var/tmp: {e}"))?
            .into_temp_path();
        let run = |cmd: &mut Command| -> Result<(), String> {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{cmd:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        std::fs::File::options()
            .write(true)
            .open(&image)
            .and_then(|f| f.set_len(1 << 30))
            .map_err(|e| format!("size the image: {e}"))?;
        // Inode tables and journal written now, not by a background thread mid-run.
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
            .arg(&image))?;
        let mount = tempfile::Builder::new()
            .prefix("apache-rate-mnt-")
            .tempdir()
            .map_err(|e| format!("mount point: {e}"))?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(mount.path()))?;
        let fs = FreshExt4 {
            mount,
            _image: image,
        };
        std::fs::set_permissions(fs.mount.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod the mount: {e}"))?;
        Ok(fs)
    }
}

impl AsRef<Path> for FreshExt4 {
    fn as_ref(&self) -> &Path {
        self.mount.path()
    }
}

impl Drop for FreshExt4 {
    fn drop(&mut self) {
        // The collector may still be finishing after Apache stopped: wait for the
        // filesystem to be free (then the fields go: the mount point, then the image).
        for _ in 0..100 {
            let done = Command::new("umount")
                .arg(self.mount.path())
                .stderr(std::process::Stdio::null())
                .status();
            if done.is_ok_and(|s| s.success()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!(
            "apache_rate: {} still busy after 10 s; detached (umount -l)",
            self.mount.path().display()
        );
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mount.path())
            .status();
    }
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
    let given = std::env::var_os("APACHE_RATE_DIR").map(std::path::PathBuf::from);
    // The first fresh filesystem tells whether this machine can make them; it is then
    // the first measurement's.
    let mut spare = match &given {
        Some(_) => None,
        None => FreshExt4::new()
            .map_err(|why| {
                eprintln!(
                    "apache_rate: WARNING: cannot make a fresh ext4 ({why}); running in /tmp, \
                     where the disk's history weighs on every round"
                )
            })
            .ok(),
    };
    let fresh = spare.is_some();
    let rounds = std::env::var("APACHE_RATE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS);
    let extra = std::env::var("APACHE_RATE_COLLECTOR_ARGS").unwrap_or_default();
    // In a given directory, each round's files (and their directories) stay until
    // every round is done; see the module doc.
    let mut kept: Vec<(Apache, Box<dyn AsRef<Path>>)> = Vec::new();
    // One measurement in a place of its own: a fresh filesystem, or a temp dir in the
    // given directory (or /tmp).
    let mut run = |piped: Piped| -> Sample {
        // Dropped after the measurement: unmounted, or removed.
        let place: Box<dyn AsRef<Path>> = if fresh {
            Box::new(
                spare
                    .take()
                    .unwrap_or_else(|| FreshExt4::new().expect("fresh ext4")),
            )
        } else {
            Box::new(
                match &given {
                    Some(p) => tempfile::tempdir_in(p),
                    None => tempfile::tempdir(),
                }
                .expect("temp dir"),
            )
        };
        let parent = (*place).as_ref();
        let queue = parent.join("queue");
        let (sample, apache) = measure(parent, &|root: &Path| match piped {
            Piped::Cat => "/bin/cat".to_string(),
            // The queue and the collector's state dir live beside the instance, on
            // the same filesystem.
            Piped::Collector => format!(
                "{} {extra} --queue {} --state-dir {} {}",
                collector.display(),
                queue.display(),
                modsec2sguil_e2e::state::dir(parent).display(),
                root.join("audit").display()
            ),
        });
        if !fresh {
            kept.push((apache, place));
        }
        sample
    };
    let (mut cat, mut ours) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so warm-up favours neither.
        if round % 2 == 0 {
            cat.push(run(Piped::Cat));
            ours.push(run(Piped::Collector));
        } else {
            ours.push(run(Piped::Collector));
            cat.push(run(Piped::Cat));
        }
    }
    let rates = |v: &[Sample]| v.iter().map(|s| s.rate).collect::<Vec<_>>();
    let (cat_rates, our_rates) = (rates(&cat), rates(&ours));
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let cpu = |v: &[Sample]| mean(&v.iter().map(|s| s.cpu_ms).collect::<Vec<_>>());
    let place = match (&given, fresh) {
        (Some(p), _) => p.display().to_string(),
        (None, true) => "a fresh ext4 each".into(),
        (None, false) => "/tmp".into(),
    };
    println!(
        "ab -n {REQUESTS} -c {CONCURRENCY}, every request blocked and logged, {rounds} rounds each, on {place}:"
    );
    println!(
        "  cat > /dev/null in the pipe:  mean {:>5.0} req/s, best {:>5.0}, machine CPU {:.2} ms/request  {cat_rates:.0?}",
        mean(&cat_rates),
        best(&cat_rates),
        cpu(&cat)
    );
    println!(
        "  modsec-collector in the pipe: mean {:>5.0} req/s, best {:>5.0}, machine CPU {:.2} ms/request  {our_rates:.0?}",
        mean(&our_rates),
        best(&our_rates),
        cpu(&ours)
    );
    println!(
        "  collector / cat: {:.3} (mean rate), {:.3} (best rate), {:.3} (CPU per request)",
        mean(&our_rates) / mean(&cat_rates),
        best(&our_rates) / best(&cat_rates),
        cpu(&ours) / cpu(&cat)
    );
}
