//! Group commit and fsync fault injection. Its own test binary: it measures
//! the process-wide fsync counter, which other tests would disturb.

use std::time::Duration;

use openraft::storage::RaftLogStorage;
use raftkv_node::storage::{self, FsyncFaults, StorageOptions};
use raftkv_node::typ::Vote;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_fsyncs_and_faults_are_injected() {
    // Every fsync is slowed by 20 ms, so requests pile up behind the first one.
    let dir = tempfile::tempdir().unwrap();
    let slow = FsyncFaults {
        fail_ppm: 0,
        delay_ppm: 1_000_000,
        delay: Duration::from_millis(20),
        fail_after: None,
    };
    let s = storage::open(
        dir.path(),
        StorageOptions {
            fsync_faults: slow,
            ..Default::default()
        },
    )
    .unwrap();
    let before = storage::stats().snapshot();
    let writers = 64u64;
    let mut tasks = Vec::new();
    for i in 0..writers {
        let mut log = s.log.clone();
        tasks.push(tokio::spawn(async move {
            log.save_vote(&Vote::new(i + 1, 1)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let after = storage::stats().snapshot();
    let fsyncs = after.fsyncs - before.fsyncs;
    let batches = after.log_batches - before.log_batches;
    assert_eq!(after.log_requests - before.log_requests, writers);
    assert!(
        fsyncs <= 10,
        "{writers} concurrent votes took {fsyncs} fsyncs"
    );
    assert!(
        batches <= 10,
        "{writers} concurrent votes took {batches} group commits"
    );
    drop(s);

    // A failing fsync fails the write that needed it (here: opening the log).
    let dir = tempfile::tempdir().unwrap();
    let failing = FsyncFaults {
        fail_ppm: 1_000_000,
        delay_ppm: 0,
        delay: Duration::ZERO,
        fail_after: None,
    };
    let e = storage::open(
        dir.path(),
        StorageOptions {
            fsync_faults: failing,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("injected fsync failure"), "{e}");
}
