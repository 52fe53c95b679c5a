//! The server side of TLS: a rustls `ServerConfig` that asks the reloading
//! [`Credentials`] for the certificate and the CA at every handshake, and
//! the accept loop that hands tonic finished TLS streams.

use std::sync::Arc;
use std::time::Duration;

use raftkv_client::tls::{ALPN_H2, Credentials, TlsFilesError};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// Whether a client must present a certificate on the client listener
/// (the peer listener always requires one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuth {
    /// The handshake fails without a certificate signed by the CA.
    Required,
    /// Clients without a certificate may use KV and Status (encrypted,
    /// anonymous); Cluster changes still need an admin certificate.
    Optional,
}

/// A connection that has not finished its handshake this fast is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_QUEUE_MAX: usize = 64;

/// A server configuration following `creds`.
pub fn server_config(
    creds: &Arc<Credentials>,
    client_auth: ClientAuth,
) -> Result<Arc<ServerConfig>, TlsFilesError> {
    let mut cfg = ServerConfig::builder_with_provider(creds.crypto_provider().clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsFilesError(e.to_string()))?
        .with_client_cert_verifier(Arc::new(CurrentClientVerifier {
            creds: creds.clone(),
            auth: client_auth,
        }))
        .with_cert_resolver(Arc::new(CurrentServerCert(creds.clone())));
    cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
struct CurrentServerCert(Arc<Credentials>);

impl ResolvesServerCert for CurrentServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current().key.clone()
    }
}

#[derive(Debug)]
struct CurrentClientVerifier {
    creds: Arc<Credentials>,
    auth: ClientAuth,
}

impl CurrentClientVerifier {
    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        let m = self.creds.current();
        match self.auth {
            ClientAuth::Required => m.client_verifier_required.clone(),
            ClientAuth::Optional => m.client_verifier_optional.clone(),
        }
    }
}

impl ClientCertVerifier for CurrentClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.auth == ClientAuth::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: the CA can change under us; clients have one certificate.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// TLS streams accepted on `listener` (TCP_NODELAY set), for
/// `serve_with_incoming`. Handshakes run concurrently, each bounded by
/// [`HANDSHAKE_TIMEOUT`]; a failed one is logged and dropped. The loop ends
/// when the server drops the stream.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE_MAX);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::warn!(%remote, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
