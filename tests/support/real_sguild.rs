//! The real sguild (Sguil 1.0.0's server from a Sguil source tree, with a private
//! MariaDB, both on loopback), run by `support/run-sguild.sh` on free ports with its
//! state in a directory of its own under /tmp, stopped (by the PIDs the script records)
//! and removed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// run-sguild.sh's exit status when a program or Tcl package it needs is missing.
const MISSING_TOOLS: i32 = 3;

/// A port free on 127.0.0.1 at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A running sguild + MariaDB.
pub struct RealSguild {
    script: PathBuf,
    env: Vec<(&'static str, String)>,
    /// The agent port, sguild's certificate, its log.
    pub port: u16,
    pub cert: PathBuf,
    pub log: PathBuf,
    /// The MariaDB client's defaults file (socket; root by socket authentication).
    pub mycnf: PathBuf,
}

/// `KEY=value` from the script's output.
fn value<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

impl RealSguild {
    /// Starts one with its state in `/tmp/modsec2sguil-sguild-<tag>-<pid>`. Err is why it
    /// cannot run here (no SGUIL_SRC, no sguild in it, a missing tool): the caller skips.
    /// A start that fails otherwise panics with what the script said.
    pub fn start(tag: &str) -> Result<RealSguild, String> {
        let src = std::env::var_os("SGUIL_SRC")
            .map(PathBuf::from)
            .ok_or("SGUIL_SRC is not set (a Sguil source tree: git clone of bammv/sguil)")?;
        if !src.join("server/sguild").is_file() {
            return Err(format!(
                "SGUIL_SRC={}: no server/sguild in it",
                src.display()
            ));
        }
        let port = free_port();
        let mut s = RealSguild {
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("support/run-sguild.sh"),
            env: vec![
                ("SGUIL_SRC", src.display().to_string()),
                (
                    "SGUIL_STATE",
                    format!("/tmp/modsec2sguil-sguild-{tag}-{}", std::process::id()),
                ),
                ("SGUIL_SENSOR_PORT", port.to_string()),
                ("SGUIL_CLIENT_PORT", free_port().to_string()),
                ("SGUIL_DB_PORT", free_port().to_string()),
            ],
            port,
            cert: PathBuf::new(),
            log: PathBuf::new(),
            mycnf: PathBuf::new(),
        };
        let started = s.run("start");
        let said = String::from_utf8_lossy(&started.stdout).into_owned();
        let complaints = String::from_utf8_lossy(&started.stderr).into_owned();
        if started.status.code() == Some(MISSING_TOOLS) {
            return Err(format!("run-sguild.sh: {}", complaints.trim()));
        }
        assert!(
            started.status.success(),
            "run-sguild.sh start: {}\n{said}\n{complaints}",
            started.status
        );
        let (Some(cert), Some(log)) = (value(&said, "SGUILD_CERT"), value(&said, "SGUILD_LOG"))
        else {
            panic!("run-sguild.sh start printed no cert or log: {said}");
        };
        let env = String::from_utf8_lossy(&s.run("env").stdout).into_owned();
        let mycnf = value(&env, "SGUIL_MYCNF").expect("run-sguild.sh env: SGUIL_MYCNF");
        s.cert = cert.into();
        s.log = log.into();
        s.mycnf = mycnf.into();
        Ok(s)
    }

    /// Runs the script with `action` (stop-sguild, restart-sguild, …).
    pub fn run(&self, action: &str) -> Output {
        Command::new("bash")
            .arg(&self.script)
            .arg(action)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.script.display()))
    }
}

impl Drop for RealSguild {
    fn drop(&mut self) {
        // Stops sguild and MariaDB by their recorded PIDs and removes the state dir.
        let _ = self.run("clean");
    }
}
