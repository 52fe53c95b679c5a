//! The key-value data model: commands that travel through the Raft log, their
//! results, and the input limits every command is checked against before it is
//! proposed.

mod command;
mod limits;
pub mod session;
mod store;
pub mod watch;

pub use command::{Command, CommandResult, Expect, KeyMeta, KeyValue};
pub use limits::{InputError, KvLimits};
pub use session::{SessionLimits, SessionRefusal, SessionTable, WriteSession};
pub use store::{KvStore, StoredValue, apply_logged, prefix_end};
pub use watch::{WatchFilter, WatchHub, Watcher, WatchersFull};
