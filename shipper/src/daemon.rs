//! `modsec-shipper run`: the daemon. Detaches (DAEMON 1), drops privileges, and runs
//! `modsec2sguil::ship::run::daemon` with the signals as its control channel; SIGHUP
//! reads the config again through the same checks as at start.

use modsec2sguil::exit::Exit;

use crate::setup::{become_queue_owner, load_settings, start};
use crate::{Common, Error};

pub fn run(common: &Common, foreground: bool) -> Result<Exit, Error> {
    let (_config, settings) = start(common)?;
    if settings.daemon && !foreground {
        // Before any thread exists: fork keeps only the calling thread.
        nix::unistd::daemon(false, false)
            .map_err(|e| Error::Logged(Exit::Failed, format!("DAEMON 1: cannot detach: {e}")))?;
    }
    // Root opens nothing in the queue: its owner (RUNAS) may have planted anything.
    become_queue_owner(&settings)?;
    let control = modsec2sguil::control::signals();
    let reload = || load_settings(common).map(|(_, s)| s);
    Ok(modsec2sguil::ship::run::daemon(settings, &control, reload))
}
