//! `modsec-shipper requeue` from its request to its report: the config read, the queue
//! checked, privileges as each source needs them, and every event or line acted on,
//! told to the caller as it goes ([`Progress`]) for it to show.

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};

use super::{
    failed_entries, requeue_backlog, requeue_failed, requeue_index_file, requeue_suppressed,
    suppressed_entries, LineFilter, LineRequeuer, Outcome, Report,
};
use crate::collect::{CollectorOverrides, CollectorSettings};
use crate::config::ConfigFile;
use crate::exit::Exit;
use crate::queue::known::KnownEvents;
use crate::queue::Queue;

/// What to requeue.
#[derive(Debug, Clone)]
pub enum Source {
    /// failed/: these names, these unique ids, or all.
    Failed {
        names: Vec<String>,
        unique_ids: Vec<String>,
        all: bool,
    },
    /// The collector's backlog (STATE_DIR/backlog).
    Backlog,
    /// held/: what a threshold held back (since a time, or these unique ids).
    Suppressed {
        since: Option<DateTime<FixedOffset>>,
        unique_ids: Vec<String>,
    },
    /// Index files, their lines that `filter` matches.
    Index {
        files: Vec<PathBuf>,
        filter: LineFilter,
    },
}

/// A requeue run as the command line asks it.
#[derive(Debug, Clone)]
pub struct Request {
    pub source: Source,
    /// The config file (its EVENT_DIR, STORAGE_DIR, STATE_DIR, RUNAS…), if any.
    pub config: Option<PathBuf>,
    /// The queue, overriding EVENT_DIR.
    pub queue: Option<PathBuf>,
    /// The storage dir, for --index and --backlog, overriding STORAGE_DIR.
    pub storage_dir: Option<PathBuf>,
    /// The collector's state dir (its backlog and record of what it queued).
    pub state_dir: Option<PathBuf>,
    pub dry_run: bool,
    pub force: bool,
}

/// What a run is doing, for the caller to show. Texts quote names and records from the
/// queue and index lines: escape them before they reach a terminal.
#[derive(Debug)]
pub enum Progress<'a> {
    /// Work on `what` starts: an index file of `size` bytes, or the backlog (no size).
    Start { what: &'a str, size: Option<u64> },
    /// One event or line acted on.
    Outcome { what: &'a str, outcome: &'a Outcome },
    /// Something not queued that is no one event's (a name not in failed/), counted as
    /// failed.
    Problem(&'a str),
    /// Bytes of the current file read, or (`None`) one more backlog record.
    Tick(Option<u64>),
    /// Work on the current index file is done.
    Done,
}

/// Why a run stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The config, the queue's place, or privileges: nothing was done.
    Config(String),
    /// The queue, the backlog or an index file could not be read or written.
    Failed(String),
}

impl Error {
    pub fn exit(&self) -> Exit {
        match self {
            Error::Config(_) => Exit::Config,
            Error::Failed(_) => Exit::Failed,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Config(e) | Error::Failed(e) => f.write_str(e),
        }
    }
}

fn config_error(e: impl std::fmt::Display) -> Error {
    Error::Config(e.to_string())
}

/// Runs `r`, telling `progress` about each event or line. The report counts what was
/// (or, dry, would be) queued, skipped and not queued; any not queued is exit 1.
///
/// `--failed` and `--suppressed` only move files within the queue: started as root, they
/// do so as the queue's owner (RUNAS, else EVENT_DIR's), so nothing planted in failed/,
/// held/ or history/ (a link to a root-only directory) is followed by root. `--backlog`
/// and `--index` read the storage dir, which may need root, and queue as the collector
/// does.
pub fn run(r: Request, progress: &mut dyn FnMut(Progress)) -> Result<Report, Error> {
    let config = r
        .config
        .as_deref()
        .map(ConfigFile::load_trusted)
        .transpose()
        .map_err(config_error)?;
    let queue_dir =
        crate::config::queue_dir(r.queue.clone(), config.as_ref()).map_err(config_error)?;
    if let Some(why) = crate::queue::not_a_queue(&queue_dir) {
        return Err(Error::Config(why));
    }
    if matches!(r.source, Source::Failed { .. } | Source::Suppressed { .. }) {
        crate::privilege::drop_for_config(config.as_ref(), &queue_dir).map_err(Error::Config)?;
    }
    // --failed and --suppressed skip what the queue holds or delivered.
    let known = || {
        KnownEvents::load(&queue_dir).map_err(|e| {
            Error::Failed(format!(
                "cannot read the queue {}: {e}",
                queue_dir.display()
            ))
        })
    };
    let result = match &r.source {
        Source::Failed {
            names,
            unique_ids,
            all,
        } => {
            let chosen = Chosen {
                names,
                unique_ids,
                all: *all,
            };
            failed(&queue_dir, known()?, &chosen, &r, progress)
        }
        Source::Suppressed { since, unique_ids } => {
            suppressed(&queue_dir, &known()?, *since, unique_ids, &r, progress)
        }
        Source::Backlog | Source::Index { .. } => {
            let settings = CollectorSettings::resolve(
                config.as_ref(),
                CollectorOverrides {
                    queue_dir: Some(queue_dir.clone()),
                    storage_dir: r.storage_dir.clone(),
                    state_dir: r.state_dir.clone(),
                    ..CollectorOverrides::default()
                },
            )
            .map_err(config_error)?;
            let mut lines = LineRequeuer::new(settings, r.dry_run, r.force)
                .map_err(|e| Error::Failed(format!("{}: {e}", queue_dir.display())))?;
            match &r.source {
                Source::Index { files, filter } => index(files, filter, &mut lines, progress),
                _ => backlog(&mut lines, progress),
            }
        }
    };
    result.map_err(Error::Failed)
}

/// Which entries of failed/ `--failed` takes.
struct Chosen<'a> {
    names: &'a [String],
    unique_ids: &'a [String],
    all: bool,
}

fn failed(
    queue_dir: &Path,
    mut known: KnownEvents,
    c: &Chosen,
    r: &Request,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, String> {
    let entries = failed_entries(queue_dir).map_err(|e| in_queue(queue_dir, "failed", &e))?;
    let mut report = Report::default();
    for name in c.names {
        if !entries.iter().any(|e| &e.file_name == name) {
            progress(Progress::Problem(&format!("{name}: not in failed/")));
            report.failed += 1;
        }
    }
    let chosen: Vec<_> = entries
        .iter()
        .filter(|e| {
            c.all
                || c.names.contains(&e.file_name)
                || (!c.unique_ids.is_empty()
                    && e.unique_id(queue_dir)
                        .is_some_and(|id| c.unique_ids.contains(&id)))
        })
        .collect();
    if !c.unique_ids.is_empty() && chosen.is_empty() {
        progress(Progress::Problem(
            "no entry in failed/ has the unique id(s) given",
        ));
        report.failed += 1;
    }
    let mut queue = Queue::open(queue_dir).map_err(|e| format!("{}: {e}", queue_dir.display()))?;
    for e in chosen {
        let outcome = requeue_failed(&mut queue, e, &mut known, r.dry_run, r.force);
        let what = format!(
            "failed/{} ({})",
            e.file_name,
            e.reason.as_deref().unwrap_or("no reason file")
        );
        progress(Progress::Outcome {
            what: &what,
            outcome: &outcome,
        });
        report.count(&outcome);
    }
    Ok(report)
}

fn suppressed(
    queue_dir: &Path,
    known: &KnownEvents,
    since: Option<DateTime<FixedOffset>>,
    unique_ids: &[String],
    r: &Request,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, String> {
    let held = suppressed_entries(queue_dir, since).map_err(|e| in_queue(queue_dir, "held", &e))?;
    let mut queue = Queue::open(queue_dir).map_err(|e| format!("{}: {e}", queue_dir.display()))?;
    let mut report = Report::default();
    for (entry, id) in held {
        if !unique_ids.is_empty() && !unique_ids.contains(&id) {
            continue;
        }
        let outcome = requeue_suppressed(&mut queue, &entry, &id, known, r.dry_run, r.force);
        progress(Progress::Outcome {
            what: &format!("held/{entry} (unique id {id})"),
            outcome: &outcome,
        });
        report.count(&outcome);
    }
    Ok(report)
}

fn backlog(lines: &mut LineRequeuer, progress: &mut dyn FnMut(Progress)) -> Result<Report, String> {
    progress(Progress::Start {
        what: "backlog",
        size: None,
    });
    requeue_backlog(lines, &mut |rec| {
        let line = String::from_utf8_lossy(rec.raw);
        progress(Progress::Outcome {
            what: &format!("backlog line ({}): {}", rec.reason_before, line.trim_end()),
            outcome: rec.outcome,
        });
        progress(Progress::Tick(None));
    })
    .map_err(|e| e.to_string())
}

fn index(
    files: &[PathBuf],
    filter: &LineFilter,
    lines: &mut LineRequeuer,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, String> {
    let mut total = Report::default();
    for file in files {
        progress(Progress::Start {
            what: &file.display().to_string(),
            size: std::fs::metadata(file).map(|m| m.len()).ok(),
        });
        let report = requeue_index_file(file, filter, lines, &mut |l| {
            if !matches!(l.outcome, Outcome::Filtered) {
                progress(Progress::Outcome {
                    what: &format!("{}:{}", file.display(), l.line_no),
                    outcome: l.outcome,
                });
            }
            progress(Progress::Tick(Some(l.read)));
        })
        .map_err(|e| e.to_string())?;
        progress(Progress::Done);
        total.add(&report);
    }
    Ok(total)
}

/// An error met in the queue's `area`, naming where unless it does already.
fn in_queue(queue_dir: &Path, area: &str, e: &std::io::Error) -> String {
    let text = e.to_string();
    if text.contains(&queue_dir.display().to_string()) {
        text
    } else {
        format!("{}/{area}: {text}", queue_dir.display())
    }
}
