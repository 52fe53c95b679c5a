//! Leader group commit (issue 13, item 1): concurrent writes share a proposal
//! (one log entry, one leader fsync), and each still gets its own answer.

use std::collections::BTreeSet;

use raftkv_proto::v1 as pb;

use crate::util::*;

const PORT_BASE: u16 = 20560;
const WRITERS: u64 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_each_get_their_own_answer_and_apply_once() {
    let c = TestCluster::start(3, PORT_BASE).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let before = c.status(leader).await;

    let answers = {
        tracing::info!("--- {WRITERS} puts at once, each twice with the same session");
        let mut tasks = Vec::new();
        for i in 0..WRITERS {
            for _attempt in 0..2 {
                let mut kv = c.kv(leader);
                tasks.push(tokio::spawn(async move {
                    let r = kv
                        .put(pb::PutRequest {
                            key: format!("b{i:03}").into_bytes(),
                            value: format!("v{i}").into_bytes(),
                            session: Some(pb::WriteSession {
                                client_id: 1000 + i,
                                seq: 1,
                                first_incomplete: 1,
                            }),
                        })
                        .await
                        .expect("put")
                        .into_inner();
                    (i, r)
                }));
            }
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        answers
    };

    {
        tracing::info!("--- every answer is its own write's, and each write applied once");
        let mut revisions = BTreeSet::new();
        for (i, r) in &answers {
            let kv = r.kv.as_ref().unwrap();
            assert_eq!(kv.key, format!("b{i:03}").into_bytes());
            assert_eq!(kv.value, format!("v{i}").into_bytes());
            assert_eq!(kv.version, 1, "write {i} applied once");
            revisions.insert(kv.mod_revision);
        }
        assert_eq!(revisions.len() as u64, WRITERS, "one revision per write");
        let after = c.status(leader).await;
        assert_eq!(after.revision - before.revision, WRITERS);
        let entries = after.commit_index - before.commit_index;
        tracing::info!(entries, writes = 2 * WRITERS, "log entries for the writes");
        // 128 requests at once against two proposals in flight: most wait
        // and share an entry (without batching: one entry each, 128).
        assert!(
            entries < WRITERS,
            "{entries} log entries for {} requests: writes were not batched",
            2 * WRITERS
        );
    }
}
