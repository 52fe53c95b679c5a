//! Durable storage of a node, all inside its data directory.
//! (Being written: see the storage helper's notes.)
