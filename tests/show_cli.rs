//! `modsec-shipper show` as a user runs it.

use std::process::Command;

use modsec2sguil_e2e::{binary, fixtures};

fn sqli_fixture() -> std::path::PathBuf {
    fixtures().join("modsec-2.9/native/www-data/20261128/20261128-0214/20261128-021431-awo5B9rt9m7QJiOqXPD3mQAAAEE")
}

#[test]
fn show_prints_the_parsed_event() {
    let out = Command::new(binary("modsec-shipper"))
        .arg("show")
        .arg(sqli_fixture())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "awo5B9rt9m7QJiOqXPD3mQAAAEE",
        "127.0.0.1 port 40628",
        "[949110] CRITICAL denied",
        "intercepted:  yes, phase 2, status 403",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn show_json_is_one_object_per_file() {
    let json_file = std::fs::read_dir(fixtures().join("modsec-2.9/json/www-data/20261128"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let out = Command::new(binary("modsec-shipper"))
        .args(["show", "--json"])
        .arg(sqli_fixture())
        .arg(&json_file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["unique_id"], "awo5B9rt9m7QJiOqXPD3mQAAAEE");
    assert_eq!(lines[0]["format"], "native2");
    assert_eq!(lines[1]["format"], "json2");
    assert_eq!(lines[1]["file"], json_file.display().to_string());
}

#[test]
fn show_names_each_file_it_cannot_parse_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"\x00\x01\x02 not an event").unwrap();
    let missing = dir.path().join("missing");
    let out = Command::new(binary("modsec-shipper"))
        .arg("show")
        .arg(&junk)
        .arg(sqli_fixture())
        .arg(&missing)
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: not a ModSecurity audit-log event",
            junk.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}: No such file", missing.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{} is a directory, not a regular file",
            dir.path().display()
        )),
        "{err}"
    );
    assert!(err.contains("3 of 4 file(s)"), "{err}");
    // The good file in the middle was still shown.
    assert!(String::from_utf8_lossy(&out.stdout).contains("awo5B9rt9m7QJiOqXPD3mQAAAEE"));
}

#[test]
fn show_escapes_raw_bytes_for_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("ev");
    let text = "--abcd1234-A--\n[28/Nov/2026:02:14:31 +0000] id1 127.0.0.1 1 127.0.0.1 80\n--abcd1234-B--\nGET /\x1b[31mred HTTP/1.1\nUser-Agent: \x1b]0;pwned\x07\n\n--abcd1234-Z--\n";
    std::fs::write(&f, text).unwrap();
    let out = Command::new(binary("modsec-shipper"))
        .arg("show")
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !out.stdout.contains(&0x1b),
        "no raw escape byte reaches the terminal"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\\x1b[31mred"));
}

fn show(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(binary("modsec-shipper"))
        .arg("show")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn show_detail_previews_what_sguil_gets_in_the_configured_format() {
    let file = sqli_fixture();
    let (code, html, err) = show(&["--detail".as_ref(), file.as_ref()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        html.starts_with("<h3>Intercepted (status 403): ")
            && html.contains("<b>Event:</b> awo5B9rt9m7QJiOqXPD3mQAAAEE<br>")
            && html.contains("<pre>--"),
        "{html}"
    );

    let (code, text, err) = show(&["--detail=text".as_ref(), file.as_ref()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.starts_with("ModSecurity event awo5B9rt9m7QJiOqXPD3mQAAAEE (intercepted)"),
        "{text}"
    );

    // The config decides when no format is given; its raw-event limit applies.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("m.conf");
    let with_config = |text: Option<&str>| {
        if let Some(text) = text {
            std::fs::write(&conf, text).unwrap();
        }
        show(&[
            "--detail".as_ref(),
            "-c".as_ref(),
            conf.as_ref(),
            file.as_ref(),
        ])
    };
    let (code, text, err) = with_config(Some("set DETAIL_FORMAT text\nset DETAIL_RAW_BYTES 100\n"));
    assert_eq!(code, 0, "{err}");
    assert!(
        text.starts_with("ModSecurity event ") && text.contains("DETAIL_RAW_BYTES is 100"),
        "{text}"
    );

    // A bad value stops it, naming the file, line and key.
    let (code, _, err) = with_config(Some("set DETAIL_FORMAT markdown\n"));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("m.conf:1: DETAIL_FORMAT"), "{err}");

    // So does a config that cannot be read, naming it.
    std::fs::remove_file(&conf).unwrap();
    let (code, out, err) = with_config(None);
    assert_eq!((code, out.as_str()), (3, ""), "{err}");
    assert!(err.contains(&conf.display().to_string()), "{err}");

    // A format that is neither is refused by the command line, with the choices.
    let (code, _, err) = show(&["--detail=markdown".as_ref(), file.as_ref()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[possible values: html, text]"), "{err}");
}

/// Run as root, `show` opens every file before it drops root; past the open-file limit
/// it says so with the way out (fewer files at a time), keeping the system's reason.
#[test]
fn too_many_files_as_root_is_explained() {
    if unsafe { libc::geteuid() } != 0 {
        modsec2sguil_e2e::skip_or_fail(
            "too_many_files_as_root_is_explained",
            "needs root (show opens its files before it drops root)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let event = std::fs::read(sqli_fixture()).unwrap();
    let files: Vec<std::path::PathBuf> = (0..80)
        .map(|i| {
            let p = dir.path().join(format!("event-{i}"));
            std::fs::write(&p, &event).unwrap();
            // Not root's: root's own files are shown only where no one else could put them.
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
            p
        })
        .collect();
    let mut cmd = Command::new(binary("modsec-shipper"));
    cmd.arg("show").args(&files);
    modsec2sguil_e2e::process::limit(&mut cmd, libc::RLIMIT_NOFILE, 40);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("Too many open files") && err.contains("xargs -n 1000"),
        "{err}"
    );
}
