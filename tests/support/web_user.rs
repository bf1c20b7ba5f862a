//! Event files as the web server writes them: owned by its user, in a directory of its
//! own.
//!
//! The tests run as root, but the collector (and `requeue --backlog/--index`) never
//! queue an event file owned by root: ModSecurity writes them as the web server's user,
//! and without EVENT_OWNER the owner of the directory holding an event is the one
//! accepted. So an event a test writes, or a recorded storage dir it copies, is given
//! to [`WEB_UID`] here. (Events the real Apache or nginx write are www-data's already.)

use std::path::Path;

/// The web server's stand-in: `nobody`.
pub const WEB_UID: u32 = 65534;

/// Gives `path` and the directory holding it to [`WEB_UID`] (when run as root; as
/// another user the files are that user's already and are left alone).
pub fn give(path: &Path) {
    give_to(path, WEB_UID);
}

/// Gives `path` and the directory holding it to `uid` (when run as root): a web server
/// running as another user than [`WEB_UID`].
pub fn give_to(path: &Path, uid: u32) {
    if !is_root() {
        return;
    }
    for p in [Some(path), path.parent()].into_iter().flatten() {
        std::os::unix::fs::chown(p, Some(uid), Some(uid))
            .unwrap_or_else(|e| panic!("chown {} to {uid}: {e}", p.display()));
    }
}

/// Writes an event file at `path` (creating its directories) as the web server would:
/// the file and the directory holding it are [`WEB_UID`]'s.
pub fn write_event(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    give(path);
}

/// Gives every file and directory below `dir`, and `dir` itself, to [`WEB_UID`] (a
/// recorded storage dir copied with [`crate::copy_tree`]).
pub fn give_tree(dir: &Path) {
    if !is_root() {
        return;
    }
    let chown = |p: &Path| {
        std::os::unix::fs::chown(p, Some(WEB_UID), Some(WEB_UID))
            .unwrap_or_else(|e| panic!("chown {} to {WEB_UID}: {e}", p.display()))
    };
    chown(dir);
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            give_tree(&p);
        } else {
            chown(&p);
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}
