//! The one place a gRPC channel to a raftkv listener is built: the client's
//! endpoints, a node forwarding to the leader, peer replication and the
//! operator's calls to pods all go through [`ChannelSettings`], so keep-alive
//! and `TCP_NODELAY` are the same everywhere and each caller names its timeouts,
//! and TLS (when configured) is set up the same way everywhere (`tls.rs`).

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::endpoint;
use crate::error::{Error, Result};
use crate::tls::TlsConnector;

/// HTTP/2 PING interval on every channel: a peer that vanished without a FIN
/// (a pod deleted with its node, a partition) is noticed within
/// `KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT` instead of the kernel's minutes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a PING may go unanswered before the connection is dropped.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Timeouts of one kind of channel, and its TLS configuration.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    /// TCP connect timeout: short, so a dead address is skipped fast.
    pub connect_timeout: Duration,
    /// Deadline of every request on the channel; `None` leaves it to the caller
    /// (a per-request `grpc-timeout` or a `tokio::time::timeout`).
    pub request_timeout: Option<Duration>,
    /// TLS (server verified against a CA, our certificate if any); `None`
    /// is plaintext.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The name the server's certificate is verified for, when not the host
    /// dialed (a pod IP, a port-forward on `127.0.0.1`).
    pub tls_server_name: Option<String>,
}

impl ChannelSettings {
    pub const fn new(connect_timeout: Duration) -> Self {
        ChannelSettings {
            connect_timeout,
            request_timeout: None,
            tls: None,
            tls_server_name: None,
        }
    }

    pub fn with_tls(mut self, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        self.tls = tls;
        self
    }

    /// See [`ChannelSettings::tls_server_name`].
    pub fn with_tls_server_name(mut self, name: Option<String>) -> Self {
        self.tls_server_name = name;
        self
    }

    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    fn endpoint(&self, addr: &str) -> Result<Endpoint> {
        let ep = Endpoint::from_shared(endpoint::uri(addr))
            .map_err(|e| Error::InvalidEndpoint {
                endpoint: addr.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(self.connect_timeout)
            // Raft messages and replies are small and latency-bound.
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            // Idle peer and forwarding channels must stay warm for the next burst.
            .keep_alive_while_idle(true);
        Ok(match self.request_timeout {
            Some(t) => ep.timeout(t),
            None => ep,
        })
    }

    /// A channel that connects on first use (and reconnects after failures).
    /// `addr` is `host:port`.
    pub fn lazy(&self, addr: &str) -> Result<Channel> {
        let ep = self.endpoint(addr)?;
        Ok(match &self.tls {
            Some(tls) => ep.connect_with_connector_lazy(
                TlsConnector::new(tls.clone()).with_server_name(self.tls_server_name.clone()),
            ),
            None => ep.connect_lazy(),
        })
    }

    /// A channel connected now: the error says whether the address could be
    /// reached at all.
    pub async fn connect(&self, addr: &str) -> std::result::Result<Channel, ConnectError> {
        let ep = self
            .endpoint(addr)
            .map_err(|e| ConnectError(e.to_string()))?;
        let connected = match &self.tls {
            Some(tls) => {
                ep.connect_with_connector(
                    TlsConnector::new(tls.clone()).with_server_name(self.tls_server_name.clone()),
                )
                .await
            }
            None => ep.connect().await,
        };
        connected.map_err(|e| ConnectError(transport_detail(&e)))
    }
}

/// Why [`ChannelSettings::connect`] failed, as one line for people.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub String);

/// tonic's transport error says only "transport error"; the cause says what
/// happened (a TLS certificate problem says which, from `tls::describe`).
fn transport_detail(e: &tonic::transport::Error) -> String {
    use std::error::Error as _;
    if let Some(h) = crate::tls::certificate_problem(e) {
        return format!("{e}: {h}");
    }
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_address_is_an_invalid_endpoint() {
        let s = ChannelSettings::new(Duration::from_secs(1));
        assert!(matches!(
            s.lazy("not a uri"),
            Err(Error::InvalidEndpoint { .. })
        ));
    }

    #[tokio::test]
    async fn connect_names_a_refused_connection() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = ChannelSettings::new(Duration::from_millis(500));
        let err = s.connect(&format!("127.0.0.1:{port}")).await.unwrap_err();
        assert!(err.0.contains("transport error"), "{err}");
        assert!(err.0.len() > "transport error".len(), "no cause in {err}");
    }
}
