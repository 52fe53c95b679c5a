//! Text scenarios for the planner, in the style of etcd-raft's `testdata/*.txt`
//! (the `datadriven` crate; `REWRITE=1 cargo test -p raft-operator --test
//! planner_scenarios` rewrites the expected output).
//!
//! Directives:
//! - `cluster name=demo voters=3`: a bootstrapped, settled cluster
//! - `new-cluster name=demo voters=3`: nothing created yet
//! - `spec [replicas=N] [read=N] [auto-replace-ms=N]`: edit the spec
//! - `pod-down P` / `pod-up P` / `pod-lost P` (empty volume) / `lag P N` / `leader-is P`
//! - `tick ms=N`, `pause`, `unpause`, `joint` / `commit`, `new-revision`
//! - `plan`: print the next plan without applying it
//! - `step`: plan and apply once; `settle`: step until nothing is left (max 40)
//! - `members`: print the membership

use datadriven::{TestCase, walk};
use raft_operator::planner::sim::{Sim, describe_plan};

fn arg<T: std::str::FromStr>(tc: &mut TestCase, key: &str) -> Option<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    tc.try_take_arg::<T>(key).expect("bad argument")
}

fn pod_arg(tc: &TestCase) -> String {
    tc.args.keys().next().cloned().expect("a pod name")
}

fn cluster(tc: &mut TestCase, settled: bool) -> (Sim, String) {
    let name: String = arg(tc, "name").unwrap_or_else(|| "demo".into());
    let voters: u32 = arg(tc, "voters").expect("voters=N");
    let sim = if settled {
        Sim::running(&name, voters)
    } else {
        Sim::new(&name, voters)
    };
    let out = sim.describe();
    (sim, out)
}

fn spec(sim: &mut Sim, tc: &mut TestCase) -> String {
    if let Some(r) = arg(tc, "replicas") {
        sim.spec.replicas = r;
    }
    if let Some(r) = arg(tc, "read") {
        sim.spec.read_replicas = r;
    }
    if let Some(ms) = arg(tc, "auto-replace-ms") {
        sim.spec.auto_replace_after_ms = Some(ms);
    }
    "ok".into()
}

fn settle(sim: &mut Sim) -> String {
    let mut lines = Vec::new();
    for _ in 0..40 {
        let plan = sim.step();
        let Some(_) = plan.step else {
            lines.push(describe_plan(&plan));
            break;
        };
        lines.push(describe_plan(&plan));
    }
    lines.push(sim.describe());
    lines.join("\n")
}

fn run(sim: &mut Option<Sim>, tc: &mut TestCase) -> String {
    let out = match tc.directive.as_str() {
        "cluster" | "new-cluster" => {
            let (s, out) = cluster(tc, tc.directive == "cluster");
            *sim = Some(s);
            out
        }
        directive => {
            let sim = sim.as_mut().expect("no cluster yet");
            match directive {
                "spec" => spec(sim, tc),
                "pod-down" => {
                    sim.pod_down(&pod_arg(tc));
                    "ok".into()
                }
                "pod-up" => {
                    sim.pod_up(&pod_arg(tc));
                    "ok".into()
                }
                "pod-lost" => {
                    let pod = pod_arg(tc);
                    sim.pod_lost_volume(&pod);
                    format!("{pod} is now node {}", sim.id_of(&pod))
                }
                "lag" => {
                    let pod: String = arg(tc, "pod").expect("pod=P");
                    let n: u64 = arg(tc, "n").expect("n=N");
                    sim.pods.get_mut(&pod).expect("pod").lag = n;
                    "ok".into()
                }
                "leader-is" => {
                    sim.leader = Some(sim.id_of(&pod_arg(tc)));
                    "ok".into()
                }
                "tick" => {
                    sim.now_ms += arg::<i64>(tc, "ms").expect("ms=N");
                    "ok".into()
                }
                "pause" | "unpause" => {
                    sim.paused = directive == "pause";
                    "ok".into()
                }
                "joint" | "commit" => {
                    sim.joint = directive == "joint";
                    "ok".into()
                }
                "new-revision" => {
                    sim.revision = format!("{}'", sim.revision);
                    "ok".into()
                }
                "plan" => {
                    sim.elect();
                    describe_plan(&raft_operator::planner::plan(&sim.observe()))
                }
                "step" => describe_plan(&sim.step()),
                "settle" => settle(sim),
                "members" => sim.describe(),
                other => panic!("unknown directive {other}"),
            }
        }
    };
    tc.args.clear();
    format!("{out}\n")
}

#[test]
fn planner_scenarios() {
    walk("tests/testdata", |f| {
        let mut sim: Option<Sim> = None;
        f.run(|tc| -> String { run(&mut sim, tc) });
    });
}
