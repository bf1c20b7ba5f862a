//! `modsec-collector`: the Apache piped-log collector. Apache starts it through
//! `SecAuditLog "|/usr/local/bin/modsec-collector -c CONF STORAGE_DIR INDEX_FILE"`; it
//! reads one index line per transaction, keeps the index file, and links each event
//! file into the queue for `modsec-shipper`.
//!
//! It parses arguments, sets up logging, calls `modsec2sguil::collect`; `main` prints errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use modsec2sguil::collect::follow::StartAt;
use modsec2sguil::collect::{CollectorOverrides, CollectorSettings};
use modsec2sguil::config::ConfigFile;
use modsec2sguil::exit::Exit;
use modsec2sguil::logging::{self, COLLECTOR};
use modsec2sguil::queue::LinkMode;

const AFTER_HELP: &str = "\
Apache (ModSecurity 2, concurrent audit log) starts the collector itself, as root:

    SecAuditLogType       Concurrent
    SecAuditLogStorageDir /var/log/modsec-audit
    SecAuditLog \"|/usr/local/bin/modsec-collector -c /etc/modsec2sguil.conf /var/log/modsec-audit /var/log/apache2/modsec_index.log\"

with EVENT_DIR (the queue) set in the config file. The queue must be on the same
filesystem as the storage dir for hard links (otherwise entries are copied).

It never blocks Apache and never loses a line: every line is appended to the index file,
and a line whose event cannot be queued is appended with the reason to STATE_DIR/backlog
(for `modsec-shipper requeue --backlog`). When it falls behind, lines wait in
STATE_DIR/spool.<pid> and are queued as soon as it catches up (a spool left by a crash
is queued by the next instance). STATE_DIR (default /var/lib/modsec2sguil) is root's
alone: the collector reads nothing in the queue, which another user owns. On SIGTERM it keeps reading until Apache closes the
pipe (old children still write after a graceful restart); a second SIGTERM stops at
once, putting lines not yet handled in the backlog. SIGHUP reopens the index file.

nginx + libmodsecurity 3 (which cannot pipe): run it as a service with
`--follow /var/log/nginx/modsec_index` (or FOLLOW_INDEX): it reads the index file
as it grows, across rotation, and resumes where it stopped (STATE_DIR/follow.*).

Config keys it reads: EVENT_DIR, STORAGE_DIR, INDEX_FILE, LINK_MODE (or SYMLINK 1),
VERIFY_MD5, RUNAS, MAX_EVENT_BYTES, STATE_DIR, EVENT_OWNER, LOG_FILE, SYSLOGFACILITY, DEBUG,
FOLLOW_INDEX.";

#[derive(Parser, Debug)]
#[command(
    name = "modsec-collector",
    version,
    about = "Queue ModSecurity concurrent audit-log events for modsec-shipper (run by Apache)",
    after_help = format!("{AFTER_HELP}\n\nExit codes:\n{}", Exit::collector_table())
)]
struct Cli {
    /// Config file (Sguil style `set NAME value`, modsec2sguil's modsec_agent.conf works)
    /// [default: /etc/modsec2sguil.conf, unless --queue is given]. Run as root, it must be
    /// root's and writable by root alone, in directories only root writes; otherwise the
    /// collector runs degraded (lines kept in the command line's INDEX_FILE only) and
    /// says why.
    #[arg(short = 'c', long = "config", value_name = "CONF")]
    config: Option<PathBuf>,
    /// SecAuditLogStorageDir: where ModSecurity writes the event files [config: STORAGE_DIR].
    #[arg(long, value_name = "DIR")]
    storage_dir: Option<PathBuf>,
    /// The queue directory [config: EVENT_DIR].
    #[arg(long = "queue", value_name = "DIR")]
    queue: Option<PathBuf>,
    /// Append every index line here, unchanged [config: INDEX_FILE; default: none].
    #[arg(long = "index", value_name = "FILE")]
    index: Option<PathBuf>,
    /// How entries are made [config: LINK_MODE; default: hardlink, falling back to copy
    /// across filesystems].
    #[arg(long, value_enum, value_name = "MODE")]
    link_mode: Option<LinkModeArg>,
    /// Check each event file's md5 against its index line [config: VERIFY_MD5; default: on].
    /// The size is always checked; a mismatch is queued and marked, never dropped.
    #[arg(long, value_enum, value_name = "on|off")]
    verify_md5: Option<OnOff>,
    /// The collector's own state (overflow spool, backlog, record of what it queued,
    /// --follow position), where only root writes: it is checked to be root's, as is
    /// every directory above it [config: STATE_DIR; default: /var/lib/modsec2sguil].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Log file, in addition to stderr [config: LOG_FILE].
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Log every line handled [config: DEBUG 1].
    #[arg(long)]
    debug: bool,
    /// Follow this index file instead of reading standard input (libmodsecurity 3 on
    /// nginx cannot pipe): like `tail -F`, across rotation by rename or copytruncate,
    /// resuming where it stopped [config: FOLLOW_INDEX]. Run it as a service.
    #[arg(long, value_name = "INDEX_FILE")]
    follow: Option<PathBuf>,
    /// With --follow, on the very first start: read the file from its beginning instead
    /// of only the lines written from now on.
    #[arg(long, requires = "follow")]
    from_start: bool,
    /// Write man pages and shell completions under DIR, then exit (for installers).
    #[arg(long, value_name = "DIR", hide = true)]
    generate_docs: Option<PathBuf>,
    /// STORAGE_DIR and INDEX_FILE, as modsec_queue.pl took them.
    #[arg(value_name = "STORAGE_DIR INDEX_FILE", num_args = 0..=2)]
    positional: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LinkModeArg {
    Hardlink,
    Copy,
    Symlink,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OnOff {
    On,
    Off,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            // Apache restarts a collector that exits, once a second, forever, while its
            // children block on the full pipe. Keep the lines moving instead.
            return degraded(&format!("bad command line: {e}"), None).into();
        }
    };
    match run(cli) {
        Ok(code) => code.into(),
        Err((exit, message)) => {
            // Before the log is set up (the config, the docs), on stderr.
            if log::max_level() == log::LevelFilter::Off {
                eprintln!("modsec-collector: {message}");
            } else {
                log::error!("{message}");
            }
            exit.into()
        }
    }
}

/// Why the collector stopped: the exit code, and what is said.
fn error(exit: Exit, message: impl std::fmt::Display) -> (Exit, String) {
    (exit, message.to_string())
}

fn run(cli: Cli) -> Result<Exit, (Exit, String)> {
    if let Some(dir) = &cli.generate_docs {
        use clap::CommandFactory;
        let files = modsec2sguil::manual::generate(Cli::command(), dir)
            .map_err(|e| error(Exit::Failed, format!("{}: {e}", dir.display())))?;
        files.iter().for_each(|f| println!("{}", f.display()));
        return Ok(Exit::Ok);
    }
    // Without -c (and without --queue), the config where the package puts it. Run as
    // root, a config someone else could have written is refused (it would choose the
    // queue, RUNAS and the log file for root): degraded, keeping the index lines in the
    // index file the command line names (never one the refused config names).
    let config_path = cli.config.clone().or_else(|| {
        cli.queue
            .is_none()
            .then(|| PathBuf::from(modsec2sguil::config::DEFAULT_PATH))
    });
    let config = match config_path.as_deref().map(ConfigFile::load_trusted) {
        None => None,
        Some(Ok(c)) => Some(c),
        // --follow runs as a service, not in Apache's pipe: an error exit.
        Some(Err(e)) if cli.follow.is_some() => return Err(error(Exit::Config, e)),
        Some(Err(e)) => {
            let index = cli.index.clone().or_else(|| cli.positional.get(1).cloned());
            return Ok(degraded(&e.to_string(), index));
        }
    };
    logging::start(&COLLECTOR, config.as_ref(), cli.debug, cli.log_file.clone());
    let follow = match cli.follow.clone() {
        Some(f) => Some(f),
        None => config
            .as_ref()
            .map(|c| c.abs_path("FOLLOW_INDEX"))
            .transpose()
            .map_err(|e| error(Exit::Config, e))?
            .flatten(),
    };
    let from_start = cli.from_start;
    let overrides = overrides(cli);
    if let Some(index) = follow {
        // A service, not Apache's pipe: a bad setting is an error exit, and the followed
        // file is the index (nothing is appended to it).
        let mut settings = CollectorSettings::resolve(config.as_ref(), overrides)
            .map_err(|e| error(Exit::Config, e))?;
        settings.index_file = None;
        let start = if from_start {
            StartAt::Start
        } else {
            StartAt::End
        };
        // The position is kept per path: the same file must always have the same name.
        let index = if index.is_relative() {
            std::env::current_dir()
                .map(|d| d.join(&index))
                .unwrap_or(index)
        } else {
            index
        };
        let control = modsec2sguil::control::signals();
        modsec2sguil::collect::run::follow(settings, &index, start, &control)
            .map_err(|e| error(Exit::Failed, e))?;
        return Ok(Exit::Ok);
    }
    let index_for_degraded = overrides.index_file.clone();
    Ok(
        match CollectorSettings::resolve(config.as_ref(), overrides) {
            Ok(settings) => {
                let control = modsec2sguil::control::signals();
                modsec2sguil::collect::degraded::stdin(settings, &control)
            }
            Err(e) => degraded(&e.to_string(), index_for_degraded),
        },
    )
}

/// The command line's settings; modsec_queue.pl's form, STORAGE_DIR INDEX_FILE, under
/// the long options.
fn overrides(cli: Cli) -> CollectorOverrides {
    let positional = cli.positional;
    CollectorOverrides {
        storage_dir: cli.storage_dir.or_else(|| positional.first().cloned()),
        index_file: cli.index.or_else(|| positional.get(1).cloned()),
        queue_dir: cli.queue,
        link_mode: cli.link_mode.map(|m| match m {
            LinkModeArg::Hardlink => LinkMode::Hardlink,
            LinkModeArg::Copy => LinkMode::Copy,
            LinkModeArg::Symlink => LinkMode::Symlink,
        }),
        verify_md5: cli.verify_md5.map(|v| matches!(v, OnOff::On)),
        state_dir: cli.state_dir,
    }
}

/// Reads standard input to its end without a queue
/// (`modsec2sguil::collect::degraded`), logging where it can without settings.
fn degraded(why: &str, index: Option<PathBuf>) -> Exit {
    logging::fallback(&COLLECTOR);
    modsec2sguil::collect::degraded::degraded(why, index, std::io::stdin())
}
