//! `put`, `get`, `del`, `cas`, `range`.

use std::io::{IsTerminal, Read, Write};

use raftkv_proto::v1;
use serde_json::json;
use tonic::Code;

use super::CtlError;
use super::output::{self, OutputFormat, header_json, json_doc, kv_json, quote_key};
use raftkv_client::{self as client, Expect, RaftClient, ReadOptions};

/// Widest value shown in a `range` table cell.
const CELL_VALUE_CHARS_MAX: usize = 60;

fn print(s: &str) -> Result<(), CtlError> {
    write_out(s.as_bytes())
}

fn write_out(b: &[u8]) -> Result<(), CtlError> {
    let mut out = std::io::stdout().lock();
    out.write_all(b)
        .and_then(|_| out.flush())
        .map_err(|e| CtlError::failed(format!("writing output: {e}")))
}

pub async fn put(
    c: &RaftClient,
    key: String,
    value: Option<String>,
    out: OutputFormat,
) -> Result<(), CtlError> {
    let value = match value {
        Some(v) => v.into_bytes(),
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("reading the value from stdin (end with Ctrl-D)");
            }
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| CtlError::failed(format!("reading the value from stdin: {e}")))?;
            buf
        }
    };
    let resp = c.put(key, value).await.map_err(write_error)?;
    print(&render_write(resp.header.as_ref(), resp.kv.as_ref(), out))
}

/// `OK`, or the header and the written key as JSON.
pub fn render_write(
    header: Option<&v1::ResponseHeader>,
    kv: Option<&v1::KeyValue>,
    out: OutputFormat,
) -> String {
    match out {
        OutputFormat::Table => "OK\n".to_string(),
        OutputFormat::Json => {
            let mut doc = json!({ "header": header_json(header) });
            if let Some(kv) = kv {
                doc["kv"] = kv_json(kv);
            }
            json_doc(&doc)
        }
    }
}

pub async fn get(
    c: &RaftClient,
    key: String,
    read: ReadOptions,
    out: OutputFormat,
) -> Result<(), CtlError> {
    let resp = c
        .get(key.as_bytes(), read)
        .await
        .map_err(|e| not_found_or(e, key.as_bytes()))?;
    let Some(kv) = resp.kv.as_ref() else {
        return Err(CtlError::failed(format!(
            "key {} not found",
            quote_key(key.as_bytes())
        )));
    };
    write_out(&render_get(resp.header.as_ref(), kv, out))
}

/// The raw value plus a newline, or the key, value and revisions as JSON.
pub fn render_get(
    header: Option<&v1::ResponseHeader>,
    kv: &v1::KeyValue,
    out: OutputFormat,
) -> Vec<u8> {
    match out {
        OutputFormat::Table => {
            let mut v = kv.value.clone();
            v.push(b'\n');
            v
        }
        OutputFormat::Json => {
            let mut doc = kv_json(kv);
            doc["header"] = header_json(header);
            json_doc(&doc).into_bytes()
        }
    }
}

/// A failed write; says so when the write may have been applied anyway.
fn write_error(e: client::Error) -> CtlError {
    let mut err = CtlError::from(e.clone());
    if matches!(
        e.code(),
        Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    ) {
        err.message
            .push_str("; the write may or may not have been applied");
    }
    err
}

fn not_found_or(e: client::Error, key: &[u8]) -> CtlError {
    if e.code() == Code::NotFound {
        CtlError::failed(format!("key {} not found", quote_key(key)))
    } else {
        e.into()
    }
}

pub async fn del(c: &RaftClient, key: String, out: OutputFormat) -> Result<(), CtlError> {
    let resp = c.delete(key.as_bytes()).await.map_err(write_error)?;
    let text = match out {
        OutputFormat::Table if resp.deleted => "OK\n".to_string(),
        OutputFormat::Table => format!("OK (key {} did not exist)\n", quote_key(key.as_bytes())),
        OutputFormat::Json => json_doc(
            &json!({ "deleted": resp.deleted, "header": header_json(resp.header.as_ref()) }),
        ),
    };
    print(&text)
}

pub async fn cas(
    c: &RaftClient,
    key: String,
    new: String,
    expect: Expect,
    out: OutputFormat,
) -> Result<(), CtlError> {
    match c.cas(key.as_bytes(), new, expect).await {
        Ok(resp) => print(&render_write(resp.header.as_ref(), resp.kv.as_ref(), out)),
        Err(e) if e.code() == Code::Aborted => {
            let msg = e.message();
            let reason = msg
                .strip_prefix("compare failed: ")
                .unwrap_or(&msg)
                .to_string();
            // The server names the current state; if it ever does not, look it up
            // so the user can retry with the right expectation.
            let current = if reason.contains("mod_revision") || reason.contains("does not exist") {
                String::new()
            } else {
                match c.get(key.as_bytes(), ReadOptions::linearizable()).await {
                    Ok(r) => match r.kv {
                        Some(kv) => format!("; current mod_revision is {}", kv.mod_revision),
                        None => "; the key does not exist".to_string(),
                    },
                    Err(g) if g.is_not_found() => "; the key does not exist".to_string(),
                    Err(g) => format!("; current state unknown: {g}"),
                }
            };
            Err(CtlError::failed(format!(
                "compare-and-swap on key {} failed: {reason}{current}",
                quote_key(key.as_bytes())
            )))
        }
        Err(e) => Err(write_error(e)),
    }
}

pub async fn range(
    c: &RaftClient,
    prefix: String,
    from: Option<String>,
    to: Option<String>,
    limit: u32,
    read: ReadOptions,
    out: OutputFormat,
) -> Result<(), CtlError> {
    let req = match from {
        Some(start) => v1::RangeRequest {
            start: start.into_bytes(),
            end: to.unwrap_or_default().into_bytes(),
            limit,
            read: Some(read.into()),
            ..Default::default()
        },
        None => v1::RangeRequest {
            prefix: prefix.into_bytes(),
            limit,
            read: Some(read.into()),
            ..Default::default()
        },
    };
    let resp = c.range(req).await?;
    print(&render_range(&resp, out))?;
    if resp.more && out == OutputFormat::Table {
        eprintln!("(more keys follow; raise --limit to see them)");
    }
    Ok(())
}

pub fn render_range(resp: &v1::RangeResponse, out: OutputFormat) -> String {
    match out {
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = resp
                .kvs
                .iter()
                .map(|kv| {
                    vec![
                        output::cell_bytes(&kv.key, CELL_VALUE_CHARS_MAX),
                        output::cell_bytes(&kv.value, CELL_VALUE_CHARS_MAX),
                        kv.create_revision.to_string(),
                        kv.mod_revision.to_string(),
                        kv.version.to_string(),
                    ]
                })
                .collect();
            output::table(&["KEY", "VALUE", "CREATE_REV", "MOD_REV", "VERSION"], &rows)
        }
        OutputFormat::Json => json_doc(&json!({
            "header": header_json(resp.header.as_ref()),
            "kvs": resp.kvs.iter().map(kv_json).collect::<Vec<_>>(),
            "count": resp.kvs.len(),
            "more": resp.more,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str, rev: u64) -> v1::KeyValue {
        v1::KeyValue {
            key: k.into(),
            value: v.into(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
        }
    }

    #[test]
    fn get_prints_the_raw_value_or_json() {
        let h = v1::ResponseHeader {
            node_id: 7,
            revision: 9,
            ..Default::default()
        };
        assert_eq!(
            render_get(Some(&h), &kv("k", "hello", 3), OutputFormat::Table),
            b"hello\n"
        );
        let doc: serde_json::Value = serde_json::from_slice(&render_get(
            Some(&h),
            &kv("k", "hello", 3),
            OutputFormat::Json,
        ))
        .unwrap();
        assert_eq!(doc["value"], "hello");
        assert_eq!(doc["mod_revision"], 3);
        assert_eq!(doc["header"]["node_id"], 7);
        assert_eq!(doc["header"]["revision"], 9);
    }

    #[test]
    fn put_prints_ok_or_the_header() {
        assert_eq!(render_write(None, None, OutputFormat::Table), "OK\n");
        let h = v1::ResponseHeader {
            revision: 4,
            ..Default::default()
        };
        let doc: serde_json::Value = serde_json::from_str(&render_write(
            Some(&h),
            Some(&kv("k", "v", 4)),
            OutputFormat::Json,
        ))
        .unwrap();
        assert_eq!(doc["header"]["revision"], 4);
        assert_eq!(doc["kv"]["key"], "k");
    }

    #[test]
    fn range_renders_a_table_and_json() {
        let resp = v1::RangeResponse {
            header: None,
            kvs: vec![kv("a/1", "x", 2), kv("a/2", "y", 3)],
            more: true,
        };
        let t = render_range(&resp, OutputFormat::Table);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("KEY"));
        assert!(lines[2].starts_with("a/2   y"));
        let doc: serde_json::Value =
            serde_json::from_str(&render_range(&resp, OutputFormat::Json)).unwrap();
        assert_eq!(doc["count"], 2);
        assert_eq!(doc["more"], true);
        assert_eq!(doc["kvs"][1]["value"], "y");
    }

    #[test]
    fn an_unknown_write_outcome_is_said() {
        let e = |code| client::Error::Rpc {
            code,
            message: "connection closed".into(),
            endpoint: "a:1".into(),
            leader_hint: None,
            attempts: 1,
        };
        assert!(
            write_error(e(Code::Cancelled))
                .message
                .ends_with("may or may not have been applied")
        );
        assert!(
            !write_error(e(Code::InvalidArgument))
                .message
                .contains("may or may not")
        );
    }

    #[test]
    fn not_found_names_the_key() {
        let e = client::Error::Rpc {
            code: Code::NotFound,
            message: "key not found".into(),
            endpoint: "a:1".into(),
            leader_hint: None,
            attempts: 1,
        };
        assert_eq!(not_found_or(e, b"x").message, "key \"x\" not found");
    }
}
