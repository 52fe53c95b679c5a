//! What the gRPC health service last said, for the plaintext metrics
//! listener's `/readyz` and `/livez` (kubelet's gRPC probes cannot speak TLS,
//! so with TLS on the pods are probed over HTTP there; docs/security.md).
//! Written by `crate::health`, read by `observability::metrics`; a leaf module
//! so neither imports the other.

use std::sync::atomic::{AtomicBool, Ordering};

/// The two answers (one node per process, like the metrics registry).
pub struct Probes {
    ready: AtomicBool,
    alive: AtomicBool,
}

impl Probes {
    /// Ready: the default gRPC health service is SERVING.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    /// Alive: the liveness health service is SERVING.
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
    pub fn set_alive(&self, alive: bool) {
        self.alive.store(alive, Ordering::Relaxed);
    }
}

/// Neither ready nor alive until `crate::health` has looked at the node: a
/// process still recovering its log is not yet live (the startup probe waits
/// for it).
pub static PROBES: Probes = Probes {
    ready: AtomicBool::new(false),
    alive: AtomicBool::new(false),
};
