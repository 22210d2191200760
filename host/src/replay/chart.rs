//! SVG charts of the replay report (daily cost per target, local share by day, cost
//! against quality), written by hand so the report needs no drawing or font dependencies.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::report::{PolicyReport, Report};

const WIDTH: f64 = 900.0;
const PANEL: f64 = 340.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 290.0;
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
    date_labels(out, &dates, x_of, y0 + PANEL - BOTTOM + 16.0);
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

/// About eight of `dates` (and the last) under the x axis at height `y`, `MM-DD`.
fn date_labels(out: &mut String, dates: &[&str], x_at: impl Fn(usize) -> f64, y: f64) {
    let every = (dates.len() / 8).max(1);
    for (i, d) in dates.iter().enumerate() {
        if i % every == 0 || i + 1 == dates.len() {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{y:.1}" font-size="10" text-anchor="middle">{}</text>"#,
                x_at(i),
                escape(d.get(5..).unwrap_or(d))
            );
        }
    }
}

/// Grid lines and labels at 0, 25, 50, 75 and 100 % of a share axis (`y_of` maps 0..1).
fn percent_grid(out: &mut String, y_of: impl Fn(f64) -> f64) {
    let plot_w = WIDTH - LEFT - RIGHT;
    for pct in [0, 25, 50, 75, 100] {
        let y = y_of(f64::from(pct) / 100.0);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{pct} %</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0
        );
    }
}

/// Share of each day's requests a local backend served, one line per policy.
pub fn local_share_svg(report: &Report) -> String {
    let height = PANEL;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = PANEL - TOP - BOTTOM;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" role="img" aria-label="Local share by day">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="22" font-size="15" font-weight="bold">Local share by day (requests a local backend served)</text>"#
    );
    let dates: Vec<&str> = report
        .policies
        .iter()
        .max_by_key(|p| p.daily.len())
        .map(|p| p.daily.iter().map(|d| d.date.as_str()).collect())
        .unwrap_or_default();
    let x_at = |i: usize| {
        if dates.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (dates.len() - 1) as f64
        }
    };
    let x_of = |date: &str| x_at(dates.iter().position(|d| *d == date).unwrap_or(0));
    let y_of = |share: f64| TOP + plot_h - plot_h * share;
    percent_grid(&mut out, y_of);
    date_labels(&mut out, &dates, x_at, PANEL - BOTTOM + 16.0);
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#888"/>"##
    );
    // Dashed for the second policy, so the lines part without colour too.
    for (n, p) in report.policies.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let dash = if n % 2 == 1 {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let points: Vec<String> = p
            .daily
            .iter()
            .map(|d| {
                let share = if d.requests == 0 {
                    0.0
                } else {
                    d.local_requests as f64 / d.requests as f64
                };
                format!("{:.1},{:.1}", x_of(&d.date), y_of(share))
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
            points.join(" ")
        );
        let ly = TOP + 10.0 + 18.0 * n as f64;
        let lx = LEFT + plot_w + 14.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"{dash}/><text x="{:.1}" y="{:.1}" font-size="11">{} ({:.1} %)</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            escape(&p.policy),
            p.local_share * 100.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Opens a chart of total cost (x, from 0) against a share (y, 0–100 %): the title, the
/// percent grid, the cost ticks and the frame with its caption (all already escaped).
/// Returns the x and y of a cost and a share.
fn cost_percent_frame(
    out: &mut String,
    max_cost: f64,
    aria: &str,
    title: &str,
    caption: &str,
) -> (impl Fn(f64) -> f64 + use<>, impl Fn(f64) -> f64 + use<>) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = PANEL - TOP - BOTTOM;
    let (xmax, xstep) = nice_axis(max_cost);
    let x_of = move |usd: f64| LEFT + plot_w * usd / xmax;
    let y_of = move |q: f64| TOP + plot_h - plot_h * q.clamp(0.0, 1.0);
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{PANEL}" viewBox="0 0 {WIDTH} {PANEL}" font-family="sans-serif" role="img" aria-label="{aria}">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="22" font-size="15" font-weight="bold">{title}</text>"#
    );
    percent_grid(out, y_of);
    let mut v = 0.0;
    while v <= xmax + xstep / 2.0 {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
            x_of(v),
            PANEL - BOTTOM + 16.0,
            super::report::usd(v)
        );
        v += xstep;
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#888"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{caption}</text>"##,
        LEFT + plot_w / 2.0,
        PANEL - 8.0
    );
    (x_of, y_of)
}

/// Each policy's cost against its quality over the labelled requests (`--labels`), with
/// random routing at the same shares per backend beside it; `None` without labels.
pub fn cost_quality_svg(report: &Report) -> Option<String> {
    let points: Vec<(&PolicyReport, &super::quality::QualityReport)> = report
        .policies
        .iter()
        .filter_map(|p| p.quality.as_ref().map(|q| (p, q)))
        .collect();
    if points.is_empty() {
        return None;
    }
    let mut out = String::new();
    let (x_of, y_of) = cost_percent_frame(
        &mut out,
        points.iter().map(|(p, _)| p.cost_usd).fold(0.0, f64::max),
        "Cost against quality",
        "Cost against quality (labelled requests)",
        "total cost (USD); quality: mean over labelled requests",
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    for (n, (p, q)) in points.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let (x, y, yr) = (
            x_of(p.cost_usd),
            y_of(q.quality),
            y_of(q.random_same_shares),
        );
        // Filled: the policy; hollow: random routing with the same shares.
        let _ = writeln!(
            out,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="6" fill="{color}"/><circle cx="{x:.1}" cy="{yr:.1}" r="6" fill="white" stroke="{color}" stroke-width="2"/>"#
        );
        let ly = TOP + 10.0 + 36.0 * n as f64;
        let lx = LEFT + plot_w + 14.0;
        let _ = writeln!(
            out,
            r#"<text x="{lx:.1}" y="{ly:.1}" font-size="11">● {} {:.1} %</text><text x="{lx:.1}" y="{:.1}" font-size="11">○ random, same shares {:.1} %</text>"#,
            escape(&p.policy),
            q.quality * 100.0,
            ly + 15.0,
            q.random_same_shares * 100.0
        );
    }
    out.push_str("</svg>\n");
    Some(out)
}

/// A sweep's curve: each value's total cost against its quality (`--labels`; random routing
/// at the same shares beside it, hollow) or, without labels, its local share.
pub fn sweep_svg(sweep: &super::sweep::Sweep) -> String {
    let labelled = sweep.points.iter().any(|p| p.quality.is_some());
    let what = if labelled { "quality" } else { "local share" };
    let (param, policy) = (escape(&sweep.param), escape(&sweep.policy));
    let mut out = String::new();
    let (x_of, y_of) = cost_percent_frame(
        &mut out,
        sweep.points.iter().map(|p| p.cost_usd).fold(0.0, f64::max),
        &format!("Cost against {what}, sweep of {param}"),
        &format!("Cost against {what}: {param} swept ({policy})"),
        &format!("total cost (USD); {what} per value of {param}"),
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let color = COLORS[0];
    let curve = |y: &dyn Fn(&super::sweep::SweepPoint) -> Option<f64>| -> String {
        sweep
            .points
            .iter()
            .filter_map(|p| Some(format!("{:.1},{:.1}", x_of(p.cost_usd), y_of(y(p)?))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if labelled {
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="4 3"/>"#,
            curve(&|p| p.random_same_shares)
        );
    }
    let main = |p: &super::sweep::SweepPoint| {
        if labelled {
            p.quality
        } else {
            Some(p.local_share)
        }
    };
    let _ = writeln!(
        out,
        r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
        curve(&main)
    );
    for p in &sweep.points {
        let x = x_of(p.cost_usd);
        if let Some(r) = p.random_same_shares {
            let _ = writeln!(
                out,
                r#"<circle cx="{x:.1}" cy="{:.1}" r="4" fill="white" stroke="{color}" stroke-width="2"/>"#,
                y_of(r)
            );
        }
        if let Some(y) = main(p) {
            let y = y_of(y);
            let _ = writeln!(
                out,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="{color}"><title>{}={}</title></circle><text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
                escape(&sweep.param),
                escape(&p.value),
                y - 9.0,
                escape(&p.value)
            );
        }
    }
    let lx = LEFT + plot_w + 14.0;
    let _ = writeln!(
        out,
        r#"<text x="{lx:.1}" y="{:.1}" font-size="11">● {} by {}</text>"#,
        TOP + 10.0,
        escape(&sweep.policy),
        escape(&sweep.param)
    );
    if labelled {
        let _ = writeln!(
            out,
            r#"<text x="{lx:.1}" y="{:.1}" font-size="11">○ random routing, same shares</text>"#,
            TOP + 26.0
        );
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
