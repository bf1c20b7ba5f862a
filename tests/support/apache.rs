//! A private Apache 2.4 + ModSecurity 2.9 + OWASP CRS instance on loopback, for
//! end-to-end tests: its own config in a temp dir (nothing from `/etc/apache2` but the
//! module files and Debian's CRS), listening on `127.0.0.1` and `[::1]` only, started and
//! stopped by PID.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const APACHE: &str = "/usr/sbin/apache2";
const MODULES: &str = "/usr/lib/apache2/modules";
const CRS_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";
const CRS_RULES: &str = "/usr/share/modsecurity-crs/rules";
/// The user Apache's children run as; they write the event files.
pub const CHILD_USER: &str = "www-data";

/// How to run the instance.
#[derive(Debug, Clone)]
pub struct ApacheOptions {
    /// `SecAuditLogFormat`: `Native` or `JSON`.
    pub format: &'static str,
    /// `SecAuditEngine`: `RelevantOnly` or `On`.
    pub engine: &'static str,
    /// `SecAuditLogParts`.
    pub parts: &'static str,
    /// `SecAuditLog` target: `None` = a plain index file in the instance dir, or a
    /// command line for the pipe (`|` is added).
    pub pipe_to: Option<String>,
    /// Also write every index line to `logs/index2.log` (SecAuditLog2): the ground truth
    /// a piped collector is checked against.
    pub audit_log2: bool,
    /// Make the instance dir (config, storage dir, logs) inside this directory instead
    /// of the system temp dir (a benchmark puts it on its own filesystem).
    pub parent_dir: Option<PathBuf>,
    /// Include this file for the audit log (`SecAuditEngine` … `SecAuditLog`) instead
    /// of the instance's own lines: e.g. the snippet a package installs. `format`,
    /// `engine`, `parts` and `pipe_to` are then unused.
    pub audit_conf: Option<PathBuf>,
}

impl Default for ApacheOptions {
    fn default() -> Self {
        ApacheOptions {
            format: "Native",
            engine: "RelevantOnly",
            parts: "ABCFHZ",
            pipe_to: None,
            audit_log2: false,
            parent_dir: None,
            audit_conf: None,
        }
    }
}

/// Why Apache cannot run here, or `None` if it can.
pub fn unavailable() -> Option<String> {
    for (path, package) in [
        (APACHE, "apache2"),
        (
            "/usr/lib/apache2/modules/mod_security2.so",
            "libapache2-mod-security2",
        ),
        (CRS_SETUP, "modsecurity-crs"),
        (CRS_RULES, "modsecurity-crs"),
    ] {
        if !Path::new(path).exists() {
            return Some(format!("{path} is missing (apt-get install {package})"));
        }
    }
    let uid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(1);
    if uid != 0 {
        return Some(
            "Apache's parent must start as root (like in production) and these tests are not root"
                .into(),
        );
    }
    None
}

/// A running instance; stopped (by PID) when dropped.
pub struct Apache {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// SecAuditLogStorageDir.
    pub storage: PathBuf,
    /// The plain index file, when no pipe is used.
    pub index: PathBuf,
    pid_file: PathBuf,
    conf: PathBuf,
}

/// A response to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// mod_unique_id's id, from the `X-Unique-ID` header the config adds.
    pub unique_id: Option<String>,
}

fn free_port() -> u16 {
    // A port free on both loopback addresses at the time of asking.
    for _ in 0..50 {
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = v4.local_addr().unwrap().port();
        if TcpListener::bind((Ipv6Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both 127.0.0.1 and [::1]");
}

fn chown(path: &Path, user: &str) {
    let ok = Command::new("chown")
        .arg(format!("{user}:{user}"))
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "chown {user} {}", path.display());
}

impl Apache {
    /// Renders the config and starts Apache; waits until it answers.
    pub fn start(opts: &ApacheOptions) -> Apache {
        Apache::start_with(opts, |_| opts.pipe_to.clone().unwrap_or_default())
    }

    /// Like [`Apache::start`], with the pipe command made from the instance dir (so it
    /// can name the storage dir); an empty command means a plain index file.
    pub fn start_with(opts: &ApacheOptions, pipe: impl FnOnce(&Path) -> String) -> Apache {
        let builder = {
            let mut b = tempfile::Builder::new();
            b.prefix("modsec2sguil-apache-");
            b
        };
        let dir = match &opts.parent_dir {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .expect("temp dir");
        let root = dir.path().to_path_buf();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in [
            "conf",
            "run",
            "logs",
            "htdocs",
            "cgi-bin",
            "audit",
            "modsec-tmp",
            "modsec-data",
        ] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
            std::fs::set_permissions(root.join(sub), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        let storage = root.join("audit");
        for d in [
            &storage,
            &root.join("modsec-tmp"),
            &root.join("modsec-data"),
        ] {
            chown(d, CHILD_USER);
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o750)).unwrap();
        }
        std::fs::write(
            root.join("htdocs/index.html"),
            "<html><body>hello</body></html>\n",
        )
        .unwrap();
        std::fs::write(root.join("htdocs/hello.txt"), "plain text file\n").unwrap();
        let cgi = root.join("cgi-bin/echo.cgi");
        std::fs::write(
            &cgi,
            "#!/bin/sh\n# consumes the body, answers 200\ncat >/dev/null\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'\n",
        )
        .unwrap();
        std::fs::set_permissions(&cgi, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(
            super::fixtures().join("modsec-2.9/custom-rules.conf"),
            root.join("conf/custom-rules.conf"),
        )
        .unwrap();

        let port = free_port();
        let index = root.join("logs/modsec_index.log");
        let cmd = pipe(&root);
        let target = if cmd.is_empty() {
            index.display().to_string()
        } else {
            format!("|{cmd}")
        };
        let conf = root.join("conf/apache.conf");
        std::fs::write(&conf, render(&root, port, opts, &target)).unwrap();
        let pid_file = root.join("run/httpd.pid");
        let start_out = root.join("logs/start.out");
        let start_file = std::fs::File::create(&start_out).expect("create start.out");
        let apache = Apache {
            dir,
            port,
            storage,
            index,
            pid_file,
            conf,
        };
        let out = Command::new(APACHE)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C")
            .env("APACHE_RUN_DIR", root.join("run"))
            .args(["-f"])
            .arg(&apache.conf)
            .args(["-k", "start"])
            // To a file, not a pipe: the piped loggers Apache starts before it detaches
            // inherit its stdout and stderr, and one that never exits (a collector
            // stuck at start-up) would keep a pipe open, and this test waiting, for good.
            .stdout(start_file.try_clone().expect("dup start.out"))
            .stderr(start_file)
            .status()
            .expect("run apache2");
        assert!(
            out.success(),
            "apache2 -k start failed: {}\nerror log:\n{}",
            std::fs::read_to_string(&start_out).unwrap_or_default(),
            apache.error_log()
        );
        apache.wait_ready();
        apache
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let v4 = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok();
            let v6 = TcpStream::connect((Ipv6Addr::LOCALHOST, self.port)).is_ok();
            if v4 && v6 && self.pid().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "Apache did not come up on port {}; error log:\n{}",
            self.port,
            self.error_log()
        );
    }

    /// The parent's PID, from its pid file.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The SecAuditLog2 copy of the index (with `audit_log2`).
    pub fn index2(&self) -> PathBuf {
        self.dir.path().join("logs/index2.log")
    }

    /// Whether the parent process is still running.
    pub fn running(&self) -> bool {
        self.pid()
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }

    /// Sends raw request bytes over IPv4 or IPv6 and reads the whole response.
    pub fn request(&self, v6: bool, raw: &[u8]) -> Reply {
        let addr: SocketAddr = if v6 {
            (Ipv6Addr::LOCALHOST, self.port).into()
        } else {
            (Ipv4Addr::LOCALHOST, self.port).into()
        };
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(raw).expect("send request");
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let text = String::from_utf8_lossy(&resp);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let unique_id = text
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix("X-Unique-ID: "))
            .map(|v| v.trim().to_string())
            .filter(|v| v != "(null)");
        Reply { status, unique_id }
    }

    /// A GET with `Connection: close`.
    pub fn get(&self, v6: bool, target: &str, extra_headers: &str) -> Reply {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: lab.example\r\nUser-Agent: modsec2sguil-test\r\n{extra_headers}Connection: close\r\n\r\n");
        self.request(v6, raw.as_bytes())
    }

    /// A POST with the given body and content type.
    pub fn post(&self, v6: bool, target: &str, content_type: &str, body: &[u8]) -> Reply {
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: lab.example\r\nUser-Agent: modsec2sguil-test\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        self.request(v6, &[head.as_bytes(), body].concat())
    }

    /// Sends a signal to the parent (`-TERM` stop, `-USR1` graceful restart).
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            crate::process::signal(pid, signal);
        }
    }

    /// Stops the parent by PID and waits for it to exit.
    pub fn stop(&mut self) {
        let Some(pid) = self.pid() else { return };
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        self.stop();
    }
}

fn render(root: &Path, port: u16, o: &ApacheOptions, target: &str) -> String {
    let root = root.display();
    let crs_setup = CRS_SETUP;
    let crs_rules = CRS_RULES;
    let m = MODULES;
    let (format, engine, parts, user) = (o.format, o.engine, o.parts, CHILD_USER);
    let log2 = if o.audit_log2 {
        format!("SecAuditLog2 \"{root}/logs/index2.log\"")
    } else {
        String::new()
    };
    let audit = match &o.audit_conf {
        Some(path) => format!("Include \"{}\"", path.display()),
        None => format!(
            "SecAuditEngine {engine}\n\
             SecAuditLogRelevantStatus \"^(?:5|4(?!04))\"\n\
             SecAuditLogParts {parts}\n\
             SecAuditLogType Concurrent\n\
             SecAuditLogFormat {format}\n\
             SecAuditLogStorageDir \"{root}/audit\"\n\
             SecAuditLog \"{target}\""
        ),
    };
    format!(
        r#"# Rendered by the modsec2sguil end-to-end tests; loopback only.
ServerRoot "{root}"
DefaultRuntimeDir "{root}/run"
PidFile "{root}/run/httpd.pid"
Mutex file:{root}/run default
ServerName lab.example
User {user}
Group {user}
LoadModule mpm_event_module {m}/mod_mpm_event.so
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule mime_module {m}/mod_mime.so
LoadModule dir_module {m}/mod_dir.so
LoadModule alias_module {m}/mod_alias.so
LoadModule headers_module {m}/mod_headers.so
LoadModule cgid_module {m}/mod_cgid.so
LoadModule unique_id_module {m}/mod_unique_id.so
LoadModule security2_module {m}/mod_security2.so
Listen 127.0.0.1:{port}
Listen [::1]:{port}
StartServers 2
ServerLimit 4
ThreadsPerChild 16
MaxRequestWorkers 64
Timeout 30
KeepAlive Off
TypesConfig /etc/mime.types
ErrorLog "{root}/logs/error.log"
LogLevel warn
ScriptSock "{root}/run/cgisock"
Header always set X-Unique-ID "%{{UNIQUE_ID}}e"
DocumentRoot "{root}/htdocs"
<Directory />
    Require all denied
</Directory>
<Directory "{root}/htdocs">
    Require all granted
    DirectoryIndex index.html
</Directory>
ScriptAlias /cgi-bin/ "{root}/cgi-bin/"
<Directory "{root}/cgi-bin">
    Options +ExecCGI
    Require all granted
</Directory>
SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecResponseBodyAccess On
SecResponseBodyMimeType text/plain text/html
SecTmpDir "{root}/modsec-tmp"
SecDataDir "{root}/modsec-data"
{audit}
{log2}
Include {crs_setup}
SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=1"
SecAction "id:900110,phase:1,nolog,pass,t:none,setvar:tx.inbound_anomaly_score_threshold=5,setvar:tx.outbound_anomaly_score_threshold=4"
Include "{root}/conf/custom-rules.conf"
Include {crs_rules}/*.conf
"#
    )
}

/// Apache (native, RelevantOnly) with `modsec-collector` in its `SecAuditLog` pipe,
/// queueing into `queue` (created) with its config, index file, log and state dir
/// ([`crate::state::dir`]) in `work`.
pub fn with_collector(work: &Path, queue: &Path) -> Apache {
    std::fs::create_dir_all(queue).unwrap();
    let conf = work.join("collector.conf");
    std::fs::write(
        &conf,
        format!(
            "set EVENT_DIR {}\nset LOG_FILE {}\n{}",
            queue.display(),
            work.join("collector.log").display(),
            crate::state::setting(work)
        ),
    )
    .unwrap();
    let pipe = format!(
        "{} -c {} STORAGE {}",
        crate::binary("modsec-collector").display(),
        conf.display(),
        work.join("index.log").display()
    );
    Apache::start_with(&ApacheOptions::default(), |root| {
        pipe.replace("STORAGE", &root.join("audit").display().to_string())
    })
}
