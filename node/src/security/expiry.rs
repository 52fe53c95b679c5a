//! When this node's own certificate expires, for the
//! `raftkv_tls_certificate_expiry_timestamp_seconds` gauge.
//!
//! The node's [`Credentials`] reread the certificate when its file changes,
//! so the date is taken from them at scrape time: a rotated certificate shows
//! its new date at the next scrape, with nothing to keep in sync.

use std::sync::Arc;

use parking_lot::Mutex;
use raftkv_client::tls::Credentials;

/// The credentials of this process's node (one node per process; `None`:
/// plaintext, and the gauge is left out).
static WATCHED: Mutex<Option<Arc<Credentials>>> = Mutex::new(None);

/// Reports the expiry of `creds`' certificate from now on.
pub fn watch(creds: Arc<Credentials>) {
    *WATCHED.lock() = Some(creds);
}

/// notAfter of the watched certificate, in seconds since the Unix epoch;
/// `None` without TLS (or if the certificate cannot be read, which the TLS
/// loader refuses before this point).
pub fn current_not_after() -> Option<i64> {
    let creds = WATCHED.lock().clone()?;
    let material = creds.current();
    let leaf = material.key.as_ref()?.cert.first()?;
    not_after_unix_seconds(leaf).ok()
}

/// notAfter of a DER certificate, in seconds since the Unix epoch.
pub fn not_after_unix_seconds(der: &[u8]) -> Result<i64, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(cert.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftkv_certs::{Ca, ClusterRef, LeafRequest, Validity};
    use std::time::{Duration, SystemTime};

    #[test]
    fn not_after_is_the_date_the_certificate_was_issued_with() {
        let cluster = ClusterRef::new("ns", "demo").unwrap();
        let ca = Ca::generate(&cluster, Validity::from_now(Duration::from_secs(86_400))).unwrap();
        let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let req = LeafRequest::node(&cluster, "demo-0", &["localhost"], &[])
            .unwrap()
            .with_validity(Validity {
                not_before: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000),
                not_after,
            });
        let issued = ca.issue(&req).unwrap();
        let der = raftkv_certs::pem_certs_to_der(&issued.cert_pem).unwrap();
        assert_eq!(not_after_unix_seconds(&der[0]), Ok(2_000_000_000));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let err = not_after_unix_seconds(b"not a certificate").unwrap_err();
        assert!(err.contains("not an X.509 certificate"), "{err}");
    }
}
