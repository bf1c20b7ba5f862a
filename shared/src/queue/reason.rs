//! The `.reason` file beside each entry of `failed/`: why it was quarantined. One field
//! a line (`version: 1`, `time:`, `entry:`, `reason:`, and `collector:` when the
//! collector marked the entry), each escaped, so a reason quoting the event cannot add a
//! line of its own. 0.1.0's files have no `version:` line ([`super::version`]).

use std::io::{self, Write};
use std::path::Path;

/// Writes the reason file `name` in `failed` (the quarantine's directory, entered through
/// a handle) and fsyncs it. `failed/` is the queue owner's to write, so the file is
/// opened [`crate::safefs::Open::truncate`] in that handle: a link or FIFO planted at `name` is
/// refused, never written through. The reason is cut at [`MAX_REASON_TEXT_BYTES`].
pub fn write(
    failed: &crate::safefs::Dir,
    name: &str,
    entry: &str,
    reason: &str,
    collector_note: Option<&str>,
) -> io::Result<()> {
    let stamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
    let mut f =
        crate::safefs::Open::truncate(crate::safefs::Keeper::DirOwner).in_dir(failed, name)?;
    let (entry, reason) = (
        crate::escape::escape_text(entry),
        crate::escape::escape_text(reason),
    );
    writeln!(
        f,
        "version: {}\ntime: {stamp}\nentry: {entry}\nreason: {}",
        super::version::CURRENT,
        cut(&reason, MAX_REASON_TEXT_BYTES)
    )?;
    if let Some(note) = collector_note {
        writeln!(f, "collector: {}", cut(note, MAX_REASON_TEXT_BYTES))?;
    }
    f.sync_all()
}

/// The most of a reason file read: its five short lines, each at most
/// [`MAX_REASON_LINE_BYTES`], fit many times over; `status` and `requeue` read every one
/// in `failed/`, which its owner may fill with anything.
pub const MAX_REASON_BYTES: u64 = 64 * 1024;
/// The longest line of a reason file read: the reason and the collector's note are cut
/// at [`MAX_REASON_TEXT_BYTES`] when written, so only a file we did not write has longer.
pub const MAX_REASON_LINE_BYTES: usize = 8 * 1024;
/// Where the reason and the collector's note are cut when written (after escaping): a
/// parse error or sguild's refusal quoting much of an event says what it has to in this.
pub const MAX_REASON_TEXT_BYTES: usize = 4 * 1024;

/// `text` cut to at most `max` bytes (at a character boundary), marked when cut.
fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [cut at {max} bytes]", &text[..end]).into()
}

/// The fields of a reason file, read within its bounds: (key, value) by line; a line over
/// [`MAX_REASON_LINE_BYTES`] is left out with a warning. `Err` when the file is over
/// [`MAX_REASON_BYTES`] (said, with the bound); `None` when there is none to read.
fn fields(path: &Path) -> Option<Result<Vec<(String, String)>, String>> {
    // `status` and `requeue` may run as root in the queue owner's `failed/`: a link or
    // FIFO there is not opened.
    let file = crate::safefs::Open::read(crate::safefs::Keeper::Anyone)
        .at(path)
        .ok()?;
    let mut bytes = Vec::new();
    let mut bounded = super::bounded::at_most(file, MAX_REASON_BYTES, path, "MAX_REASON_BYTES");
    match io::Read::read_to_end(&mut bounded, &mut bytes) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            log::warn!("{e}");
            return Some(Err(format!(
                "reason file not read (over {MAX_REASON_BYTES} bytes, MAX_REASON_BYTES)"
            )));
        }
        Err(_) => return None,
    }
    let mut out = Vec::new();
    let read = super::bounded::for_each_line(&bytes[..], MAX_REASON_LINE_BYTES, |n, line| {
        match line.bytes {
            Some(b) => {
                let text = String::from_utf8_lossy(b);
                if let Some((k, v)) = text.split_once(": ") {
                    out.push((k.to_string(), v.to_string()));
                }
            }
            None => log::warn!(
                "{}:{n}: a line of {} bytes, over the bound of {MAX_REASON_LINE_BYTES} \
                 (MAX_REASON_LINE_BYTES); not read",
                path.display(),
                line.len
            ),
        }
        Ok(())
    });
    read.ok()?;
    Some(Ok(out))
}

/// The `reason:` line of a quarantine's `.reason` file.
pub fn read(path: &Path) -> Option<String> {
    let fields = match fields(path)? {
        Ok(f) => f,
        Err(unread) => return Some(unread),
    };
    let field = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let version = field("version").map(|v| v.trim().parse::<u32>().unwrap_or(u32::MAX));
    if let Some(n) = version.filter(|&n| n > super::version::CURRENT) {
        return Some(format!("(a reason file {})", super::version::Unknown(n)));
    }
    // Escaped again: a reason file written by an older release, or by hand.
    field("reason").map(|r| crate::escape::escape_text(r).into_owned())
}

/// The `collector:` line of a `.reason` file: the collector's integrity marker the
/// entry had when it was quarantined (`requeue` puts it back with the entry).
pub fn collector_note(path: &Path) -> Option<String> {
    fields(path)?
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "collector")
        .map(|(_, v)| v)
}

/// A reason's kind: its text up to the first `:` (the details after it name files,
/// lines and bytes, which differ from entry to entry), at most 80 characters.
pub fn kind(reason: &str) -> String {
    let kind = reason.split(':').next().unwrap_or(reason).trim();
    kind.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_files_carry_their_version_and_older_and_newer_ones_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.reason");
        let failed = crate::safefs::Dir::open_or_create(dir.path()).unwrap();
        write(
            &failed,
            "e.reason",
            "modsec.log.1.000001",
            "bad\nline",
            Some("md5 differs"),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("version: 1\ntime: "), "{text}");
        assert_eq!(text.lines().count(), 5, "{text}");
        assert_eq!(read(&path).as_deref(), Some("bad\\nline"));
        std::fs::write(&path, "time: t\nentry: e\nreason: old one\n").unwrap();
        assert_eq!(read(&path).as_deref(), Some("old one"));
        std::fs::write(&path, "version: 4\nreason: new\n").unwrap();
        assert!(read(&path).unwrap().contains("format version 4"));
    }

    #[test]
    fn a_link_or_fifo_planted_where_the_reason_goes_is_refused_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me\n").unwrap();
        let link = dir.path().join("e.reason");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let failed = crate::safefs::Dir::open_or_create(dir.path()).unwrap();
        assert!(write(&failed, "e.reason", "e", "why", None).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
        let fifo = dir.path().join("f.reason");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Refused at once: opening a FIFO for writing would wait for a reader.
        assert!(write(&failed, "f.reason", "f", "why", None).is_err());
    }
}
