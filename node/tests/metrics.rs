//! `/metrics` of a real `raft-node` process: the Raft gauges, proposals and
//! the fsync histogram move as the node works.

#[path = "cluster/util.rs"]
mod util;

use raftkv_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use util::{TestCluster, WAIT, wait_for};

const PORT_BASE: u16 = 26300;

async fn scrape(addr: &str) -> Option<String> {
    let body = http_get(addr, "/metrics").await?;
    body.starts_with("HTTP/1.1 200").then_some(body)
}

/// The whole HTTP/1.1 response (status line, headers, body) to `GET path`.
async fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    Some(body)
}

/// The status code of `GET path`, once the listener answers.
async fn http_status(addr: &str, path: &str) -> Option<u16> {
    let r = http_get(addr, path).await?;
    r.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_leader_reports_role_term_proposals_and_fsyncs() {
    let metrics_addr = format!("127.0.0.1:{}", PORT_BASE + 10);
    let c = TestCluster::start_with_env(
        1,
        PORT_BASE,
        vec![("RAFT_METRICS_ADDR".into(), metrics_addr.clone())],
    )
    .await;
    c.init(&[0]).await;
    tracing::info!("--- 5 puts");
    let mut kv = c.kv(0);
    for i in 0..5 {
        kv.put(pb::PutRequest {
            session: None,
            key: format!("m-{i}").into_bytes(),
            value: b"v".to_vec(),
        })
        .await
        .expect("put");
    }
    let status = c.status(0).await;
    let text = wait_for("metrics that show the puts", WAIT, || async {
        let t = scrape(&metrics_addr).await?;
        let applied = value(&t, "raftkv_raft_applied_index")?;
        (applied >= status.applied_index as f64).then_some(t)
    })
    .await;
    assert_eq!(
        value(&text, r#"raftkv_raft_role{role="leader"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"raftkv_raft_role{role="follower"}"#),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "raftkv_raft_term"),
        Some(status.term as f64),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"raftkv_raft_proposals_total{result="ok"}"#),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "raftkv_raft_proposal_duration_seconds_count"),
        Some(5.0),
        "{text}"
    );
    let fsyncs = value(&text, "raftkv_storage_fsync_duration_seconds_count").unwrap();
    assert!(
        fsyncs >= 5.0,
        "{fsyncs} fsyncs for 5 acknowledged writes:\n{text}"
    );
    // Read at one scrape from two sets of atomics: at most one fsync apart.
    let total = value(&text, "raftkv_storage_fsyncs_total").unwrap();
    assert!(
        (total - fsyncs).abs() <= 1.0,
        "histogram {fsyncs} vs total {total}"
    );
    assert!(
        value(&text, "raftkv_raft_commit_index").unwrap() >= 6.0,
        "{text}"
    );
}

/// Kills the node when the test ends, whatever happens.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_node_reports_when_its_certificate_expires() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    raftkv_node::local::ensure_local_certs(&tls, 1).expect("certificates");
    let metrics_addr = format!("127.0.0.1:{}", PORT_BASE + 20);
    let issued = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    tracing::info!("--- one TLS node with metrics");
    let child = std::process::Command::new(util::NODE_BIN)
        .arg("--data-dir")
        .arg(dir.path().join("node-0"))
        .args(["--client-addr", &format!("127.0.0.1:{}", PORT_BASE + 21)])
        .args(["--peer-addr", &format!("127.0.0.1:{}", PORT_BASE + 22)])
        .args(["--metrics-addr", &metrics_addr])
        .arg("--tls-cert")
        .arg(tls.join("node-0.crt"))
        .arg("--tls-key")
        .arg(tls.join("node-0.key"))
        .arg("--tls-ca")
        .arg(tls.join("ca.crt"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("node-0.log")).unwrap())
        .spawn()
        .expect("starting raft-node");
    let _node = Killed(child);
    let expiry = wait_for("the certificate expiry gauge on /metrics", WAIT, || async {
        value(
            &scrape(&metrics_addr).await?,
            "raftkv_tls_certificate_expiry_timestamp_seconds",
        )
    })
    .await;
    // The probes stay plain HTTP on a TLS node (kubelet cannot present a
    // client certificate): live at once, not ready before initialization.
    assert_eq!(http_status(&metrics_addr, "/livez").await, Some(200));
    assert_eq!(http_status(&metrics_addr, "/readyz").await, Some(503));
    // Issued just now for LEAF_VALIDITY (90 days): the gauge is that date, not
    // the CA's (10 years) nor the start of validity.
    let expected = issued + raftkv_certs::LEAF_VALIDITY.as_secs_f64();
    assert!(
        (expiry - expected).abs() < 3600.0,
        "expiry {expiry}, expected about {expected}"
    );
}

/// The HTTP probes kubelet uses (TLS or not): `/livez` answers 200 once the
/// Raft core runs, `/readyz` only once the node is a member with a leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_membership_and_livez_the_raft_core() {
    let metrics_addr = format!("127.0.0.1:{}", PORT_BASE + 40);
    let c = TestCluster::start_with_env(
        1,
        PORT_BASE + 41,
        vec![("RAFT_METRICS_ADDR".into(), metrics_addr.clone())],
    )
    .await;
    wait_for("/livez 200", WAIT, || async {
        (http_status(&metrics_addr, "/livez").await? == 200).then_some(())
    })
    .await;
    let before = http_get(&metrics_addr, "/readyz").await.expect("an answer");
    assert!(
        before.starts_with("HTTP/1.1 503") && before.contains("not a caught-up member"),
        "an uninitialized node must not be ready: {before}"
    );
    c.init(&[0]).await;
    wait_for("/readyz 200 after initialization", WAIT, || async {
        (http_status(&metrics_addr, "/readyz").await? == 200).then_some(())
    })
    .await;
    assert_eq!(http_status(&metrics_addr, "/livez").await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_node_reports_no_certificate_expiry() {
    let metrics_addr = format!("127.0.0.1:{}", PORT_BASE + 30);
    let _c = TestCluster::start_with_env(
        1,
        PORT_BASE + 31,
        vec![("RAFT_METRICS_ADDR".into(), metrics_addr.clone())],
    )
    .await;
    let text = wait_for("a scrape", WAIT, || scrape(&metrics_addr)).await;
    assert!(text.contains("raftkv_raft_term"), "{text}");
    assert!(
        !text.contains("raftkv_tls_certificate_expiry_timestamp_seconds"),
        "{text}"
    );
}
