//! Thresholds and suppressions (THRESHOLD_FILE), with the words and meaning of Snort's
//! `event_filter`/`suppress` and Suricata's `threshold.config` (ARCHITECTURE.md,
//! "Thresholds"):
//!
//! ```text
//! threshold gen_id 10001, sig_id <id|*>, type limit|threshold|both, track by_src|by_dst|by_rule, count N, seconds S
//! suppress gen_id 10001, sig_id <id|*>[, track by_src|by_dst, ip <addr|CIDR>]
//! ```
//!
//! - `limit`: the first N events of a window pass, the rest are held back;
//! - `threshold`: every Nth event of a window passes;
//! - `both`: the Nth event of a window passes, once per window.
//!
//! A window is S seconds of the events' own time (the audit log's timestamp), per
//! signature and tracked address (by_rule: per signature), opened by the first event
//! of a key. It closes when an event of the key comes S seconds or more after its start,
//! or when the clock passes its end ([`Tracker::close_expired`]); a closed window that
//! held events back becomes one [`Summary`]. A suppress rule holds back every matching
//! event, without a window or summary. Held-back events are not lost: the shipper keeps
//! them (`EVENT_DIR/held/`) and records them as suppressed in its delivered log.
//!
//! This module is pure: rules are parsed from bytes (nom, one line at a time), and the
//! [`Tracker`] decides from the facts it is given; the shipper persists its state.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::escape::escape_text;

/// The generator every rule names: modsec2sguil's events carry generator 10001.
pub const GEN_ID: u32 = 10001;
/// The signature id of a threshold summary event (generator 10001). ModSecurity rule
/// ids stop below 100,000,000 by convention (the registered ranges); this one is ours.
pub const SUMMARY_SIG_ID: u32 = 99_000_001;
/// The largest thresholds file read: a few hundred rules are a lot.
pub const MAX_THRESHOLD_FILE_BYTES: usize = 1024 * 1024;
/// The longest line: a rule is under 200 bytes.
pub const MAX_THRESHOLD_LINE_BYTES: usize = 4096;
/// The most keys tracked at once (open windows): past it, events that would open a new
/// window pass (and are shipped), with a warning; the windows close with time.
pub const MAX_WINDOWS: usize = 100_000;
/// The largest `count` and `seconds`.
pub const MAX_COUNT: u32 = 1_000_000;
pub const MAX_SECONDS: u32 = 86_400 * 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Limit,
    Threshold,
    Both,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Limit => "limit",
            Kind::Threshold => "threshold",
            Kind::Both => "both",
        }
    }
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "limit" => Some(Kind::Limit),
            "threshold" => Some(Kind::Threshold),
            "both" => Some(Kind::Both),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Track {
    BySrc,
    ByDst,
    ByRule,
}

impl Track {
    pub fn as_str(self) -> &'static str {
        match self {
            Track::BySrc => "by_src",
            Track::ByDst => "by_dst",
            Track::ByRule => "by_rule",
        }
    }
    pub fn parse(s: &str) -> Option<Track> {
        match s {
            "by_src" => Some(Track::BySrc),
            "by_dst" => Some(Track::ByDst),
            "by_rule" => Some(Track::ByRule),
            _ => None,
        }
    }
}

/// `sig_id`: one signature or every one (`*`, or Snort's `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigSel {
    Any,
    Id(u32),
}

impl SigSel {
    fn matches(self, sig: u32) -> bool {
        match self {
            SigSel::Any => true,
            SigSel::Id(i) => i == sig,
        }
    }
}

/// An address or a network (`203.0.113.0/24`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    pub fn parse(text: &str) -> Result<Net, String> {
        let (a, p) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{}` is not an IP address", escape_text(a)))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => {
                    return Err(format!(
                        "`/{}` is not a prefix length from 0 to {max}",
                        escape_text(p)
                    ))
                }
            },
        };
        Ok(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn bits(ip: IpAddr) -> (u128, u32) {
            match ip {
                IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        }
        let (a, wa) = bits(self.addr);
        // An IPv4-mapped IPv6 client is its IPv4 address.
        let ip = match ip {
            IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (b, wb) = bits(ip);
        if wa != wb {
            return false;
        }
        let shift = wa - u32::from(self.prefix);
        shift >= wa || (a >> shift) == (b >> shift)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThresholdRule {
    pub sig: SigSel,
    pub kind: Kind,
    pub track: Track,
    pub count: u32,
    pub seconds: u32,
    /// Its line in the file.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressRule {
    pub sig: SigSel,
    /// `track by_src|by_dst, ip …`: only events whose address is in the network.
    pub only: Option<(Track, Net)>,
    pub line: usize,
}

/// The rules of a thresholds file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    pub path: PathBuf,
    pub thresholds: Vec<ThresholdRule>,
    pub suppressions: Vec<SuppressRule>,
}

/// A thresholds file that cannot be used: the file, the line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {why}", .path.display())]
pub struct RuleError {
    pub path: PathBuf,
    /// From 1; 0 for the file as a whole.
    pub line: usize,
    pub why: String,
}

/// One `name value` option of a rule line, as written.
type Opt<'a> = (&'a str, &'a str);

/// A rule's options by name: each one its `keyword` takes, given once.
fn option_map<'a>(keyword: &str, opts: &[Opt<'a>]) -> Result<BTreeMap<&'a str, &'a str>, String> {
    let allowed: &[&str] = match keyword {
        "threshold" | "event_filter" => &["gen_id", "sig_id", "type", "track", "count", "seconds"],
        "suppress" => &["gen_id", "sig_id", "track", "ip"],
        other => {
            return Err(format!(
                "unknown rule `{}` (threshold, event_filter or suppress)",
                escape_text(other)
            ))
        }
    };
    let mut got: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, value) in opts {
        if !allowed.contains(name) {
            return Err(format!(
                "`{}` is not an option of {keyword} (options: {})",
                escape_text(name),
                allowed.join(", ")
            ));
        }
        if got.insert(name, value).is_some() {
            return Err(format!("`{name}` is given twice"));
        }
    }
    Ok(got)
}

/// `sig_id`'s value: a rule id, or `*` (or Snort's `0`) for every signature.
fn sig_selector(s: &str) -> Result<SigSel, String> {
    match s {
        "*" | "0" => Ok(SigSel::Any),
        s => match s.parse::<u32>() {
            Ok(i) if !s.starts_with('+') => Ok(SigSel::Id(i)),
            _ => Err(format!(
                "sig_id must be a rule id or `*`, not `{}`",
                escape_text(s)
            )),
        },
    }
}

/// A suppression's `track` and `ip`: both (the events it is limited to) or neither.
fn suppress_only(track: Option<Track>, ip: Option<&str>) -> Result<Option<(Track, Net)>, String> {
    Ok(match (track, ip) {
        (None, None) => None,
        (Some(Track::ByRule), _) => {
            return Err("suppress tracks by_src or by_dst (by_rule has no address)".into())
        }
        (Some(t), Some(ip)) => Some((t, Net::parse(ip).map_err(|e| format!("ip: {e}"))?)),
        (Some(_), None) => return Err("suppress with `track` needs `ip`".into()),
        (None, Some(_)) => return Err("suppress with `ip` needs `track`".into()),
    })
}

/// `keyword name value, name value, …` (nom): the keyword and the options.
fn rule_line(input: &str) -> nom::IResult<&str, (&str, Vec<Opt<'_>>)> {
    use nom::bytes::complete::{is_not, take_while1};
    use nom::character::complete::{char, space0, space1};
    use nom::combinator::{all_consuming, map};
    use nom::multi::separated_list1;
    use nom::sequence::{delimited, pair, separated_pair, terminated};
    let word = |i| take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_')(i);
    let value = |i| map(is_not(", \t"), str::trim)(i);
    let opt = separated_pair(word, space1, value);
    let opts = separated_list1(delimited(space0, char(','), space0), opt);
    all_consuming(delimited(
        space0,
        pair(terminated(word, space1), opts),
        space0,
    ))(input)
}

impl Rules {
    /// Parses a thresholds file's text; `path` names it in errors.
    pub fn parse(path: &Path, text: &[u8]) -> Result<Rules, RuleError> {
        let err = |line: usize, why: String| RuleError {
            path: path.to_path_buf(),
            line,
            why,
        };
        if text.len() > MAX_THRESHOLD_FILE_BYTES {
            return Err(err(
                0,
                format!(
                    "{} bytes, over the bound of {MAX_THRESHOLD_FILE_BYTES} (MAX_THRESHOLD_FILE_BYTES)",
                    text.len()
                ),
            ));
        }
        let mut rules = Rules {
            path: path.to_path_buf(),
            ..Rules::default()
        };
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let n = i + 1;
            if raw.len() > MAX_THRESHOLD_LINE_BYTES {
                return Err(err(
                    n,
                    format!(
                        "line of {} bytes, over {MAX_THRESHOLD_LINE_BYTES}",
                        raw.len()
                    ),
                ));
            }
            let line = std::str::from_utf8(raw)
                .map_err(|_| err(n, "not UTF-8 text".into()))?
                .trim_end_matches('\r');
            let line = line.split_once('#').map_or(line, |(a, _)| a).trim();
            if line.is_empty() {
                continue;
            }
            rules.add_line(n, line).map_err(|why| err(n, why))?;
        }
        Ok(rules)
    }

    fn add_line(&mut self, n: usize, line: &str) -> Result<(), String> {
        let Ok((_, (keyword, opts))) = rule_line(line) else {
            return Err(format!(
                "not a rule: `{}` (expected `threshold gen_id 10001, sig_id …, type …, track …, count N, seconds S` or `suppress gen_id 10001, sig_id …[, track …, ip …]`; options are `name value` separated by commas)",
                escape_text(line)
            ));
        };
        let got = option_map(keyword, &opts)?;
        let need = |name: &str| {
            got.get(name)
                .copied()
                .ok_or_else(|| format!("{keyword} needs `{name}`"))
        };
        let gen = need("gen_id")?;
        if gen != GEN_ID.to_string() {
            return Err(format!(
                "gen_id must be {GEN_ID} (modsec2sguil's generator), not `{}`",
                escape_text(gen)
            ));
        }
        let sig = sig_selector(need("sig_id")?)?;
        let track = got
            .get("track")
            .map(|t| {
                Track::parse(t).ok_or_else(|| {
                    format!(
                        "track must be by_src, by_dst or by_rule, not `{}`",
                        escape_text(t)
                    )
                })
            })
            .transpose()?;
        if keyword == "suppress" {
            let only = suppress_only(track, got.get("ip").copied())?;
            self.suppressions.push(SuppressRule { sig, only, line: n });
            return Ok(());
        }
        let kind = need("type")?;
        let kind = Kind::parse(kind).ok_or_else(|| {
            format!(
                "type must be limit, threshold or both, not `{}`",
                escape_text(kind)
            )
        })?;
        let track = track.ok_or_else(|| format!("{keyword} needs `track`"))?;
        let number = |name: &str, max: u32| -> Result<u32, String> {
            let v = need(name)?;
            match v.parse::<u32>() {
                Ok(x @ 1..) if x <= max && !v.starts_with('+') => Ok(x),
                _ => Err(format!(
                    "{name} must be a whole number from 1 to {max}, not `{}`",
                    escape_text(v)
                )),
            }
        };
        let count = number("count", MAX_COUNT)?;
        let seconds = number("seconds", MAX_SECONDS)?;
        if let Some(first) = self.thresholds.iter().find(|r| r.sig == sig) {
            return Err(format!(
                "a second threshold for sig_id {} (the first is on line {}): one threshold a signature",
                match sig {
                    SigSel::Any => "*".to_string(),
                    SigSel::Id(i) => i.to_string(),
                },
                first.line
            ));
        }
        self.thresholds.push(ThresholdRule {
            sig,
            kind,
            track,
            count,
            seconds,
            line: n,
        });
        Ok(())
    }

    /// The threshold for signature `sig`: its own, else the `*` one.
    fn threshold_for(&self, sig: u32) -> Option<&ThresholdRule> {
        self.thresholds
            .iter()
            .find(|r| r.sig == SigSel::Id(sig))
            .or_else(|| self.thresholds.iter().find(|r| r.sig == SigSel::Any))
    }

    pub fn is_empty(&self) -> bool {
        self.thresholds.is_empty() && self.suppressions.is_empty()
    }
}

/// What a window counts: a signature, and the address tracked (none with by_rule).
/// IPv6 clients are tracked by their real address (Sguil stores them as empty ones).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub sig: u32,
    pub track: Track,
    pub addr: Option<IpAddr>,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.sig)?;
        match (self.track, self.addr) {
            (Track::BySrc, Some(a)) => write!(f, " from {a}"),
            (Track::ByDst, Some(a)) => write!(f, " to {a}"),
            _ => Ok(()),
        }
    }
}

/// One open window of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Its start (unix seconds, the first event's time) and length.
    pub start: i64,
    pub seconds: u32,
    /// The rule's type and count when the window opened.
    pub kind: Kind,
    pub count: u32,
    /// Events seen in it, and of those held back.
    pub seen: u64,
    pub held: u64,
    /// The first and last unique ids held back (empty while none is).
    pub first_held: String,
    pub last_held: String,
}

/// A closed window that held events back: one summary event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Its number, unique in the queue (it names the summary in the journal).
    pub seq: u64,
    pub key: Key,
    pub window: Window,
}

impl Summary {
    /// The summary's message: "MSc threshold: 4,812 more of 942100 from 203.0.113.9 in
    /// 60 s held back".
    pub fn message(&self) -> String {
        format!(
            "MSc threshold: {} more of {} in {} s held back",
            thousands(self.window.held),
            self.key,
            self.window.seconds
        )
    }

    /// The summary's time: the end of its window (whole seconds, UTC).
    pub fn time(&self) -> i64 {
        self.window.start + i64::from(self.window.seconds)
    }

    /// The summary's name in the journal and the delivered log.
    pub fn name(&self) -> String {
        format!("{SUMMARY_PREFIX}{}", self.seq)
    }

    /// The lines of its detail (plain text; attacker-influenced values escaped).
    pub fn detail_lines(&self) -> Vec<String> {
        let w = &self.window;
        let at = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| t.to_string())
        };
        vec![
            self.message(),
            format!(
                "Rule: {} {}, count {}, {} s (THRESHOLD_FILE)",
                w.kind.as_str(),
                self.key.track.as_str(),
                w.count,
                w.seconds
            ),
            format!(
                "Window: {} to {}; {} event(s) seen, {} shipped, {} held back",
                at(w.start),
                at(self.time()),
                w.seen,
                w.seen.saturating_sub(w.held),
                w.held
            ),
            format!("First held back: unique id {}", escape_text(&w.first_held)),
            format!("Last held back: unique id {}", escape_text(&w.last_held)),
            format!(
                "They are kept in EVENT_DIR/held/ and recorded as suppressed in EVENT_DIR/.delivered; to ship them: modsec-shipper requeue --suppressed --since {}",
                at(w.start)
            ),
        ]
    }
}

/// The prefix of a summary's name (`.threshold-summary.<seq>`): never an entry's.
pub const SUMMARY_PREFIX: &str = ".threshold-summary.";

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the tracker needs to know of an alert.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub sig: u32,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// The event's own time (unix seconds).
    pub time: i64,
    pub unique_id: &'a str,
}

/// What becomes of an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Held back; why (for the delivered log).
    Hold(String),
}

/// The open windows and the summaries not yet stored in Sguil. Its state is what the
/// shipper persists (`queue::threshold_state`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    pub windows: BTreeMap<Key, Window>,
    pub summaries: Vec<Summary>,
    pub next_seq: u64,
    /// Changed since last [`Tracker::take_changed`].
    changed: bool,
    full_warned: bool,
}

impl Tracker {
    /// Whether anything changed since the last call (and resets it).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    pub fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// Decides for one alert, and counts it.
    pub fn decide(&mut self, rules: &Rules, ev: &Facts) -> Verdict {
        for s in &rules.suppressions {
            if !s.sig.matches(ev.sig) {
                continue;
            }
            let hit = match s.only {
                None => true,
                Some((Track::BySrc, net)) => ev.src.is_some_and(|a| net.contains(a)),
                Some((_, net)) => ev.dst.is_some_and(|a| net.contains(a)),
            };
            if hit {
                self.changed = true;
                return Verdict::Hold(format!("suppress, line {}", s.line));
            }
        }
        let Some(rule) = rules.threshold_for(ev.sig) else {
            return Verdict::Pass;
        };
        let addr = match rule.track {
            Track::BySrc => ev.src,
            Track::ByDst => ev.dst,
            Track::ByRule => None,
        };
        let key = Key {
            sig: ev.sig,
            track: rule.track,
            addr,
        };
        self.changed = true;
        if let Some(w) = self.windows.get(&key) {
            if ev.time >= w.start + i64::from(w.seconds) {
                let w = self.windows.remove(&key).expect("present");
                self.close(key.clone(), w);
            }
        }
        if !self.windows.contains_key(&key) && self.windows.len() >= MAX_WINDOWS {
            if !std::mem::replace(&mut self.full_warned, true) {
                log::warn!(
                    "thresholds: {MAX_WINDOWS} windows open (MAX_WINDOWS); events of new keys pass until some close"
                );
            }
            return Verdict::Pass;
        }
        let w = self.windows.entry(key.clone()).or_insert_with(|| Window {
            start: ev.time,
            seconds: rule.seconds,
            kind: rule.kind,
            count: rule.count,
            seen: 0,
            held: 0,
            first_held: String::new(),
            last_held: String::new(),
        });
        w.seen = w.seen.saturating_add(1);
        let n = u64::from(w.count);
        let pass = match w.kind {
            Kind::Limit => w.seen <= n,
            Kind::Threshold => w.seen % n == 0,
            Kind::Both => w.seen == n,
        };
        if pass {
            return Verdict::Pass;
        }
        w.held = w.held.saturating_add(1);
        if w.first_held.is_empty() {
            w.first_held = ev.unique_id.to_string();
        }
        w.last_held = ev.unique_id.to_string();
        Verdict::Hold(format!(
            "threshold, line {}: {} {} {}, count {}, {} s",
            rule.line,
            w.kind.as_str(),
            rule.track.as_str(),
            key,
            w.count,
            w.seconds
        ))
    }

    fn close(&mut self, key: Key, w: Window) {
        self.changed = true;
        if w.held == 0 {
            return;
        }
        self.next_seq = self.next_seq.saturating_add(1);
        self.summaries.push(Summary {
            seq: self.next_seq,
            key,
            window: w,
        });
    }

    /// Closes every window whose end is at or before `now` (unix seconds).
    pub fn close_expired(&mut self, now: i64) {
        let done: Vec<Key> = self
            .windows
            .iter()
            .filter(|(_, w)| w.start + i64::from(w.seconds) <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            let w = self.windows.remove(&k).expect("listed");
            self.close(k, w);
        }
    }

    /// The summary named `name`, if it is waiting.
    pub fn summary(&self, name: &str) -> Option<&Summary> {
        self.summaries.iter().find(|s| s.name() == name)
    }

    /// A summary is stored in Sguil: it is done.
    pub fn summary_done(&mut self, name: &str) {
        let before = self.summaries.len();
        self.summaries.retain(|s| s.name() != name);
        self.changed |= self.summaries.len() != before;
    }
}

#[cfg(test)]
mod tests;
