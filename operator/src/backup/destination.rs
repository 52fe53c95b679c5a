//! A `BackupDestination` of the API, with its credentials Secret, as the
//! backup crate's [`Destination`]; and the key a backup is stored under.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use raftkv_backup::store::{Destination, S3Destination};

use crate::crd::{ACCESS_KEY_ID_KEY, BackupDestination, SECRET_ACCESS_KEY_KEY};

/// The file name extension of a stored backup.
pub const OBJECT_SUFFIX: &str = ".rkvb";

/// The key of backup `name` of `cluster`, under the destination's prefix:
/// `<namespace>/<cluster>/<name>.rkvb` (one bucket can hold every cluster's).
pub fn object_name(namespace: &str, cluster: &str, name: &str) -> String {
    format!("{namespace}/{cluster}/{name}{OBJECT_SUFFIX}")
}

/// The secret's `accessKeyID` and `secretAccessKey`, or why not.
pub fn credentials(
    secret: &str,
    data: Option<&BTreeMap<String, ByteString>>,
) -> Result<(String, String), String> {
    let get = |key: &str| -> Result<String, String> {
        let value = data.and_then(|d| d.get(key)).ok_or_else(|| {
            format!("Secret {secret} has no key {key} (it needs {ACCESS_KEY_ID_KEY} and {SECRET_ACCESS_KEY_KEY})")
        })?;
        let text = String::from_utf8(value.0.clone())
            .map_err(|_| format!("Secret {secret}: {key} is not UTF-8"))?;
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err(format!("Secret {secret}: {key} is empty"));
        }
        Ok(text)
    };
    Ok((get(ACCESS_KEY_ID_KEY)?, get(SECRET_ACCESS_KEY_KEY)?))
}

/// The destination, given the S3 credentials when it needs them (pure).
pub fn destination(
    spec: &BackupDestination,
    credentials: Option<(String, String)>,
) -> Result<Destination, String> {
    match (&spec.s3, &spec.filesystem) {
        (Some(s3), None) => {
            let (access_key_id, secret_access_key) =
                credentials.ok_or_else(|| "s3 destination without credentials".to_string())?;
            Ok(Destination::S3(S3Destination {
                endpoint: s3.endpoint.clone(),
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone().unwrap_or_default(),
                region: s3.region.clone(),
                force_path_style: s3.force_path_style,
                access_key_id,
                secret_access_key,
            }))
        }
        (None, Some(fs)) => Ok(Destination::Filesystem {
            directory: fs.path.clone().into(),
        }),
        _ => Err("a backup destination sets exactly one of s3 and filesystem".into()),
    }
}

/// Reads the credentials Secret (namespace `ns`) when the destination needs it.
pub async fn resolve(
    client: &Client,
    ns: &str,
    spec: &BackupDestination,
) -> Result<Destination, String> {
    let creds = match &spec.s3 {
        Some(s3) => {
            let name = &s3.credentials_secret.name;
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            let secret = api
                .get_opt(name)
                .await
                .map_err(|e| {
                    format!(
                        "cannot read Secret {name}: {}",
                        crate::Error::Kube(e).user_message()
                    )
                })?
                .ok_or_else(|| format!("Secret {name} not found in namespace {ns}"))?;
            Some(credentials(name, secret.data.as_ref())?)
        }
        None => None,
    };
    destination(spec, creds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{FilesystemBackupDestination, S3BackupDestination, SecretName};

    fn s3() -> BackupDestination {
        BackupDestination {
            s3: Some(S3BackupDestination {
                endpoint: Some("http://s3.backups:8333".into()),
                bucket: "raftkv".into(),
                prefix: Some("prod".into()),
                region: None,
                force_path_style: true,
                credentials_secret: SecretName {
                    name: "s3-creds".into(),
                },
            }),
            filesystem: None,
        }
    }

    #[test]
    fn an_s3_destination_takes_the_secrets_keys() {
        let mut data = BTreeMap::new();
        data.insert("accessKeyID".into(), ByteString(b"AK\n".to_vec()));
        data.insert("secretAccessKey".into(), ByteString(b"SK".to_vec()));
        let creds = credentials("s3-creds", Some(&data)).unwrap();
        assert_eq!(
            creds,
            ("AK".into(), "SK".into()),
            "trailing newline trimmed"
        );
        let Destination::S3(d) = destination(&s3(), Some(creds)).unwrap() else {
            panic!("not s3")
        };
        assert_eq!(d.bucket, "raftkv");
        assert_eq!(d.prefix, "prod");
        assert!(d.force_path_style);
        assert_eq!(d.endpoint.as_deref(), Some("http://s3.backups:8333"));
    }

    #[test]
    fn a_missing_key_or_field_is_named() {
        let mut data = BTreeMap::new();
        data.insert("accessKeyID".into(), ByteString(b"AK".to_vec()));
        assert_eq!(
            credentials("s3-creds", Some(&data)).unwrap_err(),
            "Secret s3-creds has no key secretAccessKey (it needs accessKeyID and secretAccessKey)"
        );
        data.insert("secretAccessKey".into(), ByteString(b" ".to_vec()));
        assert_eq!(
            credentials("s3-creds", Some(&data)).unwrap_err(),
            "Secret s3-creds: secretAccessKey is empty"
        );
        let both = BackupDestination {
            filesystem: Some(FilesystemBackupDestination { path: "/b".into() }),
            ..s3()
        };
        assert!(
            destination(&both, None)
                .unwrap_err()
                .contains("exactly one")
        );
        let fs = BackupDestination {
            s3: None,
            filesystem: Some(FilesystemBackupDestination { path: "/b".into() }),
        };
        assert_eq!(
            destination(&fs, None).unwrap(),
            Destination::Filesystem {
                directory: "/b".into()
            }
        );
        assert_eq!(object_name("ns", "demo", "demo-1"), "ns/demo/demo-1.rkvb");
    }
}
