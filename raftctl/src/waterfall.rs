//! `raftctl trace`: the pure part. Reads OTLP JSON (as the trace query API
//! returns it: `{"result":{"resourceSpans":[...]}}`), builds the span tree and
//! renders it as a waterfall, a trace list or JSON. No I/O, no clock.
//!
//! Tree rules: children sit under their parent, siblings sorted by start time
//! (then span ID, so the order is stable); a span whose parent is not in the
//! trace (not exported yet, dropped, or sampled out) is an orphan and is shown
//! at the top level, after the real roots that start before it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::output::table;

/// Width of the timeline bar of `trace get` (characters).
pub const BAR_WIDTH: usize = 30;

/// Attributes shown on a waterfall line (key, short label), in this order.
/// Everything else is only in `-o json`.
const SHOWN_ATTRIBUTES: &[(&str, &str)] = &[
    ("raft.node_id", "node"),
    ("raft.target_node_id", "target"),
    ("raft.term", "term"),
    ("raft.index", "index"),
    ("raft.entries", "entries"),
    ("raft.membership.change", "change"),
    ("rpc.response.status_code", "rpc"),
    ("error.type", "error"),
    ("fault.kind", "fault"),
];

/// Event attributes left out of the waterfall (kept in `-o json`): what
/// tracing-opentelemetry adds to every log event recorded in a span.
const HIDDEN_EVENT_ATTRIBUTES: &[&str] = &[
    "level",
    "target",
    "code.filepath",
    "code.lineno",
    "code.namespace",
];

/// One span, flattened out of its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    /// Resource `service.name` (`unknown` if absent).
    pub service: String,
    /// Resource `service.instance.id`.
    pub instance: Option<String>,
    pub name: String,
    /// `internal`, `server`, `client`, `producer`, `consumer` or `unspecified`.
    pub kind: &'static str,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Span attributes in the order received, values as JSON scalars/arrays.
    pub attributes: Vec<(String, Value)>,
    pub events: Vec<Event>,
    /// `ok`, `error` or `unset`.
    pub status: &'static str,
    pub status_message: String,
    /// (trace ID, span ID) of linked spans.
    pub links: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub time_ns: u64,
    pub attributes: Vec<(String, Value)>,
}

impl Span {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// `service/instance`, or the service alone.
    pub fn process(&self) -> String {
        match &self.instance {
            Some(i) => format!("{}/{}", self.service, i),
            None => self.service.clone(),
        }
    }

    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find_map(|(k, v)| (k == key).then_some(v))
    }
}

/// The spans of an OTLP JSON document (`{"result": TracesData}` or a bare
/// `TracesData`), possibly of several traces. Accepts the enum fields both as
/// numbers and as names, and 64-bit integers both as strings and numbers.
pub fn parse_otlp(doc: &Value) -> Result<Vec<Span>, String> {
    let data = doc.get("result").unwrap_or(doc);
    let Some(resource_spans) = data.get("resourceSpans") else {
        return Err("not an OTLP trace document (no resourceSpans)".into());
    };
    let mut out = Vec::new();
    for rs in array(resource_spans) {
        let resource = attributes(rs.pointer("/resource/attributes"));
        let find = |key: &str| {
            resource
                .iter()
                .find_map(|(k, v)| (k == key).then(|| value_text(v)))
        };
        let service = find("service.name").unwrap_or_else(|| "unknown".into());
        let instance = find("service.instance.id");
        for ss in array(rs.get("scopeSpans").unwrap_or(&Value::Null)) {
            for s in array(ss.get("spans").unwrap_or(&Value::Null)) {
                out.push(parse_span(s, &service, instance.as_deref())?);
            }
        }
    }
    Ok(out)
}

fn parse_span(s: &Value, service: &str, instance: Option<&str>) -> Result<Span, String> {
    let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let span_id = text("spanId").to_ascii_lowercase();
    let trace_id = text("traceId").to_ascii_lowercase();
    if span_id.is_empty() || trace_id.is_empty() {
        return Err("a span without traceId or spanId".into());
    }
    let parent = text("parentSpanId").to_ascii_lowercase();
    let status = s.get("status").unwrap_or(&Value::Null);
    let events = array(s.get("events").unwrap_or(&Value::Null))
        .iter()
        .map(|e| Event {
            name: e.get("name").and_then(Value::as_str).unwrap_or("").into(),
            time_ns: uint(e.get("timeUnixNano")),
            attributes: attributes(e.get("attributes")),
        })
        .collect();
    let links = array(s.get("links").unwrap_or(&Value::Null))
        .iter()
        .map(|l| {
            let t = |k: &str| l.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            (t("traceId"), t("spanId"))
        })
        .collect();
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id: (!parent.is_empty() && parent.chars().any(|c| c != '0')).then_some(parent),
        service: service.to_string(),
        instance: instance.map(str::to_string),
        name: text("name"),
        kind: span_kind(s.get("kind")),
        start_ns: uint(s.get("startTimeUnixNano")),
        end_ns: uint(s.get("endTimeUnixNano")),
        attributes: attributes(s.get("attributes")),
        events,
        status: status_code(status.get("code")),
        status_message: status
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into(),
        links,
    })
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// A uint64 field: OTLP JSON writes them as strings, some writers as numbers.
fn uint(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn span_kind(v: Option<&Value>) -> &'static str {
    let n = match v {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => match s.as_str() {
            "SPAN_KIND_INTERNAL" => 1,
            "SPAN_KIND_SERVER" => 2,
            "SPAN_KIND_CLIENT" => 3,
            "SPAN_KIND_PRODUCER" => 4,
            "SPAN_KIND_CONSUMER" => 5,
            _ => 0,
        },
        _ => 0,
    };
    [
        "unspecified",
        "internal",
        "server",
        "client",
        "producer",
        "consumer",
    ]
    .get(n as usize)
    .copied()
    .unwrap_or("unspecified")
}

fn status_code(v: Option<&Value>) -> &'static str {
    match v {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => "ok",
        Some(Value::Number(n)) if n.as_u64() == Some(2) => "error",
        Some(Value::String(s)) if s == "STATUS_CODE_OK" => "ok",
        Some(Value::String(s)) if s == "STATUS_CODE_ERROR" => "error",
        _ => "unset",
    }
}

/// OTLP `KeyValue` list to (key, plain JSON value); Jaeger's own
/// `@jaeger@...` annotations are dropped.
fn attributes(v: Option<&Value>) -> Vec<(String, Value)> {
    array(v.unwrap_or(&Value::Null))
        .iter()
        .filter_map(|kv| {
            let key = kv.get("key")?.as_str()?;
            if key.starts_with("@jaeger@") {
                return None;
            }
            Some((
                key.to_string(),
                any_value(kv.get("value").unwrap_or(&Value::Null)),
            ))
        })
        .collect()
}

/// An OTLP `AnyValue` as plain JSON (`intValue` strings become numbers).
fn any_value(v: &Value) -> Value {
    let Some(obj) = v.as_object() else {
        return Value::Null;
    };
    if let Some(s) = obj.get("stringValue") {
        return s.clone();
    }
    if let Some(b) = obj.get("boolValue") {
        return b.clone();
    }
    if let Some(i) = obj.get("intValue") {
        return match i {
            Value::String(s) => s.parse::<i64>().map(Value::from).unwrap_or(i.clone()),
            other => other.clone(),
        };
    }
    if let Some(d) = obj.get("doubleValue") {
        return d.clone();
    }
    if let Some(a) = obj.get("arrayValue") {
        return Value::Array(
            array(a.get("values").unwrap_or(&Value::Null))
                .iter()
                .map(any_value)
                .collect(),
        );
    }
    if let Some(kv) = obj.get("kvlistValue") {
        let map: Map<String, Value> = attributes(kv.get("values")).into_iter().collect();
        return Value::Object(map);
    }
    if let Some(b) = obj.get("bytesValue") {
        return b.clone();
    }
    Value::Null
}

/// A value for a human: strings unquoted, the rest as JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Spans grouped by trace ID.
pub fn group_by_trace(spans: Vec<Span>) -> BTreeMap<String, Vec<Span>> {
    let mut out: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    for s in spans {
        out.entry(s.trace_id.clone()).or_default().push(s);
    }
    out
}

/// A span's place in the tree: its index in the input and its depth, plus
/// whether it is the last of its siblings (for the tree glyphs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub index: usize,
    pub depth: usize,
    /// For each ancestor level and this one: whether that node was the last
    /// of its siblings (`last[depth]` is this node's).
    pub last: Vec<bool>,
    /// The parent is named but not in the trace.
    pub orphan: bool,
}

/// Tree order (depth first, siblings by start time then span ID). Every span
/// appears exactly once: spans without a parent in the trace are top-level,
/// and a parent cycle (a broken writer) is cut where it is first entered.
pub fn tree_order(spans: &[Span]) -> Vec<Node> {
    let by_id: HashMap<&str, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut tops = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match s.parent_span_id.as_deref().and_then(|p| by_id.get(p)) {
            Some(&p) if p != i => children.entry(p).or_default().push(i),
            _ => tops.push(i),
        }
    }
    let key = |&i: &usize| (spans[i].start_ns, spans[i].span_id.clone());
    tops.sort_by_key(key);
    for c in children.values_mut() {
        c.sort_by_key(key);
    }
    let mut out = Vec::with_capacity(spans.len());
    let mut seen = HashSet::new();
    // Tops first; then spans only reachable through a parent cycle.
    for top in tops.into_iter().chain(0..spans.len()) {
        if seen.contains(&top) {
            continue;
        }
        // Depth first; `last` of a top-level span draws no glyph.
        let mut stack: Vec<(usize, Vec<bool>)> = vec![(top, vec![true])];
        while let Some((i, last)) = stack.pop() {
            if !seen.insert(i) {
                continue;
            }
            let cs: Vec<usize> = children
                .get(&i)
                .map(|cs| cs.iter().copied().filter(|c| !seen.contains(c)).collect())
                .unwrap_or_default();
            for (n, &c) in cs.iter().enumerate().rev() {
                let mut l = last.clone();
                l.push(n + 1 == cs.len());
                stack.push((c, l));
            }
            out.push(Node {
                index: i,
                depth: last.len() - 1,
                orphan: spans[i].parent_span_id.is_some() && last.len() == 1,
                last,
            });
        }
    }
    out
}

/// What a trace is, in one line.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub trace_id: String,
    /// The root: the earliest span without a parent, else the earliest span.
    pub root_service: String,
    pub root_name: String,
    pub span_count: usize,
    /// Distinct services, sorted.
    pub services: Vec<String>,
    /// Distinct `service/instance`, sorted.
    pub processes: Vec<String>,
    pub start_ns: u64,
    pub duration_ns: u64,
    /// Spans whose parent is not in the trace.
    pub orphans: usize,
    /// Client spans that got an answer (not an error) but have no child: the
    /// server's spans are not in the trace (yet). All raftkv services trace.
    pub unanswered: usize,
}

impl Summary {
    /// No span is known to be missing.
    pub fn looks_complete(&self) -> bool {
        self.orphans == 0 && self.unanswered == 0
    }
}

pub fn summarize(spans: &[Span]) -> Option<Summary> {
    let first = spans.iter().min_by_key(|s| (s.start_ns, &s.span_id))?;
    let root = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .min_by_key(|s| (s.start_ns, &s.span_id))
        .unwrap_or(first);
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let parents: HashSet<&str> = spans
        .iter()
        .filter_map(|s| s.parent_span_id.as_deref())
        .collect();
    let start = first.start_ns;
    let end = spans.iter().map(|s| s.end_ns).max().unwrap_or(start);
    Some(Summary {
        trace_id: first.trace_id.clone(),
        root_service: root.service.clone(),
        root_name: root.name.clone(),
        span_count: spans.len(),
        services: spans
            .iter()
            .map(|s| s.service.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        processes: spans
            .iter()
            .map(Span::process)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        start_ns: start,
        duration_ns: end.saturating_sub(start),
        orphans: spans
            .iter()
            .filter(|s| {
                s.parent_span_id
                    .as_deref()
                    .is_some_and(|p| !ids.contains(p))
            })
            .count(),
        unanswered: spans
            .iter()
            .filter(|s| {
                s.kind == "client"
                    && s.status != "error"
                    && s.attribute("rpc.response.status_code")
                        .is_none_or(|c| c.as_str() == Some("OK"))
                    && !parents.contains(s.span_id.as_str())
            })
            .count(),
    })
}

/// `812µs`, `4.10ms`, `1.23s`, `2m05s`.
pub fn format_duration(ns: u64) -> String {
    if ns < 1_000_000 {
        format!("{}µs", ns / 1_000)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", ns as f64 / 1e6)
    } else if ns < 60_000_000_000 {
        format!("{:.2}s", ns as f64 / 1e9)
    } else {
        let s = ns / 1_000_000_000;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// kubectl-style age: `45s`, `12m`, `3h`, `2d`.
pub fn format_age(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7_199 => format!("{}m", s / 60),
        7_200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The bar of a span in a timeline of `width` cells for `[0, total)`: at
/// least one cell, never past the end.
pub fn bar(offset_ns: u64, duration_ns: u64, total_ns: u64, width: usize) -> String {
    let total = total_ns.max(1) as f64;
    let w = width as f64;
    let from = ((offset_ns as f64 / total) * w).floor() as usize;
    let from = from.min(width.saturating_sub(1));
    let to = (((offset_ns + duration_ns) as f64 / total) * w).ceil() as usize;
    let to = to.clamp(from + 1, width);
    let mut s = String::with_capacity(width * 3);
    for i in 0..width {
        s.push(if (from..to).contains(&i) { '█' } else { '·' });
    }
    s
}

/// A single mark at `offset_ns` (an event).
fn mark(offset_ns: u64, total_ns: u64, width: usize) -> String {
    let at = ((offset_ns as f64 / total_ns.max(1) as f64) * width as f64).floor() as usize;
    let at = at.min(width.saturating_sub(1));
    (0..width)
        .map(|i| if i == at { '|' } else { ' ' })
        .collect()
}

/// The attributes worth a glance: `node=1 term=1 index=3 ...`, plus the
/// status when it is an error.
pub fn shown_attributes(s: &Span) -> String {
    let mut parts: Vec<String> = SHOWN_ATTRIBUTES
        .iter()
        .filter_map(|(k, label)| s.attribute(k).map(|v| format!("{label}={}", value_text(v))))
        .collect();
    if s.status == "error" {
        if s.status_message.is_empty() {
            parts.push("status=ERROR".into());
        } else {
            parts.push(format!("status=ERROR({})", s.status_message));
        }
    }
    if !s.links.is_empty() {
        parts.push(format!("links={}", s.links.len()));
    }
    parts.join(" ")
}

fn tree_prefix(last: &[bool], continuation: bool) -> String {
    let mut p = String::new();
    let Some((&me, ancestors)) = last.split_last() else {
        return p;
    };
    if ancestors.is_empty() {
        return if continuation { "  ".into() } else { p };
    }
    for &l in &ancestors[1..] {
        p.push_str(if l { "   " } else { "│  " });
    }
    p.push_str(match (continuation, me) {
        (false, true) => "└─ ",
        (false, false) => "├─ ",
        (true, true) => "   ",
        (true, false) => "│  ",
    });
    p
}

/// One line of a waterfall: a span, or one of its events (right under it).
/// The layout both renderers share (text here, SVG in [`super::svg`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// From the trace start (a span's start, an event's time).
    pub offset_ns: u64,
    /// `None` for an event line.
    pub duration_ns: Option<u64>,
    /// `service/instance` (empty for an event line).
    pub process: String,
    /// Tree glyphs and the span name (`(parent missing)` for an orphan), or
    /// glyphs and `• event`.
    pub label: String,
    /// [`shown_attributes`] of a span; an event's own attributes.
    pub attributes: String,
    /// The span's status is an error.
    pub error: bool,
}

/// The lines of one trace in tree order, each span followed by its events
/// (by time). `None` without spans.
pub fn lines(spans: &[Span]) -> Option<(Summary, Vec<Line>)> {
    let sum = summarize(spans)?;
    let mut out = Vec::new();
    let parents: HashSet<&str> = spans
        .iter()
        .filter_map(|s| s.parent_span_id.as_deref())
        .collect();
    for node in tree_order(spans) {
        let s = &spans[node.index];
        let offset = s.start_ns.saturating_sub(sum.start_ns);
        let mut label = format!("{}{}", tree_prefix(&node.last, false), s.name);
        if node.orphan {
            label.push_str(" (parent missing)");
        }
        out.push(Line {
            offset_ns: offset,
            duration_ns: Some(s.duration_ns()),
            process: s.process(),
            label,
            attributes: shown_attributes(s),
            error: s.status == "error",
        });
        let has_children = parents.contains(s.span_id.as_str());
        let mut cont = node.last.clone();
        if has_children {
            // Events sit above the children: draw the line down to them.
            cont.push(false);
        }
        let mut events: Vec<&Event> = s.events.iter().collect();
        events.sort_by_key(|e| e.time_ns);
        for e in events {
            let attributes = e
                .attributes
                .iter()
                .filter(|(k, _)| !HIDDEN_EVENT_ATTRIBUTES.contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={}", value_text(v)))
                .collect::<Vec<_>>()
                .join(" ");
            let prefix = if has_children {
                tree_prefix(&cont, true)
            } else {
                let mut p = tree_prefix(&node.last, true);
                p.push_str("  ");
                p
            };
            out.push(Line {
                offset_ns: e.time_ns.saturating_sub(sum.start_ns),
                duration_ns: None,
                process: String::new(),
                label: format!("{prefix}• {}", e.name),
                attributes,
                error: false,
            });
        }
    }
    Some((sum, out))
}

/// The waterfall of one trace: a header line, then one line per span in
/// tree order and one per span event, with a timeline bar `width` wide.
pub fn render_waterfall(spans: &[Span], width: usize) -> String {
    let Some((sum, lines)) = lines(spans) else {
        return "no spans\n".into();
    };
    let total = sum.duration_ns;
    let rows: Vec<Vec<String>> = lines
        .into_iter()
        .map(|l| match l.duration_ns {
            Some(d) => vec![
                format_duration(l.offset_ns),
                format_duration(d),
                bar(l.offset_ns, d, total, width),
                l.process,
                l.label,
                l.attributes,
            ],
            None => vec![
                format_duration(l.offset_ns),
                String::new(),
                mark(l.offset_ns, total, width),
                String::new(),
                l.label,
                l.attributes,
            ],
        })
        .collect();
    let mut out = header_line(&sum);
    out.push_str(&table(
        &[
            "OFFSET",
            "DURATION",
            "TIMELINE",
            "PROCESS",
            "SPAN",
            "ATTRIBUTES",
        ],
        &rows,
    ));
    out
}

/// `trace ID  root ...  duration ...  spans N  services ...` (and what is missing).
pub fn header(sum: &Summary) -> String {
    let mut s = header_line(sum);
    s.pop();
    s
}

fn header_line(sum: &Summary) -> String {
    let mut s = format!(
        "trace {}  root {}: {}  duration {}  spans {}  services {}",
        sum.trace_id,
        sum.root_service,
        sum.root_name,
        format_duration(sum.duration_ns),
        sum.span_count,
        sum.processes.join(",")
    );
    if sum.orphans > 0 {
        s.push_str(&format!(
            "  ({} with a missing parent: incomplete)",
            sum.orphans
        ));
    }
    if sum.unanswered > 0 {
        s.push_str(&format!(
            "  ({} client span(s) without their server's: incomplete)",
            sum.unanswered
        ));
    }
    s.push('\n');
    s
}

fn attributes_json(a: &[(String, Value)]) -> Value {
    Value::Object(a.iter().cloned().collect())
}

/// `trace get -o json`: the trace with its spans in tree order. Times in
/// microseconds (`start_unix_us` absolute, `offset_us` from the trace start).
pub fn trace_json(spans: &[Span]) -> Value {
    let Some(sum) = summarize(spans) else {
        return json!({"trace_id": null, "spans": []});
    };
    let us = |ns: u64| ns / 1_000;
    let list: Vec<Value> = tree_order(spans)
        .into_iter()
        .map(|node| {
            let s = &spans[node.index];
            json!({
                "span_id": s.span_id,
                "parent_span_id": s.parent_span_id,
                "depth": node.depth,
                "parent_missing": node.orphan,
                "service": s.service,
                "instance": s.instance,
                "name": s.name,
                "kind": s.kind,
                "start_unix_us": us(s.start_ns),
                "offset_us": us(s.start_ns.saturating_sub(sum.start_ns)),
                "duration_us": us(s.duration_ns()),
                "status": {"code": s.status, "message": s.status_message},
                "attributes": attributes_json(&s.attributes),
                "events": s.events.iter().map(|e| json!({
                    "name": e.name,
                    "time_unix_us": us(e.time_ns),
                    "offset_us": us(e.time_ns.saturating_sub(sum.start_ns)),
                    "attributes": attributes_json(&e.attributes),
                })).collect::<Vec<_>>(),
                "links": s.links.iter().map(|(t, i)| json!({"trace_id": t, "span_id": i})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut doc = summary_json(&sum);
    doc["spans"] = Value::Array(list);
    doc
}

fn summary_json(sum: &Summary) -> Value {
    json!({
        "trace_id": sum.trace_id,
        "root": {"service": sum.root_service, "name": sum.root_name},
        "span_count": sum.span_count,
        "services": sum.services,
        "processes": sum.processes,
        "start_unix_us": sum.start_ns / 1_000,
        "duration_us": sum.duration_ns / 1_000,
        "spans_with_missing_parent": sum.orphans,
        "client_spans_without_server": sum.unanswered,
    })
}

/// Traces newest first, at most `limit`.
pub fn newest(mut summaries: Vec<Summary>, limit: usize) -> Vec<Summary> {
    summaries.sort_by(|a, b| {
        b.start_ns
            .cmp(&a.start_ns)
            .then_with(|| a.trace_id.cmp(&b.trace_id))
    });
    summaries.truncate(limit);
    summaries
}

/// `trace ls`: TRACE ID, ROOT, SPANS, SERVICES, DURATION, AGE (`now_ns` is
/// the current Unix time).
pub fn render_list(summaries: &[Summary], now_ns: u64) -> String {
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.trace_id.clone(),
                format!("{}: {}", s.root_service, s.root_name),
                s.span_count.to_string(),
                s.services.join(","),
                format_duration(s.duration_ns),
                format_age(now_ns.saturating_sub(s.start_ns)),
            ]
        })
        .collect();
    table(
        &["TRACE ID", "ROOT", "SPANS", "SERVICES", "DURATION", "AGE"],
        &rows,
    )
}

/// `trace ls -o json`.
pub fn list_json(summaries: &[Summary]) -> Value {
    json!({"traces": summaries.iter().map(summary_json).collect::<Vec<_>>()})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `raftctl put` on a 3-node cluster (`raft-node local`), as the real
    /// Jaeger v2 query API (`GET /api/v3/traces/{id}`) returned it.
    const PUT_3_NODES: &str = include_str!("../tests/testdata/trace_put_3nodes.json");
    const TRACE: &str = "e1312fcd9b3882404af5bb3dbe6d16fe";

    fn fixture() -> Vec<Span> {
        parse_otlp(&serde_json::from_str(PUT_3_NODES).unwrap()).unwrap()
    }

    fn by_name<'a>(spans: &'a [Span], name: &str, process: &str) -> &'a Span {
        spans
            .iter()
            .find(|s| s.name == name && s.process() == process)
            .unwrap_or_else(|| panic!("no {name} on {process}"))
    }

    #[test]
    fn otlp_json_from_jaeger_is_flattened_with_resource_and_typed_values() {
        let spans = fixture();
        assert_eq!(spans.len(), 14);
        assert!(spans.iter().all(|s| s.trace_id == TRACE));
        let root = by_name(&spans, "raftctl put", "raftctl");
        assert_eq!(root.parent_span_id, None);
        assert_eq!(root.kind, "client");
        let propose = by_name(&spans, "raft.propose", "raft-node/node-0");
        assert_eq!(propose.kind, "internal");
        assert_eq!(propose.attribute("raft.index"), Some(&json!("3")));
        assert_eq!(propose.events.len(), 1);
        assert_eq!(propose.events[0].name, "raft.committed");
        assert_eq!(
            propose.events[0].attributes,
            vec![("raft.index".into(), json!(3))]
        );
        assert!(propose.end_ns > propose.start_ns);
        // Attribute values as the nodes record them (raft numbers as text).
        assert_eq!(propose.attribute("raft.term"), Some(&json!("1")));
        // Jaeger's own annotations are not span attributes.
        let apply = by_name(&spans, "raft.apply", "raft-node/node-1");
        assert!(apply.attributes.iter().all(|(k, _)| !k.starts_with('@')));
        assert_eq!(apply.status, "unset");
    }

    #[test]
    fn enum_names_and_numeric_strings_are_both_accepted() {
        let doc = json!({"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [{
            "traceId": "AB", "spanId": "01", "parentSpanId": "", "name": "x",
            "kind": "SPAN_KIND_SERVER", "startTimeUnixNano": 5, "endTimeUnixNano": "9",
            "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
            "attributes": [{"key": "n", "value": {"intValue": 7}},
                           {"key": "a", "value": {"arrayValue": {"values": [{"boolValue": true}]}}}]
        }]}]}]});
        let s = &parse_otlp(&doc).unwrap()[0];
        assert_eq!(s.trace_id, "ab");
        assert_eq!(s.service, "unknown");
        assert_eq!(s.kind, "server");
        assert_eq!((s.start_ns, s.end_ns), (5, 9));
        assert_eq!(s.status, "error");
        assert_eq!(s.parent_span_id, None);
        assert_eq!(s.attribute("n"), Some(&json!(7)));
        assert_eq!(s.attribute("a"), Some(&json!([true])));
        assert!(shown_attributes(s).contains("status=ERROR(boom)"));
        assert!(parse_otlp(&json!({"data": []})).is_err());
    }

    #[test]
    fn tree_order_puts_every_span_once_under_its_parent_sorted_by_start() {
        let spans = fixture();
        let order = tree_order(&spans);
        assert_eq!(order.len(), spans.len());
        let mut seen = HashSet::new();
        for n in &order {
            assert!(seen.insert(n.index), "span listed twice");
        }
        assert_eq!(spans[order[0].index].name, "raftctl put");
        assert_eq!(order[0].depth, 0);
        let pos: HashMap<&str, usize> = order
            .iter()
            .enumerate()
            .map(|(p, n)| (spans[n.index].span_id.as_str(), p))
            .collect();
        for (p, n) in order.iter().enumerate().skip(1) {
            let s = &spans[n.index];
            let parent = s
                .parent_span_id
                .as_deref()
                .expect("one root in a whole trace");
            let pp = pos[parent];
            assert!(pp < p, "{} listed before its parent", s.name);
            assert_eq!(n.depth, order[pp].depth + 1, "{}", s.name);
            assert!(!n.orphan);
        }
        // Siblings by start: the leader's two AppendEntries clients, then its apply.
        let propose = by_name(&spans, "raft.propose", "raft-node/node-0");
        let kids: Vec<&Span> = order
            .iter()
            .map(|n| &spans[n.index])
            .filter(|s| s.parent_span_id.as_deref() == Some(propose.span_id.as_str()))
            .collect();
        let names: Vec<&str> = kids.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "raftkv.v1.RaftPeer/AppendEntries",
                "raftkv.v1.RaftPeer/AppendEntries",
                "raft.apply"
            ]
        );
        assert!(kids.windows(2).all(|w| w[0].start_ns <= w[1].start_ns));
        // Depth of the deepest span: put > Put server > Put client > Put server
        // > propose > AE client > AE server > log.append.
        assert_eq!(order.iter().map(|n| n.depth).max(), Some(7));
    }

    #[test]
    fn a_span_whose_parent_is_missing_is_shown_at_the_top_level() {
        let mut spans = fixture();
        // Drop node-1's KV/Put server span (as if node-1 had not exported it yet).
        spans.retain(|s| {
            !(s.name == "raftkv.v1.KV/Put"
                && s.process() == "raft-node/node-1"
                && s.kind == "server")
        });
        assert_eq!(spans.len(), 13);
        let order = tree_order(&spans);
        assert_eq!(order.len(), 13);
        let tops: Vec<&Node> = order.iter().filter(|n| n.depth == 0).collect();
        assert_eq!(tops.len(), 2);
        assert!(!tops[0].orphan);
        assert!(tops[1].orphan);
        let orphan = &spans[tops[1].index];
        assert_eq!(orphan.name, "raftkv.v1.KV/Put");
        assert_eq!(orphan.kind, "client");
        // Its subtree follows it.
        let after = order.iter().position(|n| n.index == tops[1].index).unwrap();
        assert_eq!(order.len() - after, 12);
        let sum = summarize(&spans).unwrap();
        assert_eq!(sum.orphans, 1);
        assert_eq!(sum.root_name, "raftctl put");
        let text = render_waterfall(&spans, 20);
        assert!(
            text.lines()
                .next()
                .unwrap()
                .contains("1 with a missing parent")
        );
        let line = text
            .lines()
            .find(|l| l.contains("(parent missing)"))
            .unwrap();
        assert!(line.contains("raft-node/node-1"), "{line}");
        assert_eq!(trace_json(&spans)["spans_with_missing_parent"], 1);
    }

    #[test]
    fn a_trace_without_the_servers_spans_does_not_look_complete() {
        let spans = fixture();
        assert!(summarize(&spans).unwrap().looks_complete());
        // Only raftctl has exported so far.
        let root: Vec<Span> = spans
            .iter()
            .filter(|s| s.service == "raftctl")
            .cloned()
            .collect();
        let sum = summarize(&root).unwrap();
        assert_eq!((sum.orphans, sum.unanswered), (0, 1));
        assert!(!sum.looks_complete());
        // node-2 has not exported: the leader's AppendEntries to it is unanswered.
        let mut partial: Vec<Span> = spans
            .iter()
            .filter(|s| s.process() != "raft-node/node-2")
            .cloned()
            .collect();
        assert_eq!(summarize(&partial).unwrap().unanswered, 1);
        // A client span that failed has no server span to wait for.
        let ae = partial
            .iter_mut()
            .find(|s| {
                s.kind == "client"
                    && s.name.ends_with("AppendEntries")
                    && !spans.iter().any(|c| {
                        c.parent_span_id.as_deref() == Some(s.span_id.as_str())
                            && c.process() != "raft-node/node-2"
                    })
            })
            .unwrap();
        ae.attributes
            .retain(|(k, _)| k != "rpc.response.status_code");
        ae.attributes
            .push(("rpc.response.status_code".into(), json!("UNAVAILABLE")));
        assert!(summarize(&partial).unwrap().looks_complete());
    }

    #[test]
    fn a_parent_cycle_does_not_hide_or_repeat_spans() {
        let mut spans = fixture();
        spans.truncate(2);
        let (a, b) = (spans[0].span_id.clone(), spans[1].span_id.clone());
        spans[0].parent_span_id = Some(b);
        spans[1].parent_span_id = Some(a);
        let order = tree_order(&spans);
        assert_eq!(order.len(), 2);
        assert_ne!(order[0].index, order[1].index);
    }

    #[test]
    fn summary_names_root_services_and_instances() {
        let sum = summarize(&fixture()).unwrap();
        assert_eq!(sum.trace_id, TRACE);
        assert_eq!(
            (sum.root_service.as_str(), sum.root_name.as_str()),
            ("raftctl", "raftctl put")
        );
        assert_eq!(sum.span_count, 14);
        assert_eq!(sum.services, ["raft-node", "raftctl"]);
        assert_eq!(
            sum.processes,
            [
                "raft-node/node-0",
                "raft-node/node-1",
                "raft-node/node-2",
                "raftctl"
            ]
        );
        assert_eq!(sum.orphans, 0);
        // The root spans the whole trace here.
        let root = by_name(&fixture(), "raftctl put", "raftctl").clone();
        assert_eq!(sum.start_ns, root.start_ns);
        assert_eq!(sum.duration_ns, root.duration_ns());
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn bars_are_exactly_as_wide_as_asked_and_at_least_one_cell() {
        assert_eq!(bar(0, 100, 100, 10), "██████████");
        assert_eq!(bar(50, 0, 100, 10), "·····█····");
        assert_eq!(bar(100, 0, 100, 10), "·········█");
        assert_eq!(bar(0, 0, 0, 4), "█···");
        assert_eq!(bar(25, 50, 100, 4), "·██·");
        for (o, d) in [(0, 1), (3, 7), (99, 1), (10, 90)] {
            assert_eq!(bar(o, d, 100, 7).chars().count(), 7);
        }
    }

    #[test]
    fn waterfall_lines_are_aligned_and_carry_the_raft_attributes() {
        let spans = fixture();
        let text = render_waterfall(&spans, BAR_WIDTH);
        let lines: Vec<&str> = text.lines().collect();
        // Header, column titles, 14 spans, 1 event.
        assert_eq!(lines.len(), 2 + 14 + 1, "{text}");
        assert!(lines[0].starts_with(&format!(
            "trace {TRACE}  root raftctl: raftctl put  duration "
        )));
        assert!(lines[0].contains("spans 14"));
        assert!(lines[0].contains("raft-node/node-0,raft-node/node-1,raft-node/node-2,raftctl"));
        // Every line has its bar in the TIMELINE column, BAR_WIDTH wide.
        let bar_at = lines[1][..lines[1].find("TIMELINE").unwrap()]
            .chars()
            .count();
        for l in &lines[2..] {
            let bar: String = l.chars().skip(bar_at).take(BAR_WIDTH).collect();
            assert!(bar.chars().all(|c| "█· |".contains(c)), "{l:?}: {bar:?}");
        }
        assert!(lines[2].contains("raftctl put"));
        assert!(
            lines[2].contains(&"█".repeat(BAR_WIDTH)),
            "the root spans the trace"
        );
        let propose = lines.iter().find(|l| l.contains("raft.propose")).unwrap();
        assert!(propose.contains("raft-node/node-0"));
        assert!(
            propose.contains("node=8900404755145069 term=1 index=3"),
            "{propose}"
        );
        let event_line = lines
            .iter()
            .position(|l| l.contains("• raft.committed"))
            .unwrap();
        assert!(lines[event_line].contains("raft.index=3"));
        assert!(
            lines[event_line - 1].contains("raft.propose"),
            "the event follows its span"
        );
        let ae = lines
            .iter()
            .find(|l| l.contains("raft-node/node-0") && l.contains("AppendEntries"))
            .unwrap();
        assert!(
            ae.contains("target=") && ae.contains("entries=1") && ae.contains("rpc=OK"),
            "{ae}"
        );
        // Tree glyphs: the deepest lines are drawn below their parents.
        assert!(
            lines.iter().any(|l| l.contains("│     ├─ raft.log.append")),
            "{text}"
        );
        assert!(
            lines.iter().any(|l| l.contains("│     └─ raft.apply")),
            "{text}"
        );
    }

    #[test]
    fn log_events_show_their_fields_without_level_and_target() {
        let mut spans = fixture();
        let ae = spans
            .iter_mut()
            .find(|s| s.kind == "client" && s.name.ends_with("AppendEntries"))
            .unwrap();
        ae.events.push(Event {
            name: "fault injected".into(),
            time_ns: ae.start_ns + 1_000,
            attributes: vec![
                ("fault.kind".into(), json!("peer_rpc_drop")),
                ("level".into(), json!("DEBUG")),
                ("target".into(), json!("raftkv_node::observability::faults")),
            ],
        });
        let text = render_waterfall(&spans, BAR_WIDTH);
        let line = text
            .lines()
            .find(|l| l.contains("• fault injected"))
            .unwrap();
        assert!(
            line.trim_end().ends_with("fault.kind=peer_rpc_drop"),
            "{line}"
        );
        let doc = trace_json(&spans);
        let ev = doc["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|s| {
                s["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["name"] == "fault injected")
                    .cloned()
            })
            .unwrap();
        assert_eq!(ev["attributes"]["level"], "DEBUG");
    }

    /// A put with `RAFTKV_FAULT_PEER_DROP_PCT=25 RAFTKV_FAULT_PEER_DELAY=2ms..6ms`
    /// (real Jaeger): one AppendEntries dropped (DEADLINE_EXCEEDED), one delayed.
    const PUT_FAULT_DROP: &str = include_str!("../tests/testdata/trace_put_fault_drop.json");

    #[test]
    fn injected_faults_and_failed_rpcs_are_on_the_waterfall() {
        let spans = parse_otlp(&serde_json::from_str(PUT_FAULT_DROP).unwrap()).unwrap();
        let failed = spans.iter().find(|s| s.status == "error").unwrap();
        assert_eq!(failed.kind, "client");
        // The dropped request has no server span, and the trace is still whole.
        assert!(summarize(&spans).unwrap().looks_complete());
        let text = render_waterfall(&spans, BAR_WIDTH);
        let line = text
            .lines()
            .find(|l| l.contains("rpc=DEADLINE_EXCEEDED"))
            .unwrap();
        assert!(
            line.contains("error=DEADLINE_EXCEEDED status=ERROR"),
            "{line}"
        );
        let drop = text
            .lines()
            .find(|l| l.contains("• fault.injected") && l.contains("fault.kind=peer_rpc_drop"));
        assert!(drop.is_some(), "{text}");
        let delay = text
            .lines()
            .find(|l| l.contains("• fault.injected") && l.contains("peer_rpc_delay"))
            .unwrap();
        assert!(delay.contains("fault.delay_ms="), "{delay}");
    }

    #[test]
    fn trace_json_has_a_stable_shape() {
        let doc = trace_json(&fixture());
        assert_eq!(doc["trace_id"], TRACE);
        assert_eq!(doc["span_count"], 14);
        assert_eq!(doc["root"]["name"], "raftctl put");
        let spans = doc["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 14);
        let root = &spans[0];
        assert_eq!(root["parent_span_id"], Value::Null);
        assert_eq!(root["depth"], 0);
        assert_eq!(root["offset_us"], 0);
        assert_eq!(root["kind"], "client");
        assert_eq!(root["service"], "raftctl");
        assert_eq!(root["instance"], Value::Null);
        assert_eq!(root["duration_us"], doc["duration_us"]);
        let propose = spans.iter().find(|s| s["name"] == "raft.propose").unwrap();
        assert_eq!(propose["instance"], "node-0");
        assert_eq!(propose["attributes"]["raft.term"], "1");
        assert_eq!(propose["events"][0]["name"], "raft.committed");
        assert!(propose["events"][0]["offset_us"].as_u64().unwrap() > 0);
        for key in ["span_id", "name", "start_unix_us", "status", "links"] {
            assert!(propose.get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn list_is_newest_first_limited_and_aged() {
        let a = fixture();
        let mut b = fixture();
        for s in &mut b {
            s.trace_id = "00000000000000000000000000000b0b".into();
            s.start_ns += 60_000_000_000;
            s.end_ns += 60_000_000_000;
        }
        let mut all = a.clone();
        all.extend(b);
        let groups = group_by_trace(all);
        assert_eq!(groups.len(), 2);
        let sums: Vec<Summary> = groups.values().filter_map(|s| summarize(s)).collect();
        let newest_two = newest(sums.clone(), 5);
        assert_eq!(newest_two[0].trace_id, "00000000000000000000000000000b0b");
        assert_eq!(newest(sums, 1).len(), 1);
        let now = a[0].start_ns + 125_000_000_000;
        let text = render_list(&newest_two, now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("TRACE ID"));
        let cells: Vec<&str> = lines[1]
            .split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            cells,
            [
                "00000000000000000000000000000b0b",
                "raftctl: raftctl put",
                "14",
                "raft-node,raftctl",
                "4.10ms",
                "65s"
            ]
        );
        assert!(lines[1].trim_end().ends_with("65s"), "{text}");
        assert!(lines[2].trim_end().ends_with("2m"), "{text}");
        let doc = list_json(&newest_two);
        assert_eq!(doc["traces"][1]["trace_id"], TRACE);
        assert_eq!(doc["traces"][1]["span_count"], 14);
    }

    #[test]
    fn durations_and_ages_read_like_kubectl() {
        assert_eq!(format_duration(812_345), "812µs");
        assert_eq!(format_duration(4_100_000), "4.10ms");
        assert_eq!(format_duration(1_234_000_000), "1.23s");
        assert_eq!(format_duration(125_000_000_000), "2m05s");
        assert_eq!(format_age(45_000_000_000), "45s");
        assert_eq!(format_age(3_600_000_000_000), "60m");
        assert_eq!(format_age(3 * 3_600_000_000_000), "3h");
        assert_eq!(format_age(50 * 3_600_000_000_000), "2d");
    }
}
