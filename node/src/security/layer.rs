//! Applies [`authorize`] in front of the tonic services of one listener: the
//! caller's identity comes from the certificate the TLS handshake verified
//! (tonic's `TlsConnectInfo`), a refusal is answered as a gRPC status before
//! any handler runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::Either;
use raftkv_certs::ClusterRef;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::authz::{Caller, Plane, authorize};

/// The answer to a refused call (a gRPC status, no handler run).
pub type Refused<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

/// Adds [`AuthzService`] to a tonic `Server::builder().layer(..)`.
#[derive(Debug, Clone)]
pub struct AuthzLayer {
    pub plane: Plane,
    /// The node's own cluster; `None` when TLS is off (every call passes:
    /// a plaintext listener has no identities to check).
    pub cluster: Option<Arc<ClusterRef>>,
}

impl<S> tower_layer::Layer<S> for AuthzLayer {
    type Service = AuthzService<S>;

    fn layer(&self, inner: S) -> AuthzService<S> {
        AuthzService {
            inner,
            plane: self.plane,
            cluster: self.cluster.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthzService<S> {
    inner: S,
    plane: Plane,
    cluster: Option<Arc<ClusterRef>>,
}

/// The caller as the handshake left it.
pub fn caller_of<B>(req: &http::Request<B>) -> Caller {
    let certs = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.peer_certs());
    let Some(certs) = certs else {
        return Caller::Anonymous;
    };
    let Some(leaf) = certs.first() else {
        return Caller::Anonymous;
    };
    match raftkv_certs::identity_of_der(leaf) {
        Ok(id) => Caller::Known(id),
        Err(e) => Caller::Unusable(e.to_string()),
    }
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for AuthzService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Default + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    /// The inner future itself when the call passes (every call on a
    /// plaintext listener): boxing it cost an allocation and a copy of the
    /// future on every request and peer RPC. Only a refusal is boxed.
    type Future = Either<S::Future, Refused<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(cluster) = &self.cluster else {
            return Either::Left(self.inner.call(req));
        };
        let caller = caller_of(&req);
        match authorize(self.plane, cluster, &caller, req.uri().path()) {
            Ok(()) => Either::Left(self.inner.call(req)),
            Err(d) => {
                tracing::debug!(plane = ?self.plane, path = req.uri().path(), reason = %d.message, "refused");
                let status = tonic::Status::new(d.code, d.message);
                Either::Right(Box::pin(async move { Ok(status.into_http()) }))
            }
        }
    }
}
