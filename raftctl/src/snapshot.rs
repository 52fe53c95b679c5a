//! `snapshot save FILE | inspect FILE`: backups you can take away.
//!
//! `save` streams a consistent backup from the leader into `FILE.part`,
//! fsyncs it, reads it back and verifies it, and only then renames it to
//! `FILE` (and fsyncs the directory): a save that fails for any reason leaves
//! no `FILE` and no `FILE.part`.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use raftkv_backup::{Decoder, Summary};
use raftkv_client::RaftClient;

use super::CtlError;
use super::output::{OutputFormat, backup_json, backup_table, json_doc};

/// How often `--progress` reports.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

pub async fn save(
    c: &RaftClient,
    file: PathBuf,
    progress: bool,
    out: OutputFormat,
) -> Result<(), CtlError> {
    let part = part_path(&file);
    let r = save_to(c, &file, &part, c.options().request_timeout, progress).await;
    if r.is_err() {
        let _ = fs::remove_file(&part);
    }
    let summary = r?;
    let name = file.display().to_string();
    match out {
        OutputFormat::Json => print!("{}", json_doc(&backup_json(&name, &summary))),
        OutputFormat::Table => println!(
            "saved {name}: {} keys at revision {} (log index {}, term {}) of cluster {}, {} bytes, crc32c:{:08x}",
            summary.header.keys,
            summary.header.revision,
            summary.header.log_index,
            summary.header.log_term,
            summary.header.cluster_id,
            summary.bytes,
            summary.checksum
        ),
    }
    Ok(())
}

pub async fn inspect(file: PathBuf, out: OutputFormat) -> Result<(), CtlError> {
    let f = file.clone();
    let summary = tokio::task::spawn_blocking(move || verify(&f))
        .await
        .map_err(|e| CtlError::failed(format!("verifying task: {e}")))??;
    let name = file.display().to_string();
    match out {
        OutputFormat::Json => print!("{}", json_doc(&backup_json(&name, &summary))),
        OutputFormat::Table => print!("{}", backup_table(&name, &summary)),
    }
    Ok(())
}

fn part_path(file: &Path) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

/// Reads the whole file, checking every checksum and the structure.
fn verify(file: &Path) -> Result<Summary, CtlError> {
    let f = File::open(file)
        .map_err(|e| CtlError::failed(format!("cannot open {}: {e}", file.display())))?;
    Decoder::open(BufReader::with_capacity(1024 * 1024, f))
        .and_then(Decoder::verify)
        .map_err(|e| CtlError::failed(format!("{}: {e}", file.display())))
}

async fn save_to(
    c: &RaftClient,
    file: &Path,
    part: &Path,
    idle_max: Duration,
    progress: bool,
) -> Result<Summary, CtlError> {
    let io = |what: &str, p: &Path, e: std::io::Error| {
        CtlError::failed(format!("{what} {}: {e}", p.display()))
    };
    let mut chunks = c.backup().await?;
    let f = File::create(part).map_err(|e| io("cannot create", part, e))?;
    let mut w = BufWriter::with_capacity(1024 * 1024, f);
    let mut written = 0u64;
    let mut reported = std::time::Instant::now();
    loop {
        let next = tokio::time::timeout(idle_max, chunks.message())
            .await
            .map_err(|_| {
                CtlError::failed(format!(
                    "the backup stream stalled: nothing for {} after byte {written}",
                    humantime::format_duration(idle_max)
                ))
            })?
            .map_err(|s| {
                CtlError::failed(format!(
                    "the backup stream broke after byte {written}: {}",
                    s.message()
                ))
            })?;
        let Some(chunk) = next else { break };
        if chunk.offset != written {
            return Err(CtlError::failed(format!(
                "the backup stream skipped: a chunk at byte {} after {written} bytes",
                chunk.offset
            )));
        }
        w.write_all(&chunk.data)
            .map_err(|e| io("cannot write", part, e))?;
        written += chunk.data.len() as u64;
        if progress && reported.elapsed() >= PROGRESS_EVERY {
            reported = std::time::Instant::now();
            eprintln!("received {}", human_bytes(written));
        }
    }
    if progress {
        eprintln!(
            "received {}; verifying {}",
            human_bytes(written),
            part.display()
        );
    }
    let f = w
        .into_inner()
        .map_err(|e| io("cannot write", part, e.into_error()))?;
    f.sync_all().map_err(|e| io("cannot fsync", part, e))?;
    drop(f);
    // Read back what is on disk, not what was received.
    let p = part.to_path_buf();
    let summary = tokio::task::spawn_blocking(move || verify(&p))
        .await
        .map_err(|e| CtlError::failed(format!("verifying task: {e}")))??;
    assert_eq!(summary.bytes, written, "verified bytes differ from written");
    fs::rename(part, file).map_err(|e| io("cannot rename into", file, e))?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("cannot fsync directory", dir, e))?;
    Ok(summary)
}

/// `1.5 MiB`: the progress lines' unit.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_is_in_binary_units() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
