//! The files in `examples/` work as shipped: the cron line runs, the systemd units
//! verify and stay confined, logrotate rotates the index under a running collector, the
//! man pages render, and a modsec2sguil 0.8 config drives the shipper unchanged.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use modsec2sguil_e2e::shipper::fill_queue;
use modsec2sguil_e2e::{binary, program_or_skip, skip_or_fail, state};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(examples().join(rel)).unwrap()
}

#[test]
fn the_cron_line_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    let conf = dir.path().join("modsec2sguil.conf");
    std::fs::write(
        &conf,
        format!(
            "set EVENT_DIR {}\nset HOSTNAME websrv\nset NET_GROUP web\nset SERVER_HOST 127.0.0.1\nset OPENSSL 0\n",
            queue.display()
        ),
    )
    .unwrap();
    let cron = read("cron/modsec-shipper");
    let line = cron
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .expect("a cron line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[..5], ["*"; 5], "every minute: {line}");
    assert_eq!(fields[5], "sguil", "the user field of /etc/cron.d: {line}");
    assert_eq!(fields[6], "/usr/local/bin/modsec-shipper", "{line}");
    let args: Vec<String> = fields[7..]
        .iter()
        .map(|a| {
            if *a == "/etc/modsec2sguil.conf" {
                conf.to_str().unwrap().to_string()
            } else {
                a.to_string()
            }
        })
        .collect();
    let out = Command::new(binary("modsec-shipper"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("the queue is empty"));
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let Some(analyze) = program_or_skip(
        "systemd-analyze",
        "the_systemd_units_pass_systemd_analyze_verify",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shipper = binary("modsec-shipper");
    let collector = binary("modsec-collector");
    let mut units = Vec::new();
    for e in std::fs::read_dir(examples().join("systemd")).unwrap() {
        let e = e.unwrap();
        // The binary where the unit says it is installed is this build.
        let text = std::fs::read_to_string(e.path())
            .unwrap()
            .replace("/usr/local/bin/modsec-shipper", shipper.to_str().unwrap())
            .replace(
                "/usr/local/bin/modsec-collector",
                collector.to_str().unwrap(),
            );
        let path = dir.path().join(e.file_name());
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    units.sort();
    assert_eq!(
        units.len(),
        6,
        "the shipper daemon's service, a drain service with its timer, the v3 follower, \
         the metrics service with its timer"
    );
    let out = Command::new(analyze)
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    // Unknown keys are only warnings: none may name our units.
    let ours: Vec<&str> = said
        .lines()
        .filter(|l| l.contains(dir.path().to_str().unwrap()))
        .collect();
    assert!(ours.is_empty(), "{said}");
    for unit in &units {
        let text = std::fs::read_to_string(unit).unwrap();
        if unit.extension().is_some_and(|e| e == "service") {
            // The metrics service only reads the queue; it writes node_exporter's dir.
            let writes = if unit.ends_with("modsec2sguil-metrics.service") {
                "ReadWritePaths=/var/lib/prometheus/node-exporter\n"
            } else {
                "ReadWritePaths=/var/spool/modsec2sguil"
            };
            for hardening in ["NoNewPrivileges=yes", "ProtectSystem=strict", writes] {
                assert!(text.contains(hardening), "{}: {hardening}", unit.display());
            }
        }
    }
}

/// The most exposure `systemd-analyze security` may rate a service of ours (0 to 10; the
/// units are at 1.2, before their confinement 6.7 to 6.8). `--threshold` takes it times ten.
const MAX_EXPOSURE: f64 = 2.5;

#[test]
fn the_systemd_services_are_confined_per_systemd_analyze_security() {
    const TEST: &str = "the_systemd_services_are_confined_per_systemd_analyze_security";
    let Some(analyze) = program_or_skip("systemd-analyze", TEST) else {
        return;
    };
    // --offline (rating unit files, not loaded units) came with systemd 250.
    let help = Command::new(&analyze).arg("--help").output().unwrap();
    if !String::from_utf8_lossy(&help.stdout).contains("--offline") {
        skip_or_fail(
            TEST,
            "this systemd-analyze has no --offline (systemd < 250)",
        );
        return;
    }
    let mut services: Vec<PathBuf> = std::fs::read_dir(examples().join("systemd"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    services.sort();
    assert_eq!(
        services.len(),
        4,
        "the daemon, the drain, the v3 follower, the metrics writer"
    );
    // The command .ci/run runs too.
    let out = Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--threshold={}", (MAX_EXPOSURE * 10.0) as u32))
        .args(&services)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // "→ Overall exposure level for modsec-shipper.service: 1.2 OK 🙂", one per unit.
    let mut rated = Vec::new();
    for line in said.lines() {
        if let Some(rest) = line.split("Overall exposure level for ").nth(1) {
            let (unit, verdict) = rest.split_once(": ").unwrap();
            let score: f64 = verdict.split_whitespace().next().unwrap().parse().unwrap();
            eprintln!("systemd-analyze security: {unit} {score}");
            rated.push((unit.to_string(), score));
        }
    }
    let names: Vec<String> = services
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        rated.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(),
        names,
        "every service rated: {said}"
    );
    let over: Vec<&(String, f64)> = rated.iter().filter(|(_, s)| *s > MAX_EXPOSURE).collect();
    assert!(
        over.is_empty(),
        "exposure above {MAX_EXPOSURE}: {over:?}; each line marked ✗ below is a setting the unit lacks:\n{said}"
    );
    assert!(out.status.success(), "--threshold failed the units: {said}");
}

#[test]
fn logrotate_rotates_the_index_and_the_collector_writes_the_new_one() {
    let Some(logrotate) = program_or_skip(
        "logrotate",
        "logrotate_rotates_the_index_and_the_collector_writes_the_new_one",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    std::fs::create_dir_all(logs.join("modsec2sguil")).unwrap();
    let conf = dir.path().join("logrotate.conf");
    // The shipped rules, with the commented one for an index file no other rule covers
    // taken in (Debian's apache2 rule rotates the snippet's index file by reloading
    // Apache, which a test cannot do to the system's Apache).
    let text = uncomment_stanza(&read("logrotate/modsec2sguil"), "/var/log/modsec_index.log")
        .replace(
            "/var/log/modsec_index.log",
            &format!("{}/modsec_index.log", logs.display()),
        )
        .replace(
            "/var/log/modsec2sguil/",
            &format!("{}/modsec2sguil/", logs.display()),
        )
        .replace("/var/log/nginx/", &format!("{}/nginx-", logs.display()))
        .replace("create 0640 root adm", "create 0640");
    std::fs::write(&conf, text).unwrap();
    // libmodsecurity 3's index, which nginx keeps open: copied and truncated in place.
    let v3_index = logs.join("nginx-modsec_index");
    std::fs::write(&v3_index, "a v3 index line\n").unwrap();
    let v3_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&v3_index).unwrap());
    let index = logs.join("modsec_index.log");
    let storage = dir.path().join("audit");
    std::fs::create_dir_all(&storage).unwrap();
    let mut collector = Command::new(binary("modsec-collector"))
        .arg("--queue")
        .arg(dir.path().join("queue"))
        .arg("--state-dir")
        .arg(state::dir(dir.path()))
        .arg(&storage)
        .arg(&index)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = collector.stdin.take().unwrap();
    let line = |n: u32| {
        format!("lab.example 127.0.0.1 - - [28/Nov/2026:02:14:31 +0000] \"GET /{n} HTTP/1.1\" 403 1 \"-\" \"-\" id{n} \"-\" /x/{n} 0 1 md5:00000000000000000000000000000000 \n")
    };
    let wait_within = |path: &Path, text: &str, within: Duration| {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if std::fs::read_to_string(path)
                .unwrap_or_default()
                .contains(text)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };
    let wait_for = |path: &Path, text: &str| wait_within(path, text, Duration::from_secs(10));
    stdin.write_all(line(1).as_bytes()).unwrap();
    assert!(wait_for(&index, "id1 "));
    let out = Command::new(&logrotate)
        .arg("--force")
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v3_after = std::fs::metadata(&v3_index).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::ino(&v3_after),
            v3_after.len()
        ),
        (v3_inode, 0),
        "the same file, truncated"
    );
    assert_eq!(
        std::fs::read_to_string(logs.join("nginx-modsec_index.1")).unwrap(),
        "a v3 index line\n",
        "an uncompressed copy, for the follower"
    );
    assert!(
        wait_for(&logs.join("modsec_index.log.1"), "id1 "),
        "rotated, not compressed yet (delaycompress)"
    );
    // postrotate's SIGHUP made the collector reopen: the next line is in the new file.
    // (The signal may land a moment after logrotate returns: a line written before it
    // goes to the old file, so each line is given a moment, and then the next one is
    // sent; waiting the whole deadline on the first made this test fail in .ci/run.)
    let until = Instant::now() + Duration::from_secs(10);
    let mut n = 2;
    loop {
        stdin.write_all(line(n).as_bytes()).unwrap();
        if wait_within(&index, &format!("id{n} "), Duration::from_millis(500)) {
            break;
        }
        assert!(
            Instant::now() < until,
            "the collector never reopened {}",
            index.display()
        );
        n += 1;
    }
    drop(stdin);
    assert!(collector.wait().unwrap().success());
}

/// `text` with the commented-out stanza for `path` (`#<path> {` … `#}`) taken in.
fn uncomment_stanza(text: &str, path: &str) -> String {
    let mut inside = false;
    let mut found = false;
    let out: Vec<&str> = text
        .lines()
        .map(|l| {
            if l == format!("#{path} {{") {
                inside = true;
                found = true;
            }
            let line = if inside { &l[1..] } else { l };
            if inside && l == "#}" {
                inside = false;
            }
            line
        })
        .collect();
    assert!(found, "no commented stanza for {path}");
    out.join("\n") + "\n"
}

/// Debian's own rules for Apache (`/var/log/apache2/*.log`) and nginx
/// (`/var/log/nginx/*.log`) beside ours: every file that exists is rotated by exactly one
/// rule, or logrotate stops with "duplicate log entry" and rotates nothing of that file
/// every night. The three rule files are read with `/var/log` moved into a temp dir where
/// each log of ours exists (a glob rule only counts the files it matches).
#[test]
fn each_log_file_has_one_logrotate_rule_beside_debians_apache2_and_nginx_rules() {
    const TEST: &str =
        "each_log_file_has_one_logrotate_rule_beside_debians_apache2_and_nginx_rules";
    let Some(logrotate) = program_or_skip("logrotate", TEST) else {
        return;
    };
    let mut theirs = Vec::new();
    for (rules, package) in [("apache2", "apache2"), ("nginx", "nginx")] {
        let path = Path::new("/etc/logrotate.d").join(rules);
        match std::fs::read_to_string(&path) {
            Ok(text) => theirs.push(text),
            Err(e) => {
                modsec2sguil_e2e::skip_or_fail(
                    TEST,
                    &format!("{}: {e} (apt-get install {package})", path.display()),
                );
                return;
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    let moved = |text: &str| text.replace("/var/log/", &format!("{}/", logs.display()));
    let confd = dir.path().join("logrotate.d");
    std::fs::create_dir_all(&confd).unwrap();
    for (name, text) in [
        ("apache2", theirs[0].as_str()),
        ("nginx", theirs[1].as_str()),
        ("modsec2sguil", &read("logrotate/modsec2sguil")),
    ] {
        std::fs::write(confd.join(name), moved(text)).unwrap();
    }
    // The files as an installed system has them: the snippet's index file (and the
    // collector.conf example's INDEX_FILE), the nginx follower's (the follow unit's and
    // FOLLOW_INDEX's), the programs' logs, and Apache's and nginx's own.
    let conf_example = read("modsec2sguil.conf");
    let snippet = read("apache-modsecurity.conf");
    let mut ours: Vec<String> = Vec::new();
    for (text, key) in [
        (&conf_example, "INDEX_FILE"),
        (&conf_example, "FOLLOW_INDEX"),
    ] {
        let value = text
            .lines()
            .find_map(|l| {
                l.trim_start_matches('#')
                    .strip_prefix(&format!("set {key} "))
            })
            .unwrap_or_else(|| panic!("examples/modsec2sguil.conf names no {key}"));
        ours.push(value.trim().to_string());
    }
    assert!(
        snippet.contains(&format!(" {}\"", ours[0])),
        "the snippet's index file is INDEX_FILE's {}",
        ours[0]
    );
    ours.extend([
        "/var/log/modsec2sguil/collector.log".to_string(),
        "/var/log/modsec2sguil/shipper.log".to_string(),
        "/var/log/apache2/error.log".to_string(),
        "/var/log/nginx/access.log".to_string(),
    ]);
    for file in &ours {
        let moved = moved(file);
        let path = Path::new(&moved);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "a line\n").unwrap();
    }
    let main = dir.path().join("logrotate.conf");
    std::fs::write(&main, format!("include {}\n", confd.display())).unwrap();
    let out = Command::new(&logrotate)
        .arg("-d")
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg(&main)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !said.contains("duplicate log entry"),
        "a file is rotated by two rules:\n{said}"
    );
    assert!(out.status.success(), "logrotate -d: {}\n{said}", out.status);
    // And each of ours is rotated by a rule (ours, or Apache's for its index file).
    for file in &ours[..4] {
        assert!(
            said.contains(&format!("considering log {}", moved(file))),
            "no rule rotates {file}:\n{said}"
        );
    }
}

#[test]
fn man_pages_and_completions_are_generated_and_render() {
    let dir = tempfile::tempdir().unwrap();
    for (bin, args) in [
        ("modsec-shipper", ["generate-docs"]),
        ("modsec-collector", ["--generate-docs"]),
    ] {
        let out = Command::new(binary(bin))
            .args(args)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let man1 = dir.path().join("man/man1");
    let mut pages: Vec<String> = std::fs::read_dir(&man1)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "modsec-collector.1",
            "modsec-shipper-drain.1",
            "modsec-shipper-requeue.1",
            "modsec-shipper-run.1",
            "modsec-shipper-show.1",
            "modsec-shipper-status.1",
            "modsec-shipper.1"
        ]
    );
    for c in [
        "modsec-shipper.bash",
        "_modsec-shipper",
        "modsec-shipper.fish",
        "modsec-collector.bash",
    ] {
        let text = std::fs::read_to_string(dir.path().join("completions").join(c)).unwrap();
        assert!(text.contains("modsec-"), "{c}");
    }
    let requeue = std::fs::read_to_string(man1.join("modsec-shipper-requeue.1")).unwrap();
    assert!(
        requeue.contains("dry\\-run") && requeue.contains(".TH"),
        "{requeue}"
    );
    let Some(man) = program_or_skip("man", "man_pages_and_completions_are_generated_and_render")
    else {
        return;
    };
    for page in &pages {
        let out = Command::new(&man)
            .args(["--warnings", "-l"])
            .arg(man1.join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.trim().is_empty(),
            "{page}: {err}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("NAME"),
            "{page}"
        );
    }
    // modsec2sguil.conf(5), from the table of keys: renders without a warning, and
    // shows every key with its default and the programs that read it.
    let conf = dir.path().join("man/man5/modsec2sguil.conf.5");
    let out = Command::new(&man)
        .args(["--warnings", "-l"])
        .arg(&conf)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("MODSEC2SGUIL.CONF(5)") && shown.contains("StrictModes"));
    let lines: Vec<&str> = shown.lines().map(str::trim).collect();
    for key in modsec2sguil::config::KEYS {
        let at = lines
            .iter()
            .position(|l| l.split_whitespace().next() == Some(key.name))
            .unwrap_or_else(|| panic!("modsec2sguil.conf(5) does not list {}", key.name));
        let entry = lines[at..].join(" ");
        assert!(
            entry.contains(&format!("Read by: {}.", key.read_by.programs())),
            "{}: {entry}",
            key.name
        );
    }
}

/// What `man` shows, not only that it renders: the exit codes stay a list (each code
/// beside its meaning, its continuation lines indented under the meaning, not refilled
/// into the text), the requeue examples stay one command a line, and every page named
/// `modsec-…(1)` exists (clap's `help` subcommand has none).
#[test]
fn man_pages_lay_out_lists_and_examples_and_name_only_pages_that_exist() {
    const TEST: &str = "man_pages_lay_out_lists_and_examples_and_name_only_pages_that_exist";
    let dir = tempfile::tempdir().unwrap();
    for (bin, arg) in [
        ("modsec-shipper", "generate-docs"),
        ("modsec-collector", "--generate-docs"),
    ] {
        let out = Command::new(binary(bin))
            .arg(arg)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let man1 = dir.path().join("man/man1");
    let pages: Vec<String> = std::fs::read_dir(&man1)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for page in &pages {
        let roff = std::fs::read_to_string(man1.join(page)).unwrap();
        let plain = roff.replace("\\-", "-");
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("(1)") {
            let name = rest[..at]
                .rsplit(|c: char| c.is_whitespace())
                .next()
                .unwrap_or("");
            if name.starts_with("modsec-") {
                assert!(
                    pages.contains(&format!("{name}.1")),
                    "{page} names {name}(1), which does not exist"
                );
            }
            rest = &rest[at + 3..];
        }
    }
    let Some(man) = program_or_skip("man", TEST) else {
        return;
    };
    let render = |page: &str, width: u32| -> String {
        let out = Command::new(&man)
            .args(["--warnings", "-l"])
            .arg(man1.join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", width.to_string())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let meanings = ["done", "the", "bad", "bad", "sguild", "the"];
    for page in [
        "modsec-shipper.1",
        "modsec-shipper-drain.1",
        "modsec-shipper-run.1",
    ] {
        for width in [80, 60] {
            let text = render(page, width);
            let indent = |l: &str| l.len() - l.trim_start().len();
            // The list: from the heading to the first paragraph at the codes' indentation
            // that follows a blank line once the last code's line was seen.
            let mut block: Vec<&str> = Vec::new();
            let (mut last_seen, mut after_blank, mut codes_at) = (false, false, None);
            for l in text
                .lines()
                .skip_while(|l| !l.contains("Exit codes of drain and run:"))
                .skip(1)
            {
                if l.trim().is_empty() {
                    after_blank = true;
                    continue;
                }
                let first = l.split_whitespace().next().unwrap_or("");
                if first == "0" && codes_at.is_none() {
                    codes_at = Some(indent(l));
                }
                let ends = last_seen && after_blank && codes_at.is_some_and(|c| indent(l) <= c);
                if ends && first != "5" {
                    break;
                }
                last_seen |= first == "5";
                after_blank = false;
                block.push(l);
            }
            let mut code_indent = None;
            for (code, meaning) in meanings.iter().enumerate() {
                let line = block
                    .iter()
                    .find(|l| {
                        let mut words = l.split_whitespace();
                        words.next() == Some(&code.to_string()) && words.next() == Some(meaning)
                    })
                    .unwrap_or_else(|| {
                        panic!("{page} at {width} columns: no line for exit code {code}:\n{text}")
                    });
                code_indent = Some(indent(line));
            }
            let code_indent = code_indent.unwrap();
            for l in &block {
                let first = l.split_whitespace().next().unwrap_or("");
                let is_code = first.len() == 1 && first.chars().all(|c| c.is_ascii_digit());
                assert!(
                    is_code || indent(l) > code_indent,
                    "{page} at {width} columns: `{l}` is not under its meaning:\n{}",
                    block.join("\n")
                );
            }
        }
    }
    let requeue = render("modsec-shipper-requeue.1", 80);
    for example in [
        "modsec-shipper requeue -c /etc/modsec2sguil.conf --failed --all --dry-run",
        "modsec-shipper requeue -c /etc/modsec2sguil.conf --backlog",
    ] {
        assert!(
            requeue.lines().any(|l| l.trim() == example),
            "the example `{example}` is not a line of its own:\n{requeue}"
        );
    }
}

/// modsec2sguil 0.8's `modsec_agent.conf`, every key in its style, drives `drain` to the
/// real sguild (started from `SGUIL_SRC`, `tests/support/real_sguild.rs`; skipped through
/// `skip_or_fail` without it) over 0.8's plaintext (`OPENSSL 0`): every event is stored.
#[test]
fn a_modsec2sguil_0_8_config_drives_the_shipper_unchanged() {
    use modsec2sguil_e2e::real_sguild::RealSguild;
    let Some(sguild) = RealSguild::start("a_modsec2sguil_0_8_config_drives_the_shipper_unchanged")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("nsm-queue");
    let ids = fill_queue(&queue, 1, 3);
    // Only EVENT_DIR and the server's address point at this test's.
    let conf = dir.path().join("modsec_agent.conf");
    std::fs::write(
        &conf,
        format!(
            "# modsec_agent.conf\nset DEBUG 0\nset DAEMON 0\nset SERVER_HOST 127.0.0.1\nset SERVER_PORT {}\n\
             set HOSTNAME webserver\nset NET_GROUP webfarm\nset EVENT_DIR {}\nset OPENSSL 0\n\
             set SENSOR_TYPE modsecurity\nset PING_DELAY 300000\nset IGNORE_HTTP_CODES 404\n\
             set HANDLE_ALL_EVENTS 0\nset SYMLINK 0\nset SYMLINK_REMOVE_ORIG 0\n",
            sguild.port,
            queue.display()
        ),
    )
    .unwrap();
    let out = Command::new(binary("modsec-shipper"))
        .args(["drain", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("unknown"), "no key is unknown: {err}");
    assert!(err.contains("plaintext session (OPENSSL 0)"), "{err}");
    let mut stored = sguild.stored_ids("webserver");
    stored.sort();
    assert_eq!(stored, ids, "each event stored once by sguild: {err}");
    let out = Command::new(binary("modsec-shipper"))
        .args(["status", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 queued"));
}

/// The README stays a newcomer's ten minutes (issue 26: at most 300 lines; the reference
/// lives in the man pages and ARCHITECTURE.md), and every file or folder of the checkout it
/// names exists, so a move or a rename cannot leave it pointing at nothing.
#[test]
fn the_readme_is_short_and_names_only_paths_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 300, "README.md has {lines} lines; at most 300");
    let tops = [
        "examples/",
        "shipper/",
        "shared/",
        "tests/",
        "collector/",
        ".ci/",
    ];
    let mut named = 0;
    for (n, line) in readme.lines().enumerate() {
        for (at, _) in line.match_indices(['`', '(', ' ']) {
            let rest = &line[at + 1..];
            if !tops.iter().any(|t| rest.starts_with(t)) {
                continue;
            }
            let path: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "._/-".contains(*c))
                .collect();
            let glob = rest[path.len()..].starts_with('*');
            let path = if glob {
                &path[..]
            } else {
                path.trim_end_matches('.')
            };
            let exists = if glob {
                // `examples/systemd/modsec-shipper-drain.*`: some file with that prefix.
                let (dir, prefix) = path.rsplit_once('/').unwrap();
                std::fs::read_dir(root.join(dir))
                    .unwrap()
                    .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(prefix))
            } else {
                root.join(path).exists()
            };
            named += 1;
            assert!(
                exists,
                "README.md:{}: names {path}, which does not exist",
                n + 1
            );
        }
    }
    assert!(
        named >= 10,
        "found only {named} paths in README.md: is the scan broken?"
    );
}
