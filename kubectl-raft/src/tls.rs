//! TLS of the data commands: the cluster's `<name>-admin` Secret (read through
//! the API, as kubectl reads anything) written to a private temporary
//! directory for raftctl, and the name the nodes' certificate is verified for,
//! since the relay's `127.0.0.1` is not what the certificate is about.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use raft_operator::certificates::{
    CA_CRT, TLS_CRT, TLS_KEY, admin_secret_name, service_server_name,
};
use raft_operator::crd::RaftCluster;

/// Where the node container mounts its certificate Secret.
const NODE_TLS_DIR: &str = raft_operator::resources::TLS_DIR;

/// raftctl's flags to use the node's own certificate inside its pod.
pub fn node_pod_raftctl_args() -> Vec<String> {
    [
        "--cacert".to_string(),
        format!("{NODE_TLS_DIR}/{CA_CRT}"),
        "--cert".into(),
        format!("{NODE_TLS_DIR}/{TLS_CRT}"),
        "--key".into(),
        format!("{NODE_TLS_DIR}/{TLS_KEY}"),
    ]
    .to_vec()
}

/// The Secret whose client certificate the data commands present: the
/// operator-made `<name>-admin`, or with bring-your-own certificates the one
/// the operator itself uses (`spec.tls.operatorSecretName`). `None`: no TLS.
pub fn client_secret_name(rc: &RaftCluster) -> Option<String> {
    let tls = &rc.spec.tls;
    if !tls.enabled {
        return None;
    }
    let name = rc.metadata.name.clone().unwrap_or_default();
    Some(
        tls.operator_secret_name
            .clone()
            .unwrap_or_else(|| admin_secret_name(&name)),
    )
}

/// raftctl's TLS flags for files in `dir`, verifying the nodes as the
/// cluster's client Service name.
pub fn raftctl_args(dir: &Path, cluster: &str, namespace: &str) -> Vec<String> {
    let f = |k: &str| dir.join(k).display().to_string();
    vec![
        "--cacert".into(),
        f(CA_CRT),
        "--cert".into(),
        f(TLS_CRT),
        "--key".into(),
        f(TLS_KEY),
        "--tls-server-name".into(),
        service_server_name(cluster, namespace),
    ]
}

/// A directory only this user can read, removed when dropped.
pub struct PrivateDir(PathBuf);

impl PrivateDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the Secret's `ca.crt`, `tls.crt`, `tls.key` (mode 0600) into a new
/// private directory. The error names the Secret and the missing key.
pub fn write_secret_files(
    secret_name: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<PrivateDir, String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = std::env::temp_dir().join(format!(
        "kubectl-raft-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let dir = PrivateDir(dir);
    for key in [CA_CRT, TLS_CRT, TLS_KEY] {
        let bytes = data
            .get(key)
            .ok_or_else(|| format!("Secret {secret_name} has no {key}"))?;
        let path = dir.path().join(key);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        std::io::Write::write_all(&mut f, bytes)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(spec: serde_json::Value) -> RaftCluster {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "raftkv.dev/v1alpha1", "kind": "RaftCluster",
            "metadata": {"name": "demo", "namespace": "prod"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn the_admin_secret_by_default_the_operators_with_your_own_none_without_tls() {
        assert_eq!(
            client_secret_name(&rc(serde_json::json!({"replicas": 3}))).as_deref(),
            Some("demo-admin")
        );
        assert_eq!(
            client_secret_name(&rc(serde_json::json!({"replicas": 3, "tls": {
                "secretName": "nodes", "operatorSecretName": "op"}})))
            .as_deref(),
            Some("op")
        );
        assert_eq!(
            client_secret_name(&rc(
                serde_json::json!({"replicas": 3, "tls": {"enabled": false}})
            )),
            None
        );
    }

    #[test]
    fn raftctl_verifies_the_service_name_not_the_relay_address() {
        let args = raftctl_args(Path::new("/d"), "demo", "prod").join(" ");
        assert_eq!(
            args,
            "--cacert /d/ca.crt --cert /d/tls.crt --key /d/tls.key --tls-server-name demo.prod.svc"
        );
        // raftctl accepts them before its subcommand.
        let mut argv = vec![
            "raftctl".to_string(),
            "--endpoints".into(),
            "127.0.0.1:1".into(),
        ];
        argv.extend(raftctl_args(Path::new("/d"), "demo", "prod"));
        argv.extend(["get".to_string(), "k".into()]);
        let cli = <raftctl::Cli as clap::Parser>::try_parse_from(&argv).unwrap();
        assert_eq!(cli.tls_server_name.as_deref(), Some("demo.prod.svc"));
    }

    #[test]
    fn secret_files_are_private_and_a_missing_key_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let data: BTreeMap<String, Vec<u8>> = [CA_CRT, TLS_CRT, TLS_KEY]
            .iter()
            .map(|k| (k.to_string(), k.as_bytes().to_vec()))
            .collect();
        let dir = write_secret_files("demo-admin", &data).unwrap();
        let key = dir.path().join(TLS_KEY);
        assert_eq!(std::fs::read(&key).unwrap(), b"tls.key");
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists(), "removed when dropped");
        let mut partial = data.clone();
        partial.remove(TLS_KEY);
        let e = write_secret_files("demo-admin", &partial).err().unwrap();
        assert!(e.contains("demo-admin") && e.contains("tls.key"), "{e}");
    }
}
