//! The `.reason` file beside each entry of `failed/`: why it was quarantined. One field
//! a line (`time:`, `entry:`, `reason:`, and `collector:` when the collector marked the
//! entry), each escaped, so a reason quoting the event cannot add a line of its own.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// Writes a reason file at `path` and fsyncs it.
pub fn write(
    path: &Path,
    entry: &str,
    reason: &str,
    collector_note: Option<&str>,
) -> io::Result<()> {
    let stamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
    let mut f = File::create(path)?;
    let (entry, reason) = (
        crate::escape::escape_text(entry),
        crate::escape::escape_text(reason),
    );
    writeln!(f, "time: {stamp}\nentry: {entry}\nreason: {reason}")?;
    if let Some(note) = collector_note {
        writeln!(f, "collector: {note}")?;
    }
    f.sync_all()
}

/// The `reason:` line of a quarantine's `.reason` file.
pub fn read(path: &Path) -> Option<String> {
    let mut text = String::new();
    super::open_regular(path)
        .ok()?
        .take(64 * 1024)
        .read_to_string(&mut text)
        .ok()?;
    // Escaped again: a reason file written by an older release, or by hand.
    text.lines()
        .find_map(|l| l.strip_prefix("reason: "))
        .map(|r| crate::escape::escape_text(r).into_owned())
}

/// A reason's kind: its text up to the first `:` (the details after it name files,
/// lines and bytes, which differ from entry to entry), at most 80 characters.
pub fn kind(reason: &str) -> String {
    let kind = reason.split(':').next().unwrap_or(reason).trim();
    kind.chars().take(80).collect()
}
