//! SVG line chart of daily cost per target (one panel per policy), written by hand so the
//! report needs no drawing or font dependencies.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::report::{PolicyReport, Report};

const WIDTH: f64 = 900.0;
const PANEL: f64 = 340.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 40.0;
const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" axis maximum and step (1, 2 or 5 × 10^k) covering `max`.
fn nice_axis(max: f64) -> (f64, f64) {
    if !(max.is_finite() && max > 0.0) {
        return (1.0, 0.2);
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn panel(out: &mut String, p: &PolicyReport, title: &str, y0: f64) {
    let dates: Vec<&str> = p.daily.iter().map(|d| d.date.as_str()).collect();
    let targets: BTreeSet<&str> = p
        .daily
        .iter()
        .flat_map(|d| d.by_target.keys().map(String::as_str))
        .collect();
    let max = p
        .daily
        .iter()
        .flat_map(|d| d.by_target.values().copied())
        .fold(0.0, f64::max);
    let (ymax, ystep) = nice_axis(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = PANEL - TOP - BOTTOM;
    let x_of = |i: usize| {
        if dates.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (dates.len() - 1) as f64
        }
    };
    let y_of = |v: f64| y0 + TOP + plot_h - plot_h * (v / ymax);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{:.1}" font-size="15" font-weight="bold">{}</text>"#,
        y0 + 22.0,
        escape(title)
    );
    // Grid and y labels.
    let mut v = 0.0;
    while v <= ymax + ystep / 2.0 {
        let y = y_of(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">${}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            if ystep < 1.0 {
                format!("{v:.2}")
            } else {
                format!("{v:.0}")
            }
        );
        v += ystep;
    }
    let _ = writeln!(
        out,
        r#"<text x="14" y="{:.1}" font-size="11" transform="rotate(-90 14 {:.1})" text-anchor="middle">USD per day</text>"#,
        y0 + TOP + plot_h / 2.0,
        y0 + TOP + plot_h / 2.0
    );
    // X labels: about eight dates.
    let every = (dates.len() / 8).max(1);
    for (i, d) in dates.iter().enumerate() {
        if i % every == 0 || i + 1 == dates.len() {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
                x_of(i),
                y0 + PANEL - BOTTOM + 16.0,
                escape(d.get(5..).unwrap_or(d))
            );
        }
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{:.1}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#888"/>"##,
        y0 + TOP
    );
    for (n, target) in targets.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let points: Vec<String> = p
            .daily
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let v = d.by_target.get(*target).copied().unwrap_or(0.0);
                format!("{:.1},{:.1}", x_of(i), y_of(v))
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let ly = y0 + TOP + 10.0 + 18.0 * n as f64;
        let lx = LEFT + plot_w + 14.0;
        let total: f64 = p
            .daily
            .iter()
            .filter_map(|d| d.by_target.get(*target))
            .sum();
        let _ = writeln!(
            out,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-size="11">{} ({})</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            escape(target),
            super::report::usd(total)
        );
    }
}

/// The chart: daily cost (USD) per target, one panel per policy.
pub fn daily_cost_svg(report: &Report) -> String {
    let panels = report.policies.len().max(1);
    let height = PANEL * panels as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, p) in report.policies.iter().enumerate() {
        let letter = if i == 0 { "A" } else { "B" };
        let title = format!(
            "Policy {letter}: {} — daily cost per target (total {})",
            p.policy,
            super::report::usd(p.cost_usd)
        );
        panel(&mut out, p, &title, PANEL * i as f64);
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::report::DayCost;

    #[test]
    fn axis_is_nice() {
        assert_eq!(nice_axis(3.25), (4.0, 1.0));
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
        let (max, step) = nice_axis(137.0);
        assert_eq!((max, step), (150.0, 50.0));
    }

    #[test]
    fn svg_has_a_line_per_target() {
        let mut p = PolicyReport {
            policy: "p<1>@abc".into(),
            ..PolicyReport::default()
        };
        for d in 1..=3 {
            let mut day = DayCost {
                date: format!("2026-01-0{d}"),
                ..DayCost::default()
            };
            day.by_target.insert("openai/gpt-4o".into(), 3.25);
            day.by_target.insert("local/m".into(), 0.0);
            p.daily.push(day);
        }
        let report = Report {
            policies: vec![p],
            ..Report::default()
        };
        let svg = daily_cost_svg(&report);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("p&lt;1&gt;@abc"));
        assert!(svg.contains("openai/gpt-4o ($9.75)"));
    }
}
