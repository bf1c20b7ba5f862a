//! Who a root-run shipper command is, once it touches the queue (ARCHITECTURE.md, "What
//! root may touch").
//!
//! EVENT_DIR belongs to the shipper's user, the account an attacker who owns the web
//! server gets first. Whatever root opens, moves or parses in it could be a link, a FIFO
//! or a forged record that user planted. So `drain`, `run`, `requeue --failed` and
//! `status`, started as root, become the queue's owner before they open anything in it:
//! RUNAS when it is set, else the owner of EVENT_DIR itself (uid, and its primary group
//! from the password database). A queue root owns, without RUNAS, is root's own: nothing
//! to drop to. What they do before that (read the config, open their log, detach) is
//! root's alone.

use std::path::Path;

/// Who the command works on the queue as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    /// Not started as root: it stays who it is.
    NotRoot,
    /// Root, in a queue root owns (and no RUNAS): nothing of a lesser user there.
    Root,
    /// Root dropped for this uid and gid (groups: only that gid).
    Dropped { uid: u32, gid: u32 },
}

/// Why a command cannot become the queue's owner; its text says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    /// EVENT_DIR is missing or no directory (the text is [`crate::queue::not_a_queue`]'s).
    #[error("{0}")]
    NoQueue(String),
    /// The owner has no account, or the switch failed.
    #[error("{0}")]
    Cannot(String),
}

/// The account `queue_dir` is worked on as by a root-run command: `runas` (RUNAS) when
/// set, else the directory's owner with that user's primary group; `None` when that is
/// root. The directory is looked at by its configured path (root's to choose).
pub fn queue_account(
    runas: Option<(u32, u32)>,
    queue_dir: &Path,
) -> Result<Option<(u32, u32)>, DropError> {
    if let Some(account) = runas {
        return Ok((account.0 != 0).then_some(account));
    }
    use std::os::unix::fs::MetadataExt;
    if let Some(why) = crate::queue::not_a_queue(queue_dir) {
        return Err(DropError::NoQueue(why));
    }
    let meta = std::fs::metadata(queue_dir)
        .map_err(|e| DropError::NoQueue(format!("{}: {e}", queue_dir.display())))?;
    let uid = meta.uid();
    if uid == 0 {
        return Ok(None);
    }
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => Ok(Some((uid, user.gid.as_raw()))),
        Ok(None) | Err(_) => Err(DropError::Cannot(format!(
            "{} (EVENT_DIR) belongs to uid {uid}, which has no account (getpwuid): root will \
             not work in a queue another user owns, and cannot become that user; set RUNAS \
             in the config to the shipper's user, or chown the queue to it",
            queue_dir.display()
        ))),
    }
}

/// [`drop_to_queue_owner`] with the config's RUNAS (none without a config): what the
/// operator commands (`status`, `requeue --failed`/`--suppressed`) do before they read
/// the queue. Errors said for people: a bad RUNAS, or an owner root cannot become.
pub fn drop_for_config(
    config: Option<&crate::config::ConfigFile>,
    queue_dir: &Path,
) -> Result<(), String> {
    let runas = config
        .map(|c| c.owner("RUNAS"))
        .transpose()
        .map_err(|e| e.to_string())?
        .flatten();
    drop_to_queue_owner(runas, queue_dir)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Started as root, becomes the queue's owner ([`queue_account`]) before anything in
/// `queue_dir` is opened. Not root: only warns when RUNAS names someone else.
pub fn drop_to_queue_owner(
    runas: Option<(u32, u32)>,
    queue_dir: &Path,
) -> Result<Account, DropError> {
    if !nix::unistd::geteuid().is_root() {
        let me = nix::unistd::getuid().as_raw();
        if let Some((uid, _)) = runas.filter(|&(uid, _)| uid != me) {
            log::warn!("RUNAS asks for uid {uid}, but we run as uid {me} and cannot change");
        }
        return Ok(Account::NotRoot);
    }
    let Some((uid, gid)) = queue_account(runas, queue_dir)? else {
        return Ok(Account::Root);
    };
    let whose = if runas.is_some() {
        "RUNAS".to_string()
    } else {
        format!("the owner of {} (EVENT_DIR)", queue_dir.display())
    };
    drop_to(uid, gid).map_err(|e| {
        DropError::Cannot(format!(
            "cannot switch from root to uid {uid}, gid {gid} ({whose}) before touching the \
             queue: {e}; run the command as that user (e.g. `sudo -u '#{uid}' …`), or give the \
             process the right to change its user (CAP_SETUID, CAP_SETGID)"
        ))
    })?;
    log::debug!("working on the queue as uid {uid}, gid {gid} ({whose})");
    Ok(Account::Dropped { uid, gid })
}

/// Drops root for `uid` and `gid` for good: supplementary groups, then gid, then uid
/// (real, effective and saved), and checks that root cannot be had back.
pub fn drop_to(uid: u32, gid: u32) -> Result<(), String> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    setgroups(&[g]).map_err(|e| format!("setgroups: {e}"))?;
    setresgid(g, g, g).map_err(|e| format!("setresgid {gid}: {e}"))?;
    setresuid(u, u, u).map_err(|e| format!("setresuid {uid}: {e}"))?;
    if uid != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err("root could be regained after the switch".into());
    }
    Ok(())
}

/// The account a root-run command that parses files someone else wrote (`show`) works
/// as when no queue says whose: `nobody`, else uid and gid 65534 (the kernel's overflow
/// ids).
pub fn nobody() -> (u32, u32) {
    match nix::unistd::User::from_name("nobody") {
        Ok(Some(u)) => (u.uid.as_raw(), u.gid.as_raw()),
        _ => (65534, 65534),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_is_runas_else_the_queues_owner_and_root_keeps_its_own_queue() {
        if !crate::testdata::root_or_skip(
            "the_account_is_runas_else_the_queues_owner_and_root_keeps_its_own_queue",
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path();
        // Root's queue, no RUNAS: nothing to drop to. RUNAS wins, unless it is root.
        assert_eq!(queue_account(None, q).unwrap(), None);
        assert_eq!(queue_account(Some((7, 8)), q).unwrap(), Some((7, 8)));
        assert_eq!(queue_account(Some((0, 8)), q).unwrap(), None);
        // Another user's queue: that user and their primary group.
        let (uid, gid) = nobody();
        std::os::unix::fs::chown(q, Some(uid), Some(12345)).unwrap();
        assert_eq!(queue_account(None, q).unwrap(), Some((uid, gid)));
        // An owner without an account: refused, saying what to do.
        std::os::unix::fs::chown(q, Some(54321), None).unwrap();
        let e = queue_account(None, q).unwrap_err().to_string();
        assert!(
            e.contains("belongs to uid 54321") && e.contains("set RUNAS"),
            "{e}"
        );
        // No queue: the one message every command gives.
        let e = queue_account(None, &q.join("missing")).unwrap_err();
        assert!(matches!(e, DropError::NoQueue(_)), "{e}");
        assert!(
            e.to_string()
                .contains("the queue (EVENT_DIR) does not exist"),
            "{e}"
        );
    }
}
