//! Growing the members' volumes: `spec.storage.size` may increase (the CRD refuses a
//! decrease). A StatefulSet's `volumeClaimTemplates` are immutable, so the operator
//! leaves the template at the size it was created with and patches each member's
//! PersistentVolumeClaim instead; the storage class's driver then grows the volume
//! (and the kubelet the file system, possibly only at the next pod start).
//!
//! Pure: the desired size and the observed claims in, the claims to patch and the
//! progress to report out.

use crate::crd::StorageStatus;

/// A Kubernetes quantity (`1Gi`, `500M`, `1.5Gi`, `2e9`, `1024`) in bytes, rounded up.
/// `None` for what is not a quantity. (Bytes, not millibytes: a volume is sized in
/// whole bytes.)
pub fn quantity_bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let int = int.strip_prefix('+').unwrap_or(int);
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    // value = digits / 10^frac_len * multiplier
    let digits: u128 = format!("{int}{frac}").parse().ok()?;
    let (mul, div_exp): (u128, u32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "m" => (1, 3),
        "k" => (1_000, 0),
        "M" => (1_000_000, 0),
        "G" => (1_000_000_000, 0),
        "T" => (1_000_000_000_000, 0),
        "P" => (1_000_000_000_000_000, 0),
        "E" => (1_000_000_000_000_000_000, 0),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().ok()?;
            if exp >= 0 {
                (10u128.checked_pow(exp as u32)?, 0)
            } else {
                (1, exp.unsigned_abs())
            }
        }
        _ => return None,
    };
    let div = 10u128.checked_pow(frac.len() as u32 + div_exp)?;
    let scaled = digits.checked_mul(mul)?;
    Some(scaled.div_ceil(div))
}

/// One member's PersistentVolumeClaim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvcState {
    pub name: String,
    /// `spec.resources.requests.storage`.
    pub requested: Option<String>,
    /// `status.capacity.storage`: what the volume has now.
    pub capacity: Option<String>,
    /// A `Resizing`, `FileSystemResizePending` or `ControllerResizeError`-style
    /// condition, as `(type, message)`, if any.
    pub condition: Option<(String, String)>,
}

/// What to do about the volumes this reconcile.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Expansion {
    /// Claims whose request is below the desired size: patch them to it.
    pub patch: Vec<String>,
    /// Progress for `status.storage`; `None` when every claim already has the size.
    pub status: Option<StorageStatus>,
}

/// Which claims to grow to `desired`, and how far the growth is.
///
/// A claim counts as done when its capacity reached `desired`. A claim whose request
/// is already at or above `desired` is never patched (never shrunk, never patched twice).
pub fn expansion(desired: &str, pvcs: &[PvcState]) -> Expansion {
    let Some(want) = quantity_bytes(desired) else {
        return Expansion::default();
    };
    let bytes = |q: &Option<String>| q.as_deref().and_then(quantity_bytes);
    let patch: Vec<String> = pvcs
        .iter()
        .filter(|p| bytes(&p.requested).is_some_and(|r| r < want))
        .map(|p| p.name.clone())
        .collect();
    let done: Vec<&PvcState> = pvcs
        .iter()
        .filter(|p| bytes(&p.capacity).is_some_and(|c| c >= want))
        .collect();
    if done.len() == pvcs.len() {
        return Expansion {
            patch,
            status: None,
        };
    }
    let mut waiting: Vec<String> = pvcs
        .iter()
        .filter(|p| !done.iter().any(|d| d.name == p.name))
        .map(|p| match &p.condition {
            Some((type_, msg)) if !msg.is_empty() => format!("{} ({type_}: {msg})", p.name),
            Some((type_, _)) => format!("{} ({type_})", p.name),
            None => p.name.clone(),
        })
        .collect();
    waiting.sort();
    let message = format!(
        "{} of {} volumes have {desired}; waiting for {}",
        done.len(),
        pvcs.len(),
        waiting.join(", ")
    );
    Expansion {
        patch,
        status: Some(StorageStatus {
            size: desired.to_string(),
            resized: done.len() as i32,
            volumes: pvcs.len() as i32,
            message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_like_kubernetes() {
        for (q, bytes) in [
            ("1Gi", 1u128 << 30),
            ("64Mi", 64 << 20),
            ("1.5Gi", 3 << 29),
            ("2G", 2_000_000_000),
            ("1024", 1024),
            ("2e3", 2000),
            ("1k", 1000),
            ("0.5Ki", 512),
            ("1500m", 2), // rounded up to whole bytes
        ] {
            assert_eq!(quantity_bytes(q), Some(bytes), "{q}");
        }
        for bad in ["", "Gi", "1GB", "one", "1.2.3Gi", "-1Gi"] {
            assert_eq!(quantity_bytes(bad), None, "{bad}");
        }
        assert!(quantity_bytes("2Gi") > quantity_bytes("2G"));
    }

    fn pvc(name: &str, requested: &str, capacity: &str) -> PvcState {
        PvcState {
            name: name.into(),
            requested: Some(requested.into()),
            capacity: Some(capacity.into()),
            condition: None,
        }
    }

    #[test]
    fn every_smaller_claim_is_patched_and_progress_reported() {
        let pvcs = [
            pvc("data-demo-0", "1Gi", "1Gi"),
            pvc("data-demo-1", "2Gi", "1Gi"),
            pvc("data-demo-2", "2Gi", "2Gi"),
        ];
        let mut resizing = pvcs[1].clone();
        resizing.condition = Some(("FileSystemResizePending".into(), String::new()));
        let e = expansion("2Gi", &[pvcs[0].clone(), resizing, pvcs[2].clone()]);
        assert_eq!(e.patch, ["data-demo-0"], "the others already request 2Gi");
        let s = e.status.unwrap();
        assert_eq!((s.resized, s.volumes), (1, 3));
        assert_eq!(
            s.message,
            "1 of 3 volumes have 2Gi; waiting for data-demo-0, data-demo-1 (FileSystemResizePending)"
        );
    }

    #[test]
    fn nothing_to_do_once_every_volume_has_the_size_and_never_a_shrink() {
        let pvcs = [
            pvc("data-demo-0", "2Gi", "2Gi"),
            pvc("data-demo-1", "3Gi", "3Gi"),
        ];
        assert_eq!(expansion("2Gi", &pvcs), Expansion::default());
        // Equal sizes written differently are equal.
        assert_eq!(
            expansion("2048Mi", &[pvc("d", "2Gi", "2Gi")]),
            Expansion::default()
        );
    }

    #[test]
    fn a_claim_not_yet_bound_is_patched_but_not_counted_done() {
        let pending = PvcState {
            name: "data-demo-3".into(),
            requested: Some("1Gi".into()),
            capacity: None,
            condition: None,
        };
        let e = expansion("2Gi", &[pending]);
        assert_eq!(e.patch, ["data-demo-3"]);
        assert_eq!(e.status.unwrap().resized, 0);
    }
}
