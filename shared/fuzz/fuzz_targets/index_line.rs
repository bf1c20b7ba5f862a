//! Index lines as Apache hands them to the collector: never a panic; and a line that
//! parses resolves to an event file inside the storage dir or is refused.
#![no_main]

use std::path::{Component, Path};

use modsec2sguil::collect::resolve_event_path;
use modsec2sguil::index::parse_index_line;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(line) = parse_index_line(data) else {
        return;
    };
    let storage = Path::new("/var/log/modsec_audit");
    if let Ok(path) = resolve_event_path(storage, &line) {
        let rel = path.strip_prefix(storage).expect("under the storage dir");
        assert!(
            rel.components().all(|c| matches!(c, Component::Normal(_))),
            "{}",
            path.display()
        );
    }
    let _ = line.md5_hex();
    let _ = line.user_dir();
});
