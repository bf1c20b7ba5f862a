//! A private MariaDB for one test (Debian's `mariadb-server`): its own data directory and
//! socket in a temporary directory, no TCP port, stopped by PID when dropped; and the
//! part of `sguildb` that reports read, created and filled as sguild 1.0.0 does it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::process::{signal, wait_exit};
use super::sguild::Stored;
use super::{skip_or_fail, which};

pub struct MariaDb {
    /// The server this test started (stopped on drop), if it started one.
    child: Option<Child>,
    /// How `mariadb` reaches it.
    connect: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl MariaDb {
    /// Starts a server with sguild's `sql_mode` (empty: sguild needs it), or skips.
    pub fn start(test: &str) -> Option<MariaDb> {
        let (Some(install), Some(server), Some(_)) = (
            which("mariadb-install-db"),
            which("mariadbd"),
            which("mariadb"),
        ) else {
            skip_or_fail(
                test,
                "MariaDB is not installed (apt-get install mariadb-server)",
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("m2s-mariadb")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let socket = dir.path().join("mysqld.sock");
        let log = dir.path().join("install.log");
        // Each server has its own temporary directory, the bootstrap too: bootstraps
        // sharing /tmp (tests run in parallel) delete each other's temporary tables
        // ("Unknown table 'mysql.tmp_user_sys'"), seen in CI and reproduced here.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let ok = Command::new(install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .env("TMPDIR", &tmp)
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "mariadb-install-db failed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let err_log = dir.path().join("mysqld.err");
        let child = Command::new(server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", err_log.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args([
                "--skip-networking",
                "--user=root",
                "--sql-mode=",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--performance-schema=OFF",
                "--default-time-zone=+00:00",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut db = MariaDb {
            child: Some(child),
            connect: vec![
                format!("--socket={}", socket.display()),
                "--user=root".into(),
            ],
            _dir: Some(dir),
        };
        let ready = std::time::Instant::now() + Duration::from_secs(60);
        while db.query("SELECT 1").is_err() {
            if let Some(status) = db.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "mariadbd exited ({status}): {}",
                    std::fs::read_to_string(&err_log).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < ready,
                "mariadbd did not answer in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(db)
    }

    /// A server someone else runs (sguild's), over TCP; it is left running.
    pub fn connect(host: &str, port: u16, user: &str, password: &str) -> MariaDb {
        MariaDb {
            child: None,
            connect: vec![
                "--protocol=TCP".into(),
                format!("--host={host}"),
                format!("--port={port}"),
                format!("--user={user}"),
                format!("--password={password}"),
            ],
            _dir: None,
        }
    }

    /// Runs `sql` (one or more statements) and returns the last statement's rows, each
    /// field as the client prints it (`NULL` for NULL), or the client's error.
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        use std::io::Write as _;
        let mut child = Command::new("mariadb")
            .arg("--no-defaults")
            .args(&self.connect)
            .args(["--batch", "--skip-column-names"])
            .arg("--default-character-set=binary")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        // The statements go on stdin: a day of events is more than an argument may hold.
        let mut stdin = child.stdin.take().unwrap();
        let input = sql.to_string();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        writer.join().unwrap().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').map(unescape).collect())
            .collect())
    }

    /// Runs `sql`, failing the test on an error.
    pub fn exec(&self, sql: &str) -> Vec<Vec<String>> {
        self.query(sql)
            .unwrap_or_else(|e| panic!("{e}\nin: {}", &sql[..sql.len().min(2000)]))
    }
}

/// A field as `mariadb --batch` writes it: `\t`, `\n`, `\\` and `\0` escaped.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        signal(child.id(), "TERM");
        if wait_exit(child, Duration::from_secs(30)).is_none() {
            eprintln!("mariadbd did not stop on SIGTERM in 30 s: killed");
        }
    }
}

/// sguild's per-sensor-per-day table suffix, `<hostname>_<YYYYMMDD>`.
fn day_suffix(e: &Stored) -> String {
    format!("{}_{}", e.hostname, e.day)
}

/// `sguildb` as sguild 1.0.0 lays it out for GenericEvents: `sensor` and `status`
/// (`server/sql_scripts/create_sguildb.sql`), one MyISAM `event_<host>_<day>` and
/// `data_<host>_<day>` table per sensor and day, and the MERGE tables `event` and `data`
/// over them (`server/lib/SguildMysqlMerge.tcl`), with the same column types and keys.
/// The events go in as `InsertEventHdr` and `InsertDataPayload` write a GenericEvent.
/// `sensors` are (sid, hostname, agent type, net name).
pub fn load_sguildb(db: &MariaDb, sensors: &[(u32, &str, &str, &str)], events: &[Stored]) {
    let mut sql = String::from(
        "CREATE DATABASE sguildb; USE sguildb;
         CREATE TABLE sensor (sid INT UNSIGNED NOT NULL AUTO_INCREMENT,
           hostname VARCHAR(255) NOT NULL, agent_type VARCHAR(40), net_name VARCHAR(40),
           interface VARCHAR(255), description TEXT, bpf_filter TEXT,
           updated TIMESTAMP NOT NULL, active ENUM('Y','N') DEFAULT 'Y',
           ip VARCHAR(15) DEFAULT NULL, public_key VARCHAR(255) DEFAULT NULL,
           PRIMARY KEY (sid), INDEX hostname_idx (hostname)) ENGINE = MYISAM;
         CREATE TABLE status (status_id SMALLINT UNSIGNED NOT NULL,
           description VARCHAR(255) NOT NULL, long_desc VARCHAR(255),
           PRIMARY KEY (status_id)) ENGINE = MYISAM;
         INSERT INTO status VALUES (0, 'New', 'Real Time Event'),
           (1, 'No Further Action Required', 'No Further Action Required'),
           (2, 'Escalated', 'Escalated');\n",
    );
    for (sid, host, kind, net) in sensors {
        sql.push_str(&format!(
            "INSERT INTO sensor (sid, hostname, agent_type, net_name, updated) \
             VALUES ({sid}, '{host}', '{kind}', '{net}', NOW());\n"
        ));
    }
    let mut days: Vec<String> = events.iter().map(day_suffix).collect();
    days.sort();
    days.dedup();
    assert!(!days.is_empty(), "no events to load");
    for d in &days {
        sql.push_str(&format!(
            "CREATE TABLE `event_{d}` ({EVENT_COLUMNS}, PRIMARY KEY (sid,cid), {EVENT_INDEXES}) \
             ENGINE=MyISAM;
             CREATE TABLE `data_{d}` ({DATA_COLUMNS}, PRIMARY KEY (sid,cid)) ENGINE=MyISAM;\n"
        ));
    }
    let union = |prefix: &str| {
        days.iter()
            .map(|d| format!("`{prefix}_{d}`"))
            .collect::<Vec<_>>()
            .join(",")
    };
    sql.push_str(&format!(
        "CREATE TABLE event ({EVENT_COLUMNS}, INDEX event_p_key (sid,cid), {EVENT_INDEXES}) \
         ENGINE=MERGE UNION=({});
         CREATE TABLE data ({DATA_COLUMNS}, INDEX data_p_key (sid,cid)) ENGINE=MERGE UNION=({});\n",
        union("event"),
        union("data")
    ));
    db.exec(&sql);
    // One statement per row, as sguild sends them; batched per call to keep the test quick.
    for chunk in events.chunks(200) {
        let mut sql = String::from("USE sguildb;\n");
        for e in chunk {
            sql.push_str(&insert_event(e));
        }
        db.exec(&sql);
    }
}

const EVENT_COLUMNS: &str = "sid INT UNSIGNED NOT NULL, cid INT UNSIGNED NOT NULL,
    signature VARCHAR(255) NOT NULL, signature_gen INT UNSIGNED NOT NULL,
    signature_id INT UNSIGNED NOT NULL, signature_rev INT UNSIGNED NOT NULL,
    timestamp DATETIME NOT NULL, unified_event_id INT UNSIGNED,
    unified_event_ref INT UNSIGNED, unified_ref_time DATETIME, priority INT UNSIGNED,
    class VARCHAR(20), status SMALLINT UNSIGNED DEFAULT 0, src_ip INT UNSIGNED,
    dst_ip INT UNSIGNED, src_port INT UNSIGNED, dst_port INT UNSIGNED,
    icmp_type TINYINT UNSIGNED, icmp_code TINYINT UNSIGNED, ip_proto TINYINT UNSIGNED,
    ip_ver TINYINT UNSIGNED, ip_hlen TINYINT UNSIGNED, ip_tos TINYINT UNSIGNED,
    ip_len SMALLINT UNSIGNED, ip_id SMALLINT UNSIGNED, ip_flags TINYINT UNSIGNED,
    ip_off SMALLINT UNSIGNED, ip_ttl TINYINT UNSIGNED, ip_csum SMALLINT UNSIGNED,
    last_modified DATETIME, last_uid INT UNSIGNED, abuse_queue enum('Y','N'),
    abuse_sent enum('Y','N')";
const EVENT_INDEXES: &str = "INDEX sid_time (sid, timestamp), INDEX src_ip (src_ip),
    INDEX dst_ip (dst_ip), INDEX dst_port (dst_port), INDEX src_port (src_port),
    INDEX icmp_type (icmp_type), INDEX icmp_code (icmp_code), INDEX timestamp (timestamp),
    INDEX last_modified (last_modified), INDEX signature (signature), INDEX status (status)";
const DATA_COLUMNS: &str =
    "sid INT UNSIGNED NOT NULL, cid INT UNSIGNED NOT NULL, data_payload TEXT";

/// sguild's `InetAtoN`: dotted IPv4 to its number, the empty address to ''.
fn inet_aton(ip: &str) -> String {
    if ip.is_empty() {
        return String::new();
    }
    let n = ip
        .split('.')
        .map(|o| o.parse::<u64>().expect("dotted IPv4"))
        .fold(0u64, |n, o| n * 256 + o);
    n.to_string()
}

/// MySQL's string escaping (what sguild's `mysqlescape` does to the message).
fn escape(s: &[u8]) -> String {
    let mut out = String::new();
    for &b in s {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'"' => out.push_str("\\\""),
            0 => out.push_str("\\0"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ => out.push(b as char),
        }
    }
    out
}

/// The two INSERTs of one GenericEvent: the event header (unified_event_id the cid,
/// unified_event_ref the agent's ref, 0 from modsec-shipper, unified_ref_time the event's
/// time, the unused IP columns empty, TCP ports in place) and the hex detail as received.
fn insert_event(e: &Stored) -> String {
    let d = day_suffix(e);
    format!(
        "INSERT INTO `event_{d}` (sid, cid, unified_event_id, unified_event_ref, unified_ref_time, \
         signature, signature_gen, signature_id, signature_rev, timestamp, priority, class, \
         status, src_ip, dst_ip, ip_proto, ip_ver, ip_hlen, ip_tos, ip_len, ip_id, ip_flags, \
         ip_off, ip_ttl, ip_csum, src_port, dst_port) VALUES ('{sid}', '{cid}', '{cid}', '0', \
         '{ts}', '{msg}', '{gen}', '{sig}', '{rev}', '{ts}', '{prio}', '{class}', '{status}', \
         '{sip}', '{dip}', '6', '', '', '', '', '', '', '', '', '', '{sp}', '{dp}');\n\
         INSERT INTO `data_{d}` (sid, cid, data_payload) VALUES ('{sid}', '{cid}', '{hex}');\n",
        sid = e.sid,
        cid = e.cid,
        ts = e.timestamp,
        msg = escape(&e.message),
        gen = e.generator,
        sig = e.sig_id,
        rev = e.revision,
        prio = e.priority,
        class = e.class,
        status = e.status,
        sip = inet_aton(&e.src_ip),
        dip = inet_aton(&e.dst_ip),
        sp = e.src_port,
        dp = e.dst_port,
        hex = e.detail_hex,
    )
}

/// Where the Tcl program lies that expands report and query files as Sguil does.
pub fn sguil_menu_tcl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("support/sguil_menu.tcl")
}
