//! `raft-node local`: a throwaway N-node cluster on loopback.
