//! The collector's settings: the config file, then the command line.

use std::path::PathBuf;

use crate::config::{pick, ConfigError, ConfigFile};
use crate::queue::LinkMode;
use crate::queue::{DEFAULT_MAX_EVENT_BYTES, MAX_EVENT_BYTES_RANGE};

/// Settings of one collector.
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    /// SecAuditLogStorageDir.
    pub storage_dir: PathBuf,
    /// The queue (modsec_agent.conf's EVENT_DIR).
    pub queue_dir: PathBuf,
    /// Where every line is appended unchanged, if anywhere.
    pub index_file: Option<PathBuf>,
    pub link_mode: LinkMode,
    pub verify_md5: bool,
    /// Owner (uid, gid) given to each new entry (RUNAS), so an unprivileged shipper can
    /// read and remove it. A hard link shares the inode: the event file in the storage
    /// dir changes owner too, as it did with modsec_queue.pl.
    pub runas: Option<(u32, u32)>,
    /// MAX_EVENT_BYTES, as the shipper reads it: a larger event is neither hashed nor
    /// copied by root; its line goes to the backlog with the reason.
    pub max_event_bytes: u64,
    /// STATE_DIR: the collector's own spool, backlog, record of what it queued and
    /// `--follow` position, where only root writes ([`crate::state`]).
    pub state_dir: PathBuf,
    /// EVENT_OWNER: the only user (besides RUNAS) whose event files are queued. Unset:
    /// the owner of the directory holding the event. Root's are never queued.
    pub event_owner: Option<u32>,
}

/// Settings given on the command line; they win over the config file.
#[derive(Debug, Clone, Default)]
pub struct CollectorOverrides {
    pub storage_dir: Option<PathBuf>,
    pub queue_dir: Option<PathBuf>,
    pub index_file: Option<PathBuf>,
    pub link_mode: Option<LinkMode>,
    pub verify_md5: Option<bool>,
    pub state_dir: Option<PathBuf>,
}

impl CollectorSettings {
    /// Combines the config file (`EVENT_DIR`, `STORAGE_DIR`, `INDEX_FILE`, `LINK_MODE` or
    /// `SYMLINK`, `VERIFY_MD5`, `RUNAS`, `MAX_EVENT_BYTES`, `STATE_DIR`, `EVENT_OWNER`)
    /// with the command line, which
    /// wins. Errors name the file, line and key, or the missing setting.
    pub fn resolve(
        config: Option<&ConfigFile>,
        o: CollectorOverrides,
    ) -> Result<CollectorSettings, ConfigError> {
        let queue_dir = crate::config::queue_dir(o.queue_dir, config)?;
        let storage_dir = pick(o.storage_dir, config, "STORAGE_DIR", ConfigFile::abs_path)?
            .ok_or_else(|| ConfigError::Missing {
                path: config.map(|c| c.path.clone()),
                key: "STORAGE_DIR".into(),
                how: Some(
                    "give it as the first argument, --storage-dir, or in the config file".into(),
                ),
            })?;
        let index_file = pick(o.index_file, config, "INDEX_FILE", ConfigFile::abs_path)?;
        let link_mode = pick(o.link_mode, config, "LINK_MODE", |c, _| {
            LinkMode::configured(c)
        })?
        .unwrap_or(LinkMode::Hardlink);
        let verify_md5 =
            pick(o.verify_md5, config, "VERIFY_MD5", ConfigFile::bool)?.unwrap_or(true);
        let runas = pick(None, config, "RUNAS", ConfigFile::owner)?;
        let max_event_bytes = pick(None, config, "MAX_EVENT_BYTES", |c, k| {
            c.number(k, MAX_EVENT_BYTES_RANGE)
        })?
        .unwrap_or(DEFAULT_MAX_EVENT_BYTES);
        let state_dir = crate::state::configured(o.state_dir, config)?;
        let event_owner = pick(None, config, "EVENT_OWNER", ConfigFile::owner)?.map(|(uid, _)| uid);
        for (what, dir) in [
            ("storage dir", &storage_dir),
            ("queue", &queue_dir),
            ("state dir", &state_dir),
        ] {
            if !dir.is_absolute() {
                return Err(ConfigError::Conflict {
                    path: None,
                    line: None,
                    why: format!(
                        "{what} {} must be an absolute path (Apache starts the collector in ServerRoot)",
                        dir.display()
                    ),
                });
            }
        }
        Ok(CollectorSettings {
            storage_dir,
            queue_dir,
            index_file,
            link_mode,
            verify_md5,
            runas,
            max_event_bytes,
            state_dir,
            event_owner,
        })
    }
}
