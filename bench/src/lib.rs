//! Pieces of `hack/bench/vs-etcd.sh` that deserve tests: reading the two load
//! tools' outputs (etcd's `benchmark`, `raftctl bench`), the run document the
//! script writes, and the throughput-vs-latency curves drawn from it. Pure
//! functions of strings and values; the binary (`main.rs`) does the file I/O.

pub mod curves_svg;
pub mod etcd_output;
pub mod raftctl_output;
pub mod run_doc;
pub mod summary;

use serde::Serialize;

/// Why an output or a run document was refused. A refusal names what was
/// missing: a figure of zero from an unparsed output would read as a result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("etcd benchmark output: {0}")]
    EtcdOutput(String),
    #[error("raftctl bench output: {0}")]
    RaftctlOutput(String),
    #[error("run document: {0}")]
    RunDoc(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What one load run measured, in the units both tools can give.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunFigures {
    /// Successful requests.
    pub ops: u64,
    /// Failed requests.
    pub errors: u64,
    /// Successful requests per second over the run.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub elapsed_s: f64,
}

impl RunFigures {
    /// Refuse figures no real run gives: a tool that printed nothing useful
    /// must not turn into a point at zero on a curve.
    fn validate(self, err: fn(String) -> Error) -> Result<Self> {
        if self.ops == 0 {
            return Err(err(format!(
                "no successful request ({} errors)",
                self.errors
            )));
        }
        for (name, v) in [
            ("throughput", self.throughput),
            ("p50", self.p50_ms),
            ("p99", self.p99_ms),
            ("elapsed", self.elapsed_s),
        ] {
            if !v.is_finite() || v <= 0.0 {
                return Err(err(format!("{name} is {v}, not a positive number")));
            }
        }
        if self.p50_ms > self.p99_ms {
            return Err(err(format!(
                "p50 {} ms above p99 {} ms",
                self.p50_ms, self.p99_ms
            )));
        }
        Ok(self)
    }
}
