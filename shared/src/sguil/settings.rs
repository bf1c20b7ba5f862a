//! The Sguil side of the config file: where sguild is, how to check it, who we are.
//!
//! TLS verification is on unless switched off: with TLS (the default, as every sguild
//! since 0.7 requires) one of TLS_CA_FILE or TLS_PIN_SHA256 must say which certificate
//! to trust, and the error says how to get either.

use std::time::Duration;

use super::conn::{parse_pin, ConnectSettings, TlsMode};
use crate::config::{ConfigError, ConfigFile};

/// sguild's agent port.
pub const DEFAULT_PORT: u16 = 7736;
/// Events in flight by default: one (stop-and-wait), as Sguil's own agents do. sguild
/// 1.0.0 (tcl-tls) wedges — 100% CPU, no agent served until it is restarted — when an
/// agent dies (SIGKILL, OOM, power) with several event lines of a window on their way
/// (reproduced with windows of 8 and 32 at the first kill; none in 24 kills with 1 and
/// 2). Pipelining gains little against a real sguild (758 vs 711 events/s measured), so
/// it is opt-in: SEND_WINDOW up to 1024 for a server known to cope (the test server).
pub const DEFAULT_SEND_WINDOW: usize = 1;
/// Sguil's agents ping every 5 minutes (PING_DELAY 300000 ms).
pub const DEFAULT_PING_DELAY: Duration = Duration::from_secs(300);
/// How long a reply may take before the connection is taken for lost. sguild answers in
/// about a millisecond, but the first event of a day creates five tables (~40 ms) and a
/// loaded server can fall far behind.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything needed to talk to sguild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SguilSettings {
    pub connect: ConnectSettings,
    pub agent_type: String,
    pub hostname: String,
    pub net_group: String,
    pub send_window: usize,
    pub ping_delay: Duration,
    pub reply_timeout: Duration,
}

const HOW_TO_TRUST: &str = "set TLS_CA_FILE to sguild's certificate (its certs/cert.pem) or TLS_PIN_SHA256 to its fingerprint \
     (openssl x509 -noout -fingerprint -sha256 -in cert.pem); TLS_VERIFY 0 turns checking off";

impl SguilSettings {
    /// Reads SERVER_HOST, SERVER_PORT, OPENSSL, TLS_CA_FILE, TLS_PIN_SHA256, TLS_VERIFY,
    /// SGUIL_VERSION, HOSTNAME, NET_GROUP, SENSOR_TYPE, SEND_WINDOW, PING_DELAY (ms) and
    /// REPLY_TIMEOUT (s). Errors name the file, line and key.
    pub fn resolve(c: &ConfigFile) -> Result<SguilSettings, ConfigError> {
        let host = c.required("SERVER_HOST")?;
        let port = c
            .number("SERVER_PORT", 1..=65535)?
            .map_or(DEFAULT_PORT, |p| p as u16);
        let openssl = c.bool("OPENSSL")?.unwrap_or(true);
        let verify = c.bool("TLS_VERIFY")?.unwrap_or(true);
        let pin = match c.get("TLS_PIN_SHA256").filter(|s| !s.value.is_empty()) {
            Some(s) => Some(
                parse_pin(&s.value)
                    .ok_or_else(|| c.bad(s, "expected 64 hex digits (colons allowed)"))?,
            ),
            None => None,
        };
        let ca = c.abs_path("TLS_CA_FILE")?;
        if !verify {
            // A certificate to check and an order not to check anything: whichever one
            // the operator meant, guessing is wrong (the check silently off is the worse
            // guess, so neither is taken).
            let off = c.get("TLS_VERIFY").map_or(0, |s| s.line);
            for key in ["TLS_PIN_SHA256", "TLS_CA_FILE"] {
                if let Some(s) = c.get(key).filter(|s| !s.value.is_empty()) {
                    return Err(c.conflict_at(
                        off,
                        format!(
                            "TLS_VERIFY 0 turns off the certificate check that {key} \
                         (line {line}) asks for: remove one of them",
                            line = s.line
                        ),
                    ));
                }
            }
        }
        let tls = match (openssl, verify, pin, ca) {
            (false, ..) => TlsMode::Plaintext,
            (true, false, ..) => TlsMode::NoVerify,
            (true, true, Some(pin), _) => TlsMode::PinSha256(pin),
            (true, true, None, Some(ca)) => TlsMode::CaFile(ca),
            (true, true, None, None) => {
                return Err(c.conflict(format!(
                    "TLS is on and nothing says which certificate to trust: {HOW_TO_TRUST}"
                )))
            }
        };
        let hostname = c.required("HOSTNAME")?;
        check_hostname(c, &hostname)?;
        let net_group = c.required("NET_GROUP")?;
        let agent_type = c
            .string("SENSOR_TYPE")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "modsecurity".into());
        let send_window = c
            .number("SEND_WINDOW", 1..=1024)?
            .map_or(DEFAULT_SEND_WINDOW, |w| w as usize);
        let ping_delay = c
            .number("PING_DELAY", 1000..=86_400_000)?
            .map_or(DEFAULT_PING_DELAY, Duration::from_millis);
        let reply_timeout = c
            .number("REPLY_TIMEOUT", 1..=3600)?
            .map_or(DEFAULT_REPLY_TIMEOUT, Duration::from_secs);
        Ok(SguilSettings {
            connect: ConnectSettings {
                host,
                port,
                tls,
                expect_version: c.string("SGUIL_VERSION").filter(|v| !v.is_empty()),
                connect_timeout: Duration::from_secs(10),
                handshake_timeout: Duration::from_secs(10),
            },
            agent_type,
            hostname,
            net_group,
            send_window,
            ping_delay,
            reply_timeout,
        })
    }
}

/// Where the snort_agent is (OUTPUT barnyard) and who we are to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarnyardSettings {
    pub host: String,
    pub port: u16,
    /// The sensor name: snort_agent's own HOSTNAME (sguild names the tables after it).
    pub hostname: String,
    pub send_window: usize,
    pub ping_delay: Duration,
    pub reply_timeout: Duration,
}

impl BarnyardSettings {
    /// Reads AGENT_HOST, AGENT_PORT, HOSTNAME, SEND_WINDOW (default 32), PING_DELAY (ms)
    /// and REPLY_TIMEOUT (s, default barnyard2's 15). Errors name the file, line and key.
    pub fn resolve(c: &ConfigFile) -> Result<BarnyardSettings, ConfigError> {
        use super::barnyard::{
            DEFAULT_AGENT_HOST, DEFAULT_AGENT_PORT, DEFAULT_REPLY_TIMEOUT,
            DEFAULT_SEND_WINDOW as DEFAULT_BARNYARD_WINDOW,
        };
        let host = c
            .string("AGENT_HOST")
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_AGENT_HOST.into());
        let port = c
            .number("AGENT_PORT", 1..=65535)?
            .map_or(DEFAULT_AGENT_PORT, |p| p as u16);
        let hostname = c
            .string("HOSTNAME")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                c.missing(
                    "HOSTNAME",
                    Some("OUTPUT barnyard: it must be the snort_agent's HOSTNAME"),
                )
            })?;
        check_hostname(c, &hostname)?;
        Ok(BarnyardSettings {
            host,
            port,
            hostname,
            send_window: c
                .number("SEND_WINDOW", 1..=1024)?
                .map_or(DEFAULT_BARNYARD_WINDOW, |w| w as usize),
            ping_delay: c
                .number("PING_DELAY", 1000..=86_400_000)?
                .map_or(DEFAULT_PING_DELAY, Duration::from_millis),
            reply_timeout: c
                .number("REPLY_TIMEOUT", 1..=3600)?
                .map_or(DEFAULT_REPLY_TIMEOUT, Duration::from_secs),
        })
    }
}

/// HOSTNAME names sguild's per-day tables.
fn check_hostname(c: &ConfigFile, hostname: &str) -> Result<(), ConfigError> {
    let ok = hostname.len() <= super::wire::MAX_HOSTNAME_LEN
        && hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        return Ok(());
    }
    let s = c.get("HOSTNAME").expect("HOSTNAME is set");
    Err(c.bad(
        s,
        "sguild names tables after it: at most 47 characters of [A-Za-z0-9._-]",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<SguilSettings, String> {
        SguilSettings::resolve(&ConfigFile::parse(text, Path::new("/etc/m.conf")).unwrap())
            .map_err(|e| e.to_string())
    }

    const BASE: &str = "set SERVER_HOST 127.0.0.1\nset HOSTNAME websrv-a\nset NET_GROUP webfarm\n";

    #[test]
    fn a_modsec2sguil_0_8_config_with_a_pin() {
        let s = parse(&format!("{BASE}set SERVER_PORT 7736\nset OPENSSL 1\nset TLS_PIN_SHA256 {}\nset PING_DELAY 300000\nset SENSOR_TYPE modsecurity\n", "AB:".repeat(31) + "AB")).unwrap();
        assert_eq!(s.connect.tls, TlsMode::PinSha256([0xab; 32]));
        assert_eq!(
            (s.connect.port, s.send_window, s.ping_delay),
            (7736, 1, Duration::from_secs(300))
        );
        assert_eq!(
            (
                s.agent_type.as_str(),
                s.hostname.as_str(),
                s.net_group.as_str()
            ),
            ("modsecurity", "websrv-a", "webfarm")
        );
    }

    #[test]
    fn tls_modes() {
        assert_eq!(
            parse(&format!("{BASE}set OPENSSL 0\n"))
                .unwrap()
                .connect
                .tls,
            TlsMode::Plaintext
        );
        assert_eq!(
            parse(&format!("{BASE}set TLS_VERIFY 0\n"))
                .unwrap()
                .connect
                .tls,
            TlsMode::NoVerify
        );
        assert_eq!(
            parse(&format!("{BASE}set TLS_CA_FILE /etc/sguil/cert.pem\n"))
                .unwrap()
                .connect
                .tls,
            TlsMode::CaFile("/etc/sguil/cert.pem".into())
        );
    }

    #[test]
    fn no_verification_with_a_certificate_to_check_is_refused_naming_both() {
        for (key, value) in [
            ("TLS_PIN_SHA256", "AB:".repeat(31) + "AB"),
            ("TLS_CA_FILE", "/etc/sguil/cert.pem".into()),
        ] {
            for text in [
                format!("{BASE}set TLS_VERIFY 0\nset {key} {value}\n"),
                format!("{BASE}set {key} {value}\nset TLS_VERIFY off\n"),
            ] {
                let e = parse(&text).unwrap_err();
                let (off, on) = if text.contains("VERIFY 0") {
                    (4, 5)
                } else {
                    (5, 4)
                };
                assert!(
                    e.contains(&format!(":{off}: TLS_VERIFY 0"))
                        && e.contains(&format!("{key} (line {on})")),
                    "{e}"
                );
            }
        }
        // An empty value is no value; verification on with both is fine.
        assert_eq!(
            parse(&format!(
                "{BASE}set TLS_VERIFY 0\nset TLS_PIN_SHA256 {{}}\n"
            ))
            .unwrap()
            .connect
            .tls,
            TlsMode::NoVerify
        );
        assert!(parse(&format!(
            "{BASE}set TLS_VERIFY 1\nset TLS_PIN_SHA256 {}\n",
            "AB:".repeat(31) + "AB"
        ))
        .is_ok());
    }

    #[test]
    fn verification_is_on_by_default_and_the_error_says_how_to_pin() {
        let e = parse(BASE).unwrap_err();
        assert!(
            e.contains("TLS_PIN_SHA256") && e.contains("openssl x509 -noout -fingerprint -sha256"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        for (extra, want) in [
            ("set TLS_PIN_SHA256 abcd\n", ":5: TLS_PIN_SHA256: bad value"),
            ("set SERVER_PORT 70000\n", ":5: SERVER_PORT: bad value"),
            ("set SEND_WINDOW 0\n", ":5: SEND_WINDOW: bad value"),
            ("set TLS_CA_FILE cert.pem\n", ":5: TLS_CA_FILE: bad value"),
            ("set PING_DELAY 10\n", ":5: PING_DELAY: bad value"),
        ] {
            let e = parse(&format!("{BASE}set TLS_VERIFY 0\n{extra}")).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        let e = parse(
            "set SERVER_HOST h\nset HOSTNAME {web server}\nset NET_GROUP n\nset TLS_VERIFY 0\n",
        )
        .unwrap_err();
        assert!(e.contains(":2: HOSTNAME"), "{e}");
        let e = parse("set HOSTNAME h\n").unwrap_err();
        assert!(e.contains("SERVER_HOST is not set"), "{e}");
    }

    fn barnyard(text: &str) -> Result<BarnyardSettings, String> {
        BarnyardSettings::resolve(&ConfigFile::parse(text, Path::new("/etc/m.conf")).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn barnyard_defaults_are_barnyard2s() {
        let s = barnyard("set HOSTNAME sensor1\n").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.reply_timeout, s.send_window),
            ("127.0.0.1", 7735, Duration::from_secs(15), 32)
        );
        let s = barnyard(
            "set HOSTNAME s\nset AGENT_HOST ::1\nset AGENT_PORT 9000\nset REPLY_TIMEOUT 2\n",
        )
        .unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.reply_timeout),
            ("::1", 9000, Duration::from_secs(2))
        );
        let e = barnyard("set HOSTNAME s\nset AGENT_PORT 0\n").unwrap_err();
        assert!(e.contains(":2: AGENT_PORT: bad value"), "{e}");
        let e = barnyard("set AGENT_PORT 7735\n").unwrap_err();
        assert!(
            e.contains("HOSTNAME is not set") && e.contains("snort_agent"),
            "{e}"
        );
        let e = barnyard("set HOSTNAME {a b}\n").unwrap_err();
        assert!(e.contains(":1: HOSTNAME"), "{e}");
    }
}
