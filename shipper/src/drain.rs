//! `modsec-shipper drain`: ship the queue once, then exit (the cron job). The loop is
//! `modsec2sguil::ship::run::drain`.

use modsec2sguil::ship::run::DrainOptions;

use crate::setup::{become_queue_owner, start};
use crate::Common;

pub fn run(common: &Common, wait: bool, max_events: Option<u64>, max_seconds: Option<u64>) -> u8 {
    let (_config, settings) = match start(common) {
        Ok(v) => v,
        Err(code) => return code,
    };
    // Root opens nothing in the queue: its owner (RUNAS) may have planted anything.
    if let Err(code) = become_queue_owner(&settings) {
        return code;
    }
    let control = modsec2sguil::control::signals();
    let options = DrainOptions {
        wait,
        max_events,
        max_seconds,
    };
    modsec2sguil::ship::run::drain(&settings, &options, &control).code()
}
