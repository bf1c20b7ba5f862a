//! `AuditEvent`: one typed model for every audit-log format ModSecurity writes.
//!
//! Parsers fill it; the alert mapping and `modsec-shipper show` read it. Raw request
//! and response data stay bytes (event files are not text in any encoding); the
//! rule-message fields are text because ModSecurity escapes them to ASCII.

use std::net::IpAddr;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

/// The event-file format a parser recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventFormat {
    /// ModSecurity 2.x native (`--xxxxxxxx-A--`); also covers 1.9.x-era messages.
    Native2,
    /// ModSecurity 2.9.1+ `SecAuditLogFormat JSON`.
    Json2,
    /// libmodsecurity 3 native (`---xxxxxxxx---A--`).
    Native3,
    /// libmodsecurity 3 JSON.
    Json3,
}

impl EventFormat {
    /// Its name, as JSON has it (`native2`, `json2`, `native3`, `json3`).
    pub fn name(self) -> &'static str {
        match self {
            EventFormat::Native2 => "native2",
            EventFormat::Json2 => "json2",
            EventFormat::Native3 => "native3",
            EventFormat::Json3 => "json3",
        }
    }
}

/// An address and port of one side of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

/// A body kept up to the configured cap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Body {
    /// The first bytes of the body (all of it unless `truncated`).
    #[serde(serialize_with = "ser_bytes")]
    pub bytes: Vec<u8>,
    /// Length of the whole body as logged.
    pub total_len: u64,
    /// `bytes` holds less than `total_len`.
    pub truncated: bool,
}

impl Body {
    /// Keeps at most `cap` bytes of `data`.
    pub fn capped(data: &[u8], cap: usize) -> Body {
        Body::capped_with_total(data, data.len() as u64, cap)
    }

    /// Keeps at most `cap` bytes of `data`, whose original length was `total_len`
    /// (larger than `data` when a reader already cut it).
    pub fn capped_with_total(data: &[u8], total_len: u64, cap: usize) -> Body {
        let kept = &data[..data.len().min(cap)];
        Body {
            bytes: kept.to_vec(),
            total_len,
            truncated: (kept.len() as u64) < total_len,
        }
    }
}

/// A header line, name and value as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    #[serde(serialize_with = "ser_bytes")]
    pub name: Vec<u8>,
    #[serde(serialize_with = "ser_bytes")]
    pub value: Vec<u8>,
}

/// The request as ModSecurity logged it (parts A, B, C/I, J).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Request {
    /// The raw request line (`r->the_request`, sanitised args starred).
    #[serde(serialize_with = "ser_bytes")]
    pub line: Vec<u8>,
    #[serde(serialize_with = "ser_bytes")]
    pub method: Vec<u8>,
    #[serde(serialize_with = "ser_bytes")]
    pub uri: Vec<u8>,
    /// Empty for HTTP/0.9.
    #[serde(serialize_with = "ser_bytes")]
    pub protocol: Vec<u8>,
    pub headers: Vec<Header>,
    pub body: Option<Body>,
}

impl Request {
    /// The first header of that name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }
}

/// The response (parts F and E).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Response {
    #[serde(serialize_with = "ser_bytes")]
    pub protocol: Vec<u8>,
    pub status: Option<u16>,
    #[serde(serialize_with = "ser_bytes")]
    pub reason: Vec<u8>,
    pub headers: Vec<Header>,
    pub body: Option<Body>,
}

fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value.as_slice())
}

/// ModSecurity's severities, 0 (EMERGENCY) to 7 (DEBUG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Emergency = 0,
    Alert = 1,
    Critical = 2,
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

impl Severity {
    const ALL: [Severity; 8] = [
        Severity::Emergency,
        Severity::Alert,
        Severity::Critical,
        Severity::Error,
        Severity::Warning,
        Severity::Notice,
        Severity::Info,
        Severity::Debug,
    ];

    /// From a name (`CRITICAL`, 2.x messages) or a number 0–7 (2.x JSON, libmodsecurity 3).
    pub fn parse(text: &str) -> Option<Severity> {
        let text = text.trim();
        if let Ok(n) = text.parse::<usize>() {
            return Severity::ALL.get(n).copied();
        }
        Severity::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(text))
    }

    /// The name ModSecurity 2 prints.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Emergency => "EMERGENCY",
            Severity::Alert => "ALERT",
            Severity::Critical => "CRITICAL",
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Notice => "NOTICE",
            Severity::Info => "INFO",
            Severity::Debug => "DEBUG",
        }
    }
}

/// The action text at the start of a rule message (ARCHITECTURE.md, "The formats we read").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MessageAction {
    /// `Warning.`: a non-disruptive match.
    Warning,
    /// `Access denied with code N (phase P).` (1.9.x: no phase).
    Denied {
        status: Option<u16>,
        phase: Option<u8>,
    },
    /// `Access denied with redirection to URL using status N (phase P).`
    /// (1.9.x: `Access denied with redirect to [URL].`)
    Redirect {
        url: String,
        status: Option<u16>,
        phase: Option<u8>,
    },
    /// `Access denied using proxy to (phase P) URL.`
    Proxy { url: String, phase: Option<u8> },
    /// `Access denied with connection close (phase P).`
    Drop { phase: Option<u8> },
    /// `Access allowed`, `Access to phase allowed`, `Access to request allowed`, `Paused Access`.
    Allowed { phase: Option<u8> },
    /// No recognised action text (e.g. `nolog,auditlog` rules, engine diagnostics).
    None,
}

impl MessageAction {
    /// Its kind, as JSON has it (`warning`, `denied`, `redirect`, `proxy`, `drop`,
    /// `allowed`, `none`).
    pub fn kind(&self) -> &'static str {
        match self {
            MessageAction::Warning => "warning",
            MessageAction::Denied { .. } => "denied",
            MessageAction::Redirect { .. } => "redirect",
            MessageAction::Proxy { .. } => "proxy",
            MessageAction::Drop { .. } => "drop",
            MessageAction::Allowed { .. } => "allowed",
            MessageAction::None => "none",
        }
    }

    /// Whether this action stopped the transaction.
    pub fn is_disruptive(&self) -> bool {
        matches!(
            self,
            MessageAction::Denied { .. }
                | MessageAction::Redirect { .. }
                | MessageAction::Proxy { .. }
                | MessageAction::Drop { .. }
        )
    }
}

/// One rule message (a `Message:` line, a JSON `messages` entry, a v3 H line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    pub action: MessageAction,
    /// The operator text (`Pattern match "…" at ARGS:q.`), escaped as logged.
    pub justification: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub id: Option<String>,
    pub rev: Option<String>,
    pub msg: Option<String>,
    pub data: Option<String>,
    pub severity: Option<Severity>,
    pub ver: Option<String>,
    pub maturity: Option<u8>,
    pub accuracy: Option<u8>,
    pub tags: Vec<String>,
    /// The message was cut (ModSecurity 2 stores at most 1,023 bytes): metadata may be
    /// missing, so the rule id may have to come from part K.
    pub truncated: bool,
    /// The message as logged, for the Sguil detail.
    pub text: String,
}

/// How the transaction was intercepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interception {
    /// The HTTP status sent (from the denying message, or part F / the index line).
    pub status: Option<u16>,
    pub phase: Option<u8>,
    /// The redirect or proxy target.
    pub target: Option<String>,
    /// The disruptive message's action, when one names it.
    pub action: Option<MessageAction>,
}

/// `Engine-Mode:` / `secrules_engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineMode {
    Enabled,
    DetectionOnly,
}

/// Recoverable oddities, kept as flags so the event still ships (ARCHITECTURE.md, "The formats we read").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Anomalies {
    /// Rule messages cut at ModSecurity's 1,023-byte limit.
    pub truncated_messages: usize,
    /// Parts whose separator never came (the file ends early) — e.g. `Z`.
    pub missing_parts: Vec<char>,
    /// Parts cut at the configured cap (bodies and long parts).
    pub capped_parts: Vec<char>,
    /// Lines inside parts that could not be parsed (kept for the detail).
    pub unparsed_lines: usize,
    /// The JSON held bytes that are not UTF-8 (decoded with U+FFFD).
    pub invalid_utf8: bool,
    /// The index line's size does not match the file: (expected, actual).
    pub size_mismatch: Option<(u64, u64)>,
    /// The index line's md5 does not match the file.
    pub md5_mismatch: bool,
    /// The time zone is not in the file (libmodsecurity 3 JSON); taken as UTC.
    pub time_zone_unknown: bool,
}

impl Anomalies {
    /// Any flag set?
    pub fn any(&self) -> bool {
        *self != Anomalies::default()
    }
}

/// One transaction from one event file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    pub format: EventFormat,
    pub unique_id: String,
    /// Part A time with the offset as written (fixed from `--0500`).
    pub time: DateTime<FixedOffset>,
    pub client: Endpoint,
    pub server: Endpoint,
    pub request: Request,
    pub response: Response,
    /// Rule messages in the order raised; Apache-Error copies are not repeated here.
    pub matches: Vec<RuleMatch>,
    /// `Apache-Error:` lines that are not copies of a rule message (e.g. `AH01617`).
    pub apache_errors: Vec<String>,
    pub interception: Option<Interception>,
    pub engine_mode: Option<EngineMode>,
    /// `Producer:` (2.x), e.g. `ModSecurity for Apache/2.9.7 (…); OWASP_CRS/3.3.4.`
    pub producer: Option<String>,
    /// `Server:` banner.
    pub server_banner: Option<String>,
    /// Rule ids that matched according to part K / JSON `matched_rules`, in order.
    pub matched_rule_ids: Vec<String>,
    /// Part letters present, in file order.
    pub parts: Vec<char>,
    pub anomalies: Anomalies,
}

impl AuditEvent {
    /// An event with what every format has (part A / `transaction`) and nothing else yet.
    pub fn new(
        format: EventFormat,
        unique_id: String,
        time: DateTime<FixedOffset>,
        client: Endpoint,
        server: Endpoint,
    ) -> AuditEvent {
        AuditEvent {
            format,
            unique_id,
            time,
            client,
            server,
            request: Request::default(),
            response: Response::default(),
            matches: Vec::new(),
            apache_errors: Vec::new(),
            interception: None,
            engine_mode: None,
            producer: None,
            server_banner: None,
            matched_rule_ids: Vec::new(),
            parts: Vec::new(),
            anomalies: Anomalies::default(),
        }
    }

    /// The rule ids of all messages, in order, without repeats.
    pub fn rule_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        for id in self.matches.iter().filter_map(|m| m.id.as_deref()) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// Status sent to the client: part F, else the interception.
    pub fn status(&self) -> Option<u16> {
        self.response
            .status
            .or_else(|| self.interception.as_ref().and_then(|i| i.status))
    }

    /// Records a size/md5 check against the index line (`expected`) for the bytes read.
    pub fn check_integrity(
        &mut self,
        expected_size: u64,
        expected_md5: &[u8; 16],
        actual_size: u64,
        actual_md5: &[u8; 16],
    ) {
        if expected_size != actual_size {
            self.anomalies.size_mismatch = Some((expected_size, actual_size));
        }
        self.anomalies.md5_mismatch = expected_md5 != actual_md5;
    }
}

/// Bytes as JSON: a string when they are UTF-8, else `{"hex": "…"}` so nothing is lost.
fn ser_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => s.serialize_str(text),
        Err(_) => {
            use serde::ser::SerializeMap;
            let hex = crate::hex::lower(bytes);
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry("hex", &hex)?;
            map.end()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_json_ones() {
        for f in [
            EventFormat::Native2,
            EventFormat::Json2,
            EventFormat::Native3,
            EventFormat::Json3,
        ] {
            assert_eq!(serde_json::to_value(f).unwrap(), f.name());
        }
        for a in [
            MessageAction::Warning,
            MessageAction::Denied {
                status: Some(403),
                phase: Some(2),
            },
            MessageAction::Redirect {
                url: "u".into(),
                status: None,
                phase: None,
            },
            MessageAction::Proxy {
                url: "u".into(),
                phase: None,
            },
            MessageAction::Drop { phase: None },
            MessageAction::Allowed { phase: None },
            MessageAction::None,
        ] {
            assert_eq!(serde_json::to_value(&a).unwrap()["kind"], a.kind());
        }
    }

    #[test]
    fn severity_from_names_and_numbers() {
        assert_eq!(Severity::parse("CRITICAL"), Some(Severity::Critical));
        assert_eq!(Severity::parse("notice"), Some(Severity::Notice));
        assert_eq!(Severity::parse("2"), Some(Severity::Critical));
        assert_eq!(Severity::parse("7"), Some(Severity::Debug));
        assert_eq!(Severity::parse("8"), None);
        assert_eq!(Severity::parse("LOUD"), None);
    }

    #[test]
    fn body_cap_flags_truncation() {
        let b = Body::capped(b"abcdef", 4);
        assert_eq!(
            (b.bytes.as_slice(), b.total_len, b.truncated),
            (&b"abcd"[..], 6, true)
        );
        let b = Body::capped(b"ab", 4);
        assert!(!b.truncated);
        let b = Body::capped_with_total(b"ab", 100, 4);
        assert!(b.truncated);
    }
}
