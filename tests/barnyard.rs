//! OUTPUT barnyard: `drain` through a snort_agent (the test server's, which keeps
//! sguild's BYEventRcvd rules), with the same promise as the direct path: every event
//! stored exactly once under SIGKILL, restarts, a database outage, slow replies, cut
//! connections and a snort_agent that lost sguild — and sguild's silence on a repeat of
//! its last event. Hostile messages are checked against Tcl itself.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use modsec2sguil::sguil::barnyard::{message_text, rtevent_line};
use modsec2sguil_e2e::sguild::{sample_event, TestSguild};
use modsec2sguil_e2e::shipper::{
    assert_each_stored_once, drain, drain_killed_mid_queue, entries_left, fill_queue,
    stored_unique_id, wait_for_events, Rng,
};
use modsec2sguil_e2e::{binary, program_or_skip};

const SENSOR: &str = "websrv";

fn config(dir: &Path, queue: &Path, agent_port: u16, extra: &str) -> PathBuf {
    let path = dir.join("barnyard.conf");
    std::fs::write(
        &path,
        format!(
            "set EVENT_DIR {}\nset OUTPUT barnyard\nset AGENT_HOST 127.0.0.1\nset AGENT_PORT {agent_port}\n\
             set HOSTNAME {SENSOR}\n{extra}",
            queue.display()
        ),
    )
    .unwrap();
    path
}

fn server_with_agent() -> (TestSguild, u16) {
    let mut server = TestSguild::start();
    let port = server.start_snort_agent(0, SENSOR).port();
    (server, port)
}

/// A test server with its snort_agent, and a queue of `n` events with a config for it.
struct Setup {
    server: TestSguild,
    _dir: tempfile::TempDir,
    queue: PathBuf,
    conf: PathBuf,
    want: HashSet<String>,
}

fn setup(n: usize, extra: &str) -> Setup {
    let (server, port) = server_with_agent();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let want: HashSet<String> = fill_queue(&queue, 1, n).into_iter().collect();
    let conf = config(dir.path(), &queue, port, extra);
    Setup {
        server,
        _dir: dir,
        queue,
        conf,
        want,
    }
}

#[test]
fn drain_through_snort_agent_stores_each_event_once_with_text_messages() {
    let (server, port) = server_with_agent();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let want: HashSet<String> = fill_queue(&queue, 1, 40).into_iter().collect();
    let conf = config(dir.path(), &queue, port, "set SEND_WINDOW 8\n");
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("shipped 40"), "{err}");
    let stored = server.events();
    let ids: HashSet<String> = stored.iter().map(stored_unique_id).collect();
    assert_eq!((stored.len(), ids), (40, want));
    assert_eq!(
        (stored[0].sid, stored[0].cid),
        (1, 1),
        "the snort_agent's sensor id"
    );
    // The same events through OUTPUT stdout: the same mapping, field by field.
    let queue2 = dir.path().join("queue2");
    fill_queue(&queue2, 1, 40);
    let out = Command::new(binary("modsec-shipper"))
        .args([
            "drain",
            "-c",
            conf.to_str().unwrap(),
            "--output",
            "stdout",
            "--queue",
        ])
        .arg(&queue2)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json.len(), 40);
    for (e, j) in stored.iter().zip(&json) {
        let msg = String::from_utf8_lossy(&e.message);
        assert!(msg.starts_with("MSc 403 "), "plain text, not hex: {msg}");
        assert_eq!(msg, j["message"].as_str().unwrap());
        assert_eq!(e.sig_id, j["sig_id"].to_string());
        assert_eq!(e.src_ip, j["src_ip"].as_str().unwrap());
        assert_eq!(e.dst_ip, j["dst_ip"].as_str().unwrap());
        assert_eq!(e.src_port.to_string(), j["src_port"].to_string());
        assert_eq!(e.dst_port.to_string(), j["dst_port"].to_string());
        assert_eq!(e.timestamp, j["time"].as_str().unwrap());
        let detail = modsec2sguil::hex::decode(e.detail_hex.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&detail),
            j["detail"].as_str().unwrap()
        );
    }
    assert!(entries_left(&queue).is_empty());
    assert!(!server.agent_dead.load(std::sync::atomic::Ordering::SeqCst));
    // A second run finds an empty queue and stores nothing more.
    let (code, err) = drain(&conf, &[]);
    assert_eq!((code, server.events().len()), (0, 40), "{err}");
}

/// A run of six events with `window` in flight whose answers are all lost (stored,
/// answered with nothing, as if the connection broke just before the replies): it ends
/// with an outage, leaving `window` events stored and journaled.
fn run_with_replies_lost(window: usize, reply_timeout: u64) -> Setup {
    let t = setup(
        6,
        &format!("set SEND_WINDOW {window}\nset REPLY_TIMEOUT {reply_timeout}\n"),
    );
    t.server.set(|f| f.lose_replies = true);
    let (code, err) = drain(&t.conf, &[]);
    assert_eq!(code, 5, "window {window}: an outage mid-run\n{err}");
    assert_eq!(t.server.events().len(), window, "window {window}");
    t.server.set(|f| f.lose_replies = false);
    t
}

/// The event sguild stored last gets no reply when it comes again. The next run must
/// still finish, storing it once, and without waiting for a timeout: it has the highest
/// cid sguild holds. That run's reply timeout is 60 s, so a run that waited for it
/// takes over 60 s, and one that did not is far below 30 s however busy the machine.
#[test]
fn a_resend_of_the_last_stored_event_is_settled_without_waiting() {
    const LONG: u64 = 60;
    for window in [1, 4] {
        let t = run_with_replies_lost(window, 2);
        let text = std::fs::read_to_string(&t.conf).unwrap();
        let longer = text.replace("REPLY_TIMEOUT 2\n", &format!("REPLY_TIMEOUT {LONG}\n"));
        assert_ne!(text, longer, "the config sets REPLY_TIMEOUT 2");
        std::fs::write(&t.conf, longer).unwrap();
        let started = Instant::now();
        let (code, err) = drain(&t.conf, &[]);
        assert_eq!(code, 0, "window {window}:\n{err}");
        assert!(
            started.elapsed() < Duration::from_secs(LONG / 2),
            "window {window}: settled, not timed out ({:?})",
            started.elapsed()
        );
        assert_each_stored_once(&t.server.events(), &t.want, &format!("window {window}"));
        assert!(entries_left(&t.queue).is_empty());
    }
}

/// The rarer silence: the last event sguild stored is a resend below the highest cid
/// (stored after it, its reply lost). The fence shows sguild handled it; no answer
/// within the reply timeout then means stored.
#[test]
fn a_silent_resend_below_the_highest_cid_is_recognised_after_the_fence() {
    let t = run_with_replies_lost(6, 1);
    t.server.set_last_event(SENSOR, 1, 3);
    let (code, err) = drain(&t.conf, &["--debug"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no answer to resent cid 3"), "{err}");
    assert!(err.contains("6 of them found already stored"), "{err}");
    assert_each_stored_once(&t.server.events(), &t.want, "");
    assert!(entries_left(&t.queue).is_empty());
}

/// A snort_agent that lost sguild drops events without a word; nothing may be taken as
/// stored because of that.
#[test]
fn events_dropped_by_a_snort_agent_without_sguild_are_sent_again() {
    let Setup {
        server,
        _dir: _kept,
        queue,
        conf,
        want,
    } = setup(10, "set SEND_WINDOW 4\nset REPLY_TIMEOUT 1\n");
    server.set(|f| f.agent_offline = true);
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 4, "no SidCidResponse: the queue is untouched\n{err}");
    assert!(err.contains("SidCidResponse"), "{err}");
    assert_eq!(entries_left(&queue).len(), 10);
    server.set(|f| f.agent_offline = false);
    // Online for the handshake, offline for the events: a timeout, nothing removed.
    let flip = std::thread::spawn({
        let faults = server.faults.clone();
        move || {
            std::thread::sleep(Duration::from_millis(300));
            faults.lock().unwrap().agent_offline = true;
        }
    });
    server.set(|f| f.event_delay = Some(Duration::from_millis(100)));
    let (code, err) = drain(&conf, &[]);
    flip.join().unwrap();
    assert_eq!(code, 5, "{err}");
    let partial = server.events().len();
    assert!(partial < 10, "{partial}");
    assert_eq!(entries_left(&queue).len(), 10 - partial);
    server.set(|f| *f = Default::default());
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert_each_stored_once(&server.events(), &want, "");
}

#[test]
fn no_snort_agent_and_a_refused_event_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    fill_queue(&queue, 1, 2);
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let conf = config(dir.path(), &queue, port, "");
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!("snort_agent 127.0.0.1:{port}: connect")),
        "{err}"
    );
    assert_eq!(entries_left(&queue).len(), 2);
    let (code, err) = drain(&config(dir.path(), &queue, 7735, "set AGENT_PORT x\n"), &[]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("AGENT_PORT"), "{err}");
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Trouble {
    None,
    /// sguild restarts behind the snort_agent: its memory of the last event is lost.
    SguildRestarts,
    /// The snort_agent restarts (the connection goes, on the same port).
    AgentRestarts,
    DatabaseDown,
    SlowReplies,
    ConnectionCut,
    AgentOffline,
}

const EVENTS: usize = 2000;
const KILLS: usize = 20;

fn crash_run(trouble: Trouble, seed: u64) {
    let (mut server, port) = server_with_agent();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let want: HashSet<String> = fill_queue(&queue, 1, EVENTS).into_iter().collect();
    let conf = config(
        dir.path(),
        &queue,
        port,
        "set SEND_WINDOW 16\nset REPLY_TIMEOUT 1\n",
    );
    let restart = |server: TestSguild| {
        let mut s = server.restart();
        s.start_snort_agent(port, SENSOR);
        s
    };
    let mut rng = Rng(seed);
    eprintln!("{trouble:?}: seed {seed}");
    let started = Instant::now();
    for kill in 0..KILLS {
        match (trouble, kill % 4) {
            (Trouble::SguildRestarts, 2) => server.forget_last_events(),
            (Trouble::AgentRestarts, 2) => server = restart(server),
            (Trouble::DatabaseDown, 1) => server.set(|f| f.db_down = true),
            (Trouble::DatabaseDown, 3) => {
                server.set(|f| f.db_down = false);
                server.forget_last_events();
            }
            (Trouble::SlowReplies, 1) => {
                server.set(|f| f.event_delay = Some(Duration::from_millis(1200)))
            }
            (Trouble::SlowReplies, 2) => server.set(|f| f.event_delay = None),
            (Trouble::ConnectionCut, _) => {
                let n = 5 + rng.below(60) as usize;
                server.set(|f| f.close_after = Some(n));
            }
            (Trouble::AgentOffline, 1) => server.set(|f| f.agent_offline = true),
            (Trouble::AgentOffline, 2) => server.set(|f| f.agent_offline = false),
            _ => {}
        }
        drain_killed_mid_queue(&conf, &queue, kill, &mut rng);
    }
    let before_final = server.events().len();
    assert!(
        before_final > 0 && before_final < EVENTS,
        "{trouble:?}: the kills must land mid-queue ({before_final} of {EVENTS} stored before the last run)"
    );
    // sguild's memory of the last event is kept: the final run must cope with it.
    server.set(|f| *f = Default::default());
    if trouble == Trouble::DatabaseDown {
        server.forget_last_events(); // a database that went away needs a sguild restart
    }
    let mut last = String::new();
    for _ in 0..5 {
        let (code, err) = drain(&conf, &[]);
        last = err;
        if code == 0 {
            break;
        }
    }
    assert!(!server.agent_dead.load(std::sync::atomic::Ordering::SeqCst));
    assert_each_stored_once(&server.events(), &want, &format!("{trouble:?}\n{last}"));
    assert!(entries_left(&queue).is_empty(), "{trouble:?}: queue left");
    assert!(!queue.join("failed").exists(), "nothing quarantined");
    eprintln!(
        "{trouble:?}: {EVENTS} events, {KILLS} SIGKILLs, {before_final} stored before the last run, exactly once, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn sigkill_at_random_moments() {
    crash_run(Trouble::None, 0xba12_0001);
}

#[test]
fn sigkill_with_sguild_restarting_behind_the_agent() {
    crash_run(Trouble::SguildRestarts, 0xba12_0002);
}

#[test]
fn sigkill_with_the_agent_restarting() {
    crash_run(Trouble::AgentRestarts, 0xba12_0003);
}

#[test]
fn sigkill_with_the_database_going_down() {
    crash_run(Trouble::DatabaseDown, 0xba12_0004);
}

#[test]
fn sigkill_with_replies_delayed_past_the_timeout() {
    crash_run(Trouble::SlowReplies, 0xba12_0005);
}

#[test]
fn sigkill_with_the_connection_cut_mid_window() {
    crash_run(Trouble::ConnectionCut, 0xba12_0006);
}

#[test]
fn sigkill_with_the_agent_losing_sguild() {
    crash_run(Trouble::AgentOffline, 0xba12_0007);
}

/// Hostile messages, hostile on purpose for Tcl: each RTEVENT line goes through what
/// snort_agent and sguild do with it in a real tclsh — `lindex`/`llength` of the line,
/// the forwarded `BYEventRcvd $socketID $eventInfo` (which must stay one line), and
/// sguild's `eval` of it into a 46-parameter proc — and the message must arrive intact
/// (as made printable), with nothing executed.
#[test]
fn hostile_messages_survive_tcl_as_snort_agent_and_sguild_parse_them() {
    let Some(tclsh) = program_or_skip("tclsh", "hostile_messages_survive_tcl") else {
        return;
    };
    let mut messages: Vec<Vec<u8>> = [
        &b"MSc 403 {unbalanced"[..],
        b"MSc 403 unbalanced}",
        b"}{",
        b"[exec touch /tmp/pwned-by-modsec2sguil]",
        b"$env(HOME) [set x 1] \\",
        b"a\\",
        b"\\}",
        b"\"quoted\" {braced} [bracketed] \\backslash\\ ;semicolon #hash",
        b"line\nbreak\r\nand\ttab\x00nul",
        b"#starts with hash",
        b"{*}{a b}",
        b"\xff\xfe invalid utf-8 \xc3",
        b"caf\xc3\xa9 \xe2\x80\xa8 sep",
        b"",
        b" ",
        b"\\\n",
        b"{\\}",
    ]
    .iter()
    .map(|m| m.to_vec())
    .collect();
    let mut rng = Rng(0x7c1_7c1);
    let alphabet = b"{}[]$\\\";# \n\r\t\0ab\xc3\xa9\xff";
    for _ in 0..500 {
        let len = rng.below(255) as usize;
        messages.push(
            (0..len)
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect(),
        );
    }
    messages.push(vec![b'{'; 255]);
    messages.push(vec![b'\\'; 255]);
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("lines");
    let mut f = std::fs::File::create(&lines).unwrap();
    for (i, m) in messages.iter().enumerate() {
        let e = sample_event(1, i as u32 + 1, SENSOR, m, b"GET /", false);
        f.write_all(rtevent_line(&e).as_bytes()).unwrap();
    }
    drop(f);
    let script = dir.path().join("agent.tcl");
    std::fs::write(
        &script,
        r#"
proc BYEventRcvd { socketID req_socketID status sid cid sensorName u_event_id
                   u_event_ref u_ref_time sig_gen sig_id sig_rev msg timestamp
                   priority class_type dec_sip str_sip dec_dip str_dip
                   ip_proto ip_ver ip_hlen ip_tos ip_len ip_id ip_flags ip_off ip_ttl
                   ip_csum icmp_type icmp_code icmp_csum icmp_id icmp_seq src_port
                   dst_port tcp_seq tcp_ack tcp_off tcp_res tcp_flags tcp_win tcp_csum
                   tcp_urp udp_len udp_csum data_payload } {
    puts "OK $cid [binary encode hex [encoding convertto utf-8 $msg]] $data_payload"
}
set in [open [lindex $argv 0]]
fconfigure $in -encoding utf-8 -translation lf
fconfigure stdout -encoding utf-8
while {[gets $in data] >= 0} {
    # snort_agent: BYCmdRcvd, BYEventRcvd
    if {[catch {lindex $data 0} cmd] || $cmd ne "RTEVENT"} { puts "BAD not a list: $cmd"; continue }
    set eventInfo [lrange $data 1 end]
    if {[llength $eventInfo] != 46} { puts "BAD length [llength $eventInfo]"; continue }
    set forwarded "BYEventRcvd sock5 $eventInfo"
    if {[string first "\n" $forwarded] >= 0 || [string first "\r" $forwarded] >= 0} {
        puts "BAD line break in the forwarded line"; continue
    }
    # sguild: SensorCmdRcvd
    set cmd "BYEventRcvd sock9 [lrange $forwarded 1 end]"
    if {[catch {eval $cmd} err]} { puts "BAD eval: $err" }
}
"#,
    )
    .unwrap();
    let out = Command::new(tclsh)
        .arg(&script)
        .arg(&lines)
        .output()
        .expect("run tclsh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got.len(), messages.len(), "{text}");
    for (i, (line, m)) in got.iter().zip(&messages).enumerate() {
        let want = format!(
            "OK {} {} 474554202F",
            i + 1,
            modsec2sguil::hex::upper(message_text(m).as_bytes()).to_lowercase()
        );
        // An empty message is an empty hex string: "OK 14  4745…".
        assert_eq!(*line, want, "message {i}: {m:?}");
    }
    assert!(!Path::new("/tmp/pwned-by-modsec2sguil").exists());
}

/// Against Sguil's real snort_agent (`sensor/snort_agent.tcl` from `SGUIL_SRC`)
/// forwarding to a real sguild with its MariaDB, started for this test on loopback
/// (`tests/support/real_sguild.rs`; skipped through `skip_or_fail` without `SGUIL_SRC`):
/// `drain` lands every event (the sensor's maxCid grows by as many, and sguild's tables
/// hold each once), through windows of 1 and 32; hostile messages are confirmed and the
/// agent stays up; a repeat of the last stored event gets no answer at all (the fence's
/// answer comes alone), a repeat of an earlier one gets `Duplicate entry`.
#[test]
fn real_snort_agent_and_sguild() {
    use modsec2sguil::sguil::barnyard::{
        parse_agent_line, sid_cid_request_line, AgentLine, BarnyardSession,
    };
    use modsec2sguil::sguil::client::Answer;
    use modsec2sguil::sguil::conn::Connection;
    use modsec2sguil_e2e::real_sguild::RealSguild;
    let Some(sguild) = RealSguild::start("real_snort_agent_and_sguild") else {
        return;
    };
    let sensor = "m2s-snort".to_string();
    let agent = sguild.snort_agent(&sensor);
    let (host, port) = ("127.0.0.1", agent.port);
    let timeout = Duration::from_secs(15);
    let open = || BarnyardSession::open(host, port, &sensor, timeout).unwrap();
    let before = open().max_cid;
    let dir = tempfile::tempdir().unwrap();
    let mut want = HashSet::new();
    for (window, first, n) in [(1, 1, 20), (32, 21, 300)] {
        let queue = dir.path().join(format!("queue{window}"));
        want.extend(fill_queue(&queue, first, n));
        let conf = dir.path().join("real.conf");
        std::fs::write(
            &conf,
            format!(
                "set EVENT_DIR {}\nset OUTPUT barnyard\nset AGENT_HOST {host}\nset AGENT_PORT {port}\n\
                 set HOSTNAME {sensor}\nset SEND_WINDOW {window}\n",
                queue.display()
            ),
        )
        .unwrap();
        let (code, err) = drain(&conf, &[]);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains(&format!("shipped {n},")), "{err}");
        let summary = err
            .lines()
            .find(|l| l.contains("drain: shipped"))
            .unwrap_or("");
        eprintln!("real_snort_agent_and_sguild: window {window}: {summary}");
        assert!(entries_left(&queue).is_empty());
    }
    let mut s = open();
    assert_eq!(s.max_cid, before + 320, "every event landed");
    let ids = sguild.stored_ids(&sensor);
    let distinct: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), 320, "rows in sguild's tables");
    assert_eq!(distinct, want, "each event once in sguild's tables");
    // Hostile messages, confirmed one by one.
    let hostile: [&[u8]; 5] = [
        b"MSc 403 {unbalanced [exec id] $x \\",
        b"}{ \"q\" ;#",
        b"line\nbreak\r\0nul",
        b"\xff\xfe",
        b"\\}",
    ];
    let sid = s.sid;
    let first = s.max_cid + 1;
    let events: Vec<_> = hostile
        .iter()
        .enumerate()
        .map(|(i, m)| sample_event(sid, first + i as u32, &sensor, m, b"GET /", true))
        .collect();
    for e in &events {
        s.submit(std::slice::from_ref(e)).unwrap();
        assert_eq!(s.next_answer().unwrap(), Answer::Confirmed);
    }
    s.ping().unwrap();
    // The last one again, raw: sguild says nothing; the fence is answered alone.
    let mut raw =
        Connection::open_plain("snort_agent", host, port, Duration::from_secs(5)).unwrap();
    raw.send_line(&sid_cid_request_line(&sensor)).unwrap();
    let line = raw.read_line(timeout).unwrap().unwrap();
    assert!(
        matches!(parse_agent_line(&line), AgentLine::SidCidResponse { .. }),
        "{line}"
    );
    let last = events.last().unwrap();
    raw.send_lines(&[rtevent_line(last), sid_cid_request_line(&sensor)])
        .unwrap();
    let line = raw.read_line(timeout).unwrap().unwrap();
    assert!(
        matches!(parse_agent_line(&line), AgentLine::SidCidResponse { .. }),
        "no answer to the repeat of the last event, only the fence's: {line}"
    );
    assert_eq!(raw.read_line(Duration::from_secs(2)).unwrap(), None);
    // An earlier one: `Duplicate entry`.
    let mut s = open();
    s.submit(std::slice::from_ref(&events[0])).unwrap();
    assert_eq!(s.next_answer().unwrap(), Answer::AlreadyStored);
    eprintln!(
        "real_snort_agent_and_sguild: sid {sid}: 320 + 5 hostile events stored, maxCid {} → {}",
        before, s.max_cid
    );
}

/// Kills the child if the test panics (a leaked daemon would outlive the test run).
struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_daemon_ships_through_snort_agent_keeps_alive_and_reconnects() {
    let (mut server, port) = server_with_agent();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    let log = dir.path().join("shipper.log");
    let conf = config(
        dir.path(),
        &queue,
        port,
        &format!(
            "set PING_DELAY 1000\nset REPLY_TIMEOUT 2\nset LOG_FILE {}\n",
            log.display()
        ),
    );
    let mut child = KillOnDrop(
        Command::new(binary("modsec-shipper"))
            .args(["run", "-c", conf.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    fill_queue(&queue, 1, 5);
    wait_for_events(&server, 5, &log);
    // Idle past PING_DELAY: SidCidRequest keeps the session, which then still works.
    std::thread::sleep(Duration::from_millis(2500));
    fill_queue(&queue, 6, 5);
    wait_for_events(&server, 10, &log);
    // The snort_agent restarts on the same port: the daemon reconnects and goes on.
    server = server.restart();
    server.start_snort_agent(port, SENSOR);
    fill_queue(&queue, 11, 5);
    wait_for_events(&server, 15, &log);
    modsec2sguil_e2e::process::signal(child.0.id(), "TERM");
    let status = modsec2sguil_e2e::process::wait_exit(&mut child.0, Duration::from_secs(10));
    assert_eq!(status, Some(0), "no clean exit after SIGTERM");
    let want: HashSet<String> = (1..=15).map(modsec2sguil_e2e::shipper::unique_id).collect();
    assert_each_stored_once(&server.events(), &want, "daemon");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("reconnecting"), "{text}");
    assert!(!text.contains("PING failed"), "{text}");
}

/// Our Tcl list quoting against Tcl itself: strings of every control character,
/// braces, brackets, quotes, backslashes and non-ASCII, written as list elements on one
/// line, read back by a real tclsh as exactly those strings.
#[test]
fn tcl_list_elements_read_back_in_a_real_tclsh() {
    use modsec2sguil::sguil::tcl;
    let Some(tclsh) = program_or_skip("tclsh", "tcl_list_elements_read_back") else {
        return;
    };
    let mut alphabet: Vec<char> = (0u8..0x20).map(char::from).collect();
    alphabet.extend("{}[]$\\\";# \u{7f}ab\u{e9}\u{2028}\u{1f600}".chars());
    let mut rng = Rng(0x7c1_e1e);
    let strings: Vec<Vec<String>> = (0..400)
        .map(|_| {
            (0..1 + rng.below(4))
                .map(|_| {
                    (0..rng.below(12))
                        .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                        .collect()
                })
                .collect()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("lines");
    let text: String = strings
        .iter()
        .map(|items| {
            let words: Vec<String> = items.iter().map(|s| tcl::element(s)).collect();
            format!("{}\n", words.join(" "))
        })
        .collect();
    assert_eq!(text.matches('\n').count(), strings.len(), "one line each");
    std::fs::write(&lines, &text).unwrap();
    let script = dir.path().join("read.tcl");
    std::fs::write(
        &script,
        r#"
set in [open [lindex $argv 0]]
fconfigure $in -encoding utf-8 -translation lf
while {[gets $in data] >= 0} {
    puts -nonewline [llength $data]
    foreach e $data { puts -nonewline " x[binary encode hex [encoding convertto utf-8 $e]]" }
    puts ""
}
"#,
    )
    .unwrap();
    let out = Command::new(tclsh)
        .arg(&script)
        .arg(&lines)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8_lossy(&out.stdout);
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(got.len(), strings.len());
    for (line, items) in got.iter().zip(&strings) {
        let hex: Vec<String> = items
            .iter()
            .map(|s| format!("x{}", modsec2sguil::hex::upper(s.as_bytes()).to_lowercase()))
            .collect();
        assert_eq!(
            *line,
            format!("{} {}", items.len(), hex.join(" ")),
            "{items:?}"
        );
    }
}

#[test]
fn the_snort_agent_path_and_the_direct_path_store_the_same_detail() {
    let barnyard = setup(12, "");
    let (code, err) = drain(&barnyard.conf, &[]);
    assert_eq!(code, 0, "{err}");

    let direct = TestSguild::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    fill_queue(&queue, 1, 12);
    let conf = modsec2sguil_e2e::shipper::config(dir.path(), &queue, &direct, "");
    let (code, err) = drain(&conf, &[]);
    assert_eq!(code, 0, "{err}");

    let by_id = |server: &TestSguild| -> std::collections::BTreeMap<String, String> {
        server
            .events()
            .iter()
            .map(|e| (stored_unique_id(e), e.detail_hex.clone()))
            .collect()
    };
    let (through_agent, straight) = (by_id(&barnyard.server), by_id(&direct));
    assert_eq!(through_agent.len(), 12);
    assert_eq!(
        through_agent.keys().collect::<Vec<_>>(),
        straight.keys().collect::<Vec<_>>()
    );
    for (id, hex) in &through_agent {
        let detail = modsec2sguil::hex::decode(hex.as_bytes()).unwrap();
        assert!(
            detail.starts_with(b"<h3>"),
            "{id}: the HTML detail by default"
        );
        assert_eq!(Some(hex), straight.get(id), "{id}: the two paths differ");
    }
}
