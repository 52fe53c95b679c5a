//! etcd's `benchmark` report (etcd `pkg/report`), as printed after a run:
//!
//! ```text
//! (a tab after each label and after each error count)
//! Summary:
//!   Total:    1.3239 secs.
//!   ...
//!   Requests/sec:    1510.67
//! Response time histogram: ...
//! Latency distribution:
//!   50% in 0.001029925 secs.
//!   99% in 0.024180897 secs.
//! Error distribution:            (only when some request failed)
//!   [12]    etcdserver: request timed out
//! ```
//!
//! The same file also holds the gRPC library's log lines and the progress bar
//! (the tool writes them to stderr, the script keeps both streams): only the
//! lines above are read. `Requests/sec` counts successful requests only (the
//! report divides its latency count, which skips failures, by `Total`).

use super::{Error, Result, RunFigures};

fn refuse(why: impl Into<String>) -> Error {
    Error::EtcdOutput(why.into())
}

/// "  Total:\t1.32 secs." -> 1.32 (`label` is "Total:").
fn labelled_seconds(line: &str, label: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix(label)?;
    rest.trim()
        .trim_end_matches('.')
        .trim_end_matches("secs")
        .trim()
        .parse()
        .ok()
}

/// "  99% in 0.0241 secs." -> (99.0, 0.0241).
fn percentile_line(line: &str) -> Option<(f64, f64)> {
    let (pct, rest) = line.trim().split_once("% in ")?;
    let secs = rest.trim_end_matches('.').trim_end_matches("secs").trim();
    Some((pct.parse().ok()?, secs.parse().ok()?))
}

/// "  [12]\tetcdserver: ..." -> 12.
fn error_count(line: &str) -> Option<u64> {
    let rest = line.trim_start().strip_prefix('[')?;
    rest.split_once(']')?.0.parse().ok()
}

#[derive(PartialEq)]
enum Section {
    Other,
    Summary,
    Latency,
    Errors,
}

/// The figures of one `benchmark` run, or why they cannot be read.
pub fn parse(text: &str) -> Result<RunFigures> {
    let (mut total, mut rps, mut p50, mut p99) = (None, None, None, None);
    let mut errors = 0u64;
    let mut section = Section::Other;
    for line in text.lines() {
        let trimmed = line.trim();
        match trimmed {
            "Summary:" => {
                if total.is_some() {
                    return Err(refuse("two reports in one output"));
                }
                section = Section::Summary;
                continue;
            }
            "Latency distribution:" => {
                section = Section::Latency;
                continue;
            }
            "Error distribution:" => {
                section = Section::Errors;
                continue;
            }
            _ => {}
        }
        // Report lines are indented; anything else ends a section.
        if !line.starts_with("  ") {
            if !trimmed.is_empty() {
                section = Section::Other;
            }
            continue;
        }
        match section {
            Section::Summary => {
                if let Some(v) = labelled_seconds(line, "Total:") {
                    total = Some(v);
                } else if let Some(rest) = trimmed.strip_prefix("Requests/sec:") {
                    rps = Some(
                        rest.trim()
                            .parse::<f64>()
                            .map_err(|e| refuse(format!("Requests/sec {:?}: {e}", rest.trim())))?,
                    );
                }
            }
            Section::Latency => match percentile_line(line) {
                Some((50.0, s)) => p50 = Some(s * 1e3),
                Some((99.0, s)) => p99 = Some(s * 1e3),
                _ => {}
            },
            Section::Errors => {
                errors +=
                    error_count(line).ok_or_else(|| refuse(format!("error line {trimmed:?}")))?;
            }
            Section::Other => {}
        }
    }
    let (Some(total), Some(rps)) = (total, rps) else {
        return Err(refuse(if errors > 0 {
            format!("no Summary (every request failed: {errors} errors)")
        } else {
            "no Summary with Total and Requests/sec (did the tool run?)".to_string()
        }));
    };
    let (Some(p50), Some(p99)) = (p50, p99) else {
        return Err(refuse("no 50% and 99% lines under Latency distribution"));
    };
    RunFigures {
        ops: (rps * total).round() as u64,
        errors,
        throughput: rps,
        p50_ms: p50,
        p99_ms: p99,
        elapsed_s: total,
    }
    .validate(Error::EtcdOutput)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from `benchmark --clients 4 --conns 4 --precise put --key-size 16
    /// --val-size 100 --key-space-size 1000 --total 2000` (v3.6.8 built against
    /// the v3.6.16 libraries) on one member: gRPC logs, progress bar and all.
    const PUT: &str = include_str!("../testdata/etcd-put-4-clients.out");
    /// The same tool, `range rk --consistency l --total 2000`.
    const RANGE: &str = include_str!("../testdata/etcd-range-4-clients.out");

    #[test]
    fn recorded_put_gives_the_report_figures() {
        let f = parse(PUT).unwrap();
        assert!((f.throughput - 1510.6723042469487).abs() < 1e-9);
        assert!((f.elapsed_s - 1.3239138590000001).abs() < 1e-12);
        assert!((f.p50_ms - 1.029925).abs() < 1e-9);
        assert!((f.p99_ms - 24.180897).abs() < 1e-9);
        assert_eq!(f.ops, 2000);
        assert_eq!(f.errors, 0);
    }

    #[test]
    fn recorded_range_gives_the_report_figures() {
        let f = parse(RANGE).unwrap();
        assert!((f.throughput - 6594.818819503888).abs() < 1e-9);
        assert!((f.p50_ms - 0.181511).abs() < 1e-9);
        assert!((f.p99_ms - 8.105913).abs() < 1e-9);
        assert_eq!(f.ops, 2000);
    }

    /// `benchmark --cacert ca.crt --cert admin.crt --key admin.key --target-leader
    /// --clients 8 --conns 8 --precise put ... --total 3016` against 3 etcd members
    /// with client and peer TLS and --client-cert-auth (`vs-etcd.sh --tls`).
    const PUT_TLS: &str = include_str!("../testdata/etcd-put-8-clients-tls.out");

    #[test]
    fn recorded_put_over_tls_gives_the_report_figures() {
        let f = parse(PUT_TLS).unwrap();
        assert!((f.throughput - 1729.4208426946645).abs() < 1e-9);
        assert!((f.elapsed_s - 1.7439364240000002).abs() < 1e-12);
        assert!((f.p50_ms - 4.157407).abs() < 1e-9);
        assert!((f.p99_ms - 11.824487).abs() < 1e-9);
        assert_eq!(f.ops, 3016);
        assert_eq!(f.errors, 0);
    }

    #[test]
    fn errors_are_counted_apart_from_successes() {
        let text = format!(
            "{PUT}\nError distribution:\n  [3]\tetcdserver: request timed out\n  [2]\tcontext deadline exceeded\n"
        );
        let f = parse(&text).unwrap();
        assert_eq!(f.errors, 5);
        assert_eq!(f.ops, 2000);
    }

    #[test]
    fn output_without_a_report_is_refused() {
        let head: String = PUT.lines().take(100).collect::<Vec<_>>().join("\n");
        let e = parse(&head).unwrap_err().to_string();
        assert!(e.contains("no Summary"), "{e}");
        assert!(parse("").is_err());
    }

    #[test]
    fn every_request_failed_is_refused_with_the_count() {
        let e = parse("\nError distribution:\n  [7]\tetcdserver: no leader\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("7 errors"), "{e}");
    }

    #[test]
    fn missing_percentiles_are_refused() {
        let cut = PUT.replace("  99% in", "  98% in");
        let e = parse(&cut).unwrap_err().to_string();
        assert!(e.contains("99%"), "{e}");
    }

    #[test]
    fn garbled_numbers_are_refused_not_zeroed() {
        let bad = PUT.replace("Requests/sec:\t1510", "Requests/sec:\tNaNx");
        assert!(parse(&bad).is_err());
    }
}
