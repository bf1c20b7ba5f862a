//! Event files: one model ([`AuditEvent`]) for ModSecurity 2.x native and JSON,
//! 1.9.x-era messages, and libmodsecurity 3 native and JSON.
//!
//! [`parse_event`] is a pure function over the file's bytes. [`read_event_file`] reads
//! a file with bounded memory (oversized parts are cut while streaming, so a 50 MB body
//! costs no more than the cap) and checks it against the index line's size and md5.

mod json;
mod message;
mod model;
mod native;
mod reader;

pub use message::{parse_message, MessageDialect, MODSEC2_MESSAGE_LIMIT};
pub use model::*;
pub use reader::{read_event_file, read_event_file_unhashed, RawEvent};

use thiserror::Error;

/// Default cap on each body kept in the model: enough for any excerpt the Sguil detail
/// shows and for `show`, small enough that a 13 MB upload does not sit in memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default cap on the other parts (headers, H, K). CRS's part K runs to a few hundred KB.
pub const DEFAULT_MAX_PART_BYTES: usize = 4 * 1024 * 1024;
/// JSON files cannot be cut while streaming (one line, one object); larger ones are
/// refused. ModSecurity's default request body limit is 13 MB, so 64 MiB leaves room.
pub const DEFAULT_MAX_JSON_BYTES: u64 = 64 * 1024 * 1024;

/// Memory bounds for parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLimits {
    /// Bytes of each request/response body kept.
    pub max_body_bytes: usize,
    /// Bytes of any other part kept by [`read_event_file`].
    pub max_part_bytes: usize,
    /// Largest JSON event file read.
    pub max_json_bytes: u64,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_part_bytes: DEFAULT_MAX_PART_BYTES,
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
        }
    }
}

/// A part that a reader shortened: its letter and its length in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartCut {
    pub letter: char,
    pub original_len: u64,
}

/// Why an event file could not be parsed.
#[derive(Debug, Error)]
pub enum AuditLogError {
    /// Not an audit-log event file at all (empty, binary, another kind of file).
    #[error("not a ModSecurity audit-log event: {why}")]
    NotAnEvent { why: String },
    /// Part A, which every event needs (id, time, addresses), is missing or malformed.
    #[error("bad part A: {why}")]
    BadPartA { why: String },
    /// A JSON event that cannot be parsed or lacks a required field.
    #[error("bad JSON event: {why}")]
    Json { why: String },
    /// Larger than the configured limit for its format.
    #[error("event file is {size} bytes, over the {limit}-byte limit for JSON events")]
    TooLarge { size: u64, limit: u64 },
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// How a transaction ended, from the trailer (`Action:` line / JSON `action`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Outcome {
    pub intercepted: bool,
    pub phase: Option<u8>,
    /// 1.9.x wrote the status instead of the phase: `Action: Intercepted (403)`.
    pub status: Option<u16>,
}

/// The unique id of an event from the start of its file, without parsing the rest:
/// the token after the timestamp in part A (native), or the first `transaction_id`
/// (ModSecurity 2 JSON) or `unique_id` (libmodsecurity 3 JSON) of the `transaction`
/// object, which both write before anything a client sent. `None` when the start does
/// not look like that; [`parse_event`] then decides.
pub fn unique_id_quick(start: &[u8]) -> Option<String> {
    let first = start.iter().position(|b| !b.is_ascii_whitespace())?;
    let text = &start[first..];
    let id: &[u8] = if text.starts_with(b"{\"transaction\":{") {
        // The transaction's own fields, up to its first nested object (v3's request)
        // or its end: server-written values only.
        let fields = &text[16..];
        let object = &fields[..fields.iter().position(|&b| b == b'{' || b == b'}')?];
        let value_after = |key: &[u8]| {
            let at = object.windows(key.len()).position(|w| w == key)? + key.len();
            let rest = &object[at..];
            Some(&rest[..rest.iter().position(|&b| b == b'"')?])
        };
        value_after(b"\"transaction_id\":\"").or_else(|| value_after(b"\"unique_id\":\""))?
    } else {
        let mut lines = text.split(|&b| b == b'\n');
        let boundary = lines.next()?;
        if !(boundary.starts_with(b"--") && boundary.ends_with(b"-A--")) {
            return None;
        }
        let a = lines.next()?;
        let after = &a[a.iter().position(|&b| b == b']')? + 1..];
        let after = after.strip_prefix(b" ")?;
        &after[..after.iter().position(|&b| b == b' ')?]
    };
    let ok = !id.is_empty()
        && id
            .iter()
            .all(|b| b.is_ascii_graphic() && *b != b'\\' && *b != b'"');
    ok.then(|| String::from_utf8_lossy(id).into_owned())
}

/// Parses an event file's bytes, whatever the format.
pub fn parse_event(input: &[u8], limits: &ParseLimits) -> Result<AuditEvent, AuditLogError> {
    parse_with_cuts(input, limits, &[])
}

pub(crate) fn parse_with_cuts(
    input: &[u8],
    limits: &ParseLimits,
    cuts: &[PartCut],
) -> Result<AuditEvent, AuditLogError> {
    let first = input.iter().position(|b| !b.is_ascii_whitespace());
    match first.map(|i| input[i]) {
        None => Err(AuditLogError::NotAnEvent {
            why: "the file is empty".into(),
        }),
        Some(b'{') => {
            if input.len() as u64 > limits.max_json_bytes {
                return Err(AuditLogError::TooLarge {
                    size: input.len() as u64,
                    limit: limits.max_json_bytes,
                });
            }
            let (tree, lossy) = json::parse_tree(input)?;
            let tx = tree.get("transaction");
            let mut ev = if tx.and_then(|t| t.get("transaction_id")).is_some() {
                json::parse_json2(&tree, limits)?
            } else if tx.and_then(|t| t.get("unique_id")).is_some() {
                json::parse_json3(&tree, limits)?
            } else {
                return Err(AuditLogError::NotAnEvent {
                    why:
                        "JSON without transaction.transaction_id (2.x) or transaction.unique_id (3)"
                            .into(),
                });
            };
            ev.anomalies.invalid_utf8 = lossy;
            Ok(ev)
        }
        Some(_) => native::parse_native(input, limits, cuts),
    }
}

/// Completes what every parser shares: Apache-Error copies, truncation counts, and
/// the interception.
pub(crate) fn finish_event(ev: &mut AuditEvent, outcome: Outcome, apache_copies: Vec<RuleMatch>) {
    // On Apache 2.4 every alert is also an Apache-Error line, escaped once or twice
    // more (ModSecurity's error-log text, then Apache's). Use a copy only when its
    // message is missing (e.g. the Message line was lost); never count an alert twice.
    for copy in apache_copies {
        let once = unescape_lossy(&copy.justification);
        let twice = unescape_lossy(&once);
        let forms = [copy.justification.trim(), once.trim(), twice.trim()];
        let same = |m: &RuleMatch| {
            m.id == copy.id
                && std::mem::discriminant(&m.action) == std::mem::discriminant(&copy.action)
                && forms.contains(&m.justification.trim())
        };
        if !ev.matches.iter().any(same) {
            ev.matches.push(copy);
        }
    }
    ev.anomalies.truncated_messages = ev.matches.iter().filter(|m| m.truncated).count();

    let disruptive = ev
        .matches
        .iter()
        .find(|m| m.action.is_disruptive())
        .map(|m| m.action.clone());
    if !outcome.intercepted && disruptive.is_none() {
        return;
    }
    let (status, phase, target) = match &disruptive {
        Some(MessageAction::Denied { status, phase }) => (*status, *phase, None),
        Some(MessageAction::Redirect { url, status, phase }) => {
            (*status, *phase, Some(url.clone()))
        }
        Some(MessageAction::Proxy { url, phase }) => (None, *phase, Some(url.clone())),
        Some(MessageAction::Drop { phase }) => (None, *phase, None),
        _ => (None, None, None),
    };
    ev.interception = Some(Interception {
        status: status.or(outcome.status).or(ev.response.status),
        phase: outcome.phase.or(phase),
        target,
        action: disruptive,
    });
}

fn unescape_lossy(text: &str) -> String {
    match crate::escape::unescape(text.as_bytes(), crate::escape::CutEscape::KeepLiteral) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => text.to_string(),
    }
}

#[cfg(test)]
mod tests;
