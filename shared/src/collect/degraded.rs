//! Apache's pipe as the collector reads it: [`stdin`] queues with [`super::run::piped`],
//! and, when there is no queue to use, [`degraded`] keeps the lines moving.
//!
//! Without usable settings there is no queue and no backlog. Exiting would make Apache
//! restart the collector every second while its children block on the full pipe, so
//! the degraded mode keeps reading: it appends each line to the index file if one is
//! known, and logs every line in full.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::CollectorSettings;
use crate::control::Control;
use crate::exit::Exit;

/// Queues what Apache pipes on standard input until it closes the pipe (exit 0), or,
/// if the queue cannot be opened, reads on degraded (exit 2).
pub fn stdin(settings: CollectorSettings, control: &Receiver<Control>) -> Exit {
    // In the log only: `apachectl configtest` starts the collector too (stdin closes at
    // once), and the admin's terminal is no place for it.
    log::info!(
        target: crate::logging::LOG_ONLY,
        "started: storage dir {}, queue {}, index file {}, {:?}, md5 {}",
        settings.storage_dir.display(),
        settings.queue_dir.display(),
        settings
            .index_file
            .as_ref()
            .map_or("none".into(), |p| p.display().to_string()),
        settings.link_mode,
        if settings.verify_md5 { "on" } else { "off" }
    );
    // Slow input gathers between reads only where the pipe has room for a burst
    // meanwhile.
    let gather = {
        use std::os::fd::AsFd;
        match super::enlarge_pipe(std::io::stdin().as_fd()) {
            // The kernel makes it at least as large as asked, or refuses.
            Ok(n) => {
                log::debug!("standard input's pipe holds {n} bytes");
                Some(super::pipeline::GATHER)
            }
            Err(e) => {
                log::info!("cannot enlarge standard input's pipe ({e}); reading each line at once");
                None
            }
        }
    };
    let index = settings.index_file.clone();
    match super::run::piped(settings, std::io::stdin(), gather, control) {
        Ok(_) => Exit::Ok,
        Err(e) => degraded(&e.to_string(), index, std::io::stdin()),
    }
}

/// Reads `input` to its end without a queue (`why` there is none): each line is logged
/// in full and appended to the `index` file if one is known. Exit 2 ([`Exit::Degraded`]).
/// A program without settings logs through [`crate::logging::fallback`].
pub fn degraded(why: &str, index: Option<PathBuf>, input: impl Read) -> Exit {
    log::error!(
        "cannot queue events: {why}; reading on so Apache does not block, every line is logged"
    );
    // The index file is opened and written on a thread of its own, as in normal
    // operation: one that hangs must not stop this loop from reading. A line it cannot
    // take at once is in the log anyway.
    let (written_tx, written) = crossbeam_channel::bounded::<()>(1);
    let index = index.map(|p| {
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(1024);
        std::thread::spawn(move || {
            let mut f = super::index_file::IndexFile::new(&p);
            for line in rx {
                f.append(&line);
            }
            drop(f);
            let _ = written_tx.send(());
        });
        tx
    });
    let mut input = std::io::BufReader::new(input);
    loop {
        match super::read_line(&mut input) {
            Ok(Some(line)) => {
                log::error!(
                    "not queued ({why}): {}",
                    String::from_utf8_lossy(&line.bytes).trim_end()
                );
                if let Some(tx) = &index {
                    let _ = tx.try_send(line.bytes);
                }
            }
            Ok(None) => break,
            Err(e) => {
                log::error!("reading standard input failed: {e}");
                break;
            }
        }
    }
    // At the end of input: what the index file has not taken within a few seconds was
    // logged already.
    if let Some(tx) = index {
        drop(tx);
        let _ = written.recv_timeout(Duration::from_secs(5));
    }
    Exit::Degraded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_keeps_every_line_in_the_index_file_and_exits_2() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("index.log");
        let lines = "first line\nsecond line\nlast, unterminated";
        let code = degraded("no queue", Some(index.clone()), lines.as_bytes());
        assert_eq!(code, Exit::Degraded);
        let kept = std::fs::read_to_string(&index).unwrap();
        assert_eq!(
            kept.lines().collect::<Vec<_>>(),
            lines.lines().collect::<Vec<_>>()
        );
        assert_eq!(degraded("no queue", None, &b""[..]), Exit::Degraded);
    }
}
