//! The client against a live sguild, when one is given: SGUILD_ADDR=host:port and
//! SGUILD_CA=<its cert.pem> (a sguild 1.0.0 from the Sguil source with a MariaDB,
//! both on loopback). Without them this test says so and does nothing: CI has no sguild.

use std::time::{Duration, Instant};

use modsec2sguil::sguil::client::{AgentSession, Outcome};
use modsec2sguil::sguil::conn::{ConnectSettings, Connection, TlsMode};
use modsec2sguil::sguil::wire::SguilEvent;
use modsec2sguil_e2e::sguild::sample_event;

fn live_settings(host: &str, port: &str, ca: &str) -> ConnectSettings {
    ConnectSettings {
        host: host.into(),
        port: port.parse().expect("port"),
        tls: TlsMode::CaFile(ca.into()),
        expect_version: None,
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(10),
    }
}

#[test]
fn a_live_sguild_stores_1000_pipelined_events_and_refuses_resends_as_duplicates() {
    let (Ok(addr), Ok(ca)) = (std::env::var("SGUILD_ADDR"), std::env::var("SGUILD_CA")) else {
        eprintln!("sguild_real: not run (set SGUILD_ADDR=host:port and SGUILD_CA=cert.pem to run it against a live sguild)");
        return;
    };
    let (host, port) = addr.rsplit_once(':').expect("SGUILD_ADDR is host:port");
    let settings = live_settings(host, port, &ca);
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

/// Real Apache → collector → queue → `drain` (killed once mid-run, then run again) → the
/// live sguild: afterwards sguild's maxCid for the new sensor equals the number of
/// blocked requests, and the team's `count_events.sh` should show that many rows.
#[test]
fn apache_to_a_live_sguild_end_to_end_through_a_sigkill() {
    use modsec2sguil_e2e::apache;
    use modsec2sguil_e2e::shipper::{drain, entries_left};
    use modsec2sguil_e2e::{binary, skip_or_fail};

    let (Ok(addr), Ok(ca)) = (std::env::var("SGUILD_ADDR"), std::env::var("SGUILD_CA")) else {
        eprintln!("sguild_real: end to end not run (set SGUILD_ADDR and SGUILD_CA)");
        return;
    };
    if let Some(why) = apache::unavailable() {
        skip_or_fail("sguild_real end to end", &why);
        return;
    }
    let (host, port) = addr.rsplit_once(':').expect("SGUILD_ADDR is host:port");
    let work = tempfile::tempdir().unwrap();
    let queue = work.path().join("queue");
    let apache = apache::with_collector(work.path(), &queue);
    let n = 200;
    for i in 0..n {
        let r = apache.get(
            i % 4 == 0,
            &format!("/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--&n={i}"),
            "",
        );
        assert_eq!(r.status, 403);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while entries_left(&queue).len() < n {
        assert!(
            Instant::now() < deadline,
            "{} queued",
            entries_left(&queue).len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sensor = format!("m2s-e2e-{}", std::process::id());
    let conf = work.path().join("shipper.conf");
    std::fs::write(
        &conf,
        format!(
            "set EVENT_DIR {}\nset SERVER_HOST {host}\nset SERVER_PORT {port}\nset TLS_CA_FILE {ca}\n\
             set HOSTNAME {sensor}\nset NET_GROUP m2s-test\n",
            queue.display()
        ),
    )
    .unwrap();
    let mut first = std::process::Command::new(binary("modsec-shipper"))
        .args(["drain", "-c", conf.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    first.kill().unwrap();
    first.wait().unwrap();
    let left = entries_left(&queue).len();
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(entries_left(&queue).is_empty());
    eprintln!("sguild_real: SIGKILL left {left} of {n} queued; the second run: {err}");
    let settings = live_settings(host, port, &ca);
    let s = AgentSession::register(
        Connection::open(&settings).unwrap(),
        "modsecurity",
        &sensor,
        "m2s-test",
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(s.max_cid, n as u32, "cids 1..{n}, none skipped or doubled");
    eprintln!(
        "sguild_real: sensor {sensor} (sid {}) holds maxCid {}: count_events.sh should show {n} events and {n} data rows for it",
        s.sid, s.max_cid
    );
}
