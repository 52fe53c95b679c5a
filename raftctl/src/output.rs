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
    fn roles_have_names() {
        assert_eq!(role_name(v1::Role::Leader as i32), "leader");
        assert_eq!(role_name(99), "unknown");
    }
}
