//! Small file-system helpers: atomic file replacement and directory fsync.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::error::{Error, Result};
use super::options::FsyncFaults;
use super::stats::sync_file;

/// fsyncs a directory, so that creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    sync_file(&f, false, &FsyncFaults::default()).map_err(|e| Error::io("fsync directory", dir, e))
}

/// Replaces `path` with `bytes` atomically: write `path.tmp`, fsync it,
/// rename over `path`, fsync the directory. After a crash the file holds
/// either the old or the new contents, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], faults: &FsyncFaults) -> Result<()> {
    let dir = path
        .parent()
        .expect("write_atomic needs a path inside a directory");
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io("write", &tmp, e))?;
    sync_file(&f, false, faults).map_err(|e| Error::io("fsync", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))?;
    sync_dir(dir)
}

/// Creates a directory (and parents) and makes its entry durable.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}
