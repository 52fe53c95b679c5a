//! Secure by default (docs/security.md): TLS on both listeners, the
//! identities certificates carry, and who may call what.
//!
//! - [`authz`]: the authorization decision, a pure function of the plane, the
//!   node's own cluster, the caller's identity and the RPC.
//! - [`layer`]: the tower layer that applies it in front of the tonic services.
//! - [`server`]: the rustls server configuration (certificates and CA reread
//!   when their files change) and the TLS accept loop.
//! - [`expiry`]: when the node's own certificate expires (a metrics gauge).

pub mod authz;
pub mod expiry;
pub mod layer;
pub mod server;
