//! What a running program is told from outside, as messages: the binaries turn their
//! signals into [`Control`]s on a channel ([`signals`]), and the loops that run them
//! (`collect::run`, `ship::run`) take the channel, so a test drives those loops with a
//! channel of its own, no process or signal needed (tokio's mini-redis passes its
//! server a shutdown signal the same way).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

/// A request to a running program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// SIGTERM or SIGINT: finish and stop (the collector counts them: a second one
    /// stops it at once).
    Stop,
    /// SIGHUP: reload the configuration (the shipper) or reopen the index file (the
    /// collector).
    Reload,
}

/// A channel that receives a [`Control`] for each SIGTERM, SIGINT and SIGHUP from now
/// on. Every SIGTERM and SIGINT gives one [`Control::Stop`], even two that arrive
/// together (the handler only counts, which is async-signal-safe; a thread turns the
/// count into messages). Errors are logged: a program without its signals still runs.
pub fn signals() -> Receiver<Control> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let (tx, rx) = crossbeam_channel::unbounded();
    let stops = Arc::new(AtomicUsize::new(0));
    for sig in [SIGTERM, SIGINT] {
        let stops = stops.clone();
        // SAFETY: the handler only does an atomic add, which is async-signal-safe.
        let registered = unsafe {
            signal_hook::low_level::register(sig, move || {
                stops.fetch_add(1, Ordering::SeqCst);
            })
        };
        if let Err(e) = registered {
            log::error!("cannot handle signal {sig}: {e}");
        }
    }
    match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(mut signals) => {
            let spawned = std::thread::Builder::new()
                .name("signals".into())
                .spawn(move || forward(&mut signals, &stops, &tx));
            if let Err(e) = spawned {
                log::error!("cannot start the signal thread: {e}");
            }
        }
        Err(e) => log::error!("cannot wait for signals: {e}"),
    }
    rx
}

fn forward(
    signals: &mut signal_hook::iterator::Signals,
    stops: &AtomicUsize,
    tx: &Sender<Control>,
) {
    let mut sent = 0;
    for sig in signals.forever() {
        if sig == signal_hook::consts::SIGHUP && tx.send(Control::Reload).is_err() {
            return;
        }
        // Coalesced deliveries are caught up from the count.
        let now = stops.load(Ordering::SeqCst);
        while sent < now {
            if tx.send(Control::Stop).is_err() {
                return;
            }
            sent += 1;
        }
    }
}
