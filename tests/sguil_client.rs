//! The Sguil client against the sguild-faithful test server, over real loopback sockets.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use modsec2sguil::sguil::client::{AgentSession, Answer, SessionError};
use modsec2sguil::sguil::conn::{sha256, ConnError, ConnectSettings, Connection, TlsMode};
use modsec2sguil::sguil::wire::SguilEvent;
use modsec2sguil_e2e::sguild::{sample_event, TestSguild};

fn settings(server: &TestSguild, tls: TlsMode) -> ConnectSettings {
    ConnectSettings {
        host: "127.0.0.1".into(),
        port: server.addr.port(),
        tls,
        expect_version: None,
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
    }
}

fn session(server: &TestSguild, tls: TlsMode) -> AgentSession {
    let conn = Connection::open(&settings(server, tls)).unwrap();
    AgentSession::register(
        conn,
        "modsecurity",
        "websrv-a",
        "webfarm",
        Duration::from_secs(3),
    )
    .unwrap()
}

fn event(sid: u32, cid: u32) -> SguilEvent {
    let message = format!("MSc 403 SQL Injection Attack #{cid} {{'\"[$]}}");
    sample_event(
        sid,
        cid,
        "websrv-a",
        message.as_bytes(),
        b"GET /?id=1' UNION SELECT\n\0\xff",
        false,
    )
}

fn send_all(
    s: &mut AgentSession,
    events: &[SguilEvent],
    window: usize,
) -> Result<Vec<Answer>, SessionError> {
    let mut out = Vec::new();
    s.send(events, window, |_, o| out.push(o))?;
    Ok(out)
}

#[test]
fn tls_with_the_self_signed_certificate_as_ca_file_pipelined() {
    let server = TestSguild::start();
    let mut s = session(&server, TlsMode::CaFile(server.cert_pem.clone()));
    let sid = s.sid;
    assert_eq!((s.sid, s.max_cid), (1, 0));
    let events: Vec<_> = (1..=100).map(|c| event(sid, c)).collect();
    let out = send_all(&mut s, &events, 32).unwrap();
    assert_eq!(out, vec![Answer::Confirmed; 100]);
    let stored = server.events();
    assert_eq!(stored.len(), 100);
    assert_eq!(
        stored[0].message,
        b"MSc 403 SQL Injection Attack #1 {'\"[$]}"
    );
    assert_eq!(
        stored[0].detail_hex,
        "474554202F3F69643D312720554E494F4E2053454C4543540A00FF"
    );
    s.ping().unwrap();
}

#[test]
fn tls_with_the_right_pin_and_without_verification() {
    let server = TestSguild::start();
    let mut s = session(&server, TlsMode::PinSha256(sha256(&server.cert_der)));
    let sid = s.sid;
    assert_eq!(
        send_all(&mut s, &[event(sid, 1)], 1).unwrap(),
        [Answer::Confirmed]
    );
    let mut s = session(&server, TlsMode::NoVerify);
    let sid = s.sid;
    assert_eq!(
        send_all(&mut s, &[event(sid, 2)], 1).unwrap(),
        [Answer::Confirmed]
    );
}

#[test]
fn a_wrong_pin_or_an_unrelated_ca_file_is_refused_and_says_what_to_pin() {
    let server = TestSguild::start();
    let err = Connection::open(&settings(&server, TlsMode::PinSha256([7; 32])))
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(matches!(err, ConnError::Tls { .. }), "{text}");
    let real = modsec2sguil::sguil::conn::hex_colons(&sha256(&server.cert_der));
    assert!(
        text.contains(&real),
        "the error names the real fingerprint: {text}"
    );
    let other = TestSguild::start();
    let err = Connection::open(&settings(&server, TlsMode::CaFile(other.cert_pem.clone())))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("not trusted by TLS_CA_FILE") && err.contains(&real),
        "{err}"
    );
}

#[test]
fn plaintext_session_works_when_configured() {
    let server = TestSguild::start();
    let conn = Connection::open(&settings(&server, TlsMode::Plaintext)).unwrap();
    assert!(!conn.tls);
    let mut s = AgentSession::register(
        conn,
        "modsecurity",
        "websrv-a",
        "webfarm",
        Duration::from_secs(3),
    )
    .unwrap();
    let sid = s.sid;
    assert_eq!(
        send_all(&mut s, &[event(sid, 1)], 4).unwrap(),
        [Answer::Confirmed]
    );
}

#[test]
fn version_pin_mismatch_and_refusal_are_clear_errors() {
    let server = TestSguild::start();
    let mut set = settings(&server, TlsMode::NoVerify);
    set.expect_version = Some("SGUIL-0.8.0 OPENSSL ENABLED".into());
    let e = Connection::open(&set).err().unwrap().to_string();
    assert!(
        e.contains("SGUIL-1.0.0 OPENSSL ENABLED") && e.contains("expected `SGUIL-0.8.0"),
        "{e}"
    );
    server.set(|f| f.refuse = true);
    let e = Connection::open(&settings(&server, TlsMode::NoVerify))
        .err()
        .unwrap();
    assert!(matches!(e, ConnError::Refused { .. }), "{e}");
    assert!(e.to_string().contains("sguild.access"));
    drop(server);
    let gone = TestSguild::start();
    let port = gone.addr.port();
    drop(gone);
    let mut set = settings(&TestSguild::start(), TlsMode::NoVerify);
    set.port = port;
    let e = Connection::open(&set).err().unwrap();
    assert!(
        matches!(e, ConnError::Connect { .. } | ConnError::Closed { .. }),
        "{e}"
    );
}

#[test]
fn pipelining_with_a_duplicate_in_the_middle() {
    let server = TestSguild::start();
    let mut s = session(&server, TlsMode::NoVerify);
    let sid = s.sid;
    let first: Vec<_> = (1..=5).map(|c| event(sid, c)).collect();
    send_all(&mut s, &first, 32).unwrap();
    let resend = vec![event(sid, 6), event(sid, 3), event(sid, 7)];
    let out = send_all(&mut s, &resend, 32).unwrap();
    assert_eq!(
        out,
        [Answer::Confirmed, Answer::AlreadyStored, Answer::Confirmed]
    );
    assert_eq!(server.events().len(), 7);
}

#[test]
fn max_cid_survives_a_server_restart_and_the_database_outage_is_its_own_error() {
    let server = TestSguild::start();
    let mut s = session(&server, TlsMode::NoVerify);
    let sid = s.sid;
    send_all(
        &mut s,
        &(1..=10).map(|c| event(sid, c)).collect::<Vec<_>>(),
        8,
    )
    .unwrap();
    server.set(|f| f.db_down = true);
    let e = send_all(&mut s, &[event(sid, 11), event(sid, 12)], 2)
        .err()
        .unwrap();
    assert!(
        matches!(&e, SessionError::Outage { text, .. } if text.contains("Lost connection")),
        "{e}"
    );
    // sguild never reconnects to its database: only a restart helps.
    server.set(|f| f.db_down = false);
    let e = send_all(&mut s, &[event(sid, 12)], 1).err().unwrap();
    assert!(
        matches!(&e, SessionError::Outage { text, .. } if text.contains("gone away")),
        "{e}"
    );
    let server = server.restart();
    let s = session(&server, TlsMode::NoVerify);
    assert_eq!((s.sid, s.max_cid), (1, 10));
}

#[test]
fn no_reply_is_a_timeout_and_a_closed_connection_is_its_own_error() {
    let server = TestSguild::start();
    let mut s = session(&server, TlsMode::NoVerify);
    let sid = s.sid;
    server.set(|f| f.silent = true);
    let e = send_all(&mut s, &[event(sid, 1)], 1).err().unwrap();
    assert!(matches!(e, SessionError::Timeout { cid: 1, .. }), "{e}");
    server.set(|f| {
        f.silent = false;
        f.close_after = Some(2);
    });
    let mut s = session(&server, TlsMode::NoVerify);
    let sid = s.sid;
    let mut answered = Vec::new();
    let e = s
        .send(
            &(2..=6).map(|c| event(sid, c)).collect::<Vec<_>>(),
            1,
            |i, o| answered.push((i, o)),
        )
        .err()
        .unwrap();
    assert!(
        matches!(e, SessionError::Conn(ConnError::Closed { .. })),
        "{e}"
    );
    assert_eq!(
        answered,
        [(0, Answer::Confirmed), (1, Answer::Confirmed)],
        "what was answered before is reported"
    );
}

/// The server side of ARCHITECTURE.md, "Sguil's agent protocol", 4, with raw lines a validated client never sends.
#[test]
fn test_server_answers_like_sguild_for_each_row_of_what_it_checks() {
    let server = TestSguild::start();
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut w = tcp.try_clone().unwrap();
    let mut r = BufReader::new(tcp);
    let mut banner = String::new();
    r.read_line(&mut banner).unwrap();
    assert_eq!(banner, "SGUIL-1.0.0 OPENSSL ENABLED\r\n");
    let mut line = String::new();
    let mut reply = |w: &mut TcpStream, send: &str| -> Option<String> {
        w.write_all(format!("{send}\n").as_bytes()).unwrap();
        line.clear();
        match r.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line.trim_end().to_string()),
            _ => None,
        }
    };
    assert_eq!(
        reply(&mut w, "PING"),
        None,
        "nothing is answered before RegisterAgent"
    );
    assert_eq!(
        reply(&mut w, "RegisterAgent modsecurity websrv-a webfarm").as_deref(),
        Some("AgentInfo websrv-a modsecurity webfarm 1 0")
    );
    let good = "GenericEvent 0 1 web-attack websrv-a {2026-11-28 01:56:31} 1 1 0 41 192.0.2.10 198.51.100.20 6 1 80 10001 1 1 4142";
    assert_eq!(reply(&mut w, good).as_deref(), Some("ConfirmEvent 1"));
    assert_eq!(
        reply(&mut w, good).as_deref(),
        Some("Failed {mysqlexec/db server: Duplicate entry '1-1' for key 'PRIMARY'}")
    );
    assert!(reply(&mut w, &format!("{good} extra"))
        .unwrap()
        .starts_with("Failed {ERROR: Invalid length (19)"));
    for silent in [
        good.replace("192.0.2.10", "2001:db8::1")
            .replace(" 1 0 41", " 2 0 41"),
        good.replace(" 0 41 ", " 0 ZZ ").replace(" 1 1 0", " 1 3 0"),
        good.replace("{2026-11-28 01:56:31}", "garbage")
            .replace(" 1 1 0", " 1 4 0"),
        good.replace("{2026-11-28", "{{2026-11-28"),
    ] {
        assert_eq!(reply(&mut w, &silent), None, "{silent}");
    }
    assert!(reply(
        &mut w,
        &good.replace(" 4142", " 41'x").replace(" 1 1 0", " 1 5 0")
    )
    .unwrap()
    .contains("SQL syntax"));
    let long = good
        .replace(" 4142", &format!(" {}", "AB".repeat(40_000)))
        .replace(" 1 1 0", " 1 6 0");
    assert_eq!(reply(&mut w, &long).as_deref(), Some("ConfirmEvent 6"));
    assert_eq!(
        server.events().last().unwrap().detail_hex.len(),
        65_535,
        "hexDetail cut like the TEXT column"
    );
    let row = |cid: u32, from: &str, to: &str| {
        good.replace(" 1 1 0 ", &format!(" 1 {cid} 0 "))
            .replace(from, to)
    };
    // Same (sid, cid) dated on another day: another day table, so stored again.
    assert_eq!(
        reply(&mut w, &row(1, "{2026-11-28 ", "{2026-11-29 ")).as_deref(),
        Some("ConfirmEvent 1")
    );
    assert!(reply(&mut w, &row(7, "websrv-a", &"h".repeat(48)))
        .unwrap()
        .contains("Incorrect table name"));
    assert!(reply(&mut w, &row(8, "websrv-a", "web`srv"))
        .unwrap()
        .contains("SQL syntax"));
    // Too long or wrong values are cut or coerced, and confirmed.
    assert_eq!(
        reply(
            &mut w,
            &row(
                9,
                " 41 192.0.2.10",
                &format!(" {} 192.0.2.10", "41".repeat(300))
            )
        )
        .as_deref(),
        Some("ConfirmEvent 9")
    );
    assert_eq!(server.events().last().unwrap().message.len(), 255);
    // A sid sguild does not know: stored, never answered.
    let before = server.events().len();
    assert_eq!(reply(&mut w, &good.replace(" 1 1 0 ", " 99 1 0 ")), None);
    assert_eq!(server.events().len(), before + 1);
    assert_eq!(reply(&mut w, "PING").as_deref(), Some("PONG"));
}

#[test]
fn test_server_closes_on_a_version_mismatch_without_a_word() {
    let server = TestSguild::start();
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = tcp.try_clone().unwrap();
    let mut r = BufReader::new(tcp);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    w.write_all(b"VersionInfo {SGUIL-0.8.0 OPENSSL ENABLED}\n")
        .unwrap();
    line.clear();
    assert_eq!(r.read_line(&mut line).unwrap(), 0, "closed: {line:?}");
}

#[test]
fn replies_delayed_past_the_timeout_are_a_timeout() {
    let server = TestSguild::start();
    let conn = Connection::open(&settings(&server, TlsMode::NoVerify)).unwrap();
    let mut s = AgentSession::register(
        conn,
        "modsecurity",
        "websrv-a",
        "webfarm",
        Duration::from_millis(800),
    )
    .unwrap();
    let sid = s.sid;
    server.set(|f| f.delay = Some(Duration::from_millis(1500)));
    let e = send_all(&mut s, &[event(sid, 1)], 1).err().unwrap();
    assert!(matches!(e, SessionError::Timeout { cid: 1, .. }), "{e}");
}

/// A one-connection fake server that writes `script` lines (after reading one line
/// from the agent when a line is `<read>`), for replies sguild never sends.
fn fake_server(script: &'static [&'static str]) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut w = tcp.try_clone().unwrap();
        let mut r = BufReader::new(tcp);
        for step in script {
            if *step == "<read>" {
                let mut l = String::new();
                let _ = r.read_line(&mut l);
            } else if *step == "<sleep>" {
                std::thread::sleep(Duration::from_secs(3));
            } else if *step == "<pause>" {
                std::thread::sleep(Duration::from_millis(200));
            } else {
                let _ = w.write_all(format!("{step}\r\n").as_bytes());
            }
        }
        std::thread::sleep(Duration::from_secs(3));
    });
    addr
}

fn fake_settings(addr: std::net::SocketAddr) -> ConnectSettings {
    ConnectSettings {
        host: "127.0.0.1".into(),
        port: addr.port(),
        tls: TlsMode::Plaintext,
        expect_version: None,
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(1),
    }
}

#[test]
fn a_peer_that_is_not_sguild_is_named_in_the_error() {
    let addr = fake_server(&["HTTP/1.1 400 Bad Request"]);
    let e = Connection::open(&fake_settings(addr)).err().unwrap();
    assert!(matches!(e, ConnError::BadBanner { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("127.0.0.1:{}", addr.port()))
            && e.to_string().contains("HTTP/1.1 400"),
        "{e}"
    );
    let addr = fake_server(&["<sleep>"]);
    let e = Connection::open(&fake_settings(addr)).err().unwrap();
    assert!(
        matches!(e, ConnError::Timeout { what: "banner", .. }),
        "{e}"
    );
}

#[test]
fn a_server_that_talks_before_the_tls_handshake_is_refused() {
    let addr = fake_server(&["SGUIL-1.0.0 OPENSSL ENABLED", "AgentInfo x y z 1 0"]);
    std::thread::sleep(Duration::from_millis(100));
    let mut set = fake_settings(addr);
    set.tls = TlsMode::NoVerify;
    let e = Connection::open(&set).err().unwrap();
    assert!(e.to_string().contains("before the TLS handshake"), "{e}");
    // The same, with the extra line arriving only once the handshake has begun.
    let addr = fake_server(&[
        "SGUIL-1.0.0 OPENSSL ENABLED",
        "<pause>",
        "AgentInfo x y z 1 0",
    ]);
    let mut set = fake_settings(addr);
    set.tls = TlsMode::NoVerify;
    let e = Connection::open(&set).err().unwrap();
    assert!(e.to_string().contains("before the TLS handshake"), "{e}");
}

#[test]
fn registration_without_an_answer_or_with_a_wrong_one_fails_clearly() {
    let server = TestSguild::start();
    server.set(|f| f.silent = true);
    let conn = Connection::open(&settings(&server, TlsMode::NoVerify)).unwrap();
    let e = AgentSession::register(
        conn,
        "modsecurity",
        "websrv-a",
        "webfarm",
        Duration::from_millis(500),
    )
    .err()
    .unwrap();
    assert!(
        e.to_string().contains("registration failed: no AgentInfo"),
        "{e}"
    );
    let addr = fake_server(&["SGUIL-1.0.0 OPENSSL ENABLED", "<read>", "ConfirmEvent 1"]);
    let conn = Connection::open(&fake_settings(addr)).unwrap();
    let e = AgentSession::register(
        conn,
        "modsecurity",
        "websrv-a",
        "webfarm",
        Duration::from_secs(2),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("unexpected `ConfirmEvent 1`"), "{e}");
}

#[test]
fn a_confirm_for_another_cid_is_out_of_step() {
    let addr = fake_server(&[
        "SGUIL-1.0.0 OPENSSL ENABLED",
        "<read>",
        "AgentInfo websrv-a modsecurity webfarm 1 0",
        "<read>",
        "ConfirmEvent 9",
    ]);
    let conn = Connection::open(&fake_settings(addr)).unwrap();
    let mut s = AgentSession::register(
        conn,
        "modsecurity",
        "websrv-a",
        "webfarm",
        Duration::from_secs(2),
    )
    .unwrap();
    let sid = s.sid;
    let e = send_all(&mut s, &[event(sid, 1)], 1).err().unwrap();
    assert!(
        matches!(&e, SessionError::OutOfStep { cid: 1, line, .. } if line == "ConfirmEvent 9"),
        "{e}"
    );
}
