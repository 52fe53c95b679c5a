//! Writes a throwaway CA and the certificates of a cluster on loopback, in the
//! layout `raft-node local --tls` uses: `ca.{crt,key}`, `node-<i>.{crt,key}`
//! (peer role; server and client use; SANs `localhost` and 127.0.0.1),
//! `admin.{crt,key}` and `kv.{crt,key}` (client certificates).
//!
//! `hack/bench/vs-etcd.sh --tls` runs it once per run and gives the same files
//! to both systems: the node certificates to raft-node and to the etcd members
//! (client and peer listeners), the admin certificate to raftctl and to etcd's
//! benchmark and etcdctl. Same CA, same key type (ECDSA P-256), same chains on
//! both sides.
//!
//!   cargo run --release -p raftkv-certs --example loopback-certs -- DIR [NODES]
//!
//! NODES defaults to 3. Existing files in DIR are replaced.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use raftkv_certs::{CA_VALIDITY, Ca, ClusterRef, Issued, LeafRequest, Role, Validity};

/// The identity's cluster: what a raft-node started with these certificates
/// believes it belongs to (peers must name the same one).
const NAMESPACE: &str = "bench";
const CLUSTER: &str = "loopback";

fn write_all(dir: &Path, nodes: u16) -> raftkv_certs::Result<()> {
    let cluster = ClusterRef::new(NAMESPACE, CLUSTER)?;
    let ca = Ca::generate(&cluster, Validity::from_now(CA_VALIDITY))?;
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for i in 0..nodes {
        let name = format!("node-{i}");
        let req = LeafRequest::node(&cluster, &name, &["localhost"], &[loopback])?;
        ca.issue(&req)?.write(dir, &name)?;
    }
    for role in [Role::Admin, Role::Kv] {
        let req = LeafRequest::client(&cluster, role, role.name())?;
        ca.issue(&req)?.write(dir, role.name())?;
    }
    Issued {
        cert_pem: ca.cert_pem().to_string(),
        key_pem: ca.key_pem().to_string(),
    }
    .write(dir, "ca")?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: loopback-certs DIR [NODES]";
    let (dir, nodes) = match args.as_slice() {
        [dir] => (PathBuf::from(dir), 3),
        [dir, n] => match n.parse::<u16>() {
            Ok(n) if n > 0 => (PathBuf::from(dir), n),
            _ => {
                eprintln!("{usage} (NODES: a positive number, not {n:?})");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("creating {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    match write_all(&dir, nodes) {
        Ok(()) => {
            println!("{}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loopback-certs: {e}");
            ExitCode::FAILURE
        }
    }
}
