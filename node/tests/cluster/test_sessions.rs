//! Issue 11, hole 4: a write retried after its outcome was unknown must not be
//! applied twice. Writes carry a session (client ID, sequence number); the
//! state machine answers a retry with the first answer, through a follower, a
//! new leader and a restart from snapshots alike.

use std::time::Duration;

use raftkv_client::{ClientOptions, Expect, RaftClient, ReadOptions};
use raftkv_proto::v1 as pb;

use crate::util::*;

const PORT_BASE: u16 = 20500;
const PORT_BASE_LOST_REPLY: u16 = 20520;

/// A session whose client still waits for every write from seq 1 on.
fn session(client_id: u64, seq: u64) -> Option<pb::WriteSession> {
    session_from(client_id, seq, 1)
}

/// A session whose client is done with every write below `first_incomplete`.
fn session_from(client_id: u64, seq: u64, first_incomplete: u64) -> Option<pb::WriteSession> {
    Some(pb::WriteSession {
        client_id,
        seq,
        first_incomplete,
    })
}

fn put_req(k: &str, v: &str, s: Option<pb::WriteSession>) -> pb::PutRequest {
    pb::PutRequest {
        key: k.into(),
        value: v.into(),
        session: s,
    }
}

fn cas_req(
    k: &str,
    from: &str,
    to: &str,
    s: Option<pb::WriteSession>,
) -> pb::CompareAndSwapRequest {
    pb::CompareAndSwapRequest {
        key: k.into(),
        value: to.into(),
        expect: Some(pb::compare_and_swap_request::Expect::ExpectValue(
            from.into(),
        )),
        session: s,
    }
}

/// Version (writes since creation) and mod revision of `k`, read linearizably.
async fn version_of(c: &TestCluster, i: usize, k: &str) -> (u64, u64) {
    let kv = get(&mut c.kv(i), k, linearizable())
        .await
        .unwrap_or_else(|e| panic!("get {k}: {e}"))
        .kv
        .expect("kv");
    (kv.version, kv.mod_revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_write_is_applied_once_and_answered_as_the_first_attempt() {
    let mut c = TestCluster::start(3, PORT_BASE).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let follower = (leader + 1) % 3;
    let client_id = 0x5e55_1075;

    let first_put = {
        tracing::info!("--- a put whose reply is lost, sent again: applied once");
        let mut kv = c.kv(leader);
        let first = kv
            .put(put_req("p", "v1", session(client_id, 1)))
            .await
            .expect("first attempt")
            .into_inner();
        // The caller never saw `first` (the reply was lost): it retries.
        let again = kv
            .put(put_req("p", "v1", session(client_id, 1)))
            .await
            .expect("retry")
            .into_inner();
        assert_eq!(again.kv, first.kv, "the retry gets the first answer");
        assert_eq!(
            again.header.as_ref().unwrap().revision,
            first.header.as_ref().unwrap().revision
        );
        assert_eq!(version_of(&c, leader, "p").await, (1, 1), "applied once");
        first
    };

    {
        tracing::info!("--- a CAS increment retried: no false failure, no second swap");
        let mut kv = c.kv(leader);
        kv.put(put_req("n", "0", session(client_id, 2)))
            .await
            .expect("put n");
        let first = kv
            .compare_and_swap(cas_req("n", "0", "1", session(client_id, 3)))
            .await
            .expect("first CAS")
            .into_inner();
        let again = kv
            .compare_and_swap(cas_req("n", "0", "1", session(client_id, 3)))
            .await
            .expect("the retried CAS reports the swap it made, not ABORTED")
            .into_inner();
        assert_eq!(again.kv, first.kv);
        assert_eq!(version_of(&c, leader, "n").await.0, 2);
    }

    {
        tracing::info!("--- the retry through a follower (forwarded): same answer");
        let again = c
            .kv(follower)
            .put(put_req("p", "v1", session(client_id, 1)))
            .await
            .expect("retry via follower")
            .into_inner();
        assert_eq!(again.kv, first_put.kv);
        assert_eq!(version_of(&c, leader, "p").await, (1, 1));
    }

    {
        tracing::info!("--- bad sessions are refused with a clear error");
        let mut kv = c.kv(leader);
        let e = kv
            .put(put_req("p", "other", session(client_id, 1)))
            .await
            .expect_err("a seq reused for another write");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
        assert!(e.message().contains("different write"), "{e}");
        // A newer watermark says the client is done with seq 1 and 2.
        kv.put(put_req("q", "x", session_from(client_id, 4, 4)))
            .await
            .expect("put q");
        let e = kv
            .put(put_req("p", "v1", session(client_id, 1)))
            .await
            .expect_err("below the watermark");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
        assert!(e.message().contains("below 4"), "{e}");
        let e = kv
            .put(put_req("p", "v1", session(0, 1)))
            .await
            .expect_err("client_id 0");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert_eq!(version_of(&c, leader, "p").await, (1, 1));
    }

    let leader = {
        tracing::info!("--- snapshots on every node, restart them all: sessions survive");
        for i in 0..3 {
            c.cluster(i)
                .snapshot(pb::SnapshotRequest {})
                .await
                .unwrap_or_else(|e| panic!("snapshot on node {i}: {e}"));
        }
        for i in 0..3 {
            let s = c.status(i).await;
            assert!(s.snapshot_index > 0, "node {i} has a snapshot");
        }
        for i in 0..3 {
            assert!(c.terminate(i), "node {i} exits cleanly");
        }
        for i in 0..3 {
            c.spawn(i).await;
        }
        c.wait_leader(&[0, 1, 2]).await
    };

    {
        tracing::info!("--- the retry after restarts and a new election: same answer");
        let again = c
            .kv(leader)
            .put(put_req("p", "v1", session_from(client_id, 5, 4)))
            .await;
        // seq 5 is a new write of "p": applied (version 2); then its retry
        // must not be.
        let again = again.expect("new write seq 5").into_inner();
        assert_eq!(again.kv.as_ref().unwrap().version, 2);
        let retry_of_5 = c
            .kv((leader + 1) % 3)
            .put(put_req("p", "v1", session_from(client_id, 5, 4)))
            .await
            .expect("retry of seq 5")
            .into_inner();
        assert_eq!(retry_of_5.kv, again.kv);
        let retry_of_4 = c
            .kv(leader)
            .put(put_req("q", "x", session(client_id, 4)))
            .await
            .expect("retry of seq 4, applied before the snapshots")
            .into_inner();
        assert_eq!(retry_of_4.kv.as_ref().unwrap().version, 1);
        assert_eq!(version_of(&c, leader, "p").await.0, 2);
        assert_eq!(version_of(&c, leader, "q").await.0, 1);
    }
}

/// The real thing through the client library: the first attempt's reply is
/// lost (the attempt times out while the write still commits, because two of
/// the three nodes fsync slowly, so every quorum waits for a slow disk),
/// `RaftClient`'s retry loop sends it again with the same session, and the
/// write is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_whose_reply_was_lost_is_applied_once_through_the_client_retry_loop() {
    let mut c = TestCluster::start(3, PORT_BASE_LOST_REPLY).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;

    tracing::info!("--- restart two nodes with slow fsyncs");
    c.env = vec![
        ("RAFTKV_FAULT_FSYNC_DELAY_PCT".into(), "100".into()),
        ("RAFTKV_FAULT_FSYNC_DELAY".into(), "120ms".into()),
    ];
    for f in (0..3).filter(|i| *i != leader) {
        assert!(c.terminate(f));
        c.spawn(f).await;
    }
    c.env.clear();
    // Whoever leads now, any quorum holds a slow disk.
    c.wait_leader(&[0, 1, 2]).await;

    let opts = ClientOptions {
        // A commit waits for a 120 ms fsync: every attempt before the
        // write is applied times out.
        request_timeout: Duration::from_millis(40),
        retry_deadline: Duration::from_secs(20),
        ..Default::default()
    };
    let client = RaftClient::connect(c.endpoints(), opts).unwrap();

    {
        tracing::info!("--- a put that times out at least once");
        let started = std::time::Instant::now();
        let r = client
            .put("lost", "v")
            .await
            .expect("put retried to success");
        assert!(
            started.elapsed() > Duration::from_millis(40),
            "the first attempt timed out (took {:?})",
            started.elapsed()
        );
        assert_eq!(
            r.kv.as_ref().unwrap().version,
            1,
            "answered as applied once"
        );
        let kv = client
            .get("lost", ReadOptions::default())
            .await
            .unwrap()
            .kv
            .unwrap();
        assert_eq!(
            kv.version, 1,
            "applied once (mod_revision {})",
            kv.mod_revision
        );
    }

    {
        tracing::info!("--- a CAS increment that times out: retried, swapped once");
        client.put("ctr", "0").await.expect("put ctr");
        let started = std::time::Instant::now();
        let r = client
            .cas("ctr", "1", Expect::Value(b"0".to_vec()))
            .await
            .expect("the retried CAS reports its own swap, not ABORTED");
        assert!(started.elapsed() > Duration::from_millis(40));
        assert_eq!(r.kv.as_ref().unwrap().value, b"1");
        let kv = client
            .get("ctr", ReadOptions::default())
            .await
            .unwrap()
            .kv
            .unwrap();
        assert_eq!((kv.value.as_slice(), kv.version), (&b"1"[..], 2));
    }
}
