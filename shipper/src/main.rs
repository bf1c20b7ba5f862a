//! `modsec-shipper`: reads queued ModSecurity audit-log events and ships them to Sguil.
//!
//! This binary wires arguments, signals and logging to `modsec2sguil::ship`.

mod daemon;
mod drain;
mod setup;
mod show;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit codes of `drain` and `run`, documented in `--help` and the README.
pub mod exit {
    /// Done (or another shipper holds the queue).
    pub const OK: u8 = 0;
    /// The queue, journal or failed/ area could not be read or written.
    pub const IO: u8 = 1;
    /// Bad command line (clap's code).
    pub const USAGE: u8 = 2;
    /// Bad or missing configuration.
    pub const CONFIG: u8 = 3;
    /// sguild unreachable, refused us, or registration failed: the queue is untouched.
    pub const UNREACHABLE: u8 = 4;
    /// The session broke mid-run (database outage, lost connection, timeout): what was
    /// confirmed is gone from the queue, the rest stays and is resent first next time.
    pub const OUTAGE: u8 = 5;
}

const AFTER_HELP: &str = "\
Exit codes of drain and run:
  0  done (also: another shipper holds the queue lock; drain --wait waits instead)
  1  the queue, its journal or failed/ could not be read or written
  2  bad command line
  3  bad or missing configuration (the message names the file, line and key)
  4  sguild unreachable, refused us, or registration failed: the queue is untouched
  5  the session broke mid-run (database outage, lost connection, reply timeout):
     what sguild confirmed is gone from the queue; the rest stays and goes first next run

Delivery is exactly once: each event is journaled (EVENT_DIR/.journal) before it is
sent and its queue entry is removed only when sguild confirms it; after a crash or a
lost connection, journaled events are resent under the same sid and cid, and sguild's
`Duplicate entry` answer proves them stored. Entries that cannot be read or parsed, or
that sguild refuses, are moved to EVENT_DIR/failed/ with a .reason file.";

#[derive(Parser)]
#[command(
    name = "modsec-shipper",
    version,
    about = "Ship ModSecurity audit-log events from the collector's queue to Sguil",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where events go, overriding the config's OUTPUT.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum OutputArg {
    /// sguild, over the agent protocol.
    Sguil,
    /// JSON lines on stdout, one per Sguil event, every field decoded.
    Stdout,
}

/// Options shared by `drain` and `run`.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Config file (Sguil style `set NAME value`; modsec2sguil's modsec_agent.conf works).
    #[arg(short = 'c', long = "config", value_name = "CONF")]
    config: PathBuf,
    /// The queue directory [config: EVENT_DIR].
    #[arg(long, value_name = "DIR")]
    queue: Option<PathBuf>,
    /// Where events go [config: OUTPUT; default: sguil].
    #[arg(long, value_enum, value_name = "WHERE")]
    output: Option<OutputArg>,
    /// Log at debug level [config: DEBUG 1; RUST_LOG also works].
    #[arg(long)]
    debug: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Ship every queued event, then exit (the cron job).
    ///
    /// Takes the queue lock (if another shipper holds it, exits 0 with one log line, or
    /// waits with --wait), sends what an earlier run left unanswered, then every entry
    /// present, oldest first. Ends with one summary line: shipped, skipped as
    /// non-alerts, quarantined, remaining, elapsed, events/s.
    ///
    /// Example (crontab): * * * * * modsec-shipper drain -c /etc/modsec2sguil.conf
    #[command(after_help = AFTER_HELP)]
    Drain {
        #[command(flatten)]
        common: Common,
        /// Wait for the queue lock instead of leaving it to the shipper that holds it.
        #[arg(long)]
        wait: bool,
        /// Stop after this many entries (shipped, skipped or quarantined).
        #[arg(long, value_name = "N")]
        max_events: Option<u64>,
        /// Stop starting new windows after this many seconds.
        #[arg(long, value_name = "S")]
        max_seconds: Option<u64>,
    },
    /// Ship events as they arrive (the daemon, what modsec_agent.pl was).
    ///
    /// Polls the queue (every 250 ms while busy, every second when idle), PINGs sguild
    /// after PING_DELAY ms idle, reconnects with capped exponential backoff and jitter.
    /// SIGTERM/SIGINT finish the window in flight and exit 0; SIGHUP reloads the config.
    /// DAEMON 1 detaches (unless --foreground); RUNAS drops privileges once the config
    /// is read; logs go to stderr, SHIPPER_LOG_FILE (else LOG_FILE) and/or syslog
    /// (SYSLOGFACILITY).
    #[command(after_help = AFTER_HELP)]
    Run {
        #[command(flatten)]
        common: Common,
        /// Stay in the foreground even with DAEMON 1 (for systemd).
        #[arg(long)]
        foreground: bool,
    },
    /// Parse event files and print what the shipper sees in them.
    ///
    /// Accepts every format ModSecurity writes: 2.x native and JSON (also 1.9.x-era
    /// messages) and libmodsecurity 3 native and JSON; the format is detected per file.
    /// Exits 1 if any file is not an audit-log event (each is named on stderr), 0 otherwise.
    ///
    /// Example: modsec-shipper show /var/log/modsec_audit/www-data/20261128/*/*
    Show {
        /// Event files (one transaction each, as in SecAuditLogStorageDir).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print one JSON object per file (one per line) instead of text.
        #[arg(long)]
        json: bool,
        /// Keep at most this many bytes of each request/response body.
        #[arg(long, value_name = "BYTES", default_value_t = modsec2sguil::auditlog::DEFAULT_MAX_BODY_BYTES)]
        max_body: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Show {
            files,
            json,
            max_body,
        } => {
            env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
                .init();
            show::run(&files, json, max_body)
        }
        Command::Drain {
            common,
            wait,
            max_events,
            max_seconds,
        } => ExitCode::from(drain::run(&common, wait, max_events, max_seconds)),
        Command::Run { common, foreground } => ExitCode::from(daemon::run(&common, foreground)),
    }
}
