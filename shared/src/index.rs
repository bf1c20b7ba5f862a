//! The concurrent-mode index line: what ModSecurity writes to `SecAuditLog` once per
//! logged transaction (ARCHITECTURE.md, "The formats we read").
//!
//! ModSecurity 2.x:
//! ```text
//! host ip logname user [time] "request" status bytes "referer" "ua" uniqueid "sessionid" file 0 size md5:HEX ␠|L
//! ```
//! libmodsecurity 3 (no escaping, absolute path, float size, no trailing flag):
//! ```text
//! host ip user [time] "request" status bytes referer "ua" uniqueid referer file 0 size.000000 md5:HEX
//! ```
//!
//! The line is parsed **from the right**, as ModSecurity's own layout demands: the four
//! trailing fields never contain spaces, while host and user are escaped without quoting
//! (`log_escape_nq`) and may contain spaces and bare `"`, and an over-long line is cut
//! inside the request field, possibly in the middle of an escape. Splitting on spaces or
//! scanning quotes from the left (what mlogc and modsec_queue.pl do) misreads such lines.

use std::net::IpAddr;

use chrono::{DateTime, FixedOffset};
use thiserror::Error;

use crate::escape::{find_opening_quote, unescape, CutEscape};
use crate::time::parse_modsec_time;

/// Which engine wrote the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum IndexFlavor {
    /// ModSecurity 2.x (and the 1.9/2.0 collector layout, which is the same grammar).
    ModSecurity2,
    /// libmodsecurity 3 (`Transaction::toOldAuditLogFormatIndex`).
    LibModSecurity3,
}

/// One parsed index line. Escaped fields are decoded to the bytes ModSecurity logged;
/// `-` placeholders become `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexLine {
    pub flavor: IndexFlavor,
    /// Server name (Host header or ServerName). May contain spaces.
    pub hostname: Vec<u8>,
    /// TCP peer address (not mod_remoteip's).
    pub remote_addr: IpAddr,
    /// identd name (2.x only; always `-` in practice).
    pub remote_logname: Option<Vec<u8>>,
    /// HTTP-auth user, even when authentication failed. May contain spaces and quotes.
    pub user: Option<Vec<u8>>,
    /// End of the transaction, with the offset as written (fixed from `--0500`).
    pub time: DateTime<FixedOffset>,
    /// The raw request line (`r->the_request`); cut short when `shortened`.
    pub request_line: Vec<u8>,
    pub status: u16,
    /// Response body bytes; `None` for `-`.
    pub bytes_sent: Option<u64>,
    /// Always `None` from ModSecurity 2 (the code that would log it is commented out).
    pub referer: Option<Vec<u8>>,
    pub user_agent: Option<Vec<u8>>,
    /// mod_unique_id value (2.x) or libmodsecurity's own id (3).
    pub unique_id: String,
    /// Set by a `setsid` rule (2.x only).
    pub session_id: Option<Vec<u8>>,
    /// Event file: relative to SecAuditLogStorageDir with a leading `/` (2.x), absolute (3).
    pub filename: Vec<u8>,
    /// Always 0 for concurrent logs.
    pub offset: u64,
    /// Size of the event file in bytes.
    pub size: u64,
    /// MD5 of the whole event file.
    pub md5: [u8; 16],
    /// The `L` flag: ModSecurity shortened fields to keep the line under 4 KiB.
    pub shortened: bool,
}

/// The index-line field a problem was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexField {
    Line,
    Hostname,
    RemoteAddr,
    RemoteLogname,
    User,
    Time,
    RequestLine,
    Status,
    BytesSent,
    Referer,
    UserAgent,
    UniqueId,
    SessionId,
    Filename,
    Offset,
    Size,
    Md5,
}

impl std::fmt::Display for IndexField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IndexField::Line => "line",
            IndexField::Hostname => "hostname",
            IndexField::RemoteAddr => "remote address",
            IndexField::RemoteLogname => "remote logname",
            IndexField::User => "user",
            IndexField::Time => "time",
            IndexField::RequestLine => "request line",
            IndexField::Status => "status",
            IndexField::BytesSent => "bytes sent",
            IndexField::Referer => "referer",
            IndexField::UserAgent => "user agent",
            IndexField::UniqueId => "unique id",
            IndexField::SessionId => "session id",
            IndexField::Filename => "filename",
            IndexField::Offset => "offset",
            IndexField::Size => "size",
            IndexField::Md5 => "md5",
        })
    }
}

/// A malformed index line: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed index line: {field}: {problem}")]
pub struct IndexError {
    pub field: IndexField,
    pub problem: String,
}

fn bad(field: IndexField, problem: impl Into<String>) -> IndexError {
    IndexError {
        field,
        problem: problem.into(),
    }
}

fn show(bytes: &[u8]) -> String {
    const MAX: usize = 80;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned();
    if bytes.len() > MAX {
        format!("`{text}…`")
    } else {
        format!("`{text}`")
    }
}

/// Longest unique id accepted; mod_unique_id makes 24 or 27 characters, libmodsecurity
/// about 20. A longer "id" is not an id, and it ends up in file names.
pub const MAX_UNIQUE_ID_LEN: usize = 128;

/// Parses one index line, with or without its trailing `\n`.
pub fn parse_index_line(input: &[u8]) -> Result<IndexLine, IndexError> {
    let line = input.strip_suffix(b"\n").unwrap_or(input);
    if let Some(pos) = line.iter().position(|&b| b == b'\n' || b == 0) {
        return Err(bad(
            IndexField::Line,
            format!("contains a newline or NUL byte at {pos}"),
        ));
    }
    // 2.x ends every line with " " or " L"; libmodsecurity 3 ends with the md5 and
    // prints the size as a float. A 2.x line that lost its trailing space (an index file
    // that went through a whitespace-trimming tool) still reads as 2.x.
    if let Some(body) = line.strip_suffix(b" L") {
        return parse_fields(body, IndexFlavor::ModSecurity2, true);
    }
    if let Some(body) = line.strip_suffix(b" ") {
        return parse_fields(body, IndexFlavor::ModSecurity2, false);
    }
    let float_size = line
        .rsplit(|&b| b == b' ')
        .nth(1)
        .is_some_and(|size| size.contains(&b'.'));
    if float_size {
        return parse_fields(line, IndexFlavor::LibModSecurity3, false);
    }
    parse_fields(line, IndexFlavor::ModSecurity2, false).or_else(|v2_error| {
        parse_fields(line, IndexFlavor::LibModSecurity3, false).map_err(|_| v2_error)
    })
}

fn parse_fields(
    body: &[u8],
    flavor: IndexFlavor,
    shortened: bool,
) -> Result<IndexLine, IndexError> {
    let mut tail = body.rsplitn(5, |&b| b == b' ');
    let md5 = tail.next().unwrap_or_default();
    let size = tail
        .next()
        .ok_or_else(|| bad(IndexField::Size, "missing"))?;
    let offset = tail
        .next()
        .ok_or_else(|| bad(IndexField::Offset, "missing"))?;
    let filename = tail
        .next()
        .ok_or_else(|| bad(IndexField::Filename, "missing"))?;
    let prefix = tail
        .next()
        .ok_or_else(|| bad(IndexField::Line, "too few fields"))?;

    let md5 = parse_md5(md5)?;
    let size = parse_size(size, flavor)?;
    let offset = parse_u64(offset).ok_or_else(|| {
        bad(
            IndexField::Offset,
            format!("not a number: {}", show(offset)),
        )
    })?;
    if filename.is_empty() {
        return Err(bad(IndexField::Filename, "empty"));
    }
    let head = match flavor {
        IndexFlavor::ModSecurity2 => parse_v2_prefix(prefix, shortened)?,
        IndexFlavor::LibModSecurity3 => parse_v3_prefix(prefix)?,
    };
    Ok(IndexLine {
        flavor,
        hostname: head.hostname,
        remote_addr: head.remote_addr,
        remote_logname: head.remote_logname,
        user: head.user,
        time: head.time,
        request_line: head.request_line,
        status: head.status,
        bytes_sent: head.bytes_sent,
        referer: head.referer,
        user_agent: head.user_agent,
        unique_id: head.unique_id,
        session_id: head.session_id,
        filename: filename.to_vec(),
        offset,
        size,
        md5,
        shortened,
    })
}

impl IndexLine {
    /// The `/<user>/` directory ModSecurity 2.9.3+ puts first in the file name (the
    /// writing process's user), or `None` for older layouts and libmodsecurity 3.
    pub fn user_dir(&self) -> Option<&[u8]> {
        if self.flavor != IndexFlavor::ModSecurity2 {
            return None;
        }
        let mut parts = self
            .filename
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty());
        let first = parts.next()?;
        let is_day = first.len() == 8 && first.iter().all(u8::is_ascii_digit);
        (!is_day).then_some(first)
    }

    /// The md5 as 32 lowercase hex digits.
    pub fn md5_hex(&self) -> String {
        crate::hex::lower(&self.md5)
    }
}

/// Everything left of the file name.
struct Head {
    hostname: Vec<u8>,
    remote_addr: IpAddr,
    remote_logname: Option<Vec<u8>>,
    user: Option<Vec<u8>>,
    time: DateTime<FixedOffset>,
    request_line: Vec<u8>,
    status: u16,
    bytes_sent: Option<u64>,
    referer: Option<Vec<u8>>,
    user_agent: Option<Vec<u8>>,
    unique_id: String,
    session_id: Option<Vec<u8>>,
}

fn parse_md5(field: &[u8]) -> Result<[u8; 16], IndexError> {
    let hex = field.strip_prefix(b"md5:").ok_or_else(|| {
        bad(
            IndexField::Md5,
            format!("expected md5:<32 hex digits>, found {}", show(field)),
        )
    })?;
    if hex.len() != 32 {
        return Err(bad(
            IndexField::Md5,
            format!("expected 32 hex digits, found {}", hex.len()),
        ));
    }
    crate::hex::decode(hex)
        .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
        .ok_or_else(|| bad(IndexField::Md5, format!("not hex: {}", show(hex))))
}

fn parse_u64(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 19 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn parse_size(field: &[u8], flavor: IndexFlavor) -> Result<u64, IndexError> {
    let (int, frac) = match field.iter().position(|&b| b == b'.') {
        // libmodsecurity 3 prints the size with %f: "1470.000000".
        Some(dot) if flavor == IndexFlavor::LibModSecurity3 => {
            (&field[..dot], Some(&field[dot + 1..]))
        }
        _ => (field, None),
    };
    let value = parse_u64(int).ok_or_else(|| {
        bad(
            IndexField::Size,
            format!("not a byte count: {}", show(field)),
        )
    })?;
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.iter().all(|&b| b == b'0') {
            return Err(bad(
                IndexField::Size,
                format!("not a whole byte count: {}", show(field)),
            ));
        }
    }
    Ok(value)
}

fn dash_to_none(value: Vec<u8>) -> Option<Vec<u8>> {
    (value != b"-").then_some(value)
}

/// Takes a `"quoted"` field that ends at `end` (exclusive; `line[end-1]` is the closing
/// quote) and is preceded by a space. Returns the raw content and the index of that space.
fn take_quoted_right(
    line: &[u8],
    end: usize,
    field: IndexField,
) -> Result<(&[u8], usize), IndexError> {
    if end == 0 || line[end - 1] != b'"' {
        return Err(bad(field, "expected a quoted field"));
    }
    let open = find_opening_quote(line, end - 1).ok_or_else(|| bad(field, "no opening quote"))?;
    if open == 0 || line[open - 1] != b' ' {
        return Err(bad(field, "quoted field not preceded by a space"));
    }
    Ok((&line[open + 1..end - 1], open - 1))
}

/// Takes a space-free token that ends at `end` and is preceded by a space.
fn take_token_right(
    line: &[u8],
    end: usize,
    field: IndexField,
) -> Result<(&[u8], usize), IndexError> {
    let start = line[..end]
        .iter()
        .rposition(|&b| b == b' ')
        .ok_or_else(|| bad(field, "missing"))?;
    let token = &line[start + 1..end];
    if token.is_empty() {
        return Err(bad(field, "empty (two spaces in a row)"));
    }
    Ok((token, start))
}

fn decode(field: IndexField, raw: &[u8], cut: CutEscape) -> Result<Vec<u8>, IndexError> {
    unescape(raw, cut).map_err(|e| bad(field, e.to_string()))
}

fn parse_status(raw: &[u8]) -> Result<u16, IndexError> {
    match parse_u64(raw) {
        Some(v) if v <= 999 => Ok(v as u16),
        _ => Err(bad(
            IndexField::Status,
            format!("not an HTTP status: {}", show(raw)),
        )),
    }
}

fn parse_bytes_sent(raw: &[u8]) -> Result<Option<u64>, IndexError> {
    if raw == b"-" {
        return Ok(None);
    }
    parse_u64(raw).map(Some).ok_or_else(|| {
        bad(
            IndexField::BytesSent,
            format!("not a number: {}", show(raw)),
        )
    })
}

fn parse_unique_id(raw: &[u8]) -> Result<String, IndexError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_UNIQUE_ID_LEN
        && raw
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'_' | b'-' | b'.'));
    if !ok {
        return Err(bad(
            IndexField::UniqueId,
            format!(
                "expected 1..={MAX_UNIQUE_ID_LEN} of [A-Za-z0-9@_.-], found {}",
                show(raw)
            ),
        ));
    }
    Ok(String::from_utf8_lossy(raw).into_owned())
}

/// Finds `[time] "` that starts the request field: the **last** ` [<valid time>] "`
/// before `limit`. Log-escaped request text never holds an unescaped `"`, so it cannot
/// fake one; only the unescaped user field could, and it stands to the left.
/// Returns (position of `[`, time, index just after the opening quote).
fn find_time_right(line: &[u8], limit: usize) -> Option<(usize, DateTime<FixedOffset>, usize)> {
    let mut end = limit;
    loop {
        let close = line[..end].windows(3).rposition(|w| w == b"] \"")?;
        if let Some(found) = time_ending_at(line, close) {
            return Some(found);
        }
        // The next window to look at ends before this candidate's `]`.
        end = close + 2;
    }
}

/// The first ` [<valid time>] "`, for the unescaped libmodsecurity 3 line.
fn find_time_left(line: &[u8]) -> Option<(usize, DateTime<FixedOffset>, usize)> {
    let mut from = 0;
    while let Some(rel) = line[from..].windows(3).position(|w| w == b"] \"") {
        let close = from + rel;
        if let Some(found) = time_ending_at(line, close) {
            return Some(found);
        }
        from = close + 1;
    }
    None
}

fn time_ending_at(line: &[u8], close: usize) -> Option<(usize, DateTime<FixedOffset>, usize)> {
    // A timestamp is at most ~40 bytes; don't scan further back than that.
    let window_start = close.saturating_sub(48);
    let open = window_start + line[window_start..close].iter().rposition(|&b| b == b'[')?;
    if open == 0 || line[open - 1] != b' ' {
        return None;
    }
    let time = parse_modsec_time(&line[open + 1..close]).ok()?;
    Some((open, time, close + 3))
}

/// Hostname, address, and the tokens after the address.
type HostAddr<'a> = (Vec<u8>, IpAddr, Vec<&'a [u8]>);

/// Splits `host ip logname user` (2.x, `min_after_ip` = 2) or `host ip user` (3,
/// `min_after_ip` = 1) at the first token that is an IP address. Host and user may hold
/// spaces; the address never does.
fn split_host_addr(left: &[u8], min_after_ip: usize) -> Result<HostAddr<'_>, IndexError> {
    let tokens: Vec<&[u8]> = left.split(|&b| b == b' ').collect();
    for k in 1..tokens.len() {
        if tokens.len() < k + 1 + min_after_ip {
            break;
        }
        let Some(addr) = std::str::from_utf8(tokens[k])
            .ok()
            .and_then(|t| t.parse::<IpAddr>().ok())
        else {
            continue;
        };
        let hostname = tokens[..k].join(&b' ');
        return Ok((hostname, addr, tokens[k + 1..].to_vec()));
    }
    Err(bad(
        IndexField::RemoteAddr,
        format!("no IP address after the hostname in {}", show(left)),
    ))
}

fn parse_v2_prefix(p: &[u8], shortened: bool) -> Result<Head, IndexError> {
    // Referer, user agent and request line are the fields ModSecurity cuts in `L` lines.
    let cut = if shortened {
        CutEscape::KeepLiteral
    } else {
        CutEscape::Reject
    };
    let (session, end) = take_quoted_right(p, p.len(), IndexField::SessionId)?;
    let (unique_id, end) = take_token_right(p, end, IndexField::UniqueId)?;
    let (ua, end) = take_quoted_right(p, end, IndexField::UserAgent)?;
    let (referer, end) = take_quoted_right(p, end, IndexField::Referer)?;
    let (bytes_sent, end) = take_token_right(p, end, IndexField::BytesSent)?;
    let (status, end) = take_token_right(p, end, IndexField::Status)?;
    if end == 0 || p[end - 1] != b'"' {
        return Err(bad(
            IndexField::RequestLine,
            "expected a quoted request line before the status",
        ));
    }
    let close = end - 1;
    let (bracket, time, req_start) = find_time_right(p, end).ok_or_else(|| {
        bad(
            IndexField::Time,
            "no `[dd/Mon/YYYY:HH:MM:SS ±hhmm] \"` before the request line",
        )
    })?;
    if req_start > close {
        return Err(bad(IndexField::RequestLine, "missing"));
    }
    let left = p[..bracket].strip_suffix(b" ").unwrap_or(&p[..bracket]);
    let (hostname, remote_addr, rest) = split_host_addr(left, 2)?;
    let logname = rest[0];
    let user = rest[1..].join(&b' ');
    Ok(Head {
        hostname: decode(IndexField::Hostname, &hostname, CutEscape::Reject)?,
        remote_addr,
        remote_logname: dash_to_none(decode(IndexField::RemoteLogname, logname, cut)?),
        user: dash_to_none(decode(IndexField::User, &user, cut)?),
        time,
        request_line: decode(IndexField::RequestLine, &p[req_start..close], cut)?,
        status: parse_status(status)?,
        bytes_sent: parse_bytes_sent(bytes_sent)?,
        referer: dash_to_none(decode(IndexField::Referer, referer, cut)?),
        user_agent: dash_to_none(decode(IndexField::UserAgent, ua, cut)?),
        unique_id: parse_unique_id(unique_id)?,
        session_id: dash_to_none(decode(IndexField::SessionId, session, CutEscape::Reject)?),
    })
}

fn parse_v3_prefix(p: &[u8]) -> Result<Head, IndexError> {
    let (bracket, time, req_start) = find_time_left(p).ok_or_else(|| {
        bad(
            IndexField::Time,
            "no `[dd/Mon/YYYY:HH:MM:SS ±hhmm] \"` after the user",
        )
    })?;
    let left = p[..bracket].strip_suffix(b" ").unwrap_or(&p[..bracket]);
    let (hostname, remote_addr, rest) = split_host_addr(left, 1)?;
    let user = rest.join(&b' ');
    // Nothing is escaped, so the request line ends at the first `" <status> <bytes> `
    // after which the rest reads as `referer "ua" id referer`.
    let rest = &p[req_start..];
    let mut from = 0;
    let mut tried = 0;
    while let Some(rel) = rest[from..].windows(2).position(|w| w == b"\" ") {
        tried += 1;
        if tried > MAX_V3_REQUEST_CANDIDATES {
            break;
        }
        let q = from + rel;
        from = q + 1;
        let mut fields = rest[q + 2..].splitn(3, |&b| b == b' ');
        let (Some(status), Some(bytes), Some(tail)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (Ok(status), Ok(bytes_sent)) = (parse_status(status), parse_bytes_sent(bytes)) else {
            continue;
        };
        let Some((referer, ua, unique_id)) = split_v3_tail(tail) else {
            continue;
        };
        return Ok(Head {
            hostname,
            remote_addr,
            remote_logname: None,
            user: dash_to_none(user),
            time,
            request_line: rest[..q].to_vec(),
            status,
            bytes_sent,
            referer: dash_to_none(referer.to_vec()),
            user_agent: dash_to_none(ua.to_vec()),
            unique_id: parse_unique_id(unique_id)?,
            session_id: None,
        });
    }
    Err(bad(
        IndexField::RequestLine,
        "no `\" status bytes referer \"ua\" id referer` after the request line",
    ))
}

/// How many `" ` positions may be tried as the end of an unescaped libmodsecurity 3
/// request line before the line is called malformed: real lines need one or two, and
/// each try costs a pass over the rest of the line.
const MAX_V3_REQUEST_CANDIDATES: usize = 32;

/// Splits libmodsecurity 3's `REF "UA" ID REF`, using the repeated referer as the anchor:
/// the referer is a border of the text (a prefix that is also a suffix), shortest first.
fn split_v3_tail(tail: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    for ref_len in borders(tail)
        .into_iter()
        .take_while(|&l| l < tail.len() / 2)
    {
        let referer = &tail[..ref_len];
        let Some(after) = tail[ref_len..].strip_prefix(b" \"") else {
            continue;
        };
        let Some(mid) = after
            .strip_suffix(referer)
            .and_then(|m| m.strip_suffix(b" "))
        else {
            continue;
        };
        let Some(sp) = mid.iter().rposition(|&b| b == b' ') else {
            continue;
        };
        let id = &mid[sp + 1..];
        let Some(ua) = mid[..sp].strip_suffix(b"\"") else {
            continue;
        };
        if !id.is_empty() {
            return Some((referer, ua, id));
        }
    }
    None
}

/// Lengths of the proper borders of `s`, shortest first (KMP prefix function, O(n)).
fn borders(s: &[u8]) -> Vec<usize> {
    let n = s.len();
    if n == 0 {
        return Vec::new();
    }
    let mut pi = vec![0usize; n];
    for i in 1..n {
        let mut k = pi[i - 1];
        while k > 0 && s[i] != s[k] {
            k = pi[k - 1];
        }
        if s[i] == s[k] {
            k += 1;
        }
        pi[i] = k;
    }
    let mut out = Vec::new();
    let mut k = pi[n - 1];
    while k > 0 {
        out.push(k);
        k = pi[k - 1];
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SQLI: &[u8] = b"lab.example ::1 - - [28/Nov/2026:02:14:31.009836 +0000] \"GET /?id=1%27%20UNION%20SELECT%20password%20FROM%20users-- HTTP/1.1\" 403 239 \"-\" \"-\" awo5B9rt9m7QJiOqXPD3lQAAAEg \"-\" /www-data/20261128/20261128-0214/20261128-021431-awo5B9rt9m7QJiOqXPD3lQAAAEg 0 8974 md5:68d5d503e35fcfa049de6419d87b7023 \n";

    #[test]
    fn parses_a_real_2_9_line() {
        let l = parse_index_line(SQLI).unwrap();
        assert_eq!(l.flavor, IndexFlavor::ModSecurity2);
        assert_eq!(l.hostname, b"lab.example");
        assert_eq!(l.remote_addr, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(l.remote_logname, None);
        assert_eq!(l.user, None);
        assert_eq!(l.time.to_rfc3339(), "2026-11-28T02:14:31.009836+00:00");
        assert_eq!(
            l.request_line,
            b"GET /?id=1%27%20UNION%20SELECT%20password%20FROM%20users-- HTTP/1.1"
        );
        assert_eq!((l.status, l.bytes_sent), (403, Some(239)));
        assert_eq!(l.unique_id, "awo5B9rt9m7QJiOqXPD3lQAAAEg");
        assert_eq!(l.session_id, None);
        assert_eq!(
            l.filename,
            b"/www-data/20261128/20261128-0214/20261128-021431-awo5B9rt9m7QJiOqXPD3lQAAAEg"
        );
        assert_eq!((l.offset, l.size), (0, 8974));
        assert_eq!(l.md5_hex(), "68d5d503e35fcfa049de6419d87b7023");
        assert!(!l.shortened);
        assert_eq!(l.user_dir(), Some(&b"www-data"[..]));
    }

    #[test]
    fn user_with_spaces_and_quotes_and_session_id() {
        let line = b"lab.example ::1 - bob \"the\" builder [28/Nov/2026:02:14:31.505783 +0000] \"GET /members/?probe=yes HTTP/1.1\" 200 24 \"-\" \"-\" awo5B9rt9m7QJiOqXPD3pQAAAEk \"abc\\\"def\\\\ghi jkl\" /www-data/20261128/20261128-0214/20261128-021431-awo5B9rt9m7QJiOqXPD3pQAAAEk 0 1234 md5:68d5d503e35fcfa049de6419d87b7023 \n";
        let l = parse_index_line(line).unwrap();
        assert_eq!(l.user.as_deref(), Some(&b"bob \"the\" builder"[..]));
        assert_eq!(l.session_id.as_deref(), Some(&b"abc\"def\\ghi jkl"[..]));
    }

    #[test]
    fn user_that_fakes_a_timestamp_does_not_move_the_request() {
        let line = b"h 10.0.0.1 - x [01/Jan/2020:00:00:00 +0000] \"GET /fake [28/Nov/2026:02:14:31 +0000] \"GET /real HTTP/1.1\" 200 1 \"-\" \"-\" id \"-\" /d/f 0 1 md5:68d5d503e35fcfa049de6419d87b7023 \n";
        let l = parse_index_line(line).unwrap();
        assert_eq!(l.request_line, b"GET /real HTTP/1.1");
        assert_eq!(
            l.user.as_deref(),
            Some(&b"x [01/Jan/2020:00:00:00 +0000] \"GET /fake"[..])
        );
    }

    #[test]
    fn host_with_space_and_quote() {
        let line = b"lab example\"x 127.0.0.1 - - [28/Nov/2026:02:14:31 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\" id \"-\" /d/f 0 1 md5:68d5d503e35fcfa049de6419d87b7023 \n";
        let l = parse_index_line(line).unwrap();
        assert_eq!(l.hostname, b"lab example\"x");
        assert_eq!(l.remote_addr.to_string(), "127.0.0.1");
    }

    #[test]
    fn shortened_line_cut_inside_an_escape() {
        // The request field ends in `\"` that is really a cut `\\"`-escape plus the closing quote.
        let line = b"lab.example 127.0.0.1 - - [28/Nov/2026:02:14:31 +0000] \"GET /?q=\\\"\\\"\\\" 200 16 \"-\" \"-\" awo5B9rt9m7QJiOqXPD3sQAAAE4 \"-\" /www-data/x 0 5074 md5:68d5d503e35fcfa049de6419d87b7023 L\n";
        let l = parse_index_line(line).unwrap();
        assert!(l.shortened);
        assert_eq!(l.request_line, b"GET /?q=\"\"\\");
        let cut_hex = b"h 127.0.0.1 - - [28/Nov/2026:02:14:31 +0000] \"GET /\\x4\" 200 16 \"-\" \"-\" id \"-\" /f 0 1 md5:68d5d503e35fcfa049de6419d87b7023 L\n";
        assert_eq!(
            parse_index_line(cut_hex).unwrap().request_line,
            b"GET /\\x4"
        );
        // Without the L flag the same cut escape is malformed.
        let not_short = [&cut_hex[..cut_hex.len() - 3], b" \n"].concat();
        let e = parse_index_line(&not_short).unwrap_err();
        assert_eq!(e.field, IndexField::RequestLine, "{e}");
    }

    #[test]
    fn escapes_in_request_line_are_decoded() {
        let line = b"h 127.0.0.1 - - [28/Nov/2026:02:14:31 +0000] \"GET /?u=caf\\xc3\\xa9&q=\\\"raw\\\"\\\\back HTTP/1.1\" 200 16 \"-\" \"-\" id \"-\" /f 0 1 md5:68d5d503e35fcfa049de6419d87b7023 \n";
        let l = parse_index_line(line).unwrap();
        assert_eq!(
            l.request_line,
            "GET /?u=café&q=\"raw\"\\back HTTP/1.1".as_bytes()
        );
    }

    #[test]
    fn pre_2_9_3_layout_without_microseconds_or_user_dir() {
        let line = b"www.example.com 192.168.1.5 - - [19/Jan/2015:17:08:19 --0500] \"GET /x HTTP/1.1\" 403 210 \"-\" \"-\" VL0ubX8AAQEAAE2fJ1cAAAAA \"-\" /20150119/20150119-1708/20150119-170819-VL0ubX8AAQEAAE2fJ1cAAAAA 0 1519 md5:0d5e3b1b3ae2d3a5ecd0c0b7b0e7bb70 \n";
        let l = parse_index_line(line).unwrap();
        assert_eq!(l.time.to_rfc3339(), "2015-01-19T17:08:19-05:00");
        assert_eq!(l.user_dir(), None);
    }

    #[test]
    fn libmodsecurity3_line() {
        let line = b"lab.example 127.0.0.1 - [28/Nov/2026:02:11:23 +0000] \"GET /?id=1%27%20or%201=1-- HTTP/1.1\" 403 153 - \"curl/7.88.1\" 179583188341.519483 - /tmp/modsec3-lab/audit/20261128/20261128-0211/20261128-021123-179583188341.519483 0 1470.000000 md5:dfa482a08079c773afa4ce4f70879897\n";
        let l = parse_index_line(line).unwrap();
        assert_eq!(l.flavor, IndexFlavor::LibModSecurity3);
        assert_eq!(l.size, 1470);
        assert_eq!(l.unique_id, "179583188341.519483");
        assert_eq!(l.user_agent.as_deref(), Some(&b"curl/7.88.1"[..]));
        assert_eq!(l.referer, None);
        assert_eq!(l.status, 403);
        assert_eq!(l.user_dir(), None);
    }

    #[test]
    fn libmodsecurity3_unescaped_quotes_and_spaced_referer() {
        let line = "lab.example 127.0.0.1 - [28/Nov/2026:02:11:23 +0000] \"GET /hello.txt HTTP/1.1\" 200 16 http://ref.example/a \"b\" \\c?d=e f \"Mozilla/5.0 \"quoted\" back\\slash ünï\" 1795.5 http://ref.example/a \"b\" \\c?d=e f /tmp/a/f 0 974.000000 md5:2e6078162b7897f6361b20b915e37e82";
        let l = parse_index_line(line.as_bytes()).unwrap();
        assert_eq!(
            l.referer.as_deref(),
            Some("http://ref.example/a \"b\" \\c?d=e f".as_bytes())
        );
        assert_eq!(
            l.user_agent.as_deref(),
            Some("Mozilla/5.0 \"quoted\" back\\slash ünï".as_bytes())
        );
        assert_eq!(l.unique_id, "1795.5");
    }

    #[test]
    fn line_without_its_trailing_space_still_reads_as_2_x() {
        let trimmed = &SQLI[..SQLI.len() - 2];
        let l = parse_index_line(trimmed).unwrap();
        assert_eq!(l.flavor, IndexFlavor::ModSecurity2);
        assert_eq!(l.unique_id, "awo5B9rt9m7QJiOqXPD3lQAAAEg");
    }

    /// The work on an unescaped libmodsecurity 3 request line is bounded by a count, not
    /// by a clock: at most MAX_V3_REQUEST_CANDIDATES `" ` positions are tried as its end
    /// (each costs a pass over the rest of the line), then the line gets its verdict.
    #[test]
    fn hostile_long_libmodsecurity3_lines_get_a_verdict_after_a_bounded_number_of_tries() {
        let v3 = |request: &str| {
            format!("h 127.0.0.1 - [28/Nov/2026:02:11:23 +0000] \"{request}\" 403 1 ref \"ua\" 1.2 ref /f 0 1.000000 md5:dfa482a08079c773afa4ce4f70879897")
        };
        // `n` fake ends (`" ` not followed by a status) before the real one.
        let fakes = |n: usize| format!("GET /{} HTTP/1.1", "\" x".repeat(n));
        let last_tried = fakes(MAX_V3_REQUEST_CANDIDATES - 1);
        let l = parse_index_line(v3(&last_tried).as_bytes()).unwrap();
        assert_eq!(l.request_line, last_tried.as_bytes());
        let e = parse_index_line(v3(&fakes(MAX_V3_REQUEST_CANDIDATES)).as_bytes()).unwrap_err();
        assert_eq!(e.field, IndexField::RequestLine, "{e}");
        // Thousands of fake request ends and a long referer-like run: a verdict.
        let ua = "\" 200 1 a \"".repeat(4000);
        let line = format!("h 127.0.0.1 - [28/Nov/2026:02:11:23 +0000] \"GET / HTTP/1.1{ua} 403 1 {} \"x\" 1.2 {} /f 0 1.000000 md5:dfa482a08079c773afa4ce4f70879897", "a".repeat(20000), "a".repeat(20000));
        let e = parse_index_line(line.as_bytes()).unwrap_err();
        assert_eq!(e.field, IndexField::RequestLine, "{e}");
        let line = format!("h 127.0.0.1 - [28/Nov/2026:02:11:23 +0000] \"GET / HTTP/1.1\" 403 1 {r} \"x\" 1.2 {r} /f 0 1.000000 md5:dfa482a08079c773afa4ce4f70879897", r = "a".repeat(30000));
        let l = parse_index_line(line.as_bytes()).unwrap();
        assert_eq!(l.referer.map(|r| r.len()), Some(30000));
    }

    #[test]
    fn borders_are_prefixes_that_are_suffixes() {
        assert_eq!(borders(b"abcab"), [2]);
        assert_eq!(borders(b"aaaa"), [1, 2, 3]);
        assert_eq!(borders(b"abc"), Vec::<usize>::new());
    }

    #[test]
    fn each_malformation_names_its_field() {
        let good = std::str::from_utf8(SQLI).unwrap();
        let cases: Vec<(String, IndexField)> = vec![
            (good.replace("md5:68d5", "md5:zzd5"), IndexField::Md5),
            // from_str_radix would take "+6" as a digit pair; a digest has no signs.
            (good.replace("md5:68d5", "md5:+8d5"), IndexField::Md5),
            (good.replace("md5:", "sha:"), IndexField::Md5),
            (good.replace(" 8974 ", " 89x4 "), IndexField::Size),
            (good.replace(" 0 8974", " x 8974"), IndexField::Offset),
            (good.replace(" 403 239 ", " 4O3 239 "), IndexField::Status),
            (
                good.replace(" 403 239 ", " 403 2x9 "),
                IndexField::BytesSent,
            ),
            (
                good.replace("28/Nov/2026:02", "28/Nox/2026:02"),
                IndexField::Time,
            ),
            (
                good.replace("lab.example ::1", "lab.example nohost"),
                IndexField::RemoteAddr,
            ),
            (
                good.replace("awo5B9rt9m7QJiOqXPD3lQAAAEg \"-\"", "awo5/../x \"-\""),
                IndexField::UniqueId,
            ),
            (
                good.replace("1.1\" 403", "1.1\\q\" 403"),
                IndexField::RequestLine,
            ),
            (
                good.replace(" \"-\" /www", " - /www"),
                IndexField::SessionId,
            ),
            ("".to_string(), IndexField::Size),
            (
                "a b\0c 0 1 md5:68d5d503e35fcfa049de6419d87b7023 \n".to_string(),
                IndexField::Line,
            ),
        ];
        for (line, field) in cases {
            let e = parse_index_line(line.as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{line:?} gave {e}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_index_line(&bytes);
        }

        #[test]
        fn never_panics_on_mutated_real_lines(pos in 0usize..SQLI.len(), byte in any::<u8>(), cut in 0usize..SQLI.len()) {
            let mut line = SQLI.to_vec();
            line[pos] = byte;
            let _ = parse_index_line(&line);
            let _ = parse_index_line(&line[..cut]);
        }

        #[test]
        fn escaped_fields_round_trip(
            request in proptest::collection::vec(any::<u8>(), 0..100),
            user in proptest::collection::vec(any::<u8>(), 1..30),
            session in proptest::collection::vec(any::<u8>(), 1..30),
        ) {
            use crate::escape::escape;
            prop_assume!(user != b"-" && session != b"-");
            let line = [
                &b"host 127.0.0.1 - "[..], &escape(&user, false),
                b" [28/Nov/2026:02:14:31.000001 --0500] \"", &escape(&request, true),
                b"\" 200 5 \"-\" \"-\" abc \"", &escape(&session, true),
                b"\" /u/f 0 10 md5:68d5d503e35fcfa049de6419d87b7023 \n",
            ].concat();
            let parsed = parse_index_line(&line).unwrap();
            prop_assert_eq!(parsed.request_line, request);
            prop_assert_eq!(parsed.user, Some(user));
            prop_assert_eq!(parsed.session_id, Some(session));
        }
    }
}
