//! Every size limit at its boundary: the largest value allowed passes whole, one more
//! is refused or cut, visibly. Each limit is a named constant or config key whose doc
//! says why it is what it is.

use std::io::{Cursor, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use modsec2sguil::alert::{map_event, AlertSettings, DetailFormat, BODY_EXCERPT_BYTES};
use modsec2sguil::auditlog::{
    parse_event, read_event_file, AuditLogError, ParseLimits, DEFAULT_MAX_JSON_BYTES,
};
use modsec2sguil::collect::{read_line, MAX_LINE_BYTES};
use modsec2sguil::index::{parse_index_line, MAX_UNIQUE_ID_LEN};
use modsec2sguil::sguil::conn::{Connection, MAX_SERVER_LINE};
use modsec2sguil::sguil::wire::{EventError, SguilEvent, MAX_DETAIL_BYTES, MAX_MESSAGE_BYTES};
use modsec2sguil::ship::load::{load_entry, LoadError, LoadOptions};

const EVENT: &str = "--c01c6850-A--
[28/Nov/2026:02:14:31.052041 +0000] awo5B9rt9m7QJiOqXPD3mQAAAEE 192.0.2.7 40628 192.0.2.1 80
--c01c6850-B--
POST /login HTTP/1.1
Host: lab.example

--c01c6850-C--
BODY
--c01c6850-F--
HTTP/1.1 403 Forbidden

--c01c6850-H--
Message: Access denied with code 403 (phase 2). Pattern match \"a\" at ARGS:user. [file \"/r.conf\"] [line \"3\"] [id \"100003\"] [msg \"evil\"] [severity \"CRITICAL\"]
Action: Intercepted (phase 2)

--c01c6850-Z--
";

fn event_with_body(len: usize) -> Vec<u8> {
    EVENT.replace("BODY", &"b".repeat(len)).into_bytes()
}

fn index_line(unique_id: &str) -> String {
    format!("lab.example 192.0.2.7 - - [28/Nov/2026:02:14:31.009836 +0000] \"GET / HTTP/1.1\" 403 239 \"-\" \"-\" {unique_id} \"-\" /f 0 10 md5:00112233445566778899aabbccddeeff\n")
}

#[test]
fn unique_id_length() {
    let id = "a".repeat(MAX_UNIQUE_ID_LEN);
    assert_eq!(
        parse_index_line(index_line(&id).as_bytes())
            .unwrap()
            .unique_id,
        id
    );
    let e = parse_index_line(index_line(&format!("{id}a")).as_bytes()).unwrap_err();
    assert!(e.to_string().contains("unique id"), "{e}");
}

#[test]
fn index_line_length() {
    for (len, cut) in [(MAX_LINE_BYTES, false), (MAX_LINE_BYTES + 1, true)] {
        // `len` bytes with the newline.
        let mut text = vec![b'x'; len - 1];
        text.push(b'\n');
        text.extend_from_slice(b"next\n");
        let mut r = Cursor::new(text);
        let line = read_line(&mut r).unwrap().unwrap();
        assert_eq!(line.full_len, len);
        assert_eq!(line.bytes.len(), MAX_LINE_BYTES, "{len}");
        assert_eq!(
            line.bytes.ends_with(b"\n"),
            !cut,
            "{len}: the newline is kept iff whole"
        );
        assert_eq!(read_line(&mut r).unwrap().unwrap().bytes, b"next\n");
    }
}

#[test]
fn event_file_size() {
    let dir = tempfile::tempdir().unwrap();
    let text = event_with_body(10);
    std::fs::write(dir.path().join("modsec.log.1.000001"), &text).unwrap();
    let size = text.len() as u64;
    let at = |max_event_bytes| LoadOptions {
        max_event_bytes,
        ..LoadOptions::default()
    };
    assert!(load_entry(dir.path(), "modsec.log.1.000001", &at(size)).is_ok());
    match load_entry(dir.path(), "modsec.log.1.000001", &at(size - 1)) {
        Err(LoadError::Refused(why)) => {
            assert!(why.contains("over MAX_EVENT_BYTES"), "{why}")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn request_body_kept_by_the_parser() {
    let limits = |max_body_bytes| ParseLimits {
        max_body_bytes,
        ..ParseLimits::default()
    };
    let ev = parse_event(&event_with_body(100), &limits(100)).unwrap();
    let body = ev.request.body.unwrap();
    assert_eq!(
        (body.bytes.len(), body.total_len, body.truncated),
        (100, 100, false)
    );
    let ev = parse_event(&event_with_body(101), &limits(100)).unwrap();
    let body = ev.request.body.unwrap();
    assert_eq!(
        (body.bytes.len(), body.total_len, body.truncated),
        (100, 101, true)
    );
}

/// A JSON event file of exactly DEFAULT_MAX_JSON_BYTES (a recorded event padded with
/// the whitespace JSON allows after it) is read and parsed; one byte more is refused,
/// naming its size and the limit, both read from a file and parsed from memory.
#[test]
fn json_event_size() {
    let recorded =
        modsec2sguil_e2e::files_below(&modsec2sguil_e2e::fixtures().join("modsec-2.9/json"))
            .into_iter()
            .next()
            .unwrap();
    let event = std::fs::read(&recorded).unwrap();
    let id = parse_event(&event, &ParseLimits::default())
        .unwrap()
        .unique_id;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("event.json");
    let limit = DEFAULT_MAX_JSON_BYTES;
    for len in [limit, limit + 1] {
        let mut text = event.clone();
        text.resize(len as usize, b' ');
        std::fs::write(&path, &text).unwrap();
        let limits = ParseLimits::default();
        let read = read_event_file(&path, std::fs::File::open(&path).unwrap(), &limits);
        let parsed = parse_event(&text, &limits);
        if len == limit {
            let raw = read.unwrap();
            assert_eq!(raw.size, limit);
            assert_eq!(raw.parse(&limits).unwrap().unique_id, id);
            assert_eq!(parsed.unwrap().unique_id, id);
        } else {
            for e in [
                read.map(|_| ()).unwrap_err(),
                parsed.map(|_| ()).unwrap_err(),
            ] {
                assert!(
                    matches!(e, AuditLogError::TooLarge { size, limit: l } if size == len && l == limit),
                    "{e}"
                );
            }
        }
    }
}

/// The Sguil message (`event.signature`, VARCHAR(255)): `MSc <status> <msg>` of exactly
/// MAX_MESSAGE_BYTES is sent whole; one byte more is cut to the limit by the mapping, and
/// refused by the wire's check if it ever got there.
#[test]
fn message_length() {
    let prefix = "MSc 403 ";
    for len in [MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES + 1] {
        let msg = "m".repeat(len - prefix.len());
        let raw = EVENT.replace("[msg \"evil\"]", &format!("[msg \"{msg}\"]"));
        let ev = parse_event(raw.as_bytes(), &ParseLimits::default()).unwrap();
        let mut fields = map_event(&ev, b"", &[], &text_detail()).fields;
        let whole = format!("{prefix}{msg}").into_bytes();
        assert_eq!(whole.len(), len);
        fields.cid = 1;
        fields.hostname = "websrv".into();
        if len == MAX_MESSAGE_BYTES {
            assert_eq!(fields.message, whole);
        } else {
            assert_eq!(
                fields.message,
                &whole[..MAX_MESSAGE_BYTES],
                "cut to the limit"
            );
        }
        assert!(SguilEvent::new(fields.clone()).is_ok());
        fields.message = whole;
        match SguilEvent::new(fields) {
            Ok(_) => assert_eq!(len, MAX_MESSAGE_BYTES),
            Err(e) => {
                assert_eq!(len, MAX_MESSAGE_BYTES + 1);
                assert!(
                    matches!(e, EventError::MessageTooLong(n) if n == len),
                    "{e}"
                );
            }
        }
    }
}

/// The text detail with the whole raw event: its layout is exact to the byte (the HTML
/// detail's excerpt and cuts are tested in shared/src/alert/html/tests.rs).
fn text_detail() -> AlertSettings {
    AlertSettings {
        detail_format: DetailFormat::Text,
        detail_raw_bytes: MAX_DETAIL_BYTES,
        ..AlertSettings::default()
    }
}

#[test]
fn body_excerpt_in_the_detail() {
    for (len, shown) in [
        (BODY_EXCERPT_BYTES, BODY_EXCERPT_BYTES),
        (BODY_EXCERPT_BYTES + 1, BODY_EXCERPT_BYTES),
    ] {
        let raw = event_with_body(len);
        let ev = parse_event(&raw, &ParseLimits::default()).unwrap();
        let detail = map_event(&ev, b"", &[], &text_detail()).fields.detail;
        let text = String::from_utf8_lossy(&detail);
        assert!(
            text.contains(&format!(
                "Request body ({shown} of {len} bytes): {}\n",
                "b".repeat(shown)
            )),
            "{text}"
        );
    }
}

#[test]
fn detail_size() {
    let raw = event_with_body(10);
    let ev = parse_event(&raw, &ParseLimits::default()).unwrap();
    let map = |raw: &[u8]| map_event(&ev, raw, &[], &text_detail()).fields.detail;
    let summary = map(b"").len();
    let fits = vec![b'r'; MAX_DETAIL_BYTES - summary];
    let detail = map(&fits);
    assert_eq!(detail.len(), MAX_DETAIL_BYTES);
    assert!(detail.ends_with(&fits), "whole, no marker");
    let over = vec![b'r'; MAX_DETAIL_BYTES - summary + 1];
    let detail = map(&over);
    assert!(detail.len() <= MAX_DETAIL_BYTES);
    let tail = String::from_utf8_lossy(&detail[detail.len() - 200..]).into_owned();
    assert!(
        tail.contains("cut by modsec-shipper"),
        "a visible marker: {tail}"
    );
}

#[test]
fn line_from_the_server() {
    for (len, ok) in [(MAX_SERVER_LINE, true), (MAX_SERVER_LINE + 1, false)] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut line = vec![b'x'; len];
            line.push(b'\n');
            let _ = s.write_all(&line);
            std::thread::sleep(Duration::from_millis(300));
        });
        let mut c =
            Connection::open_plain("test", "127.0.0.1", port, Duration::from_secs(5)).unwrap();
        let got = c.read_line(Duration::from_secs(5));
        match (ok, got) {
            (true, Ok(Some(line))) => assert_eq!(line.len(), len),
            (false, Err(e)) => assert!(e.to_string().contains("over 1 MiB"), "{e}"),
            (_, other) => panic!("{len}: {:?}", other.map(|l| l.map(|l| l.len()))),
        }
        server.join().unwrap();
    }
}

// ---------------------------------------------------------------------------------
// Files of the queue, which its owner may write anything into: each read is bounded in
// total and by line; what is over a bound is named with it, never read into memory.

use modsec2sguil::queue::delivered::{
    delivered_ids, MAX_DELIVERED_BYTES, MAX_DELIVERED_LINE_BYTES,
};
use modsec2sguil::queue::journal::{
    read_journal, Journal, MAX_JOURNAL_BYTES, MAX_JOURNAL_LINE_BYTES,
};
use modsec2sguil::queue::last_run::{
    LastRun, RunResult, MAX_LAST_RUN_BYTES, MAX_LAST_RUN_ERROR_BYTES,
};
use modsec2sguil::queue::reason::{MAX_REASON_BYTES, MAX_REASON_LINE_BYTES, MAX_REASON_TEXT_BYTES};

/// `first`, then filler lines (`#`, each at most 1,000 bytes), then `last`: exactly
/// `size` bytes.
fn padded(first: &str, last: &str, size: u64) -> Vec<u8> {
    let mut out = first.as_bytes().to_vec();
    let mut fill = size as usize - first.len() - last.len();
    while fill > 0 {
        let n = fill.min(1000);
        out.resize(out.len() + n - 1, b'#');
        out.push(b'\n');
        fill -= n;
    }
    out.extend_from_slice(last.as_bytes());
    assert_eq!(out.len() as u64, size);
    out
}

fn journal_line(cid: u32, len: usize) -> String {
    let head = format!("v1\t3\t{cid}\t1790000000\t42\t");
    let tail = format!("\tmodsec.log.1.{cid:06}");
    let host = "h".repeat(len - head.len() - tail.len());
    format!("{head}{host}{tail}\n")
}

#[test]
fn journal_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".journal");
    let record = journal_line(1, 60);
    std::fs::write(&path, padded(&record, "", MAX_JOURNAL_BYTES)).unwrap();
    assert_eq!(read_journal(dir.path()).unwrap().len(), 1);
    assert_eq!(Journal::open(dir.path()).unwrap().1.len(), 1);
    std::fs::write(&path, padded(&record, "", MAX_JOURNAL_BYTES + 1)).unwrap();
    for e in [
        read_journal(dir.path()).unwrap_err(),
        Journal::open(dir.path()).unwrap_err(),
    ] {
        assert!(
            e.to_string().contains(&format!(
                "holds more than {MAX_JOURNAL_BYTES} bytes, the bound MAX_JOURNAL_BYTES"
            )),
            "{e}"
        );
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        MAX_JOURNAL_BYTES + 1,
        "refused, not cut"
    );
}

#[test]
fn journal_line_length() {
    let dir = tempfile::tempdir().unwrap();
    // The bound counts the line without its newline.
    let fits = journal_line(1, MAX_JOURNAL_LINE_BYTES);
    let over = journal_line(2, MAX_JOURNAL_LINE_BYTES + 1);
    std::fs::write(dir.path().join(".journal"), format!("{fits}{over}")).unwrap();
    let (_, records) = Journal::open(dir.path()).unwrap();
    assert_eq!(records.iter().map(|r| r.cid).collect::<Vec<_>>(), [1]);
    assert_eq!(read_journal(dir.path()).unwrap().len(), 1);
}

fn delivered_line(id: &str, len: usize) -> String {
    let head = format!("v1\t1790000000\t3\t1\t{id}\t");
    format!("{head}{}\n", "e".repeat(len - head.len()))
}

#[test]
fn delivered_log_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".delivered");
    let (first, last) = (delivered_line("FIRST", 60), delivered_line("LAST", 60));
    std::fs::write(&path, padded(&first, &last, MAX_DELIVERED_BYTES)).unwrap();
    let ids = delivered_ids(dir.path()).unwrap();
    assert!(ids.contains("FIRST") && ids.contains("LAST"), "{ids:?}");
    // One byte over: only the newest MAX_DELIVERED_BYTES are read (the oldest record is
    // the one left out), with a warning.
    std::fs::write(&path, padded(&first, &last, MAX_DELIVERED_BYTES + 1)).unwrap();
    let ids = delivered_ids(dir.path()).unwrap();
    assert!(!ids.contains("FIRST") && ids.contains("LAST"), "{ids:?}");
}

#[test]
fn delivered_log_line_length() {
    let dir = tempfile::tempdir().unwrap();
    let text = delivered_line("FITS", MAX_DELIVERED_LINE_BYTES)
        + &delivered_line("OVER", MAX_DELIVERED_LINE_BYTES + 1);
    std::fs::write(dir.path().join(".delivered"), text).unwrap();
    let ids = delivered_ids(dir.path()).unwrap();
    assert!(ids.contains("FITS") && !ids.contains("OVER"), "{ids:?}");
}

fn last_run(error: Option<String>) -> LastRun {
    LastRun {
        program: "drain".into(),
        pid: 1,
        finished: 1_790_000_000,
        seconds: 1.0,
        result: RunResult::Outage,
        error,
        shipped: 0,
        already_stored: 0,
        skipped: 0,
        quarantined: 0,
        held: 0,
        remaining: 0,
    }
}

#[test]
fn last_run_record_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".last-run");
    let json = serde_json::to_string(&last_run(None)).unwrap();
    // JSON allows whitespace after the value: exactly at the bound, then one byte over.
    for (size, ok) in [(MAX_LAST_RUN_BYTES, true), (MAX_LAST_RUN_BYTES + 1, false)] {
        let mut text = json.clone().into_bytes();
        text.resize(size as usize - 1, b' ');
        text.push(b'\n');
        std::fs::write(&path, text).unwrap();
        match (ok, LastRun::read(dir.path())) {
            (true, Ok(Some(r))) => assert_eq!(r, last_run(None)),
            (false, Err(e)) => assert!(
                e.to_string().contains(&format!(
                    "holds more than {MAX_LAST_RUN_BYTES} bytes, the bound MAX_LAST_RUN_BYTES"
                )),
                "{e}"
            ),
            (_, other) => panic!("{size}: {other:?}"),
        }
    }
}

#[test]
fn last_run_error_length() {
    let dir = tempfile::tempdir().unwrap();
    let fits = "e".repeat(MAX_LAST_RUN_ERROR_BYTES);
    last_run(Some(fits.clone())).write(dir.path()).unwrap();
    assert_eq!(
        LastRun::read(dir.path()).unwrap().unwrap().error,
        Some(fits.clone())
    );
    last_run(Some(fits.clone() + "e"))
        .write(dir.path())
        .unwrap();
    assert_eq!(
        LastRun::read(dir.path()).unwrap().unwrap().error,
        Some(fits + " [cut]")
    );
}

/// A quarantine's reason file as the shipper writes it, with `reason`.
fn quarantined(reason: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let q = modsec2sguil::queue::Queue::open(dir.path()).unwrap();
    std::fs::write(dir.path().join("modsec.log.1.000001"), "x").unwrap();
    let moved = q.quarantine("modsec.log.1.000001", reason).unwrap();
    let mut path = moved.into_os_string();
    path.push(".reason");
    (dir, path.into())
}

#[test]
fn reason_text_length() {
    let fits = "r".repeat(MAX_REASON_TEXT_BYTES);
    let (_d, path) = quarantined(&fits);
    assert_eq!(modsec2sguil::queue::reason::read(&path), Some(fits.clone()));
    let (_d, path) = quarantined(&format!("{fits}r"));
    assert_eq!(
        modsec2sguil::queue::reason::read(&path),
        Some(format!("{fits} [cut at {MAX_REASON_TEXT_BYTES} bytes]"))
    );
}

#[test]
fn reason_file_size_and_line_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("modsec.log.1.000001.reason");
    let read = |text: &[u8]| {
        std::fs::write(&path, text).unwrap();
        modsec2sguil::queue::reason::read(&path)
    };
    let first = "version: 1\nreason: why\n";
    assert_eq!(
        read(&padded(first, "", MAX_REASON_BYTES)).as_deref(),
        Some("why")
    );
    assert_eq!(
        read(&padded(first, "", MAX_REASON_BYTES + 1)),
        Some(format!(
            "reason file not read (over {MAX_REASON_BYTES} bytes, MAX_REASON_BYTES)"
        ))
    );
    // The line without its newline.
    let line = |len: usize| format!("reason: {}\n", "w".repeat(len - "reason: ".len()));
    let fits = line(MAX_REASON_LINE_BYTES);
    assert_eq!(
        read(fits.as_bytes()).as_deref(),
        Some(&fits[8..fits.len() - 1])
    );
    assert_eq!(read(line(MAX_REASON_LINE_BYTES + 1).as_bytes()), None);
}

/// Attack 2 of issue 25 against the shipper's side: the queue's owner makes `.delivered`
/// a 4 GB sparse file. `requeue --failed` (which reads it to skip delivered events) and
/// `drain` (which appends to it) go on, within a 2 GB address space: the log is read for
/// its last MAX_DELIVERED_BYTES only, a line of zeros over its bound is not kept.
#[test]
fn a_4gb_sparse_delivered_log_aborts_neither_requeue_nor_drain() {
    use modsec2sguil_e2e::shipper::{entries_left, fill_queue, move_to_failed, stdout_config};
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    fill_queue(&queue, 1, 2);
    move_to_failed(&queue, "modsec.log.1790000000.000002");
    let log = std::fs::File::create(queue.join(".delivered")).unwrap();
    log.set_len(4 << 30).unwrap();
    let conf = stdout_config(dir.path(), &queue, "");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(modsec2sguil_e2e::binary("modsec-shipper"));
        cmd.args(args).arg("-c").arg(&conf);
        modsec2sguil_e2e::process::limit(&mut cmd, libc::RLIMIT_AS, 2_000_000_000);
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), err)
    };
    let (code, err) = run(&["requeue", "--failed", "--all"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("MAX_DELIVERED_BYTES"), "{err}");
    assert_eq!(entries_left(&queue).len(), 2, "{err}");
    let (code, err) = run(&["drain"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(entries_left(&queue).is_empty(), "{err}");
}

/// A journal over its bound stops the shipper (exit 1) with a message naming it and the
/// bound; the queue is left as it is.
#[test]
fn a_journal_over_its_bound_stops_the_shipper() {
    use modsec2sguil_e2e::shipper::{entries_left, fill_queue, stdout_config};
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    fill_queue(&queue, 1, 1);
    let journal = std::fs::File::create(queue.join(".journal")).unwrap();
    journal.set_len(MAX_JOURNAL_BYTES + 1).unwrap();
    let conf = stdout_config(dir.path(), &queue, "");
    let (code, err) = modsec2sguil_e2e::shipper::drain(&conf, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(".journal holds more than") && err.contains("MAX_JOURNAL_BYTES"),
        "{err}"
    );
    assert_eq!(entries_left(&queue).len(), 1);
}

/// The collector's record of queued events: a line of `MAX_QUEUED_LINE_BYTES` is read,
/// a longer one is skipped whole (and the next one read).
#[test]
fn queued_record_line_length() {
    use modsec2sguil::state::{StateDir, MAX_QUEUED_LINE_BYTES, QUEUED_FILE};
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(&dir.path().join("state"), None).unwrap();
    let line = |id_len: usize| format!("v1\t1\t{}\n", "i".repeat(id_len));
    let at = MAX_QUEUED_LINE_BYTES - "v1\t1\t".len();
    std::fs::write(
        state.join(QUEUED_FILE),
        format!("{}{}{}", line(at), line(at + 1), line(3)),
    )
    .unwrap();
    let ids = state.queued_ids().unwrap();
    assert!(
        ids.contains(&"i".repeat(at)),
        "the line at the limit is read"
    );
    assert!(
        !ids.contains(&"i".repeat(at + 1)),
        "one byte more is skipped"
    );
    assert!(ids.contains("iii"), "and the next line is read");
    assert_eq!(ids.len(), 2);
}

/// A backlog record `requeue --backlog` reads back: `MAX_BACKLOG_RECORD_BYTES` is read
/// (and put back with its new reason); one byte more is not read, and the taken backlog
/// is kept under a name the error gives.
#[test]
fn backlog_record_length() {
    use modsec2sguil::collect::{CollectorOverrides, CollectorSettings};
    use modsec2sguil::requeue::{requeue_backlog, LineRequeuer};
    use modsec2sguil::state::{StateDir, BACKLOG_FILE, MAX_BACKLOG_RECORD_BYTES};
    let dir = tempfile::tempdir().unwrap();
    let (queue, storage, state_dir) = (
        dir.path().join("queue"),
        dir.path().join("audit"),
        dir.path().join("state"),
    );
    std::fs::create_dir(&storage).unwrap();
    let state = StateDir::open(&state_dir, None).unwrap();
    let record = |len: usize| {
        let head = "v1\t1\tr\t";
        format!("{head}{}\n", "x".repeat(len - head.len()))
    };
    let settings = || {
        CollectorSettings::resolve(
            None,
            CollectorOverrides {
                queue_dir: Some(queue.clone()),
                storage_dir: Some(storage.clone()),
                state_dir: Some(state_dir.clone()),
                ..CollectorOverrides::default()
            },
        )
        .unwrap()
    };
    std::fs::write(state.join(BACKLOG_FILE), record(MAX_BACKLOG_RECORD_BYTES)).unwrap();
    let mut r = LineRequeuer::new(settings(), false, false).unwrap();
    let report = requeue_backlog(&mut r, &mut |_| {}).unwrap();
    assert_eq!(report.failed, 1, "read, not an index line, put back");
    assert_eq!(
        std::fs::read_to_string(state.join(BACKLOG_FILE))
            .unwrap()
            .lines()
            .count(),
        1
    );
    std::fs::write(
        state.join(BACKLOG_FILE),
        record(MAX_BACKLOG_RECORD_BYTES + 1),
    )
    .unwrap();
    let mut r = LineRequeuer::new(settings(), false, false).unwrap();
    let e = requeue_backlog(&mut r, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("longer than") && e.contains("kept as"), "{e}");
    let kept: Vec<_> = std::fs::read_dir(&state_dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("backlog.unread-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "the taken backlog is kept, nothing lost");
}

/// What a new collector takes over from 0.1.0's queue: a file of `MAX_MIGRATED_BYTES`
/// is taken; one byte more is left in the queue, named.
#[test]
fn migrated_file_size() {
    use modsec2sguil::collect::migrate::{from_queue, MAX_MIGRATED_BYTES};
    use modsec2sguil::state::StateDir;
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    let state = StateDir::open(&dir.path().join("state"), None).unwrap();
    let handle = modsec2sguil::safefs::Dir::open_nofollow(&queue).unwrap();
    for (len, taken) in [(MAX_MIGRATED_BYTES, true), (MAX_MIGRATED_BYTES + 1, false)] {
        let spool = queue.join(".spool.4294967295");
        std::fs::File::create(&spool)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&spool)
            .unwrap()
            .write_all(b"\n")
            .unwrap();
        let done = from_queue(&handle, &queue, &state).unwrap();
        assert_eq!(!spool.exists(), taken, "{len} bytes");
        if !taken {
            assert!(
                done.refused.len() == 1 && done.refused[0].contains("more than"),
                "{:?}",
                done.refused
            );
            std::fs::remove_file(&spool).unwrap();
        }
    }
}
