//! Partition shapes, as pure functions of the member list (and the leader),
//! so each shape is unit-tested without a network.
//!
//! A shape is a list of blocked links (a, b), applied in both directions.

use rand::Rng;
use rand::seq::SliceRandom;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The leader alone on one side.
    IsolateLeader,
    /// A random minority against the majority.
    MajorityMinority,
    /// The leader and as many followers as still make a minority against
    /// the rest: the deposed leader keeps heartbeating its followers (issue
    /// 11, hole 3: their bounded reads). Five nodes only.
    LeaderMinority,
    /// Two halves that do not see each other, and one node (the bridge) that
    /// sees both: each half plus the bridge is a majority. Five nodes only.
    Bridge,
    /// Each node sees only its two neighbours on a ring: every node has a
    /// majority of its own view but no two views agree. Five nodes only.
    Ring,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::IsolateLeader => "isolate-leader",
            Shape::MajorityMinority => "majority-minority",
            Shape::LeaderMinority => "leader-minority",
            Shape::Bridge => "bridge",
            Shape::Ring => "ring",
        }
    }

    /// Shapes that make sense for this many members.
    pub fn for_size(n: usize) -> Vec<Shape> {
        let mut v = vec![Shape::IsolateLeader, Shape::MajorityMinority];
        if n >= 5 {
            v.extend([Shape::LeaderMinority, Shape::Bridge, Shape::Ring]);
        }
        v
    }
}

/// Every unordered pair of members not in the same group is blocked.
fn between_groups(groups: &[Vec<usize>]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (gi, a) in groups.iter().enumerate() {
        for b in &groups[gi + 1..] {
            for &x in a {
                for &y in b {
                    out.push((x.min(y), x.max(y)));
                }
            }
        }
    }
    out.sort();
    out
}

/// The links to cut for `shape` over `members` (node indexes, shuffled with
/// `rng` so the layout differs per step).
pub fn plan<R: Rng>(
    shape: Shape,
    members: &[usize],
    leader: Option<usize>,
    rng: &mut R,
) -> Vec<(usize, usize)> {
    let mut m = members.to_vec();
    m.shuffle(rng);
    match shape {
        Shape::IsolateLeader => {
            let l = leader.filter(|l| m.contains(l)).unwrap_or(m[0]);
            let rest: Vec<usize> = m.iter().copied().filter(|x| *x != l).collect();
            between_groups(&[vec![l], rest])
        }
        Shape::MajorityMinority => {
            let minority = (m.len() - 1) / 2;
            let minority = minority.max(1);
            between_groups(&[m[..minority].to_vec(), m[minority..].to_vec()])
        }
        Shape::LeaderMinority => {
            let l = leader.filter(|l| m.contains(l)).unwrap_or(m[0]);
            let rest: Vec<usize> = m.iter().copied().filter(|x| *x != l).collect();
            let minority = (m.len() - 1) / 2;
            let mut side = vec![l];
            side.extend(&rest[..minority - 1]);
            between_groups(&[side, rest[minority - 1..].to_vec()])
        }
        Shape::Bridge => {
            let bridge = m[0];
            let half = (m.len() - 1) / 2;
            let a = &m[1..1 + half];
            let b = &m[1 + half..];
            let _ = bridge;
            between_groups(&[a.to_vec(), b.to_vec()])
        }
        Shape::Ring => {
            // Cut every pair that is not adjacent on the (shuffled) ring.
            let n = m.len();
            let mut out = Vec::new();
            for i in 0..n {
                for j in i + 1..n {
                    let d = j - i;
                    if d != 1 && d != n - 1 {
                        out.push((m[i].min(m[j]), m[i].max(m[j])));
                    }
                }
            }
            out.sort();
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn sees(cut: &[(usize, usize)], a: usize, b: usize) -> bool {
        !cut.contains(&(a.min(b), a.max(b)))
    }

    #[test]
    fn isolating_the_leader_cuts_exactly_its_links() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let cut = plan(Shape::IsolateLeader, &[0, 1, 2], Some(1), &mut rng);
        assert_eq!(cut, vec![(0, 1), (1, 2)]);
    }

    #[test]
    fn the_leader_minority_keeps_the_leader_with_a_follower() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let members: Vec<usize> = (0..5).collect();
        let cut = plan(Shape::LeaderMinority, &members, Some(3), &mut rng);
        let with_leader: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&b| b != 3 && sees(&cut, 3, b))
            .collect();
        assert_eq!(with_leader.len(), 1, "{cut:?}");
        // 2 x 3 links cut between the sides.
        assert_eq!(cut.len(), 6, "{cut:?}");
    }

    #[test]
    fn majority_minority_leaves_one_majority() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        for n in [3usize, 5] {
            let members: Vec<usize> = (0..n).collect();
            let cut = plan(Shape::MajorityMinority, &members, None, &mut rng);
            // Components: the majority is connected and has > n/2 nodes.
            let reach = |a: usize| members.iter().filter(|&&b| sees(&cut, a, b)).count();
            let big = members.iter().filter(|&&a| reach(a) > n / 2).count();
            assert!(big > n / 2, "{cut:?}");
            assert!(big < n, "somebody is cut off: {cut:?}");
        }
    }

    #[test]
    fn bridge_and_ring_give_each_node_a_majority_view_but_no_clean_split() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let members: Vec<usize> = (0..5).collect();
        let cut = plan(Shape::Bridge, &members, None, &mut rng);
        let views: Vec<usize> = members
            .iter()
            .map(|&a| members.iter().filter(|&&b| sees(&cut, a, b)).count())
            .collect();
        // Bridge sees all 5, the others 3 (their half and the bridge).
        let mut sorted = views.clone();
        sorted.sort();
        assert_eq!(sorted, vec![3, 3, 3, 3, 5], "{cut:?}");

        let cut = plan(Shape::Ring, &members, None, &mut rng);
        for &a in &members {
            let view = members.iter().filter(|&&b| sees(&cut, a, b)).count();
            assert_eq!(view, 3, "ring: node {a} sees itself and two neighbours");
        }
        assert_eq!(cut.len(), 5);
    }
}
