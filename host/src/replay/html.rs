//! `replay --html FILE`: the report as one self-contained page (no script, nothing
//! fetched): the workload, the policies side by side, charts of daily cost, local share by
//! day and (with labels) cost against quality, the baselines and break-even, and the whole
//! text report.

use std::fmt::Write as _;

use super::chart;
use super::report::{Report, group, usd};

const STYLE: &str = "body{font-family:sans-serif;margin:1rem auto;max-width:960px;padding:0 1rem;\
color:#111}table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #bbb;\
padding:.25rem .5rem}td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#eee;\
text-align:left}.wide{overflow-x:auto}svg{max-width:100%;height:auto}pre{white-space:pre;\
overflow-x:auto;background:#f6f6f6;padding:.5rem}";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

/// An HTML table: `numeric[i]` right-aligns column `i`.
fn table(out: &mut String, header: &[&str], numeric: &[bool], rows: &[Vec<String>]) {
    out.push_str("<div class=\"wide\"><table><thead><tr>");
    for h in header {
        let _ = write!(out, "<th scope=\"col\">{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if numeric.get(i).copied().unwrap_or(false) {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{}</td>", escape(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>\n");
}

/// The page.
pub fn page(report: &Report) -> String {
    let mut out = String::new();
    let w = &report.workload;
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Switchyard replay: {}</title><style>{STYLE}</style></head><body>\n\
         <h1>Switchyard replay</h1>\n<p>Workload {}: {} requests over {} day(s) ({} … {}), \
         {:.0} a day, {} tenant(s); {} tokens in, {} out; {} request(s) carry PII.</p>\n",
        escape(&w.source),
        escape(&w.source),
        group(w.requests),
        w.days,
        escape(&w.first_date),
        escape(&w.last_date),
        w.requests_per_day,
        w.tenants,
        group(w.input_tokens),
        group(w.output_tokens),
        group(w.pii_requests),
    );

    out.push_str("<h2>Policies</h2>\n");
    let labelled = report.policies.iter().any(|p| p.quality.is_some());
    let mut header = vec![
        "policy",
        "cost",
        "30-day projection",
        "local share",
        "rejected",
        "unserved",
        "capped",
        "failovers",
        "PII to cloud",
        "policy failures",
    ];
    if labelled {
        header.extend(["quality", "share of best", "random, same shares"]);
    }
    let rows: Vec<Vec<String>> = report
        .policies
        .iter()
        .map(|p| {
            let mut row = vec![
                p.policy.clone(),
                usd(p.cost_usd),
                usd(p.projection_30d_usd),
                pct(p.local_share),
                group(p.rejected),
                group(p.unserved),
                group(p.capped),
                group(p.failovers),
                group(p.pii_to_cloud),
                group(p.policy_failures.values().sum()),
            ];
            if labelled {
                match &p.quality {
                    Some(q) => row.extend([
                        pct(q.quality),
                        pct(q.share_of_best),
                        pct(q.random_same_shares),
                    ]),
                    None => row.extend(["-".to_owned(), "-".to_owned(), "-".to_owned()]),
                }
            }
            row
        })
        .collect();
    let mut numeric = vec![false];
    numeric.resize(header.len(), true);
    table(&mut out, &header, &numeric, &rows);
    if let Some(d) = &report.differences {
        let _ = writeln!(
            out,
            "<p>The second policy decided {} request(s) differently ({}).</p>",
            group(d.count),
            pct(d.share)
        );
    }

    out.push_str("<h2>Charts</h2>\n<figure>");
    out.push_str(&chart::daily_cost_svg(report));
    out.push_str("<figcaption>Daily cost per target.</figcaption></figure>\n<figure>");
    out.push_str(&chart::local_share_svg(report));
    out.push_str("<figcaption>Local share by day.</figcaption></figure>\n");
    if let Some(svg) = chart::cost_quality_svg(report) {
        out.push_str("<figure>");
        out.push_str(&svg);
        out.push_str(
            "<figcaption>Cost against quality: filled, the policy; hollow, random routing \
             with the same shares per backend.</figcaption></figure>\n",
        );
    }

    for p in &report.policies {
        let _ = writeln!(out, "<h2>{}: targets</h2>", escape(&p.policy));
        let rows: Vec<Vec<String>> = p
            .targets
            .iter()
            .map(|t| {
                vec![
                    t.target.clone(),
                    group(t.requests),
                    group(t.input_tokens),
                    group(t.output_tokens),
                    usd(t.cost_usd),
                ]
            })
            .collect();
        table(
            &mut out,
            &["target", "requests", "tokens in", "tokens out", "cost"],
            &[false, true, true, true, true],
            &rows,
        );
    }

    out.push_str("<h2>Baselines</h2>\n");
    let rows: Vec<Vec<String>> = report
        .baselines
        .iter()
        .map(|b| {
            vec![
                format!("all {}", b.name),
                format!("{:.6}", b.usd_per_request),
                usd(b.cost_usd),
                usd(b.projection_30d_usd),
            ]
        })
        .collect();
    table(
        &mut out,
        &["baseline", "USD per request", "total", "30-day"],
        &[false, true, true, true],
        &rows,
    );
    if let Some(be) = &report.break_even {
        let _ = writeln!(
            out,
            "<h2>Break-even</h2>\n<p>{}: {} a month ({} amortized, {} power); this workload \
             is {:.0} requests a day.</p>",
            escape(&be.hardware.name),
            usd(be.monthly_usd),
            usd(be.amortized_monthly_usd),
            usd(be.power_monthly_usd),
            be.workload_requests_per_day
        );
        let rows: Vec<Vec<String>> = be
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.baseline.clone(),
                    format!("{:.6}", r.usd_per_request),
                    r.requests_per_day
                        .map_or_else(|| "never".to_owned(), |n| format!("{n:.0}")),
                    if r.local_cheaper_at_this_volume {
                        "local".to_owned()
                    } else {
                        "cloud".to_owned()
                    },
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "baseline",
                "USD per request",
                "local cheaper above (requests/day)",
                "cheaper at this volume",
            ],
            &[false, true, true, false],
            &rows,
        );
    }

    let _ = write!(
        out,
        "<details><summary>The text report</summary><pre>{}</pre></details>\n</body></html>\n",
        escape(&report.render_text())
    );
    out
}
