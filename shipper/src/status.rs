//! `modsec-shipper status`: the verdict of `modsec2sguil::status::evaluate`, printed.

use modsec2sguil::escape::escape_text;
use modsec2sguil::status::{evaluate, Request, Verdict};

/// How the status is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    /// node_exporter's textfile format (`modsec2sguil::status::prometheus`).
    Prometheus,
}

/// Prints the status; returns the exit code (the Nagios level; 0 without thresholds
/// unless the queue cannot be read).
pub fn run(request: &Request, format: Format) -> u8 {
    let verdict = evaluate(request);
    let text = match format {
        Format::Text => verdict.text(),
        Format::Json => verdict.json(),
        Format::Prometheus => {
            // What failed goes to stderr; the exposition says only that it did.
            if let Verdict::Unknown(e) = &verdict {
                eprintln!("modsec2sguil UNKNOWN - {}", escape_text(e));
            }
            verdict.prometheus()
        }
    };
    print!("{text}");
    verdict.code()
}
