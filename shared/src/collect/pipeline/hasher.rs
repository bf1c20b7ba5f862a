//! The hasher thread: the verify step, between the checker and the committer.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::handover::Handover;
use super::{lock, spawn, Shared, Tracked};

/// The hasher: the verify step, committing a line itself when the committer has nothing.
pub(super) fn spawn_hasher<T: Send + 'static>(
    shared: &Arc<Shared<T>>,
    opened: Receiver<Vec<Tracked<T>>>,
    checked: Sender<Vec<Tracked<T>>>,
) -> std::thread::JoinHandle<()> {
    let shared = shared.clone();
    spawn("hasher", move || {
        let verify = shared.verify.as_ref().expect("a hasher has a verify step");
        let mut out = Handover {
            tx: checked,
            batch: Vec::new(),
        };
        'batches: for batch in opened.iter() {
            let mut items = batch.into_iter().peekable();
            while let Some((seq, item)) = items.next() {
                if shared.stopped() {
                    break 'batches; // what is left is in the ledger
                }
                let done = (lock(verify))(item);
                let waiting = items.peek().is_some() || !opened.is_empty();
                if !waiting && shared.after_hasher.load(Ordering::SeqCst) == 0 {
                    shared.commit((seq, done));
                    shared.after_checker.fetch_sub(1, Ordering::SeqCst);
                } else {
                    shared.after_hasher.fetch_add(1, Ordering::SeqCst);
                    out.hand((seq, done), waiting);
                }
            }
        }
        out.flush();
    })
}
