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

use modsec2sguil_e2e::real_sguild::RealSguild;
use modsec2sguil_e2e::shipper::{drain, entries_left, fill_queue};
use modsec2sguil_e2e::skip_or_fail;

const TEST: &str = "a_drain_leaves_no_error_in_the_real_sguilds_log";

#[test]
fn a_drain_leaves_no_error_in_the_real_sguilds_log() {
    let sguild = match RealSguild::start("quiet") {
        Ok(s) => s,
        Err(why) => {
            skip_or_fail(TEST, &why);
            return;
        }
    };
    let (port, cert, log) = (sguild.port, sguild.cert.display(), sguild.log.clone());

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
