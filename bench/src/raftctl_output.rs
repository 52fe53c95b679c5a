//! `raftctl bench ... -o json`: one JSON object on stdout, after the progress
//! lines raftctl writes to stderr (the script keeps both streams in one file).
//! The last line-leading `{` that starts a complete object is the report.

use serde_json::Value;

use super::{Error, Result, RunFigures};

fn refuse(why: impl Into<String>) -> Error {
    Error::RaftctlOutput(why.into())
}

fn number(doc: &Value, path: &[&str]) -> Result<f64> {
    let mut v = doc;
    for p in path {
        v = v
            .get(p)
            .ok_or_else(|| refuse(format!("no field {}", path.join("."))))?;
    }
    v.as_f64()
        .ok_or_else(|| refuse(format!("{} is {v}, not a number", path.join("."))))
}

/// The figures of one `raftctl bench` run, or why they cannot be read.
pub fn parse(text: &str) -> Result<RunFigures> {
    // Byte offsets of lines that start with '{', tried from the last: the
    // report is printed after every progress line.
    let mut starts: Vec<usize> = text
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .chain(std::iter::once(0))
        .filter(|&i| text[i..].starts_with('{'))
        .collect();
    starts.sort_unstable_by(|a, b| b.cmp(a));
    let doc = starts
        .into_iter()
        .find_map(|i| {
            serde_json::Deserializer::from_str(&text[i..])
                .into_iter::<Value>()
                .next()?
                .ok()
                .filter(|v| v.get("throughput_ops_per_s").is_some())
        })
        .ok_or_else(|| refuse("no JSON report (was it run with -o json?)"))?;
    let ops = number(&doc, &["ops"])?;
    let errors = number(&doc, &["errors"])?;
    RunFigures {
        ops: ops as u64,
        errors: errors as u64,
        throughput: number(&doc, &["throughput_ops_per_s"])?,
        p50_ms: number(&doc, &["latency_ms", "p50"])?,
        p99_ms: number(&doc, &["latency_ms", "p99"])?,
        elapsed_s: number(&doc, &["elapsed_s"])?,
    }
    .validate(Error::RaftctlOutput)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from `raftctl bench put --clients 4 --duration 2s -o json`
    /// against `raft-node local --nodes 3`, stderr included.
    const PUT: &str = include_str!("../testdata/raftctl-put-4-clients.out");

    #[test]
    fn recorded_put_gives_the_report_figures() {
        let f = parse(PUT).unwrap();
        let doc: Value = serde_json::from_str(&PUT[PUT.find("\n{").unwrap() + 1..]).unwrap();
        assert_eq!(f.ops, doc["ops"].as_u64().unwrap());
        assert_eq!(f.throughput, doc["throughput_ops_per_s"].as_f64().unwrap());
        assert_eq!(f.p99_ms, doc["latency_ms"]["p99"].as_f64().unwrap());
        assert!(f.ops > 0);
    }

    /// `raftctl --cacert ca.crt --cert admin.crt --key admin.key bench put
    /// --clients 8 --duration 2s -o json` against 3 raft-node members with TLS on
    /// both planes (`vs-etcd.sh --tls`), stderr included.
    const PUT_TLS: &str = include_str!("../testdata/raftctl-put-8-clients-tls.out");

    #[test]
    fn recorded_put_over_tls_gives_the_report_figures() {
        let f = parse(PUT_TLS).unwrap();
        assert_eq!(f.ops, 3099);
        assert_eq!(f.errors, 0);
        assert!((f.elapsed_s - 2.004382364).abs() < 1e-12);
        assert!((f.p99_ms - 13.383).abs() < 1e-9, "{f:?}");
        assert!((f.throughput - 3099.0 / 2.004382364).abs() < 1.0, "{f:?}");
    }

    #[test]
    fn progress_lines_alone_are_refused() {
        let progress: String = PUT.lines().take_while(|l| !l.starts_with('{')).collect();
        let e = parse(&progress).unwrap_err().to_string();
        assert!(e.contains("no JSON report"), "{e}");
    }

    #[test]
    fn a_run_without_successes_is_refused() {
        let doc = r#"{"ops": 0, "errors": 9, "elapsed_s": 1.0, "throughput_ops_per_s": 0.0,
            "latency_ms": {"p50": 0.0, "p99": 0.0}}"#;
        let e = parse(doc).unwrap_err().to_string();
        assert!(e.contains("9 errors"), "{e}");
    }

    #[test]
    fn a_missing_percentile_is_named() {
        let doc = r#"{"ops": 5, "errors": 0, "elapsed_s": 1.0, "throughput_ops_per_s": 5.0,
            "latency_ms": {"p50": 1.0}}"#;
        let e = parse(doc).unwrap_err().to_string();
        assert!(e.contains("latency_ms.p99"), "{e}");
    }
}
