//! Who may call what, as a pure function (docs/security.md, "Authorization").
//!
//! - Peer plane: only a `peer` certificate of this node's own cluster.
//! - Client plane: the gRPC health service is open to anyone who completed
//!   the TLS handshake; the KV service (Put, Get, Delete, CompareAndSwap,
//!   Range and the Watch stream) and `Cluster/Status` need any identity
//!   of this cluster (`kv`, `admin` or `peer`), or none under
//!   `--client-auth optional`; every other Cluster RPC (membership changes,
//!   init, transfer, snapshot, ForceNewCluster, and any RPC added later) needs `admin` or
//!   `peer` (a node forwarding a request it has already authorized).

use raftkv_certs::{ClusterRef, Identity, Role};

/// Which listener a call arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    Client,
    Peer,
}

/// What a call needs, by its gRPC path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health checks: no identity needed.
    Open,
    /// Reading and writing keys, Status: any identity of the cluster.
    Data,
    /// Changing the cluster: the admin role.
    Admin,
}

/// The access a client-plane call needs. Anything not known to be harmless
/// needs admin (fail closed: a new Cluster RPC is admin-only until listed).
pub fn access_of(path: &str) -> Access {
    let path = path.trim_start_matches('/');
    match path.split_once('/') {
        Some(("grpc.health.v1.Health", _)) => Access::Open,
        Some(("raftkv.v1.KV", _)) => Access::Data,
        Some(("raftkv.v1.Cluster", "Status")) => Access::Data,
        _ => Access::Admin,
    }
}

/// How the handshake left the caller: no certificate, one that names a
/// raftkv identity, or one that does not parse as such.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Known(Identity),
    /// The certificate is signed by our CA but has no usable identity.
    Unusable(String),
}

/// A refusal: which gRPC code, and a message that names what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub code: tonic::Code,
    pub message: String,
}

fn denied(code: tonic::Code, message: String) -> Result<(), Denied> {
    Err(Denied { code, message })
}

/// The decision. `path` is the gRPC path (`/raftkv.v1.Cluster/AddLearner`).
pub fn authorize(
    plane: Plane,
    own: &ClusterRef,
    caller: &Caller,
    path: &str,
) -> Result<(), Denied> {
    use tonic::Code::{PermissionDenied, Unauthenticated};
    let method = path.trim_start_matches('/');
    let access = match plane {
        Plane::Peer => None,
        Plane::Client => Some(access_of(path)),
    };
    if access == Some(Access::Open) {
        return Ok(());
    }
    let id = match caller {
        Caller::Known(id) => id,
        Caller::Anonymous => {
            return match access {
                Some(Access::Data) => Ok(()), // --client-auth optional
                Some(Access::Admin) => denied(
                    Unauthenticated,
                    format!(
                        "{method} requires a client certificate with the admin role (give --cert and --key)"
                    ),
                ),
                _ => denied(
                    Unauthenticated,
                    format!("{method}: the peer plane requires a peer certificate"),
                ),
            };
        }
        Caller::Unusable(why) => {
            return denied(
                PermissionDenied,
                format!("{method}: certificate refused: {why}"),
            );
        }
    };
    if id.cluster != *own {
        return denied(
            PermissionDenied,
            format!(
                "{method}: the certificate {id} is for cluster {}, this node belongs to cluster {own}",
                id.cluster
            ),
        );
    }
    match (access, id.role) {
        (None, Role::Peer) => Ok(()),
        (None, role) => denied(
            PermissionDenied,
            format!(
                "{method}: the peer plane requires the peer role; the certificate {id} has role {role}"
            ),
        ),
        (Some(_), Role::Peer | Role::Admin) => Ok(()),
        (Some(Access::Data), Role::Kv) => Ok(()),
        (Some(_), role) => denied(
            PermissionDenied,
            format!(
                "{method} requires the admin role; the client certificate {id} has role {role}"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> ClusterRef {
        ClusterRef::new("default", "demo").unwrap()
    }

    fn caller(cluster: &ClusterRef, role: Role) -> Caller {
        Caller::Known(Identity::new(cluster.clone(), role, "x").unwrap())
    }

    const ADMIN_RPCS: &[&str] = &[
        "/raftkv.v1.Cluster/Initialize",
        "/raftkv.v1.Cluster/AddLearner",
        "/raftkv.v1.Cluster/ChangeMembership",
        "/raftkv.v1.Cluster/RemoveMember",
        "/raftkv.v1.Cluster/TransferLeader",
        "/raftkv.v1.Cluster/Snapshot",
        // Reads only, but a backup holds every key.
        "/raftkv.v1.Cluster/Backup",
        // Discards the other members' data: the most dangerous call there is.
        "/raftkv.v1.Cluster/ForceNewCluster",
        // Makes the node a new cluster with any state the caller sends.
        "/raftkv.v1.Cluster/Restore",
        // Not yet written: fail closed.
        "/raftkv.v1.Cluster/SomethingNew",
        "/raftkv.v1.Other/Call",
    ];
    const DATA_RPCS: &[&str] = &[
        "/raftkv.v1.KV/Put",
        "/raftkv.v1.KV/Get",
        "/raftkv.v1.KV/Range",
        "/raftkv.v1.KV/Watch",
        "/raftkv.v1.Cluster/Status",
    ];

    #[test]
    fn watch_is_a_kv_call_reading_keys() {
        // Watch shows values like Get: the kv role may, anyone may under
        // --client-auth optional, another cluster's certificate may not.
        assert_eq!(access_of("/raftkv.v1.KV/Watch"), Access::Data);
        let rpc = "/raftkv.v1.KV/Watch";
        authorize(Plane::Client, &own(), &caller(&own(), Role::Kv), rpc).unwrap();
        authorize(Plane::Client, &own(), &Caller::Anonymous, rpc).unwrap();
        let other = ClusterRef::new("default", "other").unwrap();
        let e = authorize(Plane::Client, &own(), &caller(&other, Role::Kv), rpc).unwrap_err();
        assert_eq!(e.code, tonic::Code::PermissionDenied);
        // Not on the peer plane.
        assert!(authorize(Plane::Peer, &own(), &caller(&own(), Role::Kv), rpc).is_err());
    }

    #[test]
    fn every_cluster_mutation_needs_the_admin_role() {
        let kv = caller(&own(), Role::Kv);
        for rpc in ADMIN_RPCS {
            let e = authorize(Plane::Client, &own(), &kv, rpc).unwrap_err();
            assert_eq!(e.code, tonic::Code::PermissionDenied, "{rpc}");
            assert!(
                e.message.contains("requires the admin role"),
                "{}",
                e.message
            );
            assert!(e.message.contains("has role kv"), "{}", e.message);
            for role in [Role::Admin, Role::Peer] {
                authorize(Plane::Client, &own(), &caller(&own(), role), rpc).unwrap();
            }
        }
    }

    #[test]
    fn reads_writes_and_status_are_open_to_any_identity_of_the_cluster() {
        for rpc in DATA_RPCS {
            for role in [Role::Kv, Role::Admin, Role::Peer] {
                authorize(Plane::Client, &own(), &caller(&own(), role), rpc).unwrap();
            }
        }
    }

    #[test]
    fn another_clusters_certificate_is_refused_on_both_planes() {
        let other = ClusterRef::new("default", "other").unwrap();
        for (plane, role, rpc) in [
            (Plane::Client, Role::Admin, "/raftkv.v1.KV/Get"),
            (Plane::Peer, Role::Peer, "/raftkv.v1.RaftPeer/AppendEntries"),
        ] {
            let e = authorize(plane, &own(), &caller(&other, role), rpc).unwrap_err();
            assert_eq!(e.code, tonic::Code::PermissionDenied);
            assert!(
                e.message.contains("for cluster default/other"),
                "{}",
                e.message
            );
            assert!(
                e.message.contains("belongs to cluster default/demo"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn only_peers_of_the_cluster_reach_the_peer_plane() {
        let rpc = "/raftkv.v1.RaftPeer/AppendEntries";
        authorize(Plane::Peer, &own(), &caller(&own(), Role::Peer), rpc).unwrap();
        for c in [
            caller(&own(), Role::Admin),
            caller(&own(), Role::Kv),
            Caller::Anonymous,
            Caller::Unusable("no identity".into()),
        ] {
            assert!(authorize(Plane::Peer, &own(), &c, rpc).is_err(), "{c:?}");
        }
    }

    #[test]
    fn without_a_certificate_only_health_and_data_under_optional_auth() {
        // With --client-auth required the handshake already refused them; with
        // optional, anonymous clients may use data RPCs but never admin ones.
        authorize(
            Plane::Client,
            &own(),
            &Caller::Anonymous,
            "/grpc.health.v1.Health/Check",
        )
        .unwrap();
        for rpc in DATA_RPCS {
            authorize(Plane::Client, &own(), &Caller::Anonymous, rpc).unwrap();
        }
        for rpc in ADMIN_RPCS {
            let e = authorize(Plane::Client, &own(), &Caller::Anonymous, rpc).unwrap_err();
            assert_eq!(e.code, tonic::Code::Unauthenticated);
            assert!(e.message.contains("admin role"), "{}", e.message);
        }
    }

    #[test]
    fn a_certificate_without_identity_is_refused_with_the_reason() {
        let c = Caller::Unusable("no raftkv:// URI SAN".into());
        let e = authorize(Plane::Client, &own(), &c, "/raftkv.v1.KV/Get").unwrap_err();
        assert_eq!(e.code, tonic::Code::PermissionDenied);
        assert!(e.message.contains("no raftkv:// URI SAN"), "{}", e.message);
    }
}
