//! The overflow spool: lines the worker could not take at once wait here on disk.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{read_line, InputLine};

/// How often the checker looks at the spool while the spill thread is still writing
/// lines to it; otherwise it takes the spool as soon as the work channel is empty.
pub(crate) const SPOOL_POLL: std::time::Duration = std::time::Duration::from_millis(50);
use crate::state::{StateDir, SPOOL_PREFIX};

/// Prefix a spool that is not one (a link, a FIFO, a file not ours) is renamed with.
const REFUSED_PREFIX: &str = "refused.";

/// Overflow lines of one collector process: `spool.<pid>` in the state dir, raw index
/// lines, appended by the spill thread and drained by the checker as soon as no newer
/// line waits for it. A spool left by a dead process is drained at start-up, so a
/// crash loses nothing; lines of it whose event the collector recorded as queued (the
/// dead process was draining it) are not queued twice.
pub(crate) struct Spool {
    pub(crate) dir: PathBuf,
    pub(crate) path: PathBuf,
    /// Held while appending and while taking the file away, so no append is lost.
    lock: Arc<std::sync::Mutex<()>>,
}

impl Spool {
    pub(crate) fn new(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
            path: dir.join(format!("{SPOOL_PREFIX}{}", std::process::id())),
            lock: Arc::new(std::sync::Mutex::new(())),
        }
    }

    pub(crate) fn append(&self, lines: &[InputLine]) -> io::Result<()> {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l.bytes.strip_suffix(b"\n").unwrap_or(&l.bytes));
            out.push(b'\n');
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut f =
            crate::safefs::Open::append(crate::safefs::Keeper::ThisProcess).at(&self.path)?;
        crate::safefs::append_whole(&mut f, &out, true)
    }

    /// Takes this process's spool (if any) and feeds its lines to `handle`. Fails when
    /// the spool is there but cannot be taken; its lines then stay in it.
    pub(crate) fn drain(&self, handle: &mut dyn FnMut(&InputLine)) -> io::Result<()> {
        let taken = self
            .dir
            .join(format!("{SPOOL_PREFIX}{}.draining", std::process::id()));
        {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            match std::fs::rename(&self.path, &taken) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot take the spool {}: {e}", self.path.display()),
                    ))
                }
            }
        }
        drain_file(&taken, handle);
        Ok(())
    }

    /// Drains spools that dead processes left behind (including an earlier process with
    /// this same pid), skipping lines whose event the state dir records as queued.
    pub(crate) fn recover(&self, handle: &mut dyn FnMut(&InputLine)) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut known: Option<std::collections::HashSet<String>> = None;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SPOOL_PREFIX)) else {
                continue;
            };
            let pid: u32 = match rest.split('.').next().and_then(|p| p.parse().ok()) {
                Some(p) => p,
                None => continue,
            };
            let alive = pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists();
            if alive {
                continue;
            }
            let path = entry.path();
            let taken = self.dir.join(format!(
                "{SPOOL_PREFIX}{}.recovered-{pid}-{}",
                std::process::id(),
                rest.len()
            ));
            if std::fs::rename(&path, &taken).is_ok() {
                log::warn!("draining {} left by process {pid}", path.display());
                let known = known.get_or_insert_with(|| {
                    StateDir::at(&self.dir).queued_ids().unwrap_or_else(|e| {
                        log::warn!(
                            "cannot read what was queued ({e}): lines of {} may be queued twice",
                            path.display()
                        );
                        Default::default()
                    })
                });
                drain_file(&taken, &mut |line| {
                    let id = crate::index::parse_index_line(&line.bytes)
                        .ok()
                        .map(|l| l.unique_id);
                    match id.filter(|id| known.contains(id)) {
                        Some(id) => log::info!(
                            "{}: not queued twice: unique id {id} was queued before",
                            taken.display()
                        ),
                        None => handle(line),
                    }
                });
            }
        }
    }
}

/// Feeds the lines of the spool at `path` to `handle` and removes it. The state dir is
/// root's alone, so nothing can be planted there; the spool is opened checked all the
/// same ([`crate::safefs`]: a link or FIFO is refused and set aside under a name no later
/// start takes up again), as a second line of defence.
fn drain_file(path: &Path, handle: &mut dyn FnMut(&InputLine)) {
    match crate::safefs::Open::read(crate::safefs::Keeper::ThisProcess).at(path) {
        Ok(f) => {
            let mut r = io::BufReader::new(f);
            loop {
                match read_line(&mut r) {
                    Ok(Some(line)) => handle(&line),
                    Ok(None) => break,
                    Err(e) => {
                        log::error!(
                            "reading the spool {} failed: {e}; it is kept",
                            path.display()
                        );
                        return;
                    }
                }
            }
            if let Err(e) = std::fs::remove_file(path) {
                log::error!("cannot remove the drained spool {}: {e}", path.display());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            let aside = path.with_file_name(format!(
                "{REFUSED_PREFIX}{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            ));
            let moved = std::fs::rename(path, &aside);
            log::error!(
                "not reading the spool: {e}; {}",
                match moved {
                    Ok(()) => format!("set aside as {}", aside.display()),
                    Err(e) => format!("cannot set it aside: {e}"),
                }
            );
        }
        Err(e) => log::error!("cannot open the spool {}: {e}", path.display()),
    }
}
