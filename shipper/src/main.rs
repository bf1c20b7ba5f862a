//! `modsec-shipper`: reads queued ModSecurity audit-log events and ships them to Sguil.
//!
//! This binary parses arguments, sets up logging, calls the library's entry point of the
//! command (`ship::run`, `requeue::run`, `status::evaluate`, `show::run`) and presents
//! its result; an error is printed once, by `main`.

mod daemon;
mod drain;
mod requeue;
mod setup;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use modsec2sguil::escape::escape_text;
use modsec2sguil::exit::Exit;
use modsec2sguil::requeue::Source;
use modsec2sguil::show::{self, View};

/// The text after the options of the program, `drain` and `run`: the exit codes
/// ([`Exit::table`]), privileges, barnyard, delivery.
fn after_help() -> String {
    format!(
        "Exit codes of drain and run:\n{}\n{AFTER_CODES}",
        Exit::table(&Exit::SHIPPER)
    )
}

const AFTER_CODES: &str = "\
Started as root, drain and run read the config (which must then be root's and writable
by root alone, in directories only root writes: OpenSSH's StrictModes), open their log
and detach as root, then switch to RUNAS, else to EVENT_DIR's owner, before touching the
queue (a queue root owns, without RUNAS, stays root's); what cannot is exit 3.

OUTPUT barnyard sends through the snort_agent on this host (AGENT_HOST, AGENT_PORT;
HOSTNAME = the agent's HOSTNAME) as barnyard2 does, with the same delivery promise.

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
    after_help = after_help()
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
    /// One line for a person on stdout per Sguil event: time, client -> server,
    /// priority, message.
    Text,
    /// The snort_agent on this host (AGENT_HOST:AGENT_PORT), as barnyard2 talks to it.
    Barnyard,
}

/// Options shared by `drain` and `run`.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Config file (Sguil style `set NAME value`; modsec2sguil's modsec_agent.conf works).
    /// Run as root: it must be root's, not writable by group or others, in directories
    /// only root writes (`chown root`, `chmod go-w`).
    #[arg(short = 'c', long = "config", value_name = "CONF", default_value = modsec2sguil::config::DEFAULT_PATH)]
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
    /// Run even though the config file or the queue is writable by everyone (anyone
    /// could then redirect events, turn TLS checks off, or forge and remove events).
    /// Run as root, the config must be root's alone whatever this says.
    #[arg(long)]
    allow_world_writable: bool,
}

/// Which queue `requeue` and `status` work on.
#[derive(clap::Args, Debug, Clone)]
pub struct QueueArgs {
    /// Config file: its EVENT_DIR is the queue (requeue also reads STORAGE_DIR,
    /// LINK_MODE/SYMLINK, VERIFY_MD5 and RUNAS from it) [default: /etc/modsec2sguil.conf,
    /// unless --queue is given].
    #[arg(short = 'c', long = "config", value_name = "CONF")]
    config: Option<PathBuf>,
    /// The queue directory [config: EVENT_DIR].
    #[arg(long, value_name = "DIR")]
    queue: Option<PathBuf>,
    /// The collector's state dir: its backlog, overflow spools, record of what it queued
    /// and --follow positions [config: STATE_DIR; default: /var/lib/modsec2sguil].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl QueueArgs {
    /// The config file to read: the one given, else the default one unless the queue
    /// is given instead (a monitoring user may not be able to read the config).
    fn config_file(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            self.queue
                .is_none()
                .then(|| PathBuf::from(modsec2sguil::config::DEFAULT_PATH))
        })
    }
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
    #[command(after_help = after_help())]
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
    /// Wakes as each entry is linked into the queue (inotify on EVENT_DIR), and lists
    /// the queue every POLL_INTERVAL seconds (default 1) besides: that finds entries where
    /// the queue cannot be watched (the log says which at start). PINGs sguild after
    /// PING_DELAY ms idle, reconnects with capped exponential backoff and jitter. Keeps a
    /// histogram of how long entries waited until sguild confirmed them, for status
    /// --prometheus.
    /// SIGTERM/SIGINT finish the window in flight and exit 0; SIGHUP reloads the config.
    /// DAEMON 1 detaches (unless --foreground); started as root it then switches to RUNAS
    /// (else to EVENT_DIR's owner) before touching the queue; logs go to stderr,
    /// SHIPPER_LOG_FILE (else LOG_FILE) and/or syslog (SYSLOGFACILITY).
    #[command(after_help = after_help())]
    Run {
        #[command(flatten)]
        common: Common,
        /// Stay in the foreground even with DAEMON 1 (for systemd).
        #[arg(long)]
        foreground: bool,
    },
    /// Put events back into the queue: from failed/, the collector's backlog, index files, or held/.
    ///
    /// --failed and --suppressed: an entry already queued, or recorded as delivered
    /// (EVENT_DIR/.delivered), is skipped unless --force; started as root, they work as
    /// RUNAS (else EVENT_DIR's owner): they only move files within the queue. --backlog
    /// and --index are the collector's work and run as it does (root): an event the
    /// collector recorded as queued (STATE_DIR/queued) is skipped unless --force (after
    /// a Sguil database loss, --force sends them again); lines are checked as the
    /// collector checks them (path inside the storage dir, no symlinks, owner, size and
    /// md5), then hard-linked (or copied) into the queue. Prints one line per event
    /// (failures on stderr; names and reasons from the queue escaped) and a summary;
    /// exits 0, 1 if anything could not be queued, 2 on a bad command line, 3 on a bad
    /// config (as root: one not root's alone) or a queue owner it cannot become.
    ///
    /// Examples:
    ///   modsec-shipper requeue -c /etc/modsec2sguil.conf --failed --all --dry-run
    ///   modsec-shipper requeue -c /etc/modsec2sguil.conf --failed modsec.log.1790000000.000042
    ///   modsec-shipper requeue -c /etc/modsec2sguil.conf --backlog
    ///   modsec-shipper requeue -c /etc/modsec2sguil.conf --index /var/log/apache2/modsec_index.log.2.gz \
    ///       --since "2026-11-27 00:00" --status 4xx,5xx
    ///   modsec-shipper requeue -c /etc/modsec2sguil.conf --suppressed --since 2026-12-07T05:00:00Z
    #[command(verbatim_doc_comment)]
    Requeue(RequeueArgs),
    /// The queue at a glance; with thresholds, a Nagios-style check.
    ///
    /// Reports the entries waiting (and how old the oldest is), events sent and awaiting
    /// sguild's answer, failed/ by reason, the collector's backlog and overflow, entries
    /// marked truncated, and how the last drain or run ended. Reads only: no lock, no
    /// change, safe beside a running shipper and as an unprivileged monitoring user;
    /// started as root, it reads as RUNAS (else EVENT_DIR's owner). What it prints from
    /// the queue is escaped; --json is ASCII-only.
    ///
    /// Exit codes: 0 OK, 1 WARNING, 2 CRITICAL (only when a threshold is given), 3
    /// UNKNOWN (no config or queue, or the queue cannot be read).
    ///
    /// Example (NRPE): modsec-shipper status -c /etc/modsec2sguil.conf --warn-age 10m --crit-age 1h --crit-failed 1
    Status {
        #[command(flatten)]
        at: QueueArgs,
        /// One JSON object, for monitoring systems.
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Prometheus metrics in node_exporter's textfile format (modsec2sguil_*: queue
        /// depth, oldest entry age, failed/, the last run's result, time and counters,
        /// the daemon's delivery latency histogram); modsec2sguil_status_ok is 0 when the
        /// queue cannot be read. See examples/systemd/modsec2sguil-metrics.timer.
        #[arg(long, conflicts_with_all = ["warn_age", "crit_age", "crit_failed"])]
        prometheus: bool,
        /// WARNING when the oldest entry is older than this (seconds, or 15m, 2h, 1d).
        #[arg(long, value_name = "AGE", value_parser = modsec2sguil::status::text::parse_age)]
        warn_age: Option<u64>,
        /// CRITICAL when the oldest entry is older than this.
        #[arg(long, value_name = "AGE", value_parser = modsec2sguil::status::text::parse_age)]
        crit_age: Option<u64>,
        /// CRITICAL when failed/ holds this many entries or more.
        #[arg(long, value_name = "N")]
        crit_failed: Option<usize>,
    },
    /// Write man pages and shell completions under DIR (for installers).
    #[command(hide = true)]
    GenerateDocs {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Parse event files and print what the shipper sees in them.
    ///
    /// Accepts every format ModSecurity writes: 2.x native and JSON (also 1.9.x-era
    /// messages) and libmodsecurity 3 native and JSON; the format is detected per file.
    /// Exits 1 if any file is not an audit-log event (each is named on stderr), 0 otherwise.
    /// Run as root, it opens the files, then drops to `nobody` before reading and parsing
    /// them (3 if it cannot); it follows no symbolic link, and refuses a file of root's
    /// where another user could have put it (a link or file planted in the queue). A file
    /// over MAX_EVENT_BYTES is not read.
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
        /// Print the Sguil event detail each file would ship with instead: `=html` (what
        /// Sguil's analyst console renders) or `=text`. Without FORMAT the config's
        /// DETAIL_FORMAT decides (html when there is no config).
        #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true)]
        detail: Option<Option<modsec2sguil::alert::DetailFormat>>,
        /// With --detail: take DETAIL_FORMAT, DETAIL_RAW_BYTES and the alert settings
        /// from this config file.
        #[arg(short = 'c', long = "config", value_name = "CONF", requires = "detail")]
        config: Option<PathBuf>,
    },
}

// The options of `requeue` (no doc comment: the variant's is its help).
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["failed", "backlog", "index", "suppressed"])))]
struct RequeueArgs {
    #[command(flatten)]
    at: QueueArgs,
    /// Quarantined entries back from failed/ (the NAMEs given, --unique-id, or --all),
    /// under their old names; their .reason files go to failed/history/.
    #[arg(long)]
    failed: bool,
    /// Entries of failed/ to requeue (with --failed).
    #[arg(value_name = "NAME", requires = "failed")]
    names: Vec<String>,
    /// Every entry of failed/ (with --failed).
    #[arg(long, requires = "failed")]
    all: bool,
    /// Events a threshold held back (THRESHOLD_FILE): back from EVENT_DIR/held/ under
    /// their old names, shipped whatever the thresholds say. With --since: those held
    /// back at or after TIME (the delivered log's record); with --unique-id: those.
    /// Works as the queue's owner, as --failed does.
    #[arg(long)]
    suppressed: bool,
    /// Retry the index lines the collector could not act on (STATE_DIR/backlog); what
    /// still fails stays there with its new reason.
    #[arg(long)]
    backlog: bool,
    /// Read these index files (plain or .gz, oldest first) and queue their events from
    /// the storage dir: a backfill, or a first load of an existing audit log.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    index: Vec<PathBuf>,
    /// SecAuditLogStorageDir, for --index and --backlog [config: STORAGE_DIR].
    #[arg(long, value_name = "DIR")]
    storage_dir: Option<PathBuf>,
    // The brackets are the help text's (clap shows this comment), not doc links.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Only transactions that ended at or after this time (RFC 3339, or
    /// "YYYY-MM-DD[ HH:MM[:SS]]" in local time); with --suppressed: held back at or
    /// after it.
    #[arg(long, value_name = "TIME", value_parser = modsec2sguil::requeue::parse_time)]
    since: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Only transactions that ended at or before this time.
    #[arg(long, value_name = "TIME", requires = "index", value_parser = modsec2sguil::requeue::parse_time)]
    until: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Only these HTTP statuses (comma-separated; 4xx for a class).
    #[arg(long, value_name = "CODES", requires = "index", value_delimiter = ',', value_parser = modsec2sguil::requeue::StatusMatch::parse)]
    status: Vec<modsec2sguil::requeue::StatusMatch>,
    /// Only the events with this unique id (repeatable; with --failed or --index).
    #[arg(long = "unique-id", value_name = "ID")]
    unique_id: Vec<String>,
    /// List what would be requeued; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Requeue events even if already queued or delivered.
    #[arg(long)]
    force: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(Error::Said(exit, message)) => {
            eprintln!("modsec-shipper: {message}");
            exit.into()
        }
        Err(Error::Logged(exit, message)) => {
            log::error!("{message}");
            exit.into()
        }
    }
}

/// Why a command stopped, said once, by `main`.
pub enum Error {
    /// On stderr, after the program's name.
    Said(Exit, String),
    /// In the log `drain` and `run` have set up by then (stderr, file, syslog).
    Logged(Exit, String),
}

fn run(cli: Cli) -> Result<ExitCode, Error> {
    let terse = || modsec2sguil::logging::start_terse(&modsec2sguil::logging::SHIPPER);
    let exit = match cli.command {
        Command::Drain {
            common,
            wait,
            max_events,
            max_seconds,
        } => drain::run(&common, wait, max_events, max_seconds)?,
        Command::Run { common, foreground } => daemon::run(&common, foreground)?,
        Command::Requeue(args) => {
            terse();
            requeue::run(args.request()?)?
        }
        Command::Status {
            at,
            json,
            prometheus,
            warn_age,
            crit_age,
            crit_failed,
        } => {
            terse();
            let request = modsec2sguil::status::Request {
                config: at.config_file(),
                queue: at.queue,
                state_dir: at.state_dir,
                thresholds: modsec2sguil::status::Thresholds {
                    warn_age,
                    crit_age,
                    crit_failed,
                },
            };
            let format = if prometheus {
                status::Format::Prometheus
            } else if json {
                status::Format::Json
            } else {
                status::Format::Text
            };
            // Nagios' levels, not an Exit.
            return Ok(ExitCode::from(status::run(&request, format)));
        }
        Command::Show {
            files,
            json,
            max_body,
            detail,
            config,
        } => {
            terse();
            let view = match detail {
                Some(format) => View::Detail { format, config },
                None if json => View::Json,
                None => View::Text,
            };
            let request = modsec2sguil::show::Request {
                files,
                view,
                max_body,
            };
            let mut errors = |e: &str| eprintln!("modsec-shipper: show: {}", escape_text(e));
            show::run(&request, &mut std::io::stdout().lock(), &mut errors)
        }
        Command::GenerateDocs { dir } => {
            use clap::CommandFactory;
            let files = modsec2sguil::manual::generate(Cli::command(), &dir)
                .map_err(|e| Error::Said(Exit::Failed, format!("{}: {e}", dir.display())))?;
            files.iter().for_each(|f| println!("{}", f.display()));
            Exit::Ok
        }
    };
    Ok(exit.into())
}

impl RequeueArgs {
    /// The library's request; a combination clap cannot refuse is a usage error.
    fn request(self) -> Result<modsec2sguil::requeue::Request, Error> {
        let usage = |why: &str| Err(Error::Said(Exit::Usage, why.to_string()));
        if self.failed && self.names.is_empty() && self.unique_id.is_empty() && !self.all {
            return usage("requeue --failed: name the entries, or give --unique-id ID or --all");
        }
        if self.backlog && !self.unique_id.is_empty() {
            return usage("requeue --backlog takes no --unique-id (it retries the whole backlog)");
        }
        if self.since.is_some() && !self.suppressed && self.index.is_empty() {
            return usage("requeue --since goes with --index or --suppressed");
        }
        let source = if self.suppressed {
            Source::Suppressed {
                since: self.since,
                unique_ids: self.unique_id,
            }
        } else if self.failed {
            Source::Failed {
                names: self.names,
                unique_ids: self.unique_id,
                all: self.all,
            }
        } else if self.backlog {
            Source::Backlog
        } else {
            Source::Index {
                files: self.index,
                filter: modsec2sguil::requeue::LineFilter {
                    since: self.since,
                    until: self.until,
                    unique_ids: self.unique_id,
                    statuses: self.status,
                },
            }
        };
        Ok(modsec2sguil::requeue::Request {
            source,
            config: self.at.config_file(),
            queue: self.at.queue,
            storage_dir: self.storage_dir,
            state_dir: self.at.state_dir,
            dry_run: self.dry_run,
            force: self.force,
        })
    }
}
