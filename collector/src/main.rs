//! `modsec-collector`: the Apache piped-log collector (not implemented in this build).
//!
//! It exists so the workspace has its final shape; it refuses to run rather than
//! pretend to queue anything.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "modsec-collector",
    version,
    about = "Queue ModSecurity concurrent audit-log events for modsec-shipper (not implemented in this build)",
    long_about = "Queue ModSecurity concurrent audit-log events for modsec-shipper.\n\n\
                  NOT IMPLEMENTED IN THIS BUILD: it exits with status 2 without reading \
                  anything. Do not put it in SecAuditLog yet."
)]
struct Cli {
    /// Arguments of the future interface (`-c CONF STORAGE_DIR INDEX_FILE`); ignored.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

fn main() -> ExitCode {
    let _ = Cli::parse();
    eprintln!("modsec-collector: not implemented in this build; nothing was read or queued");
    ExitCode::from(2)
}
