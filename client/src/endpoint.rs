//! Endpoint addresses: parsing the user's list, and the leader hint servers send.

use super::error::{Error, Result};

/// Normalize a user-given endpoint to `host:port`. Accepts `host:port`,
/// `http://host:port[/]` and `https://host:port[/]` (whether TLS is used is
/// the client's configuration: see [`wants_tls`]); refuses anything without a port.
pub fn normalize(endpoint: &str) -> Result<String> {
    let invalid = |reason: &str| Error::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.into(),
    };
    let s = endpoint.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s)
        .trim_end_matches('/');
    if s.is_empty() {
        return Err(invalid("empty address"));
    }
    if s.contains('/') || s.contains(char::is_whitespace) {
        return Err(invalid("expected host:port"));
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| invalid("missing port (expected host:port)"))?;
    if host.is_empty() {
        return Err(invalid("missing host (expected host:port)"));
    }
    if port.parse::<u16>().is_err() {
        return Err(invalid("port is not a number between 0 and 65535"));
    }
    Ok(s.to_string())
}

/// Whether a user-given endpoint list names `https://` for any endpoint
/// (a client configured without a CA must refuse it rather than speak
/// plaintext to it).
pub fn wants_tls(list: &str) -> bool {
    list.split(',').any(|s| s.trim().starts_with("https://"))
}

/// Parse a comma-separated endpoint list (as in `--endpoints` / `RAFTCTL_ENDPOINTS`).
/// Empty items are ignored; duplicates are dropped, keeping the first.
pub fn parse_list(list: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for item in list.split(',').filter(|s| !s.trim().is_empty()) {
        let ep = normalize(item)?;
        if !out.contains(&ep) {
            out.push(ep);
        }
    }
    if out.is_empty() {
        return Err(Error::NoEndpoints);
    }
    Ok(out)
}

/// The URI tonic connects to for a normalized `host:port`.
pub(crate) fn uri(addr: &str) -> String {
    format!("http://{addr}")
}

/// The leader's client address from an error's `x-raftkv-leader` metadata, if
/// present and well formed.
pub fn leader_hint(status: &tonic::Status) -> Option<String> {
    let value = status.metadata().get(raftkv_proto::LEADER_HINT_HEADER)?;
    normalize(value.to_str().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_accepts_host_port_and_http_urls() {
        assert_eq!(normalize("127.0.0.1:7000").unwrap(), "127.0.0.1:7000");
        assert_eq!(
            normalize(" http://node-0.raft:7000/ ").unwrap(),
            "node-0.raft:7000"
        );
        assert_eq!(normalize("[::1]:7000").unwrap(), "[::1]:7000");
        assert_eq!(normalize("https://node-0:7000/").unwrap(), "node-0:7000");
        assert!(wants_tls("a:1, https://b:2"));
        assert!(!wants_tls("a:1,http://b:2"));
    }

    #[test]
    fn normalize_refuses_bad_addresses() {
        for bad in [
            "",
            "localhost",
            ":7000",
            "host:",
            "host:99999",
            "https://a",
            "a:1/x",
        ] {
            let err = normalize(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidEndpoint { .. }),
                "{bad:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn parse_list_splits_trims_and_dedups() {
        assert_eq!(
            parse_list("a:1, b:2,,a:1").unwrap(),
            vec!["a:1".to_string(), "b:2".to_string()]
        );
        assert!(matches!(parse_list(" , "), Err(Error::NoEndpoints)));
        assert!(matches!(
            parse_list("a:1,b"),
            Err(Error::InvalidEndpoint { .. })
        ));
    }

    #[test]
    fn leader_hint_is_read_from_metadata() {
        let mut s = tonic::Status::unavailable("not leader");
        assert_eq!(leader_hint(&s), None);
        s.metadata_mut().insert(
            raftkv_proto::LEADER_HINT_HEADER,
            "127.0.0.1:7002".parse().unwrap(),
        );
        assert_eq!(leader_hint(&s).as_deref(), Some("127.0.0.1:7002"));
        let mut bad = tonic::Status::unavailable("no leader");
        bad.metadata_mut()
            .insert(raftkv_proto::LEADER_HINT_HEADER, "".parse().unwrap());
        assert_eq!(leader_hint(&bad), None);
    }
}
