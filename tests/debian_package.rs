//! The Debian package, as an admin meets it: built with the README's command, checked
//! by lintian, installed with dpkg on this machine, put to work with its own files only
//! (its Apache snippet included by a real Apache + ModSecurity on loopback, its config
//! edited for loopback and `OUTPUT stdout`), then removed and purged.
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
/// The collector's STATE_DIR (its default, which the package's config keeps).
const STATE: &str = modsec2sguil::state::DEFAULT_STATE_DIR;
const LOG_DIR: &str = "/var/log/modsec2sguil";
const STORAGE: &str = "/var/log/modsec-audit";
const INDEX: &str = "/var/log/apache2/modsec_index.log";
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
        for dir in [QUEUE, LOG_DIR, STORAGE, STATE] {
            let _ = std::fs::remove_dir_all(dir);
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
    for path in [CONF, SNIPPET, QUEUE, LOG_DIR, STORAGE, STATE] {
        if Path::new(path).exists() {
            return Some(format!("{path} exists: it would be replaced or removed"));
        }
    }
    None
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
    let (Some(lintian), Some(_), Some(analyze), Some(_)) = (
        program_or_skip("lintian", TEST),
        program_or_skip("dpkg", TEST),
        program_or_skip("systemd-analyze", TEST),
        program_or_skip("readelf", TEST),
    ) else {
        return;
    };
    let _cleanup = Cleanup {
        user_was_there: user_exists(USER),
        index_was_there: Path::new(INDEX).exists(),
    };

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
    //    snippet in a real Apache, a blocked request, the installed collector queues
    //    it, the installed shipper prints it.
    let mut conf = std::fs::read_to_string(CONF).unwrap();
    conf = set_config(&conf, "SERVER_HOST", "127.0.0.1");
    conf = set_config(&conf, "OUTPUT", "stdout");
    std::fs::write(CONF, conf).unwrap();
    let mut apache = Apache::start(&ApacheOptions {
        audit_conf: Some(SNIPPET.into()),
        ..ApacheOptions::default()
    });
    let reply = apache.get(false, "/?id=1%27%20OR%201=1--", "");
    assert_eq!(reply.status, 403, "{}", apache.error_log());
    let id = reply.unique_id.expect("X-Unique-ID");
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
    while queued() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the installed collector queued nothing in 30 s\ncollector log:\n{}\nindex:\n{}\n\
             Apache's error log:\n{}",
            std::fs::read_to_string(Path::new(LOG_DIR).join("collector.log")).unwrap_or_default(),
            std::fs::read_to_string(INDEX).unwrap_or_default(),
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = run(Command::new("/usr/bin/modsec-shipper").args(["drain", "-c", CONF]));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "drain: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    apache.stop();

    // 5. dpkg -r keeps the data and the config; dpkg --purge removes the config.
    let kept = Path::new(QUEUE).join("kept-by-remove");
    std::fs::write(&kept, "data\n").unwrap();
    ok(Command::new("dpkg").args(["-r", PACKAGE]));
    assert!(!Path::new("/usr/bin/modsec-shipper").exists());
    assert!(kept.exists(), "dpkg -r removed the queue's data");
    assert!(Path::new(CONF).exists(), "dpkg -r removed the config");
    ok(Command::new("dpkg").args(["--purge", PACKAGE]));
    assert!(!Path::new(CONF).exists(), "purge left {CONF}");
    assert!(!Path::new(SNIPPET).exists(), "purge left {SNIPPET}");
    assert!(kept.exists(), "purge removed a queue that was not empty");
    assert!(
        user_exists(USER),
        "purge removed the user (policy: it stays)"
    );

    // 6. Purge removes the directories once they are empty.
    for dir in [QUEUE, LOG_DIR, STORAGE] {
        std::fs::remove_dir_all(dir).unwrap();
    }
    ok(Command::new("dpkg").arg("-i").arg(&deb));
    ok(Command::new("dpkg").args(["--purge", PACKAGE]));
    for dir in [QUEUE, LOG_DIR, STORAGE] {
        assert!(!Path::new(dir).exists(), "purge left the empty {dir}");
    }
}
