//! `raftctl trace get --svg FILE`: the waterfall as an SVG picture, for docs.
//! Pure: the same [`waterfall::lines`] as the text waterfall, laid out in a
//! fixed grid of monospace cells (no font metrics, no clock, no I/O), so a
//! trace always gives the same bytes.
//!
//! Layout, left to right: PROCESS, SPAN (tree glyphs and name), TIMELINE (a
//! bar per span, coloured by process, red when the span failed; a diamond per
//! event), ATTRIBUTES. A time axis with five ticks sits above the rows.

use std::fmt::Write;

use super::waterfall::{self, Line, Span, format_duration};

/// Font size of every text (px), and the width of one monospace cell at that
/// size (DejaVu Sans Mono and most others: 0.6 em).
const FONT_PX: f64 = 12.0;
const CELL_PX: f64 = 7.2;
/// Height of one line (span or event).
const ROW_PX: f64 = 18.0;
/// Margin around everything, and the gap between columns.
const PAD_PX: f64 = 10.0;
const GAP_PX: f64 = 14.0;
/// Width of the timeline column.
pub const TIMELINE_PX: f64 = 420.0;
/// Ticks of the time axis (the ends included).
const TICKS: u32 = 4;
/// One colour per process, in the order of `Summary::processes`.
const PALETTE: &[&str] = &[
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#bab0ac",
];
const ERROR_COLOUR: &str = "#d62728";
/// Longest text kept in a column (characters); longer text is cut with `…`.
const COLUMN_CHARS_MAX: usize = 110;

/// The SVG document of one trace (`None` without spans).
pub fn render_svg(spans: &[Span]) -> Option<String> {
    let (sum, lines) = waterfall::lines(spans)?;
    let total = sum.duration_ns.max(1) as f64;
    let width_of = |texts: &mut dyn Iterator<Item = usize>, title: &str| {
        let chars = texts
            .max()
            .unwrap_or(0)
            .max(title.len())
            .min(COLUMN_CHARS_MAX);
        chars as f64 * CELL_PX
    };
    let process_w = width_of(
        &mut lines.iter().map(|l| l.process.chars().count()),
        "PROCESS",
    );
    let label_w = width_of(&mut lines.iter().map(|l| l.label.chars().count()), "SPAN");
    let attrs_w = width_of(
        &mut lines.iter().map(|l| l.attributes.chars().count()),
        "ATTRIBUTES",
    );
    let header = waterfall::header(&sum);
    let x_process = PAD_PX;
    let x_label = x_process + process_w + GAP_PX;
    let x_timeline = x_label + label_w + GAP_PX;
    let x_attrs = x_timeline + TIMELINE_PX + GAP_PX;
    let width =
        (x_attrs + attrs_w + PAD_PX).max(2.0 * PAD_PX + header.chars().count() as f64 * CELL_PX);
    // Header line, column titles + axis labels, then the rows.
    let y_titles = PAD_PX + 2.0 * ROW_PX;
    let y_rows = y_titles + ROW_PX * 0.5;
    let height = y_rows + lines.len() as f64 * ROW_PX + PAD_PX;
    let x_at = |ns: u64| x_timeline + (ns as f64 / total) * TIMELINE_PX;

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{FONT_PX}">"#,
        w = px(width),
        h = px(height),
    );
    let _ = writeln!(o, "<title>{}</title>", escape(&header));
    let _ = writeln!(
        o,
        r##"<rect x="0" y="0" width="{}" height="{}" fill="#ffffff"/>"##,
        px(width),
        px(height)
    );
    text_cut(
        &mut o,
        PAD_PX,
        PAD_PX + ROW_PX * 0.75,
        &header,
        "font-weight=\"bold\"",
        usize::MAX,
    );
    for (x, title) in [
        (x_process, "PROCESS"),
        (x_label, "SPAN"),
        (x_attrs, "ATTRIBUTES"),
    ] {
        text(&mut o, x, y_titles - 4.0, title, r##"fill="#555555""##);
    }
    // Stripes first, so the grid and the bars are drawn over them.
    for (i, _) in lines.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        let _ = writeln!(
            o,
            r##"<rect x="0" y="{}" width="{}" height="{}" fill="#f3f3f3"/>"##,
            px(y_rows + i as f64 * ROW_PX),
            px(width),
            px(ROW_PX)
        );
    }
    for t in 0..=TICKS {
        let ns = (sum.duration_ns as f64 * f64::from(t) / f64::from(TICKS)) as u64;
        let x = x_at(ns);
        let _ = writeln!(
            o,
            r##"<line class="tick" x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#cccccc" stroke-width="1"/>"##,
            px(y_rows),
            px(height - PAD_PX),
            x = px(x)
        );
        let anchor = match t {
            0 => "start",
            TICKS => "end",
            _ => "middle",
        };
        text(
            &mut o,
            x,
            y_titles - 4.0,
            &format_duration(ns),
            &format!(r##"fill="#555555" text-anchor="{anchor}""##),
        );
    }
    for (i, l) in lines.iter().enumerate() {
        let top = y_rows + i as f64 * ROW_PX;
        let baseline = top + ROW_PX * 0.72;
        row(
            &mut o,
            l,
            top,
            baseline,
            &sum.processes,
            &x_at,
            [x_process, x_label, x_attrs],
        );
    }
    o.push_str("</svg>\n");
    Some(o)
}

/// One span or event line.
fn row(
    o: &mut String,
    l: &Line,
    top: f64,
    baseline: f64,
    processes: &[String],
    x_at: &dyn Fn(u64) -> f64,
    [x_process, x_label, x_attrs]: [f64; 3],
) {
    match l.duration_ns {
        Some(d) => {
            let colour = if l.error {
                ERROR_COLOUR
            } else {
                let i = processes.iter().position(|p| *p == l.process).unwrap_or(0);
                PALETTE[i % PALETTE.len()]
            };
            let x = x_at(l.offset_ns);
            // At least 2 px, so a span of a few microseconds still shows.
            let w = (x_at(l.offset_ns + d) - x).max(2.0);
            let _ = writeln!(
                o,
                r#"<rect class="span" x="{}" y="{}" width="{}" height="{}" rx="2" fill="{colour}"><title>{}</title></rect>"#,
                px(x),
                px(top + 3.0),
                px(w),
                px(ROW_PX - 6.0),
                escape(&format!(
                    "{} on {}: {} at +{}",
                    l.label.trim_start_matches(['│', '├', '└', '─', ' ']),
                    l.process,
                    format_duration(d),
                    format_duration(l.offset_ns)
                ))
            );
            let duration = format_duration(d);
            let label_x = x + w + 4.0;
            // The duration right of the bar, or left of it when there is no room.
            let timeline_end = x_attrs - GAP_PX;
            let (dx, anchor) = if label_x + duration.chars().count() as f64 * CELL_PX > timeline_end
            {
                (x - 4.0, "end")
            } else {
                (label_x, "start")
            };
            text(
                o,
                dx,
                baseline,
                &duration,
                &format!(r##"fill="#333333" font-size="10" text-anchor="{anchor}""##),
            );
            text(o, x_process, baseline, &l.process, "");
        }
        None => {
            let x = x_at(l.offset_ns);
            let mid = top + ROW_PX / 2.0;
            let _ = writeln!(
                o,
                r##"<polygon class="event" points="{},{} {},{} {},{} {},{}" fill="#222222"><title>{}</title></polygon>"##,
                px(x),
                px(mid - 5.0),
                px(x + 5.0),
                px(mid),
                px(x),
                px(mid + 5.0),
                px(x - 5.0),
                px(mid),
                escape(&format!(
                    "{} at +{}",
                    l.label.trim_start_matches(['│', ' ', '•']),
                    format_duration(l.offset_ns)
                ))
            );
        }
    }
    text(o, x_label, baseline, &l.label, "");
    text(o, x_attrs, baseline, &l.attributes, "");
}

/// A text element; spaces kept (tree glyphs are indented with them).
fn text(o: &mut String, x: f64, y: f64, s: &str, extra: &str) {
    text_cut(o, x, y, s, extra, COLUMN_CHARS_MAX)
}

/// [`text`], cut with `…` after `max` characters.
fn text_cut(o: &mut String, x: f64, y: f64, s: &str, extra: &str, max: usize) {
    if s.is_empty() {
        return;
    }
    let s: String = if s.chars().count() > max {
        s.chars()
            .take(max - 1)
            .chain(std::iter::once('…'))
            .collect()
    } else {
        s.to_string()
    };
    // Leading spaces become an offset (renderers trim them); the others become
    // no-break spaces (SVG collapses runs of ordinary ones), which monospace
    // fonts draw one cell wide.
    let indent = s.chars().take_while(|c| *c == ' ').count();
    let s = escape(s.trim_start_matches(' ')).replace(' ', "\u{a0}");
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(" {extra}")
    };
    let x = x + indent as f64 * CELL_PX;
    let _ = writeln!(o, r#"<text x="{}" y="{}"{extra}>{s}</text>"#, px(x), px(y));
}

/// A coordinate with at most one decimal (stable, short output).
fn px(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waterfall::parse_otlp;

    const PUT_3_NODES: &str = include_str!("../tests/testdata/trace_put_3nodes.json");
    const PUT_FAULT_DROP: &str = include_str!("../tests/testdata/trace_put_fault_drop.json");

    fn spans(doc: &str) -> Vec<Span> {
        parse_otlp(&serde_json::from_str(doc).unwrap()).unwrap()
    }

    fn attr<'a>(element: &'a str, name: &str) -> &'a str {
        let from = element.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        let len = element[from..].find('"').unwrap();
        &element[from..from + len]
    }

    #[test]
    fn a_put_is_one_bar_per_span_and_one_diamond_per_event_inside_the_timeline() {
        let s = spans(PUT_3_NODES);
        let svg = render_svg(&s).unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        let bars: Vec<&str> = svg
            .lines()
            .filter(|l| l.starts_with("<rect class=\"span\""))
            .collect();
        assert_eq!(bars.len(), 14);
        assert_eq!(svg.matches("<polygon class=\"event\"").count(), 1);
        // The root covers the whole timeline; every bar lies inside it.
        let x0: f64 = attr(bars[0], "x").parse().unwrap();
        let w0: f64 = attr(bars[0], "width").parse().unwrap();
        assert!((w0 - TIMELINE_PX).abs() < 0.2, "{}", bars[0]);
        for b in &bars {
            let x: f64 = attr(b, "x").parse().unwrap();
            let w: f64 = attr(b, "width").parse().unwrap();
            assert!(x >= x0 - 0.05 && x + w <= x0 + w0 + 2.1, "{b}");
        }
        // One colour per process, none red: nothing failed.
        let colours: std::collections::BTreeSet<&str> =
            bars.iter().map(|b| attr(b, "fill")).collect();
        assert_eq!(colours.len(), 4, "{colours:?}");
        assert!(!colours.contains(ERROR_COLOUR));
        // The rows carry what the text waterfall carries.
        assert!(svg.contains(">raft.propose<") || svg.contains("raft.propose</text>"));
        assert!(svg.contains("node=8900404755145069\u{a0}term=1\u{a0}index=3"));
        assert!(svg.contains("•\u{a0}raft.committed"));
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        // Tree depth is an x offset, not leading spaces (renderers trim those).
        let label_x = |name: &str| -> f64 {
            let l = svg
                .lines()
                .find(|l| l.starts_with("<text") && l.ends_with(&format!("{name}</text>")))
                .unwrap_or_else(|| panic!("no label {name}"));
            assert!(!l.contains(">\u{a0}"), "{l}");
            attr(l, "x").parse().unwrap()
        };
        let root = label_x("raftctl\u{a0}put");
        let propose = label_x("raft.propose");
        assert!(propose >= root + 9.0 * CELL_PX, "{root} {propose}");
    }

    #[test]
    fn a_failed_rpc_is_red_and_text_is_escaped() {
        let mut s = spans(PUT_FAULT_DROP);
        s[0].name = "a<b & \"c\"".into();
        let svg = render_svg(&s).unwrap();
        let red = svg
            .lines()
            .filter(|l| l.starts_with("<rect class=\"span\"") && l.contains(ERROR_COLOUR))
            .count();
        assert_eq!(red, s.iter().filter(|s| s.status == "error").count());
        assert!(red >= 1);
        assert!(svg.contains("a&lt;b\u{a0}&amp;\u{a0}&quot;c&quot;"));
        assert!(!svg.contains("a<b"));
    }

    #[test]
    fn the_same_trace_gives_the_same_bytes_and_no_spans_give_none() {
        let s = spans(PUT_3_NODES);
        assert_eq!(render_svg(&s), render_svg(&s));
        assert_eq!(render_svg(&[]), None);
    }

    #[test]
    fn coordinates_are_short_and_stable() {
        assert_eq!(px(12.0), "12");
        assert_eq!(px(12.04), "12");
        assert_eq!(px(12.06), "12.1");
        assert_eq!(escape("a\nb"), "a b");
    }
}
