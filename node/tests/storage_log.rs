//! The durable Raft log: restart recovery, torn tails, corruption.

use std::fs;
use std::path::{Path, PathBuf};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader, RaftSnapshotBuilder};
use raftkv_node::kv::Command;
use raftkv_node::storage::{self, Error, Storage, StorageOptions};
use raftkv_node::typ::{Entry, LogId, Vote};

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn put(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Command::Put {
            key: format!("key-{index}").into_bytes(),
            value: vec![index as u8; 7 + index as usize % 5],
        }),
    }
}

fn open(dir: &Path) -> Storage {
    storage::open(dir, StorageOptions::default()).expect("open storage")
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

async fn indexes(s: &mut Storage) -> Vec<u64> {
    let entries = s.log.try_get_log_entries(0..).await.unwrap();
    entries.iter().map(|e| e.log_id.index).collect()
}

#[tokio::test]
async fn restart_keeps_vote_entries_purge_truncate_and_committed() {
    let dir = tempfile::tempdir().unwrap();
    let node_id;
    {
        let mut s = open(dir.path());
        node_id = s.identity.node_id();
        s.log.save_vote(&Vote::new(3, 7)).await.unwrap();
        for i in 0..=20 {
            s.log.blocking_append([put(1, i)]).await.unwrap();
        }
        s.log.truncate(log_id(1, 18)).await.unwrap();
        s.log
            .blocking_append([put(2, 18), put(2, 19)])
            .await
            .unwrap();
        // A purge is always covered by a snapshot (open checks purged ≤ snapshot).
        s.state_machine
            .apply((0..=5).map(|i| put(1, i)))
            .await
            .unwrap();
        s.state_machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        s.log.purge(log_id(1, 5)).await.unwrap();
        s.log.save_committed(Some(log_id(2, 18))).await.unwrap();
        // The committed record rides with the next durable write.
        s.log.save_vote(&Vote::new_committed(3, 7)).await.unwrap();
    }
    let mut s = open(dir.path());
    assert_eq!(s.identity.node_id(), node_id);
    assert_eq!(
        s.log.read_vote().await.unwrap(),
        Some(Vote::new_committed(3, 7))
    );
    assert_eq!(s.log.read_committed().await.unwrap(), Some(log_id(2, 18)));
    let st = s.log.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id, Some(log_id(1, 5)));
    assert_eq!(st.last_log_id, Some(log_id(2, 19)));
    // Read back from the segment files (nothing is cached after a restart).
    let entries = s.log.try_get_log_entries(0..).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        (6..=19).collect::<Vec<_>>()
    );
    assert_eq!(entries[0], put(1, 6));
    assert_eq!(entries[11], put(1, 17));
    assert_eq!(entries[12], put(2, 18));
    assert_eq!(entries[13], put(2, 19));
    // And it keeps working after recovery.
    s.log.blocking_append([put(2, 20)]).await.unwrap();
    drop(s);
    let mut s = open(dir.path());
    assert_eq!(indexes(&mut s).await, (6..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn purge_deletes_whole_segments_and_the_vote_survives() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StorageOptions {
        segment_bytes_max: 64 * 1024,
        record_bytes_max: 2 * 1024 * 1024,
        ..Default::default()
    };
    // record_bytes_max must fit in a segment: use the smallest valid pair.
    let opts = StorageOptions {
        segment_bytes_max: 4 * 1024 * 1024,
        ..opts
    };
    let big = |i: u64| Entry {
        log_id: log_id(1, i),
        payload: EntryPayload::Normal(Command::Put {
            key: b"k".to_vec(),
            value: vec![0; 256 * 1024],
        }),
    };
    {
        let mut s = storage::open(dir.path(), opts.clone()).unwrap();
        s.log.save_vote(&Vote::new(1, 1)).await.unwrap();
        for i in 1..=40 {
            s.log.blocking_append([big(i)]).await.unwrap();
        }
        let before = segments(dir.path()).len();
        assert!(before >= 3, "expected several segments, got {before}");
        s.log.purge(log_id(1, 35)).await.unwrap();
        // Deletion happens on the writer after the purge record is fsynced: poll.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while segments(dir.path()).len() >= before {
            assert!(
                std::time::Instant::now() < deadline,
                "purged segments were not deleted"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // A snapshot must cover the purge for the storage to reopen (purged ≤ snapshot).
        s.state_machine.apply((1..=40).map(big)).await.unwrap();
        s.state_machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
    }
    let mut s = storage::open(dir.path(), opts).unwrap();
    assert_eq!(s.log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    assert_eq!(indexes(&mut s).await, (36..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn purged_log_without_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path());
        s.log
            .blocking_append((0..5).map(|i| put(1, i)))
            .await
            .unwrap();
        s.log.purge(log_id(1, 2)).await.unwrap();
        s.log.save_vote(&Vote::new(1, 1)).await.unwrap(); // flushes the purge record
    }
    let e = storage::open(dir.path(), StorageOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Invariant(_)), "{e}");
    assert!(e.to_string().contains("no snapshot"), "{e}");
}

/// Writes entries 0..=9, one group commit each; returns the segment file and
/// the file length after each entry.
async fn write_ten(dir: &Path) -> (PathBuf, Vec<u64>) {
    let mut s = open(dir);
    let seg = segments(dir).pop().unwrap();
    let mut ends = Vec::new();
    for i in 0..10 {
        s.log.blocking_append([put(1, i)]).await.unwrap();
        ends.push(fs::metadata(&seg).unwrap().len());
    }
    (seg, ends)
}

#[tokio::test]
async fn log_cut_at_every_byte_of_its_last_record_recovers_to_the_previous_record() {
    let base = tempfile::tempdir().unwrap();
    let (seg, ends) = write_ten(base.path()).await;
    let (start, end) = (ends[8], ends[9]);
    assert!(end > start);
    let seg_name = seg.file_name().unwrap().to_owned();
    for cut in start..end {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let f = fs::OpenOptions::new()
            .write(true)
            .open(work.path().join("log").join(&seg_name))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let mut s = open(work.path());
        assert_eq!(
            indexes(&mut s).await,
            (0..=8).collect::<Vec<_>>(),
            "cut at {cut}"
        );
        assert_eq!(
            s.log.get_log_state().await.unwrap().last_log_id,
            Some(log_id(1, 8))
        );
        // The torn bytes are gone from the file, and the log goes on.
        assert_eq!(
            fs::metadata(work.path().join("log").join(&seg_name))
                .unwrap()
                .len(),
            start
        );
        s.log.blocking_append([put(2, 9)]).await.unwrap();
        drop(s);
        let mut s = open(work.path());
        let entries = s.log.try_get_log_entries(9..10).await.unwrap();
        assert_eq!(entries, vec![put(2, 9)], "cut at {cut}");
    }
}

#[tokio::test]
async fn garbage_or_zeros_over_the_last_record_are_a_torn_tail() {
    let base = tempfile::tempdir().unwrap();
    let (seg, ends) = write_ten(base.path()).await;
    let (start, end) = (ends[8] as usize, ends[9] as usize);
    for fill in [0u8, 0xa5] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let path = work.path().join("log").join(seg.file_name().unwrap());
        let mut bytes = fs::read(&path).unwrap();
        bytes[start..end].fill(fill);
        bytes.extend_from_slice(&[fill; 100]); // and a preallocated-looking tail
        fs::write(&path, &bytes).unwrap();
        let mut s = open(work.path());
        assert_eq!(
            indexes(&mut s).await,
            (0..=8).collect::<Vec<_>>(),
            "fill {fill:#x}"
        );
    }
}

#[tokio::test]
async fn corrupted_middle_record_is_refused_naming_file_and_offset() {
    let base = tempfile::tempdir().unwrap();
    let (seg, ends) = write_ten(base.path()).await;
    // The record of entry 4 spans [ends[3], ends[4]).
    let (start, end) = (ends[3], ends[4]);
    for at in start..end {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let path = work.path().join("log").join(seg.file_name().unwrap());
        let mut bytes = fs::read(&path).unwrap();
        bytes[at as usize] ^= 0x10;
        fs::write(&path, &bytes).unwrap();
        let e = storage::open(work.path(), StorageOptions::default()).unwrap_err();
        match &e {
            Error::Corrupt {
                path: p, offset, ..
            } => {
                assert_eq!(p, &path, "flip at {at}");
                assert_eq!(*offset, start, "flip at {at}: {e}");
            }
            other => panic!("flip at {at}: expected corruption, got {other}"),
        }
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("byte offset {start}")), "{msg}");
    }
}

#[tokio::test]
async fn corruption_in_an_older_segment_is_refused() {
    let base = tempfile::tempdir().unwrap();
    {
        let (_seg, _ends) = write_ten(base.path()).await;
    }
    // Reopening starts a new segment, so the written one is no longer the last.
    {
        let mut s = open(base.path());
        s.log.blocking_append([put(1, 10)]).await.unwrap();
    }
    let segs = segments(base.path());
    assert!(segs.len() >= 2);
    let old = &segs[segs.len() - 2];
    let mut bytes = fs::read(old).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1; // inside its last record
    fs::write(old, &bytes).unwrap();
    let e = storage::open(base.path(), StorageOptions::default()).unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt { path, .. } if path == old),
        "{e}"
    );
}

#[tokio::test]
async fn entries_are_readable_when_append_returns_and_beyond_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    // A tiny cache forces reads from the segment files.
    let opts = StorageOptions {
        log_cache_bytes_max: 100,
        ..Default::default()
    };
    let mut s = storage::open(dir.path(), opts).unwrap();
    for i in 0..50 {
        s.log.blocking_append([put(1, i)]).await.unwrap();
    }
    let entries = s.log.try_get_log_entries(10..45).await.unwrap();
    assert_eq!(entries, (10..45).map(|i| put(1, i)).collect::<Vec<_>>());
    let stats = storage::stats().snapshot();
    assert!(stats.fsyncs > 0);
    assert!(stats.log_batches > 0);
}

#[tokio::test]
async fn a_member_whose_log_is_gone_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.identity.set_cluster_id("cluster-a").unwrap();
    }
    // Reopening with the log intact is fine.
    drop(open(dir.path()));
    fs::remove_dir_all(dir.path().join("log")).unwrap();
    let e = storage::open(dir.path(), StorageOptions::default()).unwrap_err();
    assert!(matches!(e, Error::StateLost { .. }), "{e}");
    assert!(
        e.to_string().contains("must not vote under its old ID"),
        "{e}"
    );
}
