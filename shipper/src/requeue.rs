//! `modsec-shipper requeue`: `modsec2sguil::requeue::run`, its progress and report
//! shown (a progress bar on a terminal).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use modsec2sguil::escape::escape_text;
use modsec2sguil::exit::Exit;
use modsec2sguil::requeue::{Outcome, Progress, Report, Request};

use crate::Error;

/// Runs the request, showing each event and the summary; the exit code: 0, or 1 if
/// anything could not be queued; the error (3 for the config).
pub fn run(request: Request) -> Result<Exit, Error> {
    let mut out = Printer::new(request.dry_run);
    let result = modsec2sguil::requeue::run(request, &mut |p| out.show(p));
    out.finish();
    match result {
        Ok(report) => {
            out.summary(&report);
            Ok(if report.failed > 0 {
                Exit::Failed
            } else {
                Exit::Ok
            })
        }
        // It may quote names and records from the queue: escaped.
        Err(e) => Err(Error::Said(
            e.exit(),
            format!("requeue: {}", escape_text(&e.to_string())),
        )),
    }
}

/// Prints outcomes (above a progress bar on a terminal) and the summary.
struct Printer {
    dry_run: bool,
    bar: Option<ProgressBar>,
    tty: bool,
}

impl Printer {
    fn new(dry_run: bool) -> Printer {
        Printer {
            dry_run,
            bar: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn bar(&mut self, what: &str, len: Option<u64>) {
        if !self.tty {
            return;
        }
        let bar = match len {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        bar.set_message(what.to_string());
        self.bar = Some(bar);
    }

    fn show(&mut self, p: Progress) {
        match p {
            Progress::Start { what, size } => self.bar(what, size),
            Progress::Outcome { what, outcome } => self.outcome(what, outcome),
            Progress::Problem(text) => self.line(text, true),
            Progress::Tick(pos) => self.tick(pos),
            Progress::Done => self.finish(),
        }
    }

    fn tick(&self, pos: Option<u64>) {
        if let Some(b) = &self.bar {
            match pos {
                Some(p) => b.set_position(p),
                None => b.tick(),
            }
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    /// One line; errors to stderr, the rest to stdout. What it says comes partly from
    /// index lines and events: escaped for the terminal.
    fn line(&self, text: &str, error: bool) {
        let text = escape_text(text);
        let print = || {
            if error {
                eprintln!("{text}");
            } else {
                println!("{text}");
            }
        };
        match &self.bar {
            Some(b) => b.suspend(print),
            None => print(),
        }
    }

    fn outcome(&self, what: &str, o: &Outcome) {
        match o {
            Outcome::Queued(entry) => self.line(&format!("queued {entry} <- {what}"), false),
            Outcome::WouldQueue => self.line(&format!("would queue {what}"), false),
            Outcome::AlreadyKnown(why) => self.line(&format!("skipped {what}: {why}"), false),
            Outcome::Filtered => {}
            Outcome::Failed(why) => self.line(&format!("not queued: {what}: {why}"), true),
        }
    }

    fn summary(&self, r: &Report) {
        let mut text = if self.dry_run {
            format!("requeue (dry run): would queue {}", r.would_queue)
        } else {
            format!("requeue: queued {}", r.queued)
        };
        text.push_str(&format!(", already queued or delivered {}", r.known));
        if r.known > 0 {
            text.push_str(" (--force adds them anyway)");
        }
        if r.filtered > 0 {
            text.push_str(&format!(", not matching the filters {}", r.filtered));
        }
        text.push_str(&format!(", failed {}", r.failed));
        eprintln!("{text}");
    }
}
