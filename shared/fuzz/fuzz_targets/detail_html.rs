//! The HTML detail builder on arbitrary event bytes: the input is cut into a URI, a
//! User-Agent, a body, a rule message and the raw event, put into a parsed event, and
//! the detail must hold only the builder's own balanced tags within Sguil's limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modsec2sguil::alert::{html, map_event, AlertSettings};
use modsec2sguil::auditlog::{parse_event, ParseLimits};

const TEMPLATE: &[u8] = b"--f-A--\n[28/Nov/2026:02:14:31.052041 +0000] FUZZ 192.0.2.7 1 192.0.2.8 80\n\
--f-B--\nGET / HTTP/1.1\nUser-Agent: x\n\n--f-C--\nb\n--f-F--\nHTTP/1.1 403 Forbidden\n\n\
--f-H--\nMessage: Access denied with code 403 (phase 2). x [id \"1\"] [msg \"m\"] [data \"d\"]\n\n--f-Z--\n";

fuzz_target!(|data: &[u8]| {
    let mut ev = parse_event(TEMPLATE, &ParseLimits::default()).expect("template parses");
    let mut parts = data.splitn(5, |&b| b == 0xfe);
    let mut next = || parts.next().unwrap_or_default().to_vec();
    ev.request.uri = next();
    ev.request.headers[0].value = next();
    ev.request.body.as_mut().expect("template has a body").bytes = next();
    let msg = String::from_utf8_lossy(&next()).into_owned();
    ev.matches[0].msg = Some(msg.clone());
    ev.matches[0].data = Some(msg);
    let raw = next();
    for raw_max in [0, 16 * 1024, 32_767] {
        let s = AlertSettings {
            detail_raw_bytes: raw_max,
            ..AlertSettings::default()
        };
        let detail = map_event(&ev, &raw, &[], &s).fields.detail;
        if let Err(e) = html::check_markup(&detail) {
            panic!("HTML detail: {e}");
        }
    }
});
