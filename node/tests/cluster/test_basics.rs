//! Election, replication, reads at every consistency level, CAS races, bad
//! input, and bootstrap refusal on a 3-node cluster.

use std::collections::HashSet;

use raftkv_proto::v1 as pb;
use tonic::Code;

use crate::util::*;

const PORT_BASE: u16 = 21000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_elect_replicate_and_serve_reads_everywhere() {
    let c = TestCluster::start(3, PORT_BASE).await;

    tracing::info!("--- fresh nodes are uninitialized and not serving");
    for i in 0..3 {
        let s = c.status(i).await;
        assert_eq!(s.role, pb::Role::Uninitialized as i32, "node {i}");
        assert!(s.cluster_id.is_empty());
        assert!(!s.healthy);
        assert_ne!(s.node_id, 0);
    }

    tracing::info!("--- initialize");
    let init = c.init(&[0, 1, 2]).await;
    assert_eq!(init.cluster_id.len(), 32);
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let follower = (leader + 1) % 3;

    tracing::info!("--- a write through a follower is forwarded to the leader");
    let mut kv = c.kv(follower);
    let first = put(&mut kv, "greeting", "hello")
        .await
        .expect("put via follower");
    let header = first.header.unwrap();
    assert_eq!(
        header.node_id,
        c.status(leader).await.node_id,
        "the leader served the forwarded write"
    );
    assert_eq!(header.revision, 1);
    let kv1 = first.kv.unwrap();
    assert_eq!(
        (kv1.create_revision, kv1.mod_revision, kv1.version),
        (1, 1, 1)
    );

    tracing::info!("--- linearizable read on every node sees it");
    for i in 0..3 {
        let got = get(&mut c.kv(i), "greeting", linearizable())
            .await
            .expect("get");
        assert_eq!(got.kv.unwrap().value, b"hello");
        assert_eq!(
            got.header.unwrap().node_id,
            c.status(i).await.node_id,
            "served locally by node {i}"
        );
    }

    tracing::info!("--- all nodes share the cluster ID and become healthy");
    wait_for("all nodes healthy", WAIT, || async {
        for i in 0..3 {
            let s = status_of(&c.nodes[i].client_addr).await.ok()?;
            if !s.healthy || s.cluster_id != init.cluster_id {
                return None;
            }
        }
        Some(())
    })
    .await;

    tracing::info!("--- revisions, delete and range");
    let mut kv = c.kv(leader);
    let p2 = put(&mut kv, "greeting", "hi").await.unwrap().kv.unwrap();
    assert_eq!((p2.create_revision, p2.mod_revision, p2.version), (1, 2, 2));
    for k in ["app/a", "app/b", "app/c", "other"] {
        put(&mut kv, k, "v").await.unwrap();
    }
    let r = kv
        .range(pb::RangeRequest {
            prefix: b"app/".to_vec(),
            limit: 2,
            read: linearizable(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<_> = r
        .kvs
        .iter()
        .map(|k| String::from_utf8_lossy(&k.key).to_string())
        .collect();
    assert_eq!(keys, ["app/a", "app/b"]);
    assert!(r.more);
    let d = kv
        .delete(pb::DeleteRequest {
            session: None,
            key: b"app/a".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(d.deleted);
    let d2 = kv
        .delete(pb::DeleteRequest {
            session: None,
            key: b"app/a".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!d2.deleted);
    assert_eq!(
        d2.header.unwrap().revision,
        d.header.unwrap().revision,
        "a no-op delete leaves the revision"
    );
    let e = get(&mut kv, "app/a", linearizable()).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    tracing::info!("--- stale and bounded reads on a follower");
    let last_rev = put(&mut kv, "fresh", "1")
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    let mut fkv = c.kv(follower);
    let read = pb::ReadOptions {
        consistency: pb::Consistency::Stale as i32,
        min_revision: last_rev,
        ..Default::default()
    };
    let got = get(&mut fkv, "fresh", Some(read))
        .await
        .expect("stale read with min_revision");
    assert!(got.header.unwrap().revision >= last_rev);
    let bounded = pb::ReadOptions {
        consistency: pb::Consistency::Bounded as i32,
        max_staleness_ms: 5_000,
        min_revision: last_rev,
    };
    get(&mut fkv, "fresh", Some(bounded))
        .await
        .expect("bounded read on a healthy follower");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_with_the_right_code() {
    let c = TestCluster::start(1, PORT_BASE + 20).await;

    tracing::info!("--- before initialization");
    let e = put(&mut c.kv(0), "k", "v").await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");

    c.init(&[0]).await;
    let mut kv = c.kv(0);
    tracing::info!("--- empty key, oversized key and value");
    let e = put(&mut kv, "", "v").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("empty"), "{}", e.message());
    let big_key = "k".repeat(4097);
    assert_eq!(
        put(&mut kv, &big_key, "v").await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let big = kv
        .put(pb::PutRequest {
            session: None,
            key: b"k".to_vec(),
            value: vec![0; (1 << 20) + 1],
        })
        .await
        .unwrap_err();
    assert_eq!(big.code(), Code::InvalidArgument);
    assert!(big.message().contains("limit"), "{}", big.message());

    tracing::info!("--- CAS without expectation, bad range, unknown consistency");
    let e = kv
        .compare_and_swap(pb::CompareAndSwapRequest {
            session: None,
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            expect: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = kv
        .range(pb::RangeRequest {
            start: b"b".to_vec(),
            end: b"a".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = get(
        &mut kv,
        "k",
        Some(pb::ReadOptions {
            consistency: 42,
            ..Default::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    tracing::info!("--- nothing above changed the store");
    let s = c.status(0).await;
    assert_eq!(s.revision, 0);

    tracing::info!("--- double initialization is refused");
    let again = c
        .cluster(0)
        .initialize(pb::InitializeRequest {
            members: vec![TestCluster::member(&s)],
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cas_has_exactly_one_winner_per_expected_value() {
    let c = TestCluster::start(3, PORT_BASE + 40).await;
    c.init(&[0, 1, 2]).await;
    let rounds = 10;
    let contenders = 6;
    put(&mut c.kv(0), "counter", "0").await.unwrap();
    for round in 0..rounds {
        let expect = round.to_string();
        let mut tasks = Vec::new();
        for who in 0..contenders {
            let mut kv = c.kv(who % 3);
            let expect = expect.clone();
            tasks.push(tokio::spawn(async move {
                let req = pb::CompareAndSwapRequest {
                    session: None,
                    key: b"counter".to_vec(),
                    value: (round + 1).to_string().into_bytes(),
                    expect: Some(pb::compare_and_swap_request::Expect::ExpectValue(
                        expect.into_bytes(),
                    )),
                };
                match kv.compare_and_swap(req).await {
                    Ok(_) => Some(who),
                    Err(s) if s.code() == Code::Aborted => None,
                    Err(s) => panic!("unexpected CAS error: {s}"),
                }
            }));
        }
        let mut winners = HashSet::new();
        for t in tasks {
            if let Some(w) = t.await.unwrap() {
                winners.insert(w);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
    }
    let v = get(&mut c.kv(1), "counter", linearizable())
        .await
        .unwrap()
        .kv
        .unwrap();
    assert_eq!(v.value, rounds.to_string().as_bytes());

    tracing::info!("--- expect-absent and expect-revision");
    let mut kv = c.kv(2);
    let req = |expect| pb::CompareAndSwapRequest {
        session: None,
        key: b"lock".to_vec(),
        value: b"me".to_vec(),
        expect: Some(expect),
    };
    use pb::compare_and_swap_request::Expect;
    let first = kv
        .compare_and_swap(req(Expect::ExpectAbsent(true)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        kv.compare_and_swap(req(Expect::ExpectAbsent(true)))
            .await
            .unwrap_err()
            .code(),
        Code::Aborted
    );
    let rev = first.kv.unwrap().mod_revision;
    assert_eq!(
        kv.compare_and_swap(req(Expect::ExpectRevision(rev + 100)))
            .await
            .unwrap_err()
            .code(),
        Code::Aborted
    );
    kv.compare_and_swap(req(Expect::ExpectRevision(rev)))
        .await
        .expect("CAS on the right revision");
}
