//! Grow the members' PersistentVolumeClaims the plan lists to `spec.storage.size`
//! (`planner::volumes` decides which). A merge patch of one field per claim:
//! idempotent, and a claim already at the size is never in the list.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use crate::context::Context;
use crate::crd::RaftCluster;
use crate::planner::Plan;
use crate::resources::FIELD_MANAGER;
use crate::{Error, Result};

pub async fn grow_pvcs(rc: &RaftCluster, ctx: &Context, plan: &Plan) -> Result<()> {
    if plan.grow_pvcs.is_empty() {
        return Ok(());
    }
    let ns = rc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let size = &rc.spec.storage.size.0;
    let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": size}}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    for pvc in &plan.grow_pvcs {
        tracing::info!(%pvc, %size, "growing volume");
        api.patch(pvc, &params, &Patch::Merge(&patch)).await?;
    }
    Ok(())
}
