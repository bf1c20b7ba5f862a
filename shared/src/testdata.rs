//! Event files for the unit tests.

/// A small native-format event (CRS-style deny) with unique id `id` and response
/// status `status`.
pub fn event_text(id: &str, status: u16) -> String {
    format!(
        "--a1b2c3d4-A--\n[28/Nov/2026:02:14:31.009836 +0000] {id} 127.0.0.1 50000 127.0.0.1 80\n\
         --a1b2c3d4-B--\nGET /?q=x HTTP/1.1\nHost: lab.example\n\n\
         --a1b2c3d4-F--\nHTTP/1.1 {status} Forbidden\n\n\
         --a1b2c3d4-H--\nMessage: Access denied with code {status} (phase 2). [id \"942100\"] [msg \"SQL Injection\"] [severity \"CRITICAL\"]\n\n\
         --a1b2c3d4-Z--\n\n"
    )
}

/// The queue entries (`modsec.log.*`) in `queue`.
pub fn entries_in(queue: &std::path::Path) -> usize {
    std::fs::read_dir(queue)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(crate::queue::ENTRY_PREFIX)
        })
        .count()
}

/// Polls `cond` until it holds; fails the test naming `what` after 20 s.
pub fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The web server's stand-in in tests run as root: `nobody`.
pub const WEB_UID: u32 = 65534;

/// Gives an event file a test wrote, and the directory holding it, to [`WEB_UID`] when
/// the tests run as root: the collector never queues an event owned by root (ModSecurity
/// writes them as the web server's user), and wants the directory's owner to own it.
pub fn give_to_web_user(path: &std::path::Path) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    for p in [Some(path), path.parent()].into_iter().flatten() {
        std::os::unix::fs::chown(p, Some(WEB_UID), Some(WEB_UID)).unwrap();
    }
}

/// Set (to anything but empty or `0`) by `.ci/run`: a test that cannot run here fails
/// instead of skipping. The end-to-end tests' `skip_or_fail` reads the same variable.
pub const REQUIRE_ENV: &str = "MODSEC2SGUIL_REQUIRE_ALL";

/// Call when a unit test cannot run here (`why`: what is missing): a loud skip on a
/// developer machine, a failure when [`REQUIRE_ENV`] is set, as the end-to-end tests'
/// `skip_or_fail` does. The one way a unit test may return early: `tests/skips.rs`
/// fails on any other.
pub fn skip_or_fail(test: &str, why: &str) {
    let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "{test}: cannot run: {why} ({REQUIRE_ENV} is set, so this is a failure)"
    );
    eprintln!("\n*** SKIPPED {test}: {why}\n*** (set {REQUIRE_ENV}=1 to make this a failure; .ci/run does)\n");
}

/// Whether the tests run as root; if not, [`skip_or_fail`] for `test`.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip_or_fail(test, "needs root");
    false
}
