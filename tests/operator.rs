//! The operator commands end to end: `status` (and its Nagios exit codes) and each
//! `requeue` mode, with the real collector and the test sguild.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use modsec2sguil_e2e::sguild::TestSguild;
use modsec2sguil_e2e::shipper::{
    config, drain, entries_left, fill_queue, shipper, stored_unique_id,
};
use modsec2sguil_e2e::{binary, copy_tree, fixtures, state, web_user};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = shipper(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status(conf: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["status", "-c", conf.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, out, err) = run(&args);
    (code, out + &err)
}

fn requeue(conf: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["requeue", "-c", conf.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

/// A storage dir with the corpus's real native events (the web server's user's), and
/// their real index lines.
fn storage(dir: &Path) -> (PathBuf, Vec<String>) {
    let storage = dir.join("audit");
    copy_tree(&fixtures().join("modsec-2.9/native"), &storage);
    web_user::give_tree(&storage);
    let index = std::fs::read_to_string(fixtures().join("modsec-2.9/index-native.log")).unwrap();
    (storage, index.lines().map(|l| format!("{l}\n")).collect())
}

fn stored_ids(server: &TestSguild) -> Vec<String> {
    server.events().iter().map(stored_unique_id).collect()
}

fn id_of(line: &str) -> String {
    let parsed = modsec2sguil::index::parse_index_line(line.as_bytes()).unwrap();
    parsed.unique_id
}

#[test]
fn status_reports_the_queue_and_works_as_a_nagios_check() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    let conf = config(dir.path(), &queue, &server, "");

    let (code, out) = status(&conf, &["--warn-age", "1m", "--crit-failed", "1"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("modsec2sguil OK - 0 queued"), "{out}");
    assert!(out.contains("last run:   none recorded"), "{out}");
    // A cron run on an empty queue is recorded: the job is alive.
    assert_eq!(drain(&conf, &[]).0, 0);
    let (_, out) = status(&conf, &[]);
    assert!(
        out.contains("last run:   drain") && out.contains(": ok; shipped 0"),
        "{out}"
    );

    // Events named in September 2026 (two months old), two of them poison.
    fill_queue(&queue, 1, 6);
    std::fs::write(queue.join("modsec.log.1790000000.000002"), b"").unwrap();
    std::fs::write(
        queue.join("modsec.log.1790000000.000004"),
        b"--x-A--\nnot an event\n",
    )
    .unwrap();
    let (code, out) = status(&conf, &["--warn-age", "1h"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("modsec2sguil WARNING - 6 queued, oldest "),
        "{out}"
    );
    assert_eq!(
        status(&conf, &["--warn-age", "1h", "--crit-age", "2d"]).0,
        2
    );
    assert_eq!(status(&conf, &["--crit-age", "1000d"]).0, 0);

    let (code, err) = drain(&conf, &["--max-events", "5"]);
    assert_eq!(code, 0, "{err}");
    let (code, out) = status(&conf, &["--crit-failed", "2"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("1 queued") && out.contains("2 failed"),
        "{out}"
    );
    assert!(out.contains("not a ModSecurity audit-log event"), "{out}");
    assert!(
        out.contains("last run:   drain") && out.contains(": ok; shipped 3"),
        "{out}"
    );
    assert_eq!(status(&conf, &["--crit-failed", "3"]).0, 0);

    // JSON for monitoring systems: the same numbers.
    let (code, out) = status(&conf, &["--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["entries"], 1);
    assert_eq!(v["failed"], 2);
    assert_eq!(v["last_run"]["result"], "ok");
    assert_eq!(v["last_run"]["shipped"], 3);
    assert_eq!(v["level"], "OK");

    // A drain that cannot reach sguild says so in the record.
    drop(server);
    assert_eq!(drain(&conf, &[]).0, 4);
    let (_, out) = status(&conf, &[]);
    assert!(out.contains(": unreachable ("), "{out}");

    // Broken: no queue is UNKNOWN (3), naming it; a garbled record is a problem, not a crash.
    std::fs::write(queue.join(".last-run"), b"{garbled").unwrap();
    let (code, out) = status(&conf, &["--warn-age", "1000d"]);
    assert_eq!(code, 1, "an unreadable part warns: {out}");
    assert!(
        out.contains("problem:    ") && out.contains(".last-run"),
        "{out}"
    );
    let (code, out) = run(&["status", "--queue", "/nonexistent/queue"]).into_parts();
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("UNKNOWN") && out.contains("/nonexistent/queue"),
        "{out}"
    );
}

trait IntoParts {
    fn into_parts(self) -> (i32, String);
}

impl IntoParts for (i32, String, String) {
    fn into_parts(self) -> (i32, String) {
        (self.0, self.1 + &self.2)
    }
}

#[test]
fn quarantined_events_go_back_once_fixed_and_ship_exactly_once() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let ids = fill_queue(&queue, 1, 4);
    // Entry 2 is cut short on disk (say, a full disk when it was written).
    let good_two = std::fs::read(queue.join("modsec.log.1790000000.000002")).unwrap();
    std::fs::write(queue.join("modsec.log.1790000000.000002"), &good_two[..20]).unwrap();
    let conf = config(dir.path(), &queue, &server, "");
    assert_eq!(drain(&conf, &[]).0, 0);
    assert_eq!(server.events().len(), 3);
    let failed = queue.join("failed/modsec.log.1790000000.000002");
    assert!(failed.exists());

    // Nothing named: a usage error. An unknown name: exit 1, named.
    assert_eq!(requeue(&conf, &["--failed"]).0, 2);
    let (code, _, err) = requeue(&conf, &["--failed", "modsec.log.1.000001"]);
    assert_eq!(code, 1);
    assert!(err.contains("modsec.log.1.000001: not in failed/"), "{err}");

    // The operator repairs the file; a dry run lists it and changes nothing.
    std::fs::write(&failed, &good_two).unwrap();
    let (code, out, err) = requeue(&conf, &["--failed", "--all", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would queue failed/modsec.log.1790000000.000002"),
        "{out}"
    );
    assert!(err.contains("would queue 1"), "{err}");
    assert!(failed.exists());

    let (code, out, err) = requeue(&conf, &["--failed", "--unique-id", &ids[1]]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("queued modsec.log.1790000000.000002 <- failed/"),
        "{out}"
    );
    assert!(!failed.exists());
    assert!(queue
        .join("failed/history/modsec.log.1790000000.000002.reason")
        .exists());
    assert_eq!(drain(&conf, &[]).0, 0);
    let stored = stored_ids(&server);
    assert_eq!(stored.len(), 4);
    assert_eq!(
        stored.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>()
    );

    // Quarantined again by hand: it was delivered, so it is not requeued unless forced.
    std::fs::create_dir_all(queue.join("failed")).unwrap();
    std::fs::write(&failed, &good_two).unwrap();
    let (code, out, err) = requeue(&conf, &["--failed", "--all"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("was already delivered to Sguil"), "{out}");
    assert!(err.contains("--force adds them anyway"), "{err}");
    assert!(entries_left(&queue).is_empty());
    let (code, _, err) = requeue(&conf, &["--failed", "--all", "--force"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(entries_left(&queue).len(), 1);
}

#[test]
fn the_collectors_backlog_is_retried_once_the_files_are_there() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let (storage, lines) = storage(dir.path());
    // The storage dir is not mounted yet when Apache writes these three lines.
    let hidden = dir.path().join("audit-later");
    std::fs::rename(&storage, &hidden).unwrap();
    std::fs::create_dir_all(&storage).unwrap();
    let conf = config(
        dir.path(),
        &queue,
        &server,
        &format!("set STORAGE_DIR {}\n", storage.display()),
    );
    let mut collector = Command::new(binary("modsec-collector"))
        .args(["-c", conf.to_str().unwrap()])
        .arg(&storage)
        .arg(dir.path().join("index.log"))
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = collector.stdin.take().unwrap();
        stdin.write_all(lines[..3].concat().as_bytes()).unwrap();
        stdin.write_all(b"garbage that is no index line\n").unwrap();
    }
    assert!(collector.wait().unwrap().success());
    let (_, out) = status(&conf, &[]);
    assert!(out.contains("backlog:    4 index line(s)"), "{out}");

    std::fs::remove_dir(&storage).unwrap();
    std::fs::rename(&hidden, &storage).unwrap();
    let (code, out, err) = requeue(&conf, &["--backlog", "--dry-run"]);
    assert_eq!(code, 1, "the garbage line would fail: {err}");
    assert_eq!(out.matches("would queue").count(), 3, "{out}");
    let (code, out, err) = requeue(&conf, &["--backlog"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out.matches("queued modsec.log.").count(), 3, "{out}");
    assert!(err.contains("not queued: backlog line"), "{err}");
    // What still fails stays, with its reason; the rest is queued, in order.
    let backlog = state::backlog_text(&state::dir(dir.path()));
    assert_eq!(backlog.lines().count(), 1, "{backlog}");
    assert!(
        backlog.contains("garbage that is no index line"),
        "{backlog}"
    );
    assert_eq!(drain(&conf, &[]).0, 0);
    let want: Vec<String> = lines[..3].iter().map(|l| id_of(l)).collect();
    // Each of the three raised a rule with an id (requests.tsv's observed_rule_ids), so
    // with ALERT_ON_WARNINGS on (the default) each is an alert: all three are sent, once
    // and in the backlog's order.
    let tsv = std::fs::read_to_string(fixtures().join("modsec-2.9/requests.tsv")).unwrap();
    for id in &want {
        let row = tsv
            .lines()
            .find(|r| r.starts_with("native\t") && r.contains(id.as_str()))
            .unwrap_or_else(|| panic!("{id} is not in requests.tsv"));
        assert_ne!(row.split('\t').nth(14), Some("-"), "{row}: no rule raised");
    }
    assert_eq!(stored_ids(&server), want);
    assert!(entries_left(&queue).is_empty());
}

#[test]
fn index_files_backfill_the_queue_with_filters_and_without_duplicates() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    let (storage, lines) = storage(dir.path());
    let conf = config(
        dir.path(),
        &queue,
        &server,
        &format!(
            "set STORAGE_DIR {}\nset HANDLE_ALL_EVENTS 1\n",
            storage.display()
        ),
    );
    // Rotated and compressed, as logrotate leaves it, plus the current file.
    let old = dir.path().join("modsec_audit.log.1.gz");
    {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&old).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(lines[..20].concat().as_bytes()).unwrap();
        gz.finish().unwrap();
    }
    let current = dir.path().join("modsec_audit.log");
    std::fs::write(&current, lines[20..].concat()).unwrap();
    let (old_s, current_s) = (old.to_str().unwrap(), current.to_str().unwrap());

    // Only the 403s.
    let (code, out, err) = requeue(&conf, &["--index", old_s, current_s, "--status", "403"]);
    assert_eq!(code, 0, "{err}");
    let forbidden: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("\" 403 "))
        .map(|l| id_of(l))
        .collect();
    assert!(forbidden.len() > 3, "{forbidden:?}");
    assert_eq!(out.matches("queued ").count(), forbidden.len(), "{out}");
    assert!(err.contains("not matching the filters"), "{err}");
    assert_eq!(drain(&conf, &[]).0, 0);
    assert_eq!(stored_ids(&server), forbidden, "in the index files' order");

    // All of it: the 403s were queued before (the collector's record in STATE_DIR, not
    // the queue, which they have left) and are skipped; the rest comes, once.
    assert!(entries_left(&queue).is_empty());
    let record =
        std::fs::read_to_string(state::dir(dir.path()).join(modsec2sguil::state::QUEUED_FILE))
            .unwrap();
    for id in &forbidden {
        assert!(record.contains(id.as_str()), "{id} not on record: {record}");
    }
    let (code, _, err) = requeue(&conf, &["--index", old_s, current_s]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("already queued or delivered {}", forbidden.len())),
        "{err}"
    );
    let (code, _, err) = requeue(&conf, &["--index", old_s, current_s]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("queued 0"), "a second run adds nothing: {err}");
    assert_eq!(drain(&conf, &[]).0, 0);
    let all: Vec<String> = lines.iter().map(|l| id_of(l)).collect();
    let stored = stored_ids(&server);
    assert_eq!(stored.len(), all.len(), "each event once");
    assert_eq!(
        stored.iter().collect::<HashSet<_>>(),
        all.iter().collect::<HashSet<_>>()
    );

    // After a Sguil database loss: --force sends one again; --unique-id picks it.
    let (code, out, err) = requeue(
        &conf,
        &["--index", current_s, "--unique-id", &all[30], "--force"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("queued ").count(), 1, "{out}");

    // A bad time or status is a usage error; a missing file is named.
    assert_eq!(
        requeue(&conf, &["--index", current_s, "--since", "yesterday"]).0,
        2
    );
    assert_eq!(
        requeue(&conf, &["--index", current_s, "--status", "abc"]).0,
        2
    );
    let (code, _, err) = requeue(&conf, &["--index", "/nonexistent/index.log"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/index.log"), "{err}");
}

#[test]
fn requeue_and_drain_name_a_queue_that_does_not_exist() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("no-such-queue");
    let conf = config(dir.path(), &queue, &server, "");
    let (code, _, err) = requeue(&conf, &["--backlog"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "{}: the queue (EVENT_DIR) does not exist",
            queue.display()
        )),
        "{err}"
    );
    let (code, log) = drain(&conf, &[]);
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains("the queue (EVENT_DIR) does not exist"),
        "{log}"
    );
}

/// `failed/` or `held/` replaced by a link (by the queue's owner, or by hand): requeue
/// refuses it, naming it once, exits 1, and moves nothing out of where it points.
#[test]
fn requeue_refuses_a_failed_or_held_dir_replaced_by_a_link() {
    let server = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    fill_queue(&queue, 0, 0);
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let planted = elsewhere.join("modsec.log.1790000000.000001");
    std::fs::write(&planted, "planted").unwrap();
    let conf = config(dir.path(), &queue, &server, "");
    for (area, flag) in [("failed", "--failed"), ("held", "--suppressed")] {
        let link = queue.join(area);
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let args: Vec<&str> = if area == "failed" {
            vec![flag, "--all"]
        } else {
            vec![flag]
        };
        let (code, _, err) = requeue(&conf, &args);
        assert_eq!(code, 1, "{area}: {err}");
        let named = link.display().to_string();
        assert!(err.contains("not followed"), "{area}: {err}");
        assert_eq!(err.matches(&named).count(), 1, "{area}: {err}");
        assert!(
            planted.exists(),
            "{area}: nothing moved out of the link's target"
        );
        std::fs::remove_file(&link).unwrap();
    }
    assert!(entries_left(&queue).is_empty());
}

/// Without -c every command reads the config where the package installs it: a missing
/// one is named (exit 3, bad or missing configuration), not a usage error (exit 2).
/// `--queue` alone stands for the config (a monitoring user may not read it).
#[test]
fn every_command_reads_etc_modsec2sguil_conf_without_c() {
    let default = modsec2sguil::config::DEFAULT_PATH;
    assert_eq!(default, "/etc/modsec2sguil.conf");
    if Path::new(default).exists() {
        // An installed package's: tests/debian_package.rs checks `status` reads it.
        modsec2sguil_e2e::skip_or_fail(
            "every_command_reads_etc_modsec2sguil_conf_without_c",
            &format!("{default} exists here: cannot check how its absence is reported"),
        );
        return;
    }
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["drain"],
        &["run", "--foreground"],
        &["requeue", "--backlog"],
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, 3, "{args:?}: {out}{err}");
        assert!(
            (out.clone() + &err).contains(default),
            "{args:?} does not name {default}: {out}{err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(&["status", "--queue", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "status --queue alone: {out}{err}");
}
