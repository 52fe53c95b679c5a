//! Hole 6 of issue 11 ("one request can stop a leader"): every request is
//! bounded before it reaches the log, so no single request can make a log
//! append fail (which is fatal to openraft) on the leader.

use raftkv_proto::v1 as pb;
use tonic::Code;

use crate::util::*;

const PORT_BASE: u16 = 20000;

fn cas_expecting(value_len: usize) -> pb::CompareAndSwapRequest {
    pb::CompareAndSwapRequest {
        session: None,
        key: b"victim".to_vec(),
        value: b"new".to_vec(),
        expect: Some(pb::compare_and_swap_request::Expect::ExpectValue(vec![
            b'x';
            value_len
        ])),
    }
}

/// Before the fix, a compare-and-swap whose expected value was 20 MiB went
/// into a log entry larger than a log record may be: the append failed, the
/// leader's Raft core stopped, and the same request sent to the next leader
/// took the cluster below quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_expected_value_is_refused_and_the_leader_keeps_leading() {
    let c = TestCluster::start(3, PORT_BASE).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let follower = (leader + 1) % 3;
    let term = c.status(leader).await.term;

    for (who, i) in [
        ("leader", leader),
        ("follower", follower),
        ("leader again", leader),
    ] {
        let err = c
            .kv(i)
            .max_encoding_message_size(64 << 20)
            .compare_and_swap(cas_expecting(20 << 20))
            .await
            .expect_err("a 20 MiB expected value must be refused");
        assert!(
            matches!(
                err.code(),
                Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted
            ),
            "{who}: refused as bad input, got {err:?}"
        );
    }

    // Just over the value limit: refused by the handler with a message saying so.
    let err = c
        .kv(leader)
        .compare_and_swap(cas_expecting((1 << 20) + 1))
        .await
        .expect_err("an expected value over the value limit is refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("expected value"), "{err:?}");

    put(&mut c.kv(follower), "after", "ok")
        .await
        .expect("the cluster still takes writes");
    let s = c.status(leader).await;
    assert_eq!(s.role, pb::Role::Leader as i32, "the leader still leads");
    assert_eq!(s.term, term, "no election was needed");
    for i in 0..3 {
        assert!(c.status(i).await.healthy, "node {i} serves");
    }
}

/// A Range over large values stops at the reply byte bound and says there is more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_range_reply_is_bounded_in_bytes() {
    let c = TestCluster::start(3, PORT_BASE + 10).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let mut kv = c.kv(leader);
    // 20 values of 1 MiB: 20 MiB, more than the 16 MiB reply bound.
    for i in 0..20 {
        kv.put(pb::PutRequest {
            session: None,
            key: format!("big/{i:02}").into_bytes(),
            value: vec![b'v'; 1 << 20],
        })
        .await
        .expect("put");
    }
    let reply = c
        .kv(leader)
        .max_decoding_message_size(64 << 20)
        .range(pb::RangeRequest {
            prefix: b"big/".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    let bytes: usize = reply
        .kvs
        .iter()
        .map(|kv| kv.key.len() + kv.value.len())
        .sum();
    assert!(reply.more, "the reply says there is more");
    assert!(bytes <= 16 << 20, "{bytes} bytes in one reply");
    assert!(
        reply.kvs.len() >= 15,
        "{} pairs: the bound, not the count, stopped it",
        reply.kvs.len()
    );
}

/// A fatal storage error (here: every fsync of one node fails) stops openraft's
/// core for good. Before the fix the process stayed up, not serving, and
/// nothing restarted it; now it exits non-zero so its supervisor restarts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fatal_storage_error_exits_the_process_non_zero() {
    let mut c = TestCluster::start(3, PORT_BASE + 20).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let broken = (leader + 1) % 3;
    // Restarted on a disk whose fsyncs fail once the node runs (after its
    // first 10: recovery and start-up).
    c.kill(broken);
    c.env = vec![("RAFTKV_FAULT_FSYNC_FAIL_AFTER".into(), "10".into())];
    c.spawn(broken).await;
    c.env.clear();
    // Writes reach its log until an append's fsync fails.
    let mut n = 0;
    let status = loop {
        let exited = c.nodes[broken]
            .child
            .as_mut()
            .expect("started")
            .try_wait()
            .expect("try_wait");
        if let Some(status) = exited {
            break status;
        }
        assert!(
            n < 2_000,
            "the node with failing fsyncs is still running after {n} writes"
        );
        put(&mut c.kv(leader), &format!("k{n}"), "v")
            .await
            .expect("two healthy voters commit");
        n += 1;
    };
    assert!(!status.success(), "exited with {status}");
    let log = std::fs::read_to_string(&c.nodes[broken].log).unwrap_or_default();
    assert!(log.contains("fatal"), "its log says why:\n{log}");
}
