//! An agent session on an open [`Connection`]: `RegisterAgent`, then GenericEvents with a
//! window of them in flight, `PING`/`PONG` (ARCHITECTURE.md, "Sguil's agent protocol", 2, 4, 5).
//!
//! sguild answers strictly in order, at most once per line, and a `Failed` carries no
//! cid: so a reply always belongs to the oldest event still waiting. Because every
//! [`SguilEvent`] is valid by construction, no event is of a kind sguild leaves
//! unanswered; a missing reply therefore means the connection (or sguild) is gone.

use std::collections::VecDeque;
use std::time::Duration;

use thiserror::Error;

use super::conn::{ConnError, Connection};
use super::wire::{parse_server_line, register_line, FailedKind, ServerLine, SguilEvent};

/// What sguild said about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `ConfirmEvent <cid>`: stored now.
    Confirmed,
    /// `Duplicate entry '<sid>-<cid>'`: stored before (a resend after a lost reply).
    AlreadyStored,
    /// Refused for this event only (`Failed {…}` that is not a duplicate or an outage).
    Rejected(String),
}

/// Why a session stopped; what was answered before is reported all the same.
#[derive(Debug, Error)]
pub enum SessionError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// sguild's database is gone: every event will fail until sguild is restarted.
    #[error("{server}: sguild's database is unavailable: {text}")]
    Outage { server: String, text: String },
    #[error("{server}: no reply for cid {cid} within {secs} s")]
    Timeout { server: String, cid: u32, secs: u64 },
    #[error("{server}: reply `{line}` does not answer cid {cid}")]
    OutOfStep {
        server: String,
        cid: u32,
        line: String,
    },
    #[error("{server}: registration failed: {why}")]
    Registration { server: String, why: String },
}

/// A registered agent.
pub struct AgentSession {
    conn: Connection,
    pub sid: u32,
    /// The highest cid sguild holds for this sensor.
    pub max_cid: u32,
    reply_timeout: Duration,
    /// (sid, cid) of each event written and not yet answered, oldest first.
    waiting: VecDeque<(u32, u32)>,
}

impl AgentSession {
    /// Sends `RegisterAgent` and waits for `AgentInfo`.
    pub fn register(
        mut conn: Connection,
        agent_type: &str,
        hostname: &str,
        net_group: &str,
        reply_timeout: Duration,
    ) -> Result<AgentSession, SessionError> {
        conn.send_line(&register_line(agent_type, hostname, net_group))?;
        let server = conn.server().to_string();
        loop {
            let line =
                conn.read_line(reply_timeout)?
                    .ok_or_else(|| SessionError::Registration {
                        server: server.clone(),
                        why: format!(
                            "no AgentInfo within {} s (is sguild's database up?)",
                            reply_timeout.as_secs()
                        ),
                    })?;
            match parse_server_line(&line) {
                ServerLine::AgentInfo { sid, max_cid, .. } => {
                    return Ok(AgentSession {
                        conn,
                        sid,
                        max_cid,
                        reply_timeout,
                        waiting: VecDeque::new(),
                    });
                }
                ServerLine::Ping => conn.send_line("PONG\n")?,
                _ => {
                    return Err(SessionError::Registration {
                        server,
                        why: format!("unexpected `{line}`"),
                    })
                }
            }
        }
    }

    pub fn server(&self) -> &str {
        self.conn.server()
    }

    /// Ends the session politely ([`Connection::close`]); for a session in step.
    pub fn close(self) {
        self.conn.close();
    }

    /// `PING`, waiting for `PONG` (only with no event in flight: a reply to an event
    /// would come first).
    pub fn ping(&mut self) -> Result<(), SessionError> {
        while !self.waiting.is_empty() {
            let stale = self.next_answer()?;
            log::debug!(
                "{}: late answer to an earlier event: {stale:?}",
                self.server()
            );
        }
        self.conn.send_line("PING\n")?;
        loop {
            match self
                .conn
                .read_line(self.reply_timeout)?
                .map(|l| parse_server_line(&l))
            {
                Some(ServerLine::Pong) => return Ok(()),
                Some(ServerLine::Ping) => self.conn.send_line("PONG\n")?,
                Some(other) => {
                    return Err(SessionError::OutOfStep {
                        server: self.server().to_string(),
                        cid: 0,
                        line: format!("{other:?}"),
                    })
                }
                None => {
                    return Err(SessionError::Timeout {
                        server: self.server().to_string(),
                        cid: 0,
                        secs: self.reply_timeout.as_secs(),
                    })
                }
            }
        }
    }

    /// Sends `events` with at most `window` waiting for a reply (1 = stop-and-wait),
    /// calling `answered(index, outcome)` in order as replies come. Stops at the first
    /// error; events after the last answered one are then unanswered.
    pub fn send(
        &mut self,
        events: &[SguilEvent],
        window: usize,
        mut answered: impl FnMut(usize, Answer),
    ) -> Result<(), SessionError> {
        // Answers still owed to an earlier call that stopped at an error (the caller
        // took those events as unanswered) come first; they are not for `events`.
        while !self.waiting.is_empty() {
            let stale = self.next_answer()?;
            log::debug!(
                "{}: late answer to an earlier event: {stale:?}",
                self.server()
            );
        }
        let window = window.max(1);
        let mut next = 0;
        for done in 0..events.len() {
            let upto = (done + window).min(events.len());
            if upto > next {
                self.submit(&events[next..upto])?;
                next = upto;
            }
            answered(done, self.next_answer()?);
        }
        Ok(())
    }

    /// Writes `events` (one write) without waiting; their answers come, in order,
    /// from [`AgentSession::next_answer`].
    pub fn submit(&mut self, events: &[SguilEvent]) -> Result<(), SessionError> {
        if events.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = events.iter().map(SguilEvent::to_line).collect();
        self.conn.send_lines(&lines)?;
        self.waiting
            .extend(events.iter().map(|e| (e.fields().sid, e.cid())));
        Ok(())
    }

    /// Events written and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }

    /// Waits for the answer to the oldest event in flight (a `PING` from the server is
    /// answered on the way).
    pub fn next_answer(&mut self) -> Result<Answer, SessionError> {
        let server = self.server().to_string();
        let Some(&(sid, cid)) = self.waiting.front() else {
            return Err(SessionError::OutOfStep {
                server,
                cid: 0,
                line: "(no event in flight)".into(),
            });
        };
        loop {
            let line = self
                .conn
                .read_line(self.reply_timeout)?
                .ok_or(SessionError::Timeout {
                    server: server.clone(),
                    cid,
                    secs: self.reply_timeout.as_secs(),
                })?;
            let outcome = match parse_server_line(&line) {
                ServerLine::ConfirmEvent(c) if c == cid => Answer::Confirmed,
                ServerLine::Failed {
                    kind: FailedKind::Duplicate { sid: s, cid: c },
                    ..
                } if s == sid && c == cid => Answer::AlreadyStored,
                ServerLine::Failed {
                    kind: FailedKind::Outage,
                    text,
                } => {
                    // Answered (nothing stored); the session stays usable.
                    self.waiting.pop_front();
                    return Err(SessionError::Outage { server, text });
                }
                ServerLine::Failed { text, .. } => Answer::Rejected(text),
                ServerLine::Ping => {
                    self.conn.send_line("PONG\n")?;
                    continue;
                }
                _ => return Err(SessionError::OutOfStep { server, cid, line }),
            };
            self.waiting.pop_front();
            return Ok(outcome);
        }
    }
}
