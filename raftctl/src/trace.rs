//! `raftctl trace get|ls`: traces from the trace backend's query API (the
//! OTLP-standard Jaeger API v3: `GET /api/v3/traces/{id}` and
//! `GET /api/v3/traces?query.*`), over plain HTTP/1.1. Also the `--trace`
//! flag: sample this command's trace whatever the ratio and rate limit.
//!
//! Parsing and rendering live in [`super::waterfall`]; this file does the
//! HTTP and the polling.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Empty, Limited};
use serde_json::Value;

use super::output::{OutputFormat, json_doc};
use super::waterfall;
use super::{Cli, Command, CtlError};

/// Default `--query-url` (Jaeger's query port on this machine).
pub const DEFAULT_QUERY_URL: &str = "http://127.0.0.1:16686";
/// Largest query response read (a trace of ~100k spans); bigger is an error.
const RESPONSE_BYTES_MAX: usize = 64 << 20;
/// Pause between two polls of `trace get --wait`.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// Base URL of the trace query API (Jaeger query, API v3). http:// only (no TLS).
    #[arg(long, env = "RAFTCTL_TRACE_QUERY", default_value = DEFAULT_QUERY_URL)]
    pub query_url: String,
}

#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// One trace as a waterfall: a line per span in tree order, a line per span event.
    Get {
        /// Trace ID (32 hex digits; shorter IDs are left-padded with zeros).
        trace_id: String,
        /// Keep asking, for at most this long, until the trace is found and looks
        /// complete: no span with a missing parent, no answered client span
        /// without its server's span, at least --min-spans spans. Nodes export
        /// in batches (OTEL_BSP_SCHEDULE_DELAY, default 5s).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        wait: Duration,
        /// With --wait: the trace is complete only with at least this many spans.
        #[arg(long, default_value_t = 1)]
        min_spans: usize,
        /// Also write the waterfall as an SVG picture to this file.
        #[arg(long, value_name = "FILE")]
        svg: Option<std::path::PathBuf>,
        #[command(flatten)]
        query: QueryArgs,
    },
    /// Recent traces, newest first.
    Ls {
        /// Traces with a span of this service.
        #[arg(long, default_value = "raftctl")]
        service: String,
        /// Traces with a span of this name (e.g. "raftctl put", raftkv.v1.KV/Put).
        #[arg(long)]
        operation: Option<String>,
        /// Traces that started within this long before now.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "15m")]
        since: Duration,
        /// At most this many traces.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        #[command(flatten)]
        query: QueryArgs,
    },
}

pub async fn run(cmd: TraceCommand, timeout: Duration, out: OutputFormat) -> Result<(), CtlError> {
    match cmd {
        TraceCommand::Get {
            trace_id,
            wait,
            min_spans,
            svg,
            query,
        } => {
            let spans = get(&query.query_url, &trace_id, wait, min_spans, timeout).await?;
            if let Some(path) = svg {
                let doc = super::svg::render_svg(&spans).unwrap_or_default();
                std::fs::write(&path, doc)
                    .map_err(|e| CtlError::failed(format!("writing {}: {e}", path.display())))?;
            }
            match out {
                OutputFormat::Json => print!("{}", json_doc(&waterfall::trace_json(&spans))),
                OutputFormat::Table => print!(
                    "{}",
                    waterfall::render_waterfall(&spans, waterfall::BAR_WIDTH)
                ),
            }
            Ok(())
        }
        TraceCommand::Ls {
            service,
            operation,
            since,
            limit,
            query,
        } => {
            ls(
                &query.query_url,
                &service,
                operation.as_deref(),
                since,
                limit,
                timeout,
                out,
            )
            .await
        }
    }
}

/// A trace ID as the query API wants it: 32 lowercase hex digits.
pub fn normalize_trace_id(id: &str) -> Result<String, CtlError> {
    let id = id.trim();
    if id.is_empty() || id.len() > 32 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(CtlError::usage(format!(
            "trace ID {id:?} is not 1 to 32 hex digits"
        )));
    }
    if id.chars().all(|c| c == '0') {
        return Err(CtlError::usage("the all-zero trace ID is invalid"));
    }
    Ok(format!("{:0>32}", id.to_ascii_lowercase()))
}

async fn get(
    base: &str,
    trace_id: &str,
    wait: Duration,
    min_spans: usize,
    timeout: Duration,
) -> Result<Vec<waterfall::Span>, CtlError> {
    let id = normalize_trace_id(trace_id)?;
    let path = format!("/api/v3/traces/{id}");
    let deadline = tokio::time::Instant::now() + wait;
    let spans = loop {
        let spans = match http_get(base, &path, timeout).await? {
            Reply::NotFound => None,
            Reply::Ok(doc) => Some(
                waterfall::parse_otlp(&doc)
                    .map_err(|e| CtlError::failed(format!("{base}{path}: {e}")))?,
            )
            .filter(|s| !s.is_empty()),
        };
        let complete = spans.as_ref().is_some_and(|s| {
            s.len() >= min_spans && waterfall::summarize(s).is_some_and(|m| m.looks_complete())
        });
        if complete || tokio::time::Instant::now() + POLL_INTERVAL > deadline {
            break spans;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    let Some(spans) = spans else {
        let hint = if wait.is_zero() {
            " (just written? the backend may not have it yet: try --wait 10s)"
        } else {
            ""
        };
        return Err(CtlError::failed(format!(
            "trace {id} not found at {base}{hint}"
        )));
    };
    if let Some(sum) = waterfall::summarize(&spans) {
        if !sum.looks_complete() {
            eprintln!(
                "Warning: trace {id} is incomplete: {} span(s) with a missing parent, {} client span(s) \
                 without their server's (not exported yet, or lost; --wait keeps asking)",
                sum.orphans, sum.unanswered
            );
        }
        if spans.len() < min_spans {
            eprintln!(
                "Warning: trace {id} has {} span(s), fewer than --min-spans {min_spans}",
                spans.len()
            );
        }
    }
    Ok(spans)
}

async fn ls(
    base: &str,
    service: &str,
    operation: Option<&str>,
    since: Duration,
    limit: u32,
    timeout: Duration,
    out: OutputFormat,
) -> Result<(), CtlError> {
    let now = SystemTime::now();
    let from = now.checked_sub(since).unwrap_or(UNIX_EPOCH);
    // A little slack for clocks of other machines.
    let to = now + Duration::from_secs(60);
    let mut path = format!(
        "/api/v3/traces?query.service_name={}&query.start_time_min={}&query.start_time_max={}&query.num_traces={limit}",
        encode(service),
        humantime::format_rfc3339_nanos(from),
        humantime::format_rfc3339_nanos(to),
    );
    if let Some(op) = operation {
        path.push_str(&format!("&query.operation_name={}", encode(op)));
    }
    let spans = match http_get(base, &path, timeout).await? {
        Reply::NotFound => Vec::new(),
        Reply::Ok(doc) => waterfall::parse_otlp(&doc)
            .map_err(|e| CtlError::failed(format!("{base}/api/v3/traces: {e}")))?,
    };
    let summaries: Vec<_> = waterfall::group_by_trace(spans)
        .values()
        .filter_map(|s| waterfall::summarize(s))
        .collect();
    let summaries = waterfall::newest(summaries, limit as usize);
    match out {
        OutputFormat::Json => print!("{}", json_doc(&waterfall::list_json(&summaries))),
        OutputFormat::Table if summaries.is_empty() => {
            eprintln!(
                "No traces of service {service:?} in the last {}.",
                humantime::format_duration(since)
            );
        }
        OutputFormat::Table => {
            let now_ns = now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            print!("{}", waterfall::render_list(&summaries, now_ns));
        }
    }
    Ok(())
}

/// Percent-encoding of a query value (RFC 3986 unreserved characters kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

enum Reply {
    Ok(Value),
    NotFound,
}

/// `GET base+path`; 200 with a JSON body, 404, or an error naming the URL.
async fn http_get(base: &str, path: &str, timeout: Duration) -> Result<Reply, CtlError> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let uri: http::Uri = url
        .parse()
        .map_err(|e| CtlError::usage(format!("--query-url {base:?}: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(CtlError::usage(format!(
            "--query-url {base:?}: only http:// URLs are supported"
        )));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| CtlError::usage(format!("--query-url {base:?}: no host")))?
        .clone();
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let unreachable = |e: &dyn std::fmt::Display| {
        CtlError::failed(format!(
            "trace query endpoint {base} unreachable: {e} (set --query-url or RAFTCTL_TRACE_QUERY)"
        ))
    };
    let fetch = async {
        let stream = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        let req = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()).to_string())
            .header(http::header::HOST, authority.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| CtlError::failed(format!("{url}: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| CtlError::failed(format!("{url}: reading the response: {e}")))?
            .to_bytes();
        Ok::<_, CtlError>((status, body))
    };
    let (status, body) = tokio::time::timeout(timeout, fetch).await.map_err(|_| {
        unreachable(&format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        ))
    })??;
    if status == http::StatusCode::NOT_FOUND {
        return Ok(Reply::NotFound);
    }
    let doc: Result<Value, _> = serde_json::from_slice(&body);
    if !status.is_success() {
        let msg = doc
            .ok()
            .and_then(|d| {
                d.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&body)
                    .trim()
                    .chars()
                    .take(200)
                    .collect()
            });
        return Err(CtlError::failed(format!("{url}: HTTP {status}: {msg}")));
    }
    doc.map(Reply::Ok)
        .map_err(|e| CtlError::failed(format!("{url}: the answer is not JSON: {e}")))
}

/// Before the runtime and telemetry start (single-threaded): with `--trace`,
/// make this process sample its trace whatever `OTEL_TRACES_SAMPLER*` and
/// `RAFTKV_TRACE_RATE_PER_MIN` say. The nodes follow the sampled flag of
/// `traceparent`, so the whole write is kept.
pub fn prepare_process(cli: &Cli) -> Result<(), CtlError> {
    if !cli.trace {
        return Ok(());
    }
    match &cli.command {
        Command::Trace(_) => {
            return Err(CtlError::usage("--trace does not apply to `raftctl trace`"));
        }
        Command::Bench(_) => {
            return Err(CtlError::usage(
                "--trace does not apply to `bench` (each request is its own trace; the nodes sample them)",
            ));
        }
        _ => {}
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    let endpoint =
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if endpoint.is_none() || disabled {
        return Err(CtlError::failed(
            "--trace needs trace export: set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://127.0.0.1:4317) \
             and leave OTEL_SDK_DISABLED / OTEL_TRACES_EXPORTER=none unset",
        ));
    }
    // SAFETY: called by `main` before the tokio runtime (or any other thread)
    // exists, so nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("OTEL_TRACES_SAMPLER", "always_on");
        std::env::remove_var("OTEL_TRACES_SAMPLER_ARG");
        std::env::set_var("RAFTKV_TRACE_RATE_PER_MIN", "0");
    }
    Ok(())
}

/// The trace ID of `span` if it is sampled (exported), as 32 hex digits.
pub fn sampled_trace_id(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    (sc.is_valid() && sc.is_sampled()).then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_normalized() {
        assert_eq!(
            normalize_trace_id("E1312FCD9B3882404AF5BB3DBE6D16FE").unwrap(),
            "e1312fcd9b3882404af5bb3dbe6d16fe"
        );
        assert_eq!(
            normalize_trace_id("abc").unwrap(),
            "00000000000000000000000000000abc"
        );
        assert_eq!(normalize_trace_id("xyz").unwrap_err().exit_code, 2);
        assert_eq!(normalize_trace_id("").unwrap_err().exit_code, 2);
        assert_eq!(normalize_trace_id("000").unwrap_err().exit_code, 2);
        assert!(normalize_trace_id(&"a".repeat(33)).is_err());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("raftctl put"), "raftctl%20put");
        assert_eq!(encode("raftkv.v1.KV/Put"), "raftkv.v1.KV%2FPut");
        assert_eq!(encode("a&b=c"), "a%26b%3Dc");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_clear_error() {
        // A port nobody listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let Err(e) = http_get(&base, "/api/v3/services", Duration::from_secs(2)).await else {
            panic!("expected an error");
        };
        assert_eq!(e.exit_code, 1);
        assert!(e.message.contains("unreachable"), "{}", e.message);
        assert!(e.message.contains(&base), "{}", e.message);
    }

    /// A real HTTP server on a socket, answering like the Jaeger query API.
    async fn fake_query_api() -> String {
        use axum::http::StatusCode;
        use axum::routing::get;
        let fixture = include_str!("../tests/testdata/trace_put_3nodes.json");
        let app = axum::Router::new()
            .route(
                "/api/v3/traces/{id}",
                get(move |axum::extract::Path(id): axum::extract::Path<String>| async move {
                    if id == "e1312fcd9b3882404af5bb3dbe6d16fe" {
                        (StatusCode::OK, fixture.to_string())
                    } else {
                        (
                            StatusCode::NOT_FOUND,
                            r#"{"error":{"httpCode":404,"message":"No traces found"}}"#.into(),
                        )
                    }
                }),
            )
            .route(
                "/api/v3/traces",
                get(|| async {
                    (
                        StatusCode::BAD_REQUEST,
                        r#"{"error":{"httpCode":400,"message":"malformed parameter query.start_time_min"}}"#,
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn query_api_answers_are_found_not_found_or_an_error_with_its_message() {
        let base = fake_query_api().await;
        let t = Duration::from_secs(5);
        let Reply::Ok(doc) = http_get(&base, "/api/v3/traces/e1312fcd9b3882404af5bb3dbe6d16fe", t)
            .await
            .unwrap()
        else {
            panic!("expected the trace");
        };
        assert_eq!(waterfall::parse_otlp(&doc).unwrap().len(), 14);
        assert!(matches!(
            http_get(&base, "/api/v3/traces/00000000000000000000000000000001", t).await,
            Ok(Reply::NotFound)
        ));
        let Err(e) = http_get(&base, "/api/v3/traces?x=1", t).await else {
            panic!("expected an error");
        };
        assert_eq!(e.exit_code, 1);
        assert!(e.message.contains("HTTP 400"), "{}", e.message);
        assert!(
            e.message
                .contains("malformed parameter query.start_time_min"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn only_http_urls_are_accepted() {
        let Err(e) = http_get("https://example.com", "/x", Duration::from_secs(1)).await else {
            panic!("expected an error");
        };
        assert_eq!(e.exit_code, 2);
        assert!(e.message.contains("only http://"), "{}", e.message);
    }
}
