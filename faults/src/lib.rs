//! raftkv-faults: a Jepsen-style fault suite for raftkv. It starts real
//! `raft-node` processes, each in its own network namespace, drives a
//! concurrent workload through clients attached to random members while
//! nemeses inject faults, records the history and checks it.

pub mod checker;
pub mod cli;
pub mod cluster;
pub mod history;
pub mod monitor;
pub mod nemesis;
pub mod netns;
pub mod run;
pub mod timeline;
pub mod workload;
