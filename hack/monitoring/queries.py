#!/usr/bin/env python3
"""The PromQL of the monitoring kit, for hack/monitoring/check.sh.

  queries.py exprs RULES DASHBOARD            # JSON list of {source, expr}: every rule
                                              # expression and every dashboard query
  queries.py recording-file EXPRS OUT         # a rule file recording each expression, for
                                              # `promtool check rules` (does it parse?)
  queries.py known EXPOSITION...              # metric names an exposition (/metrics text) offers
  queries.py unknown EXPRS RULES KNOWN...     # exit 1 naming every metric used but not offered
  queries.py chart RENDERED RULES DASHBOARD   # the rendered chart carries these very files
  queries.py chart-off RENDERED               # the default render has no monitoring objects
  queries.py runbooks RULES                   # every alert's runbook_url names a heading of
                                              # a Markdown file of the repository

Metric names are found without a PromQL parser (promtool has no command that lists them):
string literals, label matchers, ranges and grouping clauses are cut out, then every
identifier that is not a function, an aggregation or a keyword is a metric name. The
expressions are also checked by promtool itself, so a name hidden in an expression this
reading gets wrong still cannot hide a syntax error. check.sh --self-test shows both
checks failing on a broken expression and on an unknown name.
"""
import json
import re
import sys

import yaml

# Grafana's variables, replaced by something PromQL accepts.
GRAFANA_DURATIONS = ("$__rate_interval", "$__interval", "$__range")
GRAFANA_VAR = re.compile(r"\$\{?\w+\}?")
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", re.S)

STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
BRACES = re.compile(r"\{[^{}]*\}")
BRACKETS = re.compile(r"\[[^\[\]]*\]")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
TOKEN = re.compile(r"(\d[\w.]*)|([A-Za-z_:][\w:]*)")
KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2", "start", "end",
}
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}


def metric_names(expr):
    """The metric names a PromQL expression reads."""
    e = STRING.sub('""', expr)
    e = BRACES.sub("", e)
    e = BRACKETS.sub("", e)
    e = GROUPING.sub("", e)
    names = set()
    for m in TOKEN.finditer(e):
        word = m.group(2)
        if not word:
            continue  # a number or a duration
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or word in KEYWORDS or word in AGGREGATIONS:
            continue
        names.add(word)
    return names


def grafana_to_promql(query):
    for d in GRAFANA_DURATIONS:
        query = query.replace(d, "5m")
    return GRAFANA_VAR.sub("x", query)


def dashboard_queries(dashboard):
    """(source, expr) for every panel target and every label_values() variable."""
    out = []

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dashboard.get("panels", [])):
        for t in p.get("targets", []):
            if "expr" in t:
                out.append((f"dashboard panel {p.get('title')!r} target {t.get('refId')}",
                            grafana_to_promql(t["expr"])))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = LABEL_VALUES.match(q)
        if m:
            out.append((f"dashboard variable {v.get('name')!r}", grafana_to_promql(m.group(1))))
        elif q:
            out.append((f"dashboard variable {v.get('name')!r}", grafana_to_promql(q)))
    return out


def rule_queries(rules):
    out = []
    for g in rules.get("groups", []):
        for r in g.get("rules", []):
            name = r.get("alert") or r.get("record")
            out.append((f"rule {name!r} (group {g.get('name')!r})", r["expr"]))
    return out


def recorded_names(rules):
    return {r["record"] for g in rules.get("groups", []) for r in g.get("rules", []) if "record" in r}


def known_from_exposition(text):
    """Series names a scrape of this text yields: every sample's name, and from each
    # TYPE line the names its type implies (the _bucket/_sum/_count of a histogram)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) < 4:
                continue
            name, kind = parts[2], parts[3]
            if kind == "counter":
                names.add(name if name.endswith("_total") else name + "_total")
            elif kind in ("histogram", "gaugehistogram"):
                names.update({name + "_bucket", name + "_sum", name + "_count"})
            elif kind == "summary":
                names.update({name, name + "_sum", name + "_count"})
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def cmd_exprs(rules_path, dashboard_path):
    qs = rule_queries(load_yaml(rules_path)) + dashboard_queries(load_json(dashboard_path))
    json.dump([{"source": s, "expr": e} for s, e in qs], sys.stdout, indent=1)
    print()


def cmd_recording_file(exprs_path, out_path):
    exprs = load_json(exprs_path)
    rules = [{"record": f"check:query_{i}", "expr": q["expr"]} for i, q in enumerate(exprs)]
    with open(out_path, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}, f, sort_keys=False)
    for i, q in enumerate(exprs):
        print(f"check:query_{i}\t{q['source']}")


def cmd_known(paths):
    names = set()
    for p in paths:
        with open(p, encoding="utf-8") as f:
            names |= known_from_exposition(f.read())
    for n in sorted(names):
        print(n)


def cmd_unknown(exprs_path, rules_path, known_paths):
    known = recorded_names(load_yaml(rules_path))
    for p in known_paths:
        with open(p, encoding="utf-8") as f:
            known |= {ln.split("#", 1)[0].strip() for ln in f} - {""}
    bad = 0
    for q in load_json(exprs_path):
        for name in sorted(metric_names(q["expr"]) - known):
            print(f"unknown metric {name!r} in {q['source']}", file=sys.stderr)
            bad += 1
    if bad:
        sys.exit(1)
    print(f"every metric name in {len(load_json(exprs_path))} expressions exists")


def cmd_chart(rendered_path, rules_path, dashboard_path):
    with open(rendered_path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
    dashboards = [d for d in docs if d.get("kind") == "ConfigMap"
                  and d.get("metadata", {}).get("labels", {}).get("grafana_dashboard") == "1"]
    problems = []
    if len(rules) != 1:
        problems.append(f"{len(rules)} PrometheusRule objects rendered, expected 1")
    elif rules[0]["spec"].get("groups") != load_yaml(rules_path)["groups"]:
        problems.append(f"the rendered PrometheusRule's groups differ from {rules_path}")
    if len(dashboards) != 1:
        problems.append(f"{len(dashboards)} dashboard ConfigMaps rendered, expected 1")
    else:
        data = dashboards[0].get("data", {})
        if list(data) != ["raftkv.json"] or json.loads(data["raftkv.json"]) != load_json(dashboard_path):
            problems.append(f"the rendered dashboard ConfigMap does not hold {dashboard_path}")
    kinds = {d.get("kind") for d in docs}
    for kind in ("PodMonitor", "ServiceMonitor"):
        if kind not in kinds:
            problems.append(f"no {kind} rendered")
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print("the chart installs the rule file's groups and the dashboard as they are")


def cmd_chart_off(rendered_path):
    with open(rendered_path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    on = [f"{d['kind']}/{d['metadata']['name']}" for d in docs
          if d.get("kind") in ("PrometheusRule", "PodMonitor", "ServiceMonitor")
          or d.get("metadata", {}).get("labels", {}).get("grafana_dashboard")]
    if on:
        print(f"monitoring objects rendered with default values: {', '.join(on)}", file=sys.stderr)
        sys.exit(1)
    print("the monitoring kit is off by default")


def heading_slugs(markdown):
    """GitHub's anchors of the ATX headings outside code blocks (as hack/check-links.sh)."""
    slugs, fence = set(), False
    for line in markdown.splitlines():
        if re.match(r"^ {0,3}(```|~~~)", line):
            fence = not fence
            continue
        m = None if fence else re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            t = re.sub(r"[`*]", "", m.group(1)).strip().lower()
            slugs.add("".join(c for c in t if c.isalnum() or c in " -_").replace(" ", "-"))
    return slugs


def cmd_runbooks(rules_path):
    problems = []
    for g in load_yaml(rules_path)["groups"]:
        for r in g["rules"]:
            if "alert" not in r:
                continue
            url = r.get("annotations", {}).get("runbook_url", "")
            path, _, anchor = url.partition("#")
            if not path.endswith(".md") or not anchor:
                problems.append(f"{r['alert']}: runbook_url {url!r} is not FILE.md#section")
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    slugs = heading_slugs(f.read())
            except OSError as e:
                problems.append(f"{r['alert']}: runbook_url {url!r}: {e}")
                continue
            if anchor not in slugs:
                problems.append(f"{r['alert']}: runbook_url {url!r}: no such heading in {path}")
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print("every alert's runbook_url names a section")


def main(argv):
    cmds = {
        "exprs": (cmd_exprs, 2),
        "recording-file": (cmd_recording_file, 2),
        "chart": (cmd_chart, 3),
        "chart-off": (cmd_chart_off, 1),
        "runbooks": (cmd_runbooks, 1),
    }
    if len(argv) >= 2 and argv[1] == "known":
        return cmd_known(argv[2:])
    if len(argv) >= 5 and argv[1] == "unknown":
        return cmd_unknown(argv[2], argv[3], argv[4:])
    if len(argv) >= 2 and argv[1] in cmds and len(argv) == 2 + cmds[argv[1]][1]:
        return cmds[argv[1]][0](*argv[2:])
    print(__doc__, file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
