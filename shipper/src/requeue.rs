//! `modsec-shipper requeue`: events back into the queue from failed/, the backlog, or
//! index files.

use std::io::IsTerminal;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use modsec2sguil::collect::{CollectorOverrides, CollectorSettings};
use modsec2sguil::config::ConfigFile;
use modsec2sguil::escape::escape_text;
use modsec2sguil::queue::known::Known;
use modsec2sguil::queue::Queue;
use modsec2sguil::requeue::{
    failed_entries, requeue_backlog, requeue_failed, requeue_index_file, LineFilter, LineRequeuer,
    Outcome, Report,
};

use modsec2sguil::exit::Exit;

/// What to requeue.
pub enum Source {
    /// failed/: these names, these unique ids, or all.
    Failed {
        names: Vec<String>,
        unique_ids: Vec<String>,
        all: bool,
    },
    Backlog,
    /// held/: what a threshold held back (since a time, or these unique ids).
    Suppressed {
        since: Option<chrono::DateTime<chrono::FixedOffset>>,
        unique_ids: Vec<String>,
    },
    Index {
        files: Vec<PathBuf>,
        storage_dir: Option<PathBuf>,
        filter: LineFilter,
    },
}

pub struct Options {
    pub config: Option<PathBuf>,
    pub queue: Option<PathBuf>,
    /// --storage-dir, for --backlog.
    pub storage_dir: Option<PathBuf>,
    /// --state-dir: the collector's (its backlog and record of what it queued).
    pub state_dir: Option<PathBuf>,
    pub dry_run: bool,
    pub force: bool,
}

pub fn run(source: Source, o: &Options) -> u8 {
    let config = match &o.config {
        Some(path) => match ConfigFile::load_trusted(path) {
            Ok(c) => Some(c),
            Err(e) => {
                error(&e);
                return Exit::Config.code();
            }
        },
        None => None,
    };
    let queue_dir = match modsec2sguil::config::queue_dir(o.queue.clone(), config.as_ref()) {
        Ok(q) => q,
        Err(e) => {
            error(&e);
            return Exit::Config.code();
        }
    };
    if let Some(why) = modsec2sguil::queue::not_a_queue(&queue_dir) {
        error(&why);
        return Exit::Config.code();
    }
    // --failed only moves files within the queue: as root, it does so as the queue's
    // owner, so nothing planted in failed/ or history/ (a link to a root-only directory)
    // is followed by root. --backlog and --index read the storage dir, which may need
    // root, and queue as the collector does.
    if matches!(source, Source::Failed { .. } | Source::Suppressed { .. }) {
        let runas = match config.as_ref().map(|c| c.owner("RUNAS")).transpose() {
            Ok(r) => r.flatten(),
            Err(e) => {
                error(&e);
                return Exit::Config.code();
            }
        };
        if let Err(e) = modsec2sguil::privilege::drop_to_queue_owner(runas, &queue_dir) {
            error(&e);
            return Exit::Config.code();
        }
    }
    let mut out = Printer::new(o.dry_run);
    // --failed and --suppressed skip what the queue holds or delivered.
    let known = || {
        Known::load(&queue_dir).map_err(|e| {
            error(format!(
                "cannot read the queue {}: {e}",
                queue_dir.display()
            ));
            Exit::Failed.code()
        })
    };
    let result = match source {
        Source::Failed {
            names,
            unique_ids,
            all,
        } => {
            let known = match known() {
                Ok(k) => k,
                Err(code) => return code,
            };
            failed(&queue_dir, known, &names, &unique_ids, all, o, &mut out)
        }
        Source::Suppressed { since, unique_ids } => {
            let known = match known() {
                Ok(k) => k,
                Err(code) => return code,
            };
            suppressed(&queue_dir, &known, since, &unique_ids, o, &mut out)
        }
        Source::Backlog | Source::Index { .. } => {
            let storage_dir = match &source {
                Source::Index { storage_dir, .. } => storage_dir.clone(),
                _ => o.storage_dir.clone(),
            };
            let settings = CollectorSettings::resolve(
                config.as_ref(),
                CollectorOverrides {
                    queue_dir: Some(queue_dir.clone()),
                    storage_dir,
                    state_dir: o.state_dir.clone(),
                    ..CollectorOverrides::default()
                },
            );
            let settings = match settings {
                Ok(s) => s,
                Err(e) => {
                    error(&e);
                    return Exit::Config.code();
                }
            };
            let mut r = match LineRequeuer::new(settings, o.dry_run, o.force) {
                Ok(r) => r,
                Err(e) => {
                    error(format!("{}: {e}", queue_dir.display()));
                    return Exit::Failed.code();
                }
            };
            match source {
                Source::Index { files, filter, .. } => index(&files, &filter, &mut r, &mut out),
                _ => backlog(&mut r, &mut out),
            }
        }
    };
    out.finish();
    match result {
        Ok(report) => {
            out.summary(&report);
            if report.failed > 0 {
                Exit::Failed.code()
            } else {
                Exit::Ok.code()
            }
        }
        Err(e) => {
            error(&e);
            Exit::Failed.code()
        }
    }
}

/// An error of the command, on stderr. It may quote names and records from the queue:
/// escaped.
fn error(text: impl std::fmt::Display) {
    eprintln!(
        "modsec-shipper: requeue: {}",
        escape_text(&text.to_string())
    );
}

fn failed(
    queue_dir: &std::path::Path,
    mut known: Known,
    names: &[String],
    unique_ids: &[String],
    all: bool,
    o: &Options,
    out: &mut Printer,
) -> Result<Report, String> {
    let entries =
        failed_entries(queue_dir).map_err(|e| format!("{}/failed: {e}", queue_dir.display()))?;
    let mut report = Report::default();
    for name in names {
        if !entries.iter().any(|e| &e.file_name == name) {
            out.line(&format!("{name}: not in failed/"), true);
            report.failed += 1;
        }
    }
    let chosen: Vec<_> = entries
        .iter()
        .filter(|e| {
            all || names.contains(&e.file_name)
                || (!unique_ids.is_empty()
                    && e.unique_id(queue_dir)
                        .is_some_and(|id| unique_ids.contains(&id)))
        })
        .collect();
    if !unique_ids.is_empty() && chosen.is_empty() {
        out.line("no entry in failed/ has the unique id(s) given", true);
        report.failed += 1;
    }
    let mut queue = Queue::open(queue_dir).map_err(|e| format!("{}: {e}", queue_dir.display()))?;
    for e in chosen {
        let outcome = requeue_failed(&mut queue, e, &mut known, o.dry_run, o.force);
        let what = format!(
            "failed/{} ({})",
            e.file_name,
            e.reason.as_deref().unwrap_or("no reason file")
        );
        out.outcome(&what, &outcome);
        report.count(&outcome);
    }
    Ok(report)
}

fn suppressed(
    queue_dir: &std::path::Path,
    known: &Known,
    since: Option<chrono::DateTime<chrono::FixedOffset>>,
    unique_ids: &[String],
    o: &Options,
    out: &mut Printer,
) -> Result<Report, String> {
    let held = modsec2sguil::requeue::suppressed_entries(queue_dir, since)
        .map_err(|e| format!("{}: {e}", queue_dir.display()))?;
    let mut queue = Queue::open(queue_dir).map_err(|e| format!("{}: {e}", queue_dir.display()))?;
    let mut report = Report::default();
    for (entry, id) in held {
        if !unique_ids.is_empty() && !unique_ids.contains(&id) {
            continue;
        }
        let outcome = modsec2sguil::requeue::requeue_suppressed(
            &mut queue, &entry, &id, known, o.dry_run, o.force,
        );
        out.outcome(&format!("held/{entry} (unique id {id})"), &outcome);
        report.count(&outcome);
    }
    Ok(report)
}

fn backlog(r: &mut LineRequeuer, out: &mut Printer) -> Result<Report, String> {
    out.spinner("backlog");
    requeue_backlog(r, &mut |rec| {
        let line = String::from_utf8_lossy(rec.raw);
        out.outcome(
            &format!("backlog line ({}): {}", rec.reason_before, line.trim_end()),
            rec.outcome,
        );
        out.tick(None);
    })
    .map_err(|e| e.to_string())
}

fn index(
    files: &[PathBuf],
    filter: &LineFilter,
    r: &mut LineRequeuer,
    out: &mut Printer,
) -> Result<Report, String> {
    let mut total = Report::default();
    for file in files {
        let size = std::fs::metadata(file).map(|m| m.len()).ok();
        out.bar(&file.display().to_string(), size);
        let report = requeue_index_file(file, filter, r, &mut |l| {
            if !matches!(l.outcome, Outcome::Filtered) {
                let what = format!("{}:{}", file.display(), l.line_no);
                out.outcome(&what, l.outcome);
            }
            out.tick(Some(l.read));
        })
        .map_err(|e| e.to_string())?;
        out.finish();
        total.add(&report);
    }
    Ok(total)
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

    fn spinner(&mut self, what: &str) {
        self.bar(what, None);
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
            Outcome::Known(why) => self.line(&format!("skipped {what}: {why}"), false),
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
