//! The real sguild (Sguil 1.0.0's server, run from the Sguil source with a private
//! MariaDB, both on loopback, by `tests/support/run-sguild.sh`) sees `drain` end its
//! session as a well-behaved agent does: TLS close_notify, then the connection closed.
//! A connection merely dropped made sguild log two errors per drain (`Error from sock…:
//! error reading "sock…": software caused connection abort` and `SSL channel "sock…":
//! error: …`), which an admin reads as trouble.
//!
//! Needs `SGUIL_SRC` (a Sguil source tree: `git clone` of bammv/sguil; CI passes the one
//! it is given) and what `tests/support/run-sguild.sh` needs (tclsh with tcllib, tcl-tls, mysqltcl and Tclx;
//! MariaDB). Without them it skips loudly (a failure under MODSEC2SGUIL_REQUIRE_ALL=1).
//! It runs its own sguild on free ports with its state in its own directory under /tmp,
//! and stops it (by the PIDs the script records) when done.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use modsec2sguil_e2e::shipper::{drain, entries_left, fill_queue};
use modsec2sguil_e2e::skip_or_fail;

const TEST: &str = "a_drain_leaves_no_error_in_the_real_sguilds_log";
/// run-sguild.sh's exit status when a program or Tcl package it needs is missing.
const MISSING_TOOLS: i32 = 3;

/// A port free on 127.0.0.1 at the time of asking.
fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// One sguild + MariaDB, run by run-sguild.sh with this test's state dir and ports.
struct Sguild {
    script: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Sguild {
    fn run(&self, action: &str) -> Output {
        Command::new("bash")
            .arg(&self.script)
            .arg(action)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.script.display()))
    }
}

impl Drop for Sguild {
    fn drop(&mut self) {
        // Stops sguild and MariaDB by their recorded PIDs and removes the state dir.
        let _ = self.run("clean");
    }
}

/// `KEY=value` from the script's output.
fn value<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn a_drain_leaves_no_error_in_the_real_sguilds_log() {
    let Some(src) = std::env::var_os("SGUIL_SRC").map(PathBuf::from) else {
        skip_or_fail(
            TEST,
            "SGUIL_SRC is not set (a Sguil source tree: git clone of bammv/sguil)",
        );
        return;
    };
    if !src.join("server/sguild").is_file() {
        skip_or_fail(
            TEST,
            &format!("SGUIL_SRC={}: no server/sguild in it", src.display()),
        );
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/run-sguild.sh");
    let state = format!("/tmp/modsec2sguil-sguild-quiet-{}", std::process::id());
    let sguild = Sguild {
        script,
        env: vec![
            ("SGUIL_SRC", src.display().to_string()),
            ("SGUIL_STATE", state),
            ("SGUIL_SENSOR_PORT", free_port().to_string()),
            ("SGUIL_CLIENT_PORT", free_port().to_string()),
            ("SGUIL_DB_PORT", free_port().to_string()),
        ],
    };
    let started = sguild.run("start");
    let said = String::from_utf8_lossy(&started.stdout).into_owned();
    let complaints = String::from_utf8_lossy(&started.stderr).into_owned();
    if started.status.code() == Some(MISSING_TOOLS) {
        skip_or_fail(TEST, &format!("run-sguild.sh: {}", complaints.trim()));
        return;
    }
    assert!(
        started.status.success(),
        "run-sguild.sh start: {}\n{said}\n{complaints}",
        started.status
    );
    let (Some(port), Some(cert), Some(log)) = (
        value(&said, "SGUILD_SENSOR_PORT"),
        value(&said, "SGUILD_CERT"),
        value(&said, "SGUILD_LOG"),
    ) else {
        panic!("run-sguild.sh start printed no port, cert or log: {said}");
    };
    let log = PathBuf::from(log);

    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    fill_queue(&queue, 1, 5);
    let conf = dir.path().join("shipper.conf");
    std::fs::write(
        &conf,
        format!(
            "set EVENT_DIR {}\nset SERVER_HOST 127.0.0.1\nset SERVER_PORT {port}\n\
             set HOSTNAME m2s-quiet\nset NET_GROUP m2s-test\nset TLS_CA_FILE {cert}\n",
            queue.display()
        ),
    )
    .unwrap();
    // Two sessions: sguild answers the second's registration only after its event loop
    // went past the first session's end, so whatever it logs about that end is logged
    // by then (and the second's end before it exits).
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "drain: {err}");
    assert!(entries_left(&queue).is_empty(), "drain: {err}");
    fill_queue(&queue, 6, 1);
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "second drain: {err}");
    assert!(entries_left(&queue).is_empty(), "second drain: {err}");
    // sguild writes its log through a buffer that it flushes when it exits (SIGTERM is
    // trapped: CleanExit).
    let stopped = sguild.run("stop-sguild");
    assert!(
        stopped.status.success(),
        "run-sguild.sh stop-sguild: {}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    // What sguild said about our sessions, for the record.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("sock") || l.contains("m2s-quiet") || l.contains("127.0.0.1"))
        .collect();
    eprintln!(
        "sguild_quiet: sguild's log about the two sessions:\n{}",
        ours.join("\n")
    );
    assert!(
        ours.iter().any(|l| l.contains("m2s-quiet")),
        "sguild's log does not show the sessions at all:\n{text}"
    );
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("Error from")
                || l.contains("SSL channel")
                || l.contains("connection abort")
                || l.contains("connection reset")
                || l.contains("ERROR")
        })
        .collect();
    assert!(
        errors.is_empty(),
        "sguild logged errors about our sessions:\n{}\n\nwhole log:\n{text}",
        errors.join("\n")
    );
}
