//! Every size limit at its boundary: the largest value allowed passes whole, one more
//! is refused or cut, visibly. Each limit is a named constant or config key whose doc
//! says why it is what it is.

use std::io::{Cursor, Write};
use std::net::TcpListener;
use std::time::Duration;

use modsec2sguil::alert::{map_event, AlertSettings, DetailFormat, BODY_EXCERPT_BYTES};
use modsec2sguil::auditlog::{parse_event, ParseLimits};
use modsec2sguil::collect::{read_line, MAX_LINE_BYTES};
use modsec2sguil::index::{parse_index_line, MAX_UNIQUE_ID_LEN};
use modsec2sguil::sguil::conn::{Connection, MAX_SERVER_LINE};
use modsec2sguil::sguil::wire::MAX_DETAIL_BYTES;
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
