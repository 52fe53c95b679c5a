//! `raftctl`: the command-line client. The binary only parses flags and calls
//! [`run`]; each command group lives in its own file.

mod bench;
mod force;
mod kv;
mod member;
mod output;
mod snapshot;
mod status;
mod svg;
mod trace;
mod watch;
mod waterfall;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use raftkv_client::{self as client, ClientOptions, Consistency, RaftClient, ReadOptions};

pub use output::{OutputFormat, table};
pub use trace::prepare_process;

/// Endpoints of `raft-node local --nodes 3` with its default base port.
pub use raftkv_client::DEFAULT_ENDPOINTS;

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  the command failed (one line on stderr: `Error: ...`), e.g. key not found,
     compare-and-swap mismatch, no node reachable, request refused
  2  invalid command line
`status` exits 0 when at least one node answered (unreachable members are rows
with role `unreachable` and a warning on stderr); `leader_id` 0 means no leader.

Examples:
  export RAFTCTL_ENDPOINTS=127.0.0.1:7000,127.0.0.1:7002,127.0.0.1:7004
  raftctl put greeting hello
  raftctl get greeting --consistency stale
  raftctl cas greeting hi --expect hello
  raftctl status -o json
  raftctl snapshot save backup.rkv && raftctl snapshot inspect backup.rkv
  raftctl --endpoints <survivor> cluster force-new-cluster --yes   (quorum lost for good)
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 raftctl --trace put k v
  raftctl trace get <trace-id> --wait 10s     (the query API of Jaeger, http://127.0.0.1:16686)
  raftctl trace ls --since 5m";

#[derive(Debug, Parser)]
#[command(name = "raftctl", version, about = "Command-line client of a raftkv cluster", after_help = AFTER_HELP)]
pub struct Cli {
    /// Comma-separated client endpoints (host:port, http://host:port or
    /// https://host:port) of the cluster's nodes.
    #[arg(long, global = true, env = "RAFTCTL_ENDPOINTS", default_value = DEFAULT_ENDPOINTS)]
    pub endpoints: String,
    /// CA certificate (PEM) that signed the nodes' certificates: turns TLS on.
    #[arg(
        long = "cacert",
        global = true,
        env = "RAFTCTL_CACERT",
        value_name = "FILE"
    )]
    pub tls_cacert: Option<std::path::PathBuf>,
    /// Client certificate (PEM) to present; its role decides what is allowed
    /// (admin: membership and other Cluster changes; kv: keys and status).
    #[arg(
        long = "cert",
        global = true,
        env = "RAFTCTL_CERT",
        value_name = "FILE",
        requires = "tls_cacert"
    )]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(
        long = "key",
        global = true,
        env = "RAFTCTL_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<std::path::PathBuf>,
    /// Verify the nodes' certificates for this name instead of the host of
    /// each endpoint (through a port-forward on 127.0.0.1, say the Service's
    /// name, e.g. `demo.prod.svc`).
    #[arg(
        long = "tls-server-name",
        global = true,
        env = "RAFTCTL_TLS_SERVER_NAME",
        value_name = "NAME",
        requires = "tls_cacert"
    )]
    pub tls_server_name: Option<String>,
    /// Timeout of one request to one node; retries over all nodes stop after twice this.
    #[arg(long, global = true, value_parser = humantime::parse_duration, default_value = "5s")]
    pub timeout: Duration,
    /// Output format (json prints one JSON document on stdout).
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Log format of diagnostics on stderr (default: text on a terminal, json otherwise).
    #[arg(long, global = true, value_enum, env = "RAFTCTL_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Trace this command whatever the sampling ratio and rate limit, and print
    /// `trace: <trace-id>` on stderr when it ends (needs OTEL_EXPORTER_OTLP_ENDPOINT).
    #[arg(long, global = true)]
    pub trace: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cluster-wide operations.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Write a value (reads it from stdin if VALUE is omitted).
    Put { key: String, value: Option<String> },
    /// Print a key's value (raw; `-o json` adds revisions).
    Get {
        key: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Delete a key.
    #[command(alias = "delete")]
    Del { key: String },
    /// Compare-and-swap: write NEW only if the key's state matches the expectation.
    #[command(group = clap::ArgGroup::new("expectation").required(true).multiple(false))]
    Cas {
        key: String,
        new: String,
        /// The current value must equal OLD.
        #[arg(long, group = "expectation", value_name = "OLD")]
        expect: Option<String>,
        /// The key must not exist.
        #[arg(long, group = "expectation")]
        expect_absent: bool,
        /// The key's mod_revision must equal N.
        #[arg(long, group = "expectation", value_name = "N")]
        expect_revision: Option<u64>,
    },
    /// List keys with a prefix (all keys if omitted), or in [--from, --to).
    Range {
        #[arg(default_value = "")]
        prefix: String,
        /// Maximum number of keys (0 = server maximum).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// First key of a key range (instead of a prefix).
        #[arg(long, conflicts_with = "prefix")]
        from: Option<String>,
        /// End of a key range (exclusive; empty = to the end).
        #[arg(long, requires = "from")]
        to: Option<String>,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Print each change to keys with PREFIX (every key if omitted) as the
    /// member applies it, one line each (`-o json`: one JSON object a line).
    /// Runs until interrupted, --count events, or the stream ends (exit 1).
    Watch {
        #[arg(default_value = "")]
        prefix: String,
        /// PREFIX is one exact key.
        #[arg(long)]
        exact: bool,
        /// Start at this store revision (it must not be applied yet on the
        /// member: `get`, then watch from its revision + 1). Default: now.
        #[arg(long, default_value_t = 0)]
        from_revision: u64,
        /// Exit 0 after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// One row per member: id, address, role, term, leader, commit, applied.
    Status,
    /// Membership changes (learners first, then promotion).
    #[command(subcommand)]
    Member(MemberCommand),
    /// Backups: save a consistent point-in-time copy of the cluster to a file, inspect one.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Load generator: prints throughput, latency percentiles and errors.
    Bench(bench::BenchArgs),
    /// Look at traces in the trace backend (Jaeger query API v3, http:// only).
    #[command(subcommand)]
    Trace(trace::TraceCommand),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// One-time bootstrap of fresh nodes (refused if any has a cluster or is unreachable).
    Init {
        /// How long to wait for the first leader.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        wait: Duration,
    },
    /// DANGER: make the one node in --endpoints (a surviving voter that sees
    /// no leader) the one voter of a NEW cluster with its committed state.
    /// Only when a majority of voters is gone for good; see docs/operations.md.
    ForceNewCluster {
        /// Confirm: writes the node had not seen committed, and every other
        /// member's data, are left behind.
        #[arg(long)]
        yes: bool,
        /// How long to wait for the node to restart as the new cluster's
        /// leader (0s: do not wait).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
        wait: Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a consistent backup (taken by the leader at a linearizable read
    /// point) to FILE; written to FILE.part, verified, then renamed.
    Save {
        file: std::path::PathBuf,
        /// Report the bytes received on stderr as they arrive.
        #[arg(long)]
        progress: bool,
    },
    /// Verify a backup file's checksums and print its header.
    Inspect { file: std::path::PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add the node at CLIENT_ADDR as a learner (non-voter).
    AddLearner { client_addr: String },
    /// Make learners voters (joint consensus). IDs may also be names or client addresses.
    Promote {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove a member (a voter by joint consensus).
    Remove { id: String },
    /// Hand leadership to a voter (omit ID: the most caught-up one).
    TransferLeader { id: Option<String> },
}

#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// Read consistency.
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub consistency: ConsistencyArg,
    /// For bounded reads: how far behind a current leader the serving node may be.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_staleness: Option<Duration>,
    /// Wait until the serving node has applied this store revision (read-your-writes).
    #[arg(long, default_value_t = 0)]
    pub min_revision: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsistencyArg {
    Linearizable,
    Bounded,
    Stale,
}

impl ReadArgs {
    pub fn to_options(&self) -> Result<ReadOptions, CtlError> {
        let consistency = match (self.consistency, self.max_staleness) {
            (ConsistencyArg::Bounded, s) => Consistency::Bounded {
                max_staleness: s.unwrap_or_default(),
            },
            (_, Some(_)) => {
                return Err(CtlError::usage(
                    "--max-staleness applies only to --consistency bounded",
                ));
            }
            (ConsistencyArg::Linearizable, None) => Consistency::Linearizable,
            (ConsistencyArg::Stale, None) => Consistency::Stale,
        };
        Ok(ReadOptions {
            consistency,
            min_revision: self.min_revision,
        })
    }
}

/// A failed command: one line for stderr and the exit code.
#[derive(Debug)]
pub struct CtlError {
    pub message: String,
    pub exit_code: i32,
}

impl CtlError {
    pub fn failed(message: impl Into<String>) -> Self {
        CtlError {
            message: message.into(),
            exit_code: 1,
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        CtlError {
            message: message.into(),
            exit_code: 2,
        }
    }
}

/// The TLS configuration the flags ask for (`None`: plaintext).
fn tls_config(cli: &Cli) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, CtlError> {
    let Some(ca) = &cli.tls_cacert else {
        if client::wants_tls(&cli.endpoints) {
            return Err(CtlError::usage(
                "https:// endpoints need --cacert (or RAFTCTL_CACERT): the CA that signed the nodes' certificates",
            ));
        }
        return Ok(None);
    };
    let mut files = client::tls::TlsFiles::new(ca);
    match (&cli.tls_cert, &cli.tls_key) {
        (Some(c), Some(k)) => files = files.with_identity(c, k),
        (None, None) => {}
        _ => return Err(CtlError::usage("--cert and --key go together")),
    }
    let creds = client::tls::Credentials::load(files)
        .map_err(|e| CtlError::usage(format!("TLS files: {e}")))?;
    let cfg = creds
        .client_config()
        .map_err(|e| CtlError::usage(format!("TLS: {e}")))?;
    Ok(Some(cfg))
}

impl From<client::Error> for CtlError {
    fn from(e: client::Error) -> Self {
        CtlError::failed(e.to_string())
    }
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // One line, always.
        f.write_str(&self.message.replace('\n', " "))
    }
}

/// Set up diagnostics on stderr. Quiet by default (warn); `RUST_LOG` overrides.
pub fn init_logging(format: Option<LogFormat>) -> raftkv_telemetry::TelemetryGuard {
    use raftkv_telemetry::LogFormat as L;
    let format = match format {
        Some(LogFormat::Json) => L::Json,
        Some(_) => L::Text,
        None => L::for_stderr(),
    };
    // Traces (when OTEL_EXPORTER_OTLP_ENDPOINT is set) start here: one root
    // span per command, carried to the nodes in `traceparent`.
    raftkv_telemetry::init(&raftkv_telemetry::Options {
        service_name: "raftctl",
        instance_id: None,
        // raftctl serves nothing: every span it makes may start a trace.
        never_root: &[],
        format,
        output: raftkv_telemetry::LogOutput::Stderr,
        default_filter: "warn",
    })
}

/// Run one command; output goes to stdout, the error (if any) is returned.
pub async fn run(cli: Cli) -> Result<(), CtlError> {
    use tracing::Instrument;
    if matches!(cli.command, Command::Bench(_) | Command::Trace(_)) {
        // No root span for a benchmark: every request is its own trace, and
        // the nodes' samplers (ratio, rate limit) decide which to keep.
        // Nor for `trace`: looking at traces must not add traces.
        return run_command(cli).await;
    }
    let span = tracing::info_span!(
        "raftctl",
        otel.name = command_name(&cli.command),
        otel.kind = "client"
    );
    let trace_id = cli.trace.then(|| trace::sampled_trace_id(&span));
    let result = run_command(cli).instrument(span).await;
    // `main` flushes the exporter (drops the telemetry guard) before exiting.
    match trace_id {
        // One write, so the line is never split by the command's stdout when
        // both go to one pipe (`2>&1`; the e2e parses it).
        Some(Some(id)) => {
            use std::io::Write;
            let _ = std::io::stderr().write_all(format!("trace: {id}\n").as_bytes());
        }
        Some(None) => eprintln!("Warning: --trace: this command's span was not sampled"),
        None => {}
    }
    result
}

/// The root span name of a command (`raftctl put`, `raftctl member`, ...).
fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Cluster(_) => "raftctl cluster",
        Command::Bench(_) => "raftctl bench",
        Command::Put { .. } => "raftctl put",
        Command::Get { .. } => "raftctl get",
        Command::Del { .. } => "raftctl del",
        Command::Cas { .. } => "raftctl cas",
        Command::Range { .. } => "raftctl range",
        Command::Watch { .. } => "raftctl watch",
        Command::Status => "raftctl status",
        Command::Member(_) => "raftctl member",
        Command::Snapshot(_) => "raftctl snapshot",
        Command::Trace(_) => "raftctl trace",
    }
}

async fn run_command(cli: Cli) -> Result<(), CtlError> {
    if let Command::Trace(t) = cli.command {
        return trace::run(t, cli.timeout, cli.output).await;
    }
    if let Command::Snapshot(SnapshotCommand::Inspect { file }) = cli.command {
        return snapshot::inspect(file, cli.output).await;
    }
    let endpoints = client::parse_endpoints(&cli.endpoints)?;
    let mut opts = ClientOptions::default().with_timeout(cli.timeout);
    opts.tls = tls_config(&cli)?;
    opts.tls_server_name = cli.tls_server_name.clone();
    let out = cli.output;
    match cli.command {
        Command::Cluster(ClusterCommand::Init { wait }) => {
            status::cluster_init(endpoints, opts, wait, out).await
        }
        Command::Cluster(ClusterCommand::ForceNewCluster { yes, wait }) => {
            force::run(endpoints, opts, yes, wait, out).await
        }
        Command::Bench(args) => bench::run(endpoints, opts, args, out).await,
        cmd => {
            let c = RaftClient::connect(endpoints, opts)?;
            match cmd {
                Command::Put { key, value } => kv::put(&c, key, value, out).await,
                Command::Get { key, read } => kv::get(&c, key, read.to_options()?, out).await,
                Command::Del { key } => kv::del(&c, key, out).await,
                Command::Cas {
                    key,
                    new,
                    expect,
                    expect_absent,
                    expect_revision,
                } => {
                    let expect = match (expect, expect_absent, expect_revision) {
                        (Some(v), _, _) => client::Expect::Value(v.into_bytes()),
                        (None, true, _) => client::Expect::Absent,
                        (None, false, Some(r)) => client::Expect::Revision(r),
                        (None, false, None) => {
                            return Err(CtlError::usage(
                                "one of --expect, --expect-absent, --expect-revision is required",
                            ));
                        }
                    };
                    kv::cas(&c, key, new, expect, out).await
                }
                Command::Range {
                    prefix,
                    limit,
                    from,
                    to,
                    read,
                } => kv::range(&c, prefix, from, to, limit, read.to_options()?, out).await,
                Command::Watch {
                    prefix,
                    exact,
                    from_revision,
                    count,
                } => {
                    let args = watch::WatchArgs {
                        prefix,
                        key: exact,
                        from_revision,
                        count,
                    };
                    watch::run(&c, args, out).await
                }
                Command::Status => status::status(&c, out).await,
                Command::Member(m) => member::run(&c, m, out).await,
                Command::Snapshot(SnapshotCommand::Save { file, progress }) => {
                    snapshot::save(&c, file, progress, out).await
                }
                Command::Cluster(_)
                | Command::Bench(_)
                | Command::Trace(_)
                | Command::Snapshot(SnapshotCommand::Inspect { .. }) => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("raftctl").chain(args.iter().copied()))
    }

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = parse(&[
            "get",
            "k",
            "-o",
            "json",
            "--endpoints",
            "a:1,b:2",
            "--timeout",
            "2s",
        ])
        .unwrap();
        assert_eq!(cli.output, OutputFormat::Json);
        assert_eq!(cli.endpoints, "a:1,b:2");
        assert_eq!(cli.timeout, Duration::from_secs(2));
        assert!(matches!(cli.command, Command::Get { ref key, .. } if key == "k"));
    }

    #[test]
    fn get_read_options_are_parsed() {
        let cli = parse(&[
            "get",
            "k",
            "--consistency",
            "bounded",
            "--max-staleness",
            "500ms",
            "--min-revision",
            "9",
        ])
        .unwrap();
        let Command::Get { read, .. } = cli.command else {
            panic!()
        };
        let o = read.to_options().unwrap();
        assert_eq!(
            o.consistency,
            Consistency::Bounded {
                max_staleness: Duration::from_millis(500)
            }
        );
        assert_eq!(o.min_revision, 9);
        let cli = parse(&["get", "k", "--max-staleness", "1s"]).unwrap();
        let Command::Get { read, .. } = cli.command else {
            panic!()
        };
        assert_eq!(read.to_options().unwrap_err().exit_code, 2);
    }

    #[test]
    fn cas_needs_exactly_one_expectation() {
        assert!(parse(&["cas", "k", "new"]).is_err());
        assert!(parse(&["cas", "k", "new", "--expect", "a", "--expect-absent"]).is_err());
        let cli = parse(&["cas", "k", "new", "--expect-revision", "4"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Cas {
                expect_revision: Some(4),
                expect_absent: false,
                ..
            }
        ));
        assert!(parse(&["cas", "k", "new", "--expect-absent"]).is_ok());
    }

    #[test]
    fn member_and_cluster_subcommands_parse() {
        let cli = parse(&["member", "promote", "1", "2"]).unwrap();
        assert!(
            matches!(cli.command, Command::Member(MemberCommand::Promote { ref ids }) if ids.len() == 2)
        );
        assert!(parse(&["member", "promote"]).is_err());
        let cli = parse(&["member", "transfer-leader"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Member(MemberCommand::TransferLeader { id: None })
        ));
        assert!(matches!(
            parse(&["cluster", "init"]).unwrap().command,
            Command::Cluster(ClusterCommand::Init { .. })
        ));
    }

    #[test]
    fn snapshot_subcommands_parse() {
        let cli = parse(&["snapshot", "save", "b.rkv"]).unwrap();
        assert!(
            matches!(cli.command, Command::Snapshot(SnapshotCommand::Save { ref file, .. }) if file.as_os_str() == "b.rkv")
        );
        let cli = parse(&["snapshot", "inspect", "b.rkv", "-o", "json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Snapshot(SnapshotCommand::Inspect { .. })
        ));
        assert!(parse(&["snapshot", "save"]).is_err());
    }

    #[test]
    fn range_from_conflicts_with_prefix() {
        assert!(parse(&["range", "p", "--from", "a"]).is_err());
        assert!(parse(&["range", "--to", "b"]).is_err());
        assert!(parse(&["range", "--from", "a", "--to", "b", "--limit", "3"]).is_ok());
    }

    #[test]
    fn trace_subcommands_and_the_global_trace_flag_parse() {
        let cli = parse(&["put", "k", "v", "--trace"]).unwrap();
        assert!(cli.trace);
        assert!(!parse(&["put", "k", "v"]).unwrap().trace);
        let cli = parse(&[
            "trace",
            "get",
            "abc",
            "--wait",
            "3s",
            "--min-spans",
            "9",
            "--query-url",
            "http://q:1",
            "--svg",
            "w.svg",
        ])
        .unwrap();
        let Command::Trace(trace::TraceCommand::Get {
            trace_id,
            wait,
            min_spans,
            svg,
            query,
        }) = cli.command
        else {
            panic!()
        };
        assert_eq!(
            (trace_id.as_str(), wait, min_spans, query.query_url.as_str()),
            ("abc", Duration::from_secs(3), 9, "http://q:1")
        );
        assert_eq!(svg, Some(std::path::PathBuf::from("w.svg")));
        let cli = parse(&["trace", "ls", "-o", "json"]).unwrap();
        assert_eq!(cli.output, OutputFormat::Json);
        let Command::Trace(trace::TraceCommand::Ls {
            service,
            operation,
            since,
            limit,
            ..
        }) = cli.command
        else {
            panic!()
        };
        assert_eq!(
            (service.as_str(), operation, since, limit),
            ("raftctl", None, Duration::from_secs(15 * 60), 20)
        );
        assert!(parse(&["trace", "ls", "--limit", "0"]).is_err());
        assert!(parse(&["trace", "get"]).is_err());
    }

    #[test]
    fn trace_flag_is_refused_where_it_means_nothing() {
        let cli = parse(&["--trace", "trace", "ls"]).unwrap();
        assert_eq!(prepare_process(&cli).unwrap_err().exit_code, 2);
        let cli = parse(&["--trace", "bench", "put"]).unwrap();
        assert_eq!(prepare_process(&cli).unwrap_err().exit_code, 2);
        // Without --trace nothing is checked or set.
        assert!(prepare_process(&parse(&["status"]).unwrap()).is_ok());
        // No export configured: --trace says what to set (and sets nothing).
        for v in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ] {
            assert!(
                std::env::var_os(v).is_none(),
                "unset {v} to run the unit tests"
            );
        }
        let sampler = std::env::var_os("OTEL_TRACES_SAMPLER");
        let e = prepare_process(&parse(&["--trace", "put", "k", "v"]).unwrap()).unwrap_err();
        assert_eq!(e.exit_code, 1);
        assert!(
            e.message.contains("set OTEL_EXPORTER_OTLP_ENDPOINT"),
            "{}",
            e.message
        );
        assert_eq!(std::env::var_os("OTEL_TRACES_SAMPLER"), sampler);
    }

    #[test]
    fn errors_are_one_line() {
        let e = CtlError::failed("a\nb");
        assert_eq!(e.to_string(), "a b");
    }
}
