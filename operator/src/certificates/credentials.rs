//! The operator's own admin client certificates, per cluster, kept in
//! memory (never written anywhere): the TLS configuration it calls each
//! cluster's nodes with. Filled by `ensure`; held by the `Context`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use raftkv_client::tls::Credentials;

use crate::{Error, Result};

/// The operator's in-memory admin credentials, per cluster.
#[derive(Default)]
pub struct OperatorCredentials {
    by_cluster: Mutex<HashMap<String, Cached>>,
}

struct Cached {
    /// The CA and client certificate (PEM) they were built from.
    source: String,
    /// When to issue a new one (in-memory certificates are renewed too).
    renew_at: SystemTime,
    config: Arc<rustls::ClientConfig>,
}

impl OperatorCredentials {
    /// The client configuration for `key`, rebuilt when `source` changed or
    /// its certificate is due; `make` returns the PEM (CA, cert, key) and when
    /// to renew it.
    pub(super) fn get_or_make(
        &self,
        key: &str,
        source: &str,
        now: SystemTime,
        make: impl FnOnce() -> Result<(String, String, String, SystemTime)>,
    ) -> Result<Arc<rustls::ClientConfig>> {
        let mut map = self.by_cluster.lock();
        if let Some(c) = map.get(key)
            && c.source == source
            && now < c.renew_at
        {
            return Ok(c.config.clone());
        }
        let (ca, cert, keypem, renew_at) = make()?;
        let config = Credentials::from_pem(&ca, Some((&cert, &keypem)))
            .and_then(|c| c.client_config())
            .map_err(|e| Error::Certificates(format!("the operator's client certificate: {e}")))?;
        map.insert(
            key.to_string(),
            Cached {
                source: source.to_string(),
                renew_at,
                config: config.clone(),
            },
        );
        Ok(config)
    }
}
