//! `switchyard replay` through the real sandbox: the decision guide's arithmetic, the
//! shipped privacy policy sending no PII to cloud, the cost policy holding tenants to
//! their budgets, outages, two-policy differences, decision-log input, the CLI, and a
//! throughput figure. Needs the built policies (`bash policies/build.sh`).
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchyard::config::Config;
use switchyard::decision_log::{DECISION_LOG_SCHEMA, DecisionLogRecord, UsageRecord};
use switchyard::domain::{Decision, Target};
use switchyard::policy::{EngineConfig, LoadedPolicy, PolicyEngine, PolicySpec};
use switchyard::replay::{
    self, JsonlReader, LineError, ReplayOptions, Report, Shape, Synthetic, SyntheticSpec,
    WorkloadRecord,
};

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// `${SWITCHYARD_POLICY_OUT:-target/policies}/<name>.wasm`; panics with the build command
/// when it is missing (a missing policy must fail the test, not skip it).
fn policy_file(name: &str) -> PathBuf {
    let out = std::env::var_os("SWITCHYARD_POLICY_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/policies"));
    let out = if out.is_absolute() {
        out
    } else {
        workspace_root().join(out)
    };
    let path = out.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "policy component {} is missing; run `bash policies/build.sh` first",
        path.display()
    );
    path
}

/// Loads a policy with a generous deadline: a loaded test machine must not turn slow
/// decisions into fallbacks (every test also checks that no policy failed).
fn load(name: &str, params: &[(&str, &str)]) -> LoadedPolicy {
    load_with(name, params, 0)
}

fn load_with(name: &str, params: &[(&str, &str)], warm_instances: usize) -> LoadedPolicy {
    let engine = PolicyEngine::new(EngineConfig {
        deadline: Duration::from_secs(10),
        outer_timeout: Duration::from_secs(20),
        warm_instances,
        ..EngineConfig::default()
    })
    .unwrap_or_else(|e| panic!("engine: {e}"));
    let spec = PolicySpec {
        name: name.to_owned(),
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        fallback: Decision {
            targets: vec![Target {
                backend: "local".into(),
                model: None,
            }],
            reason: "fallback".into(),
            messages: None,
            max_tokens: None,
            labels: BTreeMap::new(),
        },
    };
    engine
        .load_file(spec, &policy_file(name))
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

fn synthetic(
    per_day: u64,
    days: u32,
    shape: Shape,
) -> impl Iterator<Item = Result<WorkloadRecord, LineError>> + Send {
    Synthetic::new(SyntheticSpec {
        per_day,
        days,
        seed: 42,
        shape,
    })
    .map(Ok)
}

const FIXED: Shape = Shape::Fixed {
    input: 500,
    output: 200,
};

/// Fails the test with the command's stderr unless it exited 0.
fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cents(x: f64) -> i64 {
    (x * 100.0).round() as i64
}

fn run(
    policies: &[LoadedPolicy],
    records: impl Iterator<Item = Result<WorkloadRecord, LineError>> + Send,
    opts: &ReplayOptions,
) -> Report {
    let report = replay::replay(policies, records, opts).unwrap_or_else(|e| panic!("replay: {e}"));
    for p in &report.policies {
        assert!(
            p.policy_failures.is_empty(),
            "{}: policy failures {:?}",
            p.policy,
            p.policy_failures
        );
    }
    report
}

fn baseline(report: &Report, name: &str) -> f64 {
    report
        .baselines
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("no baseline {name}"))
        .projection_30d_usd
}

const BUDGETS: &str = r#"
[[backends]]
name = "local"
kind = "local"
models = ["smollm2-135m-instruct"]
model_path = "/nonexistent/model.gguf"

[[backends]]
name = "openai"
kind = "openai"
models = ["gpt-4o", "gpt-4o-mini"]

[[backends]]
name = "anthropic"
kind = "anthropic"
models = ["claude-sonnet-4-5"]

[tenants.acme]
daily_budget_usd = 2.0
monthly_budget_usd = 40.0

[tenants.globex]
daily_budget_usd = 1.0

[tenants.initech]
monthly_budget_usd = 10.0
"#;

fn budget_options() -> ReplayOptions {
    let config = Config::parse(BUDGETS).unwrap_or_else(|e| panic!("config: {e}"));
    ReplayOptions {
        backends: config
            .backends
            .iter()
            .map(switchyard::cli::replay::backend_status)
            .collect(),
        budgets: config.tenants.clone(),
        ..ReplayOptions::default()
    }
}

#[test]
fn decision_guide_arithmetic_through_a_policy() {
    // The cost policy with no budgets sends everything to the first cloud backend (openai,
    // gpt-4o): 30 days × 1,000 requests × (500 in, 200 out) = $97.50.
    let report = run(
        &[load("cost", &[])],
        synthetic(1000, 30, FIXED),
        &ReplayOptions::default(),
    );
    assert_eq!(report.workload.requests, 30_000);
    assert_eq!(cents(baseline(&report, "openai/gpt-4o")), 9750);
    assert_eq!(
        cents(baseline(&report, "anthropic/claude-sonnet-4-5")),
        13_500
    );
    let p = &report.policies[0];
    assert_eq!(p.targets.len(), 1, "{:?}", p.targets);
    assert_eq!(p.targets[0].target, "openai/gpt-4o");
    assert_eq!(cents(p.cost_usd), 9750);
    assert_eq!(cents(p.projection_30d_usd), 9750);
    assert_eq!(p.daily.len(), 30);
    assert!(
        p.daily.iter().all(|d| cents(d.total_usd) == 325),
        "$3.25 a day"
    );
}

#[test]
fn privacy_policy_sends_no_pii_to_cloud() {
    let opts = ReplayOptions::default();
    let report = run(
        &[load("privacy", &[])],
        synthetic(200, 10, Shape::Mix),
        &opts,
    );
    let p = &report.policies[0];
    assert!(
        p.pii_requests > 100,
        "the mix must carry PII: {}",
        p.pii_requests
    );
    assert_eq!(p.pii_to_cloud, 0);
    // Not trivially all-local: long contexts that do not fit the local model go to cloud.
    let cloud: u64 = p
        .targets
        .iter()
        .filter(|t| t.kind == Some(switchyard::domain::BackendKind::Cloud))
        .map(|t| t.requests)
        .sum();
    assert!(cloud > 0, "{:?}", p.targets);

    // Redaction mode may send rewritten (PII-free) requests to cloud; still none with PII.
    let redact = run(
        &[load(
            "privacy",
            &[("mode", "redact"), ("order", "cloud-first")],
        )],
        synthetic(200, 10, Shape::Mix),
        &opts,
    );
    let p = &redact.policies[0];
    assert_eq!(p.pii_to_cloud, 0);

    // Control: a policy that ignores PII does send it to cloud, so the count is live.
    let control = run(&[load("cost", &[])], synthetic(200, 10, Shape::Mix), &opts);
    assert!(control.policies[0].pii_to_cloud > 100);
}

#[test]
fn cost_policy_keeps_tenants_within_budget() {
    let opts = budget_options();
    let report = run(&[load("cost", &[])], synthetic(300, 30, Shape::Mix), &opts);
    let p = &report.policies[0];
    let mut summary = Vec::new();
    for t in &p.tenants {
        summary.push(format!(
            "{}: cost {:.2} peak day {:.4}/{:?} peak month {:.4}/{:?} past-budget {} overshoot {:.4}",
            t.tenant,
            t.cost_usd,
            t.peak_day_usd,
            t.daily_budget_usd,
            t.peak_month_usd,
            t.monthly_budget_usd,
            t.charged_over_budget,
            t.overshoot_usd
        ));
    }
    eprintln!("cost policy tenants:\n  {}", summary.join("\n  "));
    for t in &p.tenants {
        assert_eq!(t.charged_over_budget, 0, "{}", summary.join("\n"));
        // The policy checks each cloud call's estimated cost against what is left, so no
        // request crosses the line.
        assert_eq!(t.overshoot_usd, 0.0, "{}", summary.join("\n"));
        if let Some(budget) = t.daily_budget_usd {
            assert!(t.peak_day_usd <= budget, "{}", summary.join("\n"));
        }
        if let Some(budget) = t.monthly_budget_usd {
            assert!(t.peak_month_usd <= budget, "{}", summary.join("\n"));
        }
    }
    // Budgets bit: some requests were moved off the premium cloud target.
    assert!(p.local_share > 0.0 || p.rejected > 0);

    // Control: a budget-blind policy keeps paying past the budget.
    let control = run(
        &[load("privacy", &[("order", "cloud-first")])],
        synthetic(300, 30, Shape::Mix),
        &opts,
    );
    assert!(
        control.policies[0]
            .tenants
            .iter()
            .any(|t| t.charged_over_budget > 0)
    );
}

#[test]
fn outage_moves_traffic_and_two_policies_differ() {
    let opts = ReplayOptions {
        outages: vec![
            "openai:3-4"
                .parse()
                .unwrap_or_else(|e: String| panic!("{e}")),
        ],
        ..ReplayOptions::default()
    };
    let report = run(
        &[load("cost", &[]), load("privacy", &[])],
        synthetic(100, 6, FIXED),
        &opts,
    );
    let a = &report.policies[0];
    for day in &a.daily {
        let openai = day.by_target.contains_key("openai/gpt-4o");
        let outage = day.date == "2026-01-03" || day.date == "2026-01-04";
        assert_eq!(openai, !outage, "{}: {:?}", day.date, day.by_target);
        if outage {
            assert!(day.by_target.contains_key("anthropic/claude-sonnet-4-5"));
        }
    }
    let diff = report
        .differences
        .as_ref()
        .unwrap_or_else(|| panic!("no differences"));
    // cost → cloud, privacy → local first: every decision differs.
    assert_eq!(diff.count, 600);
    assert_eq!(diff.sample.len(), 10);
    assert!(diff.sample.iter().all(|s| s.a != s.b));
    let text = report.render_text();
    assert!(text.contains("Differences: B decided 600 of 600"), "{text}");
    // B runs on its own thread; each policy's results match a replay of it alone.
    for (i, name) in ["cost", "privacy"].into_iter().enumerate() {
        let alone = run(&[load(name, &[])], synthetic(100, 6, FIXED), &opts);
        let (x, y) = (&alone.policies[0], &report.policies[i]);
        assert_eq!(cents(x.cost_usd), cents(y.cost_usd), "{name}");
        let counts = |p: &switchyard::replay::PolicyReport| {
            p.targets
                .iter()
                .map(|t| (t.target.clone(), t.requests))
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(x), counts(y), "{name}");
    }
    let svg = replay::chart::daily_cost_svg(&report);
    assert_eq!(svg.matches("font-weight=\"bold\"").count(), 2);
}

#[test]
fn content_free_decision_log_replays_pii_faithfully() {
    let mut lines = String::new();
    let mut pii = 0;
    for (i, r) in Synthetic::new(SyntheticSpec {
        per_day: 50,
        days: 2,
        seed: 9,
        shape: Shape::Mix,
    })
    .enumerate()
    {
        let kinds: Vec<String> = r
            .messages
            .iter()
            .flat_map(|m| policy_sdk::pii::detect(&m.content))
            .map(|m| m.kind.as_str().to_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        pii += u64::from(!kinds.is_empty());
        let rec = DecisionLogRecord {
            schema: DECISION_LOG_SCHEMA.into(),
            timestamp: switchyard::time::rfc3339(r.timestamp_ms.unwrap_or(0)),
            request_id: format!("req-{i}"),
            tenant: r.tenant.clone(),
            model: r.model.clone(),
            labels: r.labels.clone(),
            prompt_tokens: r
                .messages
                .iter()
                .map(|m| switchyard::domain::estimate_tokens(&m.content))
                .sum(),
            max_tokens: None,
            temperature: None,
            streaming: false,
            message_count: 2,
            pii: kinds,
            messages: None,
            policy: String::new(),
            decision: None,
            policy_failure: None,
            host_override: None,
            decision_us: None,
            backend: None,
            served_model: None,
            status: None,
            usage: Some(UsageRecord {
                prompt_tokens: None,
                completion_tokens: r.completion_tokens,
            }),
            latency_ms: None,
            cost_usd: None,
        };
        lines.push_str(&serde_json::to_string(&rec).unwrap_or_default());
        lines.push('\n');
    }
    let report = run(
        &[load("privacy", &[("order", "cloud-first")])],
        JsonlReader::new(lines.as_bytes()),
        &ReplayOptions::default(),
    );
    let p = &report.policies[0];
    assert_eq!(report.workload.requests, 100);
    assert_eq!(p.pii_requests, pii);
    assert!(pii > 0);
    assert_eq!(p.pii_to_cloud, 0);
    // cloud-first: everything without PII went to cloud.
    let local: u64 = p
        .targets
        .iter()
        .filter(|t| t.kind == Some(switchyard::domain::BackendKind::Local))
        .map(|t| t.requests)
        .sum();
    assert_eq!(local, pii);
}

#[test]
fn cli_json_chart_and_bad_lines() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let chart = dir.path().join("cost.svg");
    let html = dir.path().join("report.html");
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let out = std::process::Command::new(bin)
        .args(["replay", "--policy"])
        .arg(policy_file("cost"))
        .args([
            "--synthetic",
            "1000",
            "--days",
            "30",
            "--synthetic-shape",
            "500x200",
            "--json",
            "--deadline-ms",
            "10000",
        ])
        .args([
            "--hardware",
            "price=1800,months=36,watts=350,usd_per_kwh=0.15,hours_per_day=24",
        ])
        .arg("--chart")
        .arg(&chart)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ok(&out);
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json: {e}"));
    assert_eq!(
        json["policies"][0]["cost_usd"].as_f64().map(cents),
        Some(9750)
    );
    assert_eq!(
        json["break_even"]["monthly_usd"].as_f64().map(cents),
        Some(8780)
    );
    let svg = std::fs::read_to_string(&chart).unwrap_or_else(|e| panic!("{e}"));
    assert!(svg.contains("openai/gpt-4o ($97.50)"), "{svg}");
    // The HTML page: self-contained, the same figures, both day charts, the text report.
    let page = std::fs::read_to_string(&html).unwrap_or_else(|e| panic!("{e}"));
    for needle in [
        "<td class=\"n\">$97.50</td>",
        "openai/gpt-4o ($97.50)",
        "Local share by day",
        "<h2>Break-even</h2>",
        "$87.80 a month",
        "<details><summary>The text report</summary>",
    ] {
        assert!(
            page.contains(needle),
            "{needle} missing from the HTML report"
        );
    }
    for absent in [
        "<script",
        "src=\"http",
        "href=\"http",
        "Cost against quality",
    ] {
        assert!(!page.contains(absent), "{absent} in the HTML report");
    }

    let workload = dir.path().join("bad.jsonl");
    std::fs::write(
        &workload,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n{\"messages\":\"nope\"}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(bin)
        .args(["replay", "--policy"])
        .arg(policy_file("cost"))
        .arg("--workload")
        .arg(&workload)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2: invalid OpenAI request body"),
        "{stderr}"
    );
    assert!(stderr.contains("--skip-bad"), "{stderr}");
    let out = std::process::Command::new(bin)
        .args(["replay", "--skip-bad", "--policy"])
        .arg(policy_file("cost"))
        .arg("--workload")
        .arg(&workload)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("skipped 1 bad line(s)"), "{text}");
    assert!(text.contains("line 2:"), "{text}");
}

#[test]
fn cli_hardware_profile_from_config() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[hardware]
name = "lab box"
price_usd = 3600
months = 36
watts = 0
{LOCAL_AND_OPENAI}"#
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let replay = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([
                "replay",
                "--json",
                "--synthetic",
                "10",
                "--days",
                "1",
                "--policy",
            ])
            .arg(policy_file("cost"))
            .arg("--config")
            .arg(&config)
            .args(["--deadline-ms", "10000"])
            .args(extra)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ok(&out);
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json: {e}"));
        (
            json["break_even"]["hardware"]["name"]
                .as_str()
                .map(str::to_owned),
            json["break_even"]["monthly_usd"].as_f64().map(cents),
        )
    };
    assert_eq!(replay(&[]), (Some("lab box".to_owned()), Some(10_000)));
    // --hardware overrides the config.
    assert_eq!(
        replay(&["--hardware", "rtx4090"]),
        (Some("RTX 4090".to_owned()), Some(9320))
    );
}

#[test]
fn emitted_workload_replays_like_the_generator() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("mix.jsonl");
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let out = std::process::Command::new(bin)
        .args([
            "replay",
            "--synthetic",
            "50",
            "--days",
            "3",
            "--seed",
            "5",
            "--emit-workload",
        ])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ok(&out);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text.lines().count(), 150);
    let policy = load("privacy", &[("order", "cloud-first")]);
    let opts = ReplayOptions::default();
    let from_file = run(
        std::slice::from_ref(&policy),
        JsonlReader::new(text.as_bytes()),
        &opts,
    );
    let direct = run(
        &[policy],
        Synthetic::new(SyntheticSpec {
            per_day: 50,
            days: 3,
            seed: 5,
            shape: Shape::Mix,
        })
        .map(Ok),
        &opts,
    );
    let (a, b) = (&from_file.policies[0], &direct.policies[0]);
    assert_eq!(
        from_file.workload.input_tokens,
        direct.workload.input_tokens
    );
    assert_eq!(
        from_file.workload.output_tokens,
        direct.workload.output_tokens
    );
    assert_eq!(a.pii_requests, b.pii_requests);
    assert_eq!(a.pii_to_cloud, 0);
    assert_eq!(cents(a.cost_usd), cents(b.cost_usd));
    assert_eq!(from_file.workload.days, 3);
}

/// Replay throughput through Rust policies, with a fresh store per decision (the
/// gateway's default) and with one warm instance reused (printed; the target is ≥ 50,000
/// requests/s on 2 cores — see the replay README for figures measured on this machine).
#[test]
fn replay_throughput() {
    for warm in [0, 1] {
        for name in ["cost", "privacy", "hybrid"] {
            let policy = load_with(name, &[], warm);
            let report = run(
                &[policy],
                synthetic(10_000, 2, FIXED),
                &ReplayOptions::default(),
            );
            let t = &report.throughput;
            eprintln!(
                "replay throughput, {name}.wasm, warm instances {warm}, 20,000 requests of 500/200 tokens: {:.0} requests/s ({:.0} decisions/s in the sandbox, mean decision {:.1} µs)",
                t.requests_per_s, t.sandbox_decisions_per_s, report.policies[0].mean_decision_us
            );
            assert!(t.requests_per_s > 0.0);
        }
    }
}

/// `learned` replays with the shipped router when the options carry the classifiers (what
/// `replay --config` loads from `[classifiers]`): the strong share moves traffic to the
/// cloud, and without a classifier everything stays local (`weak:unscored`). With the
/// sample's labels (weak model = local, strong = every cloud backend) the report measures
/// quality: all-local and all-cloud reach the weak and strong model's scores exactly, and
/// the router beats random routing at its own shares.
#[test]
fn learned_policy_replays_with_the_configured_router_and_labels() {
    let router = workspace_root().join("policies/learned/router.bin");
    let classifiers = switchyard::classifiers::Classifiers::load(&BTreeMap::from([(
        "router".to_owned(),
        router,
    )]))
    .unwrap_or_else(|e| panic!("{e}"));
    let rows = sample_rows();
    let mut lines = String::new();
    let mut labels = String::new();
    for (i, row) in rows.iter().enumerate() {
        let id = format!("q{i}");
        let body = serde_json::json!({"id": id, "model": "auto",
            "messages": [{"role": "user", "content": row["prompt"]}]});
        lines.push_str(&format!("{body}\n"));
        let q = |key: &str| if row[key] == true { 1.0 } else { 0.0 };
        let strong = q("strong_correct");
        let label = serde_json::json!({"id": id, "quality": {"local": q("weak_correct"),
            "openai": strong, "anthropic": strong, "gemini": strong}});
        labels.push_str(&format!("{label}\n"));
    }
    let labels = Arc::new(
        switchyard::replay::quality::Labels::read(labels.as_bytes())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let total = rows.len() as f64;
    let mean = |key: &str| rows.iter().filter(|r| r[key] == true).count() as f64 / total;
    let replay_at = |share: &str, scorer: Arc<dyn switchyard::embeddings::TextScorer>| {
        let opts = ReplayOptions {
            scorer,
            labels: Some(labels.clone()),
            ..ReplayOptions::default()
        };
        let policy = load("learned", &[("strong_share", share)]);
        let report = run(&[policy], JsonlReader::new(lines.as_bytes()), &opts);
        let p = &report.policies[0];
        let quality = p.quality.clone().unwrap_or_else(|| panic!("no quality"));
        assert_eq!(quality.labelled, rows.len() as u64);
        (p.local_share, quality)
    };
    let scored: Arc<dyn switchyard::embeddings::TextScorer> = Arc::new(classifiers);
    let (at_30, _) = replay_at("0.3", scored.clone());
    let (at_70, q70) = replay_at("0.7", scored.clone());
    // With labels the HTML report plots cost against quality.
    let opts = ReplayOptions {
        scorer: scored.clone(),
        labels: Some(labels.clone()),
        ..ReplayOptions::default()
    };
    let both = run(
        &[
            load("learned", &[("strong_share", "0.3")]),
            load("learned", &[("strong_share", "0.7")]),
        ],
        JsonlReader::new(lines.as_bytes()),
        &opts,
    );
    let page = switchyard::replay::html::page(&both);
    assert!(page.contains("Cost against quality"), "no quality chart");
    assert_eq!(
        page.matches("<circle").count(),
        4,
        "two policies, two points each"
    );
    assert!(page.contains(&format!("{:.1} %", q70.quality * 100.0)));
    // The sample leans to hard subjects (half of it fails the weak model, against 30 %
    // in training), so more of it than the strong share goes to the cloud; the share
    // still moves the cut.
    assert!(at_30 > 0.0 && at_30 < 1.0, "strong 30 %: local {at_30}");
    assert!(at_70 > 0.0 && at_70 < at_30, "strong 70 %: local {at_70}");
    assert!(at_30 - at_70 >= 48.0 / total, "{at_30} vs {at_70}");
    assert!(
        q70.quality > q70.random_same_shares,
        "router {} vs random {}",
        q70.quality,
        q70.random_same_shares
    );

    let (all_local, weak) = replay_at("0", scored.clone());
    assert_eq!(all_local, 1.0);
    assert!((weak.quality - mean("weak_correct")).abs() < 1e-12);
    let (all_cloud, strong) = replay_at("1", scored.clone());
    assert_eq!(all_cloud, 0.0);
    assert!((strong.quality - mean("strong_correct")).abs() < 1e-12);
    assert!((strong.share_of_best - 1.0).abs() < 1e-12);
    let (unscored, _) = replay_at("0.7", Arc::new(switchyard::embeddings::NoEmbeddings));
    assert_eq!(unscored, 1.0);
}

/// The labelled sample's rows: `prompt`, `weak_correct`, `strong_correct`.
fn sample_rows() -> Vec<serde_json::Value> {
    let fixture = workspace_root().join("host/tests/fixtures/routing_labelled_sample.jsonl");
    let text = std::fs::read_to_string(fixture).unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    rows
}

/// The labelled sample as an untimed workload (OpenAI bodies with ids) and its labels for
/// a `local` (weak) and an `openai` (strong) backend, written into `dir`; and the sample's
/// rows.
fn labelled_sample(dir: &std::path::Path) -> (PathBuf, PathBuf, Vec<serde_json::Value>) {
    let rows = sample_rows();
    let (mut lines, mut labels) = (String::new(), String::new());
    for (i, row) in rows.iter().enumerate() {
        let id = format!("q{i}");
        let body = serde_json::json!({"id": id, "model": "auto",
            "messages": [{"role": "user", "content": row["prompt"]}]});
        lines.push_str(&format!("{body}\n"));
        let q = |key: &str| if row[key] == true { 1.0 } else { 0.0 };
        let label = serde_json::json!({"id": id,
            "quality": {"local": q("weak_correct"), "openai": q("strong_correct")}});
        labels.push_str(&format!("{label}\n"));
    }
    let (workload, labels_file) = (dir.join("prompts.jsonl"), dir.join("labels.jsonl"));
    std::fs::write(&workload, lines).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&labels_file, labels).unwrap_or_else(|e| panic!("{e}"));
    (workload, labels_file, rows)
}

/// Config backends: a local model and OpenAI's gpt-4o.
const LOCAL_AND_OPENAI: &str = r#"
[[backends]]
name = "local"
kind = "local"
model_path = "m.gguf"
models = ["smollm2"]

[[backends]]
name = "openai"
kind = "openai"
models = ["gpt-4o"]
"#;

/// A config with a local and an OpenAI backend and the shipped router as `router`.
fn learned_config(dir: &std::path::Path) -> PathBuf {
    let config = dir.join("switchyard.toml");
    let router = workspace_root().join("policies/learned/router.bin");
    std::fs::write(
        &config,
        format!(
            r#"{LOCAL_AND_OPENAI}
[classifiers]
router = "{}"
"#,
            router.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    config
}

fn switchyard(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn cli_without_a_policy_reports_baselines_and_spreads_an_untimed_workload() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (workload, _, rows) = labelled_sample(dir.path());
    let out = switchyard(&[
        "replay".as_ref(),
        "--workload".as_ref(),
        workload.as_os_str(),
        "--per-day".as_ref(),
        "100".as_ref(),
        "--json".as_ref(),
    ]);
    assert_ok(&out);
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json: {e}"));
    assert_eq!(json["policies"].as_array().map(Vec::len), Some(0));
    assert_eq!(json["workload"]["requests"], rows.len());
    // 240 untimed requests at 100 a day: three days, not one.
    assert_eq!(json["workload"]["days"], 3);
    let baselines = json["baselines"].as_array().cloned().unwrap_or_default();
    assert!(
        baselines.iter().any(|b| b["name"] == "openai/gpt-4o"),
        "{baselines:?}"
    );
    assert!(
        json["break_even"]["rows"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );
    // --compare and --decisions need a policy.
    for flag in ["--compare", "--decisions"] {
        let out = switchyard(&[
            "replay".as_ref(),
            "--workload".as_ref(),
            workload.as_os_str(),
            flag.as_ref(),
            dir.path().join("x").as_os_str(),
        ]);
        assert!(!out.status.success(), "{flag} without --policy");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--policy"), "{stderr}");
    }
}

#[test]
fn cli_writes_every_decision_of_both_policies_in_workload_order() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (workload, _, rows) = labelled_sample(dir.path());
    let config = learned_config(dir.path());
    let decisions = dir.path().join("decisions.jsonl");
    let out = switchyard(&[
        "replay".as_ref(),
        "--policy".as_ref(),
        policy_file("learned").as_os_str(),
        "--compare".as_ref(),
        policy_file("cost").as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
        "--workload".as_ref(),
        workload.as_os_str(),
        "--decisions".as_ref(),
        decisions.as_os_str(),
        "--deadline-ms".as_ref(),
        "10000".as_ref(),
        "--json".as_ref(),
    ]);
    assert_ok(&out);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json: {e}"));
    let text = std::fs::read_to_string(&decisions).unwrap_or_else(|e| panic!("{e}"));
    let written: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(written.len(), 2 * rows.len());
    for (p, policy) in report["policies"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let mine: Vec<&serde_json::Value> = written.iter().skip(p).step_by(2).collect();
        assert!(mine.iter().all(|d| d["policy"] == policy["policy"]));
        for (i, d) in mine.iter().enumerate() {
            assert_eq!(d["line"], i + 1);
            assert_eq!(d["id"], format!("q{i}"));
            assert_eq!(d["outcome"], "route");
            assert_eq!(d["fallback"], false, "{d}");
            // Nothing is down: the first target serves.
            let first = d["targets"][0].as_str().unwrap_or_default();
            let served = d["served_by"].as_str().unwrap_or_default();
            assert!(!first.is_empty() && served.starts_with(first), "{d}");
        }
        let cost: f64 = mine.iter().filter_map(|d| d["cost_usd"].as_f64()).sum();
        let reported = policy["cost_usd"].as_f64().unwrap_or(-1.0);
        assert!((cost - reported).abs() < 1e-9, "{cost} vs {reported}");
        let local = mine
            .iter()
            .filter(|d| {
                d["served_by"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("local/"))
            })
            .count();
        let share = policy["local_share"].as_f64().unwrap_or(-1.0);
        assert!((local as f64 / rows.len() as f64 - share).abs() < 1e-12);
    }
    let reasons: std::collections::BTreeSet<&str> = written
        .iter()
        .step_by(2)
        .filter_map(|d| d["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        ["strong:learned", "weak:learned"].into_iter().collect(),
        "the router scored every prompt"
    );
}

#[test]
fn cli_sweep_traces_the_learned_routers_cost_quality_curve() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (workload, labels, rows) = labelled_sample(dir.path());
    let config = learned_config(dir.path());
    let (csv, chart) = (dir.path().join("curve.csv"), dir.path().join("curve.svg"));
    let learned = policy_file("learned");
    let sweep = |extra: &[&std::ffi::OsStr]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "replay".as_ref(),
            "--policy".as_ref(),
            learned.as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
            "--workload".as_ref(),
            workload.as_os_str(),
            "--labels".as_ref(),
            labels.as_os_str(),
            "--sweep".as_ref(),
            "strong_share=0:1:0.25".as_ref(),
            "--deadline-ms".as_ref(),
            "10000".as_ref(),
        ];
        args.extend_from_slice(extra);
        let out = switchyard(&args);
        assert_ok(&out);
        out
    };
    let out = sweep(&[
        "--json".as_ref(),
        "--csv".as_ref(),
        csv.as_os_str(),
        "--chart".as_ref(),
        chart.as_os_str(),
    ]);
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json: {e}"));
    let points = json["points"].as_array().cloned().unwrap_or_default();
    let values: Vec<&str> = points.iter().filter_map(|p| p["value"].as_str()).collect();
    assert_eq!(values, ["0.00", "0.25", "0.50", "0.75", "1.00"]);
    let f = |p: &serde_json::Value, k: &str| p[k].as_f64().unwrap_or(f64::NAN);
    let mean =
        |key: &str| rows.iter().filter(|r| r[key] == true).count() as f64 / rows.len() as f64;
    // All local at 0, all cloud at 1, and the weak and strong models' quality there.
    assert_eq!(f(&points[0], "local_share"), 1.0);
    assert!((f(&points[0], "quality") - mean("weak_correct")).abs() < 1e-12);
    assert_eq!(f(&points[4], "local_share"), 0.0);
    assert!((f(&points[4], "quality") - mean("strong_correct")).abs() < 1e-12);
    assert_eq!(json["best_backend"], "openai");
    for w in points.windows(2) {
        assert!(f(&w[1], "local_share") <= f(&w[0], "local_share"), "{w:?}");
        assert!(f(&w[1], "cost_usd") >= f(&w[0], "cost_usd"), "{w:?}");
    }
    // The router beats random routing with the same shares at 50 and 75 %. (This sample
    // leans to subjects the weak model fails, so at 25 % it does not; the held-out
    // figures are in policies/learned/README.md.)
    for p in &points[2..4] {
        assert!(f(p, "quality") > f(p, "random_same_shares"), "{p}");
    }
    let csv = std::fs::read_to_string(&csv).unwrap_or_else(|e| panic!("{e}"));
    let csv_rows: Vec<&str> = csv.lines().collect();
    assert_eq!(csv_rows.len(), 6, "{csv}");
    assert!(csv_rows[0].starts_with("param,value,cost_usd"));
    let cells: Vec<&str> = csv_rows[3].split(',').collect();
    assert_eq!(&cells[..2], ["strong_share", "0.50"]);
    let csv_quality: f64 = cells[8].parse().unwrap_or(f64::NAN);
    assert!((csv_quality - f(&points[2], "quality")).abs() < 1e-6);
    let svg = std::fs::read_to_string(&chart).unwrap_or_else(|e| panic!("{e}"));
    assert!(svg.contains("Cost against quality: strong_share swept"));
    assert_eq!(
        svg.matches("fill=\"white\" stroke").count(),
        5,
        "random points"
    );
    assert_eq!(
        svg.matches("<title>strong_share=").count(),
        5,
        "policy points"
    );
    // Standard input is replayed once per value too (spooled to a temporary file).
    let piped = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["replay", "--policy"])
        .arg(&learned)
        .arg("--config")
        .arg(&config)
        .args(["--workload", "-", "--labels"])
        .arg(&labels)
        .args([
            "--sweep",
            "strong_share=0:1:0.25",
            "--deadline-ms",
            "10000",
            "--json",
        ])
        .stdin(std::fs::File::open(&workload).unwrap_or_else(|e| panic!("{e}")))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ok(&piped);
    let from_stdin: serde_json::Value =
        serde_json::from_slice(&piped.stdout).unwrap_or_else(|e| panic!("json: {e}"));
    assert_eq!(from_stdin["points"], json["points"]);
    // The table, with progress on stderr.
    let out = sweep(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Sweep of strong_share over 5 value(s)"),
        "{text}"
    );
    assert!(
        text.contains("% of best: against all requests to openai"),
        "{text}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sweep strong_share=1.00 (5/5)"), "{stderr}");
    // A parameter the policy does not read is pointed out.
    let out = switchyard(&[
        "replay".as_ref(),
        "--policy".as_ref(),
        policy_file("learned").as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
        "--workload".as_ref(),
        workload.as_os_str(),
        "--sweep".as_ref(),
        "nonsense=1:2:1".as_ref(),
        "--deadline-ms".as_ref(),
        "10000".as_ref(),
    ]);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does the policy read that parameter?"),
        "{stderr}"
    );
}
