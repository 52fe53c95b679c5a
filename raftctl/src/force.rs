//! `cluster force-new-cluster`: the way out of a lost quorum
//! (docs/operations.md, "A majority of volumes lost").

use std::time::{Duration, Instant};

use raftkv_client::{ClientOptions, RaftClient};
use raftkv_proto::v1;
use raftkv_proto::v1::cluster_client::ClusterClient;
use serde_json::json;

use super::CtlError;
use super::output::{OutputFormat, json_doc, table};

const WARNING: &str = "\
WARNING: force-new-cluster makes this ONE node the only voter of a NEW cluster
(new cluster ID, new node ID) holding its state as of the last commit it knows.
Writes it had not seen committed are lost, and the other members can never
rejoin with their data: they must come back empty, as learners. Use it only
when a majority of the voters is gone for good (pods AND volumes).";

/// How often `--wait` asks the node whether it is back.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// The one endpoint the command acts on. Pure.
pub fn single_endpoint(endpoints: &[String]) -> Result<&str, CtlError> {
    match endpoints {
        [one] => Ok(one),
        _ => Err(CtlError::usage(format!(
            "force-new-cluster acts on exactly one node: give only the surviving voter in --endpoints ({} given)",
            endpoints.len()
        ))),
    }
}

pub async fn run(
    endpoints: Vec<String>,
    opts: ClientOptions,
    yes: bool,
    wait: Duration,
    out: OutputFormat,
) -> Result<(), CtlError> {
    let endpoint = single_endpoint(&endpoints)?.to_string();
    eprintln!("{WARNING}");
    if !yes {
        return Err(CtlError::usage(
            "refusing to force a new cluster without --yes",
        ));
    }
    let c = RaftClient::connect(vec![endpoint.clone()], opts)?;
    let before = c.status(&endpoint).await?;
    let resp = ClusterClient::new(c.channel())
        .force_new_cluster(v1::ForceNewClusterRequest {
            expected_cluster_id: before.cluster_id.clone(),
            confirm: true,
        })
        .await
        .map_err(|s| CtlError::failed(format!("{endpoint} refused: {}", s.message())))?
        .into_inner();
    let after = if wait.is_zero() {
        None
    } else {
        Some(wait_new_leader(&c, &endpoint, &resp.cluster_id, wait).await?)
    };
    report(&resp, after.as_ref(), out);
    Ok(())
}

/// Polls until the node answers as leader of a cluster other than `old`.
async fn wait_new_leader(
    c: &RaftClient,
    endpoint: &str,
    old: &str,
    wait: Duration,
) -> Result<v1::StatusResponse, CtlError> {
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(s) = c.status(endpoint).await
            && !s.cluster_id.is_empty()
            && s.cluster_id != old
            && s.role == v1::Role::Leader as i32
        {
            return Ok(s);
        }
        if Instant::now() > deadline {
            return Err(CtlError::failed(format!(
                "{endpoint} accepted, but did not come back as the leader of a new cluster within {wait:?}: it exits after accepting; is it restarted by a supervisor (Kubernetes, raft-node local)? Its log says why"
            )));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn report(r: &v1::ForceNewClusterResponse, after: Option<&v1::StatusResponse>, out: OutputFormat) {
    let discarded = r.last_log_index.saturating_sub(r.commit_index);
    match out {
        OutputFormat::Table => {
            let mut rows = vec![vec![
                "before".to_string(),
                r.node_id.to_string(),
                r.cluster_id.clone(),
                r.commit_index.to_string(),
                format!("{discarded} uncommitted log entries discarded"),
            ]];
            match after {
                Some(s) => rows.push(vec![
                    "after".to_string(),
                    s.node_id.to_string(),
                    s.cluster_id.clone(),
                    s.commit_index.to_string(),
                    "leader of a new one-voter cluster: add members as learners".to_string(),
                ]),
                None => rows.push(vec![
                    "after".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                    "not waited for (--wait 0s): it rebuilds when its process restarts".to_string(),
                ]),
            }
            print!(
                "{}",
                table(&["", "NODE ID", "CLUSTER ID", "COMMIT", "NOTE"], &rows)
            );
        }
        OutputFormat::Json => print!(
            "{}",
            json_doc(&json!({
                "before": {
                    "node_id": r.node_id,
                    "cluster_id": r.cluster_id,
                    "commit_index": r.commit_index,
                    "last_log_index": r.last_log_index,
                    "applied_index": r.applied_index,
                    "discarded_entries": discarded,
                },
                "after": after.map(|s| json!({
                    "node_id": s.node_id,
                    "cluster_id": s.cluster_id,
                    "leader_id": s.leader_id,
                    "commit_index": s.commit_index,
                })),
            }))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_endpoint_is_accepted() {
        assert_eq!(single_endpoint(&["a:1".into()]).unwrap(), "a:1");
        for eps in [vec![], vec!["a:1".to_string(), "b:2".to_string()]] {
            let e = single_endpoint(&eps).unwrap_err();
            assert_eq!(e.exit_code, 2);
            assert!(e.message.contains("exactly one node"), "{}", e.message);
        }
    }
}
