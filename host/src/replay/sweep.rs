//! `--sweep PARAM=FROM:TO:STEP`: one policy replayed once per value of a parameter, and the
//! cost/quality curve it traces as a table, CSV and an SVG chart.

use std::fmt::Write as _;

use serde::Serialize;

use super::report::{PolicyReport, Table, pct, usd};

/// At most this many values in one sweep.
pub const MAX_POINTS: usize = 1000;

/// A parameter and the values to replay it at: `FROM`, `FROM + STEP`, … up to `TO`.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    pub param: String,
    from: f64,
    to: f64,
    step: f64,
    /// Decimals the values are written with (the most any of FROM, TO, STEP has).
    decimals: usize,
}

impl std::str::FromStr for SweepSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage =
            || format!("expected PARAM=FROM:TO:STEP (e.g. strong_share=0.1:0.9:0.1), got {s:?}");
        let (param, range) = s.split_once('=').ok_or_else(usage)?;
        let parts: Vec<&str> = range.split(':').collect();
        let [from, to, step] = parts.as_slice() else {
            return Err(usage());
        };
        let number = |t: &str| {
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{t:?} is not a number (in {s:?})"))
        };
        let (f, t, st) = (number(from)?, number(to)?, number(step)?);
        if param.trim().is_empty() {
            return Err(usage());
        }
        if st <= 0.0 {
            return Err(format!("the step must be above 0, got {st}"));
        }
        if t < f {
            return Err(format!("FROM ({f}) is above TO ({t})"));
        }
        let count = ((t - f) / st + 1e-9).floor() + 1.0;
        if count > MAX_POINTS as f64 {
            return Err(format!("{s:?} gives {count} values; at most {MAX_POINTS}"));
        }
        let decimals = [from, to, step]
            .iter()
            .map(|t| t.trim().split_once('.').map_or(0, |(_, d)| d.len()))
            .max()
            .unwrap_or(0);
        Ok(Self {
            param: param.trim().to_owned(),
            from: f,
            to: t,
            step: st,
            decimals,
        })
    }
}

impl SweepSpec {
    /// The values, as the policy is given them.
    pub fn values(&self) -> Vec<String> {
        let count = ((self.to - self.from) / self.step + 1e-9).floor() as usize + 1;
        (0..count)
            .map(|i| format!("{:.*}", self.decimals, self.from + i as f64 * self.step))
            .collect()
    }
}

/// The replay of one value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepPoint {
    pub value: String,
    pub cost_usd: f64,
    pub projection_30d_usd: f64,
    pub local_share: f64,
    pub rejected: u64,
    pub unserved: u64,
    pub policy_failures: u64,
    /// With `--labels`: mean quality, its share of the best backend's, and random
    /// routing's at the same shares.
    pub quality: Option<f64>,
    pub share_of_best: Option<f64>,
    pub random_same_shares: Option<f64>,
}

impl SweepPoint {
    pub fn new(value: String, p: &PolicyReport) -> Self {
        Self {
            value,
            cost_usd: p.cost_usd,
            projection_30d_usd: p.projection_30d_usd,
            local_share: p.local_share,
            rejected: p.rejected,
            unserved: p.unserved,
            policy_failures: p.policy_failures.values().sum(),
            quality: p.quality.as_ref().map(|q| q.quality),
            share_of_best: p.quality.as_ref().map(|q| q.share_of_best),
            random_same_shares: p.quality.as_ref().map(|q| q.random_same_shares),
        }
    }
}

/// A whole sweep: what was swept, over which policy and workload, and each value's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    pub param: String,
    pub policy: String,
    pub source: String,
    pub requests: u64,
    /// The best backend over the labelled requests, when labels were given.
    pub best_backend: Option<String>,
    pub points: Vec<SweepPoint>,
}

impl Sweep {
    fn labelled(&self) -> bool {
        self.points.iter().any(|p| p.quality.is_some())
    }

    /// The terminal table.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Sweep of {} over {} value(s): policy {}, workload {} ({} requests)",
            self.param,
            self.points.len(),
            self.policy,
            self.source,
            super::report::group(self.requests)
        );
        let labelled = self.labelled();
        let mut header = vec![
            self.param.as_str(),
            "cost",
            "30-day",
            "local share",
            "rejected",
            "unserved",
            "failures",
        ];
        if labelled {
            header.extend(["quality", "% of best", "random, same shares"]);
        }
        let mut t = Table::new(
            &header,
            &[false, true, true, true, true, true, true, true, true, true],
        );
        let opt_pct = |x: Option<f64>| x.map_or_else(|| "–".to_owned(), pct);
        for p in &self.points {
            let mut row = vec![
                p.value.clone(),
                usd(p.cost_usd),
                usd(p.projection_30d_usd),
                pct(p.local_share),
                p.rejected.to_string(),
                p.unserved.to_string(),
                p.policy_failures.to_string(),
            ];
            if labelled {
                row.extend([
                    opt_pct(p.quality),
                    opt_pct(p.share_of_best),
                    opt_pct(p.random_same_shares),
                ]);
            }
            t.row(row);
        }
        t.render("  ", &mut out);
        if let Some(best) = &self.best_backend {
            let _ = writeln!(out, "  % of best: against all requests to {best}");
        }
        out
    }

    /// The points as CSV, one row per value (empty quality cells without labels).
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "param,value,cost_usd,projection_30d_usd,local_share,rejected,unserved,policy_failures,quality,share_of_best,random_same_shares\n",
        );
        let opt = |x: Option<f64>| x.map_or_else(String::new, |v| format!("{v:.6}"));
        for p in &self.points {
            let _ = writeln!(
                out,
                "{},{},{:.6},{:.6},{:.6},{},{},{},{},{},{}",
                csv_cell(&self.param),
                csv_cell(&p.value),
                p.cost_usd,
                p.projection_30d_usd,
                p.local_share,
                p.rejected,
                p.unserved,
                p.policy_failures,
                opt(p.quality),
                opt(p.share_of_best),
                opt(p.random_same_shares)
            );
        }
        out
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_into_exact_values_and_bad_ones_say_why() {
        let spec: SweepSpec = "strong_share=0.1:0.9:0.1".parse().unwrap();
        assert_eq!(spec.param, "strong_share");
        assert_eq!(
            spec.values(),
            [
                "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"
            ]
        );
        let spec: SweepSpec = "budget=0:10:4".parse().unwrap();
        assert_eq!(spec.values(), ["0", "4", "8"]);
        let one: SweepSpec = "x=0.25:0.25:0.5".parse().unwrap();
        assert_eq!(one.values(), ["0.25"]);
        for (bad, says) in [
            ("strong_share", "PARAM=FROM:TO:STEP"),
            ("x=1:2", "PARAM=FROM:TO:STEP"),
            ("=1:2:1", "PARAM=FROM:TO:STEP"),
            ("x=a:2:1", "\"a\" is not a number"),
            ("x=0:1:0", "above 0"),
            ("x=2:1:0.5", "above TO"),
            ("x=0:1:0.0001", "at most 1000"),
        ] {
            let err = bad.parse::<SweepSpec>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn table_and_csv_carry_every_point() {
        let point = |value: &str, cost: f64, q: Option<f64>| SweepPoint {
            value: value.into(),
            cost_usd: cost,
            projection_30d_usd: cost * 3.0,
            local_share: 0.5,
            rejected: 0,
            unserved: 1,
            policy_failures: 0,
            quality: q,
            share_of_best: q.map(|q| q / 0.8),
            random_same_shares: q.map(|q| q - 0.01),
        };
        let sweep = Sweep {
            param: "strong_share".into(),
            policy: "learned@abc".into(),
            source: "w.jsonl".into(),
            requests: 10,
            best_backend: Some("openai".into()),
            points: vec![point("0.2", 1.5, Some(0.7)), point("0.4", 2.25, Some(0.75))],
        };
        let text = sweep.render_text();
        assert!(
            text.contains("Sweep of strong_share over 2 value(s)"),
            "{text}"
        );
        assert!(text.contains("$2.25") && text.contains("93.8%"), "{text}");
        let csv = sweep.csv();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[2],
            "strong_share,0.4,2.250000,6.750000,0.500000,0,1,0,0.750000,0.937500,0.740000"
        );
        let unlabelled = Sweep {
            best_backend: None,
            points: vec![point("1", 1.0, None)],
            ..sweep
        };
        assert!(!unlabelled.render_text().contains("quality"));
        assert!(unlabelled.csv().lines().nth(1).unwrap().ends_with(",0,,,"));
    }
}
