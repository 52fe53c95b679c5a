//! Client sessions: exactly-once writes (Ongaro's thesis, §6.3).
//!
//! A write may carry a [`WriteSession`]: a random client ID, the write's
//! sequence number and the lowest sequence number the client still waits for.
//! The state machine keeps, per client, the answers of the writes it applied
//! at or above that watermark. Applying a write it already answered returns
//! the stored answer instead of applying it again, so a client may retry a
//! write whose outcome it does not know (timeout, lost connection, leader
//! change) without it taking effect twice.
//!
//! Pure and deterministic: the table is part of the replicated state, so its
//! every decision depends only on the entries applied, never on a replica's
//! clock or configuration. Time is the leader's wall clock stamped into each
//! entry when it was proposed, made monotonic here (`max` of all stamps seen),
//! so every replica expires the same sessions at the same entry.
//!
//! A client may have many writes in flight (a `RaftClient` is shared by
//! tasks), so answers are kept per sequence number, not only the last one: the
//! thesis's "lowest sequence number without a response" watermark says which
//! ones the client can no longer ask for.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a write says about itself (the proto's `WriteSession`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WriteSession {
    /// Random per client instance; never 0.
    pub client_id: u64,
    /// One per logical write, from 1; retries reuse it.
    pub seq: u64,
    /// The lowest seq the client has no final answer for yet (≤ `seq`).
    pub first_incomplete: u64,
}

impl WriteSession {
    /// Why these values are not a session any client could send, if so.
    /// Checked before proposing, and again in apply (bad input must be
    /// refused the same way by every replica, whatever reached the log).
    pub fn invalid(&self) -> Option<&'static str> {
        if self.client_id == 0 {
            Some("session client_id must not be 0")
        } else if self.seq == 0 {
            Some("session seq must be at least 1")
        } else if self.first_incomplete == 0 || self.first_incomplete > self.seq {
            Some("session first_incomplete must be between 1 and seq")
        } else {
            None
        }
    }
}

/// The bounds of the table. They decide what every replica applies, so they
/// are constants of the log format, not configuration: changing them changes
/// how existing logs replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// A session unused for longer than this (leader time) is forgotten; a
    /// retry after that is applied as new. Far above any client's retry
    /// deadline (seconds) and any clock difference between two leaders.
    pub ttl_ms: u64,
    /// Sessions kept at most; beyond it the least recently used one is
    /// forgotten. Each costs ~100 bytes plus its answers, on every replica
    /// and in every snapshot.
    pub sessions_max: usize,
    /// Answers kept per session. A client with more writes in flight than
    /// this sees the oldest refused as too old (never applied twice). Each
    /// answer is ~60 bytes (values are not kept: see `CommandResult::compact`).
    pub replies_per_session_max: usize,
}

impl SessionLimits {
    /// What the state machine uses (worst case ~10,000 × 128 × 60 B ≈ 77 MB;
    /// a typical client has a handful of answers kept).
    pub const STANDARD: SessionLimits = SessionLimits {
        ttl_ms: 10 * 60 * 1000,
        sessions_max: 10_000,
        replies_per_session_max: 128,
    };
}

const _: () = assert!(SessionLimits::STANDARD.sessions_max > 0);
const _: () = assert!(SessionLimits::STANDARD.replies_per_session_max > 0);

/// Why a session write was refused (nothing was applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SessionRefusal {
    #[error("invalid write session: {0}")]
    Invalid(String),
    /// Below the client's own watermark, or an answer dropped for room: the
    /// write may or may not have been applied and its answer is gone.
    #[error(
        "write session seq {seq} is below {floor}, the lowest this client may still retry; its outcome is no longer known"
    )]
    TooOld { seq: u64, floor: u64 },
    /// The same (client, seq) arrived with a different command.
    #[error("write session seq {seq} was already used for a different write")]
    Reused { seq: u64 },
}

/// How a write with a session was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<R> {
    /// Applied now.
    Fresh(R),
    /// Applied before; this is the stored answer.
    Replayed(R),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stored<R> {
    /// Of the command, so a reused seq is told from a retry.
    fingerprint: u32,
    reply: R,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Session<R> {
    /// Table clock when the session was last used.
    last_active_ms: u64,
    /// Writes below this seq are refused.
    floor: u64,
    replies: BTreeMap<u64, Stored<R>>,
}

/// The per-client answers (see the module docs). `R` is the stored answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTable<R> {
    /// The highest leader time seen in any session entry.
    clock_ms: u64,
    sessions: BTreeMap<u64, Session<R>>,
}

impl<R> Default for SessionTable<R> {
    fn default() -> Self {
        SessionTable {
            clock_ms: 0,
            sessions: BTreeMap::new(),
        }
    }
}

impl<R: Clone> SessionTable<R> {
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Answers kept in all sessions.
    pub fn replies(&self) -> usize {
        self.sessions.values().map(|s| s.replies.len()).sum()
    }

    /// Applies the write `id` at leader time `at_ms` at most once: `apply`
    /// runs only if (client, seq) has no stored answer and is not refused.
    pub fn once(
        &mut self,
        id: WriteSession,
        at_ms: u64,
        fingerprint: u32,
        limits: &SessionLimits,
        apply: impl FnOnce() -> R,
    ) -> Result<Answer<R>, SessionRefusal> {
        if let Some(why) = id.invalid() {
            return Err(SessionRefusal::Invalid(why.to_string()));
        }
        self.clock_ms = self.clock_ms.max(at_ms);
        let now = self.clock_ms;
        let live = self
            .sessions
            .get(&id.client_id)
            .is_some_and(|s| !expired(s, now, limits));
        if !live {
            self.sessions.remove(&id.client_id);
            self.make_room(limits);
            self.sessions.insert(
                id.client_id,
                Session {
                    last_active_ms: now,
                    floor: id.first_incomplete,
                    replies: BTreeMap::new(),
                },
            );
        }
        let s = self
            .sessions
            .get_mut(&id.client_id)
            .expect("inserted above");
        s.last_active_ms = now;
        if id.first_incomplete > s.floor {
            // The client has its answers below the watermark: forget them.
            s.floor = id.first_incomplete;
            s.replies = s.replies.split_off(&s.floor);
        }
        if id.seq < s.floor {
            return Err(SessionRefusal::TooOld {
                seq: id.seq,
                floor: s.floor,
            });
        }
        if let Some(stored) = s.replies.get(&id.seq) {
            if stored.fingerprint != fingerprint {
                return Err(SessionRefusal::Reused { seq: id.seq });
            }
            return Ok(Answer::Replayed(stored.reply.clone()));
        }
        let reply = apply();
        s.replies.insert(
            id.seq,
            Stored {
                fingerprint,
                reply: reply.clone(),
            },
        );
        while s.replies.len() > limits.replies_per_session_max {
            let (lowest, _) = s.replies.pop_first().expect("over the limit, so not empty");
            s.floor = lowest + 1;
        }
        Ok(Answer::Fresh(reply))
    }

    /// The stored answer of `id` if it has one, without changing anything:
    /// lets a node answer a retry of an applied write without proposing it
    /// again. `None` also when the session is unknown or the answer gone (the
    /// write then goes through the log and [`SessionTable::once`] decides).
    pub fn replay(&self, id: WriteSession, fingerprint: u32, limits: &SessionLimits) -> Option<R> {
        let s = self.sessions.get(&id.client_id)?;
        if expired(s, self.clock_ms, limits) || id.seq < s.floor.max(id.first_incomplete) {
            return None;
        }
        let stored = s.replies.get(&id.seq)?;
        (stored.fingerprint == fingerprint).then(|| stored.reply.clone())
    }

    /// Drops expired sessions, then the least recently used ones until one
    /// more fits. Ties (same last use) go by client ID, so every replica
    /// picks the same one.
    fn make_room(&mut self, limits: &SessionLimits) {
        if self.sessions.len() < limits.sessions_max {
            return;
        }
        let now = self.clock_ms;
        self.sessions.retain(|_, s| !expired(s, now, limits));
        while self.sessions.len() >= limits.sessions_max {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(id, s)| (s.last_active_ms, **id))
                .map(|(id, _)| *id)
                .expect("at the limit, so not empty");
            self.sessions.remove(&oldest);
        }
    }
}

fn expired<R>(s: &Session<R>, now: u64, limits: &SessionLimits) -> bool {
    now.saturating_sub(s.last_active_ms) > limits.ttl_ms
}

#[cfg(test)]
mod tests;
