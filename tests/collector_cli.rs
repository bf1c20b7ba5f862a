//! `modsec-collector` as a process: signals, bad input, bad settings, and a queue on
//! another filesystem, a full one and a read-only one.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use modsec2sguil::collect::MAX_PIPELINE_BYTES;
use modsec2sguil::hex;
use modsec2sguil::queue::EntryName;
use modsec2sguil::state::BACKLOG_FILE;
use modsec2sguil_e2e::process::{signal, wait_exit, wait_until};
use modsec2sguil_e2e::{binary, state, web_user, Tmpfs};

struct Env {
    dir: tempfile::TempDir,
    storage: PathBuf,
    queue: PathBuf,
    /// The collector's STATE_DIR.
    state: PathBuf,
    index: PathBuf,
    log: PathBuf,
    n: usize,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("audit");
        std::fs::create_dir_all(&storage).unwrap();
        Env {
            storage,
            queue: dir.path().join("queue"),
            state: state::dir(dir.path()),
            index: dir.path().join("index.log"),
            log: dir.path().join("collector.log"),
            dir,
            n: 0,
        }
    }

    /// Writes an event file of `size` bytes as the web server's user and returns its
    /// index line.
    fn event(&mut self, size: usize) -> Vec<u8> {
        self.n += 1;
        let rel = format!(
            "/www-data/20261128/20261128-0214/20261128-021431-id{:05}",
            self.n
        );
        let path = self.storage.join(&rel[1..]);
        let content = vec![b'a' + (self.n % 26) as u8; size];
        web_user::write_event(&path, &content);
        format!(
            "lab.example 127.0.0.1 - - [28/Nov/2026:02:14:31.009836 +0000] \"GET /{n} HTTP/1.1\" 403 239 \"-\" \"-\" id{n:05} \"-\" {rel} 0 {size} md5:{} \n",
            hex::lower(&Md5::digest(&content)),
            n = self.n
        )
        .into_bytes()
    }

    fn spawn(&self, extra: &[&str]) -> Child {
        self.spawn_through(Command::new(binary("modsec-collector")), extra)
    }

    /// Starts the collector through `cmd` (the binary itself, or a wrapper such as
    /// setpriv given the binary as its first argument).
    fn spawn_through(&self, mut cmd: Command, extra: &[&str]) -> Child {
        self.args(&mut cmd, extra)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The collector's arguments for this environment, stderr to /dev/null.
    fn args<'c>(&self, cmd: &'c mut Command, extra: &[&str]) -> &'c mut Command {
        cmd.arg("--queue")
            .arg(&self.queue)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--log-file")
            .arg(&self.log)
            .args(extra)
            .arg(&self.storage)
            .arg(&self.index)
            .stderr(Stdio::null())
    }

    fn entries(&self) -> Vec<EntryName> {
        let mut v: Vec<EntryName> = std::fs::read_dir(&self.queue)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str().and_then(EntryName::parse))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The backlog in the state dir: (reason, line).
    fn backlog(&self) -> Vec<(String, Vec<u8>)> {
        state::backlog(&self.state)
    }

    /// The collector with a config it cannot use (a relative EVENT_DIR), as Apache
    /// would start it: it must still drain the pipe. Stdin and stderr piped.
    fn spawn_unusable(&self) -> Child {
        let conf = self.dir.path().join("bad.conf");
        std::fs::write(&conf, "set EVENT_DIR relative/queue\n").unwrap();
        self.spawn_as_apache(&["-c".as_ref(), conf.as_os_str()])
    }

    /// The collector started as Apache's snippet starts it: `options`, then the storage
    /// dir and the index file. Stdin and stderr piped.
    fn spawn_as_apache(&self, options: &[&std::ffi::OsStr]) -> Child {
        Command::new(binary("modsec-collector"))
            .args(options)
            .arg(&self.storage)
            .arg(&self.index)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Writes a config `name` in the test's dir: EVENT_DIR on line 1, `extra` from
    /// line 2 on, then STATE_DIR.
    fn config(&self, name: &str, extra: &str) -> PathBuf {
        let conf = self.dir.path().join(name);
        std::fs::write(
            &conf,
            format!(
                "set EVENT_DIR {}\n{extra}set STATE_DIR {}\n",
                self.queue.display(),
                self.state.display()
            ),
        )
        .unwrap();
        conf
    }

    /// Runs the collector (with `extra` arguments) on one event of `size` bytes, until
    /// it exits 0 at the end of its input; returns the event's index line.
    fn collect_one(&mut self, size: usize, extra: &[&str]) -> Vec<u8> {
        let mut child = self.spawn(extra);
        let line = self.event(size);
        child.stdin.take().unwrap().write_all(&line).unwrap();
        assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
        line
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[test]
fn sigterm_keeps_reading_until_apache_closes_the_pipe() {
    let mut env = Env::new();
    let mut child = env.spawn(&[]);
    let mut stdin = child.stdin.take().unwrap();
    for _ in 0..5 {
        stdin.write_all(&env.event(100)).unwrap();
    }
    wait_until("5 entries", Duration::from_secs(10), || {
        env.entries().len() == 5
    });
    signal(child.id(), "TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running after SIGTERM"
    );
    // Old Apache children still write after a graceful restart.
    for _ in 0..5 {
        stdin.write_all(&env.event(100)).unwrap();
    }
    drop(stdin);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
    assert_eq!(env.entries().len(), 10);
    // modsec2sguil's agent globs modsec.log.* and reads the digits: keep to that form.
    for e in std::fs::read_dir(&env.queue).unwrap().flatten() {
        let name = e.file_name().into_string().unwrap();
        if name.starts_with('.') {
            continue;
        }
        let (sec, usec) = name
            .strip_prefix("modsec.log.")
            .and_then(|r| r.split_once('.'))
            .unwrap();
        assert!(
            sec.bytes().all(|b| b.is_ascii_digit())
                && usec.len() == 6
                && usec.bytes().all(|b| b.is_ascii_digit()),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read(&env.index)
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        10
    );
    assert!(env
        .log_text()
        .contains("SIGTERM: finishing when Apache closes the pipe"));
}

#[test]
fn the_pipe_from_apache_is_enlarged() {
    // Room in the pipe is what lets Apache's children write on while the reader waits
    // for slow input to gather, or is descheduled.
    let env = Env::new();
    let mut child = env.spawn(&[]);
    let stdin = child.stdin.take().unwrap();
    let size = || rustix::pipe::fcntl_getpipe_size(&stdin).expect("stdin is a pipe");
    wait_until("a 1 MiB pipe", Duration::from_secs(10), || {
        size() == modsec2sguil::collect::PIPE_BYTES
    });
    drop(stdin);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
}

/// `apachectl configtest` starts the collector (the piped audit log) and closes the pipe
/// before any line: nothing on the admin's terminal, the start and end in the log only.
/// Once lines came, the end is on stderr too (Apache's error log) as before.
#[test]
fn a_pipe_closed_before_the_first_line_leaves_stderr_quiet() {
    let mut env = Env::new();
    let spawn = |env: &Env| {
        env.args(&mut Command::new(binary("modsec-collector")), &[])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let child = spawn(&env);
    // As configtest's Apache does: the pipe is closed at once.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr, "", "the collector spoke with no line read");
    let log = env.log_text();
    assert!(
        log.contains("INFO: started: ") && log.contains("INFO: exiting: 0 lines read"),
        "the log keeps the start and the end: {log}"
    );

    // configtest's Apache may also send SIGTERM before it closes the pipe.
    let mut child = spawn(&env);
    wait_until("the start in the log", Duration::from_secs(10), || {
        env.log_text().matches("INFO: started: ").count() == 2
    });
    signal(child.id(), "TERM");
    wait_until("the SIGTERM in the log", Duration::from_secs(10), || {
        env.log_text().contains("INFO: SIGTERM: finishing")
    });
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr, "",
        "the collector spoke on SIGTERM with no line read"
    );

    let line = env.event(10);
    let mut child = spawn(&env);
    child.stdin.take().unwrap().write_all(&line).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("INFO: exiting: 1 lines read, 1 queued"),
        "{stderr}"
    );
    assert!(!stderr.contains("started: "), "{stderr}");
}

#[test]
fn input_that_is_not_a_pipe_is_read_line_by_line_and_queued() {
    // Nothing to enlarge, so no room for a burst while waiting: the reader does not
    // let the input gather, says so, and queues every line.
    let mut env = Env::new();
    let lines: Vec<u8> = (0..3).flat_map(|_| env.event(100)).collect();
    let input = env.dir.path().join("lines");
    std::fs::write(&input, &lines).unwrap();
    let status = env
        .args(&mut Command::new(binary("modsec-collector")), &[])
        .stdin(std::fs::File::open(&input).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(env.entries().len(), 3);
    assert!(
        env.log_text().contains(
            "cannot enlarge standard input's pipe (not a pipe); reading each line at once"
        ),
        "{}",
        env.log_text()
    );
}

#[test]
fn second_sigterm_stops_and_every_line_read_is_queued_or_in_the_backlog() {
    let mut env = Env::new();
    let mut child = env.spawn(&[]);
    let mut stdin = child.stdin.take().unwrap();
    let lines: Vec<Vec<u8>> = (0..300).map(|_| env.event(2000)).collect();
    for l in &lines {
        stdin.write_all(l).unwrap();
    }
    stdin.flush().unwrap();
    wait_until("the first entry", Duration::from_secs(10), || {
        !env.entries().is_empty()
    });
    signal(child.id(), "TERM");
    std::thread::sleep(Duration::from_millis(50));
    signal(child.id(), "TERM");
    // stdin stays open: the second SIGTERM alone must end it.
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
    let text = env.log_text();
    assert!(text.contains("second SIGTERM"), "{text}");
    // What was read is accounted for; the rest is still in the pipe for the next instance.
    let queued = env.entries().len();
    let spooled = state::spooled_lines(&env.state);
    let backlog = env.backlog().len() + spooled;
    let read: usize = text
        .lines()
        .find_map(|l| l.split("exiting: ").nth(1))
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        queued > 0 && read <= lines.len(),
        "{queued} queued, {read} read"
    );
    assert_eq!(
        queued + backlog,
        read,
        "every line read is queued or in the backlog"
    );
    drop(stdin);
}

#[test]
fn sighup_reopens_a_rotated_index_file() {
    let mut env = Env::new();
    let mut child = env.spawn(&[]);
    let mut stdin = child.stdin.take().unwrap();
    let first = env.event(10);
    stdin.write_all(&first).unwrap();
    wait_until("first entry", Duration::from_secs(10), || {
        env.entries().len() == 1
    });
    let rotated = env.dir.path().join("index.log.1");
    std::fs::rename(&env.index, &rotated).unwrap();
    signal(child.id(), "HUP");
    std::thread::sleep(Duration::from_millis(100));
    let second = env.event(10);
    stdin.write_all(&second).unwrap();
    drop(stdin);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
    assert_eq!(std::fs::read(&rotated).unwrap(), first);
    assert_eq!(std::fs::read(&env.index).unwrap(), second);
}

#[test]
fn bad_lines_go_to_the_backlog_and_reading_goes_on() {
    let mut env = Env::new();
    let mut child = env.spawn(&[]);
    let mut stdin = child.stdin.take().unwrap();
    let good = env.event(10);
    stdin.write_all(b"not \xff\xfe an index line\n").unwrap();
    stdin
        .write_all(&[vec![b'x'; 200_000], b"\n".to_vec()].concat())
        .unwrap();
    stdin.write_all(b"\n").unwrap();
    let missing = String::from_utf8(env.event(10))
        .unwrap()
        .replace("id0000", "gone0");
    stdin.write_all(missing.as_bytes()).unwrap();
    stdin.write_all(&good).unwrap();
    drop(stdin);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
    assert_eq!(
        env.entries().len(),
        1,
        "the good line after the bad ones is queued"
    );
    let backlog = env.backlog();
    assert_eq!(backlog.len(), 3, "{backlog:?}");
    assert!(backlog[0].0.contains("malformed index line"));
    assert_eq!(backlog[0].1, b"not \xff\xfe an index line");
    assert!(backlog[1].0.contains("longer than"));
    assert!(backlog[2].0.contains("No such file"));
    let text = env.log_text();
    assert!(
        text.contains("not queued (unique id gone02)"),
        "the log names the unique id: {text}"
    );
}

#[test]
fn without_usable_settings_it_still_drains_the_pipe() {
    let env = Env::new();
    let mut child = env.spawn_unusable();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"line one\nline two\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.conf:1: EVENT_DIR: bad value `relative/queue`"),
        "{err}"
    );
    assert!(
        err.contains("line one") && err.contains("line two"),
        "every line is logged: {err}"
    );
    assert_eq!(
        std::fs::read(&env.index).unwrap(),
        b"line one\nline two\n",
        "and kept in the index file"
    );
}

/// Without -c (and without --queue) the collector reads the config where the package
/// puts it, /etc/modsec2sguil.conf; a missing one is named (and the pipe still drained).
#[test]
fn without_c_the_collector_reads_etc_modsec2sguil_conf() {
    let default = modsec2sguil::config::DEFAULT_PATH;
    if Path::new(default).exists() {
        modsec2sguil_e2e::skip_or_fail(
            "without_c_the_collector_reads_etc_modsec2sguil_conf",
            &format!("{default} exists here: cannot check how its absence is reported"),
        );
        return;
    }
    let env = Env::new();
    let mut child = env.spawn_as_apache(&[]);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"line one\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{default}: ")), "{err}");
    assert!(err.contains("line one"), "the line is logged: {err}");
}

/// Even without a queue, an index file whose open hangs (a FIFO nobody reads) does not
/// stop the reading: Apache's pipe is drained, every line logged.
#[test]
fn without_usable_settings_a_hung_index_file_does_not_stop_the_reading() {
    use rustix::fs::{mknodat, FileType, Mode, CWD};
    let env = Env::new();
    mknodat(CWD, &env.index, FileType::Fifo, Mode::RWXU, 0).unwrap();
    let mut child = env.spawn_unusable();
    let mut stdin = child.stdin.take().unwrap();
    // More than a pipe holds: a collector that does not read blocks this writer.
    let writer = std::thread::spawn(move || {
        for i in 0..2000 {
            writeln!(stdin, "line {i:04} {}", "x".repeat(100)).unwrap();
        }
    });
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut { stderr }, &mut text).unwrap();
        text
    });
    // (None: the collector stopped reading, and so never saw the end of input)
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), Some(2));
    writer.join().unwrap();
    let err = reader.join().unwrap();
    assert!(
        err.contains("line 0000") && err.contains("line 1999"),
        "{err}"
    );
}

#[test]
fn unknown_config_keys_are_warned_about() {
    let mut env = Env::new();
    let conf = env.config("c.conf", "set SERVER_HOST 10.1.1.1\nset BOGUS 1\n");
    let mut child = Command::new(binary("modsec-collector"))
        .arg("-c")
        .arg(&conf)
        .arg("--log-file")
        .arg(&env.log)
        .arg(&env.storage)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&env.event(5))
        .unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
    let text = env.log_text();
    assert!(text.contains("c.conf:3: unknown setting BOGUS"), "{text}");
    assert!(
        !text.contains("SERVER_HOST"),
        "modsec2sguil keys are known: {text}"
    );
    assert_eq!(env.entries().len(), 1);
}

#[test]
fn queue_on_another_filesystem_gets_copies() {
    let mut env = Env::new();
    let Some(_fs) = Tmpfs::mount(&env.queue, "4m", "queue_on_another_filesystem_gets_copies")
    else {
        return;
    };
    env.collect_one(5000, &[]);
    let entries = env.entries();
    assert_eq!(entries.len(), 1);
    let entry = env.queue.join(entries[0].to_string());
    let original = env
        .storage
        .join("www-data/20261128/20261128-0214/20261128-021431-id00001");
    assert_eq!(
        std::fs::read(&entry).unwrap(),
        std::fs::read(&original).unwrap()
    );
    assert_ne!(
        std::fs::metadata(&entry).unwrap().dev(),
        std::fs::metadata(&original).unwrap().dev()
    );
    assert_eq!(
        std::fs::read_dir(env.queue.join(".tmp")).unwrap().count(),
        0,
        "no temp file left"
    );
}

#[test]
fn full_queue_filesystem_puts_the_line_in_the_backlog() {
    let mut env = Env::new();
    let Some(_fs) = Tmpfs::mount(
        &env.queue,
        "64k",
        "full_queue_filesystem_puts_the_line_in_the_backlog",
    ) else {
        return;
    };
    // Leave about two pages free: enough for a backlog record, not for a 40 KB event.
    std::fs::write(env.queue.join("filler"), vec![0u8; 52 * 1024]).unwrap();
    let line = env.collect_one(40_000, &[]);
    assert!(env.entries().is_empty());
    let backlog = env.backlog();
    assert_eq!(backlog.len(), 1, "log: {}", env.log_text());
    assert!(backlog[0].0.contains("No space left"), "{}", backlog[0].0);
    assert_eq!(backlog[0].1, &line[..line.len() - 1]);
    assert_eq!(
        std::fs::read_dir(env.queue.join(".tmp")).unwrap().count(),
        0,
        "the partial copy is removed"
    );
}

/// A backlog record that does not fit on a full disk is taken back whole: the backlog
/// never ends in half a record (the soak test found one that `requeue --backlog`
/// could not read).
#[test]
fn a_backlog_record_cut_short_by_a_full_disk_is_taken_back() {
    let env = Env::new();
    let Some(_fs) = Tmpfs::mount(&env.state, "64k", "a_backlog_record_cut_short") else {
        return;
    };
    let state_dir = modsec2sguil::state::StateDir::open(&env.state, None).unwrap();
    state_dir.backlog(b"first line", "a reason").unwrap();
    let before = std::fs::read(env.state.join(BACKLOG_FILE)).unwrap();
    // Fill what is left; the backlog's last page keeps a few hundred bytes of room.
    let mut ballast = std::fs::File::create(env.state.join("ballast")).unwrap();
    while ballast.write_all(&[0u8; 4096]).is_ok() {}
    let _ = ballast.write_all(&[0u8; 1]);
    let long = vec![b'x'; 9000];
    let e = state_dir.backlog(&long, "does not fit").unwrap_err();
    assert!(e.to_string().contains("No space left"), "{e}");
    assert_eq!(std::fs::read(env.state.join(BACKLOG_FILE)).unwrap(), before);
    drop(ballast);
    std::fs::remove_file(env.state.join("ballast")).unwrap();
    // The space comes back once no process holds the ballast open: a child another test
    // forked meanwhile holds a copy of every open file until it execs (seen once in CI).
    wait_until(
        "the ballast's space is free again",
        Duration::from_secs(20),
        || {
            let free = |s: &libc::statvfs| s.f_bavail * s.f_frsize;
            let path = std::ffi::CString::new(env.state.as_os_str().as_encoded_bytes()).unwrap();
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            unsafe { libc::statvfs(path.as_ptr(), &mut st) == 0 && free(&st) >= 32 * 1024 }
        },
    );
    state_dir.backlog(&long, "fits now").unwrap();
    let backlog = env.backlog();
    assert_eq!(backlog.len(), 2);
    assert_eq!(backlog[1], ("fits now".to_string(), long));
}

/// A small tmpfs mounted at `at`, then made read-only; `None` (after a skip) when it
/// cannot be mounted.
fn read_only_tmpfs(at: &Path, test: &str) -> Option<Tmpfs> {
    let fs = Tmpfs::mount(at, "1m", test)?;
    assert!(Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(at)
        .status()
        .unwrap()
        .success());
    Some(fs)
}

/// A read-only queue: the line is kept in the backlog (in the state dir, which is
/// writable), with the reason.
#[test]
fn read_only_queue_puts_each_line_in_the_backlog() {
    let mut env = Env::new();
    let Some(_fs) = read_only_tmpfs(&env.queue, "read_only_queue_puts_each_line_in_the_backlog")
    else {
        return;
    };
    let line = env.collect_one(100, &["--link-mode", "copy"]);
    let text = env.log_text();
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(env.entries().is_empty());
    let backlog = env.backlog();
    assert_eq!(backlog.len(), 1, "{text}");
    assert!(
        backlog[0].0.contains("Read-only file system"),
        "{}",
        backlog[0].0
    );
    assert_eq!(backlog[0].1, &line[..line.len() - 1]);
}

/// A read-only queue and a read-only state dir: the line can be kept nowhere but in the
/// log, and is logged in full.
#[test]
fn read_only_queue_and_state_dir_log_each_line_in_full() {
    let test = "read_only_queue_and_state_dir_log_each_line_in_full";
    let mut env = Env::new();
    let Some(_fs) = read_only_tmpfs(&env.queue, test) else {
        return;
    };
    let Some(_state_fs) = read_only_tmpfs(&env.state, test) else {
        return;
    };
    let line = env.collect_one(100, &["--link-mode", "copy"]);
    let text = env.log_text();
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(
        text.contains(String::from_utf8_lossy(&line).trim_end()),
        "the line itself is in the log: {text}"
    );
}

#[test]
fn example_config_and_a_modsec2sguil_0_8_config_load_without_warnings() {
    use modsec2sguil::config::{ConfigFile, KNOWN_KEYS};
    let example = modsec2sguil_e2e::fixtures().join("../../examples/modsec2sguil.conf");
    let c = ConfigFile::load(&example).unwrap();
    assert!(c.unknown(KNOWN_KEYS).is_empty());
    // Every key is documented there, set or commented out with its default.
    let text = std::fs::read_to_string(&example).unwrap();
    for key in KNOWN_KEYS {
        assert!(
            text.contains(&format!("set {key} ")),
            "examples/modsec2sguil.conf does not mention {key}"
        );
    }
    assert_eq!(
        c.string("EVENT_DIR").as_deref(),
        Some("/var/spool/modsec2sguil")
    );
    // Every key of modsec2sguil 0.8's modsec_agent.conf, in its style.
    let old = "set DEBUG 1\nset DAEMON 0\nset SERVER_HOST 192.168.1.100\nset SERVER_PORT 7736\nset HOSTNAME webserver\n\
               set NET_GROUP webfarm\nset EVENT_DIR /nsm/queue\nset OPENSSL 0\nset RUNAS sguil\nset SENSOR_TYPE modsecurity\n\
               set PING_DELAY 300000\nset IGNORE_HTTP_CODES 404\nset HANDLE_ALL_EVENTS 0\nset SYSLOGFACILITY daemon\n\
               set SYMLINK 0\nset SYMLINK_REMOVE_ORIG 0\n";
    let c = ConfigFile::parse(old, Path::new("modsec_agent.conf")).unwrap();
    assert!(c.unknown(KNOWN_KEYS).is_empty());
}

/// LOG_FILE lies in a directory the shipper's user owns (the example config's
/// /var/log/modsec2sguil); the collector runs as root. A symbolic link, a hard link or a
/// FIFO left there in the log's place is refused (the victim unchanged, the collector
/// not blocked) and the collector goes on without the file.
#[test]
fn a_planted_log_file_is_refused_and_the_collector_still_works() {
    let logs = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(logs.path(), Some(65534), Some(65534)).unwrap();
    let victim = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(victim.path(), "root:$6$x\n").unwrap();
    let log = logs.path().join("collector.log");
    type Plant = fn(&Path, &Path);
    let plants: [(&str, Plant, &str); 3] = [
        (
            "symlink",
            |v, l| std::os::unix::fs::symlink(v, l).unwrap(),
            "is a symbolic link",
        ),
        (
            "hard link",
            |v, l| std::fs::hard_link(v, l).unwrap(),
            "has 2 hard links",
        ),
        (
            "fifo",
            |_, l| {
                use rustix::fs::{mknodat, FileType, Mode, CWD};
                mknodat(CWD, l, FileType::Fifo, Mode::RWXU, 0).unwrap()
            },
            "is a FIFO",
        ),
    ];
    // One event through a collector logging to `log`: its exit code and stderr, and how
    // many entries it queued.
    let one_event = |log: &Path| -> (Option<i32>, String, usize) {
        let mut env = Env::new();
        let mut child = Command::new(binary("modsec-collector"))
            .arg("--queue")
            .arg(&env.queue)
            .arg("--state-dir")
            .arg(&env.state)
            .arg("--log-file")
            .arg(log)
            .arg(&env.storage)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let line = env.event(10);
        child.stdin.take().unwrap().write_all(&line).unwrap();
        let code = wait_exit(&mut child, Duration::from_secs(20)); // (None: it blocked)
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (code, err, env.entries().len())
    };
    for (what, plant, why) in plants {
        let _ = std::fs::remove_file(&log);
        plant(victim.path(), &log);
        let (code, err, queued) = one_event(&log);
        assert_eq!(code, Some(0), "{what}: {err}");
        assert!(
            err.contains("cannot open the log file") && err.contains(why),
            "{what}: {err}"
        );
        assert_eq!(queued, 1, "{what}");
        assert_eq!(
            std::fs::read_to_string(victim.path()).unwrap(),
            "root:$6$x\n",
            "{what}"
        );
    }
    // A log of its own there: created 0640, and given to the directory's owner.
    std::fs::remove_file(&log).unwrap();
    let (code, err, _) = one_event(&log);
    assert_eq!(code, Some(0), "{err}");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(&log).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o640);
    assert_eq!((m.uid(), m.gid()), (65534, 65534));
    assert!(m.len() > 0);
}

#[test]
fn an_unwritable_log_file_is_reported_and_the_collector_still_works() {
    let mut env = Env::new();
    let mut child = Command::new(binary("modsec-collector"))
        .arg("--queue")
        .arg(&env.queue)
        .arg("--state-dir")
        .arg(&env.state)
        .arg("--log-file")
        .arg(env.dir.path().join("no/such/dir/collector.log"))
        .arg(&env.storage)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&env.event(10))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open the log file") && err.contains("no/such/dir/collector.log"),
        "{err}"
    );
    assert_eq!(env.entries().len(), 1);
}

#[test]
fn follow_mode_needs_its_settings_and_queues_what_the_file_gets() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("modsec_audit.log");
    std::fs::write(&index, b"").unwrap();
    // A service, not Apache's pipe: a missing setting is an error exit naming it, and
    // so is a config file that cannot be read.
    let follow_with = |conf: &Path| {
        let out = Command::new(binary("modsec-collector"))
            .arg("-c")
            .arg(conf)
            .arg("--follow")
            .arg(&index)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), err)
    };
    let empty = dir.path().join("empty.conf");
    std::fs::write(&empty, b"").unwrap();
    let (code, err) = follow_with(&empty);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("EVENT_DIR is not set"), "{err}");
    let (code, err) = follow_with(&dir.path().join("missing.conf"));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("missing.conf: "), "{err}");

    // Running: a line appended to the file is queued; SIGTERM saves the position.
    use std::io::Read;
    let mut env = Env::new();
    let mut child = Command::new(binary("modsec-collector"))
        .arg("--queue")
        .arg(&env.queue)
        .arg("--state-dir")
        .arg(&env.state)
        .arg("--storage-dir")
        .arg(&env.storage)
        .arg("--follow")
        .arg(&index)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300)); // started: from the end (empty)
    std::fs::OpenOptions::new()
        .append(true)
        .open(&index)
        .unwrap()
        .write_all(&env.event(7))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while env.entries().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(env.entries().len(), 1);
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
    let mut said = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert!(said.contains("stopped: 1 lines read, 1 queued"), "{said}");
    assert_eq!(
        state::follow_files(&env.state).len(),
        1,
        "the position is kept in the state dir"
    );
    assert!(
        !std::fs::read_dir(&env.queue)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".follow.")),
        "and not in the queue"
    );
    // status (given the state dir by its config) says how far it got.
    let conf = env.config("status.conf", "");
    let out = Command::new(binary("modsec-shipper"))
        .args(["status", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let size = std::fs::metadata(&index).unwrap().len();
    assert!(
        text.contains(&format!(
            "following:  {} at byte {size} of {size} (0 bytes not read yet)",
            index.display()
        )),
        "{text}"
    );
}

/// Peak resident memory of a process (kB), from /proc.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()
}

/// A flood of long lines (300 of 1 MiB, written as fast as the pipe
/// takes them) is read on, each cut to 64 KiB and backlogged, and memory stays bounded:
/// each line is cut, and the lines held in memory are capped in bytes
/// (`MAX_PIPELINE_BYTES`; `shared/tests/held_memory.rs` holds it to that against a
/// stalled worker, `--bench held_lines` measures the RSS).
#[test]
fn a_flood_of_long_lines_keeps_memory_bounded() {
    let env = Env::new();
    let mut child = env.spawn(&[]);
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let line = [vec![b'x'; 1 << 20], b"\n".to_vec()].concat();
    let writer = std::thread::spawn(move || {
        for _ in 0..300 {
            stdin.write_all(&line).unwrap();
        }
    });
    let mut peak = 0;
    while !writer.is_finished() {
        peak = peak.max(peak_rss_kb(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.join().unwrap();
    peak = peak.max(peak_rss_kb(pid).unwrap_or(0));
    assert_eq!(wait_exit(&mut child, Duration::from_secs(120)), Some(0));
    let backlog = env.backlog();
    assert_eq!(backlog.len(), 300);
    assert!(backlog
        .iter()
        .all(|(why, l)| why.contains("longer than") && l.len() <= 64 * 1024));
    eprintln!("collector peak RSS under 300 lines of 1 MiB: {peak} kB");
    // The lines held are capped at MAX_PIPELINE_BYTES (32 MiB) however far the collector
    // falls behind (a busy machine only makes it hold up to the cap); the bound allows
    // as much again for the program, a line being cut and the allocator (the peak is
    // 26-42 MiB). Without the cap the 300 MiB written would be held.
    let bound = (MAX_PIPELINE_BYTES / 1024 + 32 * 1024) as u64;
    assert!(peak < bound, "peak RSS {peak} kB, over {bound} kB");
}

/// A collector that is neither root nor the event file's owner (run by hand, or a
/// requeue by the shipper's user) may not open with `O_NOATIME`: it opens without, and
/// the event is queued (here as a copy: protected_hardlinks refuses a link to someone
/// else's file).
#[test]
fn a_collector_that_does_not_own_the_events_still_reads_them() {
    let mut env = Env::new();
    let line = env.event(3000); // mode 0644
                                // The web server here is `daemon` (uid 1): neither root (whose events are never
                                // queued) nor the collector's user, `nobody`.
    let event = env
        .storage
        .join("www-data/20261128/20261128-0214/20261128-021431-id00001");
    web_user::give_to(&event, 1);
    let nobody = "65534";
    let as_nobody = Command::new("setpriv")
        .args([
            "--reuid",
            nobody,
            "--regid",
            nobody,
            "--clear-groups",
            "true",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !as_nobody {
        modsec2sguil_e2e::skip_or_fail(
            "a_collector_that_does_not_own_the_events_still_reads_them",
            "cannot run a program as uid 65534 (needs root and setpriv)",
        );
        return;
    }
    let chown = |p: &Path| std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    chown(env.dir.path());
    std::fs::create_dir(&env.queue).unwrap();
    chown(&env.queue);
    let mut setpriv = Command::new("setpriv");
    setpriv
        .args(["--reuid", nobody, "--regid", nobody, "--clear-groups"])
        .arg(binary("modsec-collector"));
    let mut child = env.spawn_through(setpriv, &[]);
    child.stdin.take().unwrap().write_all(&line).unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
    let entries = env.entries();
    assert_eq!(entries.len(), 1, "{}", env.log_text());
    assert_eq!(
        std::fs::read(env.queue.join(entries[0].to_string())).unwrap(),
        std::fs::read(&event).unwrap()
    );
    assert!(env.backlog().is_empty(), "{:?}", env.backlog());
}

/// `--help` ends with the exit codes, and the collector exits with the one it lists for
/// what happened: a bad command line in Apache's pipe, and a bad config with --follow.
#[test]
fn help_lists_the_exit_codes_the_collector_exits_with() {
    let help = Command::new(binary("modsec-collector"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    let table = help
        .split("Exit codes:\n")
        .nth(1)
        .expect("--help has an exit-code table");
    let code_for = |words: &str| -> i32 {
        let row = table
            .lines()
            .filter(|l| !l.starts_with("     "))
            .find(|l| l.contains(words))
            .unwrap_or_else(|| panic!("no row with {words:?} in\n{table}"));
        row.split_whitespace().next().unwrap().parse().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let bad_line = Command::new(binary("modsec-collector"))
        .arg("--no-such-option")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(bad_line.status.code(), Some(code_for("a bad command line")));
    let conf = dir.path().join("bad.conf");
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    std::fs::write(
        &conf,
        format!(
            "set EVENT_DIR {}\nset STORAGE_DIR {}\nset STATE_DIR {}\nset LINK_MODE sideways\n",
            queue.display(),
            dir.path().display(),
            state::dir(dir.path()).display()
        ),
    )
    .unwrap();
    let bad_config = Command::new(binary("modsec-collector"))
        .arg("-c")
        .arg(&conf)
        .arg("--follow")
        .arg(dir.path().join("index"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad_config.stderr);
    assert_eq!(
        bad_config.status.code(),
        Some(code_for("with --follow: bad or missing configuration")),
        "{stderr}"
    );
    assert!(stderr.contains("LINK_MODE"), "{stderr}");
}
