//! The shipper against the real Sguil server: sguild 1.0.0 from a Sguil source tree
//! (`SGUIL_SRC`, a `git clone` of bammv/sguil) with its MariaDB, each test its own,
//! started on loopback by `tests/support/real_sguild.rs` (`run-sguild.sh`). What sguild
//! stored is read back from its database: each event's unique id once in `event`/`data`.
//!
//! - the client: 1000 pipelined events stored, resends answered as duplicates;
//! - Apache → collector → queue → `drain` (SIGKILLed once) → sguild;
//! - `drain` SIGKILLed at random moments (seeded: the seed is printed, and
//!   `M2S_KILL_SEED=<seed>` replays it) while shipping 500 events, then finished;
//! - `run` through a sguild stop/start and a MariaDB stop/start;
//! - a cid another agent with the same HOSTNAME took first (`ShipError::CidCollision`).
//!
//! Without `SGUIL_SRC` (or the programs run-sguild.sh needs) each test skips loudly
//! through `skip_or_fail`; `.ci/run` passes the Sguil tree it is given, and its
//! `MODSEC2SGUIL_REQUIRE_ALL=1` makes a skip a failure.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use modsec2sguil::sguil::client::{AgentSession, Answer};
use modsec2sguil::sguil::conn::{ConnectSettings, Connection, TlsMode};
use modsec2sguil::sguil::wire::SguilEvent;
use modsec2sguil_e2e::process::{signal, wait_exit, wait_until};
use modsec2sguil_e2e::real_sguild::RealSguild;
use modsec2sguil_e2e::sguild::sample_event;
use modsec2sguil_e2e::shipper::{drain, entries_left, fill_queue, test_entry, Daemon, Rng};
use modsec2sguil_e2e::{binary, state};

fn settings(sguild: &RealSguild, tls: TlsMode) -> ConnectSettings {
    ConnectSettings {
        host: "127.0.0.1".into(),
        port: sguild.port,
        tls,
        expect_version: None,
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(10),
    }
}

fn register(sguild: &RealSguild, tls: TlsMode, sensor: &str) -> AgentSession {
    AgentSession::register(
        Connection::open(&settings(sguild, tls)).unwrap(),
        "modsecurity",
        sensor,
        "m2s-test",
        Duration::from_secs(30),
    )
    .unwrap()
}

/// Asserts that sguild stored each of `want` exactly once under `sensor`, and nothing
/// else there.
fn assert_stored_once(sguild: &RealSguild, sensor: &str, want: &HashSet<String>, context: &str) {
    let ids = sguild.stored_ids(sensor);
    let distinct: HashSet<String> = ids.iter().cloned().collect();
    let twice: Vec<&String> = distinct
        .iter()
        .filter(|d| ids.iter().filter(|i| i == d).count() > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "{context}: stored more than once: {twice:?}"
    );
    let missing: Vec<&String> = want.difference(&distinct).collect();
    let extra: Vec<&String> = distinct.difference(want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{context}: {} of {} stored; missing {missing:?}; not ours {extra:?}",
        distinct.len(),
        want.len()
    );
}

#[test]
fn a_live_sguild_stores_1000_pipelined_events_and_refuses_resends_as_duplicates() {
    let Some(sguild) = RealSguild::start("sguild_real pipelined") else {
        return;
    };
    let sensor = "m2s-real";
    let conn = Connection::open(&settings(&sguild, TlsMode::CaFile(sguild.cert.clone()))).unwrap();
    eprintln!(
        "sguild_real: {} says `{}`, TLS {}",
        conn.server(),
        conn.version,
        conn.tls
    );
    let mut s = AgentSession::register(
        conn,
        "modsecurity",
        sensor,
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
                sensor,
                message.as_bytes(),
                detail,
                true,
            )
        })
        .collect();
    let start = Instant::now();
    let mut confirmed = 0;
    s.send(&events, 32, |_, o| {
        assert_eq!(o, Answer::Confirmed);
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
        assert_eq!(o, Answer::AlreadyStored);
        dups += 1;
    })
    .unwrap();
    assert_eq!(dups, 10);
    eprintln!("sguild_real: 10 resends answered as duplicates");
    s.ping().unwrap();
    assert_eq!(
        sguild.stored_count(sensor),
        1000,
        "rows in sguild's event table"
    );
}

/// Real Apache → collector → queue → `drain` (SIGKILLed once sguild stored 20, then run
/// again) → the
/// real sguild: afterwards it holds each blocked request once, and its maxCid for the
/// new sensor equals their number (cids 1..n, none skipped or doubled).
#[test]
fn apache_to_a_live_sguild_end_to_end_through_a_sigkill() {
    use modsec2sguil_e2e::apache;
    const TEST: &str = "sguild_real end to end";

    if let Some(why) = apache::unavailable() {
        modsec2sguil_e2e::skip_or_fail(TEST, &why);
        return;
    }
    let Some(sguild) = RealSguild::start(TEST) else {
        return;
    };
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
    wait_until(
        "the collector to queue every blocked request",
        Duration::from_secs(30),
        || entries_left(&queue).len() >= n,
    );
    let sensor = "m2s-e2e";
    let conf = sguild.config(work.path(), &queue, sensor, &state::setting(work.path()));
    let mut first = Command::new(binary("modsec-shipper"))
        .args(["drain", "-c", conf.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed mid-run: once sguild holds some of the events.
    wait_until("sguild to store 20 events", Duration::from_secs(60), || {
        sguild.stored_count(sensor) >= 20
    });
    first.kill().unwrap();
    first.wait().unwrap();
    let left = entries_left(&queue).len();
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(entries_left(&queue).is_empty());
    eprintln!("sguild_real: SIGKILL left {left} of {n} queued; the second run: {err}");
    let ids = sguild.stored_ids(sensor);
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), n, "rows stored for {n} blocked requests");
    assert_eq!(distinct.len(), n, "each blocked request once");
    let s = register(&sguild, TlsMode::CaFile(sguild.cert.clone()), sensor);
    assert_eq!(s.max_cid, n as u32, "cids 1..{n}, none skipped or doubled");
}

/// `drain` SIGKILLed at random moments while it ships 500 events, then run to the end:
/// sguild holds each event exactly once and the queue is empty. The kill moments come
/// from a seeded generator; the seed is printed (`M2S_KILL_SEED` replays it).
#[test]
fn drain_killed_at_random_moments_stores_each_of_500_events_once_in_sguild() {
    let Some(sguild) = RealSguild::start("sguild_real SIGKILL") else {
        return;
    };
    let n = 500;
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let want: HashSet<String> = fill_queue(&queue, 1, n).into_iter().collect();
    let sensor = "m2s-kill";
    let conf = sguild.config(dir.path(), &queue, sensor, "");
    let seed = std::env::var("M2S_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("sguild_real SIGKILL: seed {seed} (M2S_KILL_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let mut kills = 0;
    // Kill until the queue is done or 25 kills: each run gets 50..850 ms.
    while kills < 25 && !entries_left(&queue).is_empty() {
        let after = Duration::from_millis(50 + rng.below(800));
        let mut child = Command::new(binary("modsec-shipper"))
            .args(["drain", "-c", conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if finished {
            break;
        }
        kills += 1;
        eprintln!(
            "sguild_real SIGKILL: kill {kills} after {} ms: {} queued, {} stored",
            after.as_millis(),
            entries_left(&queue).len(),
            sguild.stored_count(sensor)
        );
    }
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "the final drain (seed {seed}): {err}");
    assert!(
        entries_left(&queue).is_empty(),
        "left queued (seed {seed}): {:?}",
        entries_left(&queue)
    );
    assert_stored_once(
        &sguild,
        sensor,
        &want,
        &format!("seed {seed}, {kills} kills"),
    );
    eprintln!("sguild_real SIGKILL: {kills} kills, then {n} events stored once each");
}

/// `run` keeps going through a sguild stop and start, and a MariaDB stop and start
/// (sguild restarted after it, as it does not reconnect to its database by itself):
/// every event queued meanwhile is stored once, nothing is left or quarantined.
#[test]
fn the_daemon_ships_through_a_sguild_restart_and_a_mariadb_outage() {
    let Some(sguild) = RealSguild::start("sguild_real daemon") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    let log = dir.path().join("shipper.log");
    let sensor = "m2s-daemon";
    let conf = sguild.config(
        dir.path(),
        &queue,
        sensor,
        &format!(
            "set PING_DELAY 1000\nset REPLY_TIMEOUT 3\nset LOG_FILE {}\n",
            log.display()
        ),
    );
    let mut child = Daemon::start(&conf);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let stored = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while sguild.stored_count(sensor) < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} stored; shipper log:\n{}\nsguild log:\n{}",
                sguild.stored_count(sensor),
                log_text(),
                sguild.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut want: HashSet<String> = fill_queue(&queue, 1, 50).into_iter().collect();
    stored(50);
    // sguild stops; events arrive; sguild starts again on the same port.
    sguild.act("stop-sguild");
    want.extend(fill_queue(&queue, 51, 50));
    wait_until(
        "the daemon to notice sguild is gone",
        Duration::from_secs(30),
        || log_text().contains("reconnecting"),
    );
    sguild.act("restart-sguild");
    stored(100);
    // MariaDB stops under sguild; events arrive; it starts again.
    let before = log_text().len();
    sguild.act("stop-db");
    want.extend(fill_queue(&queue, 101, 50));
    wait_until(
        "the daemon to meet the outage",
        Duration::from_secs(30),
        || log_text()[before..].contains("reconnecting"),
    );
    sguild.act("start-db");
    sguild.act("restart-sguild");
    stored(150);
    want.extend(fill_queue(&queue, 151, 50));
    stored(200);
    signal(child.0.id(), "TERM");
    assert_eq!(wait_exit(&mut child.0, Duration::from_secs(15)), Some(0));
    assert!(entries_left(&queue).is_empty(), "{}", log_text());
    assert!(!queue.join("failed").exists() || entries_in(&queue.join("failed")) == 0);
    assert_stored_once(&sguild, sensor, &want, &log_text());
}

fn entries_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Forwards one agent connection to sguild (plaintext); when sguild's `AgentInfo`
/// comes, calls `meanwhile(sid, maxCid)` before passing it on.
fn proxy_once(
    upstream: u16,
    meanwhile: impl FnOnce(u32, u32) + Send + 'static,
) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
        let mut to_server = server.try_clone().unwrap();
        let mut from_client = client.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_client, &mut to_server);
            let _ = to_server.shutdown(std::net::Shutdown::Write);
        });
        let mut meanwhile = Some(meanwhile);
        let mut lines = BufReader::new(server);
        let mut line = String::new();
        while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
            if line.starts_with("AgentInfo ") {
                let words: Vec<&str> = line.split_whitespace().collect();
                let n = words.len();
                let (sid, max) = (words[n - 2].parse().unwrap(), words[n - 1].parse().unwrap());
                if let Some(f) = meanwhile.take() {
                    f(sid, max);
                }
            }
            if client.write_all(line.as_bytes()).is_err() {
                break;
            }
            line.clear();
        }
        let _ = client.shutdown(std::net::Shutdown::Write);
    });
    (port, handle)
}

/// Another agent registered with our HOSTNAME stores cid maxCid+1 between our
/// registration and our first send (a proxy holds sguild's `AgentInfo` back while it
/// does): the real sguild answers our first send `Duplicate entry`. The run stops with
/// the collision error (exit 5, the outage code) once the batch in flight is answered
/// (the other two events, on free cids, are stored); the entry stays queued and its
/// record leaves the journal; the next run, with a fresh maxCid, stores it.
#[test]
fn a_cid_another_agent_took_first_stops_the_run_and_keeps_the_entry() {
    let Some(sguild) = RealSguild::start("sguild_real cid collision") else {
        return;
    };
    let sensor = "m2s-twin";
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let want: HashSet<String> = fill_queue(&queue, 1, 3).into_iter().collect();
    let twin = settings(&sguild, TlsMode::Plaintext);
    let (port, proxy) = proxy_once(sguild.port, move |sid, max| {
        let mut other = AgentSession::register(
            Connection::open(&twin).unwrap(),
            "modsecurity",
            "m2s-twin",
            "m2s-test",
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(other.sid, sid, "one HOSTNAME, one sid");
        // On the day of the queued events, so in the same per-day table.
        let taken = sample_event(sid, max + 1, "m2s-twin", b"the twin's", b"GET /", false);
        other
            .send(&[taken], 1, |_, o| assert_eq!(o, Answer::Confirmed))
            .unwrap();
    });
    let conf = dir.path().join("twin.conf");
    std::fs::write(
        &conf,
        format!(
            "set EVENT_DIR {}\nset SERVER_HOST 127.0.0.1\nset SERVER_PORT {port}\nset OPENSSL 0\n\
             set HOSTNAME {sensor}\nset NET_GROUP m2s-test\n",
            queue.display()
        ),
    )
    .unwrap();
    let began = Instant::now();
    let (code, err) = drain(&conf, &[]);
    eprintln!(
        "cid collision: drain {:.1} s",
        began.elapsed().as_secs_f64()
    );
    proxy.join().unwrap();
    assert_eq!(code, 5, "the outage exit code: {err}");
    assert!(
        err.contains("already taken by someone else")
            && err.contains(&format!("hostname `{sensor}`")),
        "{err}"
    );
    let (first, first_id, _) = test_entry(1);
    assert_eq!(
        entries_left(&queue),
        vec![first.clone()],
        "the entry whose cid was taken stays queued, the others are stored: {err}"
    );
    let ids = sguild.stored_ids(sensor);
    assert!(!ids.contains(&first_id), "{ids:?}");
    let journal = std::fs::read_to_string(queue.join(".journal")).unwrap_or_default();
    assert!(
        !journal.contains(&first),
        "its record leaves the journal: {journal}"
    );
    // Straight to sguild now: a fresh maxCid, and the three are stored once each.
    let conf = dir.path().join("direct.conf");
    std::fs::write(
        &conf,
        format!(
            "set EVENT_DIR {}\nset SERVER_HOST 127.0.0.1\nset SERVER_PORT {}\nset OPENSSL 0\n\
             set HOSTNAME {sensor}\nset NET_GROUP m2s-test\n",
            queue.display(),
            sguild.port
        ),
    )
    .unwrap();
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(entries_left(&queue).is_empty(), "{err}");
    let mut ids = sguild.stored_ids(sensor);
    ids.sort();
    let mut expected: Vec<String> = want.into_iter().collect();
    expected.push(String::new()); // the twin's event names no unique id
    expected.sort();
    assert_eq!(ids, expected, "the twin's one and our three, once each");
}

/// What a server answers on a fresh plaintext agent connection to `register`, then to
/// `lines`, the last of which is a valid event `ConfirmEvent <last>`: sguild handles one
/// line at a time, in order, so everything it answers to the others comes before that.
fn answers(port: u16, register: &str, lines: &[String], last: u32) -> Vec<String> {
    let s = ConnectSettings {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::Plaintext,
        expect_version: None,
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(10),
    };
    let mut conn = Connection::open(&s).unwrap();
    conn.send_line(register).unwrap();
    let mut got = Vec::new();
    let read = |conn: &mut Connection, got: &mut Vec<String>| {
        let line = conn.read_line(Duration::from_secs(30)).unwrap();
        let line = line.unwrap_or_else(|| panic!("no more answers after {got:?}"));
        got.push(line.trim_end().to_string());
    };
    read(&mut conn, &mut got);
    conn.send_lines(lines).unwrap();
    let end = format!("ConfirmEvent {last}");
    while got.last() != Some(&end) {
        read(&mut conn, &mut got);
    }
    got
}

/// The stand-in (`tests/support/sguild.rs`) answers the lines an agent may send as the
/// real sguild does, line for line: registration, a stored event, a resend (`Duplicate
/// entry`), an event of the wrong length, an IPv6 address and a non-hex message (no
/// answer), a time out of range (stored: Tcl's `clock scan` carries it over; the
/// stand-in gave no answer until this test compared), a time that is none (no answer),
/// and the connection still usable after each.
#[test]
fn the_stand_in_answers_as_the_real_sguild_does() {
    use modsec2sguil::sguil::wire::register_line;
    use modsec2sguil_e2e::sguild::TestSguild;
    let Some(sguild) = RealSguild::start("sguild_real stand-in") else {
        return;
    };
    let host = "m2s-same";
    let event = |cid: u32| sample_event(1, cid, host, b"MSc 403 test", b"GET /", false);
    let good = event(1).to_line();
    let fields: Vec<&str> = good.splitn(2, ' ').collect();
    // GenericEvent's 18 fields, edited one at a time as raw text.
    let edit = |cid: u32, from: &str, to: &str| {
        let line = event(cid).to_line();
        assert!(line.contains(from), "{line}");
        line.replacen(from, to, 1)
    };
    let register = register_line("modsecurity", host, "m2s-test");
    let lines = vec![
        good.clone(),
        good.clone(),
        format!("{} 1\n", event(3).to_line().trim_end()),
        edit(5, "192.0.2.10", "2001:db8::1"),
        edit(6, &modsec2sguil::hex::upper(b"MSc 403 test"), "XYZ"),
        edit(7, "2026-11-28 01:56:31", "2026-13-45 99:99:99"),
        edit(8, "2026-11-28 01:56:31", "not a time"),
        event(4).to_line(),
    ];
    assert_eq!(fields[0], "GenericEvent");
    let real = answers(sguild.port, &register, &lines, 4);
    let stand_in = TestSguild::start();
    let model = answers(stand_in.addr.port(), &register, &lines, 4);
    eprintln!("sguild_real stand-in: the real sguild answered {real:#?}");
    assert_eq!(model, real, "the stand-in and the real sguild differ");
}
