//! The shipper's settings: the config file, then the command line.

use std::path::PathBuf;

use crate::alert::AlertSettings;
use crate::auditlog::ParseLimits;
use crate::config::ConfigFile;
use crate::queue::LinkMode;
use crate::safefs::resolve_owner;
use crate::sguil::settings::{BarnyardSettings, SguilSettings};

use super::load::LoadOptions;
use super::ShipSettings;
use crate::queue::DEFAULT_MAX_EVENT_BYTES;

/// Where events go (config OUTPUT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// sguild, over the agent protocol (the default).
    Sguil,
    /// JSON lines on stdout, one per event, every field decoded.
    Stdout,
    /// The snort_agent on this host, as barnyard2 talks to it (RTEVENT).
    Barnyard,
}

impl Output {
    pub fn parse(text: &str) -> Option<Output> {
        match text.to_ascii_lowercase().as_str() {
            "sguil" => Some(Output::Sguil),
            "stdout" => Some(Output::Stdout),
            "barnyard" => Some(Output::Barnyard),
            _ => None,
        }
    }
}

/// Events per window when writing to stdout (nothing answers, so only the journal's
/// fsync rate matters).
const STDOUT_WINDOW: usize = 64;

/// Everything `drain` and `run` need.
#[derive(Debug, Clone)]
pub struct ShipperSettings {
    /// EVENT_DIR: the queue.
    pub queue_dir: PathBuf,
    pub output: Output,
    /// Set when `output` is [`Output::Sguil`].
    pub sguil: Option<SguilSettings>,
    /// Set when `output` is [`Output::Barnyard`].
    pub barnyard: Option<BarnyardSettings>,
    /// HOSTNAME (what events carry when not registered with sguild: stdout output).
    pub hostname: String,
    pub ship: ShipSettings,
    /// DAEMON 1: `run` detaches.
    pub daemon: bool,
    /// RUNAS `user[:group]`: privileges dropped to it once the config is read.
    pub runas: Option<(u32, u32)>,
}

/// Settings given on the command line; they win over the config file.
#[derive(Debug, Clone, Default)]
pub struct ShipperOverrides {
    pub queue_dir: Option<PathBuf>,
    pub output: Option<Output>,
}

impl ShipperSettings {
    /// Reads EVENT_DIR, OUTPUT, the Sguil keys (when OUTPUT is sguil), the alert keys,
    /// SYMLINK / LINK_MODE, STORAGE_DIR, SYMLINK_REMOVE_ORIG, MAX_EVENT_BYTES, DAEMON
    /// and RUNAS. Errors name the file, line and key.
    pub fn resolve(c: &ConfigFile, o: ShipperOverrides) -> Result<ShipperSettings, String> {
        let e = |err: crate::config::ConfigError| err.to_string();
        let queue_dir = match o.queue_dir {
            Some(q) => q,
            None => c
                .abs_path("EVENT_DIR")
                .map_err(e)?
                .ok_or_else(|| format!("{}: EVENT_DIR (the queue) is not set", c.path.display()))?,
        };
        let output = match o.output {
            Some(out) => out,
            None => match c.get("OUTPUT") {
                Some(s) => Output::parse(&s.value)
                    .ok_or_else(|| c.bad(s, "expected sguil, barnyard or stdout").to_string())?,
                None => Output::Sguil,
            },
        };
        let sguil = match output {
            Output::Sguil => Some(SguilSettings::resolve(c)?),
            _ => None,
        };
        let barnyard = match output {
            Output::Barnyard => Some(BarnyardSettings::resolve(c)?),
            _ => None,
        };
        let hostname = match (&sguil, &barnyard) {
            (Some(s), _) => s.hostname.clone(),
            (_, Some(b)) => b.hostname.clone(),
            _ => c
                .string("HOSTNAME")
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into()),
        };
        let symlink_mode = match c.get("LINK_MODE") {
            Some(s) => {
                LinkMode::parse(&s.value)
                    .ok_or_else(|| c.bad(s, "expected hardlink, copy or symlink").to_string())?
                    == LinkMode::Symlink
            }
            None => c.bool("SYMLINK").map_err(e)?.unwrap_or(false),
        };
        let storage_dir = c.abs_path("STORAGE_DIR").map_err(e)?;
        let storage_dir = match (symlink_mode, storage_dir) {
            (true, None) => {
                return Err(format!(
                    "{}: symlink mode needs STORAGE_DIR, so that only links into it are followed",
                    c.path.display()
                ))
            }
            (true, Some(d)) => Some(std::fs::canonicalize(&d).map_err(|err| {
                format!("{}: STORAGE_DIR {}: {err}", c.path.display(), d.display())
            })?),
            (false, d) => d,
        };
        let max_event_bytes = c
            .number("MAX_EVENT_BYTES", crate::queue::MAX_EVENT_BYTES_RANGE)
            .map_err(e)?
            .unwrap_or(DEFAULT_MAX_EVENT_BYTES);
        let runas = match c.get("RUNAS").filter(|s| !s.value.is_empty()) {
            Some(s) => Some(resolve_owner(&s.value).map_err(|why| c.bad(s, why).to_string())?),
            None => None,
        };
        let window = match (&sguil, &barnyard) {
            (Some(s), _) => s.send_window,
            (_, Some(b)) => b.send_window,
            _ => STDOUT_WINDOW,
        };
        Ok(ShipperSettings {
            queue_dir,
            output,
            hostname,
            ship: ShipSettings {
                alert: AlertSettings::resolve(c).map_err(e)?,
                load: LoadOptions {
                    follow_symlinks: symlink_mode,
                    storage_dir,
                    max_event_bytes,
                    limits: ParseLimits::default(),
                },
                remove_orig: c.bool("SYMLINK_REMOVE_ORIG").map_err(e)?.unwrap_or(false),
                window,
            },
            sguil,
            barnyard,
            daemon: c.bool("DAEMON").map_err(e)?.unwrap_or(false),
            runas,
        })
    }
}
