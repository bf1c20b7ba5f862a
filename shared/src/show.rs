//! `modsec-shipper show`: the parsed view of event files, as text, JSON lines, or the
//! Sguil detail each would ship with. Run as root, it opens the files as root and reads
//! and parses them as `nobody`.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::alert::{map_event, AlertSettings, DetailFormat};
use crate::auditlog::{read_event_file, AuditEvent, Body, ParseLimits};
use crate::config::{walk_roots_alone, ConfigFile};
use crate::escape::{escape, escape_lines, json_ascii};
use crate::exit::Exit;
use crate::queue::{DEFAULT_MAX_EVENT_BYTES, MAX_EVENT_BYTES_RANGE};

/// What `show` prints of each file.
#[derive(Debug, Clone)]
pub enum View {
    /// The parsed event, for people.
    Text,
    /// The parsed event, one JSON object a line.
    Json,
    /// The Sguil detail the shipper would send: in this format (else the config's
    /// DETAIL_FORMAT), with the alert settings of this config (else the defaults).
    Detail {
        format: Option<DetailFormat>,
        config: Option<PathBuf>,
    },
}

/// What `show` is asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub files: Vec<PathBuf>,
    pub view: View,
    /// The most bytes of each body kept.
    pub max_body: usize,
}

/// Writes the view of each file to `out`, and tells `errors` what could not be shown
/// (a file, the config, root not dropped; unescaped). Exit 1 if a file could not be
/// parsed or `out` closed, 3 for the config or root not dropped.
pub fn run(r: &Request, out: &mut dyn Write, errors: &mut dyn FnMut(&str)) -> Exit {
    match &r.view {
        View::Text | View::Json => {
            let json = matches!(r.view, View::Json);
            each_file(
                &r.files,
                r.max_body,
                DEFAULT_MAX_EVENT_BYTES,
                out,
                errors,
                |path, event, _| {
                    if json {
                        as_json(path, event)
                    } else {
                        as_text(path, event)
                    }
                    .into_bytes()
                },
            )
        }
        View::Detail { format, config } => {
            let loaded = match config {
                Some(path) => ConfigFile::load_trusted(path).and_then(|c| {
                    let max_event_bytes = c
                        .number("MAX_EVENT_BYTES", MAX_EVENT_BYTES_RANGE)?
                        .unwrap_or(DEFAULT_MAX_EVENT_BYTES);
                    Ok((AlertSettings::resolve(&c)?, max_event_bytes))
                }),
                None => Ok((AlertSettings::default(), DEFAULT_MAX_EVENT_BYTES)),
            };
            let (mut settings, max_event_bytes) = match loaded {
                Ok(s) => s,
                Err(e) => {
                    errors(&e.to_string());
                    return Exit::Config;
                }
            };
            if let Some(f) = format {
                settings.detail_format = *f;
            }
            each_file(
                &r.files,
                r.max_body,
                max_event_bytes,
                out,
                errors,
                |_, event, raw| {
                    let mapped = map_event(event, raw, &[], &settings);
                    // The text format carries the raw event: nothing in it may drive the terminal.
                    let mut text = escape_lines(&mapped.fields.detail);
                    text.push(b'\n');
                    text
                },
            )
        }
    }
}

/// Parses each file and writes what `render` makes of it to stdout; a file that cannot
/// be parsed is told to `errors`. Exits 1 if any could not, or stdout closed; 3 if root
/// cannot be dropped.
///
/// Run as root, every file is opened first (root may read what the operator names: the
/// storage dir, the queue), then root is dropped for `nobody` before a byte is read or
/// parsed: the files are attacker-written (a queue entry, an event a client shaped).
/// So, as root, a name that is a symbolic link is not followed, and a file root owns is
/// refused (events are the web server's or the queue owner's, never root's): the queue's
/// owner cannot have root show it /etc/shadow. No more than `max_event_bytes`
/// (MAX_EVENT_BYTES) of a file is read.
fn each_file(
    files: &[PathBuf],
    max_body: usize,
    max_event_bytes: u64,
    out: &mut dyn Write,
    errors: &mut dyn FnMut(&str),
    render: impl Fn(&Path, &AuditEvent, &[u8]) -> Vec<u8>,
) -> Exit {
    let limits = ParseLimits {
        max_body_bytes: max_body,
        ..ParseLimits::default()
    };
    let mut opened = match open_as_root_then_drop(files, max_event_bytes) {
        Ok(o) => o,
        Err(e) => {
            errors(&e);
            return Exit::Config;
        }
    };
    let mut failed = 0usize;
    for (i, path) in files.iter().enumerate() {
        let file = match opened.as_mut() {
            Some(files) => std::mem::replace(&mut files[i], Err(String::new())),
            None => open(path, false, max_event_bytes),
        };
        match file.and_then(|f| load(path, f, &limits, max_event_bytes)) {
            Ok((event, raw)) => {
                if out.write_all(&render(path, &event, &raw)).is_err() {
                    // stdout closed (e.g. piped into head): nothing more to say.
                    return Exit::Failed;
                }
            }
            Err(e) => {
                failed += 1;
                errors(&e);
            }
        }
    }
    if failed > 0 {
        errors(&format!(
            "{failed} of {} file(s) could not be parsed",
            files.len()
        ));
        Exit::Failed
    } else {
        Exit::Ok
    }
}

/// As root: every file opened (each `Ok`, or why not), then root dropped for `nobody`
/// (`modsec2sguil::privilege`). Not root: `None`, each file is opened when its turn
/// comes. Err when root cannot be dropped.
fn open_as_root_then_drop(
    files: &[PathBuf],
    max_event_bytes: u64,
) -> Result<Option<Vec<Result<File, String>>>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    // One descriptor a file: as many as the hard limit allows.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    let opened = files
        .iter()
        .map(|p| open(p, true, max_event_bytes))
        .collect();
    let (uid, gid) = crate::privilege::nobody();
    crate::privilege::drop_to(uid, gid).map_err(|e| {
        format!(
            "cannot drop root for nobody (uid {uid}) before parsing: {e}; run show as an \
             unprivileged user that can read the files"
        )
    })?;
    Ok(Some(opened))
}

/// Opens an event file to read: a regular file (a FIFO named by mistake is not waited
/// on) of at most `max_event_bytes`. `as_root`: the name itself must not be a symbolic
/// link (it is not followed), and the file must not be root's.
fn open(path: &Path, as_root: bool, max_event_bytes: u64) -> Result<File, String> {
    use crate::safefs::{Keeper, Open};
    use std::os::unix::fs::MetadataExt;
    let name = path.display();
    let door = Open::read(Keeper::Anyone);
    let door = if as_root {
        door.entry()
    } else {
        door.following_links()
    };
    let file = door.at(path).map_err(|e| match crate::safefs::errno(&e) {
        Some(libc::EMFILE) | Some(libc::ENFILE) => format!(
            "{e} (show as root opens every file before it drops root: give fewer files at a \
             time, e.g. through xargs -n 1000)"
        ),
        _ if as_root
            && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) =>
        {
            format!(
                "{name}: is a symbolic link; not followed (show run as root opens only the \
                 event files themselves: give the file the link points to)"
            )
        }
        _ => e.to_string(),
    })?;
    let meta = file.metadata().map_err(|e| format!("{name}: {e}"))?;
    if as_root && meta.uid() == 0 {
        roots_own(path, &meta).map_err(|why| {
            format!(
                "{name}: belongs to root: not an event; show reads only the web server's or \
                 the queue owner's files, and root's only where no one else could have put \
                 them ({why})"
            )
        })?;
    }
    if meta.len() > max_event_bytes {
        return Err(format!(
            "{name}: {} bytes, more than MAX_EVENT_BYTES ({max_event_bytes}): not read",
            meta.len()
        ));
    }
    Ok(file)
}

/// A file of root's (`meta`, opened as `path`) is shown only if no one but root could
/// have put it at that name: every link and directory on the way is root's alone
/// (`config::walk_roots_alone`, as for root's config). Otherwise it is a secret of
/// root's that the queue's owner linked or steered there.
fn roots_own(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let absolute = std::env::current_dir()
        .map_err(|e| e.to_string())?
        .join(path);
    let (_, named) = walk_roots_alone(&absolute).map_err(|e| e.to_string())?;
    if (named.dev(), named.ino()) != (meta.dev(), meta.ino()) {
        return Err("it was replaced while it was opened".into());
    }
    Ok(())
}

/// The parsed event and the file's bytes; no more than `max_event_bytes` + 1 bytes of
/// `file` are read, even if it grows while it is read.
fn load(
    path: &Path,
    file: File,
    limits: &ParseLimits,
    max_event_bytes: u64,
) -> Result<(AuditEvent, Vec<u8>), String> {
    let name = path.display();
    // The reader reads to the end of what it is given: give it a pipe a thread fills
    // with at most the bound (and one byte more, to tell a file that grew past it).
    let (rd, wr) = nix::unistd::pipe().map_err(|e| format!("{name}: pipe: {e}"))?;
    let copier = std::thread::spawn(move || {
        use std::io::Read;
        // The reader may stop early (a JSON event over its own bound): a broken pipe.
        let _ = std::io::copy(&mut file.take(max_event_bytes + 1), &mut File::from(wr));
    });
    let raw = read_event_file(path, File::from(rd), limits).map_err(|e| e.to_string());
    let _ = copier.join();
    let raw = raw?;
    if raw.size > max_event_bytes {
        return Err(format!(
            "{name}: grew past MAX_EVENT_BYTES ({max_event_bytes}) while it was read: not read"
        ));
    }
    let event = raw.parse(limits).map_err(|e| format!("{name}: {e}"))?;
    Ok((event, raw.bytes))
}

fn as_json(path: &Path, event: &AuditEvent) -> String {
    let mut value = serde_json::to_value(event).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("file".into(), path.display().to_string().into());
    }
    format!("{}\n", json_ascii(&value.to_string()))
}

/// Bytes as terminal-safe text: ModSecurity's own escaping, so nothing raw reaches the tty.
fn safe(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&escape(bytes, false)).into_owned()
}

fn as_text(path: &Path, ev: &AuditEvent) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "== {}", safe(path.as_os_str().as_encoded_bytes()));
    let _ = writeln!(s, "format:       {}", ev.format.name());
    if let Some(p) = &ev.producer {
        let _ = writeln!(s, "producer:     {}", safe(p.as_bytes()));
    }
    let _ = writeln!(s, "unique id:    {}", safe(ev.unique_id.as_bytes()));
    let _ = writeln!(
        s,
        "time:         {} (UTC {})",
        ev.time.format("%Y-%m-%d %H:%M:%S%.f %:z"),
        ev.time.with_timezone(&Utc).format("%Y-%m-%d %H:%M:%S")
    );
    let _ = writeln!(
        s,
        "client:       {} port {}",
        ev.client.addr, ev.client.port
    );
    let _ = writeln!(
        s,
        "server:       {} port {}",
        ev.server.addr, ev.server.port
    );
    let _ = writeln!(s, "request:      {}", safe(&ev.request.line));
    for name in ["Host", "User-Agent"] {
        if let Some(v) = ev.request.header(name) {
            let _ = writeln!(s, "  {:<11} {}", format!("{name}:"), safe(v));
        }
    }
    write_body(&mut s, "request body", ev.request.body.as_ref());
    match ev.response.status {
        Some(st) => {
            let _ = writeln!(s, "status:       {st} {}", safe(&ev.response.reason));
        }
        None => {
            let _ = writeln!(s, "status:       (no response line)");
        }
    }
    write_body(&mut s, "response body", ev.response.body.as_ref());
    match &ev.interception {
        Some(i) => {
            let mut what = String::from("intercepted:  yes");
            if let Some(p) = i.phase {
                let _ = write!(what, ", phase {p}");
            }
            if let Some(st) = i.status {
                let _ = write!(what, ", status {st}");
            }
            if let Some(t) = &i.target {
                let _ = write!(what, ", to {}", safe(t.as_bytes()));
            }
            let _ = writeln!(s, "{what}");
        }
        None => {
            let _ = writeln!(s, "intercepted:  no");
        }
    }
    if let Some(mode) = ev.engine_mode {
        let _ = writeln!(s, "engine mode:  {mode:?}");
    }
    write_rules(&mut s, ev);
    s.push('\n');
    s
}

/// The rule messages of `as_text`, part K's rule ids, Apache's errors, the anomalies.
fn write_rules(s: &mut String, ev: &AuditEvent) {
    let _ = writeln!(
        s,
        "rules:        {}",
        if ev.matches.is_empty() {
            "(no rule messages)"
        } else {
            ""
        }
    );
    for m in &ev.matches {
        let id = safe(m.id.as_deref().unwrap_or("-").as_bytes());
        let sev = m.severity.map(|s| s.name()).unwrap_or("-");
        let action = m.action.kind();
        let msg = m.msg.as_deref().unwrap_or(&m.justification);
        let _ = writeln!(s, "  [{id}] {sev} {action}: {}", safe(msg.as_bytes()));
        if let Some(d) = &m.data {
            let _ = writeln!(s, "      data: {}", safe(d.as_bytes()));
        }
        if m.truncated {
            let _ = writeln!(s, "      (message truncated by ModSecurity at 1,023 bytes)");
        }
    }
    if !ev.matched_rule_ids.is_empty() {
        let _ = writeln!(
            s,
            "matched (K):  {}",
            safe(ev.matched_rule_ids.join(" ").as_bytes())
        );
    }
    for e in &ev.apache_errors {
        let _ = writeln!(s, "apache error: {}", safe(e.as_bytes()));
    }
    if ev.anomalies.any() {
        let _ = writeln!(
            s,
            "anomalies:    {}",
            serde_json::to_string(&ev.anomalies).unwrap_or_default()
        );
    }
}

fn write_body(s: &mut String, label: &str, body: Option<&Body>) {
    if let Some(b) = body {
        let shown = &b.bytes[..b.bytes.len().min(200)];
        let more = if b.total_len > shown.len() as u64 {
            " …"
        } else {
            ""
        };
        let _ = writeln!(s, "{label}: {} bytes: {}{more}", b.total_len, safe(shown));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `run` is not called on files here: as root (as tests may run) it drops root for
    // nobody, for the whole test process. The steps it takes are.
    #[test]
    fn an_event_file_is_read_within_its_bound_and_shown_as_text_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("event");
        std::fs::write(&path, crate::testdata::event_text("SHOW-ME", 403)).unwrap();
        let limits = ParseLimits::default();
        let file = open(&path, false, DEFAULT_MAX_EVENT_BYTES).unwrap();
        let (event, raw) = load(&path, file, &limits, DEFAULT_MAX_EVENT_BYTES).unwrap();
        assert!(!raw.is_empty());
        let text = as_text(&path, &event);
        assert!(text.contains("format:       native2\n"), "{text}");
        assert!(text.contains("unique id:    SHOW-ME\n"), "{text}");
        assert!(
            text.contains("  [942100] CRITICAL denied: SQL Injection\n"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&as_json(&path, &event)).unwrap();
        assert_eq!(json["format"], "native2");
        assert_eq!(json["file"], path.display().to_string());
        let small = open(&path, false, 10).unwrap_err();
        assert!(small.contains("more than MAX_EVENT_BYTES (10)"), "{small}");
        let not_file = open(dir.path(), false, DEFAULT_MAX_EVENT_BYTES).unwrap_err();
        assert!(not_file.contains("not a regular file"), "{not_file}");
    }

    #[test]
    fn a_detail_config_that_does_not_load_is_exit_3_and_told() {
        let mut told = Vec::new();
        let code = run(
            &Request {
                files: vec!["/nonexistent/event".into()],
                view: View::Detail {
                    format: None,
                    config: Some("/nonexistent/modsec2sguil.conf".into()),
                },
                max_body: 100,
            },
            &mut Vec::new(),
            &mut |e| told.push(e.to_string()),
        );
        assert_eq!(code, Exit::Config);
        assert!(
            told[0].contains("/nonexistent/modsec2sguil.conf"),
            "{told:?}"
        );
    }
}
