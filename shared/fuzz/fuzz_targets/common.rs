//! What every event target checks: parsing never panics, hangs or blows up memory, a
//! parsed event's HTML detail holds only the builder's own balanced tags within Sguil's
//! limit, and it maps to lines (GenericEvent and RTEVENT) that stay one Tcl list of the
//! right length on one line, whatever the file held.

use modsec2sguil::alert::{html, map_event, AlertSettings};
use modsec2sguil::auditlog::{parse_event, ParseLimits};
use modsec2sguil::sguil::wire::SguilEvent;
use modsec2sguil::sguil::{barnyard, tcl};

pub fn event(data: &[u8]) {
    let Ok(ev) = parse_event(data, &ParseLimits::default()) else {
        return;
    };
    let mapped = map_event(
        &ev,
        data,
        &["collector: fuzz".to_string()],
        &AlertSettings::default(),
    );
    if let Err(e) = html::check_markup(&mapped.fields.detail) {
        panic!("HTML detail: {e}");
    }
    let mut f = mapped.fields;
    f.sid = 1;
    f.cid = 1;
    f.hostname = "fuzz".into();
    // A field sguild cannot take (a year outside 1000-9999, say) is refused here and
    // the entry quarantined by the shipper; anything accepted must make sound lines.
    let Ok(e) = SguilEvent::new(f) else {
        return;
    };
    for (line, words) in [(e.to_line(), 19), (barnyard::rtevent_line(&e), 47)] {
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line:?}"
        );
        assert!(!line.contains('\r') && !line.contains('\0'), "{line:?}");
        let items = tcl::split(line.trim_end()).expect("a Tcl list");
        assert_eq!(items.len(), words, "{line:?}");
    }
}
