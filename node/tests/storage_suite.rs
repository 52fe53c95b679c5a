//! openraft's own storage test suite, run against the real on-disk storage
//! (STYLE.md item 10: prove the store with the suite before anything else).

use openraft::testing::{StoreBuilder, Suite};
use raftkv_node::TypeConfig;
use raftkv_node::storage::{self, LogStore, StateMachineStore, StorageOptions};
use raftkv_node::typ::StorageError;
use tempfile::TempDir;

struct TempDirBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempDirBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = storage::open(dir.path(), StorageOptions::default()).expect("open storage");
        Ok((dir, s.log, s.state_machine))
    }
}

#[test]
fn storage_passes_openraft_suite() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    Suite::test_all(TempDirBuilder).expect("openraft storage suite");
}
