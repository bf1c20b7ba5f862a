//! Where the binaries' log lines go: stderr, a log file (LOG_FILE) and/or syslog
//! (SYSLOGFACILITY), all at once. Apache gives a piped collector `/dev/null` as stderr
//! for its first instance, so a file or syslog is the only place its messages survive.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

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

/// The logger behind the `log` macros of a binary.
pub struct Logger {
    program: &'static str,
    level: LevelFilter,
    stderr: bool,
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
        stderr: bool,
        log_file: Option<&Path>,
        syslog_facility: Option<libc::c_int>,
    ) -> std::io::Result<()> {
        let file = match log_file {
            Some(p) => Some(Mutex::new(crate::safefs::append_nofollow(p)?)),
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
            stderr,
            file,
            syslog: syslog_facility.is_some(),
        };
        log::set_max_level(level);
        log::set_boxed_logger(Box::new(logger)).map_err(std::io::Error::other)
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
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
        let stamp = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f %z");
        let line = format!(
            "{stamp} {}[{}] {level}: {text}\n",
            self.program,
            std::process::id()
        );
        if self.stderr && record.target() != LOG_ONLY {
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
