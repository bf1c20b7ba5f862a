//! The real Sguil server for a test: sguild 1.0.0 run from a Sguil source tree
//! (`SGUIL_SRC`, a `git clone` of bammv/sguil) with a private MariaDB, both on 127.0.0.1
//! on ports picked free, by `tests/support/run-sguild.sh`, with its state in a directory
//! of its own under /tmp; stopped (by the PIDs the script records) and removed when
//! dropped. Optionally Sguil's own `snort_agent` in front of it. Without `SGUIL_SRC` or
//! the programs the script needs, [`RealSguild::start`] skips through [`skip_or_fail`]
//! (a failure under `MODSEC2SGUIL_REQUIRE_ALL=1`, as in `.ci/run`).
//!
//! A start (a fresh MariaDB data dir, the schema, a certificate, sguild listening) takes
//! about 2 s, so each test has its own server: a test that stops sguild or MariaDB on
//! purpose cannot disturb another.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::mariadb::MariaDb;
use super::process::{signal, wait_exit, wait_until};
use super::skip_or_fail;

/// run-sguild.sh's exit status when a program or Tcl package it needs is missing.
const MISSING_TOOLS: i32 = 3;
/// The database account run-sguild.sh gives sguild (and the tests).
pub const DB_USER: &str = "sguil";
pub const DB_PASS: &str = "sguilpw";

/// A port free on 127.0.0.1 at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The Sguil source tree named by `SGUIL_SRC`, or a skip (through [`skip_or_fail`]).
pub fn sguil_src(test: &str) -> Option<PathBuf> {
    let Some(src) = std::env::var_os("SGUIL_SRC").map(PathBuf::from) else {
        skip_or_fail(
            test,
            "SGUIL_SRC is not set (a Sguil source tree: git clone https://github.com/bammv/sguil, \
             then SGUIL_SRC=/path/to/sguil; README, \"Tests\")",
        );
        return None;
    };
    if !src.join("server/sguild").is_file() {
        skip_or_fail(
            test,
            &format!("SGUIL_SRC={}: no server/sguild in it", src.display()),
        );
        return None;
    }
    Some(src)
}

/// One sguild + MariaDB of this test's.
pub struct RealSguild {
    script: PathBuf,
    env: Vec<(&'static str, String)>,
    pub src: PathBuf,
    /// sguild's agent port on 127.0.0.1.
    pub port: u16,
    /// sguild's self-signed certificate (for TLS_CA_FILE).
    pub cert: PathBuf,
    /// sguild's stdout and stderr.
    pub log: PathBuf,
    /// MariaDB's TCP port on 127.0.0.1.
    pub db_port: u16,
    /// This server's state dir (under /tmp), for files of the test's own.
    pub state: PathBuf,
}

impl RealSguild {
    /// Starts sguild and its MariaDB, or skips `test` (and returns `None`).
    pub fn start(test: &str) -> Option<RealSguild> {
        let src = sguil_src(test)?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/run-sguild.sh");
        let state = std::env::temp_dir().join(format!(
            "modsec2sguil-sguild-{}-{}",
            std::process::id(),
            test.chars()
                .filter(char::is_ascii_alphanumeric)
                .take(40)
                .collect::<String>()
        ));
        let db_port = free_port();
        let began = std::time::Instant::now();
        let mut sguild = RealSguild {
            script,
            env: vec![
                ("SGUIL_SRC", src.display().to_string()),
                ("SGUIL_STATE", state.display().to_string()),
                ("SGUIL_SENSOR_PORT", free_port().to_string()),
                ("SGUIL_CLIENT_PORT", free_port().to_string()),
                ("SGUIL_DB_PORT", db_port.to_string()),
            ],
            src,
            port: 0,
            cert: PathBuf::new(),
            log: PathBuf::new(),
            db_port,
            state,
        };
        let started = sguild.run("start");
        let said = String::from_utf8_lossy(&started.stdout).into_owned();
        let complaints = String::from_utf8_lossy(&started.stderr).into_owned();
        if started.status.code() == Some(MISSING_TOOLS) {
            skip_or_fail(test, &format!("run-sguild.sh: {}", complaints.trim()));
            return None;
        }
        assert!(
            started.status.success(),
            "run-sguild.sh start: {}\n{said}\n{complaints}",
            started.status
        );
        let value = |key: &str| {
            said.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("run-sguild.sh start printed no {key}: {said}"))
                .to_string()
        };
        sguild.port = value("SGUILD_SENSOR_PORT").parse().unwrap();
        sguild.cert = value("SGUILD_CERT").into();
        sguild.log = value("SGUILD_LOG").into();
        eprintln!(
            "{test}: sguild and MariaDB up in {:.1} s (sguild on 127.0.0.1:{}, MariaDB on :{db_port})",
            began.elapsed().as_secs_f64(),
            sguild.port
        );
        Some(sguild)
    }

    fn run(&self, action: &str) -> Output {
        Command::new("bash")
            .arg(&self.script)
            .arg(action)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.script.display()))
    }

    /// Runs one of run-sguild.sh's actions (`stop-sguild`, `restart-sguild`, `stop-db`,
    /// `start-db`), failing the test if it fails.
    pub fn act(&self, action: &str) {
        let out = self.run(action);
        assert!(
            out.status.success(),
            "run-sguild.sh {action}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// sguild's log so far (it flushes its buffer when it exits).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `sguildb`, as sguild's own account over TCP.
    pub fn db(&self) -> MariaDb {
        MariaDb::connect("127.0.0.1", self.db_port, DB_USER, DB_PASS)
    }

    /// A shipper config for this sguild (TLS, its certificate) from `queue`, written as
    /// `dir/<hostname>.conf`, with `extra` settings after the others.
    pub fn config(&self, dir: &Path, queue: &Path, hostname: &str, extra: &str) -> PathBuf {
        let path = dir.join(format!("{hostname}.conf"));
        std::fs::write(
            &path,
            format!(
                "set EVENT_DIR {}\nset SERVER_HOST 127.0.0.1\nset SERVER_PORT {}\n\
                 set HOSTNAME {hostname}\nset NET_GROUP m2s-test\nset TLS_CA_FILE {}\n{extra}",
                queue.display(),
                self.port,
                self.cert.display()
            ),
        )
        .unwrap();
        path
    }

    /// The unique id each event stored under sensor `hostname` names in its detail, one
    /// per stored row (read from sguild's `event` and `data` tables, so a row stored
    /// twice shows twice); none before sguild stored its first event anywhere.
    pub fn stored_ids(&self, hostname: &str) -> Vec<String> {
        let sql = format!(
            "USE sguildb; SELECT data.data_payload FROM event, data, sensor \
             WHERE event.sid = sensor.sid AND sensor.hostname = '{hostname}' \
             AND data.sid = event.sid AND data.cid = event.cid"
        );
        match self.db().query(&sql) {
            Ok(rows) => rows
                .iter()
                .map(|r| {
                    let detail = modsec2sguil::hex::decode(r[0].as_bytes()).unwrap_or_default();
                    modsec2sguil::alert::unique_id_in_detail(&detail)
                        .unwrap_or("")
                        .to_string()
                })
                .collect(),
            // sguild makes the MERGE tables with its first event.
            Err(e) if e.contains("doesn't exist") => Vec::new(),
            Err(e) => panic!("sguildb: {e}"),
        }
    }

    /// The number of `event` rows stored under sensor `hostname` (0 while the database
    /// or the tables are not there).
    pub fn stored_count(&self, hostname: &str) -> usize {
        self.db()
            .query(&format!(
                "USE sguildb; SELECT COUNT(*) FROM event, sensor \
                 WHERE event.sid = sensor.sid AND sensor.hostname = '{hostname}'"
            ))
            .ok()
            .and_then(|rows| rows.first()?.first()?.parse().ok())
            .unwrap_or(0)
    }

    /// Sguil's `snort_agent` (`sensor/snort_agent.tcl` of the tree) registered with this
    /// sguild as sensor `hostname`, listening for barnyard2 on 127.0.0.1; stopped by its
    /// PID when dropped.
    pub fn snort_agent(&self, hostname: &str) -> SnortAgent {
        let dir = self.state.join(format!("snort_agent-{hostname}"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let conf = dir.join("snort_agent.conf");
        std::fs::write(
            &conf,
            format!(
                "set DEBUG 1\nset DAEMON 0\nset SERVER_HOST 127.0.0.1\nset SERVER_PORT {}\n\
                 set BY_PORT {port}\nset HOSTNAME {hostname}\nset NET_GROUP m2s-test\n\
                 set LOG_DIR {}\nset PORTSCAN 0\nset SNORT_PERF_STATS 0\n\
                 set WATCH_DIR {}\nset PS_CHECK_DELAY_IN_MSECS 10000\n\
                 set DISK_CHECK_DELAY_IN_MSECS 1800000\nset PING_DELAY 300000\n",
                self.port,
                dir.display(),
                dir.display()
            ),
        )
        .unwrap();
        let log = dir.join("snort_agent.log");
        let child = Command::new("tclsh")
            .arg(self.src.join("sensor/snort_agent.tcl"))
            .arg("-c")
            .arg(&conf)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("snort_agent.err")).unwrap())
            .spawn()
            .expect("run tclsh snort_agent.tcl");
        let agent = SnortAgent {
            child,
            port,
            log: log.clone(),
        };
        // Up once it listens for barnyard2 and sguild has its sensor row.
        wait_until(
            "snort_agent to listen and register with sguild",
            Duration::from_secs(30),
            || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && self
                        .db()
                        .query(&format!(
                            "USE sguildb; SELECT sid FROM sensor WHERE hostname = '{hostname}' \
                             AND agent_type = 'snort'"
                        ))
                        .is_ok_and(|r| !r.is_empty())
            },
        );
        // The sensor row is written before sguild tells snort_agent its sensor id, and
        // until then snort_agent drops a SidCidRequest without a word: ready once it
        // answers one (a loaded CI machine showed the gap).
        wait_until(
            "snort_agent to answer a SidCidRequest",
            Duration::from_secs(30),
            || {
                modsec2sguil::sguil::barnyard::BarnyardSession::open(
                    "127.0.0.1",
                    port,
                    hostname,
                    Duration::from_secs(2),
                )
                .is_ok()
            },
        );
        agent
    }
}

impl Drop for RealSguild {
    fn drop(&mut self) {
        // Stops sguild and MariaDB by their recorded PIDs and removes the state dir.
        let began = std::time::Instant::now();
        let _ = self.run("clean");
        eprintln!(
            "sguild and MariaDB stopped in {:.1} s",
            began.elapsed().as_secs_f64()
        );
    }
}

/// A running snort_agent.
pub struct SnortAgent {
    child: Child,
    /// Its barnyard2 port on 127.0.0.1.
    pub port: u16,
    pub log: PathBuf,
}

impl Drop for SnortAgent {
    fn drop(&mut self) {
        signal(self.child.id(), "TERM");
        let _ = wait_exit(&mut self.child, Duration::from_secs(5));
    }
}
