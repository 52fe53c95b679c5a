//! `kill -9` at random moments: a child process appends entries and reports
//! each acknowledged one; after every kill, the reopened log holds every
//! acknowledged entry, intact, and the log goes on.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command as Process, Stdio};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};
use raftkv_node::kv::Command;
use raftkv_node::storage::{self, StorageOptions};
use raftkv_node::typ::{Entry, LogId};

const CHILD_DIR_ENV: &str = "RAFTKV_KILL9_CHILD_DIR";

fn put(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command::Put {
            key: format!("key-{index}").into_bytes(),
            value: vec![(index % 251) as u8; 100 + (index % 17) as usize * 50],
        }),
    }
}

/// The child: appends forever (batches of 1..=3 entries), printing the last
/// acknowledged index after each append.
#[tokio::test]
#[ignore = "helper process of kill9_at_random_moments_loses_no_acknowledged_entry"]
async fn kill9_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        eprintln!(
            "kill9_child_writer is a helper process; it does nothing without {CHILD_DIR_ENV}"
        );
        return;
    };
    let mut s = storage::open(Path::new(&dir), StorageOptions::default()).unwrap();
    let mut next = s
        .log
        .get_log_state()
        .await
        .unwrap()
        .last_log_id
        .map_or(0, |l| l.index + 1);
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {next}").unwrap();
    out.flush().unwrap();
    loop {
        let n = 1 + next % 3;
        s.log
            .blocking_append((next..next + n).map(put))
            .await
            .unwrap();
        next += n;
        writeln!(out, "{}", next - 1).unwrap();
        out.flush().unwrap();
    }
}

#[tokio::test]
async fn kill9_at_random_moments_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Option<u64> = None;
    for round in 0..16u64 {
        let mut child = Process::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "kill9_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Kill after a different number of acknowledgements each round.
        let kill_after = 3 + (round * 37) % 60;
        let mut seen = 0;
        for line in lines {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("ready ") {
                let next: u64 = rest.parse().unwrap();
                assert!(
                    acked.is_none_or(|a| next > a),
                    "round {round}: reopened at {next}, acked {acked:?}"
                );
                continue;
            }
            let Ok(i) = line.parse::<u64>() else { continue };
            acked = Some(i);
            seen += 1;
            if seen == kill_after {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        child.wait().unwrap();
        let mut s = storage::open(dir.path(), StorageOptions::default()).unwrap();
        let last = s
            .log
            .get_log_state()
            .await
            .unwrap()
            .last_log_id
            .map(|l| l.index);
        let acked_now = acked.expect("the child acknowledged appends");
        assert!(
            last >= Some(acked_now),
            "round {round}: log ends at {last:?}, {acked_now} was acknowledged"
        );
        let entries = s.log.try_get_log_entries(0..=acked_now).await.unwrap();
        assert_eq!(entries.len() as u64, acked_now + 1, "round {round}");
        for e in &entries {
            assert_eq!(e, &put(e.log_id.index), "round {round}");
        }
    }
}
