//! Multi-process tests: real `raft-node` processes talking real gRPC on
//! loopback. Each test file owns a port range (PORT_BASE) so tests run in
//! parallel without colliding.

mod util;

mod test_basics;
mod test_batching;
mod test_bounded;
mod test_failover;
mod test_force_new_cluster;
mod test_identity;
mod test_joint;
mod test_limits;
mod test_membership;
mod test_peer_channels;
mod test_preconditions;
mod test_prevote;
mod test_quorum_loss;
mod test_restore;
mod test_sessions;
mod test_slow_disk;
mod test_snapshot;
mod test_watch;
