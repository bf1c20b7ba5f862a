//! A sguild-faithful test server (SGUIL-PROTOCOL.md): the banner, the version check,
//! TLS right after `VersionInfo` (certificate made at start-up), plaintext when the agent
//! skips `VersionInfo`, `RegisterAgent` → `AgentInfo` with sid and maxCid kept on disk,
//! the 18-field check, per-day duplicate keys, the cases sguild leaves unanswered,
//! hexDetail truncation, PING/PONG — and fault switches for tests.

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
    /// The database is down: `Lost connection …` once, then `Server has gone away`.
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
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        // On restart_on, the stopped server's accept thread may still hold the port for
        // a moment: retry while it lets go.
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
                Ok(l) => break l,
                Err(e)
                    if e.kind() == io::ErrorKind::AddrInUse
                        && port != 0
                        && std::time::Instant::now() < until =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("bind 127.0.0.1:{port}: {e}"),
            }
        };
        let addr = listener.local_addr().unwrap();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (f, d, s, st, open) = (
            faults.clone(),
            db.clone(),
            stop.clone(),
            store.clone(),
            conns.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(c) = conn.try_clone() {
                    open.lock().unwrap().push(c);
                }
                let (f, d, c, st, s) =
                    (f.clone(), d.clone(), config.clone(), st.clone(), s.clone());
                std::thread::spawn(move || {
                    let Ok(own) = conn.try_clone() else { return };
                    let _ = serve(own, &f, &d, &c, &st, &s);
                    // Closing ends the session for the agent even while clones of the
                    // socket are kept for a restart.
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                });
            }
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
        }
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
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
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
            ["event", sid, cid, day, ts, msg, src, dst, sp, dp, sig, detail] => {
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
                let max_cid = d
                    .events
                    .iter()
                    .filter(|e| e.sid == sid)
                    .map(|e| e.cid)
                    .max()
                    .unwrap_or(0);
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
            tcl::element(&format!(
                "ERROR: Invalid length ({}): {}",
                args.len(),
                args.join(" ")
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
        Err(_) => return None,
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
    };
    append(
        &mut d,
        store,
        format!(
            "event\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
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
            e.detail_hex
        ),
    );
    d.events.push(e);
    // An unknown sid is stored, then pushing it to analysts fails: no reply.
    if !d.sensors.values().any(|&known| known == sid) {
        return None;
    }
    Some(format!("ConfirmEvent {cid}"))
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
