//! Hole 3 of issue 11: a bounded-staleness read must reflect every write
//! acknowledged more than the bound before it started, also on a leader that
//! was stopped while the others moved on.

use std::time::Duration;

use raftkv_proto::v1 as pb;
use tonic::Code;

use crate::util::*;

const PORT_BASE: u16 = 20200;
const BOUND: Duration = Duration::from_millis(300);

fn signal(c: &TestCluster, i: usize, sig: libc::c_int) {
    let pid = c.nodes[i].child.as_ref().expect("node is running").id();
    // SAFETY: plain kill(2) on a child we own and have not reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Before the fix the resumed leader answered from openraft's metrics
/// snapshot, published before the pause ("a quorum acknowledged me 20 ms
/// ago"), and served the value the others had already overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_leader_serves_no_bounded_read_older_than_the_bound() {
    let c = TestCluster::start(3, PORT_BASE).await;
    c.init(&[0, 1, 2]).await;
    for round in 0..3 {
        let old = c.wait_leader(&[0, 1, 2]).await;
        let mut old_kv = c.kv(old);
        put(&mut old_kv, "k", &format!("before-{round}"))
            .await
            .expect("write before the pause");

        signal(&c, old, libc::SIGSTOP);
        let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
        let new = c.wait_leader(&others).await;
        let newer = format!("after-{round}");
        put(&mut c.kv(new), "k", &newer)
            .await
            .expect("write on the new leader");
        // The bound is about time: let the new write age past it.
        tokio::time::sleep(BOUND + Duration::from_millis(50)).await;

        // Sent while the old leader is stopped, so it is among the first
        // things the process sees when it resumes.
        let read = tokio::spawn(async move {
            get(
                &mut old_kv,
                "k",
                Some(pb::ReadOptions {
                    consistency: pb::Consistency::Bounded as i32,
                    max_staleness_ms: BOUND.as_millis() as u64,
                    ..Default::default()
                }),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        signal(&c, old, libc::SIGCONT);
        match read.await.expect("read task") {
            Ok(r) => {
                let got =
                    r.kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                assert_eq!(
                    got.as_deref(),
                    Some(newer.as_str()),
                    "round {round}: a bounded read of at most {BOUND:?} on the resumed leader returned a value overwritten more than {BOUND:?} earlier"
                );
            }
            Err(e) => assert!(
                matches!(e.code(), Code::FailedPrecondition | Code::Unavailable),
                "round {round}: unexpected refusal {e}"
            ),
        }
        c.wait_leader(&[0, 1, 2]).await;
    }
}
