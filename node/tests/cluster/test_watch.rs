//! `KV/Watch` on a follower: every change to its prefix committed after the
//! watch starts, in revision order, nothing outside it; a start revision
//! already applied refused; a reader that stops reading ends with
//! OUT_OF_RANGE naming the revision, never with a silent gap; and the node
//! goes on serving.

use std::collections::BTreeMap;

use raftkv_proto::v1 as pb;
use raftkv_proto::v1::watch_event::EventType;

use crate::util::*;

const PORT_BASE: u16 = 20620;

fn watch_prefix(prefix: &str, start_revision: u64) -> pb::WatchRequest {
    pb::WatchRequest {
        key: Vec::new(),
        prefix: prefix.into(),
        start_revision,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_watch_sees_every_write_to_its_prefix_in_revision_order() {
    let mut c = TestCluster::start(3, PORT_BASE).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let follower = (0..3).find(|i| *i != leader).unwrap();

    let (mut stream, start) = {
        tracing::info!("--- a watch of prefix w/ on follower {follower}");
        let mut stream = c
            .kv(follower)
            .watch(watch_prefix("w/", 0))
            .await
            .expect("watch")
            .into_inner();
        // The first message is the start: no events, the revision it follows.
        let first = stream
            .message()
            .await
            .expect("first message")
            .expect("open");
        assert!(first.events.is_empty(), "{first:?}");
        (stream, first.header.unwrap().revision)
    };

    let expected = {
        tracing::info!("--- 4 writers through the leader, in and out of the prefix");
        let mut tasks = Vec::new();
        for w in 0..4 {
            let mut kv = c.kv(leader);
            tasks.push(tokio::spawn(async move {
                // (revision -> (type, key, value)) of the writes to w/.
                let mut mine = BTreeMap::new();
                for i in 0..25 {
                    let key = format!("w/{w}/{}", i % 5);
                    let r = put(&mut kv, &key, &format!("v{i}")).await.expect("put");
                    mine.insert(
                        r.header.unwrap().revision,
                        ("PUT", key.clone(), format!("v{i}")),
                    );
                    put(&mut kv, &format!("x/{w}/{i}"), "outside")
                        .await
                        .expect("put");
                    put(&mut kv, &format!("w{w}"), "no slash: outside")
                        .await
                        .expect("put");
                    if i % 7 == 6 {
                        let d = kv
                            .delete(pb::DeleteRequest {
                                key: key.clone().into(),
                                session: None,
                            })
                            .await
                            .expect("delete")
                            .into_inner();
                        assert!(d.deleted);
                        mine.insert(d.header.unwrap().revision, ("DELETE", key, String::new()));
                    }
                }
                mine
            }));
        }
        let mut all = BTreeMap::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    };

    {
        tracing::info!("--- the watch delivers exactly those, in revision order");
        let mut got = BTreeMap::new();
        let mut last = start;
        while got.len() < expected.len() {
            let msg = tokio::time::timeout(WAIT, stream.message())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no event within {WAIT:?}; got {} of {}",
                        got.len(),
                        expected.len()
                    )
                })
                .expect("stream")
                .expect("stream open");
            let h = msg.header.unwrap();
            assert_eq!(
                h.node_id,
                c.status(follower).await.node_id,
                "served by the follower"
            );
            for ev in msg.events {
                let kv = ev.kv.unwrap();
                assert!(
                    kv.mod_revision > last,
                    "revision {} after {last}",
                    kv.mod_revision
                );
                last = kv.mod_revision;
                let key = String::from_utf8(kv.key).unwrap();
                assert!(key.starts_with("w/"), "{key} is outside the prefix");
                let kind = match EventType::try_from(ev.r#type).unwrap() {
                    EventType::Put => "PUT",
                    EventType::Delete => "DELETE",
                };
                got.insert(
                    kv.mod_revision,
                    (kind, key, String::from_utf8(kv.value).unwrap()),
                );
            }
        }
        assert_eq!(got, expected);
        assert!(*expected.keys().next().unwrap() > start);
    }

    {
        tracing::info!("--- a start revision already applied is refused; the next one is accepted");
        let applied = c.status(follower).await.revision;
        let e = c
            .kv(follower)
            .watch(watch_prefix("w/", applied))
            .await
            .expect_err("a revision already applied");
        assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");
        assert!(e.message().contains("keeps no history"), "{e:?}");
        let mut s = c
            .kv(follower)
            .watch(watch_prefix("w/", applied + 1))
            .await
            .expect("watch from the next revision")
            .into_inner();
        let first = s.message().await.unwrap().unwrap();
        assert_eq!(first.header.unwrap().revision, applied);
        let both = c
            .kv(follower)
            .watch(pb::WatchRequest {
                key: "k".into(),
                prefix: "p".into(),
                start_revision: 0,
            })
            .await
            .expect_err("key and prefix");
        assert_eq!(both.code(), tonic::Code::InvalidArgument);
    }

    {
        tracing::info!("--- a watcher that stops reading falls behind with OUT_OF_RANGE, no gap");
        let mut slow = c
            .kv(follower)
            .watch(watch_prefix("s/", 0))
            .await
            .expect("watch")
            .into_inner();
        let first = slow.message().await.unwrap().unwrap();
        let mut last = first.header.unwrap().revision;
        // One entry per write (one writer, each waits for its answer); 4 KiB
        // values fill the stream's flow-control window long before the
        // 256-entry ring is through.
        let mut kv = c.kv(leader);
        let value = "v".repeat(4096);
        for i in 0..800 {
            put(&mut kv, &format!("s/{i}"), &value).await.expect("put");
        }
        let end = loop {
            match tokio::time::timeout(WAIT, slow.message())
                .await
                .expect("stream stalled")
            {
                Ok(Some(msg)) => {
                    for ev in msg.events {
                        let rev = ev.kv.unwrap().mod_revision;
                        // Only s/ keys are written meanwhile: contiguous.
                        assert_eq!(rev, last + 1, "a gap in the delivered events");
                        last = rev;
                    }
                }
                Ok(None) => panic!("the stream ended without saying why"),
                Err(status) => break status,
            }
        };
        assert_eq!(end.code(), tonic::Code::OutOfRange, "{end:?}");
        assert!(
            end.message()
                .contains(&format!("fell behind at revision {}", last + 1)),
            "{end:?} after revision {last}"
        );
        // The node serves on.
        let r = get(&mut c.kv(follower), "s/799", linearizable())
            .await
            .expect("get");
        assert_eq!(r.kv.unwrap().value.len(), 4096);
    }

    {
        tracing::info!("--- an open watch does not hold up the node's shutdown (SIGTERM)");
        let mut open = c
            .kv(follower)
            .watch(watch_prefix("", 0))
            .await
            .expect("watch")
            .into_inner();
        open.message().await.unwrap().unwrap();
        let mut child = c.nodes[follower].child.take().unwrap();
        // SAFETY: plain kill(2) on a child we own and have not reaped.
        assert_eq!(
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
            0
        );
        let status = wait_for("the watched node to exit after SIGTERM", WAIT, || {
            let r = child.try_wait().expect("try_wait");
            async move { r }
        })
        .await;
        assert!(status.success(), "{status:?}");
        let end = tokio::time::timeout(WAIT, open.message())
            .await
            .expect("the stream ended");
        assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    }
}
