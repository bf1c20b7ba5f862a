//! The collector's settings: the config file, then the command line.

use std::path::PathBuf;

use crate::config::ConfigFile;
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
}

/// Settings given on the command line; they win over the config file.
#[derive(Debug, Clone, Default)]
pub struct CollectorOverrides {
    pub storage_dir: Option<PathBuf>,
    pub queue_dir: Option<PathBuf>,
    pub index_file: Option<PathBuf>,
    pub link_mode: Option<LinkMode>,
    pub verify_md5: Option<bool>,
}

impl CollectorSettings {
    /// Combines the config file (`EVENT_DIR`, `STORAGE_DIR`, `INDEX_FILE`, `LINK_MODE` or
    /// `SYMLINK`, `VERIFY_MD5`, `RUNAS`) with the command line. Errors name the file,
    /// line and key, or the missing setting.
    pub fn resolve(
        config: Option<&ConfigFile>,
        o: CollectorOverrides,
    ) -> Result<CollectorSettings, String> {
        let from_config = |key: &str| -> Result<Option<PathBuf>, String> {
            config
                .map_or(Ok(None), |c| c.abs_path(key))
                .map_err(|e| e.to_string())
        };
        let queue_dir = match o.queue_dir {
            Some(q) => q,
            None => from_config("EVENT_DIR")?
                .ok_or("no queue: set EVENT_DIR in the config file or give --queue")?,
        };
        let storage_dir = match o.storage_dir {
            Some(s) => s,
            None => from_config("STORAGE_DIR")?
                .ok_or("no storage dir: give it as the first argument, --storage-dir, or STORAGE_DIR in the config file")?,
        };
        let index_file = match o.index_file {
            Some(i) => Some(i),
            None => from_config("INDEX_FILE")?,
        };
        let link_mode = match o.link_mode {
            Some(m) => m,
            None => match config.and_then(|c| c.get("LINK_MODE")) {
                Some(s) => LinkMode::parse(&s.value).ok_or_else(|| {
                    config
                        .expect("has the key")
                        .bad(s, "expected hardlink, copy or symlink")
                        .to_string()
                })?,
                None => match config
                    .map(|c| c.bool("SYMLINK"))
                    .transpose()
                    .map_err(|e| e.to_string())?
                    .flatten()
                {
                    Some(true) => LinkMode::Symlink,
                    _ => LinkMode::Hardlink,
                },
            },
        };
        let verify_md5 = match o.verify_md5 {
            Some(v) => v,
            None => config
                .map(|c| c.bool("VERIFY_MD5"))
                .transpose()
                .map_err(|e| e.to_string())?
                .flatten()
                .unwrap_or(true),
        };
        let runas = match config
            .and_then(|c| c.get("RUNAS"))
            .filter(|s| !s.value.is_empty())
        {
            Some(s) => Some(
                crate::safefs::resolve_owner(&s.value)
                    .map_err(|why| config.expect("has the key").bad(s, why).to_string())?,
            ),
            None => None,
        };
        let max_event_bytes = config
            .map(|c| c.number("MAX_EVENT_BYTES", MAX_EVENT_BYTES_RANGE))
            .transpose()
            .map_err(|e| e.to_string())?
            .flatten()
            .unwrap_or(DEFAULT_MAX_EVENT_BYTES);
        for (what, dir) in [("storage dir", &storage_dir), ("queue", &queue_dir)] {
            if !dir.is_absolute() {
                return Err(format!("{what} {} must be an absolute path (Apache starts the collector in ServerRoot)", dir.display()));
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
        })
    }
}
