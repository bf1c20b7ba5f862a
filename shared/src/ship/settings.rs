//! The shipper's settings: the config file, then the command line.

use std::path::PathBuf;

use crate::alert::AlertSettings;
use crate::auditlog::ParseLimits;
use crate::config::{pick, ConfigError, ConfigFile};
use crate::queue::LinkMode;
use crate::sguil::settings::{BarnyardSettings, SguilSettings};

use super::load::LoadOptions;
use super::DeliverySettings;
use crate::queue::DEFAULT_MAX_EVENT_BYTES;

/// Where events go (OUTPUT, or `--output`), before its settings are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Sguil,
    Stdout,
    Text,
    Barnyard,
}

impl OutputKind {
    pub fn parse(text: &str) -> Option<OutputKind> {
        match text.to_ascii_lowercase().as_str() {
            "sguil" => Some(OutputKind::Sguil),
            "stdout" => Some(OutputKind::Stdout),
            "text" => Some(OutputKind::Text),
            "barnyard" => Some(OutputKind::Barnyard),
            _ => None,
        }
    }
}

/// Where events go, with what that needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// sguild, over the agent protocol (the default).
    Sguil(SguilSettings),
    /// The snort_agent on this host, as barnyard2 talks to it (RTEVENT).
    Barnyard(BarnyardSettings),
    /// JSON lines on stdout, one per event, every field decoded.
    Stdout,
    /// One line for a person on stdout per event ([`super::sink::event_line`]).
    Text,
}

impl Output {
    /// How long the session may be idle before a PING, when there is a session.
    pub fn ping_delay(&self) -> Option<std::time::Duration> {
        match self {
            Output::Sguil(s) => Some(s.ping_delay),
            Output::Barnyard(b) => Some(b.ping_delay),
            Output::Stdout | Output::Text => None,
        }
    }
}

/// Events per window when writing to stdout (nothing answers, so only the journal's
/// fsync rate matters).
const STDOUT_WINDOW: usize = 64;

/// Everything `drain` and `run` need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipperSettings {
    /// EVENT_DIR: the queue.
    pub queue_dir: PathBuf,
    pub output: Output,
    /// HOSTNAME (what events carry when not registered with sguild: stdout output).
    pub hostname: String,
    pub ship: DeliverySettings,
    /// DAEMON 1: `run` detaches.
    pub daemon: bool,
    /// RUNAS `user[:group]`: privileges dropped to it once the config is read.
    pub runas: Option<(u32, u32)>,
    /// POLL_INTERVAL (seconds): how often `run` lists the queue without being woken.
    /// New entries wake it at once (inotify); the poll is the safety net, and the only
    /// way where the queue cannot be watched.
    pub poll: std::time::Duration,
}

/// POLL_INTERVAL when not set: modsec_agent.pl's one second.
pub const DEFAULT_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Settings given on the command line; they win over the config file.
#[derive(Debug, Clone, Default)]
pub struct ShipperOverrides {
    pub queue_dir: Option<PathBuf>,
    pub output: Option<OutputKind>,
}

impl ShipperSettings {
    /// Reads EVENT_DIR, OUTPUT, the Sguil or snort_agent keys OUTPUT needs, the alert
    /// keys, SYMLINK / LINK_MODE, STORAGE_DIR, SYMLINK_REMOVE_ORIG, MAX_EVENT_BYTES,
    /// DAEMON, RUNAS and POLL_INTERVAL. Errors name the file, line and key.
    pub fn resolve(c: &ConfigFile, o: ShipperOverrides) -> Result<ShipperSettings, ConfigError> {
        let queue_dir = crate::config::queue_dir(o.queue_dir, Some(c))?;
        let kind = pick(o.output, Some(c), "OUTPUT", |c, k| {
            c.word(k, OutputKind::parse, "sguil, barnyard, stdout or text")
        })?
        .unwrap_or(OutputKind::Sguil);
        let output = match kind {
            OutputKind::Sguil => Output::Sguil(SguilSettings::resolve(c)?),
            OutputKind::Barnyard => Output::Barnyard(BarnyardSettings::resolve(c)?),
            OutputKind::Stdout => Output::Stdout,
            OutputKind::Text => Output::Text,
        };
        let (hostname, window) = match &output {
            Output::Sguil(s) => (s.hostname.clone(), s.send_window),
            Output::Barnyard(b) => (b.hostname.clone(), b.send_window),
            Output::Stdout | Output::Text => (
                c.string("HOSTNAME")
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "localhost".into()),
                STDOUT_WINDOW,
            ),
        };
        let symlink_mode = LinkMode::configured(c)? == Some(LinkMode::Symlink);
        let storage_dir = match (symlink_mode, c.abs_path("STORAGE_DIR")?) {
            (true, None) => {
                return Err(c.conflict(
                    "symlink mode needs STORAGE_DIR, so that only links into it are followed",
                ))
            }
            (true, Some(d)) => Some(
                std::fs::canonicalize(&d)
                    .map_err(|err| c.conflict(format!("STORAGE_DIR {}: {err}", d.display())))?,
            ),
            (false, d) => d,
        };
        let max_event_bytes = c
            .number("MAX_EVENT_BYTES", crate::queue::MAX_EVENT_BYTES_RANGE)?
            .unwrap_or(DEFAULT_MAX_EVENT_BYTES);
        Ok(ShipperSettings {
            queue_dir,
            output,
            hostname,
            ship: DeliverySettings {
                alert: AlertSettings::resolve(c)?,
                load: LoadOptions {
                    follow_symlinks: symlink_mode,
                    storage_dir,
                    max_event_bytes,
                    limits: ParseLimits::default(),
                },
                remove_orig: c.bool("SYMLINK_REMOVE_ORIG")?.unwrap_or(false),
                window,
                thresholds: load_thresholds(c)?,
            },
            daemon: c.bool("DAEMON")?.unwrap_or(false),
            runas: c.owner("RUNAS")?,
            poll: c
                .number("POLL_INTERVAL", 1..=3600)?
                .map_or(DEFAULT_POLL, std::time::Duration::from_secs),
        })
    }
}

/// THRESHOLD_FILE's rules: every bad line is refused, naming the file and line. As
/// root (a `drain` started by root reads them before it drops to the queue's owner)
/// the file is config root uses, so it must be root's alone, as the config file must
/// ([`crate::config::check_strict_modes`]): a rule can silence every alert, and the
/// queue's owner is the user an attacker reaches first.
fn load_thresholds(
    c: &ConfigFile,
) -> Result<Option<std::sync::Arc<crate::threshold::Rules>>, ConfigError> {
    use std::io::Read;
    let Some(path) = c.abs_path("THRESHOLD_FILE")? else {
        return Ok(None);
    };
    crate::config::check_strict_modes(&path)?;
    let io = |source| ConfigError::Io {
        path: path.clone(),
        source,
    };
    let f = crate::safefs::Open::read(crate::safefs::Keeper::Anyone)
        .configured()
        .at(&path)
        .map_err(io)?;
    let mut bytes = Vec::new();
    f.take(crate::threshold::MAX_THRESHOLD_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let rules = crate::threshold::Rules::parse(&path, &bytes).map_err(|e| ConfigError::Syntax {
        path: e.path,
        line: e.line,
        why: e.why,
    })?;
    Ok(Some(std::sync::Arc::new(rules)))
}
