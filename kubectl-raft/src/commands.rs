//! The patches the commands send: metadata annotations the operator already honours
//! (`raftkv.dev/paused`, `raftkv.dev/restartedAt`). Pure, so the tests pin the exact
//! bodies.

use raft_operator::crd::{PAUSED_ANNOTATION, RESTARTED_AT_ANNOTATION};
use serde_json::{Value, json};

/// `pause`: the operator takes no action on the cluster (status still updates).
pub fn pause_patch() -> Value {
    json!({"metadata": {"annotations": {PAUSED_ANNOTATION: "true"}}})
}

/// `resume`: removes the annotation (a merge patch deletes a key set to null).
pub fn resume_patch() -> Value {
    json!({"metadata": {"annotations": {PAUSED_ANNOTATION: null}}})
}

/// `restart`: a new `restartedAt` value rolls every pod, one at a time, leader last
/// (the operator copies it onto the pod template, like `kubectl rollout restart`).
pub fn restart_patch(now_rfc3339: &str) -> Value {
    json!({"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now_rfc3339}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_set_and_clear_the_operators_annotations() {
        assert_eq!(
            pause_patch().to_string(),
            r#"{"metadata":{"annotations":{"raftkv.dev/paused":"true"}}}"#
        );
        assert_eq!(
            resume_patch().to_string(),
            r#"{"metadata":{"annotations":{"raftkv.dev/paused":null}}}"#
        );
        assert_eq!(
            restart_patch("2026-12-07T18:00:00Z").to_string(),
            r#"{"metadata":{"annotations":{"raftkv.dev/restartedAt":"2026-12-07T18:00:00Z"}}}"#
        );
    }
}
