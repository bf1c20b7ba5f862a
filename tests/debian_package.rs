//! The Debian package, as an admin meets it: built with the README's command, checked
//! by lintian, installed with dpkg on this machine, put to work with its own files only
//! (its Apache snippet enabled with a2enconf and included, after Debian's
//! modsecurity.conf, by a real Apache + ModSecurity on loopback; its config edited for
//! loopback and `OUTPUT stdout`), checked by logrotate beside Apache's own rules, then
//! removed (Apache still tests clean and reloads), reinstalled and purged (no trace in
//! /etc/apache2 or Apache's state).
//!
//! It installs into `/` and needs root, so it runs only where nothing of the package is
//! present yet (CI's fresh machine), and undoes everything it did, also when it fails.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use modsec2sguil_e2e::apache::{self, Apache, ApacheOptions};
use modsec2sguil_e2e::{program_or_skip, skip_or_fail};

const TEST: &str = "the_debian_package_installs_works_with_apache_and_removes_cleanly";
const PACKAGE: &str = "modsec2sguil";
const CONF: &str = "/etc/modsec2sguil.conf";
const SNIPPET: &str = "/etc/apache2/conf-available/modsec2sguil.conf";
const QUEUE: &str = "/var/spool/modsec2sguil";
const LOG_DIR: &str = "/var/log/modsec2sguil";
const STORAGE: &str = "/var/log/modsec-audit";
const INDEX: &str = "/var/log/apache2/modsec_index.log";
/// The collector's STATE_DIR (its default, which the package's config keeps).
const STATE_DIR: &str = modsec2sguil::state::DEFAULT_STATE_DIR;
/// The directory the shipped config's TLS_CA_FILE is in.
const CERT_DIR: &str = "/etc/modsec2sguil";
/// `a2enconf modsec2sguil`'s link.
const ENABLED: &str = "/etc/apache2/conf-enabled/modsec2sguil.conf";
/// What a2enconf and a2disconf record about a snippet (`<state>/modsec2sguil`).
const APACHE_STATE: &str = "/var/lib/apache2/conf";
const USER: &str = "sguil";
/// The lintian warnings README.md explains (section "Install from the .deb").
const EXPLAINED_WARNINGS: &[&str] = &["non-standard-file-perm", "initial-upload-closes-no-bugs"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn installed() -> bool {
    run(Command::new("dpkg-query").args(["-W", "-f", "${Status}", PACKAGE]))
        .stdout
        .starts_with(b"install ok")
}

fn user_exists(name: &str) -> bool {
    run(Command::new("getent").args(["passwd", name]))
        .status
        .success()
}

fn owner_of(path: &str) -> (String, String, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let name = |db: &str, id: u32| {
        ok(Command::new("getent").args([db, &id.to_string()]))
            .split(':')
            .next()
            .unwrap()
            .to_string()
    };
    (
        name("passwd", m.uid()),
        name("group", m.gid()),
        m.permissions().mode() & 0o7777,
    )
}

/// What the test must undo: the package, and what existed only because of it.
struct Cleanup {
    user_was_there: bool,
    index_was_there: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if installed() || Path::new(CONF).exists() {
            let _ = run(Command::new("dpkg").args(["--purge", PACKAGE]));
        }
        // None of these was there before the test (or it would not have run).
        for dir in [QUEUE, LOG_DIR, STORAGE, STATE_DIR, CERT_DIR] {
            let _ = std::fs::remove_dir_all(dir);
        }
        let _ = std::fs::remove_file(ENABLED);
        for state in apache_states() {
            let _ = std::fs::remove_file(state);
        }
        if !self.index_was_there {
            let _ = std::fs::remove_file(INDEX);
        }
        if !self.user_was_there && user_exists(USER) {
            let _ = run(Command::new("deluser").args(["--system", "--quiet", USER]));
            let _ = run(Command::new("delgroup").args(["--system", "--quiet", USER]));
        }
    }
}

/// Why this machine cannot run the test, if it cannot.
fn unavailable() -> Option<String> {
    if let Some(why) = apache::unavailable() {
        return Some(why);
    }
    if !run(Command::new("cargo").args(["deb", "--version"]))
        .status
        .success()
    {
        return Some("cargo-deb is not installed (cargo install cargo-deb --locked)".into());
    }
    if installed() {
        return Some(format!(
            "{PACKAGE} is installed here already: not ours to remove"
        ));
    }
    for path in [
        CONF, SNIPPET, QUEUE, LOG_DIR, STORAGE, STATE_DIR, CERT_DIR, ENABLED,
    ] {
        if Path::new(path).symlink_metadata().is_ok() {
            return Some(format!("{path} exists: it would be replaced or removed"));
        }
    }
    if let Some(state) = apache_states().first() {
        return Some(format!(
            "{} exists: Apache's record of an earlier snippet",
            state.display()
        ));
    }
    if !Path::new(RECOMMENDED).is_file() {
        return Some(format!(
            "{RECOMMENDED} is missing (apt-get install libapache2-mod-security2)"
        ));
    }
    None
}

/// Apache's records of the snippet (`/var/lib/apache2/conf/*/modsec2sguil`).
fn apache_states() -> Vec<PathBuf> {
    std::fs::read_dir(APACHE_STATE)
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join(PACKAGE))
                .filter(|p| p.symlink_metadata().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every name below `dir` with its type, mode and link target, sorted: what a package
/// may leave behind in a config tree.
fn listing(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let m = path.symlink_metadata().unwrap();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                let to = std::fs::read_link(&path).unwrap();
                out.push(format!("{} -> {}", path.display(), to.display()));
            } else if m.is_dir() {
                out.push(format!("{}/ {mode:o}", path.display()));
                walk(&path, out);
            } else {
                out.push(format!("{} {mode:o} {} bytes", path.display(), m.len()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Debian's modsecurity.conf, as the README has the admin make it (from
/// modsecurity.conf-recommended, rule engine on), for an Apache in `dir`: its serial log
/// moved there, its relative unicode.mapping made absolute.
const RECOMMENDED: &str = "/etc/modsecurity/modsecurity.conf-recommended";

fn modsecurity_conf(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(RECOMMENDED).unwrap();
    assert!(
        text.contains("\nSecRuleEngine DetectionOnly\n"),
        "{RECOMMENDED}"
    );
    let text = text
        .replace("\nSecRuleEngine DetectionOnly\n", "\nSecRuleEngine On\n")
        .replace(
            "/var/log/apache2/modsec_audit.log",
            &dir.join("modsec_audit.log").display().to_string(),
        )
        .replace(
            "SecUnicodeMapFile unicode.mapping",
            "SecUnicodeMapFile /etc/modsecurity/unicode.mapping",
        );
    let path = dir.join("modsecurity.conf");
    std::fs::write(&path, text).unwrap();
    path
}

/// The ModSecurity parts (letters) of an event file.
fn parts(event: &str) -> Vec<char> {
    event
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("--")?.strip_suffix("--")?;
            let (boundary, letter) = l.split_once('-')?;
            (boundary.len() == 8 && letter.len() == 1).then(|| letter.chars().next().unwrap())
        })
        .collect()
}

/// The event file below `dir` that holds `unique_id`.
fn event_file(dir: &Path, unique_id: &str) -> Option<String> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let path = e.path();
        if path.is_dir() {
            if let Some(found) = event_file(&path, unique_id) {
                return Some(found);
            }
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            if text.contains(unique_id) {
                return Some(text);
            }
        }
    }
    None
}

/// `apachectl configtest` on the system's own configuration: its exit status and what
/// it printed.
fn configtest() -> (bool, String) {
    let out = run(Command::new("apachectl").arg("configtest"));
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

/// Whether the snippet is enabled (its conf-enabled link), and what Apache's tools
/// recorded about it (`enabled_by_admin`, `disabled_by_maint`, …). Not `a2query -c`: it
/// drops a leading "mod" from the name and never finds "modsec2sguil".
fn snippet_state() -> (bool, Vec<String>) {
    let mut states: Vec<String> = apache_states()
        .iter()
        .filter_map(|p| Some(p.parent()?.file_name()?.to_string_lossy().into_owned()))
        .collect();
    states.sort();
    (Path::new(ENABLED).symlink_metadata().is_ok(), states)
}

fn is_stripped(binary: &str) -> bool {
    let sections = ok(Command::new("readelf").args(["-S", "-W", binary]));
    !sections.contains(".symtab") && !sections.contains(".debug_info")
}

fn set_config(text: &str, key: &str, value: &str) -> String {
    let mut found = false;
    let mut out: Vec<String> = text
        .lines()
        .map(|l| {
            let t = l.trim_start_matches('#');
            if t.starts_with(&format!("set {key} ")) && !found {
                found = true;
                format!("set {key} {value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        out.push(format!("set {key} {value}"));
    }
    out.join("\n") + "\n"
}

#[test]
fn the_debian_package_installs_works_with_apache_and_removes_cleanly() {
    if let Some(why) = unavailable() {
        skip_or_fail(TEST, &why);
        return;
    }
    let (Some(lintian), Some(_), Some(analyze), Some(_), Some(logrotate), Some(_), Some(_)) = (
        program_or_skip("lintian", TEST),
        program_or_skip("dpkg", TEST),
        program_or_skip("systemd-analyze", TEST),
        program_or_skip("readelf", TEST),
        program_or_skip("logrotate", TEST),
        program_or_skip("apachectl", TEST),
        program_or_skip("a2enconf", TEST),
    ) else {
        return;
    };
    let _cleanup = Cleanup {
        user_was_there: user_exists(USER),
        index_was_there: Path::new(INDEX).exists(),
    };
    // What purge must give back exactly.
    let apache_before = listing(Path::new("/etc/apache2"));
    let (clean, said) = configtest();
    assert!(clean, "apachectl configtest fails before the test: {said}");

    // 1. The README's command builds it.
    // cargo-deb prints the package's path last (target/debian/ of the target directory).
    let built = ok(Command::new("sh")
        .arg(root().join("shipper/debian/build-deb.sh"))
        .current_dir(root()));
    let deb = PathBuf::from(built.lines().last().expect("the .deb's path").trim());
    assert!(
        deb.is_file() && deb.parent().is_some_and(|d| d.ends_with("debian")),
        "{built}"
    );
    eprintln!(
        "debian_package: {} ({} bytes)",
        deb.display(),
        std::fs::metadata(&deb).unwrap().len()
    );

    // 2. lintian: no error, and only the warnings the README explains.
    let out = run(Command::new(&lintian).arg(&deb));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("lintian:\n{report}");
    for line in report.lines() {
        assert!(!line.starts_with("E: "), "lintian error: {line}");
        if let Some(rest) = line.strip_prefix("W: ") {
            let tag = rest.split_whitespace().nth(1).unwrap_or("");
            assert!(
                EXPLAINED_WARNINGS.contains(&tag),
                "lintian warning the README does not explain: {line}"
            );
        }
    }

    // 3. dpkg -i: files, user, directories, modes; nothing enabled or started.
    ok(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(installed());
    assert!(user_exists(USER));
    for bin in ["/usr/bin/modsec-collector", "/usr/bin/modsec-shipper"] {
        assert!(is_stripped(bin), "{bin} is not stripped");
        let size = std::fs::metadata(bin).unwrap().len();
        eprintln!("debian_package: {bin} {size} bytes");
    }
    for f in [
        "/usr/share/man/man1/modsec-shipper-drain.1.gz",
        "/usr/share/man/man1/modsec-collector.1.gz",
        "/usr/share/man/man5/modsec2sguil.conf.5.gz",
        "/usr/share/bash-completion/completions/modsec-shipper",
        "/usr/share/zsh/vendor-completions/_modsec-collector",
        "/usr/share/fish/vendor_completions.d/modsec-shipper.fish",
        "/usr/share/doc/modsec2sguil/copyright",
        "/usr/share/doc/modsec2sguil/examples/cron.d/modsec-shipper",
        "/usr/share/doc/modsec2sguil/examples/sguil/sguild.reports",
        "/etc/logrotate.d/modsec2sguil",
        SNIPPET,
    ] {
        assert!(Path::new(f).is_file(), "{f} is not installed");
    }
    let conffiles = ok(Command::new("dpkg-query").args(["-W", "-f", "${Conffiles}", PACKAGE]));
    for f in [CONF, SNIPPET, "/etc/logrotate.d/modsec2sguil"] {
        assert!(conffiles.contains(f), "{f} is not a conffile: {conffiles}");
    }
    assert_eq!(owner_of(CONF), ("root".into(), USER.into(), 0o640));
    assert_eq!(owner_of(QUEUE), (USER.into(), USER.into(), 0o750));
    assert_eq!(owner_of(LOG_DIR), (USER.into(), USER.into(), 0o750));
    assert_eq!(
        owner_of(STORAGE),
        ("www-data".into(), "www-data".into(), 0o750)
    );
    // STATE_DIR: the root collector's own state, readable by the shipper's group.
    assert_eq!(owner_of(STATE_DIR), ("root".into(), USER.into(), 0o750));
    // The shipped config's TLS_CA_FILE can be put where it says.
    let shipped = std::fs::read_to_string(CONF).unwrap();
    let ca_file = shipped
        .lines()
        .find_map(|l| l.strip_prefix("set TLS_CA_FILE "))
        .expect("the shipped config sets TLS_CA_FILE");
    assert_eq!(
        Path::new(ca_file.trim()).parent(),
        Some(Path::new(CERT_DIR))
    );
    assert_eq!(owner_of(CERT_DIR), ("root".into(), "root".into(), 0o755));
    assert!(
        !Path::new("/etc/apache2/conf-enabled/modsec2sguil.conf").exists(),
        "the Apache snippet was enabled"
    );
    for wants in ["multi-user.target.wants", "timers.target.wants"] {
        for unit in [
            "modsec-shipper.service",
            "modsec-shipper-drain.timer",
            "modsec-collector-follow.service",
        ] {
            let link = Path::new("/etc/systemd/system").join(wants).join(unit);
            assert!(!link.exists(), "{} was enabled", link.display());
        }
    }
    let units: Vec<String> = [
        "modsec-shipper.service",
        "modsec-shipper-drain.service",
        "modsec-shipper-drain.timer",
        "modsec-collector-follow.service",
        "modsec2sguil-metrics.service",
        "modsec2sguil-metrics.timer",
    ]
    .iter()
    .map(|u| format!("/lib/systemd/system/{u}"))
    .collect();
    for u in &units {
        let text = std::fs::read_to_string(u).unwrap();
        assert!(!text.contains("/usr/local/"), "{u} names /usr/local");
    }
    let verify = run(Command::new(&analyze).arg("verify").args(&units));
    let complaints = String::from_utf8_lossy(&verify.stderr).into_owned();
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {complaints}"
    );
    // systemd-analyze also prints about other units of this machine: only ours count.
    let ours: Vec<&str> = complaints
        .lines()
        .filter(|l| l.contains("modsec"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify: {ours:?}");

    // 4. Its own files at work: the config edited for loopback and OUTPUT stdout, the
    //    snippet enabled as the README says and included, after Debian's
    //    modsecurity.conf (SecAuditLogParts ABDEFHIJZ, as Debian's apache2.conf reads
    //    mods-enabled/ before conf-enabled/), by a real Apache; a blocked request, the
    //    installed collector queues it, the installed shipper prints it.
    let mut conf = std::fs::read_to_string(CONF).unwrap();
    conf = set_config(&conf, "SERVER_HOST", "127.0.0.1");
    conf = set_config(&conf, "OUTPUT", "stdout");
    std::fs::write(CONF, conf).unwrap();
    // `status` without -c reads the installed config.
    let status = ok(Command::new("/usr/bin/modsec-shipper").arg("status"));
    assert!(
        status.contains(&format!("queue:      {QUEUE}\n")),
        "status without -c: {status}"
    );
    eprintln!("debian_package: modsec-shipper status:\n{status}");
    // Nothing queued yet, and Debian's ModSecurity leaves its rule engine off until the
    // admin makes modsecurity.conf (README, "Install from the .deb", step 3): status
    // says so.
    if !Path::new("/etc/modsecurity/modsecurity.conf").exists() {
        assert!(
            status.contains("note:       /etc/modsecurity/modsecurity.conf does not exist"),
            "status does not say the rule engine is off: {status}"
        );
    }
    ok(Command::new("a2enconf").arg(PACKAGE));
    assert_eq!(
        snippet_state(),
        (true, vec!["enabled_by_admin".to_string()]),
        "a2enconf"
    );
    // configtest starts the collector (the piped audit log), which gets no line: it
    // must say nothing on the admin's terminal.
    let (clean, said) = configtest();
    assert!(
        clean,
        "apachectl configtest with the snippet enabled: {said}"
    );
    assert!(
        !said.contains("modsec-collector"),
        "configtest printed the collector's lines: {said}"
    );
    let work = tempfile::tempdir().unwrap();
    let wrapper = work.path().join("modsec.conf");
    std::fs::write(
        &wrapper,
        format!(
            "Include \"{}\"\nIncludeOptional \"{ENABLED}\"\n",
            modsecurity_conf(work.path()).display()
        ),
    )
    .unwrap();
    let mut apache = Apache::start(&ApacheOptions {
        audit_conf: Some(wrapper),
        ..ApacheOptions::default()
    });
    let reply = apache.get(false, "/?id=1%27%20OR%201=1--", "");
    assert_eq!(reply.status, 403, "{}", apache.error_log());
    let id = reply.unique_id.expect("X-Unique-ID");
    // Passed, but logged: the CRS warns about a numeric Host (920350), and that rule
    // adds E, the response body, to the event (ctl:auditLogParts=+E).
    let warned = apache.request(
        false,
        b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: modsec2sguil-test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(warned.status, 200, "{}", apache.error_log());
    let warned_id = warned.unique_id.expect("X-Unique-ID");
    let queued = || -> usize {
        std::fs::read_dir(QUEUE)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("modsec.log."))
                })
                .count()
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while queued() != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the installed collector did not queue both events in 30 s\ncollector log:\n{}\nindex:\n{}\n\
             Apache's error log:\n{}",
            std::fs::read_to_string(Path::new(LOG_DIR).join("collector.log")).unwrap_or_default(),
            std::fs::read_to_string(INDEX).unwrap_or_default(),
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The snippet's parts (ABCFHZ; C, the request body, a GET has none), not
    // modsecurity.conf's (ABDEFHIJZ), and not the E that CRS rules add.
    for id in [&id, &warned_id] {
        let event = event_file(Path::new(STORAGE), id).expect("the event file");
        assert_eq!(parts(&event), ['A', 'B', 'F', 'H', 'Z'], "{event}");
    }
    // The shipper drops to RUNAS (the package's `sguil`): seen in /proc while the drain
    // waits for the queue lock the test holds (it says so once it works on the queue,
    // as RUNAS), and in the owner of everything it writes in the queue.
    let runas_uid: u32 = ok(Command::new("id").args(["-u", USER]))
        .trim()
        .parse()
        .unwrap();
    let lock = Path::new(QUEUE).join(".lock");
    if !lock.exists() {
        std::fs::write(&lock, "").unwrap();
        std::os::unix::fs::chown(&lock, Some(runas_uid), None).unwrap();
    }
    let held = std::fs::File::open(&lock).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    // And an entry that is no event, for failed/ and a reason file.
    let poison = "modsec.log.1790000000.000001";
    std::fs::write(Path::new(QUEUE).join(poison), "not an event\n").unwrap();
    let mut drain = Command::new("/usr/bin/modsec-shipper")
        .args(["drain", "--wait", "-c", CONF])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = drain.stderr.take().unwrap();
    let (said_tx, said_rx) = std::sync::mpsc::channel();
    let err_reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            let _ = said_tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    loop {
        // A backstop only: it says so at once.
        let line = said_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("drain --wait never said it waits for the lock");
        if line.contains("waiting for it") {
            break;
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", drain.id())).unwrap();
    let uids: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect();
    assert_eq!(
        uids,
        vec![runas_uid; 4],
        "drain's real, effective, saved and fs uid"
    );
    drop(held);
    let out = drain.wait_with_output().unwrap();
    let errors = err_reader.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "drain: {errors}\n{stdout}");
    let reason = format!("failed/{poison}.reason");
    for name in [
        ".journal",
        ".delivered",
        ".last-run",
        ".lock",
        "failed",
        &reason,
    ] {
        let m = std::fs::metadata(Path::new(QUEUE).join(name))
            .unwrap_or_else(|e| panic!("{QUEUE}/{name}: {e}"));
        assert_eq!(m.uid(), runas_uid, "{QUEUE}/{name} is uid {}'s", m.uid());
    }
    let event = stdout
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("drain printed no event {id}: {stdout}"));
    let json: serde_json::Value = serde_json::from_str(event).unwrap();
    assert!(
        json["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("MSc 403 "),
        "{event}"
    );
    assert_eq!(queued(), 0, "the shipped entry is removed");
    let index = std::fs::read_to_string(INDEX).unwrap();
    assert!(index.contains(&id), "the index file keeps the line");

    // logrotate, as cron runs it every night, with Apache's rule for
    // /var/log/apache2/*.log (which holds the index file now) present: each file has
    // one rule.
    let out = run(Command::new(&logrotate).args(["-d", "/etc/logrotate.conf"]));
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !said.contains("duplicate log entry"),
        "logrotate -d: {said}"
    );
    assert!(
        out.status.success(),
        "logrotate -d exits {}: {said}",
        out.status
    );
    eprintln!(
        "debian_package: logrotate -d /etc/logrotate.conf exits {}",
        out.status
    );

    // 5. dpkg -r keeps the data and the config, and disables the snippet before the
    //    collector goes: Apache still tests clean and reloads (logrotate's nightly
    //    reload would otherwise take it down).
    let kept = Path::new(QUEUE).join("kept-by-remove");
    std::fs::write(&kept, "data\n").unwrap();
    ok(Command::new("dpkg").args(["-r", PACKAGE]));
    assert!(!Path::new("/usr/bin/modsec-shipper").exists());
    assert!(kept.exists(), "dpkg -r removed the queue's data");
    assert!(Path::new(CONF).exists(), "dpkg -r removed the config");
    assert_eq!(
        snippet_state(),
        (false, vec!["disabled_by_maint".to_string()]),
        "dpkg -r must disable the snippet (as a maintainer script)"
    );
    let (clean, said) = configtest();
    assert!(clean, "apachectl configtest after dpkg -r: {said}");
    let restarts = |log: &str| log.matches("resuming normal operations").count();
    let before = restarts(&apache.error_log());
    apache.signal("-USR1");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while apache.running() && restarts(&apache.error_log()) == before {
        assert!(
            std::time::Instant::now() < deadline,
            "no graceful restart in 30 s: {}",
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        apache.running(),
        "Apache did not survive a reload after dpkg -r: {}",
        apache.error_log()
    );
    assert_eq!(apache.get(false, "/", "").status, 200);
    apache.stop();

    // Back again: the snippet the admin had enabled is enabled again; then removed.
    ok(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(
        snippet_state(),
        (true, vec!["enabled_by_maint".to_string()]),
        "reinstalling must enable the snippet again"
    );
    let (clean, said) = configtest();
    assert!(clean, "apachectl configtest after reinstalling: {said}");
    ok(Command::new("dpkg").args(["-r", PACKAGE]));

    // Purge removes the config and every trace in Apache's config and state.
    ok(Command::new("dpkg").args(["--purge", PACKAGE]));
    assert!(!Path::new(CONF).exists(), "purge left {CONF}");
    assert!(!Path::new(SNIPPET).exists(), "purge left {SNIPPET}");
    assert_eq!(
        listing(Path::new("/etc/apache2")),
        apache_before,
        "purge left /etc/apache2 changed"
    );
    assert_eq!(
        apache_states(),
        Vec::<PathBuf>::new(),
        "purge left Apache's records"
    );
    let (clean, said) = configtest();
    assert!(clean, "apachectl configtest after purge: {said}");
    assert!(kept.exists(), "purge removed a queue that was not empty");
    assert!(
        user_exists(USER),
        "purge removed the user (policy: it stays)"
    );

    // 6. Purge removes the directories once they are empty (the collector's state dir
    // holds what it queued by now: data, kept by purge like the queue).
    for dir in [QUEUE, LOG_DIR, STORAGE, STATE_DIR] {
        std::fs::remove_dir_all(dir).unwrap();
    }
    ok(Command::new("dpkg").arg("-i").arg(&deb));
    ok(Command::new("dpkg").args(["--purge", PACKAGE]));
    for dir in [QUEUE, LOG_DIR, STORAGE, STATE_DIR, CERT_DIR] {
        assert!(!Path::new(dir).exists(), "purge left the empty {dir}");
    }
}
