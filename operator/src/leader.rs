//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator
//! replicas exactly one reconciles. The same algorithm as client-go's: a holder renews
//! the Lease; a candidate takes it over only after it has seen the same record,
//! unchanged, for a whole lease duration on its own monotonic clock (no trust in
//! clocks across machines). Writes carry the resourceVersion, so two candidates can
//! never both win.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::{Error, Result};

/// Timing of the election (client-go's defaults).
pub mod limits {
    use std::time::Duration;
    /// A holder that has not renewed for this long may be replaced.
    pub const LEASE_DURATION: Duration = Duration::from_secs(15);
    /// A holder that could not renew for this long stops reconciling (exits).
    pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
    /// How often holders renew and candidates retry.
    pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
    const _: () = assert!(RENEW_DEADLINE.as_secs() < LEASE_DURATION.as_secs());
    const _: () = assert!(RETRY_PERIOD.as_secs() < RENEW_DEADLINE.as_secs());
}

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// The last record seen from another holder, and when it was first seen.
    observed: Option<(String, Instant)>,
}

fn record_key(spec: &LeaseSpec) -> String {
    format!(
        "{}|{:?}|{:?}",
        spec.holder_identity.as_deref().unwrap_or(""),
        spec.renew_time.as_ref().map(|t| t.0),
        spec.lease_transitions
    )
}

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            observed: None,
        }
    }

    fn spec(&self, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(limits::LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(acquire.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt: `Ok(true)` if we hold the Lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        if holder == self.identity {
            lease.spec = Some(self.spec(spec.acquire_time.clone(), transitions));
        } else {
            let key = record_key(&spec);
            let duration = spec
                .lease_duration_seconds
                .map_or(limits::LEASE_DURATION, |s| {
                    Duration::from_secs(s.max(1) as u64)
                });
            let first_seen = match &self.observed {
                Some((k, at)) if *k == key => *at,
                _ => {
                    self.observed = Some((key, Instant::now()));
                    Instant::now()
                }
            };
            if !holder.is_empty() && first_seen.elapsed() < duration {
                return Ok(false);
            }
            lease.spec = Some(self.spec(None, transitions + 1));
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the Lease up (on shutdown) so that a standby takes over at once instead
    /// of waiting for it to expire. Best effort: an error only delays the takeover.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "released the Lease"),
            Err(e) => tracing::warn!(error = %e, "cannot release the Lease"),
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&mut self) -> Result<()> {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(limits::RETRY_PERIOD).await;
        }
    }

    /// Renews until the Lease is lost; returns the reason. The caller must stop
    /// reconciling at once (the binary exits so that a fresh process campaigns again).
    pub async fn hold(&mut self) -> Error {
        let mut last_renew = Instant::now();
        loop {
            tokio::time::sleep(limits::RETRY_PERIOD).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renew = Instant::now(),
                Ok(false) => {
                    return Error::LeaderElection("another replica holds the Lease".into());
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the Lease"),
            }
            if last_renew.elapsed() > limits::RENEW_DEADLINE {
                return Error::LeaderElection("could not renew the Lease in time".into());
            }
        }
    }
}
