//! `timeline.html` of a failing run: for each key an anomaly names, every
//! operation on that key as a bar from invocation to completion, one lane per
//! worker, coloured by outcome, with the nemesis events as vertical lines.
//! Hovering a bar shows the operation. It is what a person reads first when
//! `checker.txt` says a history is not linearizable; one self-contained file,
//! no script.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::checker::Anomaly;
use crate::history::{Expect, Op, OpKind, Outcome};
use crate::nemesis::Event;

/// At most this many keys are drawn (the first anomalies' keys).
const MAX_KEYS: usize = 5;
const WIDTH: f64 = 1600.0;
const LANE: f64 = 22.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 40.0;

/// The whole page.
pub fn render(ops: &[Op], anomalies: &[Anomaly], events: &[Event]) -> String {
    let mut keys: Vec<&str> = Vec::new();
    for a in anomalies {
        if !keys.contains(&a.key.as_str()) && keys.len() < MAX_KEYS {
            keys.push(&a.key);
        }
    }
    let mut html = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>raftkv-faults timeline</title>\n\
         <style>body{font-family:sans-serif;margin:16px}svg{border:1px solid #ccc}\
         .ok{fill:#4a90d9}.fail{fill:#bbb}.unknown{fill:#f0a030}.get{fill-opacity:.55}\
         text{font-size:11px}</style></head><body>\n\
         <h1>raftkv-faults: operations on the keys with anomalies</h1>\n\
         <p>One lane per worker; a bar runs from invocation to completion (an unknown outcome \
         runs to the end). Blue: ok, grey: failed (no effect), orange: unknown. Lighter bars \
         are reads. Red lines: nemesis events. Hover a bar for the operation.</p>\n",
    );
    for a in anomalies {
        let _ = writeln!(
            html,
            "<p><b>{}</b> on <code>{}</code>: {}</p>",
            esc(&a.kind),
            esc(&a.key),
            esc(&a.detail)
        );
    }
    for key in keys {
        let on_key: Vec<&Op> = ops.iter().filter(|o| o.key == key).collect();
        let _ = writeln!(
            html,
            "<h2>key <code>{}</code> ({} operations)</h2>",
            esc(key),
            on_key.len()
        );
        html.push_str(&svg(&on_key, events));
    }
    html.push_str("</body></html>\n");
    html
}

fn svg(ops: &[&Op], events: &[Event]) -> String {
    let Some(t0) = ops.iter().map(|o| o.invoke_ns).min() else {
        return "<p>no operation on this key</p>\n".into();
    };
    let t1 = ops
        .iter()
        .map(|o| o.complete_ns.unwrap_or(o.invoke_ns))
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let lanes: BTreeMap<u32, usize> = ops
        .iter()
        .map(|o| o.process)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, i))
        .collect();
    let span = (t1 - t0) as f64;
    let x = |ns: u64| LEFT + (ns.saturating_sub(t0) as f64 / span) * (WIDTH - LEFT - 10.0);
    let height = TOP + LANE * lanes.len() as f64 + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\">"
    );
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"14\">{:.3} s</text><text x=\"{}\" y=\"14\" text-anchor=\"end\">{:.3} s</text>",
        t0 as f64 / 1e9,
        WIDTH - 10.0,
        t1 as f64 / 1e9
    );
    for (p, lane) in &lanes {
        let y = TOP + LANE * *lane as f64;
        let _ = writeln!(
            s,
            "<text x=\"4\" y=\"{}\">worker {p}</text>",
            y + LANE * 0.6
        );
    }
    for e in events {
        let ns = e.t_ms * 1_000_000;
        if ns < t0 || ns > t1 {
            continue;
        }
        let ex = x(ns);
        let _ = writeln!(
            s,
            "<line x1=\"{ex:.1}\" y1=\"20\" x2=\"{ex:.1}\" y2=\"{height}\" stroke=\"#d33\" stroke-width=\"1\"><title>{:.3}s {}</title></line>",
            e.t_ms as f64 / 1e3,
            esc(&e.what)
        );
    }
    for o in ops {
        let y = TOP + LANE * lanes[&o.process] as f64 + 3.0;
        let x0 = x(o.invoke_ns);
        let x1 = x(o.complete_ns.unwrap_or(t1)).max(x0 + 2.0);
        let class = match o.outcome() {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Unknown => "unknown",
        };
        let read = if o.kind == Some(OpKind::Get) {
            " get"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "<rect class=\"{class}{read}\" x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}</title></rect>",
            x1 - x0,
            LANE - 6.0,
            esc(&describe(o))
        );
    }
    s.push_str("</svg>\n");
    s
}

/// One operation as a person reads it: `#12 put k=v -> ok (rev 40) on node 2`.
pub fn describe(o: &Op) -> String {
    let what = match o.kind {
        Some(OpKind::Put) => format!("put {}={}", o.key, o.value.as_deref().unwrap_or("?")),
        Some(OpKind::Delete) => format!("delete {}", o.key),
        Some(OpKind::Cas) => format!(
            "cas {} {} -> {}",
            o.key,
            match &o.expect {
                Some(Expect::Value(v)) => format!("if {v}"),
                Some(Expect::Absent) => "if absent".into(),
                None => "if ?".into(),
            },
            o.value.as_deref().unwrap_or("?")
        ),
        Some(OpKind::Get) => format!(
            "get {} ({:?})",
            o.key,
            o.level.map_or("?".into(), |l| format!("{l:?}"))
        ),
        None => "?".into(),
    };
    let result = match o.outcome() {
        Outcome::Ok => match o.kind {
            Some(OpKind::Get) => format!("read {}", o.read.as_deref().unwrap_or("(absent)")),
            Some(OpKind::Cas) => format!("swapped={}", o.swapped.unwrap_or(false)),
            Some(OpKind::Delete) => format!("deleted={}", o.deleted.unwrap_or(false)),
            _ => "ok".into(),
        },
        Outcome::Fail => format!("failed: {}", o.error.as_deref().unwrap_or("")),
        Outcome::Unknown => format!("unknown: {}", o.error.as_deref().unwrap_or("")),
    };
    let rev = o.revision.map_or(String::new(), |r| format!(" rev {r}"));
    format!(
        "#{} worker {} {what} -> {result}{rev} on node {} ({:.3}s..{})",
        o.id,
        o.process,
        o.node,
        o.invoke_ns as f64 / 1e9,
        o.complete_ns
            .map_or("?".into(), |c| format!("{:.3}s", c as f64 / 1e9))
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: u64, process: u32, key: &str, kind: OpKind, outcome: Outcome) -> Op {
        Op {
            id,
            process,
            node: 1,
            kind: Some(kind),
            key: key.into(),
            value: Some(format!("v{id}")),
            invoke_ns: id * 1_000_000,
            complete_ns: (outcome != Outcome::Unknown).then_some(id * 1_000_000 + 500_000),
            outcome: Some(outcome),
            ..Default::default()
        }
    }

    #[test]
    fn draws_every_operation_on_the_anomalous_keys_and_nothing_else() {
        let ops = vec![
            op(1, 0, "a", OpKind::Put, Outcome::Ok),
            op(2, 1, "a", OpKind::Get, Outcome::Ok),
            op(3, 0, "b", OpKind::Put, Outcome::Ok),
            op(4, 2, "a", OpKind::Cas, Outcome::Unknown),
            op(5, 1, "a", OpKind::Put, Outcome::Fail),
        ];
        let anomalies = vec![Anomaly {
            kind: "not-linearizable".into(),
            key: "a".into(),
            detail: "no order <explains> it".into(),
        }];
        let events = vec![Event {
            t_ms: 3,
            what: "kill -9 node 0".into(),
        }];
        let html = render(&ops, &anomalies, &events);
        assert_eq!(
            html.matches("<rect ").count(),
            4,
            "the four ops on a, not b's"
        );
        assert!(html.contains("#4 worker 2 cas a"), "{html}");
        assert!(html.contains("class=\"unknown\""));
        assert!(html.contains("class=\"fail\""));
        assert!(html.contains("class=\"ok get\""));
        assert!(!html.contains("put b="), "an op on another key was drawn");
        assert!(
            html.contains("kill -9 node 0"),
            "the nemesis event is drawn"
        );
        assert!(html.contains("no order &lt;explains&gt; it"), "escaped");
        assert!(html.matches("worker ").count() >= 3);
    }

    #[test]
    fn an_empty_anomaly_list_draws_no_key() {
        let ops = vec![op(1, 0, "a", OpKind::Put, Outcome::Ok)];
        let html = render(&ops, &[], &[]);
        assert!(!html.contains("<svg"));
    }
}
