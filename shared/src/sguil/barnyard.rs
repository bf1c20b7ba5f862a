//! The second way into Sguil: through the snort_agent on the sensor, as barnyard2 does
//! (ARCHITECTURE.md, "Sguil's agent protocol", 6), for sites where the web server may not reach sguild.
//!
//! ```text
//! us:          SidCidRequest <sensor>
//! snort_agent: SidCidResponse <sid> <maxCid>
//! us:          RTEVENT <46 fields>
//! snort_agent: Confirm <cid>        |  Failed to insert <cid>: <sguild's error>
//! ```
//!
//! Three things differ from talking to sguild directly, and shape this module:
//!
//! - The message travels as text, not hex, and the line is parsed as a Tcl list three
//!   times (snort_agent, sguild's dispatcher, then `eval`): a list that does not parse
//!   makes snort_agent exit, and a line break inside an element (which Tcl re-quotes as a
//!   literal one) would split the line on its way to sguild. So the message is reduced to
//!   one line of printable text before it is quoted; everything else is a number, a
//!   token, a dotted quad, the braced time or uppercase hex.
//! - Replies carry the cid, so each reply is matched to its event.
//! - Replies carry the cid, and must be matched by it: snort_agent relays a burst of
//!   them in reverse order.
//! - sguild gives *no* reply to an event equal to the last one it stored for the sensor
//!   (its duplicate check remembers only that one). Only a resend can be that event. The
//!   usual one (a run killed after sguild stored its last event) has the highest cid
//!   sguild holds, which the `SidCidResponse` opening the session gives: it is stored, and
//!   is settled without sending. Other resends (cid at or below that maximum) are
//!   followed by a `SidCidRequest` as a fence: sguild answers in order, so once the fence
//!   is answered, sguild has handled the event, and an event still without an answer
//!   after the reply timeout was met with that silence: it is stored. A new event without
//!   an answer is a timeout (snort_agent drops what comes while it has lost sguild), and
//!   the session ends so that it is sent again.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::client::{Answer, SessionError};
use super::conn::Connection;
use super::tcl;
use super::wire::{classify_failed, FailedKind, SguilEvent};

/// snort_agent listens for barnyard2 here (its BY_PORT), on the sensor itself.
pub const DEFAULT_AGENT_PORT: u16 = 7735;
pub const DEFAULT_AGENT_HOST: &str = "127.0.0.1";
/// barnyard2 waits 15 s for each reply.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// Events in flight by default. snort_agent forwards each event to sguild in several
/// small TLS writes with Nagle's algorithm on, so every event waits out sguild's delayed
/// ACK (~45 ms): one at a time manages ~21 events/s against a real sguild, 32 in flight
/// ~540/s (measured). Unlike a direct connection, ours dying mid-window leaves sguild's
/// own connection (snort_agent's) whole, so pipelining carries no risk to sguild.
pub const DEFAULT_SEND_WINDOW: usize = 32;
/// Fields of an RTEVENT after the command word; snort_agent exits on any other count.
pub const RTEVENT_FIELDS: usize = 46;

/// The message as one line of text: invalid UTF-8 becomes `?` and every control
/// character (line breaks, NUL, DEL, C1) a space, so it is never longer in bytes than
/// what came in (sguild's `signature` is VARCHAR(255)).
pub fn message_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, skip) = match std::str::from_utf8(rest) {
            Ok(all) => (all, 0),
            Err(e) => {
                let valid = std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default();
                (valid, e.error_len().unwrap_or(rest.len() - e.valid_up_to()))
            }
        };
        out.extend(valid.chars().map(|c| if c.is_control() { ' ' } else { c }));
        if skip > 0 {
            out.push('?');
        }
        rest = &rest[valid.len() + skip..];
    }
    out
}

/// The RTEVENT line (with its `\n`) for `e`, in barnyard2's field order.
pub fn rtevent_line(e: &SguilEvent) -> String {
    let f = e.fields();
    let time = f.time.format("%Y-%m-%d %H:%M:%S").to_string();
    let dec = |a: Option<Ipv4Addr>| a.map_or(0, u32::from).to_string();
    let dotted = |a: Option<Ipv4Addr>| a.map_or_else(|| "{}".to_string(), |a| a.to_string());
    let payload = if f.detail.is_empty() {
        "{}".to_string()
    } else {
        crate::hex::upper(&f.detail)
    };
    // Unknown here: ip hlen, tos, len, id, flags, offset, ttl, checksum (8); icmp type,
    // code, checksum, id, seq (5); tcp seq, ack, offset, reserved, flags, window,
    // checksum, urgent, udp len, udp checksum (10).
    let unknown = |n: usize| std::iter::repeat("{}".to_string()).take(n);
    let mut fields: Vec<String> = vec![
        f.status.to_string(),
        f.sid.to_string(),
        f.cid.to_string(),
        f.hostname.clone(),
        // snort's event id and the event it refers to (itself), and that one's time
        f.cid.to_string(),
        f.cid.to_string(),
        format!("{{{time}}}"),
        f.generator.to_string(),
        f.sig_id.to_string(),
        f.revision.to_string(),
        tcl::element(&message_text(&f.message)),
        format!("{{{time}}}"),
        f.priority.to_string(),
        f.class.clone(),
        dec(f.src_ip),
        dotted(f.src_ip),
        dec(f.dst_ip),
        dotted(f.dst_ip),
        f.ip_proto.to_string(),
        "4".into(),
    ];
    fields.extend(unknown(8 + 5));
    fields.extend([f.src_port.to_string(), f.dst_port.to_string()]);
    fields.extend(unknown(10));
    fields.push(payload);
    debug_assert_eq!(fields.len(), RTEVENT_FIELDS);
    format!("RTEVENT {}\n", fields.join(" "))
}

/// `SidCidRequest <sensor>` (snort_agent answers with the sid it registered and the
/// highest cid sguild holds for it).
pub fn sid_cid_request_line(sensor: &str) -> String {
    format!("SidCidRequest {}\n", tcl::element(sensor))
}

/// One line from snort_agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentLine {
    SidCidResponse {
        sid: u32,
        max_cid: u32,
    },
    Confirm(u32),
    /// `Failed to insert <cid>: <text>` (the text is sguild's, not a Tcl list).
    Failed {
        cid: u32,
        kind: FailedKind,
        text: String,
    },
    Other(String),
}

impl AgentLine {
    /// The event this line answers, if it answers one.
    fn cid(&self) -> Option<u32> {
        match self {
            AgentLine::Confirm(c) | AgentLine::Failed { cid: c, .. } => Some(*c),
            _ => None,
        }
    }
}

/// Parses a line from snort_agent (with or without its line end).
pub fn parse_agent_line(line: &str) -> AgentLine {
    let line = line.trim_end_matches(['\r', '\n']);
    let other = || AgentLine::Other(line.to_string());
    if let Some(rest) = line.strip_prefix("Failed to insert ") {
        let Some((cid, text)) = rest.split_once(':') else {
            return other();
        };
        let Ok(cid) = cid.trim().parse() else {
            return other();
        };
        let text = text.strip_prefix(' ').unwrap_or(text).to_string();
        return AgentLine::Failed {
            cid,
            kind: classify_failed(&text),
            text,
        };
    }
    let Ok(items) = tcl::split(line) else {
        return other();
    };
    match items
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["SidCidResponse", sid, max] => match (sid.parse(), max.parse()) {
            (Ok(sid), Ok(max_cid)) => AgentLine::SidCidResponse { sid, max_cid },
            _ => other(),
        },
        ["Confirm", cid] => cid.parse().map_or_else(|_| other(), AgentLine::Confirm),
        _ => other(),
    }
}

/// An event written (or settled without writing) and not yet reported.
#[derive(Debug, Clone)]
struct Pending {
    sid: u32,
    cid: u32,
    /// Known without asking: the highest cid sguild held at the start is stored.
    settled: Option<Answer>,
    /// The fence written after it, when it may be met with silence.
    fence: Option<u64>,
}

/// A session with snort_agent.
///
/// snort_agent relays sguild's answers out of order when several come at once (its
/// handler for a line from sguild calls `update`, which handles the next line first:
/// a burst comes back reversed), so answers are matched by cid, and fences are counted:
/// sguild answers them in order, so once `n` fence answers are in, sguild has handled
/// everything written before fence `n`.
pub struct BarnyardSession {
    conn: Connection,
    sensor: String,
    /// The sid snort_agent registered with sguild.
    pub sid: u32,
    /// The highest cid sguild held for the sid when the session opened: a cid above it
    /// is a new event, one at or below it may be a resend of a stored event.
    pub max_cid: u32,
    reply_timeout: Duration,
    waiting: VecDeque<Pending>,
    /// Answers read for events after the oldest one, by cid.
    answers: std::collections::HashMap<u32, AgentLine>,
    fences_sent: u64,
    fences_answered: u64,
}

impl BarnyardSession {
    /// Connects to snort_agent and asks for the sid and the highest cid.
    pub fn open(
        host: &str,
        port: u16,
        sensor: &str,
        reply_timeout: Duration,
    ) -> Result<BarnyardSession, SessionError> {
        let name = format!("snort_agent {host}:{port}");
        let mut conn = Connection::open_plain(&name, host, port, Duration::from_secs(10))?;
        let server = conn.server().to_string();
        conn.send_line(&sid_cid_request_line(sensor))?;
        let deadline = std::time::Instant::now() + reply_timeout;
        let line = loop {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            let line = conn
                .read_line(wait)?
                .ok_or_else(|| SessionError::Registration {
                    server: server.clone(),
                    why: format!(
                        "no SidCidResponse within {} s: snort_agent answers only while it is connected and registered to sguild (and sguild's database is up)",
                        reply_timeout.as_secs()
                    ),
                })?;
            // snort_agent names connections after a memory address, so a new one can
            // inherit the name of one that just died, and with it the answers to the
            // events that one had in flight.
            match parse_agent_line(&line) {
                AgentLine::Confirm(_) | AgentLine::Failed { .. } => {
                    log::debug!("{server}: `{line}` was meant for an earlier connection");
                }
                _ => break line,
            }
        };
        match parse_agent_line(&line) {
            AgentLine::SidCidResponse { sid, max_cid } => Ok(BarnyardSession {
                conn,
                sensor: sensor.to_string(),
                sid,
                max_cid,
                reply_timeout,
                waiting: VecDeque::new(),
                answers: std::collections::HashMap::new(),
                fences_sent: 0,
                fences_answered: 0,
            }),
            _ => Err(SessionError::Registration {
                server,
                why: format!("expected SidCidResponse, got `{line}`"),
            }),
        }
    }

    pub fn server(&self) -> &str {
        self.conn.server()
    }

    /// Ends the session politely ([`Connection::close`]); for a session in step.
    pub fn close(self) {
        self.conn.close();
    }

    /// Writes `events` (one write). A resend of the highest stored cid is settled
    /// without sending (it is the one sguild would meet with silence); when the others
    /// include possible resends, a fence follows them.
    pub fn submit(&mut self, events: &[SguilEvent]) -> Result<(), SessionError> {
        let mut lines = Vec::with_capacity(events.len() + 1);
        let first_new = self.waiting.len();
        let mut fenced = false;
        for e in events {
            let (sid, cid) = (e.fields().sid, e.cid());
            let settled = (sid == self.sid && cid == self.max_cid).then_some(Answer::AlreadyStored);
            if settled.is_none() {
                lines.push(rtevent_line(e));
                fenced |= cid <= self.max_cid;
            }
            self.waiting.push_back(Pending {
                sid,
                cid,
                settled,
                fence: None,
            });
        }
        if fenced {
            lines.push(sid_cid_request_line(&self.sensor));
            self.fences_sent += 1;
            let n = self.fences_sent;
            let max_cid = self.max_cid;
            for p in self.waiting.iter_mut().skip(first_new) {
                if p.settled.is_none() && p.cid <= max_cid {
                    p.fence = Some(n);
                }
            }
        }
        if lines.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.conn.send_lines(&lines) {
            self.waiting.truncate(first_new);
            self.fences_sent -= u64::from(fenced);
            return Err(e.into());
        }
        Ok(())
    }

    /// Events submitted and not yet reported by [`BarnyardSession::next_answer`].
    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }

    fn out_of_step(&self, cid: u32, line: String) -> SessionError {
        SessionError::OutOfStep {
            server: self.server().to_string(),
            cid,
            line,
        }
    }

    /// Files a line read from snort_agent: an answer to an event in flight (whichever
    /// connection sent it: an answer is about the event with that cid), or to a fence.
    /// Answers to nothing in flight were meant for an earlier connection of the same
    /// name (see [`BarnyardSession::open`]) and are dropped; anything else is out of step.
    fn take(&mut self, line: String, cid: u32) -> Result<(), SessionError> {
        let answer = parse_agent_line(&line);
        if let AgentLine::SidCidResponse { .. } = answer {
            if self.fences_answered < self.fences_sent {
                self.fences_answered += 1;
            } else {
                log::debug!("{}: `{line}` answers no fence of ours", self.server());
            }
            return Ok(());
        }
        let Some(c) = answer.cid() else {
            return Err(self.out_of_step(cid, line));
        };
        let in_flight = self
            .waiting
            .iter()
            .any(|p| p.cid == c && p.settled.is_none());
        if in_flight && !self.answers.contains_key(&c) {
            self.answers.insert(c, answer);
        } else {
            log::debug!("{}: `{line}` answers no event in flight", self.server());
        }
        Ok(())
    }

    /// The answer to the oldest event in flight.
    pub fn next_answer(&mut self) -> Result<Answer, SessionError> {
        let Some(front) = self.waiting.front().cloned() else {
            return Err(self.out_of_step(0, "(no event in flight)".into()));
        };
        if let Some(outcome) = front.settled {
            self.waiting.pop_front();
            return Ok(outcome);
        }
        let (sid, cid) = (front.sid, front.cid);
        // Set once sguild is known to have handled the event: its answer, if it has
        // one, is then only held up inside snort_agent.
        let mut grace: Option<std::time::Instant> = None;
        loop {
            if let Some(answer) = self.answers.remove(&cid) {
                self.waiting.pop_front();
                return match answer {
                    AgentLine::Confirm(_) => Ok(Answer::Confirmed),
                    AgentLine::Failed {
                        kind: FailedKind::Duplicate { sid: s, cid: c },
                        ..
                    } if s == sid && c == cid => Ok(Answer::AlreadyStored),
                    AgentLine::Failed {
                        kind: FailedKind::Outage,
                        text,
                        ..
                    } => Err(SessionError::Outage {
                        server: self.server().to_string(),
                        text,
                    }),
                    AgentLine::Failed { text, .. } => Ok(Answer::Rejected(text)),
                    other => Err(self.out_of_step(cid, format!("{other:?}"))),
                };
            }
            if grace.is_none() && front.fence.is_some_and(|n| self.fences_answered >= n) {
                grace = Some(std::time::Instant::now() + self.reply_timeout);
            }
            let wait = match grace {
                Some(g) => g.saturating_duration_since(std::time::Instant::now()),
                None => self.reply_timeout,
            };
            match self.conn.read_line(wait)? {
                Some(line) => self.take(line, cid)?,
                None if grace.is_some() => {
                    // sguild handled it (the fence after it is answered) and said
                    // nothing: the one event it does that for is a repeat of the last
                    // one it stored for this sensor.
                    log::info!(
                        "{}: no answer to resent cid {cid}: sguild's last stored event, so it is stored",
                        self.server()
                    );
                    self.waiting.pop_front();
                    return Ok(Answer::AlreadyStored);
                }
                None => {
                    return Err(SessionError::Timeout {
                        server: self.server().to_string(),
                        cid,
                        secs: self.reply_timeout.as_secs(),
                    })
                }
            }
        }
    }

    /// Checks that snort_agent (and, through it, sguild) answers: a `SidCidRequest`
    /// round trip. Only with nothing in flight.
    pub fn ping(&mut self) -> Result<(), SessionError> {
        while !self.waiting.is_empty() {
            let stale = self.next_answer()?;
            log::debug!(
                "{}: late answer to an earlier event: {stale:?}",
                self.server()
            );
        }
        self.conn.send_line(&sid_cid_request_line(&self.sensor))?;
        self.fences_sent += 1;
        while self.fences_answered < self.fences_sent {
            let line =
                self.conn
                    .read_line(self.reply_timeout)?
                    .ok_or_else(|| SessionError::Timeout {
                        server: self.server().to_string(),
                        cid: 0,
                        secs: self.reply_timeout.as_secs(),
                    })?;
            self.take(line, 0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sguil::wire::test_fields;
    use proptest::prelude::*;

    fn event(message: &[u8], detail: &[u8]) -> SguilEvent {
        let mut f = test_fields();
        (f.sid, f.cid, f.sig_id, f.revision) = (3, 42, 949110, 1);
        f.message = message.to_vec();
        f.detail = detail.to_vec();
        SguilEvent::new(f).unwrap()
    }

    #[test]
    fn an_rtevent_has_46_fields_in_barnyard2_order() {
        let line = rtevent_line(&event(b"MSc 403 SQL Injection Attack", b"GET /"));
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let items = tcl::split(line.trim_end()).unwrap();
        assert_eq!(items[0], "RTEVENT");
        let f = &items[1..];
        assert_eq!(f.len(), RTEVENT_FIELDS);
        assert_eq!(&f[..4], ["0", "3", "42", "websrv-a"]);
        assert_eq!(f[6], "2026-11-28 01:56:31");
        assert_eq!(&f[7..10], ["10001", "949110", "1"]);
        assert_eq!(f[10], "MSc 403 SQL Injection Attack");
        assert_eq!(f[11], "2026-11-28 01:56:31");
        assert_eq!(&f[12..14], ["1", "web-attack"]);
        assert_eq!(f[14], u32::from(Ipv4Addr::new(192, 0, 2, 10)).to_string());
        assert_eq!(f[15], "192.0.2.10");
        assert_eq!(f[16], "3325256724");
        assert_eq!(f[17], "198.51.100.20");
        assert_eq!(&f[18..20], ["6", "4"]);
        assert!(f[20..33].iter().all(String::is_empty));
        assert_eq!(&f[33..35], ["51234", "80"]);
        assert!(f[35..45].iter().all(String::is_empty));
        assert_eq!(f[45], "474554202F");
    }

    #[test]
    fn ipv6_events_carry_no_address() {
        let mut fields = event(b"m", b"").fields().clone();
        fields.src_ip = None;
        let line = rtevent_line(&SguilEvent::new(fields).unwrap());
        let items = tcl::split(line.trim_end()).unwrap();
        assert_eq!((items[15].as_str(), items[16].as_str()), ("0", ""));
        assert_eq!(items[46], "", "an empty payload is {{}}");
    }

    #[test]
    fn message_text_is_one_printable_line() {
        assert_eq!(message_text(b"a\nb\r\x00c\x7f"), "a b  c ");
        assert_eq!(message_text(b"caf\xc3\xa9 \xff!"), "caf\u{e9} ?!");
        assert_eq!(message_text(b"{[$x]} \\ \""), "{[$x]} \\ \"");
    }

    #[test]
    fn agent_lines() {
        assert_eq!(
            parse_agent_line("SidCidResponse 3 41\n"),
            AgentLine::SidCidResponse {
                sid: 3,
                max_cid: 41
            }
        );
        assert_eq!(parse_agent_line("Confirm 42"), AgentLine::Confirm(42));
        let dup = parse_agent_line(
            "Failed to insert 42: mysqlexec/db server: Duplicate entry '3-42' for key 'PRIMARY'",
        );
        assert!(
            matches!(
                dup,
                AgentLine::Failed {
                    cid: 42,
                    kind: FailedKind::Duplicate { sid: 3, cid: 42 },
                    ..
                }
            ),
            "{dup:?}"
        );
        assert!(matches!(
            parse_agent_line(
                "Failed to insert 7: mysqlexec/db server: Lost connection to server during query"
            ),
            AgentLine::Failed {
                cid: 7,
                kind: FailedKind::Outage,
                ..
            }
        ));
        let odd = parse_agent_line("Failed to insert 7: unbalanced {brace");
        assert!(
            matches!(&odd, AgentLine::Failed { cid: 7, kind: FailedKind::Rejected, text } if text == "unbalanced {brace"),
            "{odd:?}"
        );
        for other in [
            "Confirm x",
            "Failed to insert x: y",
            "SidCidResponse 1",
            "{",
        ] {
            assert!(
                matches!(parse_agent_line(other), AgentLine::Other(_)),
                "{other}"
            );
        }
    }

    proptest! {
        /// Whatever the message holds, the line is one Tcl list of 47 words on one line,
        /// the message comes back as sent (made printable), and it stays one list when
        /// Tcl re-quotes it (no element may hold a line break).
        #[test]
        fn hostile_messages_never_break_the_list(
            message in proptest::collection::vec(any::<u8>(), 0..=255),
            text in "[{}\\[\\]$;\"\\\\ #\n\r\t\u{0}a-z\u{80}-\u{10ffff}]{0,60}",
        ) {
            for m in [message.clone(), text.as_bytes().iter().copied().take(255).collect()] {
                let line = rtevent_line(&event(&m, b"x"));
                prop_assert_eq!(line.matches('\n').count(), 1);
                prop_assert!(!line.contains('\r') && !line.contains('\0'));
                let items = tcl::split(line.trim_end()).unwrap();
                prop_assert_eq!(items.len(), RTEVENT_FIELDS + 1);
                prop_assert_eq!(&items[11], &message_text(&m));
                prop_assert!(items[11].len() <= m.len());
                prop_assert!(!items[11].chars().any(char::is_control));
            }
        }

        #[test]
        fn parse_agent_line_never_panics(line in "\\PC{0,120}") {
            let _ = parse_agent_line(&line);
        }
    }
}
