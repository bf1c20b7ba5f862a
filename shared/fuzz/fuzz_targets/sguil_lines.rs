//! What sguild and snort_agent send back: never a panic; and any text written as a Tcl
//! list element reads back as itself.
#![no_main]

use modsec2sguil::sguil::barnyard::parse_agent_line;
use modsec2sguil::sguil::tcl;
use modsec2sguil::sguil::wire::parse_server_line;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_server_line(&text);
    let _ = parse_agent_line(&text);
    let _ = tcl::split(&text);
    let element = tcl::element(&text);
    assert!(
        !element.contains('\n') && !element.contains('\r'),
        "{element:?}"
    );
    assert_eq!(
        tcl::split(&element).expect("one element"),
        [text.to_string()]
    );
});
