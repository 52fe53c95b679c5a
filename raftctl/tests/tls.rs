//! TLS and authorization end to end (docs/security.md): real `raft-node`
//! processes started with certificates made by `raftkv-certs`, the real
//! `raftctl`, and raw peer-plane calls over real sockets.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{LogsOnPanic, Procs, Ran, WAIT, endpoint, wait_until};
use raftkv_certs::{CA_VALIDITY, Ca, ClusterRef, Issued, LeafRequest, Role, Validity};
use raftkv_client::tls::{Credentials, TlsFiles};
use raftkv_client::{ClientOptions, RaftClient, ReadOptions};
use serde_json::Value;

/// Port ranges of this file (raftctl_cli.rs uses 26000-26199, node/tests/metrics.rs 26300).
const AUTH_PORT_BASE: u16 = 26500;
const ROTATE_PORT_BASE: u16 = 26600;

/// A cluster's certificates in a directory: `ca.crt`, `node-<i>.{crt,key}`,
/// `admin.{crt,key}`, `kv.{crt,key}`.
struct Pki {
    dir: PathBuf,
    ca: Ca,
    cluster: ClusterRef,
}

impl Pki {
    fn new(dir: &Path, cluster: &str) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let cluster = ClusterRef::new("test", cluster).unwrap();
        let ca = Ca::generate(&cluster, Validity::from_now(CA_VALIDITY)).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
        let pki = Pki {
            dir: dir.to_path_buf(),
            ca,
            cluster,
        };
        for i in 0..3 {
            pki.node_cert(i);
        }
        for role in [Role::Admin, Role::Kv] {
            pki.issue(
                role.name(),
                LeafRequest::client(&pki.cluster, role, role.name()).unwrap(),
            );
        }
        pki
    }

    fn issue(&self, stem: &str, req: LeafRequest) -> Issued {
        let issued = self.ca.issue(&req).unwrap();
        issued.write(&self.dir, stem).unwrap();
        issued
    }

    /// (Re)writes node i's certificate with a fresh key; returns its PEM.
    fn node_cert(&self, i: u16) -> String {
        let name = format!("node-{i}");
        let req = LeafRequest::node(
            &self.cluster,
            &name,
            &["localhost"],
            &["127.0.0.1".parse().unwrap()],
        )
        .unwrap();
        self.issue(&name, req).cert_pem
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// raftctl's TLS flags for a client holding `who` (`None`: no certificate).
    fn flags(&self, who: Option<&str>) -> Vec<String> {
        let mut f = vec![
            "--cacert".to_string(),
            self.path("ca.crt").display().to_string(),
        ];
        if let Some(w) = who {
            f.push("--cert".into());
            f.push(self.path(&format!("{w}.crt")).display().to_string());
            f.push("--key".into());
            f.push(self.path(&format!("{w}.key")).display().to_string());
        }
        f
    }

    fn client_config(&self, who: &str) -> Arc<rustls::ClientConfig> {
        let files = TlsFiles::new(self.path("ca.crt")).with_identity(
            self.path(&format!("{who}.crt")),
            self.path(&format!("{who}.key")),
        );
        Credentials::load(files).unwrap().client_config().unwrap()
    }
}

/// TLS node `i`: its certificate from `pki`, trusting `pki`'s CA.
fn spawn_node(dir: &Path, pki: &Pki, i: u16, base: u16) -> Child {
    let cert = pki.path(&format!("node-{i}.crt"));
    let key = pki.path(&format!("node-{i}.key"));
    let ca = pki.path("ca.crt");
    let tls = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-ca",
        ca.to_str().unwrap(),
    ];
    common::spawn_node(dir, i, base, &tls)
}

/// raftctl with a 2s timeout and the TLS flags `tls` (`Pki::flags`).
fn ctl(endpoints: &str, tls: &[String], args: &[&str]) -> Ran {
    common::ctl_args(endpoints, &with_timeout(tls), args)
}

fn ok(endpoints: &str, tls: &[String], args: &[&str]) -> String {
    common::ok_args(endpoints, &with_timeout(tls), args)
}

/// Exit 1; returns the whole stderr (these tests only look for words in it).
fn fails(endpoints: &str, tls: &[String], args: &[&str]) -> String {
    common::exits_1_args(endpoints, &with_timeout(tls), args)
}

fn with_timeout(tls: &[String]) -> Vec<String> {
    let mut v = vec!["--timeout".to_string(), "2s".to_string()];
    v.extend_from_slice(tls);
    v
}

/// Starts 3 TLS nodes, waits for them, initializes them with the admin
/// certificate; returns the client endpoints.
fn tls_cluster(dir: &Path, pki: &Pki, base: u16) -> (Procs, String) {
    let procs = Procs((0..3).map(|i| spawn_node(dir, pki, i, base)).collect());
    let eps: Vec<String> = (0..3)
        .map(|i| format!("https://{}", endpoint(base, i)))
        .collect();
    let admin = pki.flags(Some("admin"));
    for ep in &eps {
        wait_until(&format!("{ep} to answer status"), || {
            ctl(ep, &admin, &["status", "-o", "json"]).code == 0
        });
    }
    let all = eps.join(",");
    (procs, all)
}

fn status(all: &str, pki: &Pki) -> Value {
    let out = ok(all, &pki.flags(Some("admin")), &["status", "-o", "json"]);
    serde_json::from_str(&out).unwrap()
}

fn term_of_leader(st: &Value) -> (u64, u64) {
    let leader = st["leader_id"].as_u64().unwrap();
    let term = st["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"].as_u64() == Some(leader))
        .map(|m| m["term"].as_u64().unwrap())
        .unwrap_or(0);
    (leader, term)
}

#[test]
fn clients_need_a_certificate_and_the_admin_role_to_change_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let _logs = LogsOnPanic(dir.path());
    let pki = Pki::new(&dir.path().join("tls"), "demo");
    let (_procs, all) = tls_cluster(dir.path(), &pki, AUTH_PORT_BASE);
    let (none, kv, admin) = (
        pki.flags(None),
        pki.flags(Some("kv")),
        pki.flags(Some("admin")),
    );

    // --- a kv certificate cannot initialize the cluster; admin can
    let err = fails(&all, &kv, &["cluster", "init"]);
    assert!(err.contains("requires the admin role"), "{err}");
    assert!(err.contains("PermissionDenied"), "{err}");
    let out = ok(&all, &admin, &["cluster", "init"]);
    assert!(out.contains("initialized with 3 voters"), "{out}");

    // --- without a client certificate: no reads, no writes, and it says why
    for args in [&["put", "k", "v"][..], &["get", "k"][..]] {
        let err = fails(&all, &none, args);
        assert!(
            err.contains("requires a client certificate"),
            "{args:?}: {err}"
        );
    }
    // --- without TLS at all: refused too (https:// asks for a CA)
    let r = ctl(&all, &[], &["get", "k"]);
    assert_ne!(r.code, 0, "{}", r.stderr);

    // --- kv certificate: reads and writes, Status, but no membership change
    assert_eq!(ok(&all, &kv, &["put", "k", "v1"]), "OK\n");
    assert_eq!(ok(&all, &kv, &["get", "k"]), "v1\n");
    let st = serde_json::from_str::<Value>(&ok(&all, &kv, &["status", "-o", "json"])).unwrap();
    let follower = st["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "follower")
        .unwrap()["id"]
        .as_u64()
        .unwrap()
        .to_string();
    for args in [
        &["member", "remove", &follower][..],
        &["member", "transfer-leader", &follower][..],
    ] {
        let err = fails(&all, &kv, args);
        assert!(err.contains("requires the admin role"), "{args:?}: {err}");
        assert!(err.contains("has role kv"), "{args:?}: {err}");
        assert!(err.contains("PermissionDenied"), "{args:?}: {err}");
    }
    assert_eq!(status(&all, &pki)["members"].as_array().unwrap().len(), 3);

    // --- admin certificate: a membership change goes through
    let out = ok(
        &all,
        &admin,
        &["member", "transfer-leader", &follower, "-o", "json"],
    );
    let t: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        t["new_leader_id"].as_u64().unwrap().to_string(),
        follower,
        "{t}"
    );

    // --- a server certificate from another CA is named as such
    let other = Pki::new(&dir.path().join("other"), "demo");
    let err = fails(&all, &other.flags(Some("kv")), &["get", "k"]);
    assert!(err.contains("not signed by the CA given"), "{err}");
}

/// One raw call to a peer listener: the code and message of the refusal
/// (or of whatever the node answered).
async fn peer_call(addr: &str, tls: Arc<rustls::ClientConfig>) -> (tonic::Code, String) {
    let ch = raftkv_client::channel::ChannelSettings::new(Duration::from_secs(2))
        .with_tls(Some(tls))
        .lazy(addr)
        .unwrap();
    let mut c = raftkv_proto::v1::raft_peer_client::RaftPeerClient::new(ch);
    let req = raftkv_proto::v1::RaftRequest {
        cluster_id: "not-the-cluster".into(),
        target_node_id: 1,
        from_node_id: 2,
        payload: Vec::new().into(),
        ..Default::default()
    };
    match c.append_entries(req).await {
        Ok(_) => (tonic::Code::Ok, String::new()),
        Err(s) => {
            let mut m = s.message().to_string();
            let mut src = std::error::Error::source(&s);
            while let Some(e) = src {
                m.push_str(&format!(": {e}"));
                src = e.source();
            }
            (s.code(), m)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_plane_accepts_only_peers_of_its_own_cluster_and_ca() {
    let dir = tempfile::tempdir().unwrap();
    let _logs = LogsOnPanic(dir.path());
    let pki = Pki::new(&dir.path().join("tls"), "demo");
    let base = AUTH_PORT_BASE + 50;
    let _procs = Procs(vec![spawn_node(dir.path(), &pki, 0, base)]);
    let client_ep = format!("https://127.0.0.1:{base}");
    let admin = pki.flags(Some("admin"));
    tokio::task::block_in_place(|| {
        wait_until("node-0 to answer status", || {
            ctl(&client_ep, &admin, &["status"]).code == 0
        })
    });
    let peer = format!("127.0.0.1:{}", base + 1);

    // --- control: a peer of the cluster gets past TLS and authorization
    // (and is refused by the envelope check: wrong cluster ID in the message)
    let (code, msg) = peer_call(&peer, pki.client_config("node-1")).await;
    assert!(
        !matches!(
            code,
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated | tonic::Code::Unavailable
        ),
        "{code:?}: {msg}"
    );

    // --- a client certificate of the same CA is not a peer
    let (code, msg) = peer_call(&peer, pki.client_config("admin")).await;
    assert_eq!(code, tonic::Code::PermissionDenied, "{msg}");
    assert!(msg.contains("requires the peer role"), "{msg}");

    // --- a peer certificate of the same CA naming another cluster
    let req = LeafRequest::node(
        &ClusterRef::new("test", "other").unwrap(),
        "intruder",
        &["localhost"],
        &["127.0.0.1".parse().unwrap()],
    )
    .unwrap();
    pki.issue("intruder", req);
    let (code, msg) = peer_call(&peer, pki.client_config("intruder")).await;
    assert_eq!(code, tonic::Code::PermissionDenied, "{msg}");
    assert!(msg.contains("for cluster test/other"), "{msg}");

    // --- a peer certificate from another CA (same cluster name): the
    // handshake fails, the node never sees a request. It trusts our CA, so
    // the refusal is the node's, not ours.
    let other = Pki::new(&dir.path().join("other"), "demo");
    std::fs::copy(pki.path("ca.crt"), other.path("trust.crt")).unwrap();
    let files = TlsFiles::new(other.path("trust.crt"))
        .with_identity(other.path("node-1.crt"), other.path("node-1.key"));
    let foreign = Credentials::load(files).unwrap().client_config().unwrap();
    let (code, msg) = peer_call(&peer, foreign).await;
    assert_eq!(code, tonic::Code::Unavailable, "{msg}");
    assert!(msg.contains("refused our certificate"), "{msg}");

    // --- and a node started with the foreign CA cannot join: its own
    // listener is not trusted by the cluster's CA (raftctl names it)
    let err = fails(&client_ep, &other.flags(Some("admin")), &["status"]);
    assert!(err.contains("not signed by the CA given"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_certificates_under_writes_loses_no_write_and_keeps_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let _logs = LogsOnPanic(dir.path());
    let pki = Pki::new(&dir.path().join("tls"), "demo");
    let (_procs, all) =
        tokio::task::block_in_place(|| tls_cluster(dir.path(), &pki, ROTATE_PORT_BASE));
    tokio::task::block_in_place(|| {
        ok(&all, &pki.flags(Some("admin")), &["cluster", "init"]);
        wait_until("a leader", || term_of_leader(&status(&all, &pki)).0 != 0);
    });
    let (leader, term) = tokio::task::block_in_place(|| term_of_leader(&status(&all, &pki)));

    // --- writes run on one connection pool all along
    let eps: Vec<String> = all.split(',').map(str::to_string).collect();
    let opts = ClientOptions {
        tls: Some(pki.client_config("kv")),
        ..Default::default()
    };
    let client = RaftClient::connect(eps.clone(), opts).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (client, stop, acks) = (client.clone(), stop.clone(), acks.clone());
        tokio::spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("rot/{i}");
                match client.put(key.clone(), format!("v{i}")).await {
                    Ok(_) => {
                        acked.push(key);
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failed.push(format!("{key}: {e}")),
                }
                i += 1;
            }
            (acked, failed)
        })
    };
    let wait_acks = |n: usize| {
        let acks = acks.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            while acks.load(Ordering::Relaxed) < n {
                assert!(
                    Instant::now() < deadline,
                    "writes stalled below {n} acknowledged"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_acks(20).await;

    // --- rotate every node's certificate (new key, same CA), as Kubernetes
    // rewrites a Secret volume, and the client's too
    let mut fresh = Vec::new();
    for i in 0..3 {
        fresh.push(pki.node_cert(i));
    }
    pki.issue(
        "kv",
        LeafRequest::client(&pki.cluster, Role::Kv, "kv").unwrap(),
    );

    // --- every listener, client and peer, serves the new certificate
    let probe = pki.client_config("admin");
    for i in 0..3u16 {
        let want = raftkv_certs::pem_certs_to_der(&fresh[i as usize])
            .unwrap()
            .remove(0);
        for port in [ROTATE_PORT_BASE + 2 * i, ROTATE_PORT_BASE + 2 * i + 1] {
            let deadline = Instant::now() + WAIT;
            loop {
                let served = served_cert(port, probe.clone()).await;
                if served.as_deref() == Some(&want[..]) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "port {port} still serves the old certificate"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // A brand-new client with the rotated client certificate is accepted.
    tokio::task::block_in_place(|| {
        assert_eq!(ok(&all, &pki.flags(Some("kv")), &["get", "rot/0"]), "v0\n");
    });

    // --- writes go on after the rotation, then stop
    wait_acks(acks.load(Ordering::Relaxed) + 50).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = writer.await.unwrap();

    assert!(
        failed.is_empty(),
        "failed writes during rotation: {failed:?}"
    );
    assert!(acked.len() > 70, "only {} writes", acked.len());
    // Every acknowledged write is there.
    let r = client
        .range_prefix("rot/", 0, ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(
        r.kvs.len(),
        acked.len(),
        "acknowledged {} keys, found {}",
        acked.len(),
        r.kvs.len()
    );
    // No election: same leader, same term.
    let st = tokio::task::block_in_place(|| status(&all, &pki));
    assert_eq!(term_of_leader(&st), (leader, term), "{st}");
}

/// The certificate a TLS listener on `port` presents to a new connection.
async fn served_cert(port: u16, config: Arc<rustls::ClientConfig>) -> Option<Vec<u8>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").ok()?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .ok()?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
}

#[test]
fn raft_node_local_tls_prints_flags_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster");
    let out_log = dir.path().join("local.out");
    let base = AUTH_PORT_BASE + 70;
    let _procs = Procs(vec![common::spawn_local(&data, base, &["--tls"], &out_log)]);
    let _logs = LogsOnPanic(&data);
    wait_until("raft-node local --tls to print its export lines", || {
        std::fs::read_to_string(&out_log)
            .unwrap_or_default()
            .contains("export RAFTCTL_KEY=")
    });
    let out = std::fs::read_to_string(&out_log).unwrap();
    let var = |name: &str| -> String {
        let prefix = format!("export {name}=");
        out.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .to_string()
    };
    let eps = var("RAFTCTL_ENDPOINTS");
    assert!(eps.starts_with("https://127.0.0.1:"), "{eps}");
    let flags = [
        "--cacert".to_string(),
        var("RAFTCTL_CACERT"),
        "--cert".to_string(),
        var("RAFTCTL_CERT"),
        "--key".to_string(),
        var("RAFTCTL_KEY"),
    ];
    // The nodes really run TLS: the node flags name the generated files.
    let node_log = std::fs::read_to_string(data.join("node-0.log")).unwrap_or_default();
    assert!(node_log.contains("local/local"), "{node_log}");
    assert_eq!(ok(&eps, &flags, &["put", "tls", "yes"]), "OK\n");
    assert_eq!(ok(&eps, &flags, &["get", "tls"]), "yes\n");
    // The admin certificate it printed may change the cluster.
    ok(&eps, &flags, &["member", "transfer-leader"]);
    // Without a certificate: refused.
    let err = fails(&eps, &flags[..2], &["get", "tls"]);
    assert!(err.contains("requires a client certificate"), "{err}");
}
