//! The key-value data model: commands that travel through the Raft log, their
//! results, and the input limits every command is checked against before it is
//! proposed.

mod command;
mod limits;
mod store;

pub use command::{Command, CommandResult, Expect, KeyValue};
pub use limits::{InputError, KvLimits};
pub use store::{KvStore, StoredValue, prefix_end};
