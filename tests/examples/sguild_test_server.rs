//! A sguild stand-in for trying a configuration without Sguil:
//!
//!     cargo run -p modsec2sguil-e2e --example sguild-test-server [PORT]
//!
//! Listens on 127.0.0.1 (default port 7736), behaves like sguild 1.0.0 towards agents
//! (banner, VersionInfo, TLS, RegisterAgent, GenericEvent, duplicates, PING), prints the
//! settings to put in modsec2sguil.conf, and reports each event it stores. Ctrl-C stops it.

use std::time::Duration;

use modsec2sguil::sguil::conn::{hex_colons, sha256};
use modsec2sguil_e2e::sguild::TestSguild;

fn main() {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse().unwrap_or_else(|_| {
            eprintln!("usage: sguild-test-server [PORT]   (PORT: 1-65535, default 7736)");
            std::process::exit(2)
        }),
        None => 7736,
    };
    let dir = tempfile::Builder::new()
        .prefix("sguild-test-server-")
        .tempdir()
        .expect("temp dir");
    let server = TestSguild::start_at(dir, port);
    println!(
        "sguild test server on {} (store: {})",
        server.addr,
        server.store_path().display()
    );
    println!("settings for modsec2sguil.conf:");
    println!("  set SERVER_HOST 127.0.0.1");
    println!("  set SERVER_PORT {}", server.addr.port());
    println!("  set TLS_CA_FILE {}", server.cert_pem.display());
    println!(
        "  # or: set TLS_PIN_SHA256 {}",
        hex_colons(&sha256(&server.cert_der))
    );
    let mut shown = 0;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let events = server.events();
        for e in &events[shown..] {
            println!(
                "stored sid {} cid {} {} {}:{} -> {}:{} sig {} `{}` ({} hex chars of detail)",
                e.sid,
                e.cid,
                e.timestamp,
                e.src_ip,
                e.src_port,
                e.dst_ip,
                e.dst_port,
                e.sig_id,
                String::from_utf8_lossy(&e.message).escape_debug(),
                e.detail_hex.len()
            );
        }
        shown = events.len();
    }
}
