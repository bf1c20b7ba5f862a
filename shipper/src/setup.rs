//! What `drain` and `run` share: config and logging, and privileges.

use modsec2sguil::config::ConfigFile;
use modsec2sguil::exit::Exit;
use modsec2sguil::logging::SHIPPER;
use modsec2sguil::ship::settings::{OutputKind, ShipperOverrides, ShipperSettings};

use crate::{Common, Error, OutputArg};

/// The start of `drain` and `run`: the config read and checked, the logger installed.
/// A config that does not load is an error for the log (stderr, and its log file if the
/// file at least parses), exit 3.
pub fn start(common: &Common) -> Result<(ConfigFile, ShipperSettings), Error> {
    match load_settings(common) {
        Ok((config, settings)) => {
            install_logger(common, Some(&config));
            Ok((config, settings))
        }
        Err(e) => {
            // Its log file only if root may trust it.
            let config = ConfigFile::load_trusted(&common.config).ok();
            install_logger(common, config.as_ref());
            Err(Error::Logged(Exit::Config, e))
        }
    }
}

/// Loads and checks the config file (as root: only one root alone can write, see
/// `ConfigFile::load_trusted`); errors name the file, line and key.
pub fn load_settings(common: &Common) -> Result<(ConfigFile, ShipperSettings), String> {
    let config = ConfigFile::load_trusted(&common.config).map_err(|e| e.to_string())?;
    let overrides = ShipperOverrides {
        queue_dir: common.queue.clone(),
        output: common.output.map(|o| match o {
            OutputArg::Sguil => OutputKind::Sguil,
            OutputArg::Stdout => OutputKind::Stdout,
            OutputArg::Text => OutputKind::Text,
            OutputArg::Barnyard => OutputKind::Barnyard,
        }),
    };
    let settings = ShipperSettings::resolve(&config, overrides).map_err(|e| e.to_string())?;
    if !common.allow_world_writable {
        for path in [common.config.as_path(), settings.queue_dir.as_path()] {
            not_world_writable(path)?;
        }
    }
    Ok((config, settings))
}

/// Refuses a file or directory anyone may write to: the config says where events go and
/// how sguild's certificate is checked; the queue holds what is sent and the journal.
fn not_world_writable(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o002 != 0 => Err(format!(
            "{} is writable by everyone (mode {:o}): anyone could redirect, forge or remove events; `chmod o-w {}`, or pass --allow-world-writable",
            path.display(),
            m.permissions().mode() & 0o7777,
            path.display()
        )),
        _ => Ok(()),
    }
}

/// Installs the log of `drain` and `run` (a config that did not load still gets stderr).
pub fn install_logger(common: &Common, config: Option<&ConfigFile>) {
    modsec2sguil::logging::start(&SHIPPER, config, common.debug, None);
}

/// Started as root, becomes RUNAS or the queue's owner before anything in the queue is
/// opened (`modsec2sguil::privilege`); what cannot is logged and exits 3.
pub fn become_queue_owner(settings: &ShipperSettings) -> Result<(), Error> {
    modsec2sguil::privilege::drop_to_queue_owner(settings.runas, &settings.queue_dir)
        .map(|_| ())
        .map_err(|e| Error::Logged(Exit::Config, e.to_string()))
}
