//! `modsec-shipper`: reads queued ModSecurity audit-log events and ships them to Sguil.
//!
//! This binary only wires arguments to the `modsec2sguil` library. Shipping (`drain`,
//! `run`) and the operator commands (`requeue`, `status`) land with their issues; until
//! then the only command is `show`, which prints what the parsers see.

mod show;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "modsec-shipper",
    version,
    about = "Ship ModSecurity audit-log events from the collector's queue to Sguil",
    long_about = "Ship ModSecurity audit-log events from the collector's queue to Sguil.\n\n\
                  Available now: `show`, which parses event files exactly as the shipper \
                  will and prints the result. Shipping to sguild (`drain`, `run`) and the \
                  operator commands (`requeue`, `status`) are not part of this build yet."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Show {
            files,
            json,
            max_body,
        } => show::run(&files, json, max_body),
    }
}
