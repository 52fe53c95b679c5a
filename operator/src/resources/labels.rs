//! Labels and owner references shared by every owned object.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::crd::{COMPONENT_READ, COMPONENT_VOTER, RaftCluster, SERVING_LABEL};
use crate::planner::Set;

pub const APP_NAME: &str = "raftkv";
pub const MANAGED_BY: &str = "raft-operator";

pub fn component(set: Set) -> &'static str {
    match set {
        Set::Voters => COMPONENT_VOTER,
        Set::Read => COMPONENT_READ,
    }
}

/// Labels that select every pod of a cluster (voters and read replicas).
pub fn instance_selector(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), APP_NAME.into()),
        ("app.kubernetes.io/instance".into(), cluster.into()),
    ])
}

/// Labels that select the pods of one StatefulSet.
pub fn set_selector(cluster: &str, set: Set) -> BTreeMap<String, String> {
    let mut l = instance_selector(cluster);
    l.insert("app.kubernetes.io/component".into(), component(set).into());
    l
}

/// `selector` narrowed to pods that may receive client traffic (client and read
/// Services; the peer Service must keep resolving every pod).
pub fn serving(mut selector: BTreeMap<String, String>) -> BTreeMap<String, String> {
    selector.insert(SERVING_LABEL.into(), "true".into());
    selector
}

/// The full `app.kubernetes.io/*` label set of an owned object.
pub fn labels(cluster: &str, component: &str) -> BTreeMap<String, String> {
    let mut l = instance_selector(cluster);
    l.insert("app.kubernetes.io/component".into(), component.into());
    l.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    l.insert("app.kubernetes.io/part-of".into(), APP_NAME.into());
    l
}

/// Metadata of an owned object: name, namespace, labels, controller owner reference.
pub fn owned_meta(rc: &RaftCluster, name: String, component: &str) -> ObjectMeta {
    let cluster = rc.metadata.name.clone().unwrap_or_default();
    ObjectMeta {
        name: Some(name),
        namespace: rc.metadata.namespace.clone(),
        labels: Some(labels(&cluster, component)),
        owner_references: owner_ref(rc).map(|o| vec![o]),
        ..Default::default()
    }
}

fn owner_ref(rc: &RaftCluster) -> Option<OwnerReference> {
    rc.controller_owner_ref(&())
}
