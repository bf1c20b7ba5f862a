//! Where shipped events go: sguild, the snort_agent (OUTPUT barnyard), JSON lines
//! (OUTPUT stdout) or a line for a person per event (OUTPUT text).

use std::io::Write;

use serde_json::json;

use super::settings::{Output, ShipperSettings};
use crate::escape::escape_text;
use crate::sguil::barnyard::BarnyardSession;
use crate::sguil::client::{AgentSession, Answer, SessionError};
use crate::sguil::conn::ConnError;
use crate::sguil::conn::Connection;
use crate::sguil::wire::SguilEvent;

/// A destination that answers each event, in order.
pub trait Sink {
    /// For log lines: the server, or `stdout`.
    fn name(&self) -> String;
    /// The sensor id events carry.
    fn sid(&self) -> u32;
    /// The hostname events carry (the registered one).
    fn hostname(&self) -> &str;
    /// The highest cid the destination already holds for [`Sink::sid`].
    fn max_cid(&self) -> u32;
    /// Writes `events` without waiting for their answers.
    fn submit(&mut self, events: &[SguilEvent]) -> Result<(), SessionError>;
    /// The answer to the oldest event submitted and not yet answered.
    fn next_answer(&mut self) -> Result<Answer, SessionError>;
    /// Checks the destination is alive (idle keep-alive).
    fn ping(&mut self) -> Result<(), SessionError>;
    /// Ends a session that is in step (nothing broke) the way the server expects, so
    /// it logs a normal disconnect. One that broke is just dropped.
    fn close(self: Box<Self>) {}
}

/// Opens where `settings` send events: connects and registers (sguil output), asks the
/// snort_agent for the sid (barnyard output), or takes stdout.
pub fn connect(settings: &ShipperSettings) -> Result<Box<dyn Sink>, String> {
    match &settings.output {
        Output::Sguil(s) => {
            let conn = Connection::open(&s.connect).map_err(|e| e.to_string())?;
            let session = AgentSession::register(
                conn,
                &s.agent_type,
                &s.hostname,
                &s.net_group,
                s.reply_timeout,
            )
            .map_err(|e| e.to_string())?;
            log::info!(
                "{}: registered as {} (sid {}, sguild holds cids up to {})",
                session.server(),
                s.hostname,
                session.sid,
                session.max_cid
            );
            Ok(Box::new(SguilSink {
                session,
                hostname: s.hostname.clone(),
            }))
        }
        Output::Barnyard(b) => {
            let session = BarnyardSession::open(&b.host, b.port, &b.hostname, b.reply_timeout)
                .map_err(|e| e.to_string())?;
            log::info!(
                "{}: sensor {} is sid {} (sguild holds cids up to {})",
                session.server(),
                b.hostname,
                session.sid,
                session.max_cid
            );
            Ok(Box::new(BarnyardSink {
                session,
                hostname: b.hostname.clone(),
            }))
        }
        Output::Stdout | Output::Text => Ok(Box::new(JsonLinesSink {
            out: Box::new(std::io::stdout()) as Box<dyn Write>,
            hostname: settings.hostname.clone(),
            written: 0,
            text: settings.output == Output::Text,
        })),
    }
}

/// A registered sguild session.
pub struct SguilSink {
    pub session: AgentSession,
    pub hostname: String,
}

impl Sink for SguilSink {
    fn name(&self) -> String {
        self.session.server().to_string()
    }
    fn sid(&self) -> u32 {
        self.session.sid
    }
    fn hostname(&self) -> &str {
        &self.hostname
    }
    fn max_cid(&self) -> u32 {
        self.session.max_cid
    }
    fn submit(&mut self, events: &[SguilEvent]) -> Result<(), SessionError> {
        self.session.submit(events)
    }
    fn next_answer(&mut self) -> Result<Answer, SessionError> {
        self.session.next_answer()
    }
    fn ping(&mut self) -> Result<(), SessionError> {
        self.session.ping()
    }
    fn close(self: Box<Self>) {
        self.session.close();
    }
}

/// A session with the snort_agent on this host (OUTPUT barnyard).
pub struct BarnyardSink {
    pub session: BarnyardSession,
    pub hostname: String,
}

impl Sink for BarnyardSink {
    fn name(&self) -> String {
        self.session.server().to_string()
    }
    fn sid(&self) -> u32 {
        self.session.sid
    }
    fn hostname(&self) -> &str {
        &self.hostname
    }
    fn max_cid(&self) -> u32 {
        self.session.max_cid
    }
    fn submit(&mut self, events: &[SguilEvent]) -> Result<(), SessionError> {
        self.session.submit(events)
    }
    fn next_answer(&mut self) -> Result<Answer, SessionError> {
        self.session.next_answer()
    }
    fn ping(&mut self) -> Result<(), SessionError> {
        self.session.ping()
    }
    fn close(self: Box<Self>) {
        self.session.close();
    }
}

/// One JSON object per event, every field decoded, or with `text` one line for a
/// person ([`event_line`]); flushed per window.
pub struct JsonLinesSink<W: Write> {
    pub out: W,
    pub hostname: String,
    /// Events written and not yet reported as answered.
    pub written: usize,
    /// [`event_line`] instead of [`event_json`] (OUTPUT text).
    pub text: bool,
}

/// An event as one line for a person: time (UTC), client -> server, priority and
/// message, e.g. `2026-12-07 06:00:00 UTC  192.0.2.7:51234 -> 198.51.100.2:80  priority 2
/// MSc 403 SQL Injection Attack`. The message is the client's doing, so it goes through
/// [`escape_text`]: nothing in it can drive the terminal. An address Sguil does not
/// carry (IPv6) is `-`.
pub fn event_line(e: &SguilEvent) -> String {
    let f = e.fields();
    let addr = |ip: Option<std::net::Ipv4Addr>, port: u16| match ip {
        Some(ip) => format!("{ip}:{port}"),
        None => "-".to_string(),
    };
    format!(
        "{}  {} -> {}  priority {}  {}",
        f.time.format("%Y-%m-%d %H:%M:%S UTC"),
        addr(f.src_ip, f.src_port),
        addr(f.dst_ip, f.dst_port),
        f.priority,
        escape_text(&String::from_utf8_lossy(&f.message))
    )
}

/// An event as a JSON object: the GenericEvent's fields, message and detail decoded
/// (as UTF-8, invalid bytes replaced), addresses as sent (`null` = empty).
pub fn event_json(e: &SguilEvent) -> serde_json::Value {
    let f = e.fields();
    json!({
        "sid": f.sid,
        "cid": f.cid,
        "status": f.status,
        "priority": f.priority,
        "class": f.class,
        "hostname": f.hostname,
        "time": f.time.format("%Y-%m-%d %H:%M:%S").to_string(),
        "ref_id": f.ref_id,
        "message": String::from_utf8_lossy(&f.message),
        "src_ip": f.src_ip.map(|a| a.to_string()),
        "dst_ip": f.dst_ip.map(|a| a.to_string()),
        "ip_proto": f.ip_proto,
        "src_port": f.src_port,
        "dst_port": f.dst_port,
        "generator": f.generator,
        "sig_id": f.sig_id,
        "revision": f.revision,
        "detail": String::from_utf8_lossy(&f.detail),
    })
}

impl<W: Write> Sink for JsonLinesSink<W> {
    fn name(&self) -> String {
        "stdout".into()
    }
    fn sid(&self) -> u32 {
        0
    }
    fn hostname(&self) -> &str {
        &self.hostname
    }
    fn max_cid(&self) -> u32 {
        0
    }
    fn submit(&mut self, events: &[SguilEvent]) -> Result<(), SessionError> {
        let io = |source| {
            SessionError::Conn(ConnError::Io {
                server: "stdout".into(),
                source,
            })
        };
        for e in events {
            if self.text {
                self.out.write_all(event_line(e).as_bytes()).map_err(io)?;
            } else {
                serde_json::to_writer(&mut self.out, &event_json(e)).map_err(|e| io(e.into()))?;
            }
            self.out.write_all(b"\n").map_err(io)?;
        }
        self.out.flush().map_err(io)?;
        self.written += events.len();
        Ok(())
    }
    fn next_answer(&mut self) -> Result<Answer, SessionError> {
        // Written and flushed is as delivered as stdout gets.
        self.written = self.written.saturating_sub(1);
        Ok(Answer::Confirmed)
    }
    fn ping(&mut self) -> Result<(), SessionError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OUTPUT text: one line a person reads, the client's message made harmless to a
    /// terminal; the same event as JSON under OUTPUT stdout.
    #[test]
    fn text_output_is_one_escaped_line_per_event() {
        let mut f = crate::sguil::wire::test_fields();
        f.message = b"MSc 403 x\x1b[2J\nFORGED line\xe2\x80\xae".to_vec();
        let event = SguilEvent::new(f.clone()).unwrap();
        let mut v6 = f;
        v6.src_ip = None;
        let v6 = SguilEvent::new(v6).unwrap();
        let mut sink = JsonLinesSink {
            out: Vec::new(),
            hostname: "websrv-a".into(),
            written: 0,
            text: true,
        };
        sink.submit(&[event.clone(), v6]).unwrap();
        let text = String::from_utf8(sink.out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "2026-11-28 01:56:31 UTC  192.0.2.10:51234 -> 198.51.100.20:80  priority 1  \
                 MSc 403 x\\x1b[2J\\nFORGED line\\u{202e}",
                "2026-11-28 01:56:31 UTC  - -> 198.51.100.20:80  priority 1  \
                 MSc 403 x\\x1b[2J\\nFORGED line\\u{202e}",
            ]
        );
        let mut sink = JsonLinesSink {
            out: Vec::new(),
            hostname: "websrv-a".into(),
            written: 0,
            text: false,
        };
        sink.submit(&[event]).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&sink.out).unwrap();
        assert_eq!(json["src_port"], 51234);
    }
}
