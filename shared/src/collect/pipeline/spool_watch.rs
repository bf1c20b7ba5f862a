//! When the checker takes its spool, and after a failure, when it tries again.

use std::sync::atomic::Ordering;

use super::checker::CheckStep;
use super::Shared;
use crate::collect::spool::SPOOL_POLL;

/// When the checker could last not take its spool.
pub(super) struct SpoolWatch {
    pub(super) failed_at: Option<std::time::Instant>,
}

impl SpoolWatch {
    /// Whether the spool holds lines or is about to.
    pub(super) fn pending<T>(&self, shared: &Shared<T>) -> bool {
        shared.spill_outstanding.load(Ordering::SeqCst) > 0 || shared.spooled.load(Ordering::SeqCst)
    }

    /// Takes the spool into `step` when it has lines and, after a failure, SPOOL_POLL
    /// has passed. True when it tried.
    pub(super) fn drain_into<T>(&mut self, step: &mut CheckStep<'_, T>) -> bool {
        let shared = step.shared;
        if self.failed_at.is_some_and(|t| t.elapsed() < SPOOL_POLL)
            || !shared.spooled.swap(false, Ordering::SeqCst)
        {
            return false;
        }
        match shared.spool.drain(&mut |line| step.spooled(line)) {
            Ok(()) if self.failed_at.take().is_some() => log::info!("the spool is taken again"),
            Ok(()) => {}
            Err(e) => {
                if self.failed_at.is_none() {
                    log::error!("{e}; trying again every {SPOOL_POLL:?}");
                }
                // Its lines are still there: the timed wait comes back for them.
                shared.spooled.store(true, Ordering::SeqCst);
                self.failed_at = Some(std::time::Instant::now());
            }
        }
        true
    }
}
