//! The certificates of a RaftCluster with `spec.tls` on (docs/security.md,
//! "Kubernetes"). This module is pure: names, what each certificate lists,
//! whether one is due for renewal, and the Secrets that hold them.
//! [`ensure`] reads and writes the Secrets.
//!
//! Per cluster, operator-managed (the default):
//! - `<name>-ca`: the CA certificate and key (`ca.crt`, `ca.key`), made once,
//!   never replaced by the operator;
//! - `<name>-tls`: the nodes' certificate, one for every pod (`ca.crt`,
//!   `tls.crt`, `tls.key`): a StatefulSet mounts the same Secret in every pod,
//!   so the certificate names all of them with a wildcard;
//! - `<name>-client`: a `kv` client certificate for applications;
//! - `<name>-admin`: an `admin` client certificate for people.
//!
//! With `spec.tls.secretName` the user brings the node Secret (and
//! `operatorSecretName`, the operator's admin certificate) and the operator
//! makes none of them.

pub mod credentials;
pub mod ensure;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use raftkv_certs::{ClusterRef, Issued, LEAF_VALIDITY, LeafRequest, Role, Validity};

use crate::crd::{RaftCluster, TlsSpec};
use crate::resources::{owned_meta, peer_service_name, read_name};

/// `app.kubernetes.io/component` of the Secrets.
pub const COMPONENT_TLS: &str = "tls";
/// Keys of the Secrets (the `kubernetes.io/tls` layout, plus the CA).
pub const CA_CRT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
/// Annotation on a leaf Secret: the `raftkv.dev/renew-certificates` value its
/// certificate was issued for, so one request renews once.
pub const RENEWED_FOR_ANNOTATION: &str = "raftkv.dev/renewed-for";
/// Shortest `certificateLifetime`: renewal is checked at every reconcile, but a
/// certificate must outlive a few of them and the kubelet's Secret refresh
/// (about a minute).
pub const LIFETIME_MIN: Duration = Duration::from_secs(3600);

pub fn ca_secret_name(cluster: &str) -> String {
    format!("{cluster}-ca")
}
pub fn node_secret_name(cluster: &str) -> String {
    format!("{cluster}-tls")
}
pub fn client_secret_name(cluster: &str) -> String {
    format!("{cluster}-client")
}
pub fn admin_secret_name(cluster: &str) -> String {
    format!("{cluster}-admin")
}

/// The Secret the pods mount: the operator's, or `spec.tls.secretName`.
pub fn mounted_secret_name(cluster: &str, tls: &TlsSpec) -> String {
    tls.secret_name
        .clone()
        .unwrap_or_else(|| node_secret_name(cluster))
}

/// DNS names of the node certificate: every pod behind the peer Service (a
/// wildcard: one certificate serves every pod), the client and read Services
/// in each form a client may use, and `localhost`.
pub fn node_dns_names(cluster: &str, ns: &str) -> Vec<String> {
    let peer = peer_service_name(cluster);
    let mut out = vec![
        format!("*.{peer}.{ns}.svc"),
        format!("*.{peer}.{ns}.svc.cluster.local"),
    ];
    for svc in [cluster.to_string(), read_name(cluster)] {
        out.push(svc.clone());
        out.push(format!("{svc}.{ns}"));
        out.push(format!("{svc}.{ns}.svc"));
        out.push(format!("{svc}.{ns}.svc.cluster.local"));
    }
    out.push("localhost".into());
    out
}

/// The name a pod's certificate is verified for, whatever address it is
/// dialed at (a pod IP, a DNS name in another cluster domain).
pub fn pod_server_name(pod: &str, cluster: &str, ns: &str) -> String {
    format!("{pod}.{}.{ns}.svc", peer_service_name(cluster))
}

/// The name the client Service's certificate is verified for.
pub fn service_server_name(cluster: &str, ns: &str) -> String {
    format!("{cluster}.{ns}.svc")
}

/// Whether the cluster runs TLS: `spec.tls.enabled`, except for a cluster
/// whose voters' StatefulSet was made before TLS existed (its pod template
/// has no `RAFT_TLS_CERT`). The API server reads such a RaftCluster with the
/// schema's default `enabled: true`, but its members speak plaintext, and a
/// pod restarted with TLS could not talk to them: it stays plaintext.
pub fn tls_enabled(spec_enabled: bool, existing_voters: Option<&StatefulSet>) -> bool {
    if !spec_enabled {
        return false;
    }
    let Some(sts) = existing_voters else {
        return true;
    };
    sts.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| {
            p.containers
                .iter()
                .any(|c| c.env.iter().flatten().any(|e| e.name == "RAFT_TLS_CERT"))
        })
        .unwrap_or(true)
}

/// How long leaf certificates live and when they are renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub lifetime: Duration,
    pub renew_before: Duration,
}

impl Lifetimes {
    /// From the spec: `certificateLifetime` (default 90 days) and `renewBefore`
    /// (default a third of the lifetime). The error names the field.
    pub fn of(tls: &TlsSpec) -> Result<Lifetimes, String> {
        let parse = |field: &str, v: &Option<String>| -> Result<Option<Duration>, String> {
            v.as_deref()
                .map(|s| {
                    humantime::parse_duration(s)
                        .map_err(|e| format!("spec.tls.{field} {s:?} is not a duration: {e}"))
                })
                .transpose()
        };
        let lifetime =
            parse("certificateLifetime", &tls.certificate_lifetime)?.unwrap_or(LEAF_VALIDITY);
        if lifetime < LIFETIME_MIN {
            return Err(format!(
                "spec.tls.certificateLifetime must be at least 1h (it is {})",
                humantime::format_duration(lifetime)
            ));
        }
        let renew_before = parse("renewBefore", &tls.renew_before)?.unwrap_or(lifetime / 3);
        if renew_before >= lifetime {
            return Err(format!(
                "spec.tls.renewBefore ({}) must be shorter than the certificate lifetime ({}), \
                 or every certificate is due for renewal as soon as it is made",
                humantime::format_duration(renew_before),
                humantime::format_duration(lifetime)
            ));
        }
        Ok(Lifetimes {
            lifetime,
            renew_before,
        })
    }
}

/// The three leaf certificates the operator keeps in Secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    Node,
    Client,
    Admin,
}

impl Leaf {
    pub const ALL: [Leaf; 3] = [Leaf::Node, Leaf::Client, Leaf::Admin];

    pub fn secret_name(self, cluster: &str) -> String {
        match self {
            Leaf::Node => node_secret_name(cluster),
            Leaf::Client => client_secret_name(cluster),
            Leaf::Admin => admin_secret_name(cluster),
        }
    }

    /// What the certificate says: the `peer` identity with the DNS names for
    /// the nodes, the `kv` or `admin` role for clients.
    pub fn request(
        self,
        cluster: &str,
        ns: &str,
        validity: Validity,
    ) -> raftkv_certs::Result<LeafRequest> {
        let cref = ClusterRef::new(ns, cluster)?;
        let req = match self {
            Leaf::Node => LeafRequest::node(
                &cref,
                cluster,
                &node_dns_names(cluster, ns)
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                // raftctl in the pod itself (`kubectl exec`) dials 127.0.0.1.
                &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            )?,
            Leaf::Client => LeafRequest::client(&cref, Role::Kv, "client")?,
            Leaf::Admin => LeafRequest::client(&cref, Role::Admin, "admin")?,
        };
        Ok(req.with_validity(validity))
    }
}

/// The operator's own admin identity, issued in memory at each start (and
/// when the CA changes): it never leaves the process.
pub fn operator_request(
    cluster: &str,
    ns: &str,
    validity: Validity,
) -> raftkv_certs::Result<LeafRequest> {
    let cref = ClusterRef::new(ns, cluster)?;
    Ok(LeafRequest::client(&cref, Role::Admin, "operator")?.with_validity(validity))
}

/// Why a leaf certificate is (re)issued now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// No Secret yet, or one without a certificate.
    Missing,
    /// Less than `renewBefore` of its lifetime left.
    Expiring { not_after: SystemTime },
    /// Signed by another CA than the one in `<name>-ca` (the CA Secret was
    /// replaced by hand).
    OtherCa,
    /// The certificate in the Secret cannot be read.
    Unreadable(String),
    /// `raftkv.dev/renew-certificates` has a value not yet acted on.
    Requested(String),
}

impl Renewal {
    /// For the Event and the log.
    pub fn describe(&self) -> String {
        match self {
            Renewal::Missing => "no certificate yet".into(),
            Renewal::Expiring { not_after } => format!(
                "expires at {}",
                humantime::format_rfc3339_seconds(*not_after)
            ),
            Renewal::OtherCa => "signed by another CA than the cluster's".into(),
            Renewal::Unreadable(e) => format!("the certificate in the Secret is unreadable: {e}"),
            Renewal::Requested(v) => {
                format!("renewal requested (raftkv.dev/renew-certificates={v})")
            }
        }
    }
}

/// A Secret's data as text (certificates and keys are PEM).
pub fn secret_text(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect()
}

/// Whether the leaf certificate in `existing` (its data and annotations) must
/// be (re)issued now, and why; `None` keeps it.
pub fn renewal_due(
    existing: Option<(&BTreeMap<String, String>, Option<&str>)>,
    ca_pem: &str,
    now: SystemTime,
    lifetimes: &Lifetimes,
    requested: Option<&str>,
) -> Option<Renewal> {
    let Some((data, renewed_for)) = existing else {
        return Some(Renewal::Missing);
    };
    let (Some(cert), Some(_key)) = (data.get(TLS_CRT), data.get(TLS_KEY)) else {
        return Some(Renewal::Missing);
    };
    if data.get(CA_CRT).map(String::as_str) != Some(ca_pem) {
        return Some(Renewal::OtherCa);
    }
    let validity = match raftkv_certs::validity_of_pem(cert) {
        Ok(v) => v,
        Err(e) => return Some(Renewal::Unreadable(e.to_string())),
    };
    if let Some(r) = requested
        && Some(r) != renewed_for
    {
        return Some(Renewal::Requested(r.to_string()));
    }
    let left = validity
        .not_after
        .duration_since(now)
        .unwrap_or(Duration::ZERO);
    (left < lifetimes.renew_before).then_some(Renewal::Expiring {
        not_after: validity.not_after,
    })
}

fn bytes(map: BTreeMap<&str, &str>) -> BTreeMap<String, ByteString> {
    map.into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

/// `<name>-ca`, owned by the RaftCluster (it goes when the cluster goes: the
/// members' data is then unreachable anyway).
pub fn ca_secret(rc: &RaftCluster, ca_pem: &str, ca_key_pem: &str) -> Secret {
    let cluster = rc.metadata.name.clone().unwrap_or_default();
    Secret {
        metadata: owned_meta(rc, ca_secret_name(&cluster), COMPONENT_TLS),
        type_: Some("Opaque".into()),
        data: Some(bytes(BTreeMap::from([
            (CA_CRT, ca_pem),
            (CA_KEY, ca_key_pem),
        ]))),
        ..Default::default()
    }
}

/// A leaf Secret (`kubernetes.io/tls` with `ca.crt`), recording the renewal
/// request it was issued for.
pub fn leaf_secret(
    rc: &RaftCluster,
    leaf: Leaf,
    ca_pem: &str,
    issued: &Issued,
    renewed_for: Option<&str>,
) -> Secret {
    let cluster = rc.metadata.name.clone().unwrap_or_default();
    let mut metadata = owned_meta(rc, leaf.secret_name(&cluster), COMPONENT_TLS);
    if let Some(v) = renewed_for {
        metadata.annotations = Some(BTreeMap::from([(
            RENEWED_FOR_ANNOTATION.to_string(),
            v.to_string(),
        )]));
    }
    Secret {
        metadata,
        type_: Some("kubernetes.io/tls".into()),
        data: Some(bytes(BTreeMap::from([
            (CA_CRT, ca_pem),
            (TLS_CRT, issued.cert_pem.as_str()),
            (TLS_KEY, issued.key_pem.as_str()),
        ]))),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
