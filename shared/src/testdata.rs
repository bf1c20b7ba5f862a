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
