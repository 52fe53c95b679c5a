//! The store helpers against `object_store`'s real local file system store
//! (the same code path as S3 for everything but the HTTP requests; the S3
//! server itself is exercised by hack/backup/s3-smoke.sh).

use std::path::PathBuf;

use futures::stream;

use super::*;
use crate::{Entry, Header, encode_all};

/// A backup of `keys` keys with values of `value_bytes` bytes each.
fn backup(keys: u64, value_bytes: usize) -> Vec<u8> {
    let entries: Vec<Entry> = (0..keys)
        .map(|i| Entry {
            key: format!("key/{i:08}").into_bytes(),
            value: vec![(i % 251) as u8; value_bytes],
            create_revision: i + 1,
            mod_revision: i + 1,
            version: 1,
        })
        .collect();
    let header = Header {
        cluster_id: "c0ffee".into(),
        revision: keys,
        log_index: keys + 3,
        log_term: 2,
        keys,
        ..Header::default()
    };
    encode_all(&header, &entries).expect("encodes")
}

/// The bytes in chunks of `size`, as the node's stream delivers them.
fn chunks(bytes: &[u8], size: usize) -> Vec<Result<Bytes, String>> {
    bytes
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect()
}

fn local(dir: &tempfile::TempDir) -> OpenedStore {
    open(&Destination::Filesystem {
        directory: dir.path().to_path_buf(),
    })
    .expect("opens")
}

/// Every file under `dir` (the store's staging files included).
fn files(dir: &FsPath) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn upload_then_download_returns_the_same_bytes_in_several_parts() {
    let dir = tempfile::tempdir().unwrap();
    let s = local(&dir);
    // ~20 MiB: three parts of PART_BYTES.
    let bytes = backup(5_000, 4_000);
    assert!(bytes.len() > 2 * limits::PART_BYTES, "{}", bytes.len());
    let key = s.key("ns/demo/demo-202612072200.rkvb").unwrap();
    let up = upload(
        stream::iter(chunks(&bytes, 256 * 1024 + 7)),
        &*s.store,
        &key,
    )
    .await
    .expect("uploads");
    assert_eq!(up.bytes, bytes.len() as u64);
    assert_eq!(up.header.keys, 5_000);
    assert_eq!(up.header.log_index, 5_003);
    assert_eq!(
        size(&*s.store, &key).await.unwrap(),
        Some(bytes.len() as u64)
    );
    assert_eq!(
        files(dir.path()),
        vec![dir.path().join("ns/demo/demo-202612072200.rkvb")],
        "one object, no staging file left"
    );

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("got.rkvb");
    let down = download(&*s.store, &key, &file).await.expect("downloads");
    assert_eq!(down, up);
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    assert!(!out.path().join("got.rkvb.part").exists());
}

#[tokio::test]
async fn a_damaged_byte_anywhere_keeps_nothing() {
    let bytes = backup(300, 100);
    // The preamble, the header frame, an entries frame, the end frame.
    for at in [3, 20, bytes.len() / 2, bytes.len() - 2] {
        let dir = tempfile::tempdir().unwrap();
        let s = local(&dir);
        let key = s.key("b.rkvb").unwrap();
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        let e = upload(stream::iter(chunks(&bad, 1000)), &*s.store, &key)
            .await
            .expect_err("a damaged backup is refused");
        assert!(matches!(e, StoreError::Damaged(_)), "byte {at}: {e}");
        assert_eq!(size(&*s.store, &key).await.unwrap(), None, "byte {at}");
        assert_eq!(files(dir.path()), Vec::<PathBuf>::new(), "byte {at}");
    }
}

#[tokio::test]
async fn a_stream_that_ends_early_or_breaks_keeps_nothing() {
    let bytes = backup(300, 100);
    let dir = tempfile::tempdir().unwrap();
    let s = local(&dir);
    let key = s.key("b.rkvb").unwrap();

    let cut = &bytes[..bytes.len() - 5];
    let e = upload(stream::iter(chunks(cut, 1000)), &*s.store, &key)
        .await
        .expect_err("a truncated backup is refused");
    assert!(
        matches!(&e, StoreError::Damaged(DecodeError::Truncated { .. })),
        "{e}"
    );

    let mut broken = chunks(&bytes, 1000);
    broken.truncate(10);
    broken.push(Err("connection reset".into()));
    let e = upload(stream::iter(broken), &*s.store, &key)
        .await
        .expect_err("a broken stream is refused");
    assert_eq!(
        e.to_string(),
        "the backup stream broke after byte 10000: connection reset"
    );
    assert_eq!(size(&*s.store, &key).await.unwrap(), None);
    assert_eq!(files(dir.path()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn download_refuses_a_damaged_object_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = local(&dir);
    let key = s.key("b.rkvb").unwrap();
    let mut bad = backup(50, 10);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    s.store.put(&key, bad.into()).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("got.rkvb");
    let e = download(&*s.store, &key, &file).await.expect_err("refused");
    assert!(matches!(e, StoreError::Damaged(_)), "{e}");
    assert_eq!(files(out.path()), Vec::<PathBuf>::new());

    let missing = s.key("missing.rkvb").unwrap();
    let e = download(&*s.store, &missing, &file)
        .await
        .expect_err("no object");
    assert!(e.is_not_found(), "{e}");
    assert_eq!(files(out.path()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn remove_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let s = local(&dir);
    let key = s.key("x/b.rkvb").unwrap();
    let bytes = backup(3, 1);
    upload(stream::iter(chunks(&bytes, 10)), &*s.store, &key)
        .await
        .unwrap();
    assert!(remove(&*s.store, &key).await.unwrap());
    assert!(!remove(&*s.store, &key).await.unwrap());
    assert_eq!(size(&*s.store, &key).await.unwrap(), None);
}

fn s3() -> S3Destination {
    S3Destination {
        endpoint: Some("http://seaweedfs.backups.svc:8333".into()),
        bucket: "raftkv".into(),
        prefix: "prod/backups".into(),
        region: None,
        force_path_style: true,
        access_key_id: "AKID".into(),
        secret_access_key: "very-secret".into(),
    }
}

#[test]
fn an_s3_destination_opens_without_a_request_and_prefixes_keys() {
    let s = open(&Destination::S3(s3())).expect("opens");
    assert_eq!(
        s.key("ns/demo/x.rkvb").unwrap().as_ref(),
        "prod/backups/ns/demo/x.rkvb"
    );
    let no_prefix = open(&Destination::S3(S3Destination {
        prefix: String::new(),
        endpoint: None,
        ..s3()
    }))
    .expect("opens: AWS itself");
    assert_eq!(no_prefix.key("x.rkvb").unwrap().as_ref(), "x.rkvb");
}

#[test]
fn bad_destinations_are_refused_naming_the_field() {
    let cases: Vec<(Destination, &str)> = vec![
        (
            Destination::S3(S3Destination {
                bucket: String::new(),
                ..s3()
            }),
            "s3: the bucket is empty",
        ),
        (
            Destination::S3(S3Destination {
                secret_access_key: String::new(),
                ..s3()
            }),
            "secret access key must not be empty",
        ),
        (
            Destination::S3(S3Destination {
                endpoint: Some("ftp://host".into()),
                ..s3()
            }),
            "has scheme \"ftp\" (http or https)",
        ),
        (
            Destination::S3(S3Destination {
                endpoint: Some("seaweedfs:8333".into()),
                ..s3()
            }),
            "s3: endpoint \"seaweedfs:8333\"",
        ),
        (
            Destination::S3(S3Destination {
                prefix: "/a/".into(),
                ..s3()
            }),
            "must not start or end with '/'",
        ),
        (
            Destination::S3(S3Destination {
                prefix: "a//b".into(),
                ..s3()
            }),
            "s3: prefix \"a//b\"",
        ),
        (
            Destination::Filesystem {
                directory: "relative/dir".into(),
            },
            "is not an absolute path",
        ),
        (
            Destination::Filesystem {
                directory: "/nonexistent/raftkv-backups".into(),
            },
            "backup directory /nonexistent/raftkv-backups cannot be used",
        ),
    ];
    for (dest, want) in cases {
        let e = open(&dest).expect_err("refused").to_string();
        assert!(e.contains(want), "{dest:?}: {e:?} lacks {want:?}");
    }
    let s = local(&tempfile::tempdir().unwrap());
    for bad in ["", "/x", "x/", "a//b", "a/../b"] {
        assert!(s.key(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn the_secret_never_shows() {
    let d = Destination::S3(s3());
    let shown = format!("{d:?} {d}");
    assert!(!shown.contains("very-secret"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert_eq!(
        d.to_string(),
        "s3://raftkv/prod/backups at http://seaweedfs.backups.svc:8333"
    );
}
