//! The event detail as HTML, laid out for the Sguil analyst console and escaped for it.
//!
//! Sguil's client (`client/sguil.tk`) shows a generator-10001 event's detail in its
//! "Display Detail" pane: it asks sguild for `data_payload`, maps each byte to one
//! character (`hex2string`) and *renders the result as HTML* in an iwidgets 4.1
//! `scrolledhtml`. Plain text folds there into one paragraph, and markup the attacker
//! put in a URI or a header is live (links the client opens, images it loads, comments
//! that hide the rest or hang the render). What that renderer does, read from its source
//! (`scrolledhtml.itk`, iwidgets 4.1) and checked with it (`tests/analyst_view.rs`):
//!
//! - A run of text between two tags goes through `regsub -nocase` of `&amp;`, then
//!   `&lt;`, `&gt;` and `&quot;`, in that order; numeric entities are not decoded. So an
//!   `&` is written `&amp;`, and when the event's next bytes are `lt;`, `gt;` or `quot;`
//!   (or nothing of the event follows) also `<wbr>`, a tag the widget ignores: it ends the
//!   run of text, so the decoded `&` cannot join the next bytes into a second entity.
//! - `<` starts a tag that runs to the next `>`: `<!--` is no comment but a tag, and a `<`
//!   with no `>` after it never returns. No `<` or `>` of the event is written, ever.
//! - Outside `<pre>`, newlines and runs of blanks fold into one space: each summary line
//!   ends in `<br>`. Inside `<pre>` text is kept as it is.
//! - The client has no UTF-8: every byte is one character. Bytes outside printable ASCII
//!   are written as `\xHH` (`\n` and `\t` stay inside `<pre>`; the summary uses
//!   ModSecurity's own escaping, where `\` is `\\`, so it is unambiguous).
//!
//! Only [`TAGS`] are ever written. The size limit counts the markup: the summary has a
//! budget of its own ([`SUMMARY_MAX_BYTES`]) and the raw event gets what is left, so the
//! raw event is cut before anything of the summary is; a cut never splits an entity or
//! an escape, every element is closed, and the cut is said in the detail.

use std::fmt::Write as _;

use crate::auditlog::{AuditEvent, MessageAction, RuleMatch};
use crate::escape::{escape_byte, escape_byte_in_lines, Escaped};
use crate::sguil::wire::MAX_DETAIL_BYTES;

use super::{endpoint, sguil_addr, utc_seconds, Decision, BODY_EXCERPT_BYTES};

/// Every tag the HTML detail may hold. `h3`, `b`, `ul`, `li` and `pre` are always closed.
pub const TAGS: &[&str] = &[
    "h3", "/h3", "b", "/b", "br", "hr", "ul", "/ul", "li", "/li", "pre", "/pre", "wbr",
];

/// Starts the line that names the event's unique id (see
/// [`unique_id_in_detail`](super::unique_id_in_detail)).
pub const EVENT_MARKER: &str = "<b>Event:</b> ";

/// How the detail of each kind of event starts: then `(status N): ` and the message of
/// the rule that decided it (or the request line).
pub fn headline(decision: Decision) -> &'static str {
    match decision {
        Decision::Intercepted => "<h3>Intercepted ",
        Decision::ErrorStatus => "<h3>Error status, not intercepted ",
        Decision::RuleMatched => "<h3>Detected, not intercepted ",
        Decision::Activity | Decision::Skip => "<h3>Activity ",
    }
}

/// What the Sguil reports and queries of `examples/sguil/` read out of a stored detail
/// (`UNHEX(data.data_payload)`), besides the [`headline`]: each fact's label, which the
/// detail holds at most once, its value running to the next `<br>` (a value never holds
/// a `<`), and the start of each matched rule's list item (`<li><b>ID</b>`). The detail
/// is an interface: changing one of these breaks those reports, and
/// `tests/sguil_reports.rs` fails.
pub const REPORT_MARKERS: &[&str] = &[
    EVENT_MARKER,
    "<b>Client -&gt; server:</b> ",
    "<b>Request:</b> ",
    "<b>Host:</b> ",
    "<b>User-Agent:</b> ",
    "<b>Status:</b> ",
    "<b>Interception:</b> ",
    "<li><b>",
    "<br>",
];

/// The most markup the part before the raw event may take (headline, facts, rules,
/// body excerpt). The rest of [`MAX_DETAIL_BYTES`], at least ~8 KB, is the raw event's.
pub const SUMMARY_MAX_BYTES: usize = 24 * 1024;

/// The most bytes of the event one summary value shows (a URI, a header, a rule's
/// message or data); longer values are cut and say by how much.
pub const VALUE_MAX_BYTES: usize = 512;
/// A request line gets more: the URI is usually the attack.
pub const REQUEST_LINE_MAX_BYTES: usize = 2048;

/// Kept free at the end for closing the raw event's `<pre>` and the cut marker.
const TAIL_RESERVE: usize = 256;

/// How text is laid out where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// A summary value: one line, ModSecurity's escaping (`\\`, `\n`, `\xHH`).
    Line,
    /// Inside `<pre>`: newlines, tabs and backslashes as they are
    /// ([`escape_lines`](crate::escape::escape_lines)).
    Pre,
}

/// Whether the renderer could read an entity out of an `&` followed by `rest`.
fn entity_may_follow(rest: &[u8]) -> bool {
    rest.is_empty()
        || [&b"lt;"[..], b"gt;", b"quot;"]
            .iter()
            .any(|e| rest.len() >= e.len() && rest[..e.len()].eq_ignore_ascii_case(e))
}

/// How a byte that is not written as itself is written.
enum Form {
    /// A byte that means something to the renderer.
    Entity(&'static str),
    /// A byte outside printable ASCII (or `\\` in a summary line).
    Escape(Escaped),
}

impl Form {
    fn as_str(&self) -> &str {
        match self {
            Form::Entity(e) => e,
            Form::Escape(e) => e.as_str(),
        }
    }
}

/// How `flow` escapes a byte the renderer takes as text.
fn escaped(b: u8, flow: Flow) -> Option<Escaped> {
    match flow {
        Flow::Line => escape_byte(b, false),
        Flow::Pre => escape_byte_in_lines(b),
    }
}

fn is_markup(b: u8) -> bool {
    matches!(b, b'&' | b'<' | b'>' | b'"')
}

/// How `src[i]` is written, or `None` when as itself.
fn form(src: &[u8], i: usize, flow: Flow) -> Option<Form> {
    Some(Form::Entity(match src[i] {
        b'&' if entity_may_follow(&src[i + 1..]) => "&amp;<wbr>",
        b'&' => "&amp;",
        b'<' => "&lt;",
        b'>' => "&gt;",
        b'"' => "&quot;",
        b => return escaped(b, flow).map(Form::Escape),
    }))
}

/// Writes as many leading bytes of `src` as fit in `room` bytes of output, each whole;
/// returns how many bytes of `src` were written.
fn escape_fitting(out: &mut String, src: &[u8], flow: Flow, room: usize) -> usize {
    let end = out.len().saturating_add(room);
    let mut i = 0;
    while i < src.len() {
        // A run of bytes written as themselves (ASCII) is copied whole, as far as it fits.
        let run = src[i..]
            .iter()
            .take(end - out.len())
            .take_while(|&&b| !is_markup(b) && escaped(b, flow).is_none())
            .count();
        out.push_str(std::str::from_utf8(&src[i..i + run]).expect("ASCII"));
        i += run;
        let Some(f) = src.get(i).and_then(|_| form(src, i, flow)) else {
            break; // the end, or no room for the next byte
        };
        if out.len() + f.as_str().len() > end {
            break;
        }
        out.push_str(f.as_str());
        i += 1;
    }
    i
}

/// Room kept for the marker of a cut value.
const VALUE_CUT_MARKER: usize = 40;

/// `bytes` escaped for one summary line, at most `max` of them and within `room` bytes
/// of markup (`usize::MAX`: `max` alone bounds it); a cut says how many bytes were left out.
fn value(out: &mut String, bytes: &[u8], max: usize, room: usize) {
    let shown = &bytes[..bytes.len().min(max)];
    let room = room.saturating_sub(VALUE_CUT_MARKER);
    let n = escape_fitting(out, shown, Flow::Line, room);
    if n < bytes.len() {
        let _ = write!(out, " [... {} more bytes]", bytes.len() - n);
    }
}

/// The HTML detail: the summary, the rules, a body excerpt, then up to `raw_max` bytes
/// of the raw event.
pub(super) fn detail(
    ev: &AuditEvent,
    raw: &[u8],
    decision: Decision,
    primary: Option<&RuleMatch>,
    notes: &[String],
    raw_max: usize,
) -> Vec<u8> {
    let mut d = Html {
        out: String::with_capacity(MAX_DETAIL_BYTES),
    };
    d.headline(ev, decision, primary);
    d.facts(ev, notes);
    d.rules(ev);
    d.body_excerpt(ev);
    d.raw_event(raw, raw_max);
    debug_assert!(d.out.len() <= MAX_DETAIL_BYTES);
    d.out.into_bytes()
}

struct Html {
    out: String,
}

impl Html {
    /// Room left in the summary's budget.
    fn summary_room(&self) -> usize {
        SUMMARY_MAX_BYTES.saturating_sub(self.out.len())
    }

    fn headline(&mut self, ev: &AuditEvent, decision: Decision, primary: Option<&RuleMatch>) {
        let status = ev
            .status()
            .map_or_else(|| "no status".to_string(), |s| format!("status {s}"));
        let _ = write!(self.out, "{}({status}): ", headline(decision));
        match primary {
            Some(m) => {
                let text = m.msg.as_deref().unwrap_or(&m.justification);
                value(&mut self.out, text.as_bytes(), VALUE_MAX_BYTES, usize::MAX);
            }
            None => {
                let line = request_line(ev);
                value(&mut self.out, &line, VALUE_MAX_BYTES, usize::MAX);
            }
        }
        self.out.push_str("</h3>\n");
    }

    /// One `<b>label:</b> value<br>` line.
    fn fact(&mut self, label: &str, bytes: &[u8], max: usize) {
        self.out.push_str("<b>");
        escape_fitting(&mut self.out, label.as_bytes(), Flow::Line, usize::MAX);
        self.out.push_str(":</b> ");
        let room = self.summary_room();
        value(&mut self.out, bytes, max, room);
        self.out.push_str("<br>\n");
    }

    fn facts(&mut self, ev: &AuditEvent, notes: &[String]) {
        self.fact("Event", ev.unique_id.as_bytes(), VALUE_MAX_BYTES);
        let time = format!(
            "{} UTC (logged as {})",
            utc_seconds(ev).format("%Y-%m-%d %H:%M:%S"),
            ev.time.format("%d/%b/%Y:%H:%M:%S%.f %z")
        );
        self.fact("Time", time.as_bytes(), VALUE_MAX_BYTES);
        let path = format!("{} -> {}", endpoint(ev.client), endpoint(ev.server));
        self.fact("Client -> server", path.as_bytes(), VALUE_MAX_BYTES);
        if sguil_addr(ev.client).1 || sguil_addr(ev.server).1 {
            self.fact(
                "Note",
                b"IPv6 addresses: Sguil stores only IPv4, so the event's address fields are empty",
                VALUE_MAX_BYTES,
            );
        }
        self.fact("Request", &request_line(ev), REQUEST_LINE_MAX_BYTES);
        for name in ["Host", "User-Agent", "Referer"] {
            if let Some(v) = ev.request.header(name) {
                self.fact(name, v, VALUE_MAX_BYTES);
            }
        }
        let status = ev
            .status()
            .map_or_else(|| "none logged".to_string(), |s| s.to_string());
        self.fact("Status", status.as_bytes(), VALUE_MAX_BYTES);
        self.fact("Interception", interception(ev).as_bytes(), VALUE_MAX_BYTES);
        if let Some(mode) = ev.engine_mode {
            self.fact(
                "Engine mode",
                format!("{mode:?}").as_bytes(),
                VALUE_MAX_BYTES,
            );
        }
        for w in super::integrity_warnings(ev).iter().chain(notes) {
            self.fact("Warning", w.as_bytes(), VALUE_MAX_BYTES);
        }
    }

    fn rules(&mut self, ev: &AuditEvent) {
        let _ = write!(
            self.out,
            "<hr>\n<b>Rules matched: {}</b>\n",
            ev.matches.len()
        );
        if ev.matches.is_empty() {
            return;
        }
        self.out.push_str("<ul>\n");
        // Room for "N more" and closing the list.
        let reserve = 120;
        for (i, m) in ev.matches.iter().enumerate() {
            let item = rule_item(m);
            if self.out.len() + item.len() + reserve > SUMMARY_MAX_BYTES {
                let _ = writeln!(
                    self.out,
                    "<li>... and {} more rule(s), left out to keep the detail within what Sguil stores</li>",
                    ev.matches.len() - i
                );
                break;
            }
            self.out.push_str(&item);
        }
        self.out.push_str("</ul>\n");
    }

    fn body_excerpt(&mut self, ev: &AuditEvent) {
        let Some(body) = ev.request.body.as_ref().filter(|b| !b.bytes.is_empty()) else {
            return;
        };
        let shown = &body.bytes[..body.bytes.len().min(BODY_EXCERPT_BYTES)];
        // The heading, the <pre> pair and a cut marker.
        let room = self.summary_room().saturating_sub(160);
        if room < 64 {
            let _ = writeln!(
                self.out,
                "<b>Request body:</b> {} bytes, left out of the summary (it is in the raw event)<br>",
                body.total_len
            );
            return;
        }
        let mut text = String::new();
        let n = escape_fitting(&mut text, shown, Flow::Pre, room);
        let _ = writeln!(
            self.out,
            "<b>Request body:</b> {n} of {} bytes<pre>{text}</pre>",
            body.total_len
        );
    }

    fn raw_event(&mut self, raw: &[u8], raw_max: usize) {
        let wanted = &raw[..raw.len().min(raw_max)];
        let _ = write!(self.out, "<hr>\n<b>Raw event:</b> {} bytes<pre>", raw.len());
        let room = MAX_DETAIL_BYTES.saturating_sub(self.out.len() + TAIL_RESERVE);
        let n = escape_fitting(&mut self.out, wanted, Flow::Pre, room);
        self.out.push_str("</pre>\n");
        if n < raw.len() {
            let why = if n < wanted.len() || raw_max >= MAX_DETAIL_BYTES {
                format!("Sguil stores at most {MAX_DETAIL_BYTES} bytes of detail")
            } else {
                format!("DETAIL_RAW_BYTES is {raw_max}")
            };
            let _ = writeln!(
                self.out,
                "<b>[cut by modsec-shipper: {n} of {} bytes of the raw event shown; {why}]</b>",
                raw.len()
            );
        }
    }
}

/// Why a detail breaks the rules above: a tag not in [`TAGS`], an element left open or
/// closed out of order, an `&` that does not start one of the four entities, a byte
/// outside printable ASCII, newline and tab, or more than [`MAX_DETAIL_BYTES`].
/// For tests and fuzzing: what `detail` writes always passes.
pub fn check_markup(detail: &[u8]) -> Result<(), String> {
    if detail.len() > MAX_DETAIL_BYTES {
        return Err(format!("{} bytes", detail.len()));
    }
    let mut open: Vec<&[u8]> = Vec::new();
    let mut i = 0;
    while i < detail.len() {
        match detail[i] {
            b'<' => {
                let end = detail[i..]
                    .iter()
                    .position(|&b| b == b'>')
                    .ok_or_else(|| format!("`<` at {i} is never closed"))?;
                let tag = &detail[i + 1..i + end];
                if !TAGS.iter().any(|t| t.as_bytes() == tag) {
                    return Err(format!(
                        "tag `{}` at {i}",
                        String::from_utf8_lossy(tag).escape_debug()
                    ));
                }
                match tag {
                    b"br" | b"hr" | b"wbr" => {}
                    [b'/', name @ ..] => {
                        if open.pop() != Some(name) {
                            return Err(format!(
                                "`</{}>` at {i} closes nothing open",
                                String::from_utf8_lossy(name)
                            ));
                        }
                    }
                    name => open.push(name),
                }
                i += end + 1;
            }
            b'&' => {
                let rest = &detail[i..];
                if ![&b"&amp;"[..], b"&lt;", b"&gt;", b"&quot;"]
                    .iter()
                    .any(|e| rest.starts_with(e))
                {
                    return Err(format!("`&` at {i} starts no entity"));
                }
                i += 1;
            }
            b'>' => return Err(format!("`>` at {i} outside a tag")),
            b'\n' | b'\t' | 0x20..=0x7e => i += 1,
            b => return Err(format!("byte {b:#04x} at {i}")),
        }
    }
    match open.last() {
        Some(name) => Err(format!("`<{}>` left open", String::from_utf8_lossy(name))),
        None => Ok(()),
    }
}

fn request_line(ev: &AuditEvent) -> Vec<u8> {
    let r = &ev.request;
    let mut line = r.method.clone();
    line.push(b' ');
    line.extend_from_slice(&r.uri);
    if !r.protocol.is_empty() {
        line.push(b' ');
        line.extend_from_slice(&r.protocol);
    }
    line
}

fn interception(ev: &AuditEvent) -> String {
    let Some(i) = &ev.interception else {
        return "none (the transaction was not stopped)".into();
    };
    let mut s = String::new();
    let action = i
        .action
        .as_ref()
        .or_else(|| {
            ev.matches
                .iter()
                .map(|m| &m.action)
                .find(|a| a.is_disruptive())
        })
        .map(action_name);
    s.push_str(action.unwrap_or("intercepted"));
    if let Some(p) = i.phase {
        let _ = write!(s, " in phase {p}");
    }
    if let Some(st) = i.status {
        let _ = write!(s, " with status {st}");
    }
    if let Some(t) = &i.target {
        let _ = write!(s, " to {t}");
    }
    s
}

fn action_name(a: &MessageAction) -> &'static str {
    match a {
        MessageAction::Denied { .. } => "deny",
        MessageAction::Redirect { .. } => "redirect",
        MessageAction::Proxy { .. } => "proxy",
        MessageAction::Drop { .. } => "drop",
        MessageAction::Allowed { .. } => "allow",
        MessageAction::Warning | MessageAction::None => "intercepted",
    }
}

/// One rule as a list item: id, severity and message on the first line, then its data
/// and tags each on a line of their own.
fn rule_item(m: &RuleMatch) -> String {
    let mut s = String::from("<li><b>");
    let id = m.id.as_deref().unwrap_or("no id");
    value(&mut s, id.as_bytes(), 64, usize::MAX);
    s.push_str("</b>");
    if let Some(sev) = m.severity {
        let _ = write!(s, " {}", sev.name());
    }
    s.push_str(": ");
    let msg = m.msg.as_deref().unwrap_or(&m.justification);
    value(&mut s, msg.as_bytes(), VALUE_MAX_BYTES, usize::MAX);
    if let Some(d) = &m.data {
        s.push_str("<br>\ndata: ");
        value(&mut s, d.as_bytes(), VALUE_MAX_BYTES, usize::MAX);
    }
    if !m.tags.is_empty() {
        s.push_str("<br>\ntags: ");
        value(
            &mut s,
            m.tags.join(", ").as_bytes(),
            VALUE_MAX_BYTES,
            usize::MAX,
        );
    }
    s.push_str("</li>\n");
    s
}

#[cfg(test)]
mod tests;
