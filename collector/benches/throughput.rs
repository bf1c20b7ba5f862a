//! Collector throughput (`cargo bench -p modsec-collector`): index lines per second
//! through the release binary for 100,000 lines pointing at 10 KB event files on the
//! same filesystem, with md5 on and off, next to a bare loop that only reads the lines
//! and calls link() — the physical limit. Prints peak RSS of the collector too.
//!
//! Each line names its own event file, as ModSecurity writes them: the collector refuses
//! an event with a second link (one someone planted), so each run's links are removed
//! before the next.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use md5::{Digest, Md5};

const LINES: usize = 100_000;
const FILES: usize = LINES;
const EVENT_BYTES: usize = 10 * 1024;

fn main() {
    let dir = tempfile::Builder::new()
        .prefix("collector-bench-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let storage = dir.path().join("audit");
    std::fs::create_dir_all(storage.join("www-data/20261128/20261128-0214")).unwrap();
    as_web_user(&storage.join("www-data/20261128/20261128-0214"));
    let mut digests = Vec::with_capacity(FILES);
    for i in 0..FILES {
        let mut content = vec![b'x'; EVENT_BYTES];
        content[..8].copy_from_slice(format!("{i:08}").as_bytes());
        let event = storage.join(format!(
            "www-data/20261128/20261128-0214/20261128-021431-ev{i:06}"
        ));
        std::fs::write(&event, &content).unwrap();
        as_web_user(&event);
        digests.push(modsec2sguil::hex::lower(&Md5::digest(&content)));
    }
    let input = dir.path().join("index-input.log");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    for n in 0..LINES {
        let i = n % FILES;
        writeln!(
            f,
            "lab.example 127.0.0.1 - - [28/Nov/2026:02:14:31.009836 +0000] \"GET /?id=1%27%20UNION%20SELECT HTTP/1.1\" 403 239 \"-\" \"-\" ev{i:06}AAAAAAAAAAAAAAAAAAA \"-\" /www-data/20261128/20261128-0214/20261128-021431-ev{i:06} 0 {EVENT_BYTES} md5:{} ",
            digests[i]
        )
        .unwrap();
    }
    drop(f);

    let bare = bare_link_loop(&input, &storage, &dir.path().join("queue-bare"));
    println!("bare read+link() loop: {bare:>9.0} lines/s");
    for md5 in ["off", "on"] {
        let (rate, rss_kb) = run_collector(
            &input,
            &storage,
            &dir.path().join(format!("queue-{md5}")),
            md5,
        );
        println!(
            "collector, md5 {md5:<3}:   {rate:>9.0} lines/s ({:.2}x bare), peak RSS {:.1} MB",
            rate / bare,
            rss_kb as f64 / 1024.0
        );
    }
}

/// Event files are the web server's (the collector queues none of root's): when the
/// bench runs as root, `nobody`'s, with the directory holding them.
fn as_web_user(path: &Path) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
    }
}

fn bare_link_loop(input: &Path, storage: &Path, queue: &Path) -> f64 {
    std::fs::create_dir_all(queue).unwrap();
    let start = Instant::now();
    let reader = BufReader::new(std::fs::File::open(input).unwrap());
    for (n, line) in reader.split(b'\n').enumerate() {
        let line = line.unwrap();
        let file = line.rsplit(|&b| b == b' ').nth(4).unwrap();
        let src = storage.join(std::str::from_utf8(&file[1..]).unwrap());
        std::fs::hard_link(&src, queue.join(format!("modsec.log.1.{n:06}"))).unwrap();
    }
    let rate = LINES as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_dir_all(queue).unwrap();
    rate
}

fn run_collector(input: &Path, storage: &Path, queue: &Path, md5: &str) -> (f64, i64) {
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_modsec-collector"))
        .args(["--verify-md5", md5, "--queue"])
        .arg(queue)
        .arg("--state-dir")
        .arg(queue.with_extension("state"))
        .arg(storage)
        .stdin(std::fs::File::open(input).unwrap())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(status.success());
    let queued = std::fs::read_dir(queue)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("modsec.log.")
        })
        .count();
    assert_eq!(queued, LINES, "every line queued");
    std::fs::remove_dir_all(queue).unwrap();
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    (LINES as f64 / elapsed.as_secs_f64(), usage.ru_maxrss)
}
