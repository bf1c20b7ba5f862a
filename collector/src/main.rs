//! `modsec-collector`: the Apache piped-log collector. Apache starts it through
//! `SecAuditLog "|/usr/local/bin/modsec-collector -c CONF STORAGE_DIR INDEX_FILE"`; it
//! reads one index line per transaction, keeps the index file, and links each event
//! file into the queue for `modsec-shipper`.
//!
//! This file wires arguments, signals and logging to `modsec2sguil::collect`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use modsec2sguil::collect::follow::StartAt;
use modsec2sguil::collect::{pipeline::GATHER, CollectorOverrides, CollectorSettings};
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
    after_help = AFTER_HELP
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
            return Exit::Ok.into();
        }
        Err(e) => {
            let _ = e.print();
            // Apache restarts a collector that exits, once a second, forever, while its
            // children block on the full pipe. Keep the lines moving instead.
            return degraded(&format!("bad command line: {e}"), None);
        }
    };
    if let Some(dir) = &cli.generate_docs {
        use clap::CommandFactory;
        return match modsec2sguil::manual::generate(Cli::command(), dir) {
            Ok(files) => {
                files.iter().for_each(|f| println!("{}", f.display()));
                Exit::Ok.into()
            }
            Err(e) => {
                eprintln!("modsec-collector: {}: {e}", dir.display());
                Exit::Failed.into()
            }
        };
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
    let config = match &config_path {
        Some(path) => match ConfigFile::load_trusted(path) {
            Ok(c) => Some(c),
            // --follow runs as a service, not in Apache's pipe: an error exit.
            Err(e) if cli.follow.is_some() => {
                eprintln!("modsec-collector: {e}");
                return Exit::Config.into();
            }
            Err(e) => {
                let index = cli.index.clone().or_else(|| cli.positional.get(1).cloned());
                return degraded(&e.to_string(), index);
            }
        },
        None => None,
    };
    logging::start(&COLLECTOR, config.as_ref(), cli.debug, cli.log_file.clone());

    let follow = match cli.follow.clone() {
        Some(f) => Some(f),
        None => match config
            .as_ref()
            .map(|c| c.abs_path("FOLLOW_INDEX"))
            .transpose()
        {
            Ok(f) => f.flatten(),
            Err(e) => {
                log::error!("{e}");
                return Exit::Config.into();
            }
        },
    };
    // modsec_queue.pl's form: STORAGE_DIR INDEX_FILE; the long options win over them.
    let positional = cli.positional;
    let overrides = CollectorOverrides {
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
    };
    if let Some(index) = follow {
        // The position is kept per path: the same file must always have the same name.
        let index = if index.is_relative() {
            std::env::current_dir()
                .map(|d| d.join(&index))
                .unwrap_or(index)
        } else {
            index
        };
        // A service, not Apache's pipe: a bad setting is an error exit, and the followed
        // file is the index (nothing is appended to it).
        let settings = CollectorSettings::resolve(config.as_ref(), overrides);
        return match settings {
            Ok(mut s) => {
                s.index_file = None;
                let start = if cli.from_start {
                    StartAt::Start
                } else {
                    StartAt::End
                };
                follow_index(s, &index, start)
            }
            Err(e) => {
                log::error!("{e}");
                Exit::Config.into()
            }
        };
    }
    let index_for_degraded = overrides.index_file.clone();
    let settings = match CollectorSettings::resolve(config.as_ref(), overrides) {
        Ok(s) => s,
        Err(e) => return degraded(&e.to_string(), index_for_degraded),
    };
    run(settings)
}

/// `--follow`: reads the index file as it grows until SIGTERM or SIGINT.
fn follow_index(settings: CollectorSettings, index: &std::path::Path, start: StartAt) -> ExitCode {
    let control = modsec2sguil::control::signals();
    match modsec2sguil::collect::run::follow(settings, index, start, &control) {
        Ok(_) => Exit::Ok.into(),
        Err(e) => {
            log::error!("{e}");
            Exit::Failed.into()
        }
    }
}

/// Apache's pipe: standard input, read until Apache closes it.
fn run(settings: CollectorSettings) -> ExitCode {
    let control = modsec2sguil::control::signals();
    // In the log only: `apachectl configtest` starts the collector too (stdin closes at
    // once), and the admin's terminal is no place for it.
    log::info!(
        target: modsec2sguil::logging::LOG_ONLY,
        "started: storage dir {}, queue {}, index file {}, {:?}, md5 {}",
        settings.storage_dir.display(),
        settings.queue_dir.display(),
        settings
            .index_file
            .as_ref()
            .map_or("none".into(), |p| p.display().to_string()),
        settings.link_mode,
        if settings.verify_md5 { "on" } else { "off" }
    );
    // Slow input gathers between reads only where the pipe has room for a burst
    // meanwhile.
    let gather = {
        use std::os::fd::AsFd;
        match modsec2sguil::collect::enlarge_pipe(std::io::stdin().as_fd()) {
            // The kernel makes it at least as large as asked, or refuses.
            Ok(n) => {
                log::debug!("standard input's pipe holds {n} bytes");
                Some(GATHER)
            }
            Err(e) => {
                log::info!("cannot enlarge standard input's pipe ({e}); reading each line at once");
                None
            }
        }
    };
    let index = settings.index_file.clone();
    match modsec2sguil::collect::run::piped(settings, std::io::stdin(), gather, &control) {
        Ok(_) => Exit::Ok.into(),
        Err(e) => degraded(&e.to_string(), index),
    }
}

/// Without usable settings there is no queue and no backlog. Exiting would make Apache
/// restart us every second while its children block on the pipe, so keep reading:
/// append each line to the index file if one is known, and log every line in full.
fn degraded(why: &str, index: Option<PathBuf>) -> ExitCode {
    logging::fallback(&COLLECTOR);
    log::error!(
        "cannot queue events: {why}; reading on so Apache does not block, every line is logged"
    );
    // The index file is opened and written on a thread of its own, as in normal
    // operation: one that hangs must not stop this loop from reading. A line it cannot
    // take at once is in the log anyway.
    let (written_tx, written) = crossbeam_channel::bounded::<()>(1);
    let index = index.map(|p| {
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(1024);
        std::thread::spawn(move || {
            let mut f = modsec2sguil::collect::index_file::IndexFile::new(&p);
            for line in rx {
                f.append(&line);
            }
            drop(f);
            let _ = written_tx.send(());
        });
        tx
    });
    // At the end of input: what the index file has not taken within a few seconds was
    // logged already.
    let finish = |index: Option<crossbeam_channel::Sender<Vec<u8>>>| {
        if let Some(tx) = index {
            drop(tx);
            let _ = written.recv_timeout(Duration::from_secs(5));
        }
    };
    let mut input = std::io::BufReader::new(std::io::stdin());
    loop {
        match modsec2sguil::collect::read_line(&mut input) {
            Ok(Some(line)) => {
                log::error!(
                    "not queued ({why}): {}",
                    String::from_utf8_lossy(&line.bytes).trim_end()
                );
                if let Some(tx) = &index {
                    let _ = tx.try_send(line.bytes);
                }
            }
            Ok(None) => {
                finish(index);
                return Exit::Degraded.into();
            }
            Err(e) => {
                log::error!("reading standard input failed: {e}");
                finish(index);
                return Exit::Degraded.into();
            }
        }
    }
}
