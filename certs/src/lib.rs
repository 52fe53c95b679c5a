//! Certificates of a raftkv cluster, made with rcgen (no OpenSSL): a CA per
//! cluster, node certificates (server + client use, DNS/IP SANs and the
//! `peer` identity) and client certificates carrying a role. Pure: nothing
//! here reads a clock other than "now" for default validity, and only
//! [`Issued::write`] touches the filesystem. The operator and
//! `raft-node local --tls` drive it; docs/security.md describes the layout.

pub mod identity;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

pub use identity::{ClusterRef, Identity, IdentityError, Role};

/// Default lifetime of a CA certificate.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Default lifetime of a node or client certificate: short enough that a
/// leaked key expires, long enough that a missed rotation is not an outage.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// Certificates are valid from this long before they are made, so a peer
/// whose clock is slightly behind accepts a fresh one.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("{0}")]
    Parse(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From now (less [`CLOCK_SKEW_ALLOWANCE`]) for `d`.
    pub fn from_now(d: Duration) -> Self {
        let now = SystemTime::now();
        Validity {
            not_before: now - CLOCK_SKEW_ALLOWANCE,
            not_after: now + d,
        }
    }

    fn apply(&self, params: &mut CertificateParams) {
        params.not_before = OffsetDateTime::from(self.not_before);
        params.not_after = OffsetDateTime::from(self.not_after);
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// Writes `<dir>/<stem>.crt` and `<dir>/<stem>.key` (the key readable
    /// by its owner only), each replaced atomically (written aside, then
    /// renamed), so a reader never sees half a file. Returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        write_atomic(&key, self.key_pem.as_bytes(), 0o600)?;
        write_atomic(&cert, self.cert_pem.as_bytes(), 0o644)?;
        Ok((cert, key))
    }
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// What a leaf certificate is for.
#[derive(Debug, Clone)]
pub struct LeafRequest {
    pub identity: Identity,
    /// DNS names the holder serves under (nodes: the pod's stable DNS names,
    /// the client Service's name, `localhost`).
    pub dns_names: Vec<String>,
    /// IP addresses the holder serves under (nodes started on loopback).
    pub ips: Vec<IpAddr>,
    pub validity: Validity,
}

impl LeafRequest {
    /// A member: usable as a server (client and peer listeners) and as a
    /// client (replication, forwarding).
    pub fn node(
        cluster: &ClusterRef,
        name: &str,
        dns_names: &[&str],
        ips: &[IpAddr],
    ) -> Result<Self> {
        Ok(LeafRequest {
            identity: Identity::new(cluster.clone(), Role::Peer, name)?,
            dns_names: dns_names.iter().map(|s| s.to_string()).collect(),
            ips: ips.to_vec(),
            validity: Validity::from_now(LEAF_VALIDITY),
        })
    }

    /// A client with `role` (`Admin` or `Kv`).
    pub fn client(cluster: &ClusterRef, role: Role, name: &str) -> Result<Self> {
        Ok(LeafRequest {
            identity: Identity::new(cluster.clone(), role, name)?,
            dns_names: Vec::new(),
            ips: Vec::new(),
            validity: Validity::from_now(LEAF_VALIDITY),
        })
    }

    pub fn with_validity(mut self, validity: Validity) -> Self {
        self.validity = validity;
        self
    }
}

/// A cluster's certificate authority.
pub struct Ca {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA for `cluster` (its common name names the cluster).
    pub fn generate(cluster: &ClusterRef, validity: Validity) -> Result<Ca> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("raftkv CA {cluster}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity.apply(&mut params);
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// An existing CA (e.g. read from a Kubernetes Secret) to issue more
    /// certificates with.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer: Issuer::from_ca_cert_pem(cert_pem, key)?,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a leaf certificate (with a fresh key) for `req`.
    pub fn issue(&self, req: &LeafRequest) -> Result<Issued> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let role = req.identity.role;
        params.distinguished_name.push(
            DnType::CommonName,
            format!("{} ({role})", req.identity.name),
        );
        params
            .subject_alt_names
            .push(SanType::URI(req.identity.uri().try_into()?));
        for dns in &req.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.clone().try_into()?));
        }
        for ip in &req.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match role {
            Role::Peer => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Role::Admin | Role::Kv => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        req.validity.apply(&mut params);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The raftkv identities (`raftkv://` URI SANs) of a DER certificate.
/// Other URIs are ignored; a malformed `raftkv://` URI is an error.
pub fn identities_of_der(der: &[u8]) -> Result<Vec<Identity>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Parse(format!("not an X.509 certificate: {e}")))?;
    let mut out = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Error::Parse(format!("bad subjectAltName: {e}")))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name
                && let Some(id) = Identity::parse(uri)?
            {
                out.push(id);
            }
        }
    }
    Ok(out)
}

/// The one raftkv identity of a DER certificate: an error if it has none
/// or several (a certificate speaks for one holder).
pub fn identity_of_der(der: &[u8]) -> Result<Identity> {
    let mut ids = identities_of_der(der)?;
    match ids.len() {
        1 => Ok(ids.remove(0)),
        0 => Err(Error::Parse(format!(
            "the certificate has no {}... URI SAN naming its cluster and role",
            identity::SCHEME
        ))),
        n => Err(Error::Parse(format!(
            "the certificate has {n} raftkv identities; exactly one is expected"
        ))),
    }
}

/// When the first certificate of a PEM text is valid (the operator decides
/// from it whether a certificate in a Secret is due for renewal).
pub fn validity_of_pem(pem: &str) -> Result<Validity> {
    let der = pem_certs_to_der(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Parse("no certificate in the PEM text".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| Error::Parse(format!("not an X.509 certificate: {e}")))?;
    let at = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
    };
    Ok(Validity {
        not_before: at(cert.validity().not_before),
        not_after: at(cert.validity().not_after),
    })
}

/// The DER bytes of every certificate in a PEM text.
pub fn pem_certs_to_der(pem: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| Error::Parse(format!("bad PEM: {e}")))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> ClusterRef {
        ClusterRef::new("default", "demo").unwrap()
    }

    #[test]
    fn validity_is_read_back_from_the_pem() {
        let ca = Ca::generate(&demo(), Validity::from_now(CA_VALIDITY)).unwrap();
        let asked = Validity::from_now(Duration::from_secs(3600));
        let leaf = ca
            .issue(
                &LeafRequest::client(&demo(), Role::Kv, "app")
                    .unwrap()
                    .with_validity(asked),
            )
            .unwrap();
        let got = validity_of_pem(&leaf.cert_pem).unwrap();
        // X.509 times have whole seconds.
        for (a, b) in [
            (got.not_before, asked.not_before),
            (got.not_after, asked.not_after),
        ] {
            let d = a.duration_since(b).unwrap_or_else(|e| e.duration());
            assert!(d < Duration::from_secs(2), "{a:?} vs {b:?}");
        }
        assert!(validity_of_pem("no pem here").is_err());
    }

    fn only_der(pem: &str) -> Vec<u8> {
        let mut ders = pem_certs_to_der(pem).unwrap();
        assert_eq!(ders.len(), 1);
        ders.remove(0)
    }

    #[test]
    fn a_node_certificate_carries_its_identity_names_and_both_usages() {
        let ca = Ca::generate(&demo(), Validity::from_now(CA_VALIDITY)).unwrap();
        let req = LeafRequest::node(
            &demo(),
            "demo-0",
            &["demo-0.demo-peer.default.svc"],
            &["127.0.0.1".parse().unwrap()],
        )
        .unwrap();
        let issued = ca.issue(&req).unwrap();
        let der = only_der(&issued.cert_pem);
        assert_eq!(identity_of_der(&der).unwrap(), req.identity);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth);
        assert!(eku.client_auth);
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        let text = format!("{:?}", san.general_names);
        assert!(text.contains("demo-0.demo-peer.default.svc"), "{text}");
        assert!(
            text.contains("127.0.0.1") || text.contains("[127, 0, 0, 1]"),
            "{text}"
        );
        // Signed by the CA, whose certificate is a CA's.
        let ca_der = only_der(ca.cert_pem());
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert!(ca_cert.is_ca());
        assert_eq!(cert.issuer(), ca_cert.subject());
    }

    #[test]
    fn a_client_certificate_carries_its_role_and_client_usage_only() {
        let ca = Ca::generate(&demo(), Validity::from_now(CA_VALIDITY)).unwrap();
        for role in [Role::Admin, Role::Kv] {
            let issued = ca
                .issue(&LeafRequest::client(&demo(), role, "alice").unwrap())
                .unwrap();
            let der = only_der(&issued.cert_pem);
            assert_eq!(identity_of_der(&der).unwrap().role, role);
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.client_auth);
            assert!(!eku.server_auth);
        }
    }

    #[test]
    fn a_ca_loaded_from_pem_issues_certificates_under_the_same_name() {
        let ca = Ca::generate(&demo(), Validity::from_now(CA_VALIDITY)).unwrap();
        let again = Ca::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        let issued = again
            .issue(&LeafRequest::client(&demo(), Role::Kv, "bob").unwrap())
            .unwrap();
        let der = only_der(&issued.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let ca_der = only_der(ca.cert_pem());
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
    }

    #[test]
    fn validity_is_what_was_asked() {
        let ca = Ca::generate(&demo(), Validity::from_now(CA_VALIDITY)).unwrap();
        let past = Validity {
            not_before: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000),
            not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_086_400),
        };
        let req = LeafRequest::client(&demo(), Role::Kv, "old")
            .unwrap()
            .with_validity(past);
        let issued = ca.issue(&req).unwrap();
        let der = only_der(&issued.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(cert.validity().not_after.timestamp(), 1_000_086_400);
    }

    #[test]
    fn a_certificate_without_an_identity_is_refused() {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["x".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let e = identity_of_der(cert.der()).unwrap_err().to_string();
        assert!(e.contains("no raftkv://"), "{e}");
    }

    #[test]
    fn write_puts_both_files_with_a_private_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate(&demo(), Validity::from_now(CA_VALIDITY)).unwrap();
        let issued = ca
            .issue(&LeafRequest::client(&demo(), Role::Admin, "admin").unwrap())
            .unwrap();
        let (cert, key) = issued.write(dir.path(), "admin").unwrap();
        assert_eq!(std::fs::read_to_string(cert).unwrap(), issued.cert_pem);
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "key mode {mode:o}");
    }
}
