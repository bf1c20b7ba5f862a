//! Where the binaries' log lines go: stderr, a log file (LOG_FILE) and/or syslog
//! (SYSLOGFACILITY), all at once. Apache gives a piped collector `/dev/null` as stderr
//! for its first instance, so a file or syslog is the only place its messages survive.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::{ConfigFile, KNOWN_KEYS};

/// Syslog facilities by the names Sguil agents use.
pub fn facility(name: &str) -> Option<libc::c_int> {
    Some(match name.to_ascii_lowercase().as_str() {
        "daemon" => libc::LOG_DAEMON,
        "user" => libc::LOG_USER,
        "local0" => libc::LOG_LOCAL0,
        "local1" => libc::LOG_LOCAL1,
        "local2" => libc::LOG_LOCAL2,
        "local3" => libc::LOG_LOCAL3,
        "local4" => libc::LOG_LOCAL4,
        "local5" => libc::LOG_LOCAL5,
        "local6" => libc::LOG_LOCAL6,
        "local7" => libc::LOG_LOCAL7,
        "auth" => libc::LOG_AUTH,
        "authpriv" => libc::LOG_AUTHPRIV,
        _ => return None,
    })
}

/// The target (`log::info!(target: LOG_ONLY, …)`) of a record that goes to the log file
/// and syslog but not to stderr: what the admin's terminal need not show, such as the
/// collector's start and end when `apachectl configtest` starts it for nothing.
pub const LOG_ONLY: &str = "log-only";

/// What differs between the programs' logs: the one logging setup ([`start`]) reads the
/// rest (DEBUG, SYSLOGFACILITY) the same way for both.
pub struct Program {
    pub name: &'static str,
    /// Whether SHIPPER_LOG_FILE names its log file before LOG_FILE does (one config
    /// file serves both programs, and the collector's log is root's).
    pub shipper_log_file: bool,
    /// Whether RUST_LOG sets its level (the collector, run by Apache, takes DEBUG only).
    pub rust_log: bool,
}

pub const SHIPPER: Program = Program {
    name: "modsec-shipper",
    shipper_log_file: true,
    rust_log: true,
};

pub const COLLECTOR: Program = Program {
    name: "modsec-collector",
    shipper_log_file: false,
    rust_log: false,
};

/// Installs the log of a running program (`drain`, `run`, the collector): stderr, the
/// log file (`log_file` from the command line, else SHIPPER_LOG_FILE for the shipper,
/// else LOG_FILE) and syslog (SYSLOGFACILITY), at debug level with `debug` or DEBUG 1 (or RUST_LOG's, where the
/// program takes it), info otherwise. A log file that cannot be opened is said on the
/// rest. A config given is then checked for keys neither program reads.
pub fn start(
    program: &Program,
    config: Option<&ConfigFile>,
    debug: bool,
    log_file: Option<PathBuf>,
) {
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let modules = || {
        rust_log
            .as_deref()
            .filter(|_| program.rust_log)
            .map(directives)
    };
    let (level, log_file, syslog) = choose(program, config, debug, log_file, rust_log.clone());
    let installed = Logger::install(program.name, level, modules(), log_file.as_deref(), syslog);
    if let Err(e) = installed {
        let _ = Logger::install(program.name, level, modules(), None, syslog);
        log::error!(
            "cannot open the log file {}: {e}; logging to stderr (and syslog if set) only",
            log_file.as_deref().unwrap_or(Path::new("")).display()
        );
    }
    if let Some(c) = config {
        c.warn_unknown(KNOWN_KEYS);
        if let Some(f) = c.string("SYSLOGFACILITY").filter(|f| facility(f).is_none()) {
            log::warn!(
                "{}: SYSLOGFACILITY `{f}` is not a syslog facility; not logging to syslog",
                c.path.display()
            );
        }
    }
}

/// The level, log file and syslog facility of [`start`] (`rust_log`: RUST_LOG's value).
fn choose(
    program: &Program,
    config: Option<&ConfigFile>,
    debug: bool,
    log_file: Option<PathBuf>,
    rust_log: Option<String>,
) -> (LevelFilter, Option<PathBuf>, Option<libc::c_int>) {
    let setting = |key: &str| config.and_then(|c| c.string(key));
    let debug = debug
        || config
            .and_then(|c| c.bool("DEBUG").ok().flatten())
            .unwrap_or(false);
    let from_env = rust_log
        .filter(|_| program.rust_log)
        .map(|v| directives(&v).filter());
    let level = match from_env {
        Some(l) => l,
        None if debug => LevelFilter::Debug,
        None => LevelFilter::Info,
    };
    let log_file = log_file.or_else(|| {
        let own = program
            .shipper_log_file
            .then(|| setting("SHIPPER_LOG_FILE"));
        own.flatten()
            .or_else(|| setting("LOG_FILE"))
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
    });
    let syslog = setting("SYSLOGFACILITY").and_then(|f| facility(&f));
    (level, log_file, syslog)
}

/// Installs, unless a log is installed already, the log of a program without settings
/// (the collector's degraded mode): stderr (`/dev/null` at boot) and syslog's daemon
/// facility.
pub fn fallback(program: &Program) {
    if log::max_level() == LevelFilter::Off {
        let _ = Logger::install(
            program.name,
            LevelFilter::Info,
            None,
            None,
            facility("daemon"),
        );
    }
}

/// Installs the log of the operator commands (`requeue`, `status`, `show`): stderr
/// only, `program: level: message`, at RUST_LOG's level (default warn). Their messages
/// quote file names and records from the queue to whoever runs them: escaped, as every
/// message is.
pub fn start_terse(program: &Program) {
    let modules = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| directives(&v));
    let level = modules.as_ref().map_or(LevelFilter::Warn, |m| m.filter());
    let logger = Logger {
        program: program.name,
        level,
        modules,
        terse: true,
        file: None,
        syslog: false,
    };
    log::set_max_level(level);
    let _ = log::set_boxed_logger(Box::new(logger));
}

/// RUST_LOG's directives, read by env_logger's parser: a level (`debug`), or levels by
/// module (`modsec2sguil::sguil=trace,warn`). Its `filter()` is the most verbose level
/// any directive asks for.
fn directives(spec: &str) -> env_logger::Logger {
    env_logger::Builder::new().parse_filters(spec).build()
}

/// The logger behind the `log` macros of a binary.
pub struct Logger {
    program: &'static str,
    level: LevelFilter,
    /// RUST_LOG's directives, where the program takes them: they decide what is logged.
    modules: Option<env_logger::Logger>,
    /// `program: level: message` on stderr, no time or pid (the operator commands).
    terse: bool,
    file: Option<Mutex<File>>,
    syslog: bool,
}

impl Logger {
    /// Installs the logger. `log_file` is opened for appending (created 0640 if absent)
    /// as root opens files in directories others write ([`crate::safefs`]): the log's
    /// directory usually belongs to the shipper's user, who must not be able to point
    /// root's appends — lines partly written by clients — at another file with a
    /// symbolic or hard link, nor hang it with a FIFO. `syslog_facility` opens syslog
    /// under the program's name.
    pub fn install(
        program: &'static str,
        level: LevelFilter,
        modules: Option<env_logger::Logger>,
        log_file: Option<&Path>,
        syslog_facility: Option<libc::c_int>,
    ) -> std::io::Result<()> {
        let file = match log_file {
            Some(p) => Some(Mutex::new(
                crate::safefs::Open::append(crate::safefs::Keeper::DirOwner).at(p)?,
            )),
            None => None,
        };
        if let Some(fac) = syslog_facility {
            // openlog keeps the pointer: the ident must live for the whole process.
            let ident: &'static std::ffi::CStr = match program {
                "modsec-collector" => c"modsec-collector",
                _ => c"modsec-shipper",
            };
            // SAFETY: ident is a 'static NUL-terminated string; openlog has no other preconditions.
            unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID, fac) };
        }
        let logger = Logger {
            program,
            level,
            modules,
            terse: false,
            file,
            syslog: syslog_facility.is_some(),
        };
        log::set_max_level(level);
        log::set_boxed_logger(Box::new(logger)).map_err(std::io::Error::other)
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        match &self.modules {
            Some(m) => m.enabled(metadata),
            None => metadata.level() <= self.level,
        }
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = record.level();
        // Messages quote events (ids, rule ids, parse errors naming a field): one line
        // each, nothing in them read as a control by a terminal or a log reader.
        let text = record.args().to_string();
        let text = crate::escape::escape_text(&text);
        if self.terse {
            let level = level.as_str().to_ascii_lowercase();
            eprintln!("{}: {level}: {text}", self.program);
            return;
        }
        let stamp = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f %z");
        let line = format!(
            "{stamp} {}[{}] {level}: {text}\n",
            self.program,
            std::process::id()
        );
        if record.target() != LOG_ONLY {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                let _ = f.write_all(line.as_bytes());
            }
        }
        if self.syslog {
            let priority = match level {
                Level::Error => libc::LOG_ERR,
                Level::Warn => libc::LOG_WARNING,
                Level::Info => libc::LOG_INFO,
                Level::Debug | Level::Trace => libc::LOG_DEBUG,
            };
            // escape_text left no NUL.
            let msg = std::ffi::CString::new(text.as_bytes()).unwrap_or_default();
            // SAFETY: "%s" with one valid C string argument.
            unsafe { libc::syslog(priority, c"%s".as_ptr(), msg.as_ptr()) };
        }
    }

    fn flush(&self) {
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                let _ = f.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> ConfigFile {
        ConfigFile::parse(text, Path::new("/etc/modsec2sguil.conf")).unwrap()
    }

    #[test]
    fn each_program_logs_where_and_how_its_settings_say() {
        let c = config(
            "set SHIPPER_LOG_FILE /var/log/s.log\nset LOG_FILE /var/log/c.log\nset SYSLOGFACILITY local3\n",
        );
        let shipper = choose(&SHIPPER, Some(&c), false, None, None);
        assert_eq!(
            shipper,
            (
                LevelFilter::Info,
                Some(PathBuf::from("/var/log/s.log")),
                Some(libc::LOG_LOCAL3)
            )
        );
        let collector = choose(&COLLECTOR, Some(&c), true, None, Some("trace".into()));
        assert_eq!(
            collector.0,
            LevelFilter::Debug,
            "the collector takes no RUST_LOG"
        );
        assert_eq!(collector.1, Some(PathBuf::from("/var/log/c.log")));
        let given = choose(&COLLECTOR, Some(&c), false, Some("/tmp/x".into()), None);
        assert_eq!(
            given.1,
            Some(PathBuf::from("/tmp/x")),
            "the command line wins"
        );
        let traced = choose(&SHIPPER, None, false, None, Some("trace".into()));
        assert_eq!(traced, (LevelFilter::Trace, None, None));
        let quiet = config("set DEBUG 1\nset LOG_FILE \"\"\nset SYSLOGFACILITY nope\n");
        assert_eq!(
            choose(&SHIPPER, Some(&quiet), false, None, None),
            (LevelFilter::Debug, None, None),
            "an empty LOG_FILE is none"
        );
    }

    /// RUST_LOG is read by env_logger's parser: a plain level, or levels by module (what
    /// the operator commands took before there was one logging setup).
    #[test]
    fn rust_log_takes_levels_by_module() {
        let logger = |spec: &str| {
            let modules = directives(spec);
            Logger {
                program: "modsec-shipper",
                level: modules.filter(),
                modules: Some(modules),
                terse: true,
                file: None,
                syslog: false,
            }
        };
        let at = |target: &'static str, level: log::Level| {
            log::Metadata::builder().target(target).level(level).build()
        };
        let by_module = logger("modsec2sguil::sguil=debug,warn");
        assert_eq!(by_module.level, LevelFilter::Debug);
        assert!(by_module.enabled(&at("modsec2sguil::sguil::client", log::Level::Debug)));
        assert!(!by_module.enabled(&at("modsec2sguil::ship", log::Level::Debug)));
        assert!(!by_module.enabled(&at("modsec2sguil::ship", log::Level::Info)));
        assert!(by_module.enabled(&at("modsec2sguil::ship", log::Level::Warn)));
        let plain = logger("info");
        assert!(plain.enabled(&at("modsec2sguil::ship", log::Level::Info)));
        assert!(!plain.enabled(&at("modsec2sguil::ship", log::Level::Debug)));
        assert_eq!(
            choose(
                &SHIPPER,
                None,
                false,
                None,
                Some("modsec2sguil::ship=trace".into())
            )
            .0,
            LevelFilter::Trace
        );
    }
}
