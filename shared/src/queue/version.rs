//! The version each file format of EVENT_DIR is written with, so that a later release
//! can read what this one wrote, and this one can tell what it cannot read.
//!
//! - Line formats (the journal, the delivered log, the backlog, the follow position)
//!   start each record with `v<N>` and a tab.
//! - The last-run record (JSON) has `"version": N`; a reason file a `version: N` line.
//!
//! Records written before versions existed (release 0.1.0) have no tag; their fields are
//! version 1's, and they are read as such. A record of a version this release does not
//! know is never guessed at: each reader refuses it and says which version it found.

/// A record's version, as found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// No tag: written before versions (0.1.0); the fields are version 1's.
    Unversioned,
    V1,
    /// Version 2: the journal's held-back records and the delivered log's suppressed
    /// ones (thresholds); version 1 records are still written for everything else.
    V2,
}

/// What this release writes.
pub const CURRENT: u32 = 1;
/// The newest line-record version read (and written, for the records that need it).
pub const LINES_UP_TO: u32 = 2;
/// The tag a line record starts with.
pub const LINE_TAG: &str = "v1\t";
/// The tag of a version 2 line record.
pub const LINE_TAG_V2: &str = "v2\t";

/// A record of a version this release does not know (a newer one wrote it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unknown(pub u32);

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "written in format version {} by a newer release (this one reads up to {CURRENT}, line records up to {LINES_UP_TO})",
            self.0
        )
    }
}

/// The tag of a line record: `v`, its version's digits and a tab.
fn line_tag(input: &[u8]) -> nom::IResult<&[u8], &[u8]> {
    use nom::bytes::complete::tag;
    use nom::character::complete::digit1;
    use nom::sequence::{preceded, terminated};
    preceded(tag("v"), terminated(digit1, tag("\t")))(input)
}

/// The version of a line record of a format whose newest version is 1 (the backlog, the
/// record of queued ids, the follow position, the thresholds' state), and the record
/// without its tag. A `v2` record of such a format is [`Unknown`], not read as version 1.
pub fn split_line(record: &[u8]) -> Result<(Version, &[u8]), Unknown> {
    split_line_up_to(record, CURRENT)
}

/// [`split_line`] for a format whose records go up to version `newest` (the journal and
/// the delivered log: [`LINES_UP_TO`]).
pub fn split_line_up_to(record: &[u8], newest: u32) -> Result<(Version, &[u8]), Unknown> {
    let Ok((rest, digits)) = line_tag(record) else {
        return Ok((Version::Unversioned, record));
    };
    let n: u32 = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(u32::MAX);
    match n {
        1 => Ok((Version::V1, rest)),
        2 if newest >= 2 => Ok((Version::V2, rest)),
        n => Err(Unknown(n)),
    }
}

/// [`split_line`] for text.
pub fn split_text(record: &str) -> Result<(Version, &str), Unknown> {
    split_text_up_to(record, CURRENT)
}

/// [`split_line_up_to`] for text.
pub fn split_text_up_to(record: &str, newest: u32) -> Result<(Version, &str), Unknown> {
    let (v, rest) = split_line_up_to(record.as_bytes(), newest)?;
    // The tag is ASCII: the rest starts at a character boundary.
    Ok((v, &record[record.len() - rest.len()..]))
}

/// Writes a JSON record of ours with `"version": CURRENT`, atomically (lazily: the JSON
/// records are only reported, and a crash may leave the one before).
pub fn write_json(path: &std::path::Path, record: &impl serde::Serialize) -> std::io::Result<()> {
    let mut value = serde_json::to_value(record).map_err(std::io::Error::other)?;
    value["version"] = CURRENT.into();
    let mut text = value.to_string();
    text.push('\n');
    crate::safefs::replace(
        path,
        text.as_bytes(),
        crate::safefs::Keeper::DirOwner,
        crate::safefs::Durability::Lazy,
    )
}

/// Reads the JSON record at `path`, at most `max` bytes (`bound` names that limit in the
/// error): `None` when there is none. One that does not parse, or of a version this
/// release does not know, is an error (InvalidData); one without a version is read as
/// version 1 when `untagged_ok` (0.1.0 wrote it so), else refused. Opened checked:
/// `status` may run as root, and a link or FIFO planted there is refused.
pub fn read_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    max: u64,
    bound: &str,
    untagged_ok: bool,
) -> std::io::Result<Option<T>> {
    use std::io;
    let read = crate::safefs::Open::read(crate::safefs::Keeper::Anyone)
        .at(path)
        .and_then(|f| {
            let mut bytes = Vec::new();
            let mut f = super::bounded::at_most(f, max, path, bound);
            io::Read::read_to_end(&mut f, &mut bytes).map(|_| bytes)
        });
    let bytes = match read {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    match value.get("version").map(|v| v.as_u64()) {
        Some(Some(1)) => {}
        None if untagged_ok => {}
        None => return Err(bad("no \"version\": not a record of ours".into())),
        Some(v) => {
            let n = v.and_then(|n| u32::try_from(n).ok()).unwrap_or(u32::MAX);
            return Err(bad(Unknown(n).to_string()));
        }
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_read_and_untagged_records_are_version_one_fields() {
        assert_eq!(split_line(b"v1\t1\t2"), Ok((Version::V1, &b"1\t2"[..])));
        assert_eq!(
            split_line(b"12\t3"),
            Ok((Version::Unversioned, &b"12\t3"[..]))
        );
        assert_eq!(split_text("v1\tx"), Ok((Version::V1, "x")));
        // Version 2 exists only for the journal and the delivered log.
        assert_eq!(split_line(b"v2\t1"), Err(Unknown(2)));
        assert_eq!(
            split_line_up_to(b"v2\t1", LINES_UP_TO),
            Ok((Version::V2, &b"1"[..]))
        );
        assert_eq!(split_line_up_to(b"v3\t1", LINES_UP_TO), Err(Unknown(3)));
        assert_eq!(split_line(b"v3\t1"), Err(Unknown(3)));
        assert_eq!(split_line(b"v99999999999\t1"), Err(Unknown(u32::MAX)));
        // Not a tag: no digits, or no tab after them.
        assert_eq!(
            split_line(b"v\tx"),
            Ok((Version::Unversioned, &b"v\tx"[..]))
        );
        assert_eq!(split_line(b"v1x"), Ok((Version::Unversioned, &b"v1x"[..])));
        assert!(LINE_TAG.starts_with(&format!("v{CURRENT}")));
        assert!(LINE_TAG_V2.starts_with(&format!("v{LINES_UP_TO}")));
        assert!(Unknown(3).to_string().contains("version 3"));
    }
}
