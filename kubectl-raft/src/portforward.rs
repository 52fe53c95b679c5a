//! The production [`Opener`]: one Kubernetes port-forward stream to a pod's
//! port per relayed connection (the API server's `pods/portforward`, as
//! `kubectl port-forward` uses; it needs that RBAC verb on the pod).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::Portforwarder;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use crate::relay::{BoxedStream, OpenFuture, Opener};

pub struct PodPortForward {
    pub pods: Api<Pod>,
    pub pod: String,
    pub port: u16,
}

impl Opener for PodPortForward {
    fn open(&self) -> OpenFuture<'_> {
        Box::pin(async move {
            let mut forwarder = self
                .pods
                .portforward(&self.pod, &[self.port])
                .await
                .map_err(io::Error::other)?;
            let stream = forwarder.take_stream(self.port).ok_or_else(|| {
                io::Error::other(format!(
                    "the port-forward has no stream for port {}",
                    self.port
                ))
            })?;
            Ok(Box::new(Forwarded { stream, forwarder }) as BoxedStream)
        })
    }

    fn describe(&self) -> String {
        format!("pod {} port {} (port-forward)", self.pod, self.port)
    }
}

/// The stream, with the forwarder whose task moves its bytes: the task is
/// stopped with the stream.
struct Forwarded {
    stream: DuplexStream,
    forwarder: Portforwarder,
}

impl Drop for Forwarded {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

impl AsyncRead for Forwarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Forwarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
