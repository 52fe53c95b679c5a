//! Takes one backup: opens the node's `Cluster/Backup` stream (the leader
//! first; a follower forwards the call) and uploads it chunk by chunk into the
//! object store. Nothing is kept in memory beyond the upload's bounded parts,
//! and nothing is written to the operator's disk.

use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use raftkv_backup::Summary;
use raftkv_backup::store::{self, OpenedStore};
use raftkv_client::channel::ChannelSettings;
use raftkv_proto::v1 as pb;
use raftkv_proto::v1::cluster_client::ClusterClient;

use crate::node_client::Target;

/// Bounds of one backup's RPC.
pub mod limits {
    use std::time::Duration;
    /// Connecting to a pod (as every other node RPC of the operator).
    pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
    /// Until the node answers the call (it first waits for a linearizable read point).
    pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
    /// Longest silence between two chunks: a stream that stalls longer is
    /// abandoned (the backup fails; the next one starts over).
    pub const CHUNK_IDLE_MAX: Duration = Duration::from_secs(30);
}

/// The chunks of an opened backup stream as bytes, each within
/// [`limits::CHUNK_IDLE_MAX`] of the previous one, in order without gaps.
fn chunks(
    addr: String,
    stream: tonic::Streaming<pb::BackupChunk>,
    idle_max: Duration,
) -> impl Stream<Item = Result<Bytes, String>> {
    futures::stream::try_unfold((stream, 0u64), move |(mut s, at)| {
        let addr = addr.clone();
        async move {
            let next = tokio::time::timeout(idle_max, s.message())
                .await
                .map_err(|_| {
                    format!(
                        "{addr} sent nothing for {}",
                        humantime::format_duration(idle_max)
                    )
                })?
                .map_err(|st| format!("{addr}: {:?}: {}", st.code(), st.message()))?;
            let Some(chunk) = next else {
                return Ok(None);
            };
            if chunk.offset != at {
                return Err(format!(
                    "{addr} sent a chunk at byte {} after {at} bytes",
                    chunk.offset
                ));
            }
            let len = chunk.data.len() as u64;
            Ok(Some((chunk.data, (s, at + len))))
        }
    })
}

/// Opens the stream on the first of `targets` that answers.
async fn open(targets: &[Target]) -> Result<(String, tonic::Streaming<pb::BackupChunk>), String> {
    let mut why = Vec::new();
    for target in targets {
        let addr = &target.addr;
        let settings = ChannelSettings::new(limits::CONNECT_TIMEOUT)
            .with_tls(target.tls.as_ref().map(|(c, _)| c.clone()))
            .with_tls_server_name(target.tls.as_ref().map(|(_, n)| n.clone()));
        let channel = match settings.connect(addr).await {
            Ok(c) => c,
            Err(e) => {
                why.push(format!("{target}: {e}"));
                continue;
            }
        };
        let mut client = ClusterClient::with_interceptor(
            channel,
            crate::telemetry::interceptor
                as fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>,
        );
        let call = tokio::time::timeout(limits::OPEN_TIMEOUT, client.backup(pb::BackupRequest {}));
        match call.await {
            Ok(Ok(stream)) => return Ok((addr.clone(), stream.into_inner())),
            Ok(Err(st)) => why.push(format!("{addr}: {:?}: {}", st.code(), st.message())),
            Err(_) => why.push(format!(
                "{addr}: no answer within {}",
                humantime::format_duration(limits::OPEN_TIMEOUT)
            )),
        }
    }
    if why.is_empty() {
        return Err("no member to back up from (no pod has an address)".into());
    }
    Err(format!("no member served the backup: {}", why.join("; ")))
}

/// Streams a backup from the cluster (members' client addresses, the leader
/// first) into `key` of `store`; the verified summary of what was stored.
pub async fn take(
    addrs: &[Target],
    store: &OpenedStore,
    key: &str,
) -> Result<(Summary, String), String> {
    let key = store.key(key).map_err(|e| e.to_string())?;
    let (addr, stream) = open(addrs).await?;
    let summary = store::upload(
        chunks(addr.clone(), stream, limits::CHUNK_IDLE_MAX),
        &*store.store,
        &key,
    )
    .await
    .map_err(|e| format!("backup from {addr} to {key}: {e}"))?;
    Ok((summary, key.to_string()))
}
