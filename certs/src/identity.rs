//! Who a certificate speaks for: one `raftkv://` URI SAN per certificate
//! (docs/security.md, "Identities and roles").
//!
//! ```text
//! raftkv://<namespace>/<cluster>/peer/<name>          a member (raft-node)
//! raftkv://<namespace>/<cluster>/client/admin/<name>  KV + every Cluster RPC
//! raftkv://<namespace>/<cluster>/client/kv/<name>     KV + Status only
//! ```
//!
//! The cluster is named by its Kubernetes namespace and `RaftCluster` name
//! (`raft-node local` uses `local/local`); the last segment names the holder
//! (pod, user, operator) for logs only. Every segment is a lowercase DNS
//! label-like word, so the URI needs no escaping.

use std::fmt;
use std::str::FromStr;

/// The URI scheme of every raftkv identity.
pub const SCHEME: &str = "raftkv://";

/// Longest segment accepted (a DNS label's limit).
pub const SEGMENT_BYTES_MAX: usize = 63;

/// A cluster: its namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterRef {
    pub namespace: String,
    pub name: String,
}

impl ClusterRef {
    pub fn new(namespace: &str, name: &str) -> Result<Self, IdentityError> {
        check_segment("namespace", namespace)?;
        check_segment("cluster", name)?;
        Ok(ClusterRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for ClusterRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the holder of a certificate may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A member of the cluster: the peer plane, and (to forward requests it
    /// has already authorized) everything on the client plane.
    Peer,
    /// A client allowed every Cluster RPC (membership, init, transfer, snapshot).
    Admin,
    /// A client allowed the KV service and `Status`.
    Kv,
}

impl Role {
    /// The path segment(s) naming the role in the URI.
    fn path(self) -> &'static str {
        match self {
            Role::Peer => "peer",
            Role::Admin => "client/admin",
            Role::Kv => "client/kv",
        }
    }

    /// The name people use (`raftkv-certs` calls, error messages).
    pub fn name(self) -> &'static str {
        match self {
            Role::Peer => "peer",
            Role::Admin => "admin",
            Role::Kv => "kv",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "peer" => Ok(Role::Peer),
            "admin" => Ok(Role::Admin),
            "kv" => Ok(Role::Kv),
            other => Err(IdentityError(format!(
                "unknown role {other:?} (expected peer, admin or kv)"
            ))),
        }
    }
}

/// One certificate's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub cluster: ClusterRef,
    pub role: Role,
    /// The holder (pod name, user); for logs and messages only.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdentityError(pub String);

fn check_segment(what: &str, s: &str) -> Result<(), IdentityError> {
    let ok = !s.is_empty()
        && s.len() <= SEGMENT_BYTES_MAX
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(IdentityError(format!(
            "{what} {s:?} must be 1-{SEGMENT_BYTES_MAX} characters of a-z, 0-9, '-', '.', '_'"
        )))
    }
}

impl Identity {
    pub fn new(cluster: ClusterRef, role: Role, name: &str) -> Result<Self, IdentityError> {
        check_segment("name", name)?;
        Ok(Identity {
            cluster,
            role,
            name: name.to_string(),
        })
    }

    /// The URI SAN, e.g. `raftkv://default/demo/peer/demo-0`.
    pub fn uri(&self) -> String {
        format!(
            "{SCHEME}{}/{}/{}/{}",
            self.cluster.namespace,
            self.cluster.name,
            self.role.path(),
            self.name
        )
    }

    /// Parses a URI SAN. `Ok(None)` for a URI of another scheme (a
    /// certificate may carry other URIs, e.g. SPIFFE IDs).
    pub fn parse(uri: &str) -> Result<Option<Self>, IdentityError> {
        let Some(rest) = uri.strip_prefix(SCHEME) else {
            return Ok(None);
        };
        let bad = |why: &str| IdentityError(format!("identity {uri:?}: {why}"));
        let parts: Vec<&str> = rest.split('/').collect();
        let (ns, cluster, role, name) = match parts.as_slice() {
            [ns, cluster, "peer", name] => (*ns, *cluster, Role::Peer, *name),
            [ns, cluster, "client", role, name] => {
                let role = match *role {
                    "admin" => Role::Admin,
                    "kv" => Role::Kv,
                    other => return Err(bad(&format!("unknown client role {other:?}"))),
                };
                (*ns, *cluster, role, *name)
            }
            _ => {
                return Err(bad(
                    "expected <namespace>/<cluster>/peer/<name> or <namespace>/<cluster>/client/<admin|kv>/<name>",
                ));
            }
        };
        let cluster = ClusterRef::new(ns, cluster).map_err(|e| bad(&e.0))?;
        Identity::new(cluster, role, name)
            .map(Some)
            .map_err(|e| bad(&e.0))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> ClusterRef {
        ClusterRef::new("default", "demo").unwrap()
    }

    #[test]
    fn every_role_round_trips_through_its_uri() {
        for (role, uri) in [
            (Role::Peer, "raftkv://default/demo/peer/demo-0"),
            (Role::Admin, "raftkv://default/demo/client/admin/demo-0"),
            (Role::Kv, "raftkv://default/demo/client/kv/demo-0"),
        ] {
            let id = Identity::new(demo(), role, "demo-0").unwrap();
            assert_eq!(id.uri(), uri);
            assert_eq!(Identity::parse(uri).unwrap(), Some(id));
        }
    }

    #[test]
    fn other_schemes_are_not_ours() {
        assert_eq!(Identity::parse("spiffe://x/y").unwrap(), None);
    }

    #[test]
    fn malformed_identities_are_refused() {
        for bad in [
            "raftkv://default/demo/peer",
            "raftkv://default/demo/client/root/x",
            "raftkv://default/demo/peer/a/b",
            "raftkv://Default/demo/peer/a",
            "raftkv:///demo/peer/a",
            "raftkv://default/demo/peer/a%2f",
        ] {
            assert!(Identity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segments_are_bounded() {
        let long = "a".repeat(SEGMENT_BYTES_MAX + 1);
        assert!(ClusterRef::new("default", &long).is_err());
        assert!(ClusterRef::new("default", &long[1..]).is_ok());
    }
}
