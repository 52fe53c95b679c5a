//! A local TCP relay: a listener on `127.0.0.1:0` whose every accepted
//! connection is spliced to a fresh stream from an [`Opener`], bytes copied
//! both ways until either side closes. The raftkv client dials the relay's
//! address as it would dial a node.
//!
//! In production the opener is a Kubernetes port-forward to one pod
//! ([`crate::portforward`], what `kubectl port-forward` does); the tests drive
//! this same relay with [`TcpOpener`], which dials a real `raft-node` over
//! TCP, so the relay is tested without a cluster.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A byte stream both ways.
pub trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

pub type BoxedStream = Box<dyn Duplex>;
pub type OpenFuture<'a> = Pin<Box<dyn Future<Output = io::Result<BoxedStream>> + Send + 'a>>;

/// Opens one stream to the remote end per accepted local connection.
pub trait Opener: Send + Sync + 'static {
    fn open(&self) -> OpenFuture<'_>;
    /// What the streams go to, for error messages (`pod demo-0 port 7000`).
    fn describe(&self) -> String;
}

/// An opener that dials a TCP address: the tests' stand-in for a port-forward.
pub struct TcpOpener(pub SocketAddr);

impl Opener for TcpOpener {
    fn open(&self) -> OpenFuture<'_> {
        Box::pin(async move {
            let s = TcpStream::connect(self.0).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as BoxedStream)
        })
    }

    fn describe(&self) -> String {
        self.0.to_string()
    }
}

/// A running relay. Dropping it stops accepting (connections already
/// relayed run until either side closes).
pub struct Relay {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    last_error: Arc<Mutex<Option<String>>>,
    target: String,
}

impl Relay {
    /// Binds `127.0.0.1:0` and starts relaying to `opener`'s streams.
    pub async fn start(opener: Arc<dyn Opener>) -> io::Result<Relay> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let last_error = Arc::new(Mutex::new(None));
        let errors = last_error.clone();
        let target = opener.describe();
        let accept = tokio::spawn(async move {
            loop {
                let (local, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        record(&errors, format!("accepting a local connection: {e}"));
                        continue;
                    }
                };
                let _ = local.set_nodelay(true);
                let opener = opener.clone();
                let errors = errors.clone();
                tokio::spawn(async move {
                    let mut local = local;
                    match opener.open().await {
                        Ok(mut remote) => {
                            // Ends when either side closes or fails; a reset
                            // is how a gRPC connection often ends: not news.
                            let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
                        }
                        // The local connection closes: the client sees a
                        // refused connection and says so; the reason is here.
                        Err(e) => record(
                            &errors,
                            format!("cannot open a stream to {}: {e}", opener.describe()),
                        ),
                    }
                });
            }
        });
        Ok(Relay {
            addr,
            accept,
            last_error,
            target,
        })
    }

    /// `127.0.0.1:<port>`: the endpoint to give the raftkv client.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// The last failure to open a stream since the last call, if any: why a
    /// call through the relay found no server.
    pub fn take_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|mut e| e.take())
    }

    /// What the relay forwards to.
    pub fn target(&self) -> &str {
        &self.target
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn record(errors: &Mutex<Option<String>>, e: String) {
    if let Ok(mut last) = errors.lock() {
        *last = Some(e);
    }
}
