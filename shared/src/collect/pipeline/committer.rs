//! The committer thread ("worker"): the last step.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::{spawn, Shared, Tracked};

/// The committer: commits what the steps before it handed on. It never stops early: a
/// line abandon() took, it finds gone and skips.
pub(super) fn spawn_committer<T: Send + 'static>(
    shared: &Arc<Shared<T>>,
    checked: Receiver<Vec<Tracked<T>>>,
) -> std::thread::JoinHandle<()> {
    let shared = shared.clone();
    spawn("worker", move || {
        for item in checked.iter().flatten() {
            shared.commit(item);
            shared.after_hasher.fetch_sub(1, Ordering::SeqCst);
            shared.after_checker.fetch_sub(1, Ordering::SeqCst);
        }
    })
}
