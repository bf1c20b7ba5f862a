//! `modsec-shipper run`: the daemon. Detaches (DAEMON 1), drops privileges, and runs
//! `modsec2sguil::ship::run::daemon` with the signals as its control channel; SIGHUP
//! reads the config again through the same checks as at start.

use crate::setup::{become_queue_owner, load_settings, start};
use crate::Common;
use modsec2sguil::exit::Exit;

pub fn run(common: &Common, foreground: bool) -> u8 {
    let (_config, settings) = match start(common) {
        Ok(v) => v,
        Err(code) => return code,
    };
    if settings.daemon && !foreground {
        // Before any thread exists: fork keeps only the calling thread.
        if let Err(e) = nix::unistd::daemon(false, false) {
            log::error!("DAEMON 1: cannot detach: {e}");
            return Exit::Failed.code();
        }
    }
    // Root opens nothing in the queue: its owner (RUNAS) may have planted anything.
    if let Err(code) = become_queue_owner(&settings) {
        return code;
    }
    let control = modsec2sguil::control::signals();
    modsec2sguil::ship::run::daemon(settings, &control, || load_settings(common).map(|(_, s)| s))
        .code()
}
