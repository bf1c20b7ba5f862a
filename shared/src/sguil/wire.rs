//! The lines of the agent protocol: what an event agent sends and what sguild answers
//! (ARCHITECTURE.md, "Sguil's agent protocol", 2–4).
//!
//! sguild leaves several kinds of bad input without any reply (a non-IPv4 address, a
//! non-hex message, an unparsable time, a broken Tcl list) and pastes `hexDetail`
//! unescaped into SQL. So a [`SguilEvent`] can only be built by [`SguilEvent::new`],
//! which checks every field against what sguild can store and answer: a value that
//! passes is put on the wire in a form that needs no escaping at all.

use std::net::Ipv4Addr;

use chrono::{DateTime, Datelike, Utc};
use thiserror::Error;

use super::tcl;

/// `event.class` is VARCHAR(20).
pub const MAX_CLASS_LEN: usize = 20;
/// The hostname names the per-day tables `icmphdr_<host>_<YYYYMMDD>`; MySQL table names
/// stop at 64 characters, so 47 is the longest that works (48 was refused).
pub const MAX_HOSTNAME_LEN: usize = 47;
/// `event.signature` is VARCHAR(255); the message is decoded from hex first.
pub const MAX_MESSAGE_BYTES: usize = 255;
/// `data.data_payload` is TEXT (65,535 characters) and holds the hex as sent: 32,767
/// bytes of detail. sguild silently cuts longer hex, splitting the last byte.
pub const MAX_DETAIL_BYTES: usize = 32_767;
/// Generator id of ModSecurity events in Sguil, as modsec2sguil used.
pub const GENERATOR_MODSECURITY: u32 = 10001;

/// A field sguild could not store or would not answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventError {
    #[error("priority {0} is not 1 (high) to 5")]
    Priority(u8),
    #[error("class `{0}` must be 1 to 20 characters of [A-Za-z0-9._-]")]
    Class(String),
    #[error("hostname `{0}` must be 1 to 47 characters of [A-Za-z0-9._-]")]
    Hostname(String),
    #[error("timestamp {0} is outside the years 1000 to 9999")]
    Time(String),
    #[error("cid 0 is not a cid (sguild's cids start at 1)")]
    Cid,
    #[error("message is {0} bytes; sguild stores at most 255")]
    MessageTooLong(usize),
    #[error("detail is {0} bytes; sguild stores at most 32,767")]
    DetailTooLong(usize),
}

/// The fields of a GenericEvent, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFields {
    /// 0 = a new real-time event (pushed to analysts).
    pub status: u8,
    /// 1 (high) to 5.
    pub priority: u8,
    pub class: String,
    /// The registered hostname.
    pub hostname: String,
    pub time: DateTime<Utc>,
    pub sid: u32,
    pub cid: u32,
    pub ref_id: u32,
    /// Alert text (any bytes; sent as hex).
    pub message: Vec<u8>,
    /// `None` is sent as `{}` (stored as 0.0.0.0): sguild has no room for IPv6.
    pub src_ip: Option<Ipv4Addr>,
    pub dst_ip: Option<Ipv4Addr>,
    pub ip_proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub generator: u32,
    pub sig_id: u32,
    pub revision: u32,
    /// Event detail (any bytes; sent as uppercase hex).
    pub detail: Vec<u8>,
}

/// A GenericEvent that sguild will store and answer. Built only by [`SguilEvent::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SguilEvent {
    fields: EventFields,
}

fn token_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl SguilEvent {
    /// Checks every field; see [`EventError`] for what is refused.
    pub fn new(fields: EventFields) -> Result<SguilEvent, EventError> {
        if !(1..=5).contains(&fields.priority) {
            return Err(EventError::Priority(fields.priority));
        }
        if !token_ok(&fields.class, MAX_CLASS_LEN) {
            return Err(EventError::Class(fields.class));
        }
        if !token_ok(&fields.hostname, MAX_HOSTNAME_LEN) {
            return Err(EventError::Hostname(fields.hostname));
        }
        if !(1000..=9999).contains(&fields.time.year()) {
            return Err(EventError::Time(fields.time.to_rfc3339()));
        }
        if fields.cid == 0 {
            return Err(EventError::Cid);
        }
        if fields.message.len() > MAX_MESSAGE_BYTES {
            return Err(EventError::MessageTooLong(fields.message.len()));
        }
        if fields.detail.len() > MAX_DETAIL_BYTES {
            return Err(EventError::DetailTooLong(fields.detail.len()));
        }
        Ok(SguilEvent { fields })
    }

    pub fn fields(&self) -> &EventFields {
        &self.fields
    }

    pub fn cid(&self) -> u32 {
        self.fields.cid
    }

    /// The GenericEvent line, with its `\n`. Every element is a number, a token of
    /// `[A-Za-z0-9._-]`, uppercase hex, a dotted quad, `{}` or the braced time: nothing
    /// that Tcl or SQL could read another way.
    pub fn to_line(&self) -> String {
        let f = &self.fields;
        let ip = |a: Option<Ipv4Addr>| a.map_or_else(|| "{}".to_string(), |a| a.to_string());
        let hex_or_empty = |b: &[u8]| {
            if b.is_empty() {
                "{}".to_string()
            } else {
                crate::hex::upper(b)
            }
        };
        format!(
            "GenericEvent {} {} {} {} {{{}}} {} {} {} {} {} {} {} {} {} {} {} {} {}\n",
            f.status,
            f.priority,
            f.class,
            f.hostname,
            f.time.format("%Y-%m-%d %H:%M:%S"),
            f.sid,
            f.cid,
            f.ref_id,
            hex_or_empty(&f.message),
            ip(f.src_ip),
            ip(f.dst_ip),
            f.ip_proto,
            f.src_port,
            f.dst_port,
            f.generator,
            f.sig_id,
            f.revision,
            hex_or_empty(&f.detail),
        )
    }
}

/// `VersionInfo {<banner>}`: the server's own version string echoed back.
pub fn version_info_line(version: &str) -> String {
    format!("VersionInfo {}\n", tcl::element(version))
}

/// `RegisterAgent <type> <host> <net>`.
pub fn register_line(agent_type: &str, hostname: &str, net_group: &str) -> String {
    format!(
        "RegisterAgent {} {} {}\n",
        tcl::element(agent_type),
        tcl::element(hostname),
        tcl::element(net_group)
    )
}

/// Why sguild refused an event (`Failed {…}`), as the delivery logic must tell apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailedKind {
    /// `Duplicate entry '<sid>-<cid>' for key 'PRIMARY'`: that (sid, cid) is stored.
    Duplicate { sid: u32, cid: u32 },
    /// The database is gone (`Lost connection`, `Server has gone away`): sguild will fail
    /// every event until it is restarted; stop and back off.
    Outage,
    /// This event was refused (SQL error, wrong length, …).
    Rejected,
}

/// One line from sguild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLine {
    /// The banner: sguild's version string, e.g. `SGUIL-1.0.0 OPENSSL ENABLED`.
    Banner(String),
    /// `Connection Refused.`: this address is not in sguild.access.
    ConnectionRefused,
    AgentInfo {
        hostname: String,
        agent_type: String,
        net_group: String,
        sid: u32,
        max_cid: u32,
    },
    ConfirmEvent(u32),
    Failed {
        kind: FailedKind,
        text: String,
    },
    Ping,
    Pong,
    /// Anything else (kept whole for the log).
    Other(String),
}

/// Parses one line from sguild (without or with its CR LF).
pub fn parse_server_line(line: &str) -> ServerLine {
    let line = line.trim_end_matches(['\r', '\n']);
    if line == "Connection Refused." {
        return ServerLine::ConnectionRefused;
    }
    if line.starts_with("SGUIL-") {
        return ServerLine::Banner(line.to_string());
    }
    let Ok(items) = tcl::split(line) else {
        return ServerLine::Other(line.to_string());
    };
    let num = |s: &String| s.parse::<u32>().ok();
    match items
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["PING"] => ServerLine::Ping,
        ["PONG"] => ServerLine::Pong,
        ["ConfirmEvent", cid] => match cid.parse() {
            Ok(cid) => ServerLine::ConfirmEvent(cid),
            Err(_) => ServerLine::Other(line.to_string()),
        },
        ["Failed", text] => ServerLine::Failed {
            kind: classify_failed(text),
            text: text.to_string(),
        },
        ["AgentInfo", ..] if items.len() == 6 => match (num(&items[4]), num(&items[5])) {
            (Some(sid), Some(max_cid)) => ServerLine::AgentInfo {
                hostname: items[1].clone(),
                agent_type: items[2].clone(),
                net_group: items[3].clone(),
                sid,
                max_cid,
            },
            _ => ServerLine::Other(line.to_string()),
        },
        _ => ServerLine::Other(line.to_string()),
    }
}

/// What a `Failed` text means for delivery (the same texts come back through snort_agent).
pub fn classify_failed(text: &str) -> FailedKind {
    if let Some(rest) = text.split("Duplicate entry '").nth(1) {
        if let Some((sid, cid)) = rest.split('\'').next().and_then(|k| k.split_once('-')) {
            if let (Ok(sid), Ok(cid)) = (sid.parse(), cid.parse()) {
                return FailedKind::Duplicate { sid, cid };
            }
        }
    }
    if text.contains("Lost connection") || text.contains("Server has gone away") {
        return FailedKind::Outage;
    }
    FailedKind::Rejected
}

/// A valid event's fields, for unit tests here and in the other protocol modules.
#[cfg(test)]
pub(crate) fn test_fields() -> EventFields {
    use chrono::TimeZone;
    EventFields {
        status: 0,
        priority: 1,
        class: "web-attack".into(),
        hostname: "websrv-a".into(),
        time: Utc.with_ymd_and_hms(2026, 11, 28, 1, 56, 31).unwrap(),
        sid: 1,
        cid: 1,
        ref_id: 0,
        message: b"ModSecurity: SQL injection attempt #1".to_vec(),
        src_ip: Some(Ipv4Addr::new(192, 0, 2, 10)),
        dst_ip: Some(Ipv4Addr::new(198, 51, 100, 20)),
        ip_proto: 6,
        src_port: 51234,
        dst_port: 80,
        generator: GENERATOR_MODSECURITY,
        sig_id: 950001,
        revision: 2,
        detail: b"GET /?id=1%27%".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn fields() -> EventFields {
        test_fields()
    }

    #[test]
    fn the_line_of_the_observed_session() {
        let line = SguilEvent::new(fields()).unwrap().to_line();
        assert_eq!(
            line,
            "GenericEvent 0 1 web-attack websrv-a {2026-11-28 01:56:31} 1 1 0 4D6F6453656375726974793A2053514C20696E6A656374696F6E20617474656D7074202331 192.0.2.10 198.51.100.20 6 51234 80 10001 950001 2 474554202F3F69643D3125323725\n"
        );
        let items = tcl::split(line.trim_end()).unwrap();
        assert_eq!(items.len(), 19, "the command word and 18 fields");
    }

    #[test]
    fn empty_addresses_and_detail_are_braces() {
        let mut f = fields();
        f.src_ip = None;
        f.detail = Vec::new();
        let line = SguilEvent::new(f).unwrap().to_line();
        assert!(
            line.contains(" 4D6F {} ") || line.contains(" {} 198.51.100.20 "),
            "{line}"
        );
        assert!(line.ends_with(" 2 {}\n"), "{line}");
    }

    #[test]
    fn each_field_sguild_cannot_take_is_refused() {
        type Change = Box<dyn Fn(&mut EventFields)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|f| f.priority = 0), "priority"),
            (Box::new(|f| f.priority = 6), "priority"),
            (
                Box::new(|f| f.class = "web-application-attack".into()),
                "class",
            ),
            (Box::new(|f| f.class = "a b".into()), "class"),
            (Box::new(|f| f.class = String::new()), "class"),
            (Box::new(|f| f.hostname = "h".repeat(48)), "hostname"),
            (Box::new(|f| f.hostname = "web`srv".into()), "hostname"),
            (Box::new(|f| f.hostname = "web{srv".into()), "hostname"),
            (Box::new(|f| f.cid = 0), "cid"),
            (Box::new(|f| f.message = vec![b'x'; 256]), "255"),
            (Box::new(|f| f.detail = vec![0; 32_768]), "32,767"),
            (
                Box::new(|f| f.time = Utc.with_ymd_and_hms(99, 1, 1, 0, 0, 0).unwrap()),
                "years",
            ),
        ];
        for (change, want) in cases {
            let mut f = fields();
            change(&mut f);
            let e = SguilEvent::new(f).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let mut f = fields();
        f.hostname = "h".repeat(47);
        f.message = vec![b'x'; 255];
        f.detail = vec![0xff; 32_767];
        let line = SguilEvent::new(f).unwrap().to_line();
        assert!(line.len() < 70_000 && line.contains(&"FF".repeat(32_767)));
    }

    #[test]
    fn server_lines() {
        assert_eq!(
            parse_server_line("SGUIL-1.0.0 OPENSSL ENABLED\r\n"),
            ServerLine::Banner("SGUIL-1.0.0 OPENSSL ENABLED".into())
        );
        assert_eq!(
            parse_server_line("Connection Refused.\r\n"),
            ServerLine::ConnectionRefused
        );
        assert_eq!(
            parse_server_line("AgentInfo {web 1} modsecurity webfarm 3 41\r\n"),
            ServerLine::AgentInfo {
                hostname: "web 1".into(),
                agent_type: "modsecurity".into(),
                net_group: "webfarm".into(),
                sid: 3,
                max_cid: 41
            }
        );
        assert_eq!(
            parse_server_line("ConfirmEvent 7\r\n"),
            ServerLine::ConfirmEvent(7)
        );
        assert_eq!(parse_server_line("PONG\r\n"), ServerLine::Pong);
        assert_eq!(parse_server_line("PING"), ServerLine::Ping);
        let dup = parse_server_line(
            "Failed {mysqlexec/db server: Duplicate entry '1-5' for key 'PRIMARY'}\r\n",
        );
        assert!(
            matches!(
                dup,
                ServerLine::Failed {
                    kind: FailedKind::Duplicate { sid: 1, cid: 5 },
                    ..
                }
            ),
            "{dup:?}"
        );
        for outage in [
            "Failed {mysqlexec/db server: Lost connection to server during query}",
            "Failed {mysqlexec/db server: Server has gone away}",
        ] {
            assert!(matches!(
                parse_server_line(outage),
                ServerLine::Failed {
                    kind: FailedKind::Outage,
                    ..
                }
            ));
        }
        let sql =
            parse_server_line("Failed {mysqlexec/db server: You have an error in your SQL syntax}");
        assert!(matches!(
            sql,
            ServerLine::Failed {
                kind: FailedKind::Rejected,
                ..
            }
        ));
        assert!(matches!(
            parse_server_line("ConfirmEvent x"),
            ServerLine::Other(_)
        ));
        assert!(matches!(
            parse_server_line("Failed {open"),
            ServerLine::Other(_)
        ));
    }

    #[test]
    fn handshake_lines() {
        assert_eq!(
            version_info_line("SGUIL-1.0.0 OPENSSL ENABLED"),
            "VersionInfo {SGUIL-1.0.0 OPENSSL ENABLED}\n"
        );
        assert_eq!(
            register_line("modsecurity", "websrv-a", "webfarm"),
            "RegisterAgent modsecurity websrv-a webfarm\n"
        );
    }

    proptest! {
        /// Whatever an attacker puts in the message and detail, the line is one Tcl list
        /// of 19 elements, ASCII, and the free text is hex only.
        #[test]
        fn hostile_text_never_breaks_the_line(message in proptest::collection::vec(any::<u8>(), 0..=255), detail in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut f = fields();
            f.message = message.clone();
            f.detail = detail;
            let line = SguilEvent::new(f).unwrap().to_line();
            prop_assert!(line.is_ascii());
            prop_assert_eq!(line.matches('\n').count(), 1);
            let items = tcl::split(line.trim_end()).unwrap();
            prop_assert_eq!(items.len(), 19);
            prop_assert!(items[9].is_empty() || items[9].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
            prop_assert!(items[18].is_empty() || items[18].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
        }

        #[test]
        fn parse_server_line_never_panics(line in "\\PC{0,120}") {
            let _ = parse_server_line(&line);
        }
    }
}
