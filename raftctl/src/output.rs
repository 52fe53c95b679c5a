//! Output formatting: kubectl-style tables and JSON documents. Pure functions.

use base64::Engine;
use raftkv_proto::v1;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human output: raw values for `get`, tables for `status` and `range`.
    Table,
    Json,
}

/// Columns left-aligned, separated by three spaces, headers as given.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 < widths.len() {
                l.push_str(&format!("{c:<w$}   ", w = widths[i]));
            } else {
                l.push_str(c);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Bytes as a JSON string: the UTF-8 text if valid, else base64.
/// Returns the string and its encoding name (`utf8` or `base64`).
pub fn encode_bytes(b: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(b) {
        Ok(s) => (s.to_string(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(b),
            "base64",
        ),
    }
}

/// Bytes for a table cell: text shortened to `max` chars, binary as `base64:...`.
pub fn cell_bytes(b: &[u8], max: usize) -> String {
    let (s, enc) = encode_bytes(b);
    let s = if enc == "base64" {
        format!("base64:{s}")
    } else {
        s.escape_debug().to_string()
    };
    if s.chars().count() > max {
        format!(
            "{}...",
            s.chars().take(max.saturating_sub(3)).collect::<String>()
        )
    } else {
        s
    }
}

/// A key as it appears in messages: quoted, escaped, lossy for binary.
pub fn quote_key(key: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(key))
}

pub fn kv_json(kv: &v1::KeyValue) -> Value {
    let (key, key_encoding) = encode_bytes(&kv.key);
    let (value, value_encoding) = encode_bytes(&kv.value);
    let mut v = json!({
        "key": key,
        "value": value,
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
    });
    if key_encoding != "utf8" {
        v["key_encoding"] = json!(key_encoding);
    }
    if value_encoding != "utf8" {
        v["value_encoding"] = json!(value_encoding);
    }
    v
}

pub fn header_json(h: Option<&v1::ResponseHeader>) -> Value {
    let h = h.cloned().unwrap_or_default();
    json!({
        "node_id": h.node_id,
        "revision": h.revision,
        "applied_index": h.applied_index,
        "leader_id": h.leader_id,
        "term": h.term,
        "cluster_id": h.cluster_id,
    })
}

pub fn role_name(role: i32) -> &'static str {
    match v1::Role::try_from(role).unwrap_or(v1::Role::Unspecified) {
        v1::Role::Unspecified => "unknown",
        v1::Role::Uninitialized => "uninitialized",
        v1::Role::Leader => "leader",
        v1::Role::Follower => "follower",
        v1::Role::Candidate => "candidate",
        v1::Role::Learner => "learner",
        v1::Role::Shutdown => "shutdown",
    }
}

/// A verified backup file as a JSON document (`snapshot save` and `inspect`).
pub fn backup_json(file: &str, s: &raftkv_backup::Summary) -> Value {
    let h = &s.header;
    json!({
        "file": file,
        "format_version": s.format_version,
        "checksum": format!("crc32c:{:08x}", s.checksum),
        "verified": true,
        "bytes": s.bytes,
        "cluster_id": h.cluster_id,
        "node_id": h.node_id,
        "created_at": rfc3339_ms(h.created_at_unix_ms),
        "created_at_unix_ms": h.created_at_unix_ms,
        "revision": h.revision,
        "log_index": h.log_index,
        "log_term": h.log_term,
        "keys": h.keys,
        "membership": {
            "configs": h.membership.configs,
            "members": h.membership.members.iter().map(|m| json!({
                "id": m.node_id,
                "name": m.name,
                "role": if m.voter { "voter" } else { "learner" },
                "client_addr": m.client_addr,
                "peer_addr": m.peer_addr,
            })).collect::<Vec<_>>(),
        },
        "server_version": h.server_version,
    })
}

/// A verified backup file for people: the header as FIELD/VALUE rows, then
/// the members it was taken from.
pub fn backup_table(file: &str, s: &raftkv_backup::Summary) -> String {
    let h = &s.header;
    let configs: Vec<String> = h
        .membership
        .configs
        .iter()
        .map(|c| c.iter().map(u64::to_string).collect::<Vec<_>>().join(","))
        .collect();
    let rows: Vec<Vec<String>> = [
        ("file", file.to_string()),
        ("format version", s.format_version.to_string()),
        ("checksum", format!("crc32c:{:08x} (verified)", s.checksum)),
        ("size", format!("{} bytes", s.bytes)),
        ("cluster id", h.cluster_id.clone()),
        ("revision", h.revision.to_string()),
        ("log index", h.log_index.to_string()),
        ("log term", h.log_term.to_string()),
        ("keys", h.keys.to_string()),
        ("voters", configs.join(" -> ")),
        (
            "taken",
            format!("{} by node {}", rfc3339_ms(h.created_at_unix_ms), h.node_id),
        ),
        ("server version", h.server_version.clone()),
    ]
    .into_iter()
    .map(|(f, v)| vec![f.to_string(), v])
    .collect();
    let members: Vec<Vec<String>> = h
        .membership
        .members
        .iter()
        .map(|m| {
            vec![
                m.node_id.to_string(),
                m.name.clone(),
                if m.voter { "voter" } else { "learner" }.to_string(),
                m.client_addr.clone(),
            ]
        })
        .collect();
    format!(
        "{}
{}",
        table(&["FIELD", "VALUE"], &rows),
        table(&["MEMBER", "NAME", "ROLE", "CLIENT"], &members)
    )
}

fn rfc3339_ms(unix_ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Pretty JSON plus a newline.
pub fn json_doc(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("a serde_json::Value always serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["ID", "ROLE"],
            &[
                vec!["1".into(), "leader".into()],
                vec!["12345".into(), "follower".into()],
            ],
        );
        assert_eq!(t, "ID      ROLE\n1       leader\n12345   follower\n");
    }

    #[test]
    fn table_trims_trailing_space_of_empty_last_cells() {
        let t = table(&["A", "B"], &[vec!["x".into(), "".into()]]);
        assert_eq!(t, "A   B\nx\n");
    }

    #[test]
    fn bytes_are_utf8_or_base64() {
        assert_eq!(encode_bytes(b"hello"), ("hello".to_string(), "utf8"));
        assert_eq!(encode_bytes(&[0xff, 0x00]), ("/wA=".to_string(), "base64"));
        assert_eq!(cell_bytes(&[0xff, 0x00], 40), "base64:/wA=");
        assert_eq!(cell_bytes(b"a\nb", 40), "a\\nb");
        assert_eq!(cell_bytes(b"abcdefghij", 6), "abc...");
    }

    #[test]
    fn kv_json_marks_binary_values() {
        let kv = v1::KeyValue {
            key: b"k".to_vec(),
            value: vec![0xff],
            create_revision: 3,
            mod_revision: 5,
            version: 2,
        };
        let v = kv_json(&kv);
        assert_eq!(v["key"], "k");
        assert_eq!(v["value"], "/w==");
        assert_eq!(v["value_encoding"], "base64");
        assert!(v.get("key_encoding").is_none());
        assert_eq!(v["mod_revision"], 5);
    }

    #[test]
    fn keys_are_quoted_in_messages() {
        assert_eq!(quote_key(b"x"), "\"x\"");
        assert_eq!(quote_key(b"a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn a_backup_summary_prints_its_header() {
        let s = raftkv_backup::Summary {
            header: raftkv_backup::Header {
                cluster_id: "c1".into(),
                node_id: 9,
                revision: 12,
                log_index: 40,
                log_term: 2,
                keys: 3,
                membership: raftkv_backup::Membership {
                    configs: vec![vec![9, 10]],
                    members: vec![raftkv_backup::Member {
                        node_id: 9,
                        name: "node-0".into(),
                        voter: true,
                        ..Default::default()
                    }],
                },
                ..Default::default()
            },
            format_version: 1,
            bytes: 100,
            checksum: 0xabc,
            frames: 1,
        };
        let j = backup_json("f.rkv", &s);
        assert_eq!(j["checksum"], "crc32c:00000abc");
        assert_eq!(j["revision"], 12);
        assert_eq!(j["membership"]["members"][0]["role"], "voter");
        assert_eq!(j["created_at"], "1970-01-01T00:00:00.000Z");
        let t = backup_table("f.rkv", &s);
        assert!(t.starts_with("FIELD"), "{t}");
        assert!(t.contains("voters           9,10"), "{t}");
        assert!(t.contains("crc32c:00000abc (verified)"), "{t}");
        assert!(t.contains("9        node-0   voter"), "{t}");
    }

    #[test]
    fn roles_have_names() {
        assert_eq!(role_name(v1::Role::Leader as i32), "leader");
        assert_eq!(role_name(99), "unknown");
    }
}
