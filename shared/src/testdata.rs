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
