//! Throughput-vs-latency curves as one SVG: two panels side by side (p50 left,
//! p99 right), x = throughput (linear, from 0), y = latency (log scale: the
//! sweep spans 1 to 256 clients, so latency spans two decades). One line per
//! system, each point labelled with its client count. Pure and deterministic:
//! the same series give the same bytes, so the committed pictures diff cleanly.

use std::fmt::Write;

use super::run_doc::{Point, Series};

const WIDTH_PX: f64 = 980.0;
const HEIGHT_PX: f64 = 440.0;
const PANEL_WIDTH_PX: f64 = WIDTH_PX / 2.0;
/// Inside a panel: room for the y tick labels (left), the x ticks (bottom),
/// the panel title and legend (top).
const MARGIN_LEFT_PX: f64 = 62.0;
const MARGIN_RIGHT_PX: f64 = 18.0;
const MARGIN_TOP_PX: f64 = 56.0;
const MARGIN_BOTTOM_PX: f64 = 48.0;
const FONT_PX: f64 = 12.0;
/// etcd (the reference) first, then raftkv, as `RunDoc::systems` orders them.
const PALETTE: &[&str] = &["#4e79a7", "#e15759", "#59a14f", "#b07aa1"];
/// Ticks aimed at on the throughput axis.
const X_TICKS_TARGET: f64 = 5.0;

#[derive(Clone, Copy)]
enum Latency {
    P50,
    P99,
}

impl Latency {
    fn of(self, p: &Point) -> f64 {
        match self {
            Latency::P50 => p.p50_ms,
            Latency::P99 => p.p99_ms,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Latency::P50 => "p50",
            Latency::P99 => "p99",
        }
    }
}

/// A step of 1, 2 or 5 times a power of ten giving about `target` ticks over `span`.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// Numbers as people write them on an axis: 12000 -> "12k", 0.5 -> "0.5".
fn short_number(v: f64) -> String {
    if v >= 1000.0 {
        let k = v / 1000.0;
        if (k - k.round()).abs() < 1e-9 {
            format!("{}k", k.round())
        } else {
            format!("{k:.1}k")
        }
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round())
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Log-scale ticks at 1, 2, 5 x 10^k inside [lo, hi].
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let t = m * decade;
            if t >= lo && t <= hi {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG document: `title` above both panels, one line per series.
/// Series without points are skipped; no point at all gives an empty frame.
pub fn render(title: &str, series: &[Series]) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{HEIGHT_PX}" viewBox="0 0 {WIDTH_PX} {HEIGHT_PX}" font-family="sans-serif" font-size="{FONT_PX}">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="20" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        WIDTH_PX / 2.0,
        escape(title)
    );
    // Legend: one swatch per system, centred under the title.
    for (i, s) in series.iter().enumerate() {
        let x = WIDTH_PX / 2.0 - 90.0 + i as f64 * 110.0;
        let colour = PALETTE[i % PALETTE.len()];
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" y1="36" x2="{}" y2="36" stroke="{colour}" stroke-width="3"/><text x="{}" y="40">{}</text>"#,
            x + 22.0,
            x + 28.0,
            escape(&s.system)
        );
    }
    let all: Vec<&Point> = series.iter().flat_map(|s| &s.points).collect();
    for (panel, latency) in [Latency::P50, Latency::P99].into_iter().enumerate() {
        render_panel(
            &mut svg,
            panel as f64 * PANEL_WIDTH_PX,
            latency,
            series,
            &all,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn render_panel(svg: &mut String, left: f64, latency: Latency, series: &[Series], all: &[&Point]) {
    let (x0, x1) = (
        left + MARGIN_LEFT_PX,
        left + PANEL_WIDTH_PX - MARGIN_RIGHT_PX,
    );
    let (y0, y1) = (HEIGHT_PX - MARGIN_BOTTOM_PX, MARGIN_TOP_PX);
    let _ = writeln!(
        svg,
        r##"<rect x="{x0}" y="{y1}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
        x1 - x0,
        y0 - y1
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">throughput (requests/s)</text>"#,
        (x0 + x1) / 2.0,
        HEIGHT_PX - 10.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{} latency (ms, log scale)</text>"#,
        left + 14.0,
        (y0 + y1) / 2.0,
        left + 14.0,
        (y0 + y1) / 2.0,
        latency.name()
    );
    if all.is_empty() {
        return;
    }
    let x_max = all.iter().map(|p| p.throughput).fold(0.0, f64::max) * 1.08;
    let step = nice_step(x_max, X_TICKS_TARGET);
    let x_max = (x_max / step).ceil() * step;
    let lats: Vec<f64> = all
        .iter()
        .map(|p| latency.of(p))
        .filter(|v| *v > 0.0)
        .collect();
    let lo = lats.iter().copied().fold(f64::INFINITY, f64::min) / 1.3;
    let hi = lats.iter().copied().fold(0.0, f64::max) * 1.3;
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.1, 10.0)
    };
    let sx = |v: f64| x0 + v / x_max * (x1 - x0);
    let sy = |v: f64| y0 - (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()) * (y0 - y1);

    let mut t = 0.0;
    while t <= x_max + step / 2.0 {
        let x = sx(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            y0 + 16.0,
            short_number(t)
        );
        t += step;
    }
    for tick in log_ticks(lo, hi) {
        let y = sy(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 4.0,
            y + 4.0,
            short_number(tick)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let coords: Vec<String> = s
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", sx(p.throughput), sy(latency.of(p))))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            coords.join(" ")
        );
        for p in &s.points {
            let (x, y) = (sx(p.throughput), sy(latency.of(p)));
            // Labels above etcd's points and below raftkv's, so that two
            // systems' points at the same spot stay readable.
            let dy = if i % 2 == 0 { -7.0 } else { 15.0 };
            let _ = writeln!(
                svg,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{colour}"><title>{} {} clients: {:.0} req/s, {} {:.2} ms</title></circle><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="{colour}">{}</text>"#,
                escape(&s.system),
                p.clients,
                p.throughput,
                latency.name(),
                latency.of(p),
                y + dy,
                p.clients
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_doc::tests::sample;

    #[test]
    fn every_point_appears_with_its_client_count() {
        let doc = sample();
        let svg = render("writes", &doc.series("put"));
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        // 4 points (etcd and raftkv, 1 and 64 clients), in each of 2 panels.
        assert_eq!(svg.matches("<circle").count(), 8);
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("etcd 64 clients: 6500 req/s, p99 25.00 ms"));
        assert!(svg.contains("raftkv 1 clients: 900 req/s, p50 0.50 ms"));
        assert!(svg.contains(">etcd</text>"));
        assert!(svg.contains(">raftkv</text>"));
    }

    #[test]
    fn higher_latency_is_drawn_higher_and_more_throughput_further_right() {
        let doc = sample();
        let svg = render("writes", &doc.series("put"));
        let centre = |needle: &str| -> (f64, f64) {
            let at = svg.find(needle).unwrap();
            let tag = &svg[svg[..at].rfind("<circle").unwrap()..at];
            let attr = |name: &str| -> f64 {
                let s = &tag[tag.find(name).unwrap() + name.len()..];
                s[..s.find('"').unwrap()].parse().unwrap()
            };
            (attr("cx=\""), attr("cy=\""))
        };
        let slow = centre("etcd 64 clients: 6500 req/s, p99");
        let fast = centre("etcd 1 clients: 1000 req/s, p99");
        assert!(slow.0 > fast.0);
        assert!(slow.1 < fast.1, "SVG y grows downwards: {slow:?} {fast:?}");
    }

    #[test]
    fn same_series_give_the_same_bytes() {
        let doc = sample();
        assert_eq!(
            render("r", &doc.series("put")),
            render("r", &doc.series("put"))
        );
    }

    #[test]
    fn no_points_gives_an_empty_frame() {
        let svg = render("nothing", &[]);
        assert!(!svg.contains("<circle"));
        assert!(svg.contains("</svg>"));
    }

    #[test]
    fn axis_helpers() {
        assert_eq!(nice_step(10_000.0, 5.0), 2000.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
        assert_eq!(short_number(12000.0), "12k");
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(0.5), "0.5");
        assert_eq!(log_ticks(0.3, 30.0), vec![0.5, 1.0, 2.0, 5.0, 10.0, 20.0]);
    }
}
