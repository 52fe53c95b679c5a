//! TLS with rustls (ring, no OpenSSL), shared by every client channel and by
//! the node's listeners (docs/security.md).
//!
//! [`Credentials`] holds the CA, certificate and key read from files and
//! rereads them when they change (Kubernetes rewrites Secret-mounted files in
//! place): every handshake asks for the current material, which is at most
//! [`RELOAD_CHECK_INTERVAL`] old. Connections already open keep the
//! certificate they were made with; only new handshakes see new files. A
//! half-rotated set (a certificate that does not match its key, a file that
//! does not parse) is logged and ignored until it is whole again.
//!
//! [`TlsConnector`] is the channel side: it dials TCP, runs the handshake and
//! turns rustls' errors into sentences naming the certificate problem.

use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};
use tokio::net::TcpStream;

/// How often, at most, the files are read again to look for a change.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// ALPN protocol of every raftkv listener (gRPC is HTTP/2 only).
pub const ALPN_H2: &[u8] = b"h2";

/// The crypto provider of every raftkv TLS config.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Where the PEM files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s) that sign the other side's certificate.
    pub ca: PathBuf,
    /// Our certificate chain and key (a client without them presents none).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    pub fn new(ca: impl Into<PathBuf>) -> Self {
        TlsFiles {
            ca: ca.into(),
            cert: None,
            key: None,
        }
    }

    pub fn with_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert = Some(cert.into());
        self.key = Some(key.into());
        self
    }
}

/// What is wrong with the TLS files (at start, or at a reload).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TlsFilesError(pub String);

/// One consistent set of credentials.
pub struct Material {
    /// Our certificate and key, if configured.
    pub key: Option<Arc<CertifiedKey>>,
    /// Checks a server's certificate against the CA.
    pub server_verifier: Arc<WebPkiServerVerifier>,
    /// Checks a client's certificate against the CA: one that demands it
    /// and one that lets a client without a certificate in.
    pub client_verifier_required: Arc<dyn ClientCertVerifier>,
    pub client_verifier_optional: Arc<dyn ClientCertVerifier>,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Material")
            .field("has_key", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsFilesError> {
    std::fs::read(path).map_err(|e| TlsFilesError(format!("reading {}: {e}", path.display())))
}

impl Material {
    /// Builds the material from the files' contents (pure: no I/O).
    pub fn from_pem(
        ca: &[u8],
        identity: Option<(&[u8], &[u8])>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Material, TlsFilesError> {
        let bad = |m: String| TlsFilesError(m);
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca) {
            let cert = cert.map_err(|e| bad(format!("CA file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("CA file: not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad("CA file: no certificate in it".into()));
        }
        let roots = Arc::new(roots);
        let key = match identity {
            None => None,
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(format!("certificate file: {e}")))?;
                if chain.is_empty() {
                    return Err(bad("certificate file: no certificate in it".into()));
                }
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| bad(format!("key file: {e}")))?;
                let ck = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
                    bad(format!(
                        "the key does not belong to the certificate (or is unusable): {e}"
                    ))
                })?;
                Some(Arc::new(ck))
            }
        };
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| bad(format!("CA file: {e}")))?;
        let client_verifier_required =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| bad(format!("CA file: {e}")))?;
        let client_verifier_optional =
            WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| bad(format!("CA file: {e}")))?;
        Ok(Material {
            key,
            server_verifier,
            client_verifier_required,
            client_verifier_optional,
        })
    }
}

struct State {
    checked: Instant,
    /// The files' bytes the current material was built from.
    raw: Vec<Vec<u8>>,
    current: Arc<Material>,
}

/// The reloading credentials (see the module doc).
pub struct Credentials {
    /// `None`: built from PEM in memory ([`Credentials::from_pem`]), never reread.
    files: Option<TlsFiles>,
    provider: Arc<CryptoProvider>,
    state: Mutex<State>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads the files; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Arc<Credentials>, TlsFilesError> {
        if files.cert.is_some() != files.key.is_some() {
            return Err(TlsFilesError(
                "a certificate needs its key and a key its certificate".into(),
            ));
        }
        let provider = provider();
        let raw = Self::read_all(&files)?;
        let current = Arc::new(Self::build(&raw, &provider)?);
        Ok(Arc::new(Credentials {
            files: Some(files),
            provider,
            state: Mutex::new(State {
                checked: Instant::now(),
                raw,
                current,
            }),
        }))
    }

    /// Credentials from PEM held in memory (the operator issues itself a
    /// client certificate from the CA in a Secret and never writes it to a
    /// file). Nothing is reread: to change them, build new ones.
    pub fn from_pem(
        ca: &str,
        identity: Option<(&str, &str)>,
    ) -> Result<Arc<Credentials>, TlsFilesError> {
        let provider = provider();
        let mut raw = vec![ca.as_bytes().to_vec()];
        if let Some((cert, key)) = identity {
            raw.push(cert.as_bytes().to_vec());
            raw.push(key.as_bytes().to_vec());
        }
        let current = Arc::new(Self::build(&raw, &provider)?);
        Ok(Arc::new(Credentials {
            files: None,
            provider,
            state: Mutex::new(State {
                checked: Instant::now(),
                raw,
                current,
            }),
        }))
    }

    /// The files the credentials follow; `None` for in-memory credentials.
    pub fn files(&self) -> Option<&TlsFiles> {
        self.files.as_ref()
    }

    fn read_all(files: &TlsFiles) -> Result<Vec<Vec<u8>>, TlsFilesError> {
        let mut raw = vec![read(&files.ca)?];
        if let (Some(c), Some(k)) = (&files.cert, &files.key) {
            raw.push(read(c)?);
            raw.push(read(k)?);
        }
        Ok(raw)
    }

    fn build(raw: &[Vec<u8>], provider: &Arc<CryptoProvider>) -> Result<Material, TlsFilesError> {
        let identity = match raw {
            [_, cert, key] => Some((cert.as_slice(), key.as_slice())),
            _ => None,
        };
        Material::from_pem(&raw[0], identity, provider)
    }

    /// The material for a handshake starting now, reread from the files if
    /// they may have changed.
    pub fn current(&self) -> Arc<Material> {
        let mut st = self.state.lock();
        if st.checked.elapsed() >= RELOAD_CHECK_INTERVAL {
            st.checked = Instant::now();
            self.reload_locked(&mut st);
        }
        st.current.clone()
    }

    /// Reads the files now; true if new material is in use.
    pub fn reload(&self) -> bool {
        let mut st = self.state.lock();
        st.checked = Instant::now();
        self.reload_locked(&mut st)
    }

    fn reload_locked(&self, st: &mut State) -> bool {
        let Some(files) = &self.files else {
            return false;
        };
        let raw = match Self::read_all(files) {
            Ok(raw) => raw,
            Err(e) => {
                tracing::warn!(error = %e, "TLS files unreadable; keeping the current certificates");
                return false;
            }
        };
        if raw == st.raw {
            return false;
        }
        match Self::build(&raw, &self.provider) {
            Ok(m) => {
                tracing::info!(files = ?self.files, "TLS certificates reloaded");
                st.current = Arc::new(m);
                st.raw = raw;
                true
            }
            Err(e) => {
                // Mid-rotation (certificate written, key not yet) or broken:
                // keep serving with what works and look again later.
                tracing::warn!(error = %e, "new TLS files not usable (yet); keeping the current certificates");
                false
            }
        }
    }

    /// A client configuration that follows these credentials.
    pub fn client_config(self: &Arc<Self>) -> Result<Arc<ClientConfig>, TlsFilesError> {
        let mut cfg = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsFilesError(e.to_string()))?
            .dangerous()
            // Not dangerous: it delegates to webpki with the current CA.
            .with_custom_certificate_verifier(Arc::new(CurrentServerVerifier(self.clone())))
            .with_client_cert_resolver(Arc::new(CurrentClientCert(self.clone())));
        cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(cfg))
    }

    pub fn crypto_provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }
}

/// Verifies servers with the current CA.
#[derive(Debug)]
struct CurrentServerVerifier(Arc<Credentials>);

impl ServerCertVerifier for CurrentServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.current().server_verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .server_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .server_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().server_verifier.supported_verify_schemes()
    }
}

/// Presents the current certificate, if any.
#[derive(Debug)]
struct CurrentClientCert(Arc<Credentials>);

impl ResolvesClientCert for CurrentClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.current().key.clone()
    }

    fn has_certs(&self) -> bool {
        // Files may be rotated but never gain or lose an identity; in-memory
        // credentials have one if they were built with it.
        self.0.current().key.is_some()
    }
}

/// A failed TLS handshake (or the TCP connect before it), for people.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{addr}: {message}")]
pub struct HandshakeError {
    pub addr: String,
    pub message: String,
    /// A certificate problem (ours or the server's): retrying will not help
    /// until someone fixes a certificate or a flag.
    pub certificate: bool,
}

/// What a rustls error means for someone holding `--cacert/--cert/--key`
/// (pure). The bool says whether it is a certificate problem.
pub fn describe(e: &rustls::Error, server: &str) -> (String, bool) {
    use rustls::Error as E;
    let cert = |m: String| (m, true);
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => cert(format!(
                "the server's certificate has expired (or this machine's clock is wrong): {e}"
            )),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => cert(
                format!("the server's certificate is not valid yet (check the clocks): {e}"),
            ),
            CertificateError::UnknownIssuer => cert(
                "the server's certificate is not signed by the CA given (--cacert): unknown CA"
                    .to_string(),
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                cert(format!(
                    "the server's certificate is not valid for the name {server:?} (wrong name; connect by a name or IP address it lists): {e}"
                ))
            }
            CertificateError::BadSignature => cert(format!(
                "the server's certificate is not signed by the CA given (--cacert): bad signature, likely another cluster's CA: {e}"
            )),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                cert(format!(
                    "the server's certificate is not made for serving (wrong key usage): {e}"
                ))
            }
            _ => cert(format!("the server's certificate was refused: {e}")),
        },
        E::AlertReceived(a) => match a {
            AlertDescription::CertificateRequired => {
                cert("the server requires a client certificate (give --cert and --key)".to_string())
            }
            AlertDescription::UnknownCA => cert(
                "the server refused our certificate: not signed by a CA it trusts (unknown CA)"
                    .to_string(),
            ),
            AlertDescription::CertificateExpired => cert(
                "the server refused our certificate: it has expired (or the clocks disagree)"
                    .to_string(),
            ),
            // DecryptError: our certificate's signature does not check out
            // against the server's CA (a certificate from another CA).
            AlertDescription::BadCertificate
            | AlertDescription::DecryptError
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied => cert(format!(
                "the server refused our certificate ({a:?}): wrong CA, wrong usage, or not meant for this cluster"
            )),
            _ => (format!("TLS alert from the server: {a:?}"), false),
        },
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => (
            format!(
                "the server does not speak TLS here (a plaintext listener? drop --cacert or use http://): {e}"
            ),
            false,
        ),
        E::NoApplicationProtocol => (
            "the server does not offer HTTP/2 over TLS (ALPN h2)".to_string(),
            false,
        ),
        _ => (format!("TLS handshake failed: {e}"), false),
    }
}

/// The channel side: TCP connect, then a TLS handshake with the server named
/// by the URI's host (or by [`TlsConnector::with_server_name`]). Implements
/// the connector tonic's `Endpoint` takes.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    server_name: Option<String>,
}

impl TlsConnector {
    pub fn new(config: Arc<ClientConfig>) -> Self {
        TlsConnector {
            config,
            server_name: None,
        }
    }

    /// Verify the server's certificate for `name` instead of the host dialed:
    /// for a connection through a port-forward (`127.0.0.1`) or to a pod IP,
    /// neither of which the node certificate lists.
    pub fn with_server_name(mut self, name: Option<String>) -> Self {
        self.server_name = name;
        self
    }

    pub async fn connect(
        config: Arc<ClientConfig>,
        host: String,
        port: u16,
    ) -> Result<Prefixed, HandshakeError> {
        Self::connect_as(config, host, port, None).await
    }

    /// [`TlsConnector::connect`], verifying the certificate for
    /// `server_name` when given.
    pub async fn connect_as(
        config: Arc<ClientConfig>,
        host: String,
        port: u16,
        server_name: Option<String>,
    ) -> Result<Prefixed, HandshakeError> {
        use tokio::io::AsyncReadExt;
        let addr = format!("{host}:{port}");
        let fail = |message: String, certificate: bool| HandshakeError {
            addr: addr.clone(),
            message,
            certificate,
        };
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let verify_as = server_name.unwrap_or_else(|| bare.clone());
        let name = ServerName::try_from(verify_as.clone()).map_err(|e| {
            fail(
                format!("not a valid TLS server name {verify_as:?}: {e}"),
                true,
            )
        })?;
        let tcp = TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|e| fail(format!("connect: {e}"), false))?;
        // Raft messages and replies are small and latency-bound.
        let _ = tcp.set_nodelay(true);
        let explain = |e: std::io::Error| {
            let rustls_error = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            match rustls_error {
                Some(re) => {
                    let (m, c) = describe(re, &verify_as);
                    fail(m, c)
                }
                None => fail(
                    format!("TLS handshake: {e} (a plaintext listener, or the server refused us)"),
                    false,
                ),
            }
        };
        let mut stream = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(explain)?;
        // In TLS 1.3 the server judges our certificate (or its absence)
        // after our side of the handshake is done: its refusal arrives as
        // the first thing we read. Read that first record now (a server
        // that accepts us sends its HTTP/2 SETTINGS at once), so a refusal
        // is reported as what it is and not as a broken connection later.
        let mut first = vec![0u8; 1024];
        let n = match tokio::time::timeout(FIRST_READ_MAX, stream.read(&mut first)).await {
            Ok(Ok(0)) => return Err(fail("the server closed the connection right after the TLS handshake (did it refuse our certificate?)".into(), false)),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(explain(e)),
            Err(_) => 0,
        };
        first.truncate(n);
        Ok(Prefixed {
            prefix: first,
            pos: 0,
            inner: stream,
        })
    }
}

/// How long a new connection waits for the server's first bytes (see
/// `TlsConnector::connect`) before handing the connection over anyway.
const FIRST_READ_MAX: Duration = Duration::from_secs(2);

/// A TLS stream with the bytes read ahead during connect replayed first.
pub struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: tokio_rustls::client::TlsStream<TcpStream>,
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

type TlsIo = hyper_util::rt::TokioIo<Prefixed>;

impl tower_service::Service<http::Uri> for TlsConnector {
    type Response = TlsIo;
    type Error = HandshakeError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsIo, HandshakeError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.config.clone();
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(443);
            let stream = TlsConnector::connect_as(config, host, port, server_name).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

/// The certificate problem in an error's source chain, if there is one.
pub fn certificate_problem<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a HandshakeError> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HandshakeError>()
            && h.certificate
        {
            return Some(h);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_are_named_for_people() {
        let (m, c) = describe(
            &rustls::Error::InvalidCertificate(CertificateError::Expired),
            "a",
        );
        assert!(c);
        assert!(m.contains("has expired"), "{m}");
        let (m, c) = describe(
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            "a",
        );
        assert!(c);
        assert!(m.contains("unknown CA"), "{m}");
        let (m, c) = describe(
            &rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            "node-9",
        );
        assert!(c);
        assert!(m.contains("wrong name") && m.contains("node-9"), "{m}");
        let (m, c) = describe(
            &rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
            "a",
        );
        assert!(c);
        assert!(m.contains("--cert"), "{m}");
        let (_, c) = describe(&rustls::Error::NoApplicationProtocol, "a");
        assert!(!c);
    }

    #[test]
    fn reload_takes_a_whole_new_set_and_ignores_a_half_written_one() {
        use raftkv_certs::{CA_VALIDITY, Ca, ClusterRef, LeafRequest, Validity};
        let dir = tempfile::tempdir().unwrap();
        let cluster = ClusterRef::new("t", "c").unwrap();
        let ca = Ca::generate(&cluster, Validity::from_now(CA_VALIDITY)).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
        let req = LeafRequest::node(&cluster, "n", &["localhost"], &[]).unwrap();
        let (cert, key) = ca.issue(&req).unwrap().write(dir.path(), "n").unwrap();
        let creds =
            Credentials::load(TlsFiles::new(dir.path().join("ca.crt")).with_identity(&cert, &key))
                .unwrap();
        let leaf = |c: &Credentials| c.current().key.as_ref().unwrap().cert[0].clone();
        let first = leaf(&creds);
        assert!(!creds.reload(), "nothing changed");

        // Half-rotated: the new certificate is there, its key not yet.
        let next = ca.issue(&req).unwrap();
        std::fs::write(&cert, &next.cert_pem).unwrap();
        assert!(!creds.reload());
        assert_eq!(leaf(&creds), first, "kept the set that works");

        // Whole again: taken.
        std::fs::write(&key, &next.key_pem).unwrap();
        assert!(creds.reload());
        assert_ne!(leaf(&creds), first);

        // A missing file is not a reason to drop what works.
        std::fs::remove_file(&key).unwrap();
        assert!(!creds.reload());
        assert!(creds.current().key.is_some());
    }

    #[test]
    fn in_memory_credentials_hold_the_pem_given_and_never_reload() {
        use raftkv_certs::{CA_VALIDITY, Ca, ClusterRef, LeafRequest, Role, Validity};
        let cluster = ClusterRef::new("t", "c").unwrap();
        let ca = Ca::generate(&cluster, Validity::from_now(CA_VALIDITY)).unwrap();
        let admin = ca
            .issue(&LeafRequest::client(&cluster, Role::Admin, "operator").unwrap())
            .unwrap();
        let creds =
            Credentials::from_pem(ca.cert_pem(), Some((&admin.cert_pem, &admin.key_pem))).unwrap();
        assert!(creds.files().is_none());
        let der = creds.current().key.as_ref().expect("an identity").cert[0].clone();
        assert_eq!(
            raftkv_certs::identity_of_der(&der).unwrap().uri(),
            "raftkv://t/c/client/admin/operator"
        );
        assert!(!creds.reload(), "nothing to reread");
        assert!(creds.client_config().is_ok());
        // A key of another certificate is refused up front, naming the problem.
        let other = ca
            .issue(&LeafRequest::client(&cluster, Role::Kv, "x").unwrap())
            .unwrap();
        let e = Credentials::from_pem(ca.cert_pem(), Some((&admin.cert_pem, &other.key_pem)))
            .unwrap_err()
            .0;
        assert!(e.contains("does not belong"), "{e}");
    }

    /// A real handshake with a server whose certificate lists only
    /// `node.example`: dialing 127.0.0.1 fails for the name, unless the
    /// connector is told which name to verify (a port-forward, a pod IP).
    #[tokio::test]
    async fn the_server_name_override_verifies_the_name_given() {
        use raftkv_certs::{CA_VALIDITY, Ca, ClusterRef, LeafRequest, Validity};
        let cluster = ClusterRef::new("t", "c").unwrap();
        let ca = Ca::generate(&cluster, Validity::from_now(CA_VALIDITY)).unwrap();
        let node = ca
            .issue(&LeafRequest::node(&cluster, "n", &["node.example"], &[]).unwrap())
            .unwrap();
        let chain = CertificateDer::pem_slice_iter(node.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(node.key_pem.as_bytes()).unwrap();
        let mut server_cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        server_cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        // The first bytes the connector reads ahead.
                        let _ = tls.write_all(b"hello").await;
                        let _ = tls.flush().await;
                    }
                });
            }
        });
        let client = Credentials::from_pem(ca.cert_pem(), None)
            .unwrap()
            .client_config()
            .unwrap();
        let wrong = TlsConnector::connect(client.clone(), "127.0.0.1".into(), port)
            .await
            .err()
            .expect("127.0.0.1 is not in the certificate");
        assert!(
            wrong.certificate && wrong.message.contains("127.0.0.1"),
            "{wrong:?}"
        );
        TlsConnector::connect_as(
            client,
            "127.0.0.1".into(),
            port,
            Some("node.example".into()),
        )
        .await
        .expect("the certificate is valid for node.example");
    }

    #[test]
    fn loading_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "not a certificate").unwrap();
        let e = Credentials::load(TlsFiles::new(&ca)).unwrap_err().0;
        assert!(e.contains("CA file"), "{e}");
        let e = Credentials::load(TlsFiles::new(dir.path().join("nope.crt")))
            .unwrap_err()
            .0;
        assert!(e.contains("nope.crt"), "{e}");
    }

    #[test]
    fn a_certificate_problem_is_found_in_a_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] HandshakeError);
        let inner = HandshakeError {
            addr: "a:1".into(),
            message: "unknown CA".into(),
            certificate: true,
        };
        let outer = Outer(inner);
        assert_eq!(
            certificate_problem(&outer).map(|h| h.message.as_str()),
            Some("unknown CA")
        );
        let plain = HandshakeError {
            certificate: false,
            ..outer.0.clone()
        };
        assert!(certificate_problem(&plain).is_none());
    }
}
