//! The programs' exit codes, stated once: both binaries exit through [`Exit`], and the
//! tables in `--help` (and so in the man pages generated from it) are [`Exit::table`]
//! of [`Exit::SHIPPER`] and [`Exit::collector_table`]. `modsec-shipper status` exits with Nagios'
//! levels instead (`status::Level`).

use std::fmt::Write as _;

/// How a program ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done (for drain: also when another shipper holds the queue).
    Ok,
    /// Something could not be done: the queue, its journal or failed/ could not be read
    /// or written (drain, run); an event was not queued (requeue); a file was not
    /// parsed (show); the collector's `--follow` ended on an error.
    Failed,
    /// Bad command line (clap's code too).
    Usage,
    /// Bad or missing configuration; as root, a config root cannot trust or a queue
    /// owner it cannot become.
    Config,
    /// sguild unreachable, refused us, or registration failed: the queue is untouched.
    Unreachable,
    /// The session broke mid-run (database outage, lost connection, timeout): what was
    /// confirmed is gone from the queue, the rest stays and is resent first next time.
    Outage,
    /// The collector ran degraded (no usable settings: every line it read was logged,
    /// and appended to the index file if one was known) until its input ended.
    Degraded,
}

impl Exit {
    /// The codes of `drain` and `run`, in the order `--help` lists them.
    pub const SHIPPER: [Exit; 6] = [
        Exit::Ok,
        Exit::Failed,
        Exit::Usage,
        Exit::Config,
        Exit::Unreachable,
        Exit::Outage,
    ];

    /// The collector's codes with what each means for it, in the order `--help` lists
    /// them. (In Apache's pipe it never stops for a bad setting: Apache would restart it
    /// every second while its children block on the pipe; it runs degraded instead.)
    pub const COLLECTOR: [(Exit, &'static str); 4] = [
        (
            Exit::Ok,
            "its input ended (Apache closed the pipe; a second SIGTERM), or --follow was\n\
             stopped by SIGTERM: every line read is queued, in the backlog or in a spool",
        ),
        (
            Exit::Failed,
            "--follow ended on an error (the followed file or STATE_DIR could not be read or\n\
             written; the message names it)",
        ),
        (
            Exit::Degraded,
            "a bad command line, or no usable settings (a config root cannot trust, a bad\n\
             value, a queue it cannot open): ran degraded until its input ended, every\n\
             line logged and appended to the index file if one was known",
        ),
        (
            Exit::Config,
            "with --follow: bad or missing configuration (the message names the file, line\n\
             and key)",
        ),
    ];

    /// [`Exit::COLLECTOR`] as `--help` lists it.
    pub fn collector_table() -> String {
        let mut out = String::new();
        for (e, meaning) in Self::COLLECTOR {
            write_row(&mut out, e.code(), meaning);
        }
        out
    }

    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage | Exit::Degraded => 2,
            Exit::Config => 3,
            Exit::Unreachable => 4,
            Exit::Outage => 5,
        }
    }

    /// What the code means, as `--help` says it (lines after the first continue the
    /// meaning).
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "done (also: another shipper holds the queue lock; drain --wait waits instead)",
            Exit::Failed => "the queue, its journal or failed/ could not be read or written",
            Exit::Usage => "bad command line",
            Exit::Config => "bad or missing configuration (the message names the file, line and key), a\n\
                 config root cannot trust, or a queue owner root cannot become",
            Exit::Unreachable => "sguild unreachable, refused us, or registration failed (OUTPUT barnyard: the\n\
                 snort_agent unreachable or not answering SidCidRequest): the queue is untouched",
            Exit::Outage => "the session broke mid-run (database outage, lost connection, reply timeout):\n\
                 what sguild confirmed is gone from the queue; the rest stays and goes first next run",
            Exit::Degraded => "no usable settings: ran degraded, every line read was logged, until the\n\
                 input ended",
        }
    }

    /// The list of `codes` for `--help`: `  N  meaning`, continuation lines under the
    /// meaning (`manual` renders it as tagged paragraphs).
    pub fn table(codes: &[Exit]) -> String {
        let mut out = String::new();
        for e in codes {
            write_row(&mut out, e.code(), e.meaning());
        }
        out
    }
}

/// One row of an exit-code table: `  N  meaning`, continuation lines under the meaning.
fn write_row(out: &mut String, code: u8, meaning: &str) {
    for (i, line) in meaning.lines().enumerate() {
        if i == 0 {
            let _ = writeln!(out, "  {code}  {line}");
        } else {
            let _ = writeln!(out, "     {line}");
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> std::process::ExitCode {
        std::process::ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipper_table_lists_each_code_once_in_order_with_continuations_indented() {
        let table = Exit::table(&Exit::SHIPPER);
        let codes: Vec<&str> = table
            .lines()
            .filter(|l| !l.starts_with("     "))
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(codes, ["0", "1", "2", "3", "4", "5"]);
        assert!(table.starts_with("  0  done (also: another shipper holds the queue lock;"));
        assert!(table.contains(
            "  3  bad or missing configuration (the message names the file, line and key), a\n     config root cannot trust"
        ));
        assert!(table.ends_with("the rest stays and goes first next run\n"));
        assert_eq!(
            Exit::SHIPPER.map(Exit::code),
            [0, 1, 2, 3, 4, 5],
            "the shipper's codes are their position"
        );
        assert_eq!(Exit::Degraded.code(), 2);
    }

    #[test]
    fn the_collector_table_lists_its_codes_in_order_each_once() {
        let table = Exit::collector_table();
        let codes: Vec<&str> = table
            .lines()
            .filter(|l| !l.starts_with("     "))
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(codes, ["0", "1", "2", "3"]);
        assert!(table.contains("  2  a bad command line, or no usable settings"));
        assert!(table.lines().all(|l| l.len() <= 88), "{table}");
    }
}
