//! Consensus on top of openraft, as decisions: what a follower remembers of
//! its last leader contact ([`contact`]), and the extensions openraft 0.9
//! lacks, each a pure decision plus the code that carries it out:
//! joint-majority counting ([`quorum`]), finishing a joint configuration
//! left behind ([`joint`]), the pre-vote ([`prevote`], driven by
//! [`election`]), leader transfer ([`transfer`]), the quorum lease that
//! dates a leader's and its followers' freshness ([`lease`]) and read
//! admission with ReadIndex batching ([`read_index`]). The messages travel over the peer
//! plane (`crate::peer`). Nothing here imports `crate::observability`.

pub mod contact;
pub mod election;
pub mod joint;
pub mod lease;
pub mod prevote;
pub mod quorum;
pub mod read_index;
pub mod runtime;
pub mod transfer;
