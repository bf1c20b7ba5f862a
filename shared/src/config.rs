//! Sguil-style configuration files: `set NAME value`, one per line, as modsec2sguil's
//! `modsec_agent.conf` and Sguil's own agents use them.
//!
//! Values are a bare word, a `"double-quoted"` string (with `\"` and `\\`), or a
//! `{braced}` string taken literally. `#` starts a comment line; `;#` starts a comment
//! after a command, as in Tcl. A later `set` of the same name wins, as in Tcl.
//! Nothing here knows which keys exist: each program checks its own list, warns about
//! unknown keys and reports bad values with the file, line and key.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// The config file every command reads when none is given (`-c`): where the Debian
/// package and the README's install put it.
pub const DEFAULT_PATH: &str = "/etc/modsec2sguil.conf";

/// The programs that read a key (the man page's "read by").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBy {
    Collector,
    Shipper,
    Both,
}

impl ReadBy {
    /// As the man page names it.
    pub fn programs(self) -> &'static str {
        match self {
            ReadBy::Collector => "modsec-collector",
            ReadBy::Shipper => "modsec-shipper",
            ReadBy::Both => "modsec-collector and modsec-shipper",
        }
    }
}

/// One key of the config file: the one place it is documented. `modsec2sguil.conf(5)`
/// is generated from [`KEYS`] (by the `manual` module), and [`KNOWN_KEYS`] (what the programs
/// do not warn about) is its names.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    /// The values it takes, in words (`1 or 0`, `an absolute path`, …).
    pub values: &'static str,
    /// Its default, in words (`none` when unset means off or absent).
    pub default: &'static str,
    pub read_by: ReadBy,
    /// What it does: one paragraph, plain text.
    pub about: &'static str,
}

const fn key(
    name: &'static str,
    values: &'static str,
    default: &'static str,
    read_by: ReadBy,
    about: &'static str,
) -> Key {
    Key {
        name,
        values,
        default,
        read_by,
        about,
    }
}

use ReadBy::{Both, Collector, Shipper};

/// Every key either program reads, one row each: modsec2sguil 0.8's `modsec_agent.conf`
/// keys (so an old file loads without warnings) and this project's own. A new key joins
/// with one row here; `config::tests::every_key_read_is_in_the_table_and_back` fails
/// until it does.
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    // Both programs: the queue and the logs.
    key("EVENT_DIR", "an absolute path", "none (required, or --queue)", Both,
        "The queue: where the collector links each event for the shipper, and where the shipper keeps its journal, failed/ and records. On the same filesystem as the storage dir for hard links. Owned by RUNAS."),
    key("STATE_DIR", "an absolute path", "/var/lib/modsec2sguil", Both,
        "The collector's own state (overflow spool, backlog of lines it could not act on, the record of what it queued, the --follow position): root's alone. The collector checks at every start that this directory and every one above it are root's and writable by no one else, and creates it root:<RUNAS's group> 0750; modsec-shipper status reads it."),
    key("STORAGE_DIR", "an absolute path", "none", Both,
        "ModSecurity's SecAuditLogStorageDir, if not given on the collector's command line. The shipper needs it in symlink mode: only links into it are followed."),
    key("RUNAS", "user or user:group", "none", Both,
        "The shipper's user. The collector gives each queue entry to it so the unprivileged shipper can read and remove it (the group defaults to the user's primary group; with hard links the event file in the storage dir changes owner too, as with modsec_queue.pl). Started as root, the shipper switches to it once the config is read. Unset: both use the queue's owner (and its group), unless root owns the queue."),
    key("MAX_EVENT_BYTES", "a number of bytes", "16777216 (16 MiB)", Both,
        "Larger event files are quarantined to EVENT_DIR/failed/ by the shipper; the collector neither hashes nor copies them (their index lines go to STATE_DIR/backlog)."),
    key("LINK_MODE", "hardlink, copy or symlink", "hardlink", Both,
        "How the collector puts an event into the queue: a hard link (copied where the kernel refuses one, as across filesystems), a copy, or a symbolic link (the shipper then follows only links into STORAGE_DIR). Wins over SYMLINK."),
    key("SYMLINK", "1 or 0", "0", Both,
        "modsec2sguil 0.8's switch: 1 means LINK_MODE symlink, 0 LINK_MODE hardlink."),
    key("LOG_FILE", "an absolute path", "none", Both,
        "The collector's log file (Apache gives it /dev/null as stderr at boot), written as root. The shipper uses it only when SHIPPER_LOG_FILE is not set."),
    key("SYSLOGFACILITY", "a syslog facility (daemon, local0 ... local7, user)", "none (no syslog)", Both,
        "Also log to syslog with this facility."),
    key("DEBUG", "1 or 0", "0", Both,
        "1 logs every line handled (as --debug)."),
    // The collector.
    key("INDEX_FILE", "an absolute path", "none", Collector,
        "Keep every index line here too, if not given on the command line; SIGHUP reopens it."),
    key("FOLLOW_INDEX", "an absolute path", "none", Collector,
        "nginx + libmodsecurity 3: the index file modsec-collector --follow reads (as a service, examples/systemd/modsec-collector-follow.service). Not named *.log: examples/logrotate/modsec2sguil rotates it, not nginx's rule."),
    key("VERIFY_MD5", "1 or 0", "1", Collector,
        "Check each event's md5 against its index line (the size is always checked). A mismatch means a short write (full disk): the event is queued and marked in EVENT_DIR/.integrity/."),
    key("EVENT_OWNER", "a user", "the owner of the directory holding each event", Collector,
        "The only user whose event files are queued (besides RUNAS): the web server's. Events owned by root are never queued."),
    // The shipper: where events go.
    key("OUTPUT", "sguil, barnyard, stdout or text", "sguil", Shipper,
        "Where events go: to sguild, through the snort_agent on this host as barnyard2 does, or to standard output: as JSON lines with every field decoded (stdout), or as one line for a person per event: time, client -> server, priority, message (text)."),
    key("SERVER_HOST", "a host name or address", "none (required with OUTPUT sguil)", Shipper,
        "sguild's host, as in modsec_agent.conf."),
    key("SERVER_PORT", "1 to 65535", "7736", Shipper,
        "sguild's agent port."),
    key("HOSTNAME", "1 to 47 characters of [A-Za-z0-9._-]", "none (required; localhost with OUTPUT stdout or text)", Shipper,
        "The sensor's name (sguild names tables after it): one per web server. With OUTPUT barnyard, the snort_agent's own HOSTNAME."),
    key("NET_GROUP", "a word", "none (required with OUTPUT sguil)", Shipper,
        "The sensor's net group in Sguil."),
    key("SENSOR_TYPE", "a word", "modsecurity", Shipper,
        "The agent type registered with sguild."),
    key("OPENSSL", "1 or 0", "1", Shipper,
        "0 talks to sguild without TLS (sguild accepts it)."),
    key("TLS_CA_FILE", "an absolute path", "none", Shipper,
        "A copy of sguild's certificate (certs/cert.pem; self-signed is fine) to verify it by. The Debian package creates /etc/modsec2sguil/ for it."),
    key("TLS_PIN_SHA256", "a SHA-256 fingerprint (AB:CD:...)", "none", Shipper,
        "Trust sguild's certificate by its fingerprint instead: openssl x509 -noout -fingerprint -sha256 -in cert.pem."),
    key("TLS_VERIFY", "1 or 0", "1", Shipper,
        "0 turns certificate checking off (encrypted, but anyone can pose as sguild; warned at every connect). Not with TLS_CA_FILE or TLS_PIN_SHA256."),
    key("SGUIL_VERSION", "a sguild banner version", "none (the banner's version is echoed)", Shipper,
        "Refuse a sguild that announces another version than this, e.g. \"SGUIL-1.0.0 OPENSSL ENABLED\"."),
    key("SEND_WINDOW", "1 to 1024", "1 (32 with OUTPUT barnyard)", Shipper,
        "Events in flight. 1 is what sguild 1.0.0 survives when the shipper dies mid-window; larger windows wedge it. Through the snort_agent the window is safe."),
    key("REPLY_TIMEOUT", "1 to 3600 seconds", "30 (15 with OUTPUT barnyard)", Shipper,
        "How long to wait for sguild's answer to an event before dropping the connection and resending."),
    key("PING_DELAY", "1000 to 86400000 milliseconds", "300000", Shipper,
        "modsec-shipper run: PING sguild after this long idle."),
    key("AGENT_HOST", "a host name or address", "127.0.0.1", Shipper,
        "OUTPUT barnyard: where the snort_agent listens."),
    key("AGENT_PORT", "1 to 65535", "7735", Shipper,
        "OUTPUT barnyard: the snort_agent's BY_PORT."),
    // The shipper: which events are alerts, and what Sguil gets.
    key("IGNORE_HTTP_CODES", "HTTP statuses separated by spaces or commas", "none", Shipper,
        "Statuses that alone do not make an alert (404, say)."),
    key("HANDLE_ALL_EVENTS", "1 or 0", "0", Shipper,
        "1 ships events that are not alerts too, at priority 5 with ACTIVITY_CLASS; 0 removes them."),
    key("ALERT_ON_WARNINGS", "1 or 0", "1", Shipper,
        "A rule message with an id makes an alert even when nothing was blocked (DetectionOnly)."),
    key("ANOMALY_RULES", "rule ids separated by spaces", "949110 959100 980130 980140 980170", Shipper,
        "Score-evaluation rules (also: rules tagged anomaly-evaluation): when one intercepted, the alert is named after the most severe contributing rule."),
    key("ALERT_CLASS", "1 to 20 characters of [A-Za-z0-9._-]", "web-attack", Shipper,
        "Sguil's class for an alert whose rule has no CRS attack-* tag."),
    key("ACTIVITY_CLASS", "1 to 20 characters of [A-Za-z0-9._-]", "web-activity", Shipper,
        "Sguil's class for events that are not alerts (HANDLE_ALL_EVENTS 1)."),
    key("DETAIL_FORMAT", "html or text", "html", Shipper,
        "The event detail Sguil stores (at most 32,767 bytes). html: laid out and escaped for the Sguil analyst console, which renders it as HTML; text: plain text, for sites that read data_payload as text or as a hex dump. Preview: modsec-shipper show --detail FILE."),
    key("DETAIL_RAW_BYTES", "a number of bytes (0: none)", "16384", Shipper,
        "The most bytes of the raw event a detail carries after the summary; the detail's limit applies too."),
    // The shipper: running.
    key("DAEMON", "1 or 0", "0", Shipper,
        "modsec-shipper run: detach (not under systemd; --foreground overrides)."),
    key("POLL_INTERVAL", "1 to 3600 seconds", "1", Shipper,
        "modsec-shipper run: new entries wake it at once (inotify on EVENT_DIR); it also lists the queue this often, which is how entries are found where the queue cannot be watched (NFS written by another host)."),
    key("THRESHOLD_FILE", "an absolute path", "none (no thresholds)", Shipper,
        "Snort/Suricata-style threshold and suppress rules for generator 10001, one a line (examples/thresholds.conf explains every word): an event a rule holds back is not sent but kept in EVENT_DIR/held/, recorded as suppressed in the delivered log and summed in one summary event (signature 99000001) per key and window; requeue --suppressed ships it later. A bad line stops the shipper at start (exit 3) naming file and line; SIGHUP reloads the file (a bad reload keeps the old rules). Read by root (a root-started drain reads it before dropping to RUNAS), it must be root's alone, as the config file must; keep it readable by RUNAS (0644) so that a reload works."),
    key("SYMLINK_REMOVE_ORIG", "1 or 0", "0", Shipper,
        "With LINK_MODE symlink: remove the event file once delivered."),
    key("SHIPPER_LOG_FILE", "an absolute path", "none (LOG_FILE)", Shipper,
        "The shipper's own log (LOG_FILE is the collector's, written as root)."),
];

/// The names of [`KEYS`].
const KEY_NAMES: [&str; KEYS.len()] = {
    let mut names = [""; KEYS.len()];
    let mut i = 0;
    while i < KEYS.len() {
        names[i] = KEYS[i].name;
        i += 1;
    }
    names
};

/// Every key either program reads ([`KEYS`]' names). Others are warned about.
pub const KNOWN_KEYS: &[&str] = &KEY_NAMES;

/// One `set NAME value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: String,
    /// 1-based line number.
    pub line: usize,
}

/// A parsed config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub settings: Vec<Setting>,
}

/// A config file that cannot be used; every variant names the file and line.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {why}")]
    Syntax {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("{path}:{line}: {key}: bad value `{value}`: {why}")]
    Value {
        path: PathBuf,
        line: usize,
        key: String,
        value: String,
        why: String,
    },
    /// A setting that is needed and absent, from the config file (`path`) or, with no
    /// config file, from the command line.
    #[error("{}{key} is not set{}", place(.path.as_deref(), None), .how.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Missing {
        path: Option<PathBuf>,
        key: String,
        /// How to set it, when that is not obvious.
        how: Option<String>,
    },
    /// Settings that cannot go together, or a value that does not hold on this machine;
    /// `why` names the keys and lines.
    #[error("{}{why}", place(.path.as_deref(), *.line))]
    Conflict {
        path: Option<PathBuf>,
        /// The line the conflict is reported at, if one.
        line: Option<usize>,
        why: String,
    },
    /// A config root was about to read that someone else than root could have written
    /// ([`check_strict_modes`]): `why` names the file or directory, its owner and mode,
    /// and the fix.
    #[error("{why}")]
    Untrusted { path: PathBuf, why: String },
}

/// `path: `, or `path:line: `, or nothing.
fn place(path: Option<&Path>, line: Option<usize>) -> String {
    match (path, line) {
        (Some(p), Some(l)) => format!("{}:{l}: ", p.display()),
        (Some(p), None) => format!("{}: ", p.display()),
        (None, _) => String::new(),
    }
}

/// The command line's value if it was given, else the config file's `key` (read with
/// `read`, e.g. [`ConfigFile::abs_path`]), else `None`: the one way a setting that both
/// can give is looked up.
pub fn pick<T>(
    given: Option<T>,
    config: Option<&ConfigFile>,
    key: &str,
    read: impl FnOnce(&ConfigFile, &str) -> Result<Option<T>, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    match (given, config) {
        (Some(v), _) => Ok(Some(v)),
        (None, Some(c)) => read(c, key),
        (None, None) => Ok(None),
    }
}

/// The queue directory: `--queue DIR`, else EVENT_DIR. Every command looks it up here,
/// so the error is the same everywhere.
pub fn queue_dir(
    given: Option<PathBuf>,
    config: Option<&ConfigFile>,
) -> Result<PathBuf, ConfigError> {
    pick(given, config, "EVENT_DIR", ConfigFile::abs_path)?.ok_or_else(|| ConfigError::Missing {
        path: config.map(|c| c.path.clone()),
        key: "EVENT_DIR".into(),
        how: Some("the queue directory: set it in the config file, or give --queue".into()),
    })
}

/// Refuses, when we run as root, a config file that anyone but root could have written
/// (OpenSSH's StrictModes): the config chooses the queue, RUNAS, the log file and where
/// events go, so whoever can write it steers root. The file must be root's and not
/// writable by its group or others (the Debian package's `root:sguil 0640` passes). The
/// path is walked as the kernel resolves it ([`walk_roots_alone`]): every symbolic link
/// on the way must be root's (its owner could point it elsewhere), every directory root's
/// and not writable by group or others, unless it has the sticky bit (`/tmp`: others may
/// add names there but not rename or remove root's) and what it holds on the way is
/// root's. Every directory above the file along the path as given and along the path
/// with its links resolved is checked too. Not root: nothing to check (a user's own
/// config is theirs).
pub fn check_strict_modes(path: &Path) -> Result<(), ConfigError> {
    strict_modes(path).map(|_| ())
}

/// [`check_strict_modes`]; as root, the checked file's (device, inode), which
/// [`ConfigFile::load_trusted`] requires of the file it then opens.
fn strict_modes(path: &Path) -> Result<Option<(u64, u64)>, ConfigError> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_err(io)?.join(path)
    };
    let (resolved, file) = walk_roots_alone(&absolute).map_err(|e| match e {
        NotRootsAlone::Io { source, .. } => io(source),
        NotRootsAlone::Dir { dir, wrong } => untrusted(path, dir_refused(path, &dir, &wrong)),
        why => untrusted(
            path,
            format!(
                "{}: {why}: someone else than root could replace the config root reads",
                path.display()
            ),
        ),
    })?;
    if let Some(wrong) = not_roots_alone(&file, false) {
        let shown = if resolved == absolute {
            path.display().to_string()
        } else {
            format!("{} (-> {})", path.display(), resolved.display())
        };
        return Err(untrusted(
            path,
            format!(
                "{shown} is {wrong}: a config file read as root must be root's and writable by root \
                 alone (as OpenSSH's StrictModes); fix: chown root {p} && chmod go-w {p}",
                p = resolved.display()
            ),
        ));
    }
    let canonical = std::fs::canonicalize(path).map_err(io)?;
    for dir in absolute
        .ancestors()
        .skip(1)
        .chain(canonical.ancestors().skip(1))
    {
        let meta = std::fs::metadata(dir).map_err(io)?;
        if let Some(wrong) = not_roots_alone(&meta, true) {
            return Err(untrusted(path, dir_refused(path, dir, &wrong)));
        }
    }
    Ok(Some((file.dev(), file.ino())))
}

fn dir_refused(path: &Path, dir: &Path, wrong: &str) -> String {
    format!(
        "{}: its directory {} is {wrong}: someone else than root could replace \
         the config root reads; fix: chown root {d} && chmod go-w {d} (or move the \
         config to a directory only root writes, such as /etc)",
        path.display(),
        dir.display(),
        d = dir.display()
    )
}

/// Why a path is not root's alone ([`walk_roots_alone`]); the text names what is at
/// fault, its owner and mode.
#[derive(Debug, Error)]
pub enum NotRootsAlone {
    #[error("{}: {source}", .at.display())]
    Io {
        at: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A symbolic link on the way that someone else than root owns: they may point it at
    /// anything, at any time.
    #[error("{} is a symbolic link {owner}: its owner can point it elsewhere (only root's links are followed)", .link.display())]
    Link { link: PathBuf, owner: String },
    /// A directory on the way someone else than root may write.
    #[error("its directory {} is {wrong}", .dir.display())]
    Dir { dir: PathBuf, wrong: String },
    /// What a sticky directory everyone may write (`/tmp`) holds on the way, and that is
    /// not root's.
    #[error("{} is {owner}, in {}, a sticky directory everyone may write", .entry.display(), .dir.display())]
    StickyEntry {
        dir: PathBuf,
        entry: PathBuf,
        owner: String,
    },
}

/// Walks the absolute `path` component by component as the kernel resolves it, with
/// lstat, following links itself: every symbolic link on the way must be root's, every
/// directory root's and not writable by group or others, unless it is root's with the
/// sticky bit and what it holds on the way is root's (its owner alone may replace that).
/// So no one but root can change what `path` names. Returns the path with its links
/// resolved and the metadata of what it names (not checked: the caller's to judge).
pub fn walk_roots_alone(path: &Path) -> Result<(PathBuf, std::fs::Metadata), NotRootsAlone> {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    use std::os::unix::fs::MetadataExt;
    use std::path::Component;
    let io = |at: &Path, source| NotRootsAlone::Io {
        at: at.to_path_buf(),
        source,
    };
    fn parts(p: &Path) -> impl Iterator<Item = OsString> + '_ {
        p.components().filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
    }
    if !path.is_absolute() {
        return Err(io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an absolute path"),
        ));
    }
    let mut todo: VecDeque<OsString> = parts(path).collect();
    // Where the walk is: a directory reached without links (so `..` is its parent).
    let mut cur = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            cur.pop();
            continue;
        }
        let dir = std::fs::symlink_metadata(&cur).map_err(|e| io(&cur, e))?;
        if let Some(wrong) = not_roots_alone(&dir, true) {
            return Err(NotRootsAlone::Dir { dir: cur, wrong });
        }
        let next = cur.join(&name);
        let meta = std::fs::symlink_metadata(&next).map_err(|e| io(&next, e))?;
        if meta.file_type().is_symlink() && meta.uid() != 0 {
            return Err(NotRootsAlone::Link {
                link: next,
                owner: owner_words(&meta),
            });
        }
        if dir.mode() & 0o1022 > 0o1000 && meta.uid() != 0 {
            return Err(NotRootsAlone::StickyEntry {
                dir: cur,
                entry: next,
                owner: owner_words(&meta),
            });
        }
        if meta.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return Err(io(&next, std::io::Error::from_raw_os_error(libc::ELOOP)));
            }
            let target = std::fs::read_link(&next).map_err(|e| io(&next, e))?;
            if target.is_absolute() {
                cur = PathBuf::from("/");
            }
            for part in parts(&target).collect::<Vec<_>>().into_iter().rev() {
                todo.push_front(part);
            }
        } else {
            cur = next;
        }
    }
    let meta = std::fs::symlink_metadata(&cur).map_err(|e| io(&cur, e))?;
    Ok((cur, meta))
}

/// StrictModes for a directory: root's own state (`STATE_DIR`), or the directory holding
/// one root enters without following a link (the queue's parent: `last_may_be_sticky`,
/// so `/tmp` may hold it). [`walk_roots_alone`] to it, then it must be a directory of
/// root's that no one else may write. Returns the path with its links resolved; the
/// error names the component at fault, its owner and mode, and the fix.
pub fn dir_roots_alone(path: &Path, last_may_be_sticky: bool) -> std::io::Result<PathBuf> {
    let refuse = |why: String| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{}: {why}: another user could swap what it names; make it root's and not writable by group or others (`chown root`, `chmod go-w`)",
                path.display()
            ),
        )
    };
    let (real, meta) = walk_roots_alone(path).map_err(|e| match &e {
        NotRootsAlone::Io { source, .. } if source.kind() != std::io::ErrorKind::InvalidInput => {
            std::io::Error::new(source.kind(), e.to_string())
        }
        _ => refuse(e.to_string()),
    })?;
    if !meta.is_dir() {
        return Err(refuse("not a directory".into()));
    }
    if let Some(wrong) = not_roots_alone(&meta, last_may_be_sticky) {
        return Err(refuse(format!("{} is {wrong}", real.display())));
    }
    Ok(real)
}

/// `owned by uid N (name), mode M`.
fn owner_words(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "no such user".into());
    format!(
        "owned by uid {} ({name}), mode {:04o}",
        meta.uid(),
        meta.mode() & 0o7777
    )
}

/// What makes a file (or, with `dir`, a directory) writable by someone else than root, in
/// words naming its owner and mode; `None` when only root can change it. A directory
/// with the sticky bit may be writable by all if root owns it.
fn not_roots_alone(meta: &std::fs::Metadata, dir: bool) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode() & 0o7777;
    let sticky = dir && mode & 0o1000 != 0;
    let owner = || owner_words(meta);
    if meta.uid() != 0 {
        return Some(owner());
    }
    match mode & 0o022 {
        0 => None,
        _ if sticky => None,
        0o020 => Some(format!(
            "{}, writable by its group (gid {})",
            owner(),
            meta.gid()
        )),
        _ => Some(format!("{}, writable by everyone", owner())),
    }
}

fn untrusted(path: &Path, why: String) -> ConfigError {
    ConfigError::Untrusted {
        path: path.to_path_buf(),
        why,
    }
}

impl ConfigFile {
    /// Reads and parses `path` after [`check_strict_modes`]: what both binaries use for
    /// their config, so that run as root they refuse one another user could have written.
    pub fn load_trusted(path: &Path) -> Result<ConfigFile, ConfigError> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let checked = strict_modes(path)?;
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Not blocked on a FIFO put there after the check: it is refused below.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(io)?;
        if let Some((dev, ino)) = checked {
            // What was opened must be what was checked: no swap in between.
            let meta = file.metadata().map_err(io)?;
            let wrong = if (meta.dev(), meta.ino()) != (dev, ino) {
                Some(format!(
                    "not the file that was checked (now {})",
                    owner_words(&meta)
                ))
            } else if !meta.is_file() {
                Some("not a regular file".into())
            } else {
                not_roots_alone(&meta, false)
            };
            if let Some(wrong) = wrong {
                return Err(untrusted(
                    path,
                    format!(
                        "{}: the file opened is {wrong}: someone else than root could \
                         replace the config root reads; refused",
                        path.display()
                    ),
                ));
            }
        }
        ConfigFile::read_from(path, file)
    }

    /// Reads and parses `path` (no ownership check: [`ConfigFile::load_trusted`] is the
    /// one for a program's own config).
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let file = std::fs::File::open(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        ConfigFile::read_from(path, file)
    }

    /// Reads `file` (named `path` in messages) and parses it.
    fn read_from(path: &Path, mut file: std::fs::File) -> Result<ConfigFile, ConfigError> {
        use std::io::Read;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|source| ConfigError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                why: "not UTF-8 text".into(),
            }
        })?;
        ConfigFile::parse(&text, path)
    }

    /// Parses config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        let mut settings = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let syntax = |why: String| ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                why,
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let rest = trimmed
                .strip_prefix("set")
                .filter(|r| r.starts_with([' ', '\t']))
                .ok_or_else(|| {
                    syntax(format!(
                        "expected `set NAME value`, found `{}`",
                        clip(trimmed)
                    ))
                })?
                .trim_start();
            let name_end = rest.find([' ', '\t']).unwrap_or(rest.len());
            let key = &rest[..name_end];
            let valid_name = key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(syntax(format!("`{}` is not a setting name", clip(key))));
            }
            let value = parse_value(rest[name_end..].trim_start())
                .map_err(|why| syntax(format!("{key}: {why}")))?;
            settings.push(Setting {
                key: key.to_string(),
                value,
                line,
            });
        }
        Ok(ConfigFile {
            path: path.to_path_buf(),
            settings,
        })
    }

    /// The effective (last) setting of `key`.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.settings.iter().rev().find(|s| s.key == key)
    }

    /// Settings whose key is not in `known` (each once, first occurrence).
    pub fn unknown<'a>(&'a self, known: &[&str]) -> Vec<&'a Setting> {
        let mut out: Vec<&Setting> = Vec::new();
        for s in &self.settings {
            if !known.contains(&s.key.as_str()) && !out.iter().any(|o| o.key == s.key) {
                out.push(s);
            }
        }
        out
    }

    /// Logs a warning, with its line, for each key not in `known`.
    pub fn warn_unknown(&self, known: &[&str]) {
        for s in self.unknown(known) {
            log::warn!(
                "{}:{}: unknown setting {} (ignored)",
                self.path.display(),
                s.line,
                s.key
            );
        }
    }

    /// A value error for `setting`.
    pub fn bad(&self, setting: &Setting, why: impl Into<String>) -> ConfigError {
        ConfigError::Value {
            path: self.path.clone(),
            line: setting.line,
            key: setting.key.clone(),
            value: setting.value.clone(),
            why: why.into(),
        }
    }

    /// A string setting.
    pub fn string(&self, key: &str) -> Option<String> {
        self.get(key).map(|s| s.value.clone())
    }

    /// A string setting that must be set and not empty.
    pub fn required(&self, key: &str) -> Result<String, ConfigError> {
        self.string(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.missing(key, None))
    }

    /// `key` is needed and absent (`how` says how to set it, if that is not obvious).
    pub fn missing(&self, key: &str, how: Option<&str>) -> ConfigError {
        ConfigError::Missing {
            path: Some(self.path.clone()),
            key: key.into(),
            how: how.map(str::to_string),
        }
    }

    /// Settings of this file that cannot go together (`why` names them and their lines).
    pub fn conflict(&self, why: impl Into<String>) -> ConfigError {
        ConfigError::Conflict {
            path: Some(self.path.clone()),
            line: None,
            why: why.into(),
        }
    }

    /// [`ConfigFile::conflict`], reported at `line`.
    pub fn conflict_at(&self, line: usize, why: impl Into<String>) -> ConfigError {
        ConfigError::Conflict {
            path: Some(self.path.clone()),
            line: Some(line),
            why: why.into(),
        }
    }

    /// An owner, `user[:group]` (RUNAS): (uid, gid), the group defaulting to the user's
    /// primary group. Empty is unset.
    pub fn owner(&self, key: &str) -> Result<Option<(u32, u32)>, ConfigError> {
        match self.get(key).filter(|s| !s.value.is_empty()) {
            Some(s) => resolve_owner(&s.value)
                .map(Some)
                .map_err(|why| self.bad(s, why)),
            None => Ok(None),
        }
    }

    /// A value that is one of a set of words, read by `parse`; `expected` lists them.
    pub fn word<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Option<T>,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        let Some(s) = self.get(key) else {
            return Ok(None);
        };
        parse(&s.value)
            .map(Some)
            .ok_or_else(|| self.bad(s, format!("expected {expected}")))
    }

    /// A boolean: `1`/`0`, `yes`/`no`, `on`/`off`, `true`/`false` (as Tcl reads them).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        let Some(s) = self.get(key) else {
            return Ok(None);
        };
        parse_bool(&s.value)
            .map(Some)
            .ok_or_else(|| self.bad(s, "expected 1 or 0 (or yes/no, on/off)"))
    }

    /// An unsigned number within `range`.
    pub fn number(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(s) = self.get(key) else {
            return Ok(None);
        };
        match s.value.parse::<u64>() {
            Ok(v) if range.contains(&v) => Ok(Some(v)),
            _ => Err(self.bad(
                s,
                format!(
                    "expected a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    /// An absolute path.
    pub fn abs_path(&self, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        let Some(s) = self.get(key) else {
            return Ok(None);
        };
        let p = PathBuf::from(&s.value);
        if !p.is_absolute() {
            return Err(self.bad(s, "expected an absolute path"));
        }
        Ok(Some(p))
    }
}

/// `user` or `user:group` to (uid, gid); the group defaults to the user's primary group.
pub fn resolve_owner(spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = nix::unistd::User::from_name(user)
        .map_err(|e| format!("cannot look up user `{user}`: {e}"))?
        .ok_or_else(|| format!("no such user `{user}`"))?;
    let gid = match group {
        Some(g) => {
            nix::unistd::Group::from_name(g)
                .map_err(|e| format!("cannot look up group `{g}`: {e}"))?
                .ok_or_else(|| format!("no such group `{g}`"))?
                .gid
        }
        None => u.gid,
    };
    Ok((u.uid.as_raw(), gid.as_raw()))
}

/// Tcl's boolean words.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Some(true),
        "0" | "no" | "off" | "false" => Some(false),
        _ => None,
    }
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Parses the value part; what may follow it is only a `;#` comment.
fn parse_value(text: &str) -> Result<String, String> {
    let (value, rest) = if let Some(body) = text.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => return Err("backslash at the end of a quoted value".into()),
                },
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c => out.push(c),
            }
        }
        let end = end.ok_or("quoted value has no closing `\"`")?;
        (out, &body[end..])
    } else if let Some(body) = text.strip_prefix('{') {
        let mut depth = 1;
        let mut end = None;
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.ok_or("braced value has no closing `}`")?;
        (body[..end].to_string(), &body[end + 1..])
    } else {
        let end = text.find([' ', '\t', ';']).unwrap_or(text.len());
        if end == 0 {
            return Err("missing value".into());
        }
        (text[..end].to_string(), &text[end..])
    };
    let rest = rest.trim_start();
    if !(rest.is_empty() || rest.starts_with(";#") || rest.starts_with("; #")) {
        return Err(format!(
            "unexpected `{}` after the value (quote values that contain spaces)",
            clip(rest)
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(text, Path::new("/etc/modsec2sguil.conf"))
    }

    #[test]
    fn modsec2sguil_0_8_style() {
        let c = parse(
            "#\n# Configuration file for modsec2sguil\n#\nset DEBUG 1\nset DAEMON 0\n\nset SERVER_HOST 192.168.1.100\n  set EVENT_DIR /nsm/queue ;# the queue\nset NAME \"web farm\"\nset TAGS {a {b} c}\nset DEBUG 0\n",
        )
        .unwrap();
        assert_eq!(c.string("SERVER_HOST").as_deref(), Some("192.168.1.100"));
        assert_eq!(c.string("EVENT_DIR").as_deref(), Some("/nsm/queue"));
        assert_eq!(c.string("NAME").as_deref(), Some("web farm"));
        assert_eq!(c.string("TAGS").as_deref(), Some("a {b} c"));
        assert_eq!(c.bool("DEBUG").unwrap(), Some(false), "the last set wins");
        assert_eq!(c.get("EVENT_DIR").unwrap().line, 8);
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        for (text, line, why) in [
            ("set A 1\nA = 2\n", 2, "expected `set NAME value`"),
            ("set 9A 1\n", 1, "not a setting name"),
            ("set A\n", 1, "missing value"),
            ("set A \"open\n", 1, "no closing"),
            ("set A {open\n", 1, "no closing"),
            ("set A one two\n", 1, "quote values"),
            ("setA 1\n", 1, "expected `set NAME value`"),
        ] {
            let e = parse(text).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("/etc/modsec2sguil.conf:{line}:")),
                "{msg}"
            );
            assert!(msg.contains(why), "{msg}");
        }
    }

    #[test]
    fn typed_values_and_their_errors() {
        let c =
            parse("set A yes\nset B maybe\nset N 70000\nset P relative/dir\nset Q /abs\n").unwrap();
        assert_eq!(c.bool("A").unwrap(), Some(true));
        let e = c.bool("B").unwrap_err().to_string();
        assert!(e.contains(":2: B: bad value `maybe`"), "{e}");
        assert!(c
            .number("N", 1..=65535)
            .unwrap_err()
            .to_string()
            .contains("from 1 to 65535"));
        assert!(c
            .abs_path("P")
            .unwrap_err()
            .to_string()
            .contains("absolute path"));
        assert_eq!(c.abs_path("Q").unwrap(), Some(PathBuf::from("/abs")));
        assert_eq!(c.bool("MISSING").unwrap(), None);
    }

    #[test]
    fn unknown_keys_are_listed_once() {
        let c = parse("set A 1\nset ZZ 1\nset ZZ 2\n").unwrap();
        let unknown: Vec<_> = c
            .unknown(&["A"])
            .iter()
            .map(|s| (s.key.clone(), s.line))
            .collect();
        assert_eq!(unknown, [("ZZ".to_string(), 2)]);
    }

    #[test]
    fn non_utf8_file_is_an_error_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.conf");
        std::fs::write(&p, b"set A 1\nset B \xff\n").unwrap();
        let e = ConfigFile::load(&p).unwrap_err().to_string();
        assert!(e.ends_with(":2: not UTF-8 text"), "{e}");
    }

    #[test]
    fn as_root_a_config_anyone_but_root_could_write_is_refused() {
        use std::os::unix::fs::{chown, PermissionsExt};
        if !crate::testdata::root_or_skip("as_root_a_config_anyone_but_root_could_write_is_refused")
        {
            return;
        }
        let chmod = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        // A tempdir in /tmp: root's, 0700, in a root-owned sticky directory.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.conf");
        std::fs::write(&p, "set EVENT_DIR /q\n").unwrap();
        // The Debian package's root:sguil 0640.
        chown(&p, Some(0), Some(65534)).unwrap();
        chmod(&p, 0o640);
        assert_eq!(ConfigFile::load_trusted(&p).unwrap().settings.len(), 1);
        let refused = |p: &Path| match ConfigFile::load_trusted(p) {
            Err(e @ ConfigError::Untrusted { .. }) => e.to_string(),
            other => panic!("{other:?}"),
        };
        chmod(&p, 0o666);
        let e = refused(&p);
        assert!(
            e.contains("owned by uid 0 (root), mode 0666, writable by everyone"),
            "{e}"
        );
        assert!(
            e.contains(&format!("chown root {0} && chmod go-w {0}", p.display())),
            "{e}"
        );
        chmod(&p, 0o660);
        assert!(refused(&p).contains("writable by its group (gid 65534)"));
        chmod(&p, 0o640);
        chown(&p, Some(65534), None).unwrap();
        let e = refused(&p);
        assert!(
            e.starts_with(&format!("{} is owned by uid 65534", p.display())),
            "{e}"
        );
        chown(&p, Some(0), None).unwrap();
        // A directory above it that another user owns, or may write without the sticky bit.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let q = sub.join("m.conf");
        std::fs::copy(&p, &q).unwrap();
        chown(&sub, Some(65534), None).unwrap();
        let e = refused(&q);
        assert!(
            e.contains(&format!(
                "its directory {} is owned by uid 65534",
                sub.display()
            )),
            "{e}"
        );
        chown(&sub, Some(0), None).unwrap();
        chmod(&sub, 0o777);
        assert!(refused(&q).contains("writable by everyone"));
        chmod(&sub, 0o1777);
        assert!(
            ConfigFile::load_trusted(&q).is_ok(),
            "root's sticky directory, as /tmp"
        );
        // A link root's file is reached through, in a directory another user owns: the
        // link could be pointed elsewhere.
        chmod(&sub, 0o755);
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        chown(&theirs, Some(65534), None).unwrap();
        std::os::unix::fs::symlink(&q, theirs.join("link.conf")).unwrap();
        assert!(refused(&theirs.join("link.conf")).contains("its directory"));
        // Plain `load` does not check (tests and tools that read a config as data).
        chmod(&p, 0o666);
        assert!(ConfigFile::load(&p).is_ok());
    }

    /// A link on the way to the config that someone else than root owns, in a sticky
    /// root directory (`/tmp`): its owner can swap it between a good config and theirs
    /// at any time, so it is refused whatever it points at now; root's link is followed.
    #[test]
    fn as_root_a_link_on_the_way_another_user_owns_is_refused() {
        use std::os::unix::fs::{lchown, PermissionsExt};
        if !crate::testdata::root_or_skip("as_root_a_link_on_the_way_another_user_owns_is_refused")
        {
            return;
        }
        let chmod = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::create_dir(&good).unwrap();
        std::fs::write(good.join("c.conf"), "set EVENT_DIR /q\n").unwrap();
        // As /tmp: root's, 1777.
        let x = dir.path().join("x");
        std::fs::create_dir(&x).unwrap();
        chmod(&x, 0o1777);
        let theirs = x.join("lnk");
        std::os::unix::fs::symlink(&good, &theirs).unwrap();
        lchown(&theirs, Some(65534), Some(65534)).unwrap();
        let e = match ConfigFile::load_trusted(&theirs.join("c.conf")) {
            Err(e @ ConfigError::Untrusted { .. }) => e.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(
            e.contains(&format!(
                "{} is a symbolic link owned by uid 65534",
                theirs.display()
            )),
            "{e}"
        );
        // Root's own link to the same directory, in the same sticky directory: followed.
        let roots = x.join("roots");
        std::os::unix::fs::symlink(&good, &roots).unwrap();
        let c = ConfigFile::load_trusted(&roots.join("c.conf")).unwrap();
        assert_eq!(c.string("EVENT_DIR").as_deref(), Some("/q"));
        // And a relative link of root's, with `..`, through the sticky directory.
        let rel = x.join("rel");
        std::os::unix::fs::symlink("../x/roots/../good", &rel).unwrap();
        assert!(ConfigFile::load_trusted(&rel.join("c.conf")).is_ok());
    }

    /// The keys the product code reads, by scanning its source (test modules left out)
    /// for the ways a key is read: `c.string("KEY")` and the other [`ConfigFile`]
    /// getters, `pick(given, config, "KEY", …)`, the loggers' `setting("KEY")` and
    /// `("KEY", &mut field)` lists.
    fn keys_read_in_source() -> std::collections::BTreeMap<String, String> {
        const GETTERS: &[&str] = &[
            ".get(",
            ".string(",
            ".required(",
            ".bool(",
            ".number(",
            ".abs_path(",
            ".owner(",
            ".word(",
            "setting(",
            "pick(",
        ];
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        let mut todo: Vec<PathBuf> = ["shared/src", "shipper/src", "collector/src"]
            .iter()
            .map(|d| root.join(d))
            .collect();
        while let Some(dir) = todo.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p);
                } else if p.extension().is_some_and(|x| x == "rs")
                    && p.file_name().is_some_and(|n| n != "tests.rs")
                {
                    files.push(p);
                }
            }
        }
        let mut found = std::collections::BTreeMap::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let product = text.split("#[cfg(test)]").next().unwrap();
            // The first string literal after a getter, if it is a key (a call's
            // first argument, or pick's third: no `;` or `{` before it).
            for getter in GETTERS {
                for (at, _) in product.match_indices(getter) {
                    let after = &product[at + getter.len()..];
                    let Some(quote) = after.find('"') else {
                        continue;
                    };
                    if after[..quote].contains([';', '{']) {
                        continue;
                    }
                    let literal = &after[quote + 1..];
                    let end = literal.find('"').unwrap_or(0);
                    let name = &literal[..end];
                    if is_key_name(name) {
                        found
                            .entry(name.to_string())
                            .or_insert_with(|| file.display().to_string());
                    }
                }
            }
            // `("KEY", &mut field)`: a list of keys and where each goes.
            for (at, _) in product.match_indices("\", &mut ") {
                if let Some(open) = product[..at].rfind("(\"") {
                    let name = &product[open + 2..at];
                    if is_key_name(name) {
                        found
                            .entry(name.to_string())
                            .or_insert_with(|| file.display().to_string());
                    }
                }
            }
        }
        found
    }

    fn is_key_name(name: &str) -> bool {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    }

    /// The drift test: every key the programs read is a row of [`KEYS`] (so it is in
    /// modsec2sguil.conf(5) and not warned about), and every row is a key they read.
    #[test]
    fn every_key_read_is_in_the_table_and_back() {
        let read = keys_read_in_source();
        for (key, file) in &read {
            assert!(
                KNOWN_KEYS.contains(&key.as_str()),
                "{file} reads the config key {key}, which is not in config::KEYS \
                 (add a row: it documents the key in modsec2sguil.conf(5))"
            );
        }
        for key in KNOWN_KEYS {
            assert!(
                read.contains_key(*key),
                "config::KEYS documents {key}, which no program reads"
            );
        }
        let mut names = KNOWN_KEYS.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KEYS.len(), "a key is in config::KEYS twice");
    }

    /// The table's defaults are the code's.
    #[test]
    fn the_tables_defaults_are_the_codes() {
        let default = |name: &str| {
            KEYS.iter()
                .find(|k| k.name == name)
                .unwrap()
                .default
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        };
        use crate::sguil::settings as s;
        for (name, code) in [
            ("STATE_DIR", crate::state::DEFAULT_STATE_DIR.to_string()),
            ("SERVER_PORT", s::DEFAULT_PORT.to_string()),
            ("SEND_WINDOW", s::DEFAULT_SEND_WINDOW.to_string()),
            ("PING_DELAY", s::DEFAULT_PING_DELAY.as_millis().to_string()),
            (
                "REPLY_TIMEOUT",
                s::DEFAULT_REPLY_TIMEOUT.as_secs().to_string(),
            ),
            (
                "AGENT_PORT",
                crate::sguil::barnyard::DEFAULT_AGENT_PORT.to_string(),
            ),
            (
                "AGENT_HOST",
                crate::sguil::barnyard::DEFAULT_AGENT_HOST.to_string(),
            ),
            (
                "MAX_EVENT_BYTES",
                crate::queue::DEFAULT_MAX_EVENT_BYTES.to_string(),
            ),
            (
                "POLL_INTERVAL",
                crate::ship::settings::DEFAULT_POLL.as_secs().to_string(),
            ),
            (
                "DETAIL_RAW_BYTES",
                crate::alert::DEFAULT_DETAIL_RAW_BYTES.to_string(),
            ),
        ] {
            assert_eq!(default(name), code, "{name}'s default in config::KEYS");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }
    }
}
