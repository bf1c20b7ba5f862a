//! Events per second the Sguil client pushes to the test server over TLS
//! (`cargo bench -p modsec2sguil-e2e --bench sguil_client`), stop-and-wait and with a
//! window of 32; and to a real sguild when SGUILD_ADDR (host:port) and SGUILD_CA are set.

use std::time::{Duration, Instant};

use modsec2sguil::sguil::client::{AgentSession, Answer};
use modsec2sguil::sguil::conn::{sha256, ConnectSettings, Connection, TlsMode};
use modsec2sguil::sguil::wire::SguilEvent;
use modsec2sguil_e2e::sguild::{sample_event, TestSguild};

fn events(sid: u32, first_cid: u32, n: u32, host: &str, detail: usize) -> Vec<SguilEvent> {
    let detail = vec![b'x'; detail];
    (first_cid..first_cid + n)
        .map(|cid| {
            sample_event(
                sid,
                cid,
                host,
                b"MSc 403 SQL Injection Attack Detected via libinjection",
                &detail,
                true,
            )
        })
        .collect()
}

fn run(settings: &ConnectSettings, host: &str, n: u32, window: usize, detail: usize) -> f64 {
    let conn = Connection::open(settings).unwrap();
    let mut s = AgentSession::register(conn, "modsecurity", host, "bench", Duration::from_secs(30))
        .unwrap();
    let batch = events(s.sid, s.max_cid + 1, n, host, detail);
    let start = Instant::now();
    let mut confirmed = 0;
    s.send(&batch, window, |_, o| {
        if o == Answer::Confirmed {
            confirmed += 1;
        }
    })
    .unwrap();
    assert_eq!(confirmed, n as usize);
    f64::from(n) / start.elapsed().as_secs_f64()
}

fn main() {
    let server = TestSguild::start();
    let settings = ConnectSettings {
        host: "127.0.0.1".into(),
        port: server.addr.port(),
        tls: TlsMode::PinSha256(sha256(&server.cert_der)),
        expect_version: None,
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
    };
    for detail in [200, 2000] {
        for window in [1, 32] {
            let rate = run(&settings, "bench-test", 20_000, window, detail);
            println!("test server, TLS, window {window:>2}, {detail:>4}-byte detail: {rate:>8.0} events/s (20,000 events)");
        }
    }
    if let (Ok(addr), Ok(ca)) = (std::env::var("SGUILD_ADDR"), std::env::var("SGUILD_CA")) {
        let (host, port) = addr.rsplit_once(':').expect("SGUILD_ADDR is host:port");
        let real = ConnectSettings {
            host: host.into(),
            port: port.parse().unwrap(),
            tls: TlsMode::CaFile(ca.into()),
            ..settings.clone()
        };
        for window in [1, 32] {
            let rate = run(
                &real,
                &format!("bench-{}-{window}", std::process::id()),
                2_000,
                window,
                200,
            );
            println!("real sguild,  TLS, window {window:>2},  200-byte detail: {rate:>8.0} events/s (2,000 events)");
        }
    }
}
