//! Keeps a cluster's certificate Secrets current (see the module above) and
//! gives the reconcile the TLS configuration the operator calls the nodes with.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use raftkv_certs::{CA_VALIDITY, Ca, ClusterRef, Validity};

use super::*;
use crate::context::Context;
use crate::crd::{CertificatesStatus, RENEW_CERTIFICATES_ANNOTATION, RaftCluster};
use crate::planner::PlannedEvent;
use crate::resources::FIELD_MANAGER;
use crate::{Error, Result};

/// Field manager of `status.certificates`: the reconcile's own status apply
/// (manager [`FIELD_MANAGER`]) leaves the field out and so never removes it.
pub const STATUS_FIELD_MANAGER: &str = "raft-operator-certificates";

/// What [`ensure`] did.
pub struct Ensured {
    /// TLS for the operator's calls to the nodes (`None`: plaintext).
    pub node_tls: Option<Arc<rustls::ClientConfig>>,
    /// An Event to publish (certificates issued or renewed).
    pub event: Option<PlannedEvent>,
}

fn text_of<'a>(data: &'a BTreeMap<String, String>, key: &str, secret: &str) -> Result<&'a str> {
    data.get(key)
        .map(String::as_str)
        .ok_or_else(|| Error::Certificates(format!("Secret {secret} has no {key}")))
}

/// Makes or renews the cluster's certificates as needed (never the CA once it
/// exists) and returns the operator's TLS configuration for its nodes.
pub async fn ensure(rc: &RaftCluster, ctx: &Context) -> Result<Ensured> {
    let tls = &rc.spec.tls;
    if !tls.enabled {
        return Ok(Ensured {
            node_tls: None,
            event: None,
        });
    }
    let cluster = rc.name_any();
    let ns = rc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let now = SystemTime::now();
    let cache_key = format!("{ns}/{cluster}");

    if let Some(own) = &tls.operator_secret_name {
        // Brought by the user: use what is there (cert-manager renews it).
        let s = secrets.get_opt(own).await?.ok_or_else(|| {
            Error::Certificates(format!(
                "spec.tls.operatorSecretName: Secret {own} not found (it must hold ca.crt, tls.crt and tls.key of an admin client certificate)"
            ))
        })?;
        let data = secret_text(&s);
        let (ca, cert, key) = (
            text_of(&data, CA_CRT, own)?.to_string(),
            text_of(&data, TLS_CRT, own)?.to_string(),
            text_of(&data, TLS_KEY, own)?.to_string(),
        );
        let source = format!("{ca}{cert}");
        let config = ctx
            .operator_credentials
            .get_or_make(&cache_key, &source, now, || {
                // Reread whenever the Secret's contents change (the source).
                Ok((ca, cert, key, now + Duration::from_secs(24 * 3600)))
            })?;
        return Ok(Ensured {
            node_tls: Some(config),
            event: None,
        });
    }

    let lifetimes = Lifetimes::of(tls).map_err(Error::InvalidSpec)?;
    let ca = ensure_ca(rc, &secrets, &cluster, &ns).await?;
    let requested = rc.annotations().get(RENEW_CERTIFICATES_ANNOTATION).cloned();
    let mut renewed = Vec::new();
    let mut node_not_after = None;
    for leaf in Leaf::ALL {
        let name = leaf.secret_name(&cluster);
        let existing = secrets.get_opt(&name).await?;
        let data = existing.as_ref().map(secret_text);
        let renewed_for = existing
            .as_ref()
            .and_then(|s| s.annotations().get(RENEWED_FOR_ANNOTATION).cloned());
        let due = renewal_due(
            data.as_ref().map(|d| (d, renewed_for.as_deref())),
            ca.cert_pem(),
            now,
            &lifetimes,
            requested.as_deref(),
        );
        let cert_pem = match due {
            None => data
                .as_ref()
                .and_then(|d| d.get(TLS_CRT).cloned())
                .unwrap_or_default(),
            Some(why) => {
                let req = leaf
                    .request(&cluster, &ns, Validity::from_now(lifetimes.lifetime))
                    .map_err(|e| Error::Certificates(format!("{name}: {e}")))?;
                let issued = ca
                    .issue(&req)
                    .map_err(|e| Error::Certificates(format!("issuing {name}: {e}")))?;
                let marker = requested.as_deref().or(renewed_for.as_deref());
                let secret = leaf_secret(rc, leaf, ca.cert_pem(), &issued, marker);
                secrets
                    .patch(
                        &name,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&secret),
                    )
                    .await?;
                tracing::info!(secret = %name, why = %why.describe(), "certificate issued");
                renewed.push((name, why));
                issued.cert_pem
            }
        };
        if leaf == Leaf::Node {
            node_not_after = raftkv_certs::validity_of_pem(&cert_pem)
                .ok()
                .map(|v| v.not_after);
        }
    }

    let source = ca.cert_pem().to_string();
    let config = ctx
        .operator_credentials
        .get_or_make(&cache_key, &source, now, || {
            let req = operator_request(&cluster, &ns, Validity::from_now(lifetimes.lifetime))
                .map_err(|e| Error::Certificates(e.to_string()))?;
            let issued = ca
                .issue(&req)
                .map_err(|e| Error::Certificates(format!("the operator's certificate: {e}")))?;
            let renew_at = now + (lifetimes.lifetime - lifetimes.renew_before);
            Ok((
                ca.cert_pem().to_string(),
                issued.cert_pem,
                issued.key_pem,
                renew_at,
            ))
        })?;

    let previous = rc.status.as_ref().and_then(|s| s.certificates.clone());
    let status = CertificatesStatus {
        not_after: node_not_after.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        last_issued: if renewed.is_empty() {
            previous.as_ref().and_then(|p| p.last_issued.clone())
        } else {
            Some(humantime::format_rfc3339_seconds(now).to_string())
        },
        renew_request: requested.clone(),
    };
    if previous.as_ref() != Some(&status) {
        write_status(rc, ctx, &status).await?;
    }
    let event = (!renewed.is_empty()).then(|| renewal_event(&renewed));
    Ok(Ensured {
        node_tls: Some(config),
        event,
    })
}

/// `CertificatesIssued` when the Secrets were made, `CertificatesRenewed` when
/// existing ones were replaced.
fn renewal_event(renewed: &[(String, Renewal)]) -> PlannedEvent {
    let all_new = renewed.iter().all(|(_, why)| *why == Renewal::Missing);
    let what = renewed
        .iter()
        .map(|(name, why)| format!("{name} ({})", why.describe()))
        .collect::<Vec<_>>()
        .join(", ");
    PlannedEvent {
        reason: if all_new {
            "CertificatesIssued"
        } else {
            "CertificatesRenewed"
        }
        .into(),
        action: "IssueCertificates".into(),
        note: format!(
            "{what}; the nodes pick the new files up without a restart when the kubelet updates the mounted Secret"
        ),
        warning: false,
        related: None,
    }
}

/// The CA in `<name>-ca`, made if there is none. An existing Secret that does
/// not hold a usable CA is an error naming it: the operator never replaces a
/// CA (every certificate of the cluster depends on it).
async fn ensure_ca(rc: &RaftCluster, secrets: &Api<Secret>, cluster: &str, ns: &str) -> Result<Ca> {
    let name = ca_secret_name(cluster);
    let existing = match secrets.get_opt(&name).await? {
        Some(s) => s,
        None => {
            let cref =
                ClusterRef::new(ns, cluster).map_err(|e| Error::Certificates(e.to_string()))?;
            let ca = Ca::generate(&cref, Validity::from_now(CA_VALIDITY))
                .map_err(|e| Error::Certificates(format!("making the CA: {e}")))?;
            // Create, not apply: if another writer made one meanwhile, it wins
            // and is read back below; the operator never overwrites a CA.
            match secrets
                .create(
                    &PostParams::default(),
                    &ca_secret(rc, ca.cert_pem(), ca.key_pem()),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(secret = %name, "cluster CA created");
                    return Ok(ca);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => secrets.get(&name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let data = secret_text(&existing);
    Ca::from_pem(
        text_of(&data, CA_CRT, &name)?,
        text_of(&data, CA_KEY, &name)?,
    )
    .map_err(|e| Error::Certificates(format!("Secret {name} does not hold a usable CA: {e}")))
}

async fn write_status(rc: &RaftCluster, ctx: &Context, status: &CertificatesStatus) -> Result<()> {
    let ns = rc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<RaftCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({
        "apiVersion": "raftkv.dev/v1alpha1",
        "kind": "RaftCluster",
        "status": {"certificates": status},
    });
    api.patch_status(
        &rc.name_any(),
        &PatchParams::apply(STATUS_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// True when `spec.tls.enabled` reads true but the voters' StatefulSet was
/// made without TLS (see `certificates::tls_enabled`).
pub async fn plaintext_from_before_tls(rc: &RaftCluster, ctx: &Context) -> Result<bool> {
    if !rc.spec.tls.enabled {
        return Ok(false);
    }
    let ns = rc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let sts: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = sts.get_opt(&rc.name_any()).await?;
    let legacy = !tls_enabled(true, existing.as_ref());
    if legacy {
        tracing::info!(
            "the members were made without TLS (before spec.tls existed): the cluster stays plaintext"
        );
    }
    Ok(legacy)
}

/// The operator's TLS to `rc`'s nodes (`None`: plaintext), decided as the
/// cluster's reconcile decides it: for the calls made outside that reconcile
/// (the RaftClusterBackup controller). Certificates are made or renewed if
/// due, as the reconcile would; its Event is then the reconcile's to publish
/// on its next pass, so none is lost that matters (the Secrets show it).
pub async fn node_tls_for(
    rc: &RaftCluster,
    ctx: &Context,
) -> Result<Option<Arc<rustls::ClientConfig>>> {
    if !rc.spec.tls.enabled || plaintext_from_before_tls(rc, ctx).await? {
        return Ok(None);
    }
    Ok(ensure(rc, ctx).await?.node_tls)
}
