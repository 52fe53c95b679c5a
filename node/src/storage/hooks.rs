//! What storage tells the rest of the node without knowing who listens: the
//! node's observability implements [`StorageHooks`] (apply spans of traced
//! writes, snapshot spans and counters); storage imports nothing of it.

use tracing::Span;

/// Called by the state machine. Every method has a no-op default, so tests
/// and tools that open storage directly need nothing.
pub trait StorageHooks: Send + Sync + 'static {
    /// The span to apply the entry at `index` in, if that entry belongs to a
    /// traced write (and the hooks forget it). Called once per applied entry:
    /// must be cheap when nothing is traced.
    fn apply_span(&self, _index: u64) -> Option<Span> {
        None
    }

    /// The span a snapshot build runs in.
    fn snapshot_build_span(&self) -> Span {
        Span::none()
    }

    /// A snapshot up to `index` was built and persisted.
    fn snapshot_built(&self, _index: u64) {}
}

/// No hooks: what storage uses until the node installs its own.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl StorageHooks for NoHooks {}
