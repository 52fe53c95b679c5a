//! The operation history: one JSON object per line, one line per operation,
//! written when the operation completes (or is abandoned as unknown).
//!
//! Times are nanoseconds since the start of the run on the harness's monotonic
//! clock. The harness is the only observer, so its invocation time is taken
//! before the request leaves and its completion time after the reply arrives:
//! the real effect lies inside `[invoke_ns, complete_ns]`, which is all the
//! checker needs. An operation whose outcome is unknown has no completion
//! time: it may take effect at any point after its invocation, or never.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Put,
    Get,
    Cas,
    Delete,
}

/// What a read asked for. `MinRevision` is a stale read that waits until the
/// serving node reached a revision (read-your-writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Linearizable,
    Bounded,
    Stale,
    MinRevision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The server answered with a definite result (for a CAS: swapped or not).
    Ok,
    /// Definitely did not take effect.
    Fail,
    /// May or may not have taken effect (timeout, broken connection, or an
    /// error a write can get after it was proposed).
    Unknown,
}

/// The precondition of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Value(String),
    Absent,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Op {
    /// Unique within the history, in invocation order per process.
    pub id: u64,
    /// The worker that issued it ("process" in Jepsen's terms): one
    /// operation at a time per process.
    pub process: u32,
    /// Index of the member the worker sent it to.
    pub node: usize,
    pub kind: Option<OpKind>,
    pub key: String,
    /// Put and CAS: the value written (unique across the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// CAS: the precondition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    /// Get: the consistency level asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// Bounded reads: the bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_staleness_ms: Option<u64>,
    /// MinRevision reads: the revision waited for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_revision: Option<u64>,
    pub invoke_ns: u64,
    /// `None` for unknown outcomes (completion = +infinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_ns: Option<u64>,
    pub outcome: Option<Outcome>,
    /// Get (ok): the value read; `None` = the key was not found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
    /// CAS (ok): whether the comparison held and the value was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swapped: Option<bool>,
    /// Delete (ok): whether the key existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
    /// Store revision in the reply header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Get (ok, found) / put / swapped CAS: the key's mod_revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<u64>,
    /// Raft node ID that served it (from the reply header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Op {
    pub fn kind(&self) -> OpKind {
        self.kind.expect("every recorded op has a kind")
    }

    pub fn outcome(&self) -> Outcome {
        self.outcome.unwrap_or(Outcome::Unknown)
    }

    pub fn is_write(&self) -> bool {
        matches!(self.kind(), OpKind::Put | OpKind::Cas | OpKind::Delete)
    }

    /// A write that is known to have changed the key (and when, by revision).
    pub fn changed_key(&self) -> bool {
        self.outcome() == Outcome::Ok
            && match self.kind() {
                OpKind::Put => true,
                OpKind::Cas => self.swapped == Some(true),
                OpKind::Delete => self.deleted == Some(true),
                OpKind::Get => false,
            }
    }

    /// Completion time, +infinity for unknown outcomes.
    pub fn complete_or_max(&self) -> u64 {
        self.complete_ns.unwrap_or(u64::MAX)
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        let t = |ns: u64| format!("{:.3}s", ns as f64 / 1e9);
        let end = self.complete_ns.map(t).unwrap_or_else(|| "inf".into());
        let what = match self.kind() {
            OpKind::Put => format!("put {}={}", self.key, show(&self.value)),
            OpKind::Delete => format!(
                "delete {}{}",
                self.key,
                self.deleted
                    .map(|d| format!(" -> deleted={d}"))
                    .unwrap_or_default()
            ),
            OpKind::Cas => format!(
                "cas {} {} -> {}{}",
                self.key,
                match &self.expect {
                    Some(Expect::Value(v)) => format!("expect={v}"),
                    Some(Expect::Absent) => "expect=absent".into(),
                    None => "expect=?".into(),
                },
                show(&self.value),
                self.swapped
                    .map(|s| format!(" swapped={s}"))
                    .unwrap_or_default()
            ),
            OpKind::Get => format!(
                "get {} [{:?}{}] -> {}",
                self.key,
                self.level.unwrap_or(Level::Linearizable),
                self.max_staleness_ms
                    .map(|b| format!(" {b}ms"))
                    .or(self.min_revision.map(|r| format!(" rev>={r}")))
                    .unwrap_or_default(),
                if self.outcome() == Outcome::Ok {
                    self.read.clone().unwrap_or_else(|| "<absent>".into())
                } else {
                    "-".into()
                }
            ),
        };
        format!(
            "#{} p{} n{} [{} .. {}] {:?} {}{}{}",
            self.id,
            self.process,
            self.node,
            t(self.invoke_ns),
            end,
            self.outcome(),
            what,
            self.revision
                .map(|r| format!(" rev={r}"))
                .unwrap_or_default(),
            self.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )
    }
}

fn show(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "?".into())
}

pub fn write_jsonl(path: &Path, ops: &[Op]) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for op in ops {
        serde_json::to_writer(&mut f, op)?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    Ok(())
}

pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Op>> {
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut ops = Vec::new();
    for (i, line) in f.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        ops.push(
            serde_json::from_str(&line)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?,
        );
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_through_json_lines() {
        let ops = vec![
            Op {
                id: 1,
                process: 2,
                kind: Some(OpKind::Cas),
                key: "k1".into(),
                value: Some("v9".into()),
                expect: Some(Expect::Absent),
                invoke_ns: 10,
                complete_ns: Some(20),
                outcome: Some(Outcome::Ok),
                swapped: Some(true),
                ..Default::default()
            },
            Op {
                id: 2,
                kind: Some(OpKind::Get),
                key: "k1".into(),
                level: Some(Level::Bounded),
                max_staleness_ms: Some(500),
                invoke_ns: 30,
                outcome: Some(Outcome::Unknown),
                ..Default::default()
            },
        ];
        let dir = std::env::temp_dir().join(format!("raftkv-faults-h-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("h.jsonl");
        write_jsonl(&p, &ops).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(r#""kind":"cas""#), "{text}");
        assert!(text.contains(r#""level":"bounded""#), "{text}");
        assert_eq!(read_jsonl(&p).unwrap(), ops);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
