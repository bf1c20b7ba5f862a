//! The alert decision and the mapping of an [`AuditEvent`] to the fields of a Sguil
//! GenericEvent (ARCHITECTURE.md, "Alert decision and mapping").
//!
//! Deciding and mapping are pure: an event and the settings in, a [`Mapped`] out. The
//! shipper adds what only the session knows (sid, cid, the registered hostname) and
//! builds the [`SguilEvent`](crate::sguil::wire::SguilEvent), which validates the rest.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use chrono::{DateTime, SubsecRound, Utc};

use crate::auditlog::{AuditEvent, Endpoint, RuleMatch, Severity};
use crate::config::{ConfigError, ConfigFile};
use crate::escape::escape;
use crate::sguil::wire::{
    EventFields, GENERATOR_MODSECURITY, MAX_CLASS_LEN, MAX_DETAIL_BYTES, MAX_MESSAGE_BYTES,
};

/// CRS rules that only add up or report other rules' scores: naming one of them as the
/// alert ("Inbound Anomaly Score Exceeded") tells the analyst nothing, so the most severe
/// contributing rule is named instead. 949110/959100 block (CRS 3 and 4); 980130 and
/// 980140 (CRS 3, inbound and outbound) and 980170 (CRS 4) report.
pub const DEFAULT_ANOMALY_RULES: &[&str] = &["949110", "959100", "980130", "980140", "980170"];
/// CRS 4 tags its evaluation rules so; a rule with this tag is treated as one.
pub const ANOMALY_TAG: &str = "anomaly-evaluation";
/// Sguil class of alerts whose rule carries no `attack-*` tag.
pub const DEFAULT_ALERT_CLASS: &str = "web-attack";
/// Sguil class of events shipped only because of HANDLE_ALL_EVENTS.
pub const DEFAULT_ACTIVITY_CLASS: &str = "web-activity";
/// How much of the request body the summary quotes (the raw event follows it anyway).
pub const BODY_EXCERPT_BYTES: usize = 512;
/// IP protocol number of TCP: HTTP is always over TCP here.
const IPPROTO_TCP: u8 = 6;
/// DETAIL_RAW_BYTES by default: how much of the raw event a detail carries, at most.
/// Measured against a real sguild (ARCHITECTURE.md, "The event detail, as the analyst sees
/// it"): ~500 events/s with no raw event, ~370-400 with 16 KiB of it, ~200 with a full
/// 32 KB detail. 16 KiB keeps most CRS events whole (the corpus's are 2-14 KB) at twice
/// the full-size rate.
pub const DEFAULT_DETAIL_RAW_BYTES: usize = 16 * 1024;

pub mod html;

/// How the event detail is written (DETAIL_FORMAT; `show --detail=FORMAT`); the HTML
/// detail is built by [`html`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DetailFormat {
    /// For Sguil's analyst console, which renders the detail as HTML.
    #[default]
    Html,
    /// Plain text, for sites that read `data_payload` as text or as a hex dump (Sguil's
    /// web client).
    Text,
}

impl DetailFormat {
    /// `html` or `text`, any case.
    pub fn parse(word: &str) -> Option<DetailFormat> {
        <DetailFormat as clap::ValueEnum>::from_str(word.trim(), true).ok()
    }
}

/// The knobs of the decision and the mapping, from the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    /// IGNORE_HTTP_CODES: statuses that alone do not make an alert (modsec2sguil's
    /// example config ignored 404).
    pub ignore_http_codes: Vec<u16>,
    /// HANDLE_ALL_EVENTS: ship non-alerts too, priority 5, as activity.
    pub handle_all_events: bool,
    /// ALERT_ON_WARNINGS: a rule message with an id makes an alert even when nothing was
    /// intercepted (DetectionOnly deployments). Default on.
    pub alert_on_warnings: bool,
    /// ANOMALY_RULES: ids of score-evaluation rules (see [`DEFAULT_ANOMALY_RULES`]).
    pub anomaly_rules: Vec<String>,
    /// ALERT_CLASS / ACTIVITY_CLASS.
    pub alert_class: String,
    pub activity_class: String,
    /// DETAIL_FORMAT: html (default) or text.
    pub detail_format: DetailFormat,
    /// DETAIL_RAW_BYTES: the most bytes of the raw event a detail carries (0: none).
    pub detail_raw_bytes: usize,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            ignore_http_codes: Vec::new(),
            handle_all_events: false,
            alert_on_warnings: true,
            anomaly_rules: DEFAULT_ANOMALY_RULES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            alert_class: DEFAULT_ALERT_CLASS.into(),
            activity_class: DEFAULT_ACTIVITY_CLASS.into(),
            detail_format: DetailFormat::Html,
            detail_raw_bytes: DEFAULT_DETAIL_RAW_BYTES,
        }
    }
}

fn class_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLASS_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl AlertSettings {
    /// Reads IGNORE_HTTP_CODES (space- or comma-separated statuses), HANDLE_ALL_EVENTS,
    /// ALERT_ON_WARNINGS, ANOMALY_RULES, ALERT_CLASS, ACTIVITY_CLASS, DETAIL_FORMAT and
    /// DETAIL_RAW_BYTES.
    pub fn resolve(c: &ConfigFile) -> Result<AlertSettings, ConfigError> {
        let mut s = AlertSettings::default();
        let words = |v: &str| -> Vec<String> {
            v.split(|ch: char| ch == ',' || ch.is_whitespace())
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect()
        };
        if let Some(set) = c.get("IGNORE_HTTP_CODES") {
            s.ignore_http_codes = words(&set.value)
                .iter()
                .map(|w| w.parse::<u16>().ok().filter(|n| (100..=999).contains(n)))
                .collect::<Option<Vec<u16>>>()
                .ok_or_else(|| c.bad(set, "expected HTTP statuses such as `404 410`"))?;
        }
        if let Some(v) = c.bool("HANDLE_ALL_EVENTS")? {
            s.handle_all_events = v;
        }
        if let Some(v) = c.bool("ALERT_ON_WARNINGS")? {
            s.alert_on_warnings = v;
        }
        if let Some(set) = c.get("ANOMALY_RULES") {
            s.anomaly_rules = words(&set.value);
            if s.anomaly_rules
                .iter()
                .any(|w| !w.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(c.bad(set, "expected rule ids such as `949110 959100`"));
            }
        }
        for (key, field) in [
            ("ALERT_CLASS", &mut s.alert_class),
            ("ACTIVITY_CLASS", &mut s.activity_class),
        ] {
            if let Some(set) = c.get(key) {
                if !class_ok(&set.value) {
                    return Err(c.bad(set, "Sguil's class is 1 to 20 characters of [A-Za-z0-9._-]"));
                }
                *field = set.value.clone();
            }
        }
        if let Some(set) = c.get("DETAIL_FORMAT") {
            s.detail_format = DetailFormat::parse(&set.value).ok_or_else(|| {
                c.bad(
                    set,
                    "expected `html` (for Sguil's analyst console) or `text`",
                )
            })?;
        }
        if let Some(n) = c.number("DETAIL_RAW_BYTES", 0..=MAX_DETAIL_BYTES as u64)? {
            s.detail_raw_bytes = n as usize;
        }
        Ok(s)
    }
}

/// Why an event is (or is not) shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// ModSecurity intercepted the transaction.
    Intercepted,
    /// A status of 400 or more, not ignored, without an interception.
    ErrorStatus,
    /// Nothing was stopped, but a rule with an id matched (DetectionOnly).
    RuleMatched,
    /// Not an alert; shipped as activity because of HANDLE_ALL_EVENTS.
    Activity,
    /// Not an alert, not shipped.
    Skip,
}

impl Decision {
    /// Whether the event goes to Sguil.
    pub fn ships(self) -> bool {
        self != Decision::Skip
    }
}

/// Decides whether `ev` is an alert.
pub fn decide(ev: &AuditEvent, s: &AlertSettings) -> Decision {
    let intercepted =
        ev.interception.is_some() || ev.matches.iter().any(|m| m.action.is_disruptive());
    if intercepted {
        return Decision::Intercepted;
    }
    if let Some(status) = ev.status() {
        if status >= 400 && !s.ignore_http_codes.contains(&status) {
            return Decision::ErrorStatus;
        }
    }
    if s.alert_on_warnings && ev.matches.iter().any(|m| m.id.is_some()) {
        return Decision::RuleMatched;
    }
    if s.handle_all_events {
        Decision::Activity
    } else {
        Decision::Skip
    }
}

fn is_anomaly_rule(m: &RuleMatch, s: &AlertSettings) -> bool {
    m.tags.iter().any(|t| t == ANOMALY_TAG)
        || m.id
            .as_deref()
            .is_some_and(|id| s.anomaly_rules.iter().any(|r| r == id))
}

/// The rule the alert is named after: the intercepting rule, unless it only evaluates
/// scores; then the most severe contributing rule (the first of equals, as raised).
/// Without an interception, the most severe rule that is not an evaluation rule.
pub fn primary_rule<'e>(ev: &'e AuditEvent, s: &AlertSettings) -> Option<&'e RuleMatch> {
    let contributing = ev
        .matches
        .iter()
        .filter(|m| !is_anomaly_rule(m, s) && (m.id.is_some() || m.msg.is_some()));
    // min_by_key keeps the first of equals; a missing severity ranks below DEBUG.
    let most_severe = contributing.min_by_key(|m| m.severity.map_or(8, |v| v as u8));
    match ev.matches.iter().find(|m| m.action.is_disruptive()) {
        Some(m) if !is_anomaly_rule(m, s) => Some(m),
        Some(m) => most_severe.or(Some(m)),
        None => most_severe.or_else(|| ev.matches.first()),
    }
}

/// Sguil priority from a ModSecurity severity (modsec2sguil's ConvertSEVERITYtoPRIO).
pub fn priority(severity: Option<Severity>) -> u8 {
    match severity {
        Some(Severity::Emergency | Severity::Alert) => 1,
        Some(Severity::Critical | Severity::Error) => 2,
        Some(Severity::Warning | Severity::Notice) => 3,
        Some(Severity::Info | Severity::Debug) | None => 4,
    }
}

/// An event mapped to Sguil's fields, before the session's sid and cid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub decision: Decision,
    /// sid, cid and hostname are 0 / empty: the shipper fills them.
    pub fields: EventFields,
    /// The addresses were IPv6 and are sent empty (they are in the detail).
    pub ipv6: bool,
}

/// Maps `ev` (read from `raw`, whose bytes follow the summary in the detail).
/// `notes` are extra lines for the summary (e.g. the collector's integrity marker).
pub fn map_event(ev: &AuditEvent, raw: &[u8], notes: &[String], s: &AlertSettings) -> Mapped {
    let decision = decide(ev, s);
    let primary = primary_rule(ev, s);
    let status = ev
        .status()
        .map_or_else(|| "-".to_string(), |st| st.to_string());
    let (prio, class) = if decision == Decision::Activity || decision == Decision::Skip {
        (5, s.activity_class.clone())
    } else {
        let severity = primary
            .and_then(|m| m.severity)
            .or_else(|| ev.matches.iter().filter_map(|m| m.severity).min());
        (priority(severity), alert_class(primary, s))
    };
    let what = match primary {
        Some(m) => m.msg.clone().unwrap_or_else(|| m.justification.clone()),
        None => {
            let mut line = escape(&ev.request.method, false);
            line.push(b' ');
            line.extend(escape(&ev.request.uri, false));
            String::from_utf8_lossy(&line).into_owned()
        }
    };
    let message = cut_utf8(
        format!("MSc {status} {what}").into_bytes(),
        MAX_MESSAGE_BYTES,
    );
    let (src_ip, ipv6_src) = sguil_addr(ev.client);
    let (dst_ip, ipv6_dst) = sguil_addr(ev.server);
    let num = |v: Option<&String>| v.and_then(|t| t.trim().parse::<u32>().ok()).unwrap_or(0);
    let fields = EventFields {
        status: 0,
        priority: prio,
        class,
        hostname: String::new(),
        time: utc_seconds(ev),
        sid: 0,
        cid: 0,
        ref_id: 0,
        message,
        src_ip,
        dst_ip,
        ip_proto: IPPROTO_TCP,
        src_port: ev.client.port,
        dst_port: ev.server.port,
        generator: GENERATOR_MODSECURITY,
        sig_id: num(primary.and_then(|m| m.id.as_ref())),
        revision: num(primary.and_then(|m| m.rev.as_ref())),
        detail: match s.detail_format {
            DetailFormat::Html => {
                html::detail(ev, raw, decision, primary, notes, s.detail_raw_bytes)
            }
            DetailFormat::Text => detail(ev, raw, decision, notes, s.detail_raw_bytes),
        },
    };
    Mapped {
        decision,
        fields,
        ipv6: ipv6_src || ipv6_dst,
    }
}

/// The class: the rule's CRS `attack-*` tag (`attack-sqli`, `attack-xss`, …) when it has
/// one that Sguil can store, else ALERT_CLASS.
fn alert_class(primary: Option<&RuleMatch>, s: &AlertSettings) -> String {
    primary
        .into_iter()
        .flat_map(|m| m.tags.iter())
        .find(|t| t.starts_with("attack-") && class_ok(t))
        .cloned()
        .unwrap_or_else(|| s.alert_class.clone())
}

/// Part A's time in UTC, to the second (Sguil stores DATETIME).
fn utc_seconds(ev: &AuditEvent) -> DateTime<Utc> {
    ev.time.with_timezone(&Utc).trunc_subsecs(0)
}

/// IPv4 as is, IPv4-mapped IPv6 as IPv4; other IPv6 cannot be stored (`None`, flagged).
fn sguil_addr(e: Endpoint) -> (Option<Ipv4Addr>, bool) {
    match e.addr {
        IpAddr::V4(a) => (Some(a), false),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (Some(v4), false),
            None => (None, true),
        },
    }
}

/// Cuts `bytes` to at most `max`, not inside a UTF-8 sequence.
fn cut_utf8(mut bytes: Vec<u8>, max: usize) -> Vec<u8> {
    if bytes.len() > max {
        let mut end = max;
        while end > 0 && (bytes[end] & 0xC0) == 0x80 {
            end -= 1;
        }
        bytes.truncate(end);
    }
    bytes
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&escape(bytes, false)).into_owned()
}

/// The unique id a detail of either format names: the HTML detail's `<b>Event:</b> <id><br>`
/// line, or the text detail's first line `ModSecurity event <id> (…)`. Reports and tests
/// find an event by it, so both markers stay as they are.
pub fn unique_id_in_detail(detail: &[u8]) -> Option<&str> {
    // Only the id is decoded: a text detail carries the raw event's bytes, UTF-8 or not.
    let marker = html::EVENT_MARKER.as_bytes();
    let (rest, end) = match detail.strip_prefix(b"ModSecurity event ") {
        Some(rest) => (rest, b' '),
        None => {
            let head = &detail[..detail.len().min(4096)];
            let at = head.windows(marker.len()).position(|w| w == marker)?;
            (&head[at + marker.len()..], b'<')
        }
    };
    let id = &rest[..rest.iter().position(|&b| b == end)?];
    std::str::from_utf8(id).ok().filter(|id| !id.is_empty())
}

/// What the event's own checks found wrong with it, one sentence each.
fn integrity_warnings(ev: &AuditEvent) -> Vec<String> {
    let a = &ev.anomalies;
    let mut w = Vec::new();
    if let Some((expected, actual)) = a.size_mismatch {
        w.push(format!(
            "the file is {actual} bytes but its index line says {expected}: it was cut or changed"
        ));
    }
    if a.md5_mismatch {
        w.push("the file's md5 does not match its index line: it was cut or changed".into());
    }
    if a.truncated_messages > 0 {
        w.push(format!(
            "{} rule message(s) cut at ModSecurity's 1,023-byte limit",
            a.truncated_messages
        ));
    }
    if !a.missing_parts.is_empty() {
        w.push(format!(
            "the file ends early (missing parts {})",
            a.missing_parts.iter().collect::<String>()
        ));
    }
    w
}

/// The plain-text detail: the readable summary, then up to `raw_max` bytes of the raw
/// event, cut to what sguild stores with a marker that says so.
fn detail(
    ev: &AuditEvent,
    raw: &[u8],
    decision: Decision,
    notes: &[String],
    raw_max: usize,
) -> Vec<u8> {
    let mut s = String::new();
    write_transaction(&mut s, ev, decision);
    write_findings(&mut s, ev, notes);
    s.push_str("\n--- raw event ---\n");
    with_raw(s.into_bytes(), raw, raw_max)
}

/// The text detail's transaction: what became of it, when, between whom, the request
/// and the response status.
fn write_transaction(s: &mut String, ev: &AuditEvent, decision: Decision) {
    let _ = writeln!(
        s,
        "ModSecurity event {} ({})",
        ev.unique_id,
        match decision {
            Decision::Intercepted => "intercepted",
            Decision::ErrorStatus => "error status",
            Decision::RuleMatched => "rule matched, not intercepted",
            Decision::Activity | Decision::Skip => "activity",
        }
    );
    let _ = writeln!(
        s,
        "Time: {} (logged as {})",
        utc_seconds(ev).format("%Y-%m-%d %H:%M:%S UTC"),
        ev.time.format("%d/%b/%Y:%H:%M:%S%.f %z")
    );
    let _ = writeln!(
        s,
        "Client: {}  Server: {}",
        endpoint(ev.client),
        endpoint(ev.server)
    );
    if sguil_addr(ev.client).1 || sguil_addr(ev.server).1 {
        let _ = writeln!(
            s,
            "Note: IPv6 addresses; Sguil stores only IPv4, so the event's addresses are empty"
        );
    }
    let _ = writeln!(
        s,
        "Request: {} {} {}",
        text(&ev.request.method),
        text(&ev.request.uri),
        text(&ev.request.protocol)
    );
    for name in ["Host", "User-Agent"] {
        if let Some(v) = ev.request.header(name) {
            let _ = writeln!(s, "{name}: {}", text(v));
        }
    }
    let _ = write!(
        s,
        "Status: {}",
        ev.status().map_or_else(|| "-".into(), |v| v.to_string())
    );
    if let Some(i) = &ev.interception {
        let _ = write!(s, "  Intercepted");
        if let Some(p) = i.phase {
            let _ = write!(s, " in phase {p}");
        }
        if let Some(t) = &i.target {
            let _ = write!(s, " to {t}");
        }
    }
    s.push('\n');
}

/// The text detail's findings: the engine mode, warnings, the rules matched and the
/// start of the request body.
fn write_findings(s: &mut String, ev: &AuditEvent, notes: &[String]) {
    if let Some(mode) = ev.engine_mode {
        let _ = writeln!(s, "Engine: {mode:?}");
    }
    for w in integrity_warnings(ev) {
        let _ = writeln!(s, "Warning: {w}");
    }
    for n in notes {
        let _ = writeln!(s, "Warning: {n}");
    }
    let _ = writeln!(s, "Rules matched: {}", ev.matches.len());
    for m in &ev.matches {
        let _ = write!(s, "  [{}]", m.id.as_deref().unwrap_or("no id"));
        if let Some(sev) = m.severity {
            let _ = write!(s, " {}", sev.name());
        }
        let _ = writeln!(s, " {}", m.msg.as_deref().unwrap_or(&m.justification));
        if let Some(d) = &m.data {
            let _ = writeln!(s, "      data: {d}");
        }
        if !m.tags.is_empty() {
            let _ = writeln!(s, "      tags: {}", m.tags.join(", "));
        }
    }
    if let Some(body) = &ev.request.body {
        if !body.bytes.is_empty() {
            let shown = &body.bytes[..body.bytes.len().min(BODY_EXCERPT_BYTES)];
            let _ = writeln!(
                s,
                "Request body ({} of {} bytes): {}",
                shown.len(),
                body.total_len,
                text(shown)
            );
        }
    }
}

/// `out` with the raw event after it, up to `raw_max` bytes of it, and the whole within
/// sguild's MAX_DETAIL_BYTES (each cut said where it is).
fn with_raw(mut out: Vec<u8>, raw: &[u8], raw_max: usize) -> Vec<u8> {
    out.extend_from_slice(&raw[..raw.len().min(raw_max)]);
    if raw.len() > raw_max {
        let marker = format!(
            "\n[... cut by modsec-shipper: {raw_max} of {} bytes of the raw event shown; DETAIL_RAW_BYTES is {raw_max} ...]\n",
            raw.len()
        );
        out.extend_from_slice(marker.as_bytes());
    }
    if out.len() > MAX_DETAIL_BYTES {
        let total = out.len();
        let marker_room = 120;
        out.truncate(MAX_DETAIL_BYTES - marker_room);
        let marker = format!(
            "\n[... cut by modsec-shipper: {} of {total} bytes shown; Sguil stores at most {MAX_DETAIL_BYTES} ...]\n",
            out.len()
        );
        out.extend_from_slice(marker.as_bytes());
    }
    out
}

fn endpoint(e: Endpoint) -> String {
    match e.addr {
        IpAddr::V4(a) => format!("{a}:{}", e.port),
        IpAddr::V6(a) => format!("[{a}]:{}", e.port),
    }
}

#[cfg(test)]
mod tests;
