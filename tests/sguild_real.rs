//! The client against a live sguild, when one is given: SGUILD_ADDR=host:port and
//! SGUILD_CA=<its cert.pem> (a sguild 1.0.0 from the Sguil source with a MariaDB,
//! both on loopback). Without them this test says so and does nothing: CI has no sguild.

use std::time::{Duration, Instant};

use modsec2sguil::sguil::client::{AgentSession, Outcome};
use modsec2sguil::sguil::conn::{ConnectSettings, Connection, TlsMode};
use modsec2sguil::sguil::wire::SguilEvent;
use modsec2sguil_e2e::sguild::sample_event;

#[test]
fn a_live_sguild_stores_1000_pipelined_events_and_refuses_resends_as_duplicates() {
    let (Ok(addr), Ok(ca)) = (std::env::var("SGUILD_ADDR"), std::env::var("SGUILD_CA")) else {
        eprintln!("sguild_real: not run (set SGUILD_ADDR=host:port and SGUILD_CA=cert.pem to run it against a live sguild)");
        return;
    };
    let (host, port) = addr.rsplit_once(':').expect("SGUILD_ADDR is host:port");
    let settings = ConnectSettings {
        host: host.into(),
        port: port.parse().expect("port"),
        tls: TlsMode::CaFile(ca.into()),
        expect_version: None,
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(10),
    };
    let sensor = format!("m2s-real-{}", std::process::id());
    let conn = Connection::open(&settings).unwrap();
    eprintln!(
        "sguild_real: {} says `{}`, TLS {}",
        conn.server(),
        conn.version,
        conn.tls
    );
    let mut s = AgentSession::register(
        conn,
        "modsecurity",
        &sensor,
        "m2s-test",
        Duration::from_secs(30),
    )
    .unwrap();
    eprintln!(
        "sguild_real: registered {sensor}: sid {} maxCid {}",
        s.sid, s.max_cid
    );
    let detail = b"GET /?id=1' UNION SELECT password FROM users-- HTTP/1.1\n\0\xff";
    let events: Vec<SguilEvent> = (1..=1000)
        .map(|i| {
            let message = format!("MSc 403 modsec2sguil live test {{'\"[$]}} \\ {}", i % 3);
            sample_event(
                s.sid,
                s.max_cid + i,
                &sensor,
                message.as_bytes(),
                detail,
                true,
            )
        })
        .collect();
    let start = Instant::now();
    let mut confirmed = 0;
    s.send(&events, 32, |_, o| {
        assert_eq!(o, Outcome::Confirmed);
        confirmed += 1;
    })
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(confirmed, 1000);
    eprintln!(
        "sguild_real: 1000 events confirmed in {secs:.2} s ({:.0} events/s, window 32)",
        1000.0 / secs
    );
    let mut dups = 0;
    s.send(&events[..10], 32, |_, o| {
        assert_eq!(o, Outcome::AlreadyStored);
        dups += 1;
    })
    .unwrap();
    assert_eq!(dups, 10);
    eprintln!("sguild_real: 10 resends answered as duplicates");
    s.ping().unwrap();
}
