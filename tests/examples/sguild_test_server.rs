//! A sguild stand-in for trying a configuration without Sguil:
//!
//!     cargo run -p modsec2sguil-e2e --example sguild-test-server [PORT [AGENT_PORT]]
//!
//! Listens on 127.0.0.1 (default port 7736), behaves like sguild 1.0.0 towards agents
//! (banner, VersionInfo, TLS, RegisterAgent, GenericEvent, duplicates, PING), and plays a
//! snort_agent in front of itself on AGENT_PORT (default 7735) for OUTPUT barnyard (sensor
//! `websrv`). Prints the settings to put in modsec2sguil.conf, and reports each event it
//! stores. Ctrl-C stops it.

use std::time::Duration;

use modsec2sguil::sguil::conn::{hex_colons, sha256};
use modsec2sguil_e2e::sguild::TestSguild;

fn main() {
    let arg = |n: usize, default: u16| match std::env::args().nth(n) {
        Some(p) => p.parse().unwrap_or_else(|_| {
            eprintln!(
                "usage: sguild-test-server [PORT [AGENT_PORT]]   (1-65535; defaults 7736 and 7735)"
            );
            std::process::exit(2)
        }),
        None => default,
    };
    let (port, agent_port) = (arg(1, 7736), arg(2, 7735));
    let dir = tempfile::Builder::new()
        .prefix("sguild-test-server-")
        .tempdir()
        .expect("temp dir");
    let mut server = TestSguild::start_at(dir, port);
    let agent = server.start_snort_agent(agent_port, "websrv");
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
    println!("or, through the snort_agent stand-in on {agent}:");
    println!("  set OUTPUT barnyard");
    println!("  set AGENT_PORT {}", agent.port());
    println!("  set HOSTNAME websrv");
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
