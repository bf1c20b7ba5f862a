//! One connection to sguild: TCP with timeouts, the banner, `VersionInfo`, and TLS
//! started at once (ARCHITECTURE.md, "Sguil's agent protocol", 2), then lines with a reply timeout.
//!
//! sguild runs its TLS handshake synchronously in its only event loop: an agent that
//! sends `VersionInfo` and then stalls freezes every other agent and analyst. So the
//! handshake starts right after the `VersionInfo` line, runs under a deadline, and a
//! connection that misses it is dropped (closed), never left half open.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::wire::{parse_server_line, version_info_line, ServerLine};

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS at all (OPENSSL 0): sguild accepts it, but nothing is encrypted.
    Plaintext,
    /// Trust the certificates in this PEM file: a CA, or sguild's self-signed
    /// certificate itself (accepted when the server presents exactly that certificate).
    CaFile(PathBuf),
    /// Accept only a server certificate whose SHA-256 (of its DER) is this.
    PinSha256([u8; 32]),
    /// No verification (TLS_VERIFY 0): encrypted, but anyone can pose as the server.
    NoVerify,
}

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// Refuse a server whose banner is not this (`--sguil-version`).
    pub expect_version: Option<String>,
    pub connect_timeout: Duration,
    /// For the banner and the TLS handshake.
    pub handshake_timeout: Duration,
}

/// Why a connection could not be set up or went away; each names the server.
#[derive(Debug, Error)]
pub enum ConnError {
    #[error("{server}: connect: {source}")]
    Connect {
        server: String,
        #[source]
        source: io::Error,
    },
    #[error("{server}: refused us (`Connection Refused.`): add this host to sguild.access")]
    Refused { server: String },
    #[error("{server}: says it is `{got}`, expected `{expected}`")]
    VersionMismatch {
        server: String,
        expected: String,
        got: String,
    },
    #[error("{server}: not a sguild banner: `{got}`")]
    BadBanner { server: String, got: String },
    #[error("{server}: no {what} within {secs} s")]
    Timeout {
        server: String,
        what: &'static str,
        secs: u64,
    },
    #[error("{server}: connection closed {when}")]
    Closed { server: String, when: &'static str },
    #[error("{server}: TLS: {why}")]
    Tls { server: String, why: String },
    #[error("{server}: {source}")]
    Io {
        server: String,
        #[source]
        source: io::Error,
    },
}

/// The byte stream under the lines: plain TCP before (or without) TLS, then TLS.
enum Transport {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Transport {
    fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(t) => t,
            Transport::Tls(s) => &s.sock,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(t) => t.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Transport::Plain(t) => t.write_all(buf).and_then(|_| t.flush()),
            Transport::Tls(s) => s.write_all(buf).and_then(|_| s.flush()),
        }
    }
}

/// An open, version-checked (and, unless plaintext, TLS) connection to sguild.
pub struct Connection {
    server: String,
    stream: Transport,
    buf: Vec<u8>,
    /// The banner sguild sent.
    pub version: String,
    pub tls: bool,
}

/// How long one send may block (sguild not reading, a dead peer with a full window)
/// before the connection is taken for lost.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`Connection::close`] waits for the server to end its side (each of the
/// flush and the wait): sguild answers at once; a peer that does not is not waited for.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Longest line accepted from sguild, without its line end (its `Failed` for a wrong
/// field count echoes the whole event: up to ~70 KB for a full detail); a longer one is
/// an error, so a peer cannot make the shipper buffer without end.
pub const MAX_SERVER_LINE: usize = 1024 * 1024;

impl Connection {
    /// A plain TCP connection with no banner and no TLS: what barnyard2 opens to the
    /// snort_agent on its own host (ARCHITECTURE.md, "Sguil's agent protocol", 6). `name` names it in errors.
    pub fn open_plain(
        name: &str,
        host: &str,
        port: u16,
        connect_timeout: Duration,
    ) -> Result<Connection, ConnError> {
        let server = name.to_string();
        let connect_err = |source| ConnError::Connect {
            server: server.clone(),
            source,
        };
        let addrs: Vec<_> = (host, port)
            .to_socket_addrs()
            .map_err(connect_err)?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, connect_timeout) {
                Ok(t) => {
                    tcp = Some(t);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or_else(|| connect_err(last))?;
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_write_timeout(Some(SEND_TIMEOUT));
        Ok(Connection {
            server,
            stream: Transport::Plain(tcp),
            buf: Vec::new(),
            version: String::new(),
            tls: false,
        })
    }

    /// Connects, reads the banner, checks the version and starts TLS.
    pub fn open(s: &ConnectSettings) -> Result<Connection, ConnError> {
        let name = format!("{}:{}", s.host, s.port);
        let mut conn = Connection::open_plain(&name, &s.host, s.port, s.connect_timeout)?;
        let server = conn.server.clone();
        let banner = conn
            .read_line(s.handshake_timeout)?
            .ok_or(ConnError::Timeout {
                server: server.clone(),
                what: "banner",
                secs: s.handshake_timeout.as_secs(),
            })?;
        let version = match parse_server_line(&banner) {
            ServerLine::Banner(v) => v,
            ServerLine::ConnectionRefused => return Err(ConnError::Refused { server }),
            _ => {
                return Err(ConnError::BadBanner {
                    server,
                    got: banner.chars().take(80).collect(),
                })
            }
        };
        if let Some(expected) = &s.expect_version {
            if *expected != version {
                return Err(ConnError::VersionMismatch {
                    server,
                    expected: expected.clone(),
                    got: version,
                });
            }
        }
        conn.version = version.clone();
        if s.tls == TlsMode::Plaintext {
            log::warn!("{server}: plaintext session (OPENSSL 0): events travel unencrypted");
            return Ok(conn);
        }
        if s.tls == TlsMode::NoVerify {
            log::warn!("{server}: TLS without certificate verification (TLS_VERIFY 0): anyone on the path can pose as sguild");
        }
        conn.send_line(&version_info_line(&version))?;
        conn.start_tls(s)?;
        Ok(conn)
    }

    fn start_tls(&mut self, s: &ConnectSettings) -> Result<(), ConnError> {
        let tls_err = |why: String| ConnError::Tls {
            server: self.server.clone(),
            why,
        };
        let verifier = Arc::new(Verifier::new(&s.tls).map_err(tls_err)?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let name = ServerName::try_from(s.host.clone())
            .map_err(|e| tls_err(format!("server name `{}`: {e}", s.host)))?;
        let client =
            ClientConnection::new(Arc::new(config), name).map_err(|e| tls_err(e.to_string()))?;
        if !self.buf.is_empty() {
            return Err(tls_err(
                "the server sent data before the TLS handshake".into(),
            ));
        }
        let tcp = self.stream.tcp().try_clone().map_err(|e| self.io(e))?;
        let mut tls = StreamOwned::new(client, tcp);
        let deadline = std::time::Instant::now() + s.handshake_timeout;
        while tls.conn.is_handshaking() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(ConnError::Timeout {
                    server: self.server.clone(),
                    what: "TLS handshake",
                    secs: s.handshake_timeout.as_secs(),
                });
            }
            let _ = tls.sock.set_read_timeout(Some(left));
            let _ = tls.sock.set_write_timeout(Some(left));
            match tls.conn.complete_io(&mut tls.sock) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(ConnError::Timeout {
                        server: self.server.clone(),
                        what: "TLS handshake",
                        secs: s.handshake_timeout.as_secs(),
                    });
                }
                // Plain text where a TLS record should be: the server wrote more
                // lines after its banner (it is not doing TLS), which arrived too late
                // for the check above.
                Err(e) if e.to_string().contains("InvalidContentType") => {
                    return Err(tls_err(format!(
                        "the server sent data before the TLS handshake ({e})"
                    )))
                }
                Err(e) => return Err(tls_err(e.to_string())),
            }
        }
        // The handshake deadline is over: sends get the normal limit again.
        let _ = tls.sock.set_write_timeout(Some(SEND_TIMEOUT));
        // The plain handle is dropped here; the TLS stream keeps its own (dup'ed) one.
        self.stream = Transport::Tls(Box::new(tls));
        self.tls = true;
        Ok(())
    }

    fn io(&self, source: io::Error) -> ConnError {
        ConnError::Io {
            server: self.server.clone(),
            source,
        }
    }

    /// `host:port`, for messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Ends the session as a well-behaved agent does: TLS close_notify, then our end of
    /// the TCP connection (FIN), then whatever the server still sends is read and
    /// dropped until it closes its end (at most `CLOSE_WAIT`, 2 s), so the socket is never
    /// closed with data unread (which would send a reset). sguild (tcl-tls) then sees a
    /// clean end of the stream and logs nothing; a connection that is just dropped
    /// makes it log two errors ("software caused connection abort" and "SSL channel
    /// …: error:"). For a session in step: after a lost connection or a reply timeout,
    /// drop the connection instead. Errors are ignored: the session's work is done.
    pub fn close(mut self) {
        let _ = self.stream.tcp().set_write_timeout(Some(CLOSE_WAIT));
        if let Transport::Tls(s) = &mut self.stream {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let mut tcp = self.stream.tcp();
        let _ = tcp.shutdown(Shutdown::Write);
        let deadline = std::time::Instant::now() + CLOSE_WAIT;
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || tcp.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match tcp.read(&mut chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    /// Sends one line (which must end with `\n`).
    pub fn send_line(&mut self, line: &str) -> Result<(), ConnError> {
        self.stream
            .write_all(line.as_bytes())
            .map_err(|e| self.io(e))
    }

    /// Sends several lines with one write.
    pub fn send_lines(&mut self, lines: &[String]) -> Result<(), ConnError> {
        let joined = lines.concat();
        self.send_line(&joined)
    }

    /// Reads one line (without CR LF), waiting at most `timeout`; `None` on timeout.
    pub fn read_line(&mut self, timeout: Duration) -> Result<Option<String>, ConnError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let newline = self.buf.iter().position(|&b| b == b'\n');
            // The line's length without its CR LF (a CR may still wait for its LF).
            let len = match newline {
                Some(p) => p - usize::from(p > 0 && self.buf[p - 1] == b'\r'),
                None => self.buf.len() - usize::from(self.buf.last() == Some(&b'\r')),
            };
            if len > MAX_SERVER_LINE {
                return Err(self.io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "line from the server over 1 MiB",
                )));
            }
            if let Some(pos) = newline {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                return Ok(Some(text));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let _ = self.stream.tcp().set_read_timeout(Some(left));
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(ConnError::Closed {
                        server: self.server.clone(),
                        when: "by the server",
                    })
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    quick_ack(self.stream.tcp());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(ConnError::Closed {
                        server: self.server.clone(),
                        when: "by the server",
                    })
                }
                Err(e) => return Err(self.io(e)),
            }
        }
    }
}

/// Asks the kernel to acknowledge what arrives at once rather than after the delayed-ACK
/// timer (40 ms). sguild writes each reply on its own with Nagle's algorithm on, so a
/// reply waits for the ACK of the one before: without this, the last replies of every
/// window sit out the timer (measured: 373 events/s instead of thousands). Linux turns
/// quick-ack mode off again by itself, so it is set after every read.
fn quick_ack(tcp: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value of the right size.
    unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// SHA-256 of a certificate's DER, as `TLS_PIN_SHA256` is written: 64 hex digits
/// (colons allowed, as `openssl x509 -fingerprint -sha256` prints them).
pub fn parse_pin(text: &str) -> Option<[u8; 32]> {
    let digits: Vec<u8> = text.bytes().filter(|&b| b != b':').collect();
    crate::hex::decode(&digits).and_then(|bytes| bytes.try_into().ok())
}

/// SHA-256 of DER bytes.
pub fn sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Checks sguild's certificate the way [`TlsMode`] says; handshake signatures are
/// always checked with the crypto provider.
#[derive(Debug)]
struct Verifier {
    mode: TlsMode,
    /// Certificates from the CA file, and a verifier built on them (for real CAs).
    trusted: Vec<CertificateDer<'static>>,
    webpki: Option<Arc<dyn ServerCertVerifier>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl Verifier {
    fn new(mode: &TlsMode) -> Result<Verifier, String> {
        let provider = rustls::crypto::ring::default_provider();
        let mut v = Verifier {
            mode: mode.clone(),
            trusted: Vec::new(),
            webpki: None,
            algorithms: provider.signature_verification_algorithms,
        };
        if let TlsMode::CaFile(path) = mode {
            let pem =
                std::fs::read(path).map_err(|e| format!("TLS_CA_FILE {}: {e}", path.display()))?;
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("TLS_CA_FILE {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "TLS_CA_FILE {}: no PEM certificate in it",
                    path.display()
                ));
            }
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(certs.iter().cloned());
            if added > 0 {
                v.webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::new(provider),
                )
                .build()
                .ok()
                .map(|w| w as Arc<dyn ServerCertVerifier>);
            }
            v.trusted = certs;
        }
        Ok(v)
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fingerprint = sha256(end_entity.as_ref());
        match &self.mode {
            TlsMode::NoVerify | TlsMode::Plaintext => Ok(ServerCertVerified::assertion()),
            TlsMode::PinSha256(pin) if *pin == fingerprint => Ok(ServerCertVerified::assertion()),
            TlsMode::PinSha256(_) => Err(rustls::Error::General(format!(
                "the server's certificate has SHA-256 {}, not the pinned one (TLS_PIN_SHA256)",
                hex_colons(&fingerprint)
            ))),
            TlsMode::CaFile(path) => {
                // sguild's usual certificate is self-signed: trusting that very file is enough.
                if self
                    .trusted
                    .iter()
                    .any(|c| c.as_ref() == end_entity.as_ref())
                {
                    return Ok(ServerCertVerified::assertion());
                }
                match &self.webpki {
                    Some(w) => w.verify_server_cert(end_entity, intermediates, server_name, ocsp, now).map_err(|e| {
                        rustls::Error::General(format!(
                            "certificate not trusted by TLS_CA_FILE {} ({e}); its SHA-256 is {} (pin it with TLS_PIN_SHA256 if that is sguild's)",
                            path.display(),
                            hex_colons(&fingerprint)
                        ))
                    }),
                    None => Err(rustls::Error::General(format!(
                        "certificate is not in TLS_CA_FILE {}; its SHA-256 is {}",
                        path.display(),
                        hex_colons(&fingerprint)
                    ))),
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `AB:CD:…`, as openssl prints fingerprints.
pub fn hex_colons(bytes: &[u8]) -> String {
    let hex = crate::hex::upper(bytes);
    hex.as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_with_or_without_colons() {
        let plain = "ab".repeat(32);
        assert_eq!(parse_pin(&plain), Some([0xab; 32]));
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_pin(&colons), Some([0xab; 32]));
        assert_eq!(parse_pin("abcd"), None);
        assert_eq!(parse_pin(&"zz".repeat(32)), None);
    }
}
