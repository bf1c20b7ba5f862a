//! Processes the tests start: signals by PID, waiting with a limit.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Sends `sig` (`TERM`, `HUP`, `USR1`…; a leading `-` is accepted) to `pid`. Whether it
/// arrived is not checked: the process may have exited already.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{}", sig.trim_start_matches('-')))
        .arg(pid.to_string())
        .status();
}

/// Waits up to `limit` for `child` to exit and returns its exit code (`None` if a
/// signal ended it). One still running then is killed, and `None` returned.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` until it holds; fails the test naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child killed (by its PID) and reaped when dropped: one a failing test or bench
/// leaves running would hold the test's pipes and the queue.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sets `resource` (`libc::RLIMIT_AS`, `RLIMIT_NOFILE`…) to `value` in the child `cmd`
/// starts, before it runs the program.
pub fn limit(cmd: &mut std::process::Command, resource: libc::__rlimit_resource_t, value: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
