//! Placement of the voters over zones: does losing one zone lose the quorum?
//!
//! Pure: the zone of the node each voter runs on in, a verdict out. The operator
//! shows it as the `ZoneRisk` condition and a Warning Event when a zone outage would
//! take the cluster down (for an odd number of voters: one zone holds a quorum).
//! The pods' default topology spread prefers distinct zones but never refuses to
//! schedule, so this is where a lopsided placement becomes visible.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::PlannedEvent;
use super::disruption::quorum;
use super::observed::{ClusterView, Set};

/// Condition type: `True` when one zone's outage loses the quorum.
pub const ZONE_RISK: &str = "ZoneRisk";
/// Node label naming its zone (well-known, set by cloud providers).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The verdict on where the voters run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Cannot tell: why (nodes unreadable, voters not scheduled, no zone labels).
    Unknown(String),
    /// Losing `zone` (which runs `in_zone` of `voters` voters) loses the quorum.
    AtRisk {
        zone: String,
        in_zone: usize,
        voters: usize,
    },
    /// Every single zone can be lost: the voters run in `zones` zones.
    Spread { zones: usize },
}

/// `zones`: for each voter, the zone of its node (`None`: not known, e.g. not
/// scheduled or the node has no zone label). Judged only when every voter's zone is
/// known: a voter in an unknown place may share a zone with any other.
pub fn judge(zones: &[Option<&str>]) -> Placement {
    if zones.is_empty() {
        return Placement::Unknown("no voters".into());
    }
    let unknown = zones.iter().filter(|z| z.is_none()).count();
    if unknown > 0 {
        return Placement::Unknown(format!(
            "the zone of {unknown} of {} voters is unknown (pod not scheduled, or its node has no {ZONE_LABEL} label)",
            zones.len()
        ));
    }
    let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    for z in zones.iter().flatten() {
        *per_zone.entry(z).or_default() += 1;
    }
    let voters = zones.len();
    // The zone whose loss leaves the fewest voters; ties: the first by name.
    let (zone, in_zone) = per_zone
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(z, n)| (z.to_string(), *n))
        .expect("at least one voter");
    if voters - in_zone < quorum(voters) {
        Placement::AtRisk {
            zone,
            in_zone,
            voters,
        }
    } else {
        Placement::Spread {
            zones: per_zone.len(),
        }
    }
}

/// The verdict of this reconcile: the voters of the leader's membership and the zones
/// of their pods' nodes (`Observed::nodes_unreadable` when nodes cannot be read).
pub fn placement(view: &ClusterView) -> Placement {
    if let Some(why) = &view.obs.nodes_unreadable {
        return Placement::Unknown(format!("cannot read nodes: {why}"));
    }
    let Some(membership) = view.membership else {
        return Placement::Unknown("no leader reports the membership".into());
    };
    let zones: Vec<Option<&str>> = membership
        .voter_ids()
        .into_iter()
        .map(|id| {
            view.pod_of(id)
                .filter(|p| p.set == Set::Voters)
                .and_then(|p| p.zone.as_deref())
        })
        .collect();
    judge(&zones)
}

/// The `ZoneRisk` condition (unstamped) and, when the risk is new (the previous
/// condition was not `True`), a Warning Event.
pub fn condition(p: &Placement, previous: &[Condition]) -> (Condition, Option<PlannedEvent>) {
    let (status, reason, message) = match p {
        Placement::Unknown(why) => ("Unknown", "PlacementUnknown", why.clone()),
        Placement::AtRisk {
            zone,
            in_zone,
            voters,
        } => (
            "True",
            "QuorumInOneZone",
            format!(
                "zone {zone} runs {in_zone} of {voters} voters: losing it loses the quorum \
                 (a quorum is {}); spread the voters over more zones",
                quorum(*voters)
            ),
        ),
        Placement::Spread { zones } => (
            "False",
            "SpreadOverZones",
            format!("the voters run in {zones} zones; losing any one keeps a quorum"),
        ),
    };
    let was_true = previous
        .iter()
        .any(|c| c.type_ == ZONE_RISK && c.status == "True");
    let event = (status == "True" && !was_true).then(|| PlannedEvent {
        reason: ZONE_RISK.into(),
        action: "CheckPlacement".into(),
        note: message.clone(),
        warning: true,
        related: None,
    });
    let c = Condition {
        type_: ZONE_RISK.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ),
        observed_generation: None,
    };
    (c, event)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force, sharing no code with `judge`: take each zone down in turn and
    /// count what is left against a strict majority.
    fn oracle_at_risk(zones: &[&str]) -> bool {
        zones.iter().any(|down| {
            let left = zones.iter().filter(|z| *z != down).count();
            2 * left <= zones.len()
        })
    }

    #[test]
    fn judge_agrees_with_taking_each_zone_down() {
        // Every assignment of 1..=7 voters to 3 zones.
        let names = ["a", "b", "c"];
        for n in 1..=7u32 {
            for code in 0..3u32.pow(n) {
                let zones: Vec<&str> = (0..n)
                    .map(|i| names[(code / 3u32.pow(i) % 3) as usize])
                    .collect();
                let verdict = judge(&zones.iter().map(|z| Some(*z)).collect::<Vec<_>>());
                assert_eq!(
                    matches!(verdict, Placement::AtRisk { .. }),
                    oracle_at_risk(&zones),
                    "{zones:?}: {verdict:?}"
                );
            }
        }
    }

    #[test]
    fn three_voters_in_two_zones_are_at_risk_in_three_are_not() {
        assert_eq!(
            judge(&[Some("a"), Some("a"), Some("b")]),
            Placement::AtRisk {
                zone: "a".into(),
                in_zone: 2,
                voters: 3
            }
        );
        assert_eq!(
            judge(&[Some("a"), Some("b"), Some("c")]),
            Placement::Spread { zones: 3 }
        );
        // Five voters 2/2/1: any one zone can go.
        assert_eq!(
            judge(&[Some("a"), Some("a"), Some("b"), Some("b"), Some("c")]),
            Placement::Spread { zones: 3 }
        );
    }

    #[test]
    fn an_unknown_zone_makes_the_placement_unknown() {
        assert!(matches!(
            judge(&[Some("a"), None, Some("b")]),
            Placement::Unknown(m) if m.contains("1 of 3 voters")
        ));
        assert!(matches!(judge(&[]), Placement::Unknown(_)));
    }

    #[test]
    fn the_warning_event_fires_when_the_risk_appears_not_on_every_reconcile() {
        let risk = judge(&[Some("a"), Some("a"), Some("b")]);
        let (c, event) = condition(&risk, &[]);
        assert_eq!(c.status, "True");
        assert_eq!(c.reason, "QuorumInOneZone");
        assert!(
            c.message.contains("zone a runs 2 of 3 voters"),
            "{}",
            c.message
        );
        let event = event.expect("a Warning Event");
        assert!(event.warning);
        assert_eq!(event.reason, "ZoneRisk");
        let (_, again) = condition(&risk, &[c]);
        assert_eq!(again, None, "already reported");
        let (c, event) = condition(
            &Placement::Unknown("cannot read nodes: forbidden".into()),
            &[],
        );
        assert_eq!(c.status, "Unknown");
        assert_eq!(event, None);
    }
}
