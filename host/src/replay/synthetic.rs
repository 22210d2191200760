//! Seeded, deterministic synthetic workloads: a realistic mix of the decision guide's task
//! types (classification, extraction, format conversion, short Q&A, PII-laden requests,
//! multi-step reasoning, creative writing, long-context) across three tenants, or a fixed
//! token shape (every request N input / M output tokens) for arithmetic checks.

use std::collections::BTreeMap;

use super::workload::WorkloadRecord;
use crate::domain::{ChatMessage, Role};
use crate::time;

/// The day a synthetic workload starts (2026-01-01, so 30 days stay in one month).
pub fn start_day() -> i64 {
    time::days_from_civil(2026, 1, 1)
}

/// SplitMix64: small, fast, and stable across versions (the workload must not change
/// when a dependency does).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let len = u64::try_from(items.len()).unwrap_or(1).max(1);
        let i = usize::try_from(self.next_u64() % len).unwrap_or(0);
        &items[i.min(items.len().saturating_sub(1))]
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// Task types of the realistic mix, with their share in percent.
pub const TASKS: &[(&str, u64)] = &[
    ("classification", 20),
    ("extraction", 15),
    ("format-conversion", 10),
    ("short-qa", 18),
    ("pii", 10),
    ("reasoning", 10),
    ("creative", 9),
    ("long-context", 8),
];

const TENANTS: &[(&str, u64)] = &[("acme", 45), ("globex", 35), ("initech", 20)];

const WORDS: &[&str] = &[
    "the",
    "customer",
    "order",
    "shipment",
    "account",
    "policy",
    "quarterly",
    "report",
    "revenue",
    "team",
    "service",
    "platform",
    "update",
    "pricing",
    "contract",
    "delivery",
    "warehouse",
    "invoice",
    "support",
    "release",
    "migration",
    "database",
    "latency",
    "region",
    "compliance",
    "audit",
    "schedule",
    "budget",
    "forecast",
    "partner",
    "vendor",
    "product",
    "feature",
    "request",
    "incident",
    "review",
    "meeting",
    "process",
    "project",
    "manager",
    "analysis",
    "data",
    "security",
    "network",
    "storage",
    "capacity",
    "cost",
    "and",
    "of",
    "to",
    "in",
    "for",
    "with",
    "on",
    "by",
    "was",
    "is",
    "will",
    "be",
    "after",
    "before",
    "during",
    "about",
    "our",
    "their",
    "new",
    "late",
    "urgent",
    "monthly",
];

const REVIEWS: &[&str] = &[
    "Arrived two days late and the box was crushed, but support sorted it out quickly.",
    "Absolutely love it, works exactly as described and the battery lasts all week.",
    "It is fine. Nothing special, does the job for the price.",
    "Stopped working after a month and nobody answers my emails. Very disappointed.",
    "Setup took five minutes and the app is intuitive. Would buy again.",
    "The colour is different from the photos and the fabric feels cheap.",
];

const QUESTIONS: &[&str] = &[
    "What is the refund window for annual plans?",
    "Which regions does the enterprise tier cover?",
    "How many seats are included in the starter plan?",
    "When was the data retention policy last changed?",
    "Who approves vendor contracts over the threshold?",
];

const NAMES: &[&str] = &[
    "maria.lopez",
    "j.smith",
    "chen.wei",
    "a.okafor",
    "priya.nair",
    "tom.becker",
];

const REASONING: &[&str] = &[
    "We must migrate a 4 TB PostgreSQL cluster to a new region with under 5 minutes of downtime. Weigh logical replication against snapshot restore, list the risks, and propose a step-by-step plan with rollback points.",
    "Our churn rose from 3% to 5% after a price change while signups grew 20%. Reason step by step about which effects could explain this and which experiments would separate them.",
    "Three services share one queue and one of them causes head-of-line blocking at peak. Compare partitioning, priority queues and separate consumers; pick one and justify it quantitatively.",
    "Given the attached quarterly numbers, work out whether the new warehouse pays back within two years, stating every assumption and checking the arithmetic twice.",
];

const CREATIVE: &[&str] = &[
    "Write a short story about a lighthouse keeper who receives letters from the future.",
    "Write a product launch blog post for a solar-powered bike lock, playful but credible.",
    "Write a poem about the last day of a long migration project.",
    "Write three taglines and a 150-word brand story for a neighbourhood coffee roaster.",
];

/// How synthetic requests are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The realistic task mix.
    Mix,
    /// Every request exactly `input` prompt and `output` completion tokens.
    Fixed { input: u32, output: u32 },
}

impl std::str::FromStr for Shape {
    type Err = String;

    /// `mix`, or `INPUTxOUTPUT` tokens (e.g. `500x200`).
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "mix" {
            return Ok(Self::Mix);
        }
        let bad = || format!("expected INPUTxOUTPUT tokens (e.g. 500x200) or `mix`, got {s:?}");
        let (i, o) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let input = i.trim().parse().map_err(|_| bad())?;
        let output = o.trim().parse().map_err(|_| bad())?;
        if input == 0 {
            return Err(bad());
        }
        Ok(Self::Fixed { input, output })
    }
}

/// Generator settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticSpec {
    pub per_day: u64,
    pub days: u32,
    pub seed: u64,
    pub shape: Shape,
}

/// Iterator over a synthetic workload; the same spec always yields the same records.
#[derive(Debug)]
pub struct Synthetic {
    spec: SyntheticSpec,
    rng: Rng,
    next: u64,
    total: u64,
    paragraphs: Vec<String>,
    fixed_text: String,
}

fn luhn_card(rng: &mut Rng) -> String {
    let mut digits = vec![4u32];
    for _ in 0..14 {
        digits.push(u32::try_from(rng.range(0, 9)).unwrap_or(0));
    }
    // Check digit: double every second digit from the right of the full 16-digit number.
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    digits.push((10 - sum % 10) % 10);
    let s: String = digits
        .iter()
        .map(|d| char::from_digit(*d, 10).unwrap_or('0'))
        .collect();
    format!("{} {} {} {}", &s[0..4], &s[4..8], &s[8..12], &s[12..16])
}

impl Synthetic {
    pub fn new(spec: SyntheticSpec) -> Self {
        let mut rng = Rng::new(spec.seed);
        let paragraphs = (0..64)
            .map(|_| {
                let n = rng.range(60, 140);
                let mut p = String::new();
                for i in 0..n {
                    if i > 0 {
                        p.push(' ');
                    }
                    p.push_str(rng.pick::<&str>(WORDS));
                }
                p.push_str(".\n");
                p
            })
            .collect();
        let fixed_text = match spec.shape {
            Shape::Fixed { input, .. } => {
                let want = usize::try_from(input).unwrap_or(0).saturating_mul(4);
                let mut t = String::with_capacity(want);
                while t.len() < want {
                    t.push_str("lorem ipsum ");
                }
                t.truncate(want);
                t
            }
            Shape::Mix => String::new(),
        };
        Self {
            total: spec.per_day.saturating_mul(u64::from(spec.days)),
            spec,
            rng,
            next: 0,
            paragraphs,
            fixed_text,
        }
    }

    /// Requests this workload holds.
    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    fn text(&mut self, tokens: u64) -> String {
        let want = usize::try_from(tokens.saturating_mul(4)).unwrap_or(usize::MAX);
        let mut out = String::with_capacity(want.min(1 << 22));
        while out.len() < want {
            let p = self.rng.pick(&self.paragraphs);
            out.push_str(p);
        }
        out
    }

    fn weighted(&mut self, table: &[(&'static str, u64)]) -> &'static str {
        let total: u64 = table.iter().map(|(_, w)| w).sum();
        let mut x = self.rng.range(0, total.saturating_sub(1));
        for (name, w) in table {
            if x < *w {
                return name;
            }
            x -= w;
        }
        table.first().map_or("", |(n, _)| n)
    }

    /// (feature label, system prompt, user prompt, completion tokens) of one task.
    fn task(&mut self, task: &str) -> (&'static str, Option<&'static str>, String, u64) {
        let r = &mut self.rng;
        match task {
            "classification" => {
                let review = r.pick(REVIEWS);
                (
                    "reviews",
                    Some("You label customer reviews. Answer with one word."),
                    format!(
                        "Classify the sentiment of this review as positive, negative or neutral.\nReview: {review}"
                    ),
                    r.range(1, 8),
                )
            }
            "extraction" => {
                let n = r.range(1000, 99_999);
                let total = r.range(100, 90_000);
                let lines = r.range(3, 12);
                let mut doc = format!(
                    "INVOICE INV-{n}\nVendor: Northwind Traders\nDate: 2025-12-{:02}\n",
                    r.range(1, 28)
                );
                for i in 0..lines {
                    doc.push_str(&format!(
                        "Item {i}: {} x{} @ {}.00\n",
                        r.pick(WORDS),
                        r.range(1, 20),
                        r.range(5, 900)
                    ));
                }
                doc.push_str(&format!("Total due: {total}.00 USD\n"));
                (
                    "invoices",
                    Some("Extract fields as JSON. Output only JSON."),
                    format!(
                        "Extract vendor, invoice_number, date, line items and total from:\n{doc}"
                    ),
                    r.range(40, 160),
                )
            }
            "format-conversion" => {
                let rows = r.range(5, 40);
                let mut csv = String::from("id,name,region,amount\n");
                for i in 0..rows {
                    csv.push_str(&format!(
                        "{i},{},{},{}\n",
                        r.pick(WORDS),
                        r.pick(&["emea", "amer", "apac"]),
                        r.range(1, 10_000)
                    ));
                }
                let out = u64::try_from(csv.len()).unwrap_or(0) / 3;
                (
                    "etl",
                    None,
                    format!("Convert this CSV to a JSON array of objects:\n{csv}"),
                    out,
                )
            }
            "short-qa" => {
                let paras = r.range(1, 4);
                let q = r.pick(QUESTIONS);
                let out = r.range(30, 160);
                let ctx = self.text(paras * 90);
                (
                    "helpdesk",
                    Some("Answer only from the context. Say 'unknown' otherwise."),
                    format!("Context:\n{ctx}\nQuestion: {q}"),
                    out,
                )
            }
            "pii" => {
                let name = r.pick(NAMES);
                let mut parts = vec![format!(
                    "Draft a polite reply to {name}@example.com about their refund."
                )];
                if r.chance(60) {
                    parts.push(format!(
                        "They asked to be called back on +1 415-555-{:04}.",
                        r.range(100, 9999)
                    ));
                }
                if r.chance(50) {
                    parts.push(format!("The refund goes to card {}.", luhn_card(r)));
                }
                if r.chance(15) {
                    parts.push(format!(
                        "Their SSN on file is {}-{:02}-{:04}.",
                        r.range(100, 665),
                        r.range(1, 99),
                        r.range(1, 9999)
                    ));
                }
                parts.push(format!("Their complaint: {}", r.pick(REVIEWS)));
                (
                    "support-inbox",
                    Some("You are a support agent for Acme."),
                    parts.join(" "),
                    r.range(150, 350),
                )
            }
            "reasoning" => {
                let q = r.pick(REASONING);
                let extra = r.range(0, 3);
                let out = r.range(400, 1200);
                let ctx = self.text(extra * 100);
                ("planning", None, format!("{q}\n{ctx}"), out)
            }
            "creative" => {
                let q = r.pick(CREATIVE);
                ("marketing", None, (*q).to_owned(), r.range(400, 1500))
            }
            _ => {
                let tokens = r.range(8_000, 60_000);
                let out = r.range(300, 900);
                let doc = self.text(tokens);
                (
                    "legal",
                    None,
                    format!(
                        "Summarize the key obligations, deadlines and risks in this contract:\n{doc}"
                    ),
                    out,
                )
            }
        }
    }
}

impl Iterator for Synthetic {
    type Item = WorkloadRecord;

    fn next(&mut self) -> Option<WorkloadRecord> {
        if self.next >= self.total {
            return None;
        }
        let i = self.next;
        self.next += 1;
        let per_day = self.spec.per_day.max(1);
        let (day, k) = (i / per_day, i % per_day);
        let slot = u64::try_from(time::DAY_MS).unwrap_or(1) / per_day;
        let offset = k * slot + self.rng.range(0, slot.saturating_sub(1));
        let ts = (start_day() + i64::try_from(day).unwrap_or(0)) * time::DAY_MS
            + i64::try_from(offset).unwrap_or(0);
        let tenant = self.weighted(TENANTS);
        let mut labels = BTreeMap::new();
        let (task, messages, prompt_tokens, completion) = match self.spec.shape {
            Shape::Fixed { input, output } => (
                "fixed",
                vec![ChatMessage {
                    role: Role::User,
                    content: self.fixed_text.clone(),
                }],
                Some(input),
                output,
            ),
            Shape::Mix => {
                let task = self.weighted(TASKS);
                let (feature, system, user, out) = self.task(task);
                labels.insert("feature".to_owned(), feature.to_owned());
                let mut messages = Vec::with_capacity(2);
                if let Some(system) = system {
                    messages.push(ChatMessage {
                        role: Role::System,
                        content: system.to_owned(),
                    });
                }
                messages.push(ChatMessage {
                    role: Role::User,
                    content: user,
                });
                (task, messages, None, u32::try_from(out).unwrap_or(u32::MAX))
            }
        };
        Some(WorkloadRecord {
            line: i + 1,
            id: format!("syn-{}", i + 1),
            timestamp_ms: Some(ts),
            tenant: tenant.to_owned(),
            model: "auto".to_owned(),
            messages,
            labels,
            max_tokens: None,
            temperature: None,
            streaming: false,
            prompt_tokens,
            completion_tokens: Some(completion),
            pii_kinds: None,
            task: Some(task),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shape: Shape) -> SyntheticSpec {
        SyntheticSpec {
            per_day: 200,
            days: 3,
            seed: 7,
            shape,
        }
    }

    #[test]
    fn deterministic_ordered_and_sized() {
        let a: Vec<_> = Synthetic::new(spec(Shape::Mix)).collect();
        let b: Vec<_> = Synthetic::new(spec(Shape::Mix)).collect();
        assert_eq!(a.len(), 600);
        assert_eq!(a, b);
        let ts: Vec<i64> = a.iter().filter_map(|r| r.timestamp_ms).collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(time::day_of(ts[0]), start_day());
        assert_eq!(time::day_of(ts[599]), start_day() + 2);
        let other: Vec<_> = Synthetic::new(SyntheticSpec {
            seed: 8,
            ..spec(Shape::Mix)
        })
        .collect();
        assert_ne!(a, other);
    }

    #[test]
    fn mix_covers_every_task_and_pii_is_detected() {
        let records: Vec<_> = Synthetic::new(spec(Shape::Mix)).collect();
        for (task, _) in TASKS {
            assert!(
                records.iter().any(|r| r.task == Some(task)),
                "{task} missing"
            );
        }
        for r in records.iter().filter(|r| r.task == Some("pii")) {
            let text: String = r.messages.iter().map(|m| m.content.as_str()).collect();
            assert!(!policy_sdk::pii::detect(&text).is_empty(), "{text}");
        }
        let card = records
            .iter()
            .filter(|r| r.task == Some("pii"))
            .flat_map(|r| policy_sdk::pii::detect(&r.messages[1].content))
            .any(|m| m.kind == policy_sdk::PiiKind::CreditCard);
        assert!(card, "no Luhn-valid card number detected");
        for r in records.iter().filter(|r| r.task != Some("pii")) {
            let text: String = r.messages.iter().map(|m| m.content.as_str()).collect();
            assert!(
                policy_sdk::pii::detect(&text).is_empty(),
                "{:?}: {text}",
                r.task
            );
        }
        let tenants: std::collections::BTreeSet<_> =
            records.iter().map(|r| r.tenant.as_str()).collect();
        assert_eq!(tenants.len(), 3);
    }

    #[test]
    fn fixed_shape() {
        let shape: Shape = "500x200".parse().unwrap_or_else(|e: String| panic!("{e}"));
        let r: Vec<_> = Synthetic::new(spec(shape)).collect();
        assert!(
            r.iter()
                .all(|r| r.prompt_tokens == Some(500) && r.completion_tokens == Some(200))
        );
        assert_eq!(
            crate::domain::estimate_tokens(&r[0].messages[0].content),
            500
        );
        assert!("0x5".parse::<Shape>().is_err());
        assert!("500".parse::<Shape>().is_err());
    }
}
