//! Bootstrap from a backup (`spec.bootstrap.fromBackup`): finds the object,
//! then streams it from the object store to the first pod's `Cluster/Restore`
//! without keeping it in memory or on the operator's disk. The node verifies
//! the whole file before it accepts (docs/design.md, "Restore on Kubernetes").

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use kube::api::Api;
use raftkv_backup::store::{self, Key, StoreError};
use raftkv_proto::v1 as pb;

use crate::crd::{BackupPhase, FromBackup, RaftCluster, RaftClusterBackup};
use crate::{Error, Result, node_client};

/// Bounds of one restore.
pub mod limits {
    use std::time::Duration;
    /// The whole transfer and the node's verification of it: 1 GiB took about
    /// a minute on the project's 2-core machine (docs/performance.md); this
    /// leaves room for slower stores and disks.
    pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30 * 60);
    /// Largest chunk sent to the node (well under its gRPC message limit).
    pub const CHUNK_BYTES_MAX: usize = 1024 * 1024;
}

/// Where the backup is: which RaftClusterBackup's destination, or the spec's.
async fn locate(
    rc: &RaftCluster,
    client: &kube::Client,
    ns: &str,
    from: &FromBackup,
) -> Result<(store::Destination, String)> {
    let spec_err = |m: String| Error::Restore(m);
    match (&from.backup_name, &from.destination, &from.key) {
        (Some(name), _, _) => {
            let api: Api<RaftClusterBackup> = Api::namespaced(client.clone(), ns);
            let b = api.get_opt(name).await?.ok_or_else(|| {
                spec_err(format!(
                    "RaftClusterBackup {name} not found in namespace {ns} (give destination and key instead if it was deleted)"
                ))
            })?;
            let status = b.status.clone().unwrap_or_default();
            if status.phase != Some(BackupPhase::Succeeded) {
                return Err(spec_err(format!(
                    "RaftClusterBackup {name} has not Succeeded (phase {})",
                    status.phase.map_or("unset", |p| p.as_str())
                )));
            }
            let key = status.object_key.ok_or_else(|| {
                spec_err(format!("RaftClusterBackup {name} has no status.objectKey"))
            })?;
            let dest = b
                .spec
                .destination
                .clone()
                .or_else(|| rc.spec.backup.as_ref().map(|s| s.destination.clone()))
                .ok_or_else(|| {
                    spec_err(format!(
                        "RaftClusterBackup {name} took its destination from its cluster {}, and this RaftCluster has no spec.backup.destination: give destination and key instead",
                        b.spec.cluster
                    ))
                })?;
            let dest = super::destination::resolve(client, ns, &dest)
                .await
                .map_err(spec_err)?;
            Ok((dest, key))
        }
        (None, Some(dest), Some(key)) => {
            let dest = super::destination::resolve(client, ns, dest)
                .await
                .map_err(spec_err)?;
            Ok((dest, key.clone()))
        }
        _ => Err(spec_err(
            "spec.bootstrap.fromBackup sets either backupName, or both destination and key".into(),
        )),
    }
}

/// `bytes` as chunks of at most `max` bytes (cheap slices, no copy).
fn split(bytes: Bytes, max: usize) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(max.max(1)));
    let mut rest = bytes;
    while rest.len() > max {
        out.push(rest.split_to(max));
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The object's bytes as `Cluster/Restore` chunks with their offsets. A read
/// error ends the stream and is kept in `failed`: the node then refuses a
/// truncated file, and the caller reports the store's error instead.
fn chunks<S>(
    body: S,
    failed: Arc<Mutex<Option<String>>>,
) -> impl Stream<Item = pb::BackupChunk> + Send + 'static
where
    S: Stream<Item = std::result::Result<Bytes, StoreError>> + Send + 'static,
{
    body.scan(0u64, move |offset, item| {
        let out = match item {
            Ok(bytes) => Some(
                split(bytes, limits::CHUNK_BYTES_MAX)
                    .into_iter()
                    .map(|data| {
                        let c = pb::BackupChunk {
                            offset: *offset,
                            data,
                        };
                        *offset += c.data.len() as u64;
                        c
                    })
                    .collect::<Vec<_>>(),
            ),
            Err(e) => {
                *failed.lock().expect("not poisoned") =
                    Some(format!("reading the backup from the object store: {e}"));
                None
            }
        };
        futures::future::ready(out)
    })
    .flat_map(futures::stream::iter)
}

/// Streams the backup `from` names to the node at `addr`; the node's reply
/// says what the verified file holds.
pub async fn run(
    rc: &RaftCluster,
    client: &kube::Client,
    ns: &str,
    from: &FromBackup,
    addr: &node_client::Target,
) -> Result<pb::RestoreResponse> {
    let (dest, key) = locate(rc, client, ns, from).await?;
    let opened = store::open(&dest).map_err(|e| Error::Restore(e.to_string()))?;
    let path = Key::parse(&key)
        .map_err(|e| Error::Restore(format!("{key:?} cannot name an object: {e}")))?;
    let body = store::read(opened.store.as_ref(), &path)
        .await
        .map_err(|e| Error::Restore(format!("cannot read {key} from {dest}: {e}")))?;
    let failed = Arc::new(Mutex::new(None));
    let sent =
        node_client::restore(addr, chunks(body, failed.clone()), limits::TRANSFER_TIMEOUT).await;
    if let Some(e) = failed.lock().expect("not poisoned").take() {
        return Err(Error::Restore(e));
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_every_byte_in_order_within_the_bound() {
        for (len, max) in [(0, 4), (3, 4), (4, 4), (9, 4), (1 << 20, 1000)] {
            let bytes = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>());
            let parts = split(bytes.clone(), max);
            assert!(parts.iter().all(|p| !p.is_empty() && p.len() <= max));
            assert_eq!(parts.concat(), bytes.to_vec(), "len {len} max {max}");
        }
    }

    #[tokio::test]
    async fn chunks_carry_their_offsets_and_a_read_error_ends_the_stream() {
        let failed = Arc::new(Mutex::new(None));
        let body = futures::stream::iter(vec![
            Ok(Bytes::from(vec![1u8; 3 * limits::CHUNK_BYTES_MAX / 2])),
            Ok(Bytes::from_static(b"abc")),
            Err(StoreError::Invalid("gone".into())),
            Ok(Bytes::from_static(b"never sent")),
        ]);
        let out: Vec<pb::BackupChunk> = chunks(body, failed.clone()).collect().await;
        let offsets: Vec<u64> = out.iter().map(|c| c.offset).collect();
        let m = limits::CHUNK_BYTES_MAX as u64;
        assert_eq!(offsets, vec![0, m, 3 * m / 2]);
        assert_eq!(out.last().unwrap().data.as_ref(), b"abc");
        let e = failed.lock().unwrap().clone().expect("the error is kept");
        assert!(
            e.contains("reading the backup from the object store"),
            "{e}"
        );
    }
}
