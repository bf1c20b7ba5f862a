//! A sguild-faithful test server (ARCHITECTURE.md, "Sguil's agent protocol"): the banner, the version check,
//! TLS right after `VersionInfo` (certificate made at start-up), plaintext when the agent
//! skips `VersionInfo`, `RegisterAgent` → `AgentInfo` with sid and maxCid kept on disk,
//! the 18-field check, per-day duplicate keys, the cases sguild leaves unanswered,
//! hexDetail truncation, PING/PONG — and fault switches for tests.
//!
//! With [`TestSguild::start_snort_agent`] it also plays a snort_agent in front of itself
//! (ARCHITECTURE.md, "Sguil's agent protocol", 6): plaintext on its own port, `SidCidRequest` →
//! `SidCidResponse`, `RTEVENT` with 46 fields stored as sguild's `BYEventRcvd` does
//! (no reply to a repeat of the sensor's last stored event), `Confirm <cid>` or
//! `Failed to insert <cid>: …`, the answers to lines that came together in reverse
//! order; a line that is not a Tcl list or an RTEVENT of another length makes it exit,
//! as snort_agent does.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modsec2sguil::sguil::tcl;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// sguild 1.0.0's banner.
pub const VERSION: &str = "SGUIL-1.0.0 OPENSSL ENABLED";
/// sguild stores hexDetail in a TEXT column.
pub const MAX_DETAIL_HEX: usize = 65_535;

/// Switches a test can flip while the server runs.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// The database is down: `Lost connection …` once, then `Server has gone away`, and
    /// no answer to a registration (as the real sguild 1.0.0 did, `tests/sguild_real.rs`).
    /// The real one also exits at its next agents' health check (10 s after its start,
    /// then every 5 minutes) and never reconnects to its database by itself; an agent
    /// sees either as no `AgentInfo`, and only a restart brings it back.
    pub db_down: bool,
    /// Read lines but answer nothing.
    pub silent: bool,
    /// Close each connection after this many GenericEvents.
    pub close_after: Option<usize>,
    /// Wait this long before each reply.
    pub delay: Option<Duration>,
    /// Wait this long before answering each GenericEvent (registration is prompt).
    pub event_delay: Option<Duration>,
    /// Answer `Connection Refused.` to new connections.
    pub refuse: bool,
    /// The snort_agent has lost sguild: it drops RTEVENTs and SidCidRequests unanswered.
    pub agent_offline: bool,
    /// Store RTEVENTs but lose the replies (as when the connection breaks just after).
    pub lose_replies: bool,
}

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub sid: u32,
    pub cid: u32,
    pub day: String,
    pub timestamp: String,
    pub message: Vec<u8>,
    pub src_ip: String,
    pub dst_ip: String,
    pub src_port: u32,
    pub dst_port: u32,
    pub sig_id: String,
    pub detail_hex: String,
    /// When it was stored (Unix seconds), for latency figures.
    pub stored_at: f64,
    /// The rest of the GenericEvent, as sguild writes it into the event row.
    pub status: u32,
    pub priority: u32,
    pub class: String,
    pub hostname: String,
    pub generator: u32,
    pub revision: u32,
}

#[derive(Debug, Default)]
struct Db {
    /// (hostname lowercased, agent type) → sid.
    sensors: BTreeMap<(String, String), u32>,
    events: Vec<Stored>,
    keys: BTreeSet<(u32, u32, String)>,
    /// Set once the database went down: sguild never reconnects.
    gone: bool,
    /// This server was stopped: a connection thread still finishing a line must not
    /// store it (a restarted server has already read the store; a real sguild that
    /// was killed stores nothing more either).
    stopped: bool,
    /// The store, kept open for appending.
    file: Option<std::fs::File>,
    /// sguild's memory of each sensor's last stored event (sid, cid), for its
    /// duplicate check on BYEventRcvd; lost when sguild restarts.
    last_event: BTreeMap<String, (u32, u32)>,
}

impl Db {
    /// The highest cid stored for `sid` (sguild's `SELECT MAX(cid)`), 0 for none.
    fn max_cid(&self, sid: u32) -> u32 {
        self.events
            .iter()
            .filter(|e| e.sid == sid)
            .map(|e| e.cid)
            .max()
            .unwrap_or(0)
    }
}

/// The running server; stopped when dropped.
pub struct TestSguild {
    pub addr: SocketAddr,
    /// The server certificate (PEM) and its DER, for TLS_CA_FILE and the pin.
    pub cert_pem: PathBuf,
    pub cert_der: Vec<u8>,
    pub faults: Arc<Mutex<Faults>>,
    db: Arc<Mutex<Db>>,
    store: PathBuf,
    stop: Arc<AtomicBool>,
    dir: Option<tempfile::TempDir>,
    /// Open connections, shut down when the server stops (as a sguild restart does).
    conns: Arc<Mutex<Vec<TcpStream>>>,
    /// The snort_agent's address, when one runs.
    pub agent: Option<SocketAddr>,
    /// The snort_agent exited (a line it could not take).
    pub agent_dead: Arc<AtomicBool>,
}

impl TestSguild {
    /// Starts on 127.0.0.1 with an empty store.
    pub fn start() -> TestSguild {
        let dir = tempfile::tempdir().unwrap();
        TestSguild::start_in(dir)
    }

    /// Starts with the store (sensors and events) of `dir`, as a restart would.
    pub fn start_in(dir: tempfile::TempDir) -> TestSguild {
        TestSguild::start_at(dir, 0)
    }

    /// Starts on 127.0.0.1:`port` (0: any free port) with the store of `dir`.
    pub fn start_at(dir: tempfile::TempDir, port: u16) -> TestSguild {
        keep_heap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        // Like `openssl req -x509`, which sguild's set-up uses: self-signed, CA:TRUE.
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        let cert = params.self_signed(&key).unwrap();
        let cert_pem = dir.path().join(format!("cert-{}.pem", std::process::id()));
        std::fs::write(&cert_pem, cert.pem()).unwrap();
        let cert_der = cert.der().to_vec();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let config = Arc::new(config);
        let store = dir.path().join("store.txt");
        let db = Arc::new(Mutex::new(load(&store)));
        let listener = bind_retrying(port);
        let addr = listener.local_addr().unwrap();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (f, d, s, st) = (faults.clone(), db.clone(), stop.clone(), store.clone());
        accept_loop(listener, stop.clone(), None, conns.clone(), move |own| {
            let _ = serve(own, &f, &d, &config, &st, &s);
        });
        TestSguild {
            addr,
            cert_pem,
            cert_der,
            faults,
            db,
            store,
            stop,
            dir: Some(dir),
            conns,
            agent: None,
            agent_dead: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts a snort_agent on 127.0.0.1:`port` (0: any free port) registered as sensor
    /// `hostname` (type snort), in front of this server.
    pub fn start_snort_agent(&mut self, port: u16, hostname: &str) -> SocketAddr {
        let sid = {
            let mut d = self.db.lock().unwrap();
            let key = (hostname.to_lowercase(), "snort".to_string());
            match d.sensors.get(&key) {
                Some(s) => *s,
                None => {
                    let sid = d.sensors.len() as u32 + 1;
                    d.sensors.insert(key.clone(), sid);
                    let store = self.store.clone();
                    append(&mut d, &store, format!("sensor\t{}\tsnort\t{sid}\n", key.0));
                    sid
                }
            }
        };
        let listener = bind_retrying(port);
        let addr = listener.local_addr().unwrap();
        let (f, d, st, s, dead) = (
            self.faults.clone(),
            self.db.clone(),
            self.store.clone(),
            self.stop.clone(),
            self.agent_dead.clone(),
        );
        accept_loop(
            listener,
            self.stop.clone(),
            Some(self.agent_dead.clone()),
            self.conns.clone(),
            move |own| {
                let _ = serve_barnyard(own, sid, &f, &d, &st, &s, &dead);
            },
        );
        self.agent = Some(addr);
        addr
    }

    /// Makes sguild remember (sid, cid) as `sensor`'s last stored event.
    pub fn set_last_event(&self, sensor: &str, sid: u32, cid: u32) {
        self.db
            .lock()
            .unwrap()
            .last_event
            .insert(sensor.to_string(), (sid, cid));
    }

    /// sguild restarted behind a snort_agent that stays: its memory of the last event
    /// is gone and its database connection is new.
    pub fn forget_last_events(&self) {
        let mut d = self.db.lock().unwrap();
        d.last_event.clear();
        d.gone = false;
    }

    /// Stops and starts again on a new port with the same store (sguild restarted:
    /// the database connection is new, so a "gone" database works again).
    pub fn restart(mut self) -> TestSguild {
        let dir = self.dir.take().expect("the store dir");
        drop(self);
        TestSguild::start_in(dir)
    }

    /// Like [`TestSguild::restart`], on the same port (agents reconnect to it).
    pub fn restart_on(mut self, port: u16) -> TestSguild {
        let dir = self.dir.take().expect("the store dir");
        drop(self);
        TestSguild::start_at(dir, port)
    }

    pub fn set(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.faults.lock().unwrap());
    }

    /// Events stored so far.
    pub fn events(&self) -> Vec<Stored> {
        self.db.lock().unwrap().events.clone()
    }

    pub fn store_path(&self) -> &Path {
        &self.store
    }
}

impl Drop for TestSguild {
    fn drop(&mut self) {
        // Under the lock: a line being stored finishes first, none is stored after.
        self.db.lock().unwrap_or_else(|e| e.into_inner()).stopped = true;
        self.stop.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        // Wake the accept loops so they see the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(agent) = self.agent {
            let _ = TcpStream::connect_timeout(&agent, Duration::from_millis(200));
        }
    }
}

/// Serves each connection of `listener` on its own thread with `serve` until `stop`
/// (or `dead`) is set; keeps a handle of each in `conns` so that stopping can cut them.
fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    dead: Option<Arc<AtomicBool>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    serve: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst)
                || dead.as_ref().is_some_and(|d| d.load(Ordering::SeqCst))
            {
                break;
            }
            let Ok(conn) = conn else { continue };
            if let Ok(c) = conn.try_clone() {
                conns.lock().unwrap().push(c);
            }
            let serve = serve.clone();
            std::thread::spawn(move || {
                let Ok(own) = conn.try_clone() else { return };
                serve(own);
                // Closing ends the session for the agent even while clones of the
                // socket are kept for a restart.
                let _ = conn.shutdown(std::net::Shutdown::Both);
            });
        }
    });
}

/// Binds 127.0.0.1:`port`. On a restart on the same port, the stopped server's accept
/// thread may still hold it for a moment: retry while it lets go.
fn bind_retrying(port: u16) -> TcpListener {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(l) => return l,
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    && port != 0
                    && std::time::Instant::now() < until =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("bind 127.0.0.1:{port}: {e}"),
        }
    }
}

/// Every event line is ~10 KB of hex copied a few times; glibc's default of handing
/// freed heap back to the kernel at once makes the server fault in fresh zeroed pages
/// for each event (measured: 70% of its time). Keeping the heap makes the test server
/// cheap enough that what a benchmark measures is the shipper.
fn keep_heap() {
    // SAFETY: mallopt only sets allocator tunables; any value is allowed.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

/// The store survives restarts: one line per sensor and per event.
fn load(path: &Path) -> Db {
    let mut db = Db::default();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["sensor", host, kind, sid] => {
                db.sensors
                    .insert((host.to_string(), kind.to_string()), sid.parse().unwrap());
            }
            ["event", sid, cid, day, ts, msg, src, dst, sp, dp, sig, detail, at, status, prio, class, host, generator, rev] =>
            {
                let e = Stored {
                    sid: sid.parse().unwrap(),
                    cid: cid.parse().unwrap(),
                    day: day.to_string(),
                    timestamp: ts.to_string(),
                    message: decode_hex(msg).unwrap_or_default(),
                    src_ip: src.to_string(),
                    dst_ip: dst.to_string(),
                    src_port: sp.parse().unwrap(),
                    dst_port: dp.parse().unwrap(),
                    sig_id: sig.to_string(),
                    detail_hex: detail.to_string(),
                    stored_at: at.parse().unwrap_or(0.0),
                    status: status.parse().unwrap_or(0),
                    priority: prio.parse().unwrap_or(0),
                    class: class.to_string(),
                    hostname: host.to_string(),
                    generator: generator.parse().unwrap_or(0),
                    revision: rev.parse().unwrap_or(0),
                };
                db.keys.insert((e.sid, e.cid, e.day.clone()));
                db.events.push(e);
            }
            _ => {}
        }
    }
    db
}

fn append(db: &mut Db, path: &Path, line: String) {
    if db.file.is_none() {
        db.file = Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
        );
    }
    if let Some(f) = db.file.as_mut() {
        f.write_all(line.as_bytes()).unwrap();
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Stores an event: in memory and in the store file.
fn record(d: &mut Db, store: &Path, e: Stored) {
    let line = format!(
        "event\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
        e.sid,
        e.cid,
        e.day,
        e.timestamp,
        modsec2sguil::hex::upper(&e.message),
        e.src_ip,
        e.dst_ip,
        e.src_port,
        e.dst_port,
        e.sig_id,
        e.detail_hex,
        e.stored_at,
        e.status,
        e.priority,
        e.class,
        e.hostname,
        e.generator,
        e.revision
    );
    append(d, store, line);
    d.events.push(e);
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    // An odd digit at the end is dropped, as sguild does.
    let even = &s.as_bytes()[..s.len() - s.len() % 2];
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    modsec2sguil::hex::decode(even)
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
    /// A line as snort_agent writes to barnyard (`-translation lf`).
    fn write_lf(&mut self, line: &str) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(format!("{line}\n").as_bytes()),
            Stream::Tls(_) => unreachable!("snort_agent's barnyard port is plaintext"),
        }
    }
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        let data = format!("{line}\r\n");
        match self {
            Stream::Plain(s) => s.write_all(data.as_bytes()),
            Stream::Tls(s) => s.write_all(data.as_bytes()).and_then(|_| s.flush()),
        }
    }
}

fn read_line(stream: &mut Stream, buf: &mut Vec<u8>) -> io::Result<Option<String>> {
    loop {
        if let Some(p) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=p).collect();
            return Ok(Some(
                String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ));
        }
        let mut chunk = [0u8; 65536];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn serve(
    tcp: TcpStream,
    faults: &Mutex<Faults>,
    db: &Mutex<Db>,
    tls: &Arc<ServerConfig>,
    store: &Path,
    stop: &AtomicBool,
) -> io::Result<()> {
    if stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    let mut stream = Stream::Plain(tcp.try_clone()?);
    if faults.lock().unwrap().refuse {
        return stream.write_line("Connection Refused.");
    }
    stream.write_line(VERSION)?;
    let mut buf = Vec::new();
    let mut registered = false;
    let mut events = 0usize;
    while let Some(line) = read_line(&mut stream, &mut buf)? {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Ok(items) = tcl::split(&line) else {
            continue;
        }; // not a Tcl list: no reply
        let Some(cmd) = items.first() else { continue };
        if cmd == "VersionInfo" && !registered {
            if items.get(1).map(String::as_str) != Some(VERSION) || items.len() != 2 {
                return Ok(()); // mismatch: close, no error line
            }
            let mut conn = ServerConnection::new(tls.clone()).map_err(io::Error::other)?;
            // The ClientHello may have come in the same read as the VersionInfo line.
            let mut early: &[u8] = &buf;
            while !early.is_empty() {
                conn.read_tls(&mut early)?;
            }
            buf.clear();
            conn.process_new_packets().map_err(io::Error::other)?;
            let mut s = StreamOwned::new(conn, tcp.try_clone()?);
            // The handshake is synchronous, as in sguild.
            while s.conn.is_handshaking() {
                s.conn.complete_io(&mut s.sock)?;
            }
            stream = Stream::Tls(Box::new(s));
            continue;
        }
        let f = faults.lock().unwrap().clone();
        if f.silent {
            continue;
        }
        if let Some(d) = f.delay {
            std::thread::sleep(d);
        }
        match cmd.as_str() {
            "RegisterAgent" if items.len() == 4 => {
                registered = true;
                let (host, kind, net) = (&items[2], &items[1], &items[3]);
                let mut d = db.lock().unwrap();
                if f.db_down || d.gone || d.stopped {
                    continue; // the lookup fails: no reply
                }
                let key = (host.to_lowercase(), kind.clone());
                let sid = match d.sensors.get(&key) {
                    Some(s) => *s,
                    None => {
                        let sid = d.sensors.len() as u32 + 1;
                        d.sensors.insert(key.clone(), sid);
                        append(
                            &mut d,
                            store,
                            format!("sensor\t{}\t{}\t{sid}\n", key.0, key.1),
                        );
                        sid
                    }
                };
                let max_cid = d.max_cid(sid);
                let reply = format!(
                    "AgentInfo {} {} {} {sid} {max_cid}",
                    tcl::element(host),
                    tcl::element(kind),
                    tcl::element(net)
                );
                drop(d);
                stream.write_line(&reply)?;
            }
            _ if !registered => {} // anything before RegisterAgent: ignored
            "PING" => stream.write_line("PONG")?,
            "PONG" => {}
            "GenericEvent" => {
                events += 1;
                if let Some(d) = f.event_delay {
                    std::thread::sleep(d);
                }
                if let Some(reply) = generic_event(&items[1..], &f, db, store) {
                    stream.write_line(&reply)?;
                }
                if f.close_after.is_some_and(|n| events >= n) {
                    return Ok(());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// What sguild does with a GenericEvent; `None` is "no reply at all".
fn generic_event(args: &[String], f: &Faults, db: &Mutex<Db>, store: &Path) -> Option<String> {
    if args.len() != 18 {
        return Some(format!(
            "Failed {}",
            // The fields as the Tcl list sguild echoes (a time in braces).
            tcl::element(&format!(
                "ERROR: Invalid length ({}): {}",
                args.len(),
                args.iter()
                    .map(|a| tcl::element(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            ))
        ));
    }
    let ip_ok = |s: &str| {
        s.is_empty()
            || s.split('.').count() == 4
                && s.split('.')
                    .all(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()))
    };
    // sguild throws (no reply) on a non-IPv4 address, a non-hex message, a bad time.
    if !ip_ok(&args[9]) || !ip_ok(&args[10]) {
        return None;
    }
    let message = decode_hex(&args[8])?;
    let ts = &args[4];
    let day = match chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S") {
        Ok(t) => t.format("%Y%m%d").to_string(),
        Err(_) if ts.is_empty() => "00000000".to_string(),
        // sguild picks the table with Tcl's `clock scan`, which takes fields out of
        // range and carries them over (the real sguild stored and confirmed
        // `2026-13-45 99:99:99`; tests/sguild_real.rs compares); what it cannot scan
        // at all gets no answer.
        Err(_) => normalised_day(ts)?,
    };
    let mut d = db.lock().unwrap();
    if d.stopped {
        return None;
    }
    if f.db_down || d.gone {
        let first = !d.gone;
        d.gone = true;
        return Some(if first {
            "Failed {mysqlexec/db server: Lost connection to server during query}".to_string()
        } else {
            "Failed {mysqlexec/db server: Server has gone away}".to_string()
        });
    }
    let (sid, cid) = (
        args[5].parse::<u32>().unwrap_or(0),
        args[6].parse::<u32>().unwrap_or(0),
    );
    // The hostname names the per-day tables: MySQL refuses a table name over 64
    // characters (so a host over 47), and a backtick breaks the statement.
    let host = &args[3];
    if host.contains('`') {
        return Some(
            "Failed {mysqlexec/db server: You have an error in your SQL syntax}".to_string(),
        );
    }
    if host.len() > 47 {
        return Some(format!(
            "Failed {{mysqlexec/db server: Incorrect table name 'icmphdr_{host}_{day}'}}"
        ));
    }
    let detail = &args[17];
    if !detail.bytes().all(|b| b.is_ascii_hexdigit()) {
        // Pasted into SQL unescaped: the header row is stored, the data row fails.
        d.keys.insert((sid, cid, day));
        return Some(
            "Failed {mysqlexec/db server: You have an error in your SQL syntax}".to_string(),
        );
    }
    if !d.keys.insert((sid, cid, day.clone())) {
        return Some(format!(
            "Failed {{mysqlexec/db server: Duplicate entry '{sid}-{cid}' for key 'PRIMARY'}}"
        ));
    }
    let e = Stored {
        sid,
        cid,
        day,
        timestamp: ts.clone(),
        message: message.into_iter().take(255).collect(),
        src_ip: args[9].clone(),
        dst_ip: args[10].clone(),
        src_port: args[12].parse().unwrap_or(0),
        dst_port: args[13].parse().unwrap_or(0),
        sig_id: args[15].clone(),
        detail_hex: detail[..detail.len().min(MAX_DETAIL_HEX)].to_string(),
        stored_at: now(),
        status: args[0].parse().unwrap_or(0),
        priority: args[1].parse().unwrap_or(0),
        class: args[2].clone(),
        hostname: host.clone(),
        generator: args[14].parse().unwrap_or(0),
        revision: args[16].parse().unwrap_or(0),
    };
    record(&mut d, store, e);
    // An unknown sid is stored, then pushing it to analysts fails: no reply.
    if !d.sensors.values().any(|&known| known == sid) {
        return None;
    }
    Some(format!("ConfirmEvent {cid}"))
}

/// The day of `YYYY-MM-DD HH:MM:SS` with its fields out of range carried over (month 13
/// is January of the next year, day 45 the 45th day from the month's first), as Tcl's
/// `clock scan` reads it; `None` for text not of that shape.
fn normalised_day(ts: &str) -> Option<String> {
    let (date, time) = ts.split_once(' ')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let ([y, m, day], [h, mi, sec]) = (d[..].try_into().ok()?, t[..].try_into().ok()?);
    let months = y * 12 + m - 1;
    let first = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(months.div_euclid(12)).ok()?,
        u32::try_from(months.rem_euclid(12) + 1).ok()?,
        1,
    )?;
    let at = first.and_hms_opt(0, 0, 0)?
        + chrono::Duration::days(day - 1)
        + chrono::Duration::seconds(h * 3600 + mi * 60 + sec);
    Some(at.format("%Y%m%d").to_string())
}

/// snort_agent's side of a barnyard2 connection, with sguild's BYEventRcvd behind it.
/// Answers to the lines that came in one read go back in reverse order, as snort_agent's
/// `update` inside its handler for sguild's lines makes them.
fn serve_barnyard(
    tcp: TcpStream,
    sid: u32,
    faults: &Mutex<Faults>,
    db: &Mutex<Db>,
    store: &Path,
    stop: &AtomicBool,
    dead: &AtomicBool,
) -> io::Result<()> {
    let mut stream = Stream::Plain(tcp);
    let mut buf = Vec::new();
    let mut events = 0usize;
    while let Some(first) = read_line(&mut stream, &mut buf)? {
        let mut lines = vec![first];
        while let Some(p) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=p).collect();
            lines.push(
                String::from_utf8_lossy(&line)
                    .trim_end_matches('\n')
                    .to_string(),
            );
        }
        let mut replies = Vec::new();
        let mut close = false;
        for line in lines {
            if stop.load(Ordering::SeqCst) || dead.load(Ordering::SeqCst) {
                return Ok(());
            }
            // snort_agent takes `lindex $data 0` of every line: a line that is not a
            // list raises an error, and its bgerror exits.
            let Ok(items) = tcl::split(&line) else {
                eprintln!("test snort_agent: not a Tcl list, exiting: {line:.200}");
                dead.store(true, Ordering::SeqCst);
                return Ok(());
            };
            let f = faults.lock().unwrap().clone();
            if f.silent {
                continue;
            }
            if let Some(d) = f.delay {
                std::thread::sleep(d);
            }
            match items.first().map(String::as_str) {
                Some("SidCidRequest") => {
                    let d = db.lock().unwrap();
                    // Not connected to sguild, or sguild's query fails: no answer.
                    if f.agent_offline || f.db_down || d.gone || d.stopped {
                        continue;
                    }
                    let max_cid = d.max_cid(sid);
                    replies.push(format!("SidCidResponse {sid} {max_cid}"));
                }
                Some("RTEVENT") => {
                    if items.len() != 47 {
                        eprintln!(
                            "test snort_agent: Bad Event! List length != 46 ({}), exiting",
                            items.len() - 1
                        );
                        dead.store(true, Ordering::SeqCst);
                        return Ok(());
                    }
                    if f.agent_offline {
                        continue;
                    }
                    events += 1;
                    if let Some(d) = f.event_delay {
                        std::thread::sleep(d);
                    }
                    if let Some(reply) = by_event(&items[1..], &f, db, store) {
                        if !f.lose_replies {
                            replies.push(reply);
                        }
                    }
                    if f.close_after.is_some_and(|n| events >= n) {
                        close = true;
                        break;
                    }
                }
                _ => {} // "Unknown barnyard data"
            }
        }
        for reply in replies.iter().rev() {
            stream.write_lf(reply)?;
        }
        if close {
            return Ok(());
        }
    }
    Ok(())
}

/// What sguild does with a BYEventRcvd, as snort_agent relays the answer; `None` is
/// "no reply at all".
fn by_event(args: &[String], f: &Faults, db: &Mutex<Db>, store: &Path) -> Option<String> {
    let (sid, cid) = (args[1].parse::<u32>().ok()?, args[2].parse::<u32>().ok()?);
    let sensor = &args[3];
    let ts = &args[11];
    let mut d = db.lock().unwrap();
    if d.stopped {
        return None;
    }
    if d.last_event.get(sensor) == Some(&(sid, cid)) {
        return None; // "Non-fatal Error: received a duplicate alert": no reply
    }
    // `clock scan` throws on a bad time: no reply.
    let day = chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S")
        .ok()?
        .format("%Y%m%d")
        .to_string();
    let failed = |text: &str| Some(format!("Failed to insert {cid}: {text}"));
    if f.db_down || d.gone {
        let first = !d.gone;
        d.gone = true;
        return failed(if first {
            "mysqlexec/db server: Lost connection to server during query"
        } else {
            "mysqlexec/db server: Server has gone away"
        });
    }
    let numeric = |s: &String| s.is_empty() || s.bytes().all(|b| b.is_ascii_digit());
    // Only the message is escaped for SQL; the other fields are pasted as they are.
    if !args
        .iter()
        .enumerate()
        .all(|(i, a)| i == 10 || (!a.contains('\'') && !a.contains('\\')))
        || !numeric(&args[14])
        || !numeric(&args[16])
    {
        return failed("mysqlexec/db server: You have an error in your SQL syntax");
    }
    if !d.keys.insert((sid, cid, day.clone())) {
        return failed(&format!(
            "mysqlexec/db server: Duplicate entry '{sid}-{cid}' for key 'PRIMARY'"
        ));
    }
    let dotted = |dec: &String| Ipv4Addr::from(dec.parse::<u32>().unwrap_or(0)).to_string();
    let payload = &args[45];
    let e = Stored {
        sid,
        cid,
        day,
        timestamp: ts.clone(),
        message: args[10].as_bytes().iter().copied().take(255).collect(),
        src_ip: dotted(&args[14]),
        dst_ip: dotted(&args[16]),
        src_port: args[33].parse().unwrap_or(0),
        dst_port: args[34].parse().unwrap_or(0),
        sig_id: args[8].clone(),
        detail_hex: payload[..payload.len().min(MAX_DETAIL_HEX)].to_string(),
        stored_at: now(),
        status: args[0].parse().unwrap_or(0),
        priority: args[12].parse().unwrap_or(0),
        class: args[13].clone(),
        hostname: sensor.clone(),
        generator: args[7].parse().unwrap_or(0),
        revision: args[9].parse().unwrap_or(0),
    };
    record(&mut d, store, e);
    d.last_event.insert(sensor.clone(), (sid, cid));
    Some(format!("Confirm {cid}"))
}

/// A valid ModSecurity-style event for tests and benchmarks (the time is fixed unless
/// `now`, so resends land in the same day table).
pub fn sample_event(
    sid: u32,
    cid: u32,
    host: &str,
    message: &[u8],
    detail: &[u8],
    now: bool,
) -> modsec2sguil::sguil::wire::SguilEvent {
    use chrono::TimeZone;
    use modsec2sguil::sguil::wire::{EventFields, SguilEvent, GENERATOR_MODSECURITY};
    let time = if now {
        chrono::Utc::now()
    } else {
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 28, 1, 56, 31)
            .unwrap()
    };
    SguilEvent::new(EventFields {
        status: 0,
        priority: 2,
        class: "web-attack".into(),
        hostname: host.into(),
        time,
        sid,
        cid,
        ref_id: 0,
        message: message.to_vec(),
        src_ip: Some(Ipv4Addr::new(192, 0, 2, 10)),
        dst_ip: Some(Ipv4Addr::new(198, 51, 100, 20)),
        ip_proto: 6,
        src_port: 51234,
        dst_port: 80,
        generator: GENERATOR_MODSECURITY,
        sig_id: 942100,
        revision: 1,
        detail: detail.to_vec(),
    })
    .expect("a valid sample event")
}
