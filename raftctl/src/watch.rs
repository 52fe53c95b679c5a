//! `watch [PREFIX]`: one line per change, as the member it attaches to applies
//! it (the `KV/Watch` stream; semantics in docs/design.md "Watch").
//!
//! It attaches to the first endpoint that accepts the watch and says so on
//! stderr (`watching ... after revision N`: every change after N follows). A
//! stream that ends (the member fell behind, stopped, installed a snapshot)
//! ends the command with exit code 1 and the member's reason: resuming
//! silently from another member could skip or repeat changes.

use std::io::Write;

use raftkv_client::RaftClient;
use raftkv_proto::v1::{self, kv_client::KvClient, watch_event::EventType};
use serde_json::json;
use tonic::Code;

use super::CtlError;
use super::output::{OutputFormat, cell_bytes, header_json, kv_json, quote_key};

/// One event message is at most one applied entry's changes: far below this.
const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchArgs {
    pub prefix: String,
    /// PREFIX is an exact key.
    pub key: bool,
    /// 0: from now.
    pub from_revision: u64,
    /// Stop after this many events (exit 0).
    pub count: Option<u64>,
}

impl WatchArgs {
    pub fn request(&self) -> v1::WatchRequest {
        let (key, prefix) = if self.key {
            (self.prefix.clone().into_bytes(), Vec::new())
        } else {
            (Vec::new(), self.prefix.clone().into_bytes())
        };
        v1::WatchRequest {
            key,
            prefix,
            start_revision: self.from_revision,
        }
    }
}

/// One event's line: `PUT <revision> <key> <value>` or `DELETE <revision>
/// <key>` (escaped like `range` cells; binary as `base64:`), or one JSON object.
pub fn render_event(ev: &v1::WatchEvent, out: OutputFormat) -> String {
    let kv = ev.kv.clone().unwrap_or_default();
    let kind = match EventType::try_from(ev.r#type) {
        Ok(EventType::Put) => "PUT",
        Ok(EventType::Delete) => "DELETE",
        Err(_) => "UNKNOWN",
    };
    match out {
        OutputFormat::Table => {
            let key = cell_bytes(&kv.key, usize::MAX);
            if kind == "PUT" {
                format!(
                    "PUT {} {key} {}\n",
                    kv.mod_revision,
                    cell_bytes(&kv.value, usize::MAX)
                )
            } else {
                format!("{kind} {} {key}\n", kv.mod_revision)
            }
        }
        OutputFormat::Json => {
            let mut v = json!({"type": kind, "revision": kv.mod_revision});
            let kvj = kv_json(&kv);
            for (k, val) in kvj.as_object().into_iter().flatten() {
                // A delete has no value, no version.
                if kind == "DELETE" && !k.starts_with("key") {
                    continue;
                }
                v[k] = val.clone();
            }
            // One object per line: scripts read the stream line by line.
            format!("{v}\n")
        }
    }
}

/// What was watched, for the messages.
fn what(args: &WatchArgs) -> String {
    match (args.key, args.prefix.is_empty()) {
        (true, _) => format!("key {}", quote_key(args.prefix.as_bytes())),
        (false, true) => "every key".to_string(),
        (false, false) => format!("prefix {}", quote_key(args.prefix.as_bytes())),
    }
}

pub async fn run(c: &RaftClient, args: WatchArgs, out: OutputFormat) -> Result<(), CtlError> {
    let mut refused = Vec::new();
    let mut opened = None;
    for ep in c.endpoints() {
        let one = RaftClient::connect(vec![ep.clone()], c.options().clone())?;
        let mut kv = KvClient::new(one.channel()).max_decoding_message_size(MESSAGE_BYTES_MAX);
        match kv.watch(args.request()).await {
            Ok(s) => {
                opened = Some((ep, s.into_inner()));
                break;
            }
            // The request itself is wrong: every member would say the same.
            Err(s) if matches!(s.code(), Code::InvalidArgument | Code::OutOfRange) => {
                return Err(CtlError::failed(format!(
                    "watch refused by {ep}: {}",
                    s.message()
                )));
            }
            Err(s) => refused.push(format!("{ep}: {}", s.message())),
        }
    }
    let Some((ep, mut stream)) = opened else {
        return Err(CtlError::failed(format!(
            "no endpoint accepted the watch: {}",
            refused.join("; ")
        )));
    };
    let broke = |s: tonic::Status| CtlError::failed(format!("watch on {ep}: {}", s.message()));
    let first = stream
        .message()
        .await
        .map_err(broke)?
        .ok_or_else(|| CtlError::failed(format!("watch on {ep}: the stream ended at once")))?;
    let h = header_json(first.header.as_ref());
    eprintln!(
        "watching {} on node {} ({ep}) after revision {}",
        what(&args),
        h["node_id"],
        h["revision"]
    );
    let mut seen = 0u64;
    loop {
        if args.count.is_some_and(|n| seen >= n) {
            return Ok(());
        }
        let Some(msg) = stream.message().await.map_err(broke)? else {
            return Err(CtlError::failed(format!(
                "watch on {ep}: the member closed the stream"
            )));
        };
        let mut lines = String::new();
        for ev in &msg.events {
            if args.count.is_some_and(|n| seen >= n) {
                break;
            }
            lines += &render_event(ev, out);
            seen += 1;
        }
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(lines.as_bytes())
            .and_then(|_| stdout.flush())
            .map_err(|e| CtlError::failed(format!("writing output: {e}")))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventType, key: &[u8], value: &[u8], rev: u64) -> v1::WatchEvent {
        v1::WatchEvent {
            r#type: kind as i32,
            kv: Some(v1::KeyValue {
                key: key.to_vec(),
                value: value.to_vec(),
                create_revision: rev,
                mod_revision: rev,
                version: 1,
            }),
        }
    }

    #[test]
    fn one_line_per_event_for_people_and_for_scripts() {
        let put = ev(EventType::Put, b"p/a", b"hello world", 12);
        let del = ev(EventType::Delete, b"p/a", b"", 13);
        assert_eq!(
            render_event(&put, OutputFormat::Table),
            "PUT 12 p/a hello world\n"
        );
        assert_eq!(render_event(&del, OutputFormat::Table), "DELETE 13 p/a\n");
        let j: serde_json::Value =
            serde_json::from_str(&render_event(&put, OutputFormat::Json)).unwrap();
        assert_eq!(j["type"], "PUT");
        assert_eq!(j["revision"], 12);
        assert_eq!(j["key"], "p/a");
        assert_eq!(j["value"], "hello world");
        let line = render_event(&del, OutputFormat::Json);
        assert_eq!(line.lines().count(), 1);
        let j: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(j["type"], "DELETE");
        assert!(j.get("value").is_none(), "{j}");
        let bin = ev(EventType::Put, b"k", &[0xff, 0], 3);
        assert_eq!(
            render_event(&bin, OutputFormat::Table),
            "PUT 3 k base64:/wA=\n"
        );
    }

    #[test]
    fn the_request_names_a_prefix_or_with_key_an_exact_key() {
        let mut a = WatchArgs {
            prefix: "p/".into(),
            key: false,
            from_revision: 0,
            count: None,
        };
        let r = a.request();
        assert_eq!(
            (r.key.as_slice(), r.prefix.as_slice()),
            (&b""[..], &b"p/"[..])
        );
        a.key = true;
        a.from_revision = 9;
        let r = a.request();
        assert_eq!(
            (r.key.as_slice(), r.prefix.as_slice()),
            (&b"p/"[..], &b""[..])
        );
        assert_eq!(r.start_revision, 9);
        assert_eq!(what(&a), "key \"p/\"");
    }
}
