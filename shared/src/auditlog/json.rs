//! JSON event files: ModSecurity 2.9.1+ (`SecAuditLogFormat JSON`) and libmodsecurity 3
//! (ARCHITECTURE.md, "The formats we read").
//!
//! Real files are not valid JSON in two ways a strict parser refuses: ModSecurity
//! copies raw request bytes into strings without UTF-8 validation, and repeated
//! response headers become duplicate object keys. So the text is decoded lossily
//! (flagged as an anomaly) and parsed into [`Json`], a tree that keeps every key in
//! order, duplicates included; serde_json does the tokenizing and its recursion limit
//! bounds nesting.

use std::fmt;
use std::net::IpAddr;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::message::{parse_message, MessageDialect};
use super::model::*;
use super::native::{modsecurity_copy, split_request_line};
use super::{finish_event, AuditLogError, Outcome, ParseLimits};
use crate::time::{parse_ctime, parse_modsec_time};

/// A JSON value whose objects keep duplicate keys and their order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
                Ok(Json::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Json, E> {
                Ok(Json::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Arr(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    entries.push((k, v));
                }
                Ok(Json::Obj(entries))
            }
        }
        d.deserialize_any(V)
    }
}

impl Json {
    /// The first value under `key`, if this is an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn path(&self, keys: &[&str]) -> Option<&Json> {
        keys.iter().try_fold(self, |v, k| v.get(k))
    }

    fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A number, or a string holding one (libmodsecurity 3 writes numbers as strings).
    fn u64(&self) -> Option<u64> {
        match self {
            Json::UInt(v) => Some(*v),
            Json::Int(v) => u64::try_from(*v).ok(),
            Json::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Json::Str(s) => Some(s.clone()),
            Json::UInt(v) => Some(v.to_string()),
            Json::Int(v) => Some(v.to_string()),
            Json::Float(v) => Some(v.to_string()),
            _ => None,
        }
    }

    fn items(&self) -> &[Json] {
        match self {
            Json::Arr(items) => items,
            _ => &[],
        }
    }

    fn headers(&self) -> Vec<Header> {
        match self {
            Json::Obj(entries) => entries
                .iter()
                .map(|(k, v)| Header {
                    name: k.as_bytes().to_vec(),
                    value: v.text().unwrap_or_default().into_bytes(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Decodes and parses the JSON text; returns the tree and whether bytes were not UTF-8.
pub(crate) fn parse_tree(input: &[u8]) -> Result<(Json, bool), AuditLogError> {
    let text = String::from_utf8_lossy(input);
    let lossy = matches!(text, std::borrow::Cow::Owned(_));
    let mut de = serde_json::Deserializer::from_str(&text);
    let tree =
        Json::deserialize(&mut de).map_err(|e| AuditLogError::Json { why: e.to_string() })?;
    de.end().map_err(|e| AuditLogError::Json {
        why: format!("text after the event object: {e}"),
    })?;
    Ok((tree, lossy))
}

fn missing(what: &str) -> AuditLogError {
    AuditLogError::Json {
        why: format!("missing or invalid {what}"),
    }
}

fn endpoint(
    addr: Option<&Json>,
    port: Option<&Json>,
    what: &str,
) -> Result<Endpoint, AuditLogError> {
    let addr = addr
        .and_then(Json::str)
        .and_then(|a| a.parse::<IpAddr>().ok())
        .ok_or_else(|| missing(&format!("{what} address")))?;
    let port = port
        .and_then(Json::u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| missing(&format!("{what} port")))?;
    Ok(Endpoint { addr, port })
}

fn check_id(id: &str) -> Result<String, AuditLogError> {
    if id.is_empty() || id.len() > crate::index::MAX_UNIQUE_ID_LEN {
        return Err(missing("unique id"));
    }
    Ok(id.to_string())
}

/// ModSecurity 2.9 JSON.
pub(crate) fn parse_json2(root: &Json, limits: &ParseLimits) -> Result<AuditEvent, AuditLogError> {
    let tx = root
        .get("transaction")
        .ok_or_else(|| missing("`transaction` object"))?;
    let time_text = tx
        .get("time")
        .and_then(Json::str)
        .ok_or_else(|| missing("transaction.time"))?;
    let time = parse_modsec_time(time_text.as_bytes()).map_err(|e| AuditLogError::Json {
        why: format!("transaction.time: {e}"),
    })?;
    let id = check_id(
        tx.get("transaction_id")
            .and_then(Json::str)
            .unwrap_or_default(),
    )?;
    let client = endpoint(
        tx.get("remote_address"),
        tx.get("remote_port"),
        "transaction.remote",
    )?;
    let server = endpoint(
        tx.get("local_address"),
        tx.get("local_port"),
        "transaction.local",
    )?;
    let mut ev = AuditEvent::new(EventFormat::Json2, id, time, client, server);

    if let Some(req) = root.get("request") {
        json2_request(req, limits, &mut ev);
    }
    if let Some(resp) = root.get("response") {
        json2_response(resp, limits, &mut ev);
    }
    let (outcome, copies) = match root.get("audit_data") {
        Some(audit) => json2_audit_data(audit, &mut ev),
        None => (Outcome::default(), Vec::new()),
    };
    json2_matched_rule_ids(root, &mut ev);
    finish_event(&mut ev, outcome, copies);
    Ok(ev)
}

/// 2.9 JSON `request`: the request line, headers and body (`body` chunks, or `fake_body`).
fn json2_request(req: &Json, limits: &ParseLimits, ev: &mut AuditEvent) {
    let line = req
        .get("request_line")
        .and_then(Json::str)
        .unwrap_or_default()
        .as_bytes()
        .to_vec();
    let (m, u, p) = split_request_line(&line);
    ev.request.method = m.to_vec();
    ev.request.uri = u.to_vec();
    ev.request.protocol = p.to_vec();
    ev.request.line = line;
    ev.request.headers = req.get("headers").map(Json::headers).unwrap_or_default();
    // `body` is an array of stored chunks; `fake_body` is part I for multipart.
    let body = req.get("body").or_else(|| req.get("fake_body"));
    if let Some(body) = body {
        let joined: String = match body {
            Json::Arr(chunks) => chunks.iter().filter_map(Json::str).collect(),
            other => other.text().unwrap_or_default(),
        };
        ev.request.body = Some(Body::capped(joined.as_bytes(), limits.max_body_bytes));
    }
}

/// 2.9 JSON `response`: protocol, status, headers and body.
fn json2_response(resp: &Json, limits: &ParseLimits, ev: &mut AuditEvent) {
    ev.response.protocol = resp
        .get("protocol")
        .and_then(Json::str)
        .unwrap_or_default()
        .as_bytes()
        .to_vec();
    ev.response.status = resp
        .get("status")
        .and_then(Json::u64)
        .and_then(|s| u16::try_from(s).ok());
    ev.response.headers = resp.get("headers").map(Json::headers).unwrap_or_default();
    if let Some(body) = resp.get("body").and_then(Json::text) {
        ev.response.body = Some(Body::capped(body.as_bytes(), limits.max_body_bytes));
    }
}

/// 2.9 JSON `audit_data`: messages, error-log copies, the action, producer, server
/// and engine mode. Returns the outcome and the rule messages found in error-log copies.
fn json2_audit_data(audit: &Json, ev: &mut AuditEvent) -> (Outcome, Vec<RuleMatch>) {
    let mut outcome = Outcome::default();
    let mut copies = Vec::new();
    for msg in audit.get("messages").map(Json::items).unwrap_or_default() {
        if let Some(text) = msg.str() {
            ev.matches
                .push(parse_message(text, MessageDialect::ModSecurity2));
        }
    }
    for err in audit
        .get("error_messages")
        .map(Json::items)
        .unwrap_or_default()
    {
        if let Some(text) = err.str() {
            match modsecurity_copy(text) {
                Some(alert) => copies.push(parse_message(alert, MessageDialect::ModSecurity2)),
                None => ev.apache_errors.push(text.to_string()),
            }
        }
    }
    if let Some(action) = audit.get("action") {
        outcome.intercepted = matches!(action.get("intercepted"), Some(Json::Bool(true)));
        outcome.phase = action
            .get("phase")
            .and_then(Json::u64)
            .and_then(|p| u8::try_from(p).ok());
    }
    ev.producer = match audit.get("producer") {
        Some(Json::Arr(items)) => Some(
            items
                .iter()
                .filter_map(Json::str)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Some(other) => other.text(),
        None => None,
    };
    ev.server_banner = audit.get("server").and_then(Json::text);
    ev.engine_mode = match audit.get("engine_mode").and_then(Json::str) {
        Some("ENABLED") => Some(EngineMode::Enabled),
        Some("DETECTION_ONLY") => Some(EngineMode::DetectionOnly),
        _ => None,
    };
    (outcome, copies)
}

/// 2.9 JSON `matched_rules`: the ids of the rules that matched, in order, once each.
fn json2_matched_rule_ids(root: &Json, ev: &mut AuditEvent) {
    for group in root
        .get("matched_rules")
        .map(Json::items)
        .unwrap_or_default()
    {
        for rule in group.get("rules").map(Json::items).unwrap_or_default() {
            if matches!(rule.get("is_matched"), Some(Json::Bool(false))) {
                continue;
            }
            if let Some(id) = rule.path(&["actionset", "id"]).and_then(Json::text) {
                if !ev.matched_rule_ids.contains(&id) {
                    ev.matched_rule_ids.push(id);
                }
            }
        }
    }
}

/// libmodsecurity 3 JSON.
pub(crate) fn parse_json3(root: &Json, limits: &ParseLimits) -> Result<AuditEvent, AuditLogError> {
    let tx = root
        .get("transaction")
        .ok_or_else(|| missing("`transaction` object"))?;
    let stamp = tx
        .get("time_stamp")
        .and_then(Json::str)
        .ok_or_else(|| missing("transaction.time_stamp"))?;
    // `%c` local time with no zone (libmodsecurity #2340): taken as UTC and flagged.
    let naive = parse_ctime(stamp).ok_or_else(|| AuditLogError::Json {
        why: format!("transaction.time_stamp `{stamp}` is not `Sat Nov 28 02:13:43 2026`"),
    })?;
    let time = naive.and_utc().fixed_offset();
    let id = check_id(tx.get("unique_id").and_then(Json::str).unwrap_or_default())?;
    let client = endpoint(
        tx.get("client_ip"),
        tx.get("client_port"),
        "transaction.client",
    )?;
    let server = endpoint(tx.get("host_ip"), tx.get("host_port"), "transaction.host")?;
    let mut ev = AuditEvent::new(EventFormat::Json3, id, time, client, server);
    ev.anomalies.time_zone_unknown = true;

    if let Some(req) = tx.get("request") {
        json3_request(req, limits, &mut ev);
    }
    if let Some(resp) = tx.get("response") {
        json3_response(resp, limits, &mut ev);
    }
    if let Some(producer) = tx.get("producer") {
        json3_producer(producer, &mut ev);
    }
    for msg in tx.get("messages").map(Json::items).unwrap_or_default() {
        ev.matches.push(json3_message(msg));
    }
    finish_event(&mut ev, Outcome::default(), Vec::new());
    Ok(ev)
}

/// libmodsecurity 3 JSON `transaction.request`: method, URI, version, headers, body.
fn json3_request(req: &Json, limits: &ParseLimits, ev: &mut AuditEvent) {
    ev.request.method = req
        .get("method")
        .and_then(Json::text)
        .unwrap_or_default()
        .into_bytes();
    ev.request.uri = req
        .get("uri")
        .and_then(Json::text)
        .unwrap_or_default()
        .into_bytes();
    ev.request.protocol = match req.get("http_version").and_then(Json::text) {
        Some(v) => format!("HTTP/{v}").into_bytes(),
        None => Vec::new(),
    };
    ev.request.line = [
        &ev.request.method[..],
        b" ",
        &ev.request.uri,
        b" ",
        &ev.request.protocol,
    ]
    .concat();
    ev.request.headers = req.get("headers").map(Json::headers).unwrap_or_default();
    if let Some(body) = json3_body(req, limits) {
        ev.request.body = Some(body);
    }
}

/// libmodsecurity 3 JSON `transaction.response`: status, headers, body.
fn json3_response(resp: &Json, limits: &ParseLimits, ev: &mut AuditEvent) {
    ev.response.status = resp
        .get("http_code")
        .and_then(Json::u64)
        .and_then(|s| u16::try_from(s).ok());
    ev.response.headers = resp.get("headers").map(Json::headers).unwrap_or_default();
    if let Some(body) = json3_body(resp, limits) {
        ev.response.body = Some(body);
    }
}

/// A libmodsecurity 3 JSON `body` (request or response), if present and not empty.
fn json3_body(part: &Json, limits: &ParseLimits) -> Option<Body> {
    let body = part
        .get("body")
        .and_then(Json::text)
        .filter(|b| !b.is_empty())?;
    Some(Body::capped(body.as_bytes(), limits.max_body_bytes))
}

/// libmodsecurity 3 JSON `transaction.producer`: the producer names and the engine mode.
fn json3_producer(producer: &Json, ev: &mut AuditEvent) {
    let mut names: Vec<String> = ["modsecurity", "connector"]
        .iter()
        .filter_map(|k| producer.get(k).and_then(Json::text))
        .collect();
    names.extend(
        producer
            .get("components")
            .map(Json::items)
            .unwrap_or_default()
            .iter()
            .filter_map(Json::text),
    );
    ev.producer = (!names.is_empty()).then(|| names.join("; "));
    ev.engine_mode = match producer.get("secrules_engine").and_then(Json::str) {
        Some("Enabled") => Some(EngineMode::Enabled),
        Some("DetectionOnly") => Some(EngineMode::DetectionOnly),
        _ => None,
    };
}

/// One libmodsecurity 3 JSON `transaction.messages` entry as a rule match.
fn json3_message(msg: &Json) -> RuleMatch {
    let d = msg.get("details");
    let field = |k: &str| {
        d.and_then(|d| d.get(k))
            .and_then(Json::text)
            .filter(|v| !v.is_empty())
    };
    let text = msg.get("message").and_then(Json::text).unwrap_or_default();
    RuleMatch {
        // The JSON does not say whether a rule was disruptive.
        action: MessageAction::None,
        justification: field("match").unwrap_or_default(),
        file: field("file"),
        line: field("lineNumber").and_then(|l| l.parse().ok()),
        id: field("ruleId"),
        rev: field("rev"),
        msg: (!text.is_empty()).then(|| text.clone()),
        data: field("data"),
        severity: field("severity").and_then(|s| Severity::parse(&s)),
        ver: field("ver"),
        maturity: field("maturity")
            .and_then(|v| v.parse().ok())
            .filter(|&v| v > 0),
        accuracy: field("accuracy")
            .and_then(|v| v.parse().ok())
            .filter(|&v| v > 0),
        tags: d
            .and_then(|d| d.get("tags"))
            .map(Json::items)
            .unwrap_or_default()
            .iter()
            .filter_map(Json::text)
            .collect(),
        truncated: false,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_all_kept_in_order() {
        let (tree, lossy) =
            parse_tree(br#"{"h":{"Set-Cookie":"a=1","Set-Cookie":"b=2"}}"#).unwrap();
        assert!(!lossy);
        let headers = tree.get("h").unwrap().headers();
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[1].value, b"b=2");
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily_and_flagged() {
        let (tree, lossy) = parse_tree(b"{\"a\":\"caf\xe9\"}").unwrap();
        assert!(lossy);
        assert_eq!(tree.get("a").and_then(Json::str), Some("caf\u{fffd}"));
    }

    #[test]
    fn trailing_garbage_and_deep_nesting_are_errors() {
        assert!(parse_tree(b"{} {}").is_err());
        let deep = "[".repeat(10_000);
        assert!(parse_tree(deep.as_bytes()).is_err());
    }
}
