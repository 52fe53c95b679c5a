//! Where backups are kept: an S3-compatible object store or a directory, both
//! through the `object_store` crate (feature `store`).
//!
//! [`open`] turns a [`Destination`] into a store and a key prefix; [`upload`]
//! streams a backup into it part by part, checking every byte with the
//! [`Decoder`](crate::Decoder) as it passes, and completes the object only
//! once the whole backup verified (a broken or damaged stream never becomes an
//! object); [`download`] fetches one into a file and verifies it before the
//! file gets its name. Memory stays bounded by [`limits`] whatever the size of
//! the backup.

use std::fmt;
use std::io::Read;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::WriteMultipart;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::{DecodeError, Decoder, Summary};

/// A key in a store (`a/b/c`), as `object_store` names it.
pub use object_store::path::Path as Key;

/// Bounds of uploads and downloads, in one place.
pub mod limits {
    /// One part of a multipart upload. S3 refuses parts under 5 MiB (but the
    /// last); 8 MiB keeps the part count of a 10 GiB backup (1,280) far below
    /// S3's 10,000-part limit.
    pub const PART_BYTES: usize = 8 * 1024 * 1024;
    /// Parts in flight at once: with the part being filled, at most
    /// `(PARTS_IN_FLIGHT_MAX + 1) * PART_BYTES` (24 MiB) of a backup is held in
    /// memory by an upload.
    pub const PARTS_IN_FLIGHT_MAX: usize = 2;
    /// Chunks queued between the upload and its verifying thread; a chunk is
    /// what the node sends (at most about one 256 KiB frame).
    pub const VERIFY_QUEUE_CHUNKS: usize = 16;
    /// The S3 minimum part size (every part but the last).
    pub const S3_PART_BYTES_MIN: usize = 5 * 1024 * 1024;
}

const _: () = assert!(limits::PART_BYTES >= limits::S3_PART_BYTES_MIN);
const _: () = assert!(limits::PARTS_IN_FLIGHT_MAX >= 1);

/// Where backups go. Built by the caller from its own configuration (the
/// operator: a `BackupDestination` and the Secret it names).
#[derive(Clone, PartialEq, Eq)]
pub enum Destination {
    S3(S3Destination),
    /// A directory of the process's file system (must exist).
    Filesystem {
        directory: PathBuf,
    },
}

/// An S3-compatible bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Destination {
    /// `http://host:port` or `https://host`; `None` for AWS itself (the region's
    /// endpoint). `http://` is allowed: an in-cluster object store often has no TLS.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Keys start with this (no leading or trailing `/`; empty for none).
    pub prefix: String,
    /// Default `us-east-1` (what most S3-compatible servers expect).
    pub region: Option<String>,
    /// `endpoint/bucket/key` instead of `bucket.endpoint/key`: what MinIO,
    /// SeaweedFS and most in-cluster servers need.
    pub force_path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The secret stays out of logs and error messages.
impl fmt::Debug for S3Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Destination")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("force_path_style", &self.force_path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::S3(s3) => s3.fmt(f),
            Destination::Filesystem { directory } => f
                .debug_struct("Filesystem")
                .field("directory", directory)
                .finish(),
        }
    }
}

impl fmt::Display for Destination {
    /// For people: `s3://bucket/prefix at http://endpoint` or the directory.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::S3(s3) => {
                write!(f, "s3://{}", s3.bucket)?;
                if !s3.prefix.is_empty() {
                    write!(f, "/{}", s3.prefix)?;
                }
                if let Some(e) = &s3.endpoint {
                    write!(f, " at {e}")?;
                }
                Ok(())
            }
            Destination::Filesystem { directory } => write!(f, "{}", directory.display()),
        }
    }
}

/// A store opened from a [`Destination`], and where its backups' keys start.
#[derive(Debug, Clone)]
pub struct OpenedStore {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
}

impl OpenedStore {
    /// The key of `name` under the prefix (`name` may contain `/`).
    pub fn key(&self, name: &str) -> Result<Path, StoreError> {
        let joined = if self.prefix.as_ref().is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        };
        let key = Path::parse(&joined)
            .map_err(|e| StoreError::Invalid(format!("{name:?} cannot name an object: {e}")))?;
        if name.is_empty() || key.as_ref() != joined {
            return Err(StoreError::Invalid(format!(
                "{name:?} cannot name an object: empty, or a leading or trailing '/'"
            )));
        }
        Ok(key)
    }
}

/// Why a store could not be opened or a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The destination or a key cannot be used as given (a person must fix it).
    #[error("{0}")]
    Invalid(String),
    /// The store refused or failed a request.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// The bytes given to [`upload`] stopped coming (the node's stream broke).
    #[error("the backup stream broke after byte {at}: {message}")]
    Source { at: u64, message: String },
    /// The bytes are not a valid backup: nothing was kept under the key.
    #[error("not a valid backup: {0}")]
    Damaged(#[source] DecodeError),
    /// A local file (download).
    #[error("{what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// The object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::Store(object_store::Error::NotFound { .. })
        )
    }
}

/// Opens the store of `dest`: checks the description (no request is sent; a
/// wrong endpoint or credentials show at the first transfer).
pub fn open(dest: &Destination) -> Result<OpenedStore, StoreError> {
    match dest {
        Destination::Filesystem { directory } => {
            if !directory.is_absolute() {
                return Err(StoreError::Invalid(format!(
                    "backup directory {} is not an absolute path",
                    directory.display()
                )));
            }
            let fs =
                object_store::local::LocalFileSystem::new_with_prefix(directory).map_err(|e| {
                    StoreError::Invalid(format!(
                        "backup directory {} cannot be used: {e}",
                        directory.display()
                    ))
                })?;
            Ok(OpenedStore {
                store: Arc::new(fs),
                prefix: Path::default(),
            })
        }
        Destination::S3(s3) => open_s3(s3),
    }
}

fn open_s3(s3: &S3Destination) -> Result<OpenedStore, StoreError> {
    let invalid = |m: String| Err(StoreError::Invalid(m));
    if s3.bucket.is_empty() {
        return invalid("s3: the bucket is empty".into());
    }
    if s3.access_key_id.is_empty() || s3.secret_access_key.is_empty() {
        return invalid("s3: the access key ID and the secret access key must not be empty".into());
    }
    let prefix = Path::parse(&s3.prefix)
        .map_err(|e| StoreError::Invalid(format!("s3: prefix {:?}: {e}", s3.prefix)))?;
    if prefix.as_ref() != s3.prefix {
        return invalid(format!(
            "s3: prefix {:?} must not start or end with '/'",
            s3.prefix
        ));
    }
    // reqwest's TLS takes the process's default crypto provider: ring, as the
    // rest of raftkv (kube, tonic) uses. Already installed is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_region(s3.region.as_deref().unwrap_or("us-east-1"))
        .with_access_key_id(&s3.access_key_id)
        .with_secret_access_key(&s3.secret_access_key)
        .with_virtual_hosted_style_request(!s3.force_path_style)
        // One DELETE per key: every S3-compatible server has it, not all have
        // the bulk DeleteObjects call.
        .with_disable_bulk_delete(true)
        .with_retry(object_store::RetryConfig {
            backoff: Default::default(),
            max_retries: limits_s3::RETRIES_MAX,
            retry_timeout: limits_s3::RETRY_TIMEOUT,
        });
    if let Some(endpoint) = &s3.endpoint {
        let url = url::Url::parse(endpoint)
            .map_err(|e| StoreError::Invalid(format!("s3: endpoint {endpoint:?}: {e}")))?;
        match url.scheme() {
            "http" => b = b.with_allow_http(true),
            "https" => {}
            other => {
                return invalid(format!(
                    "s3: endpoint {endpoint:?} has scheme {other:?} (http or https)"
                ));
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return invalid(format!("s3: endpoint {endpoint:?} names no host"));
        }
        b = b.with_endpoint(endpoint.trim_end_matches('/'));
    }
    let store = b
        .build()
        .map_err(|e| StoreError::Invalid(format!("s3: {e}")))?;
    Ok(OpenedStore {
        store: Arc::new(store),
        prefix,
    })
}

/// Retries of one S3 request (object_store's defaults retry for 3 minutes: a
/// wrong endpoint would hold a backup that long before it reports).
mod limits_s3 {
    use std::time::Duration;
    pub const RETRIES_MAX: usize = 3;
    pub const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
}

/// Streams a backup into `key` as a multipart upload, verifying every byte on
/// the way ([`Decoder::verify`] in a blocking thread): the object is completed
/// only when the whole backup verified and the stream ended cleanly;
/// otherwise the upload is aborted and nothing is kept under `key`.
///
/// Memory: at most [`limits::PARTS_IN_FLIGHT_MAX`] + 1 parts and
/// [`limits::VERIFY_QUEUE_CHUNKS`] chunks, whatever the backup's size.
pub async fn upload<S, E>(
    chunks: S,
    store: &dyn ObjectStore,
    key: &Path,
) -> Result<Summary, StoreError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: fmt::Display,
{
    let multipart = store.put_multipart(key).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(multipart, limits::PART_BYTES);
    match feed(chunks, &mut writer).await {
        Ok(summary) => {
            writer.finish().await?;
            Ok(summary)
        }
        Err(e) => {
            // An abort that fails leaves an incomplete multipart upload, never
            // an object (the store's lifecycle rules expire those); the reason
            // the upload stopped is the error that matters.
            let _ = writer.abort().await;
            Err(e)
        }
    }
}

/// Sends every chunk to the writer and the verifier; the verified summary.
async fn feed<S, E>(chunks: S, writer: &mut WriteMultipart) -> Result<Summary, StoreError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: fmt::Display,
{
    let (tx, rx) = mpsc::channel::<Bytes>(limits::VERIFY_QUEUE_CHUNKS);
    let verifier = tokio::task::spawn_blocking(move || {
        Decoder::open(ChannelReader {
            rx,
            current: Bytes::new(),
        })
        .and_then(Decoder::verify)
    });
    let mut chunks = std::pin::pin!(chunks);
    let mut sent = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| StoreError::Source {
            at: sent,
            message: e.to_string(),
        })?;
        if chunk.is_empty() {
            continue;
        }
        sent += chunk.len() as u64;
        writer
            .wait_for_capacity(limits::PARTS_IN_FLIGHT_MAX)
            .await?;
        writer.put(chunk.clone());
        if tx.send(chunk).await.is_err() {
            // The verifier stopped early: it found a problem, reported below.
            break;
        }
    }
    drop(tx);
    let summary = verifier
        .await
        .map_err(|e| StoreError::Invalid(format!("the verifying task failed: {e}")))?
        .map_err(StoreError::Damaged)?;
    assert_eq!(summary.bytes, sent, "verified bytes differ from sent");
    Ok(summary)
}

/// A blocking [`Read`] over the chunks of an async channel (the decoder is
/// synchronous); the end of the channel is the end of the input.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Fetches `key` into `file`: written to `file.part`, fsynced, verified from
/// the disk, then renamed (and the directory fsynced). A download that fails
/// leaves neither `file` nor `file.part`.
pub async fn download(
    store: &dyn ObjectStore,
    key: &Path,
    file: &FsPath,
) -> Result<Summary, StoreError> {
    let part = {
        let mut p = file.as_os_str().to_owned();
        p.push(".part");
        PathBuf::from(p)
    };
    let r = download_to(store, key, file, &part).await;
    if r.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    }
    r
}

async fn download_to(
    store: &dyn ObjectStore,
    key: &Path,
    file: &FsPath,
    part: &FsPath,
) -> Result<Summary, StoreError> {
    let err = |what: &'static str, path: &FsPath| {
        let path = path.to_path_buf();
        move |source| StoreError::File { what, path, source }
    };
    let mut body = store.get(key).await?.into_stream();
    let mut f = tokio::fs::File::create(part)
        .await
        .map_err(err("cannot create", part))?;
    while let Some(chunk) = body.next().await {
        f.write_all(&chunk?)
            .await
            .map_err(err("cannot write", part))?;
    }
    f.sync_all().await.map_err(err("cannot fsync", part))?;
    drop(f);
    let p = part.to_path_buf();
    let summary = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&p).map_err(err("cannot open", &p))?;
        Decoder::open(std::io::BufReader::with_capacity(1024 * 1024, f))
            .and_then(Decoder::verify)
            .map_err(StoreError::Damaged)
    })
    .await
    .map_err(|e| StoreError::Invalid(format!("the verifying task failed: {e}")))??;
    tokio::fs::rename(part, file)
        .await
        .map_err(err("cannot rename into", file))?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => FsPath::new("."),
    };
    let d = tokio::fs::File::open(dir)
        .await
        .map_err(err("cannot open directory", dir))?;
    d.sync_all()
        .await
        .map_err(err("cannot fsync directory", dir))?;
    Ok(summary)
}

/// The bytes of `key` as the store sends them, for streaming elsewhere (the
/// receiver verifies them: nothing is checked here).
pub async fn read(
    store: &dyn ObjectStore,
    key: &Path,
) -> Result<futures::stream::BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
    let body = store.get(key).await?.into_stream();
    Ok(body.map(|r| r.map_err(StoreError::from)).boxed())
}

/// Deletes `key`; `false` if it did not exist (pruning is repeated safely).
pub async fn remove(store: &dyn ObjectStore, key: &Path) -> Result<bool, StoreError> {
    match store.delete(key).await {
        Ok(()) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The size of the object at `key`, `None` if there is none.
pub async fn size(store: &dyn ObjectStore, key: &Path) -> Result<Option<u64>, StoreError> {
    match store.head(key).await {
        Ok(meta) => Ok(Some(meta.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
