//! `modsec-shipper drain`: ship the queue once, then exit (the cron job). The loop is
//! `modsec2sguil::ship::run::drain`.

use modsec2sguil::exit::Exit;
use modsec2sguil::ship::run::DrainOptions;

use crate::setup::{become_queue_owner, start};
use crate::{Common, Error};

pub fn run(
    common: &Common,
    wait: bool,
    max_events: Option<u64>,
    max_seconds: Option<u64>,
) -> Result<Exit, Error> {
    let (_config, settings) = start(common)?;
    // Root opens nothing in the queue: its owner (RUNAS) may have planted anything.
    become_queue_owner(&settings)?;
    let control = modsec2sguil::control::signals();
    let options = DrainOptions {
        wait,
        max_events,
        max_seconds,
    };
    Ok(modsec2sguil::ship::run::drain(
        &settings, &options, &control,
    ))
}
