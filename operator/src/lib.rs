//! raft-operator
