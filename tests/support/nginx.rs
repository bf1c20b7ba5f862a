//! A private nginx + libmodsecurity 3 (Debian's libnginx-mod-http-modsecurity) + CRS on
//! loopback, with concurrent audit logging to a storage dir and an index file, as in
//! `tests/fixtures/modsec-3`. Started as root (workers run as www-data) and stopped by
//! the master's PID.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{skip_or_fail, which};

const MODULE: &str = "/usr/lib/nginx/modules/ngx_http_modsecurity_module.so";
const CRS_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";
const CRS_RULES: &str = "/usr/share/modsecurity-crs/rules";

pub struct Nginx {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// SecAuditLogStorageDir.
    pub storage: PathBuf,
    /// SecAuditLog: the index file libmodsecurity appends to.
    pub index: PathBuf,
    pid: Option<u32>,
}

/// Why nginx + libmodsecurity 3 cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if which("nginx").is_none() {
        return Some(
            "nginx is not installed (apt-get install nginx libnginx-mod-http-modsecurity)".into(),
        );
    }
    if !Path::new(MODULE).exists() {
        return Some(format!(
            "{MODULE} is missing (apt-get install libnginx-mod-http-modsecurity)"
        ));
    }
    if !Path::new(CRS_SETUP).exists() || !Path::new(CRS_RULES).is_dir() {
        return Some("the OWASP CRS is not installed (apt-get install modsecurity-crs)".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("nginx with www-data workers needs root".into());
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// Starts nginx, or says why it cannot ([`skip_or_fail`]) and returns `None`.
    pub fn start(test: &str) -> Option<Nginx> {
        if let Some(why) = unavailable() {
            skip_or_fail(test, &why);
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("modsec3-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in [
            "conf",
            "run",
            "logs",
            "htdocs",
            "tmp",
            "audit",
            "modsec-tmp",
            "modsec-data",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for d in ["audit", "tmp", "modsec-tmp", "modsec-data"] {
            let ok = Command::new("chown")
                .args(["www-data:www-data"])
                .arg(root.join(d))
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown www-data {d}");
        }
        std::fs::write(root.join("htdocs/index.html"), "<html>hello</html>\n").unwrap();
        let port = free_port();
        let storage = root.join("audit");
        let index = root.join("logs/modsec_audit.log");
        let r = root.display();
        std::fs::write(
            root.join("conf/modsec.conf"),
            format!(
                "SecRuleEngine On\nSecRequestBodyAccess On\nSecResponseBodyAccess Off\n\
                 SecTmpDir {r}/modsec-tmp\nSecDataDir {r}/modsec-data\n\
                 SecAuditEngine RelevantOnly\nSecAuditLogRelevantStatus \"^(?:5|4(?!04))\"\n\
                 SecAuditLogParts ABCFHZ\nSecAuditLogType Concurrent\nSecAuditLogFormat Native\n\
                 SecAuditLogStorageDir {}\nSecAuditLog {}\n\
                 Include {CRS_SETUP}\n\
                 SecAction \"id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=1\"\n\
                 Include {CRS_RULES}/*.conf\n",
                storage.display(),
                index.display()
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("conf/nginx.conf"),
            format!(
                "load_module {MODULE};\nuser www-data www-data;\nworker_processes 2;\n\
                 pid {r}/run/nginx.pid;\nerror_log {r}/logs/error.log notice;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log {r}/logs/access.log;\n\
                 client_body_temp_path {r}/tmp/body;\n  proxy_temp_path {r}/tmp/proxy;\n\
                 fastcgi_temp_path {r}/tmp/fastcgi;\n  uwsgi_temp_path {r}/tmp/uwsgi;\n\
                 scgi_temp_path {r}/tmp/scgi;\n\
                 server {{\n    listen 127.0.0.1:{port};\n    server_name lab.example;\n\
                 root {r}/htdocs;\n    modsecurity on;\n\
                 modsecurity_rules_file {r}/conf/modsec.conf;\n    location / {{ }}\n  }}\n}}\n"
            ),
        )
        .unwrap();
        let out = Command::new(which("nginx").unwrap())
            .arg("-p")
            .arg(&root)
            .arg("-c")
            .arg(root.join("conf/nginx.conf"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nginx did not start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(root.join("logs/error.log")).unwrap_or_default()
        );
        let mut n = Nginx {
            dir,
            port,
            storage,
            index,
            pid: None,
        };
        let until = Instant::now() + Duration::from_secs(10);
        while n.pid.is_none() && Instant::now() < until {
            n.pid = std::fs::read_to_string(root.join("run/nginx.pid"))
                .ok()
                .and_then(|p| p.trim().parse().ok());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(n.pid.is_some(), "nginx wrote no pid file");
        Some(n)
    }

    /// One HTTP/1.0 GET; returns the status.
    pub fn get(&self, target: &str) -> u16 {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {target} HTTP/1.0\r\nHost: lab.example\r\nUser-Agent: modsec2sguil-test\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    pub fn stop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        let pid = pid as libc::pid_t;
        // SAFETY: kill(2) on the master's pid, which this harness started.
        let signal = |sig| unsafe { libc::kill(pid, sig) } == 0;
        signal(libc::SIGQUIT);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && signal(0) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if signal(0) {
            signal(libc::SIGKILL);
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}
