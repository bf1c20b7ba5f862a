//! Native (multi-part) event files: ModSecurity 2.x (`--1a2b3c4d-A--`), its 1.9.x
//! ancestor, and libmodsecurity 3 (`---1a2B3c4D---A--`) (ARCHITECTURE.md, "The formats we read").
//!
//! Parts B, C, E and F are raw bytes that may contain lines looking like separators,
//! so a separator is accepted only with this file's boundary and with a part letter
//! that may follow the current one in the writer's order.

use std::net::IpAddr;

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till, take_while_m_n};
use nom::combinator::{all_consuming, map, opt, rest};
use nom::sequence::{delimited, preceded, terminated, tuple};
use nom::IResult;

use super::message::{parse_message, rule_id_from_k_line, MessageDialect};
use super::model::*;
use super::{finish_event, AuditLogError, Outcome, ParseLimits, PartCut};
use crate::time::parse_modsec_time;

/// The two separator styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `--<boundary>-<X>--` (ModSecurity 1.9/2.x).
    V2,
    /// `---<boundary>---<X>--` (libmodsecurity 3).
    V3,
}

impl Style {
    /// Part letters in the order the writer emits them.
    fn order(self) -> &'static [u8] {
        match self {
            // sec_audit_logger_native: A B C I F E H J K Z (D and G are reserved).
            Style::V2 => b"ABCDIFEGHJKZ",
            // Transaction::toOldAuditLogFormat writes alphabetically.
            Style::V3 => b"ABCDEFGHIJKZ",
        }
    }

    pub(crate) fn rank(self, letter: u8) -> Option<usize> {
        self.order().iter().position(|&l| l == letter)
    }
}

/// What the first line of a native file says: its style and boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Framing {
    pub style: Style,
    pub boundary: Vec<u8>,
}

/// Longest boundary accepted; ModSecurity 2 writes 8 hex digits, libmodsecurity 8 alphanumerics.
const MAX_BOUNDARY: usize = 32;

/// A boundary: 1 to [`MAX_BOUNDARY`] ASCII letters and digits.
fn boundary(input: &[u8]) -> IResult<&[u8], &[u8], ()> {
    take_while_m_n(1, MAX_BOUNDARY, |c: u8| c.is_ascii_alphanumeric())(input)
}

/// A header line `name:value` (one space after the colon is dropped): (name, value).
fn header_line(line: &[u8]) -> IResult<&[u8], (&[u8], &[u8]), ()> {
    let name = terminated(take_till(|c| c == b':'), tag(":"));
    let value = preceded(opt(tag(" ")), rest);
    tuple((name, value))(line)
}

impl Framing {
    /// Reads the framing from the `A` separator line (without its newline; one `\r` is allowed).
    pub(crate) fn from_first_line(line: &[u8]) -> Option<Framing> {
        let v3 = map(delimited(tag("---"), boundary, tag("---A--")), |b| {
            (Style::V3, b)
        });
        let v2 = map(delimited(tag("--"), boundary, tag("-A--")), |b| {
            (Style::V2, b)
        });
        let mut first = all_consuming(terminated(alt((v3, v2)), opt(tag("\r"))));
        let parsed: IResult<&[u8], (Style, &[u8]), ()> = first(line);
        let (_, (style, boundary)) = parsed.ok()?;
        Some(Framing {
            style,
            boundary: boundary.to_vec(),
        })
    }

    /// The part letter if `line` is a separator of this file: `--<boundary>-<X>--` or
    /// `---<boundary>---<X>--`, nothing after it.
    pub(crate) fn separator_letter(&self, line: &[u8]) -> Option<u8> {
        let (open, mid) = match self.style {
            Style::V2 => ("--", "-"),
            Style::V3 => ("---", "---"),
        };
        let letter = take_while_m_n(1, 1, |c: u8| c.is_ascii_uppercase());
        let mut separator = all_consuming(delimited(
            tuple((tag(open), tag(self.boundary.as_slice()), tag(mid))),
            letter,
            tag("--"),
        ));
        // `()` errors: a line that is not a separator is the common case and costs nothing.
        let parsed: IResult<&[u8], &[u8], ()> = separator(line);
        let (_, letter) = parsed.ok()?;
        Some(letter[0])
    }

    /// Whether a separator for `next` may follow part `current`.
    pub(crate) fn may_follow(&self, current: u8, next: u8) -> bool {
        match (self.style.rank(current), self.style.rank(next)) {
            (Some(c), Some(n)) => n > c,
            _ => false,
        }
    }
}

/// One part: its letter and content (without the newline that precedes the next separator).
struct Part<'a> {
    letter: u8,
    content: &'a [u8],
}

/// Splits a native file into parts. Returns the parts and whether `Z` was reached.
fn split_parts<'a>(
    input: &'a [u8],
    framing: &Framing,
    first_line_end: usize,
) -> (Vec<Part<'a>>, bool) {
    let mut parts = Vec::new();
    let mut letter = b'A';
    let mut content_start = first_line_end;
    let mut pos = first_line_end;
    while pos < input.len() {
        let line_end = memchr_nl(input, pos).unwrap_or(input.len());
        let line = &input[pos..line_end];
        if let Some(next) = framing.separator_letter(line) {
            if framing.may_follow(letter, next) {
                // The writer puts "\n" before each separator; it belongs to no part.
                let end = if pos > content_start { pos - 1 } else { pos };
                parts.push(Part {
                    letter,
                    content: &input[content_start..end],
                });
                letter = next;
                content_start = (line_end + 1).min(input.len());
                if next == b'Z' {
                    parts.push(Part {
                        letter,
                        content: &[],
                    });
                    return (parts, true);
                }
            }
        }
        pos = line_end + 1;
    }
    parts.push(Part {
        letter,
        content: &input[content_start.min(input.len())..],
    });
    (parts, false)
}

fn memchr_nl(input: &[u8], from: usize) -> Option<usize> {
    input[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| from + p)
}

fn lines(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    content
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Parses a native event file (any style). `cuts` are parts a reader already shortened.
pub(crate) fn parse_native(
    input: &[u8],
    limits: &ParseLimits,
    cuts: &[PartCut],
) -> Result<AuditEvent, AuditLogError> {
    let start = input
        .iter()
        .position(|&b| b != b'\n' && b != b'\r')
        .unwrap_or(input.len());
    let first_end = memchr_nl(input, start).unwrap_or(input.len());
    let framing = Framing::from_first_line(&input[start..first_end]).ok_or_else(|| {
        AuditLogError::NotAnEvent {
            why: format!(
                "first line is not a part A separator (--xxxxxxxx-A-- or ---xxxxxxxx---A--): `{}`",
                String::from_utf8_lossy(&input[start..first_end.min(start + 60)])
            ),
        }
    })?;
    let (parts, complete) = split_parts(input, &framing, (first_end + 1).min(input.len()));
    let (format, dialect) = match framing.style {
        Style::V2 => (EventFormat::Native2, MessageDialect::ModSecurity2),
        Style::V3 => (EventFormat::Native3, MessageDialect::LibModSecurity3),
    };

    let a = parts.first().map(|p| p.content).unwrap_or_default();
    let header = parse_part_a(a)?;
    let mut ev = AuditEvent::new(
        format,
        header.unique_id,
        header.time,
        header.client,
        header.server,
    );
    ev.parts = parts.iter().map(|p| char::from(p.letter)).collect();
    if !complete {
        ev.anomalies.missing_parts.push('Z');
    }
    let mut trailer = Trailer::default();
    for part in &parts {
        let cut = cuts.iter().find(|c| c.letter == char::from(part.letter));
        let total = cut.map_or(part.content.len() as u64, |c| c.original_len);
        if let Some(c) = cut {
            ev.anomalies.capped_parts.push(c.letter);
        }
        match part.letter {
            b'B' => parse_request_head(part.content, &mut ev),
            // I replaces C for multipart bodies; keep whichever carries the body.
            b'C' | b'I' if ev.request.body.is_none() || part.letter == b'C' => {
                ev.request.body = Some(Body::capped_with_total(
                    part.content,
                    total,
                    limits.max_body_bytes,
                ));
            }
            b'F' => parse_response_head(part.content, &mut ev),
            b'E' => {
                ev.response.body = Some(Body::capped_with_total(
                    part.content,
                    total,
                    limits.max_body_bytes,
                ))
            }
            b'H' => parse_trailer(part.content, dialect, &mut ev, &mut trailer),
            b'K' => {
                for line in lines(part.content) {
                    if let Some(id) = rule_id_from_k_line(line) {
                        if !ev.matched_rule_ids.contains(&id) {
                            ev.matched_rule_ids.push(id);
                        }
                    }
                }
            }
            _ => {}
        }
        if matches!(part.letter, b'B' | b'F' | b'H' | b'K')
            && cut.is_none()
            && part.content.len() > limits.max_part_bytes
        {
            ev.anomalies.capped_parts.push(char::from(part.letter));
        }
    }
    for c in cuts {
        if !ev.anomalies.capped_parts.contains(&c.letter) {
            ev.anomalies.capped_parts.push(c.letter);
        }
    }
    finish_event(&mut ev, trailer.outcome, trailer.apache_copies);
    Ok(ev)
}

struct PartA {
    time: chrono::DateTime<chrono::FixedOffset>,
    unique_id: String,
    client: Endpoint,
    server: Endpoint,
}

fn part_a_error(why: impl Into<String>) -> AuditLogError {
    AuditLogError::BadPartA { why: why.into() }
}

/// `[time] unique_id client_ip client_port server_ip server_port`.
fn parse_part_a(content: &[u8]) -> Result<PartA, AuditLogError> {
    let line = lines(content)
        .find(|l| !l.is_empty())
        .ok_or_else(|| part_a_error("part A is empty"))?;
    let text = std::str::from_utf8(line).map_err(|_| part_a_error("part A is not ASCII"))?;
    let rest = text
        .strip_prefix('[')
        .ok_or_else(|| part_a_error("part A does not start with `[time]`"))?;
    let close = rest
        .find(']')
        .ok_or_else(|| part_a_error("part A has no `]` after the time"))?;
    let time =
        parse_modsec_time(&rest.as_bytes()[..close]).map_err(|e| part_a_error(e.to_string()))?;
    let fields: Vec<&str> = rest[close + 1..].split_ascii_whitespace().collect();
    let [id, cip, cport, sip, sport] = fields.as_slice() else {
        return Err(part_a_error(format!(
            "expected `id client_ip client_port server_ip server_port` after the time, found {} fields",
            fields.len()
        )));
    };
    let addr = |name: &str, v: &str| {
        v.parse::<IpAddr>()
            .map_err(|_| part_a_error(format!("{name} `{v}` is not an IP address")))
    };
    let port = |name: &str, v: &str| {
        v.parse::<u16>()
            .map_err(|_| part_a_error(format!("{name} `{v}` is not a port")))
    };
    if id.len() > crate::index::MAX_UNIQUE_ID_LEN || id.is_empty() {
        return Err(part_a_error("unique id missing or too long"));
    }
    Ok(PartA {
        time,
        unique_id: id.to_string(),
        client: Endpoint {
            addr: addr("client address", cip)?,
            port: port("client port", cport)?,
        },
        server: Endpoint {
            addr: addr("server address", sip)?,
            port: port("server port", sport)?,
        },
    })
}

fn header_lines(content: &[u8], ev: &mut AuditEvent) -> Vec<Header> {
    let mut headers = Vec::new();
    for line in lines(content).skip(1) {
        if line.is_empty() {
            continue;
        }
        match header_line(line) {
            Ok((_, (name, value))) => headers.push(Header {
                name: name.to_vec(),
                value: value.to_vec(),
            }),
            Err(_) => ev.anomalies.unparsed_lines += 1,
        }
    }
    headers
}

/// Part B: request line, then headers.
fn parse_request_head(content: &[u8], ev: &mut AuditEvent) {
    let first = lines(content).next().unwrap_or_default();
    ev.request.line = first.to_vec();
    let (method, uri, protocol) = split_request_line(first);
    ev.request.method = method.to_vec();
    ev.request.uri = uri.to_vec();
    ev.request.protocol = protocol.to_vec();
    ev.request.headers = header_lines(content, ev);
}

/// `METHOD URI PROTOCOL`; the protocol is absent for HTTP/0.9 and the URI may hold
/// spaces under `HttpProtocolOptions Unsafe`.
pub(crate) fn split_request_line(line: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return (line, &[], &[]);
    };
    let method = &line[..sp];
    let rest = &line[sp + 1..];
    match rest.iter().rposition(|&b| b == b' ') {
        Some(last) if rest[last + 1..].starts_with(b"HTTP/") => {
            (method, &rest[..last], &rest[last + 1..])
        }
        _ => (method, rest, &[]),
    }
}

/// Part F: `HTTP/1.1 403 Forbidden` (or no reason), then headers.
fn parse_response_head(content: &[u8], ev: &mut AuditEvent) {
    let first = lines(content).next().unwrap_or_default();
    let mut it = first.splitn(3, |&b| b == b' ');
    ev.response.protocol = it.next().unwrap_or_default().to_vec();
    ev.response.status = it
        .next()
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok());
    ev.response.reason = it.next().unwrap_or_default().to_vec();
    ev.response.headers = header_lines(content, ev);
}

#[derive(Default)]
struct Trailer {
    outcome: Outcome,
    apache_copies: Vec<RuleMatch>,
}

/// H line keys ModSecurity 2 writes (ARCHITECTURE.md, "The formats we read"); anything else is the
/// continuation of the previous line (a message with a raw newline in it).
const TRAILER_KEYS: &[&str] = &[
    "Message",
    "Apache-Error",
    "Action",
    "Apache-Handler",
    "Stopwatch",
    "Stopwatch2",
    "Response-Body-Transformed",
    "Producer",
    "Server",
    "Sanitised-Args",
    "Sanitised-Request-Headers",
    "Sanitised-Response-Headers",
    "WebApp-Info",
    "Sensor-Id",
    "Engine-Mode",
    "Rules-Performance-Info",
];

fn parse_trailer(content: &[u8], dialect: MessageDialect, ev: &mut AuditEvent, t: &mut Trailer) {
    // Join continuation lines onto the line they belong to.
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in lines(content) {
        let text = String::from_utf8_lossy(line);
        let key_value = text
            .split_once(": ")
            .filter(|(k, _)| TRAILER_KEYS.contains(k) || *k == "ModSecurity");
        match key_value {
            Some((k, v)) => entries.push((k.to_string(), v.to_string())),
            None => match entries.last_mut() {
                Some((k, v)) if k == "Message" || k == "ModSecurity" => {
                    v.push('\n');
                    v.push_str(&text);
                }
                _ if text.trim().is_empty() => {}
                _ => ev.anomalies.unparsed_lines += 1,
            },
        }
    }
    for (key, value) in entries {
        let value = value.trim_end_matches('\n').to_string();
        match key.as_str() {
            "Message" => ev.matches.push(parse_message(&value, dialect)),
            // libmodsecurity 3 writes its messages with no `Message:` key.
            "ModSecurity" => ev
                .matches
                .push(parse_message(&format!("ModSecurity: {value}"), dialect)),
            "Apache-Error" => match modsecurity_copy(&value) {
                Some(alert) => t.apache_copies.push(parse_message(alert, dialect)),
                None => ev.apache_errors.push(value),
            },
            "Action" => {
                // 2.x: `Intercepted (phase 2)`; 1.9.x: `Intercepted (403)`.
                if let Some(inner) = value
                    .strip_prefix("Intercepted (")
                    .and_then(|v| v.strip_suffix(')'))
                {
                    t.outcome.intercepted = true;
                    match inner.strip_prefix("phase ") {
                        Some(p) => t.outcome.phase = p.parse().ok(),
                        None => t.outcome.status = inner.parse().ok(),
                    }
                }
            }
            "Producer" => ev.producer = Some(value),
            "Server" => ev.server_banner = Some(value),
            "Engine-Mode" => {
                ev.engine_mode = match value.trim_matches('"') {
                    "ENABLED" => Some(EngineMode::Enabled),
                    "DETECTION_ONLY" => Some(EngineMode::DetectionOnly),
                    _ => None,
                }
            }
            _ => {}
        }
    }
}

/// The alert inside an `Apache-Error:` line that is ModSecurity's own error-log copy of
/// a rule message: `[file "apache2_util.c"] [line 275] [level 3] [client …] ModSecurity: <alert>`.
pub(crate) fn modsecurity_copy(value: &str) -> Option<&str> {
    let pos = value.find("] ModSecurity: ")?;
    // Everything before must be the bracketed prefix tokens.
    value[..pos + 1]
        .starts_with('[')
        .then(|| &value[pos + 15..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(line: &[u8]) -> Framing {
        Framing::from_first_line(line).unwrap()
    }

    #[test]
    fn separators_need_this_boundary_and_a_later_letter() {
        let f = framing(b"--c01c6850-A--");
        assert_eq!(f.style, Style::V2);
        assert_eq!(f.separator_letter(b"--c01c6850-H--"), Some(b'H'));
        assert_eq!(f.separator_letter(b"--deadbeef-H--"), None);
        assert_eq!(f.separator_letter(b"--c01c6850-H-- "), None);
        assert!(f.may_follow(b'F', b'E'));
        assert!(!f.may_follow(b'E', b'F'));
        assert!(!f.may_follow(b'H', b'H'));
        let v3 = framing(b"---l6o0m6On---A--");
        assert_eq!(v3.style, Style::V3);
        assert_eq!(v3.separator_letter(b"---l6o0m6On---Z--"), Some(b'Z'));
        assert!(v3.may_follow(b'E', b'F'));
        assert!(Framing::from_first_line(b"--c01c6850-B--").is_none());
        assert!(Framing::from_first_line(b"{\"transaction\":1}").is_none());
    }

    #[test]
    fn first_separator_grammar() {
        let f = framing(b"--c01c6850-A--\r");
        assert_eq!(
            (f.style, f.boundary.as_slice()),
            (Style::V2, &b"c01c6850"[..])
        );
        let longest = format!("--{}-A--", "a".repeat(MAX_BOUNDARY));
        assert_eq!(framing(longest.as_bytes()).boundary.len(), MAX_BOUNDARY);
        let too_long = format!("--{}-A--", "a".repeat(MAX_BOUNDARY + 1));
        assert!(Framing::from_first_line(too_long.as_bytes()).is_none());
        for bad in [
            &b"---A--"[..],
            b"--c01c-6850-A--",
            b"--c01c6850-A--\r\r",
            b"--c01c6850-A-- ",
            b"---c01c6850-A--",
            b"--c01c6850---A--",
            b"---c01c6850---A-",
        ] {
            assert!(Framing::from_first_line(bad).is_none(), "{bad:?}");
        }
        let v3 = framing(b"---l6o0m6On---A--\r");
        assert_eq!(v3.separator_letter(b"---l6o0m6On---H--"), Some(b'H'));
        assert_eq!(v3.separator_letter(b"---l6o0m6On---h--"), None);
        assert_eq!(v3.separator_letter(b"---l6o0m6On---HH--"), None);
        assert_eq!(v3.separator_letter(b"---l6o0m6On-H--"), None);
        assert_eq!(v3.separator_letter(b"---l6o0m6On---H--\r"), None);
    }

    #[test]
    fn header_line_grammar() {
        let ok = |l: &'static [u8]| header_line(l).map(|(_, nv)| nv).ok();
        assert_eq!(ok(b"Host: a:b"), Some((&b"Host"[..], &b"a:b"[..])));
        assert_eq!(ok(b"Host:a"), Some((&b"Host"[..], &b"a"[..])));
        assert_eq!(ok(b"X:  two"), Some((&b"X"[..], &b" two"[..])));
        assert_eq!(ok(b":"), Some((&b""[..], &b""[..])));
        assert_eq!(ok(b"no colon here"), None);
    }

    #[test]
    fn request_line_split() {
        assert_eq!(
            split_request_line(b"GET /a HTTP/1.1"),
            (&b"GET"[..], &b"/a"[..], &b"HTTP/1.1"[..])
        );
        assert_eq!(
            split_request_line(b"GET /hello.txt?n=http09"),
            (&b"GET"[..], &b"/hello.txt?n=http09"[..], &b""[..])
        );
        assert_eq!(
            split_request_line(b"GET /a b HTTP/1.1"),
            (&b"GET"[..], &b"/a b"[..], &b"HTTP/1.1"[..])
        );
        assert_eq!(split_request_line(b""), (&b""[..], &b""[..], &b""[..]));
    }

    #[test]
    fn apache_error_copies_are_recognised() {
        assert_eq!(
            modsecurity_copy(
                r#"[file "apache2_util.c"] [line 275] [level 3] [client 127.0.0.1] ModSecurity: Warning. x"#
            ),
            Some("Warning. x")
        );
        assert_eq!(
            modsecurity_copy(
                "[file \"mod_auth_basic.c\"] [line 1] AH01617: user alice: authentication failure"
            ),
            None
        );
    }
}
