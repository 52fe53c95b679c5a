//! The client's error type: every failure carries the gRPC code and message the
//! server (or the transport) gave, and the endpoint that gave it.

use std::time::Duration;

use tonic::Code;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("no endpoints given (use --endpoints or RAFTCTL_ENDPOINTS)")]
    NoEndpoints,
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    /// A gRPC error that is final (e.g. NOT_FOUND, ABORTED), or the last one
    /// seen when retries ran out.
    #[error("{endpoint}: {message} ({code:?}{})", attempts_suffix(*.attempts))]
    Rpc {
        code: Code,
        message: String,
        endpoint: String,
        /// The `x-raftkv-leader` hint, if the server sent one.
        leader_hint: Option<String>,
        attempts: u32,
    },
    /// No answer within the per-attempt timeout. For writes the outcome is
    /// unknown: the write may or may not have been applied.
    #[error("{endpoint}: no answer within {}{}", millis(*.timeout), attempts_suffix(*.attempts))]
    Timeout {
        endpoint: String,
        timeout: Duration,
        attempts: u32,
    },
    /// `cluster_init` found a node it must not initialize (or could not reach one).
    #[error("cluster init refused: {0}")]
    InitRefused(String),
    #[error("no leader elected within {}: {last}", millis(*.waited))]
    NoLeader { waited: Duration, last: String },
}

/// A duration for people: rounded to milliseconds ("1s 982ms").
fn millis(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64))
}

fn attempts_suffix(attempts: u32) -> String {
    if attempts > 1 {
        format!(", after {attempts} attempts")
    } else {
        String::new()
    }
}

impl Error {
    /// The gRPC code this error stands for (client-side errors map to the
    /// nearest code).
    pub fn code(&self) -> Code {
        match self {
            Error::NoEndpoints | Error::InvalidEndpoint { .. } => Code::InvalidArgument,
            Error::Rpc { code, .. } => *code,
            Error::Timeout { .. } => Code::DeadlineExceeded,
            Error::InitRefused(_) => Code::FailedPrecondition,
            Error::NoLeader { .. } => Code::Unavailable,
        }
    }

    /// The server's message (or this error's text for client-side errors).
    pub fn message(&self) -> String {
        match self {
            Error::Rpc { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Code::NotFound
    }

    pub fn leader_hint(&self) -> Option<&str> {
        match self {
            Error::Rpc { leader_hint, .. } => leader_hint.as_deref(),
            _ => None,
        }
    }

    /// `leader_hint`: the `x-raftkv-leader` metadata of `status`, parsed by the
    /// caller (`endpoint::leader_hint`).
    pub(crate) fn from_status(
        status: &tonic::Status,
        endpoint: &str,
        attempts: u32,
        leader_hint: Option<String>,
    ) -> Self {
        Error::Rpc {
            code: status.code(),
            message: status_message(status),
            endpoint: endpoint.to_string(),
            leader_hint,
            attempts,
        }
    }
}

/// Turn a client error back into a gRPC status, e.g. for a node that forwarded
/// a request and passes the leader's answer on unchanged.
impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let mut status = tonic::Status::new(e.code(), e.message());
        if let Some(hint) = e.leader_hint()
            && let Ok(v) = hint.parse()
        {
            status
                .metadata_mut()
                .insert(raftkv_proto::LEADER_HINT_HEADER, v);
        }
        status
    }
}

/// The status message, with the transport error's causes appended when tonic
/// only says something generic like "transport error".
pub(crate) fn status_message(status: &tonic::Status) -> String {
    // A certificate problem says all there is to say (tls::describe).
    if let Some(h) = crate::tls::certificate_problem(status) {
        return h.message.clone();
    }
    let mut msg = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&text);
        }
        source = s.source();
    }
    if msg.is_empty() {
        format!("{:?}", status.code())
    } else {
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_error_names_endpoint_code_and_attempts() {
        let e = Error::Rpc {
            code: Code::Unavailable,
            message: "no leader".into(),
            endpoint: "127.0.0.1:7000".into(),
            leader_hint: None,
            attempts: 3,
        };
        assert_eq!(
            e.to_string(),
            "127.0.0.1:7000: no leader (Unavailable, after 3 attempts)"
        );
        assert_eq!(e.code(), Code::Unavailable);
        assert_eq!(e.message(), "no leader");
    }

    #[test]
    fn error_converts_back_to_status_with_leader_hint() {
        let e = Error::Rpc {
            code: Code::Unavailable,
            message: "not leader".into(),
            endpoint: "a:1".into(),
            leader_hint: Some("127.0.0.1:7002".into()),
            attempts: 1,
        };
        let s = tonic::Status::from(e);
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "not leader");
        assert_eq!(
            s.metadata()
                .get(raftkv_proto::LEADER_HINT_HEADER)
                .unwrap()
                .to_str()
                .unwrap(),
            "127.0.0.1:7002"
        );
    }

    #[test]
    fn timeout_maps_to_deadline_exceeded() {
        let e = Error::Timeout {
            endpoint: "a:1".into(),
            timeout: Duration::from_millis(500),
            attempts: 1,
        };
        assert_eq!(e.code(), Code::DeadlineExceeded);
        assert_eq!(e.to_string(), "a:1: no answer within 500ms");
        let e = Error::Timeout {
            endpoint: "a:1".into(),
            timeout: Duration::from_nanos(1_982_465_322),
            attempts: 4,
        };
        assert_eq!(
            e.to_string(),
            "a:1: no answer within 1s 982ms, after 4 attempts"
        );
    }
}
