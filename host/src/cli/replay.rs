//! `switchyard replay`: run one or two policy components over a workload (decision log,
//! OpenAI request bodies, or a synthetic mix) against a simulated host and report cost,
//! local share, budgets, PII sent to cloud, baselines and break-even.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::config::{Config, defaults};
use crate::domain::{BackendKind, BackendStatus, Decision};
use crate::policy::{
    DecisionLimits, EngineConfig, LoadedPolicy, PolicyEngine, PolicySpec, StaticHost,
};
use crate::replay::decisions::DecisionSink;
use crate::replay::sweep::{Sweep, SweepPoint, SweepSpec};
use crate::replay::{
    self, DEFAULT_OUTPUT_RATIO, DEFAULT_UNTIMED_PER_DAY, HardwareProfile, JsonlReader, LineError,
    Outage, ReplayOptions, Shape, Synthetic, SyntheticSpec, WorkloadRecord,
};

/// Arguments of `switchyard replay`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  switchyard replay --policy target/policies/hybrid.wasm --synthetic 1000
  switchyard replay --policy a.wasm --compare b.wasm --workload requests.jsonl --json
  switchyard replay --policy cost.wasm --config switchyard.toml --synthetic 5000 --days 30 \\
      --outage openai:10-12 --hardware price=1800,months=36,watts=350 --chart cost.svg --html report.html
  switchyard replay --policy learned.wasm --config router.toml --workload prompts.jsonl \\
      --labels labels.jsonl --sweep strong_share=0.1:0.9:0.1 --csv curve.csv --chart curve.svg
  switchyard replay --workload requests.jsonl --per-day 5000     # baselines and break-even only")]
pub struct ReplayArgs {
    /// Policy component to replay (A). Without one, the report has the workload, the
    /// baselines and break-even only.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// A second policy component to compare with (B).
    #[arg(long, requires = "policy")]
    pub compare: Option<PathBuf>,
    /// Gateway config: backends, prices, tenant budgets, policy params, fallback and
    /// classifiers
    /// (default: the demo backends local, openai, anthropic, gemini).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// JSONL workload: decision-log records or OpenAI request bodies; `-` reads stdin.
    #[arg(
        long,
        conflicts_with = "synthetic",
        required_unless_present = "synthetic"
    )]
    pub workload: Option<PathBuf>,
    /// Generate a synthetic workload of N requests per day instead.
    #[arg(long, value_name = "N")]
    pub synthetic: Option<u64>,
    /// Days of synthetic workload.
    #[arg(long, default_value_t = 30, requires = "synthetic")]
    pub days: u32,
    /// Seed of the synthetic workload (same seed, same workload).
    #[arg(long, default_value_t = 42, requires = "synthetic")]
    pub seed: u64,
    /// `mix` (realistic task mix) or INPUTxOUTPUT tokens per request, e.g. `500x200`.
    #[arg(long, default_value = "mix", requires = "synthetic")]
    pub synthetic_shape: Shape,
    /// Write the synthetic workload as OpenAI-body JSONL to FILE and exit.
    #[arg(long, value_name = "FILE", requires = "synthetic")]
    pub emit_workload: Option<PathBuf>,
    /// Requests a day for workload records without a timestamp: each follows the previous
    /// record by a day / N (the first starts the first day), so an untimed file spans days.
    #[arg(long, default_value_t = DEFAULT_UNTIMED_PER_DAY, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub per_day: u64,
    /// Output tokens per input token where the workload has no observed usage.
    #[arg(long, default_value_t = DEFAULT_OUTPUT_RATIO)]
    pub output_ratio: f64,
    /// Backend outage BACKEND:START_DAY-END_DAY (1-based replay days; repeatable).
    #[arg(long = "outage", value_name = "BACKEND:START-END")]
    pub outages: Vec<Outage>,
    /// Local hardware profile for break-even: `rtx4090` or
    /// price=1800,months=36,watts=400,usd_per_kwh=0.15,hours_per_day=24[,tokens_per_s=N] (default: the config's [hardware], else an assumed RTX 4090)
    #[arg(long)]
    pub hardware: Option<HardwareProfile>,
    /// Skip unreadable workload lines (counted in the report) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG chart of daily cost per target (with --sweep: cost against quality, or
    /// against local share without --labels, one point per value).
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,
    /// Write the report as one self-contained HTML page: tables, charts of daily cost and
    /// local share by day, cost against quality with --labels, the text report.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Policy parameter KEY=VALUE (repeatable; overrides the config's).
    #[arg(long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Epoch deadline of one decision, ms (default: the config's, else the gateway's 5 ms, 50 ms
    /// for a large component).
    /// Raise it when a loaded machine turns slow decisions into fallbacks.
    #[arg(long, value_name = "MS")]
    pub deadline_ms: Option<u64>,
    /// Idle instances kept per policy and reused across decisions (0: a fresh store per
    /// decision, as the gateway runs by default). Only for policies that keep no state
    /// between requests; much faster replays.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub warm_instances: usize,
    /// Decisions that differ between A and B to show.
    #[arg(long, default_value_t = 10)]
    pub diff_samples: usize,
    /// Quality labels, JSON lines `{"id": REQUEST ID, "quality": {"BACKEND": 0..1}}`: the
    /// report adds each policy's quality, % of the best backend's, and random routing's
    /// at the same shares.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Write every request's decision, one JSON line per policy (id, tenant, time, policy,
    /// targets, reason, fallback, served by, failover, cost).
    #[arg(long, value_name = "FILE", requires = "policy")]
    pub decisions: Option<PathBuf>,
    /// Replay the policy once per value of a parameter, PARAM=FROM:TO:STEP (e.g.
    /// strong_share=0.1:0.9:0.1), and report the cost/quality curve (table; --csv, --chart,
    /// --json).
    #[arg(long, value_name = "PARAM=FROM:TO:STEP", requires = "policy",
          conflicts_with_all = ["compare", "decisions", "html"])]
    pub sweep: Option<SweepSpec>,
    /// With --sweep: write the curve as CSV.
    #[arg(long, value_name = "FILE", requires = "sweep")]
    pub csv: Option<PathBuf>,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// What the host reports for a configured backend.
pub fn backend_status(b: &crate::config::BackendConfig) -> BackendStatus {
    let (p50, p95) = match b.locality {
        BackendKind::Local => (400.0, 1200.0),
        BackendKind::Cloud => (700.0, 1500.0),
    };
    BackendStatus {
        name: b.name.clone(),
        kind: b.locality,
        models: b.models.clone(),
        healthy: true,
        latency_p50_ms: p50,
        latency_p95_ms: p95,
        error_rate: 0.0,
        in_flight: 0,
        queue_depth: 0,
        usd_per_mtok_in: b.usd_per_mtok_in,
        usd_per_mtok_out: b.usd_per_mtok_out,
        context_window: b.context_window,
        labels: b.labels.clone(),
        capabilities: crate::backends::fields::capabilities(b),
    }
}

/// The fallback decision replayed for a failed policy: the configured targets, else (none
/// configured, or `reject`, which replay does not model) the first local backend.
fn fallback(targets: &[String], backends: &[BackendStatus]) -> Decision {
    let names: Vec<String> = if targets.is_empty() {
        backends
            .iter()
            .find(|b| b.kind == BackendKind::Local)
            .or_else(|| backends.first())
            .map(|b| vec![b.name.clone()])
            .unwrap_or_default()
    } else {
        targets.to_vec()
    };
    Decision::to_backends(names, "fallback")
}

fn load(
    engine: &PolicyEngine,
    file: &Path,
    params: &BTreeMap<String, String>,
    fallback: &Decision,
) -> anyhow::Result<LoadedPolicy> {
    let spec = PolicySpec {
        name: crate::policy::name_from_path(file),
        params: params.clone(),
        fallback: fallback.clone(),
    };
    engine
        .load_file(spec, file)
        .with_context(|| format!("loading policy {}", file.display()))
}

fn emit(records: Synthetic, path: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for r in records {
        let line = openai_line(&r);
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A workload record as an OpenAI request body with the replay's extra fields.
pub fn openai_line(r: &WorkloadRecord) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": r.id,
        "model": r.model,
        "messages": r.messages,
        "tenant": r.tenant,
        "metadata": r.labels,
    });
    if let Some(ts) = r.timestamp_ms {
        v["timestamp"] = serde_json::json!(crate::time::rfc3339(ts));
    }
    if let Some(m) = r.max_tokens {
        v["max_tokens"] = serde_json::json!(m);
    }
    if r.prompt_tokens.is_some() || r.completion_tokens.is_some() {
        v["usage"] = serde_json::json!({
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
        });
    }
    v
}

/// Runs `switchyard replay`.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let synthetic = args.synthetic.map(|per_day| SyntheticSpec {
        per_day,
        days: args.days,
        seed: args.seed,
        shape: args.synthetic_shape,
    });
    if let Some(path) = &args.emit_workload {
        let Some(spec) = synthetic else {
            anyhow::bail!("--emit-workload needs --synthetic N");
        };
        emit(Synthetic::new(spec), path)?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = args
        .config
        .as_deref()
        .map(|p| Config::load(p).with_context(|| format!("loading config {}", p.display())))
        .transpose()?;
    let (backends, budgets, mut params, fallback_targets, engine_config) = match &config {
        Some(c) => (
            c.backends.iter().map(backend_status).collect::<Vec<_>>(),
            c.tenants.clone(),
            c.policy.params.clone(),
            c.policy.fallback.targets().to_vec(),
            EngineConfig {
                deadline: c.policy.deadline,
                large_guest_deadline: c.policy.large_guest_deadline,
                outer_timeout: c.policy.outer_timeout,
                memory_limit_bytes: c.policy.memory_limit_bytes,
                cache_dir: c.policy.cache_dir.clone(),
                decision_limits: DecisionLimits {
                    max_targets: c.policy.max_targets,
                    ..DecisionLimits::default()
                },
                ..EngineConfig::default()
            },
        ),
        None => (
            StaticHost::default().backends,
            BTreeMap::new(),
            BTreeMap::new(),
            Vec::new(),
            EngineConfig {
                cache_dir: defaults::policy_cache_dir(|v| std::env::var(v).ok()),
                ..EngineConfig::default()
            },
        ),
    };
    params.extend(args.params.iter().cloned());
    let mut engine_config = engine_config;
    engine_config.warm_instances = args.warm_instances;
    // Replay shows what the policy itself decides: no decision is skipped by a
    // quarantine (which depends on timing, not on the workload).
    engine_config.quarantine.failures = 0;
    if let Some(ms) = args.deadline_ms {
        engine_config.deadline = std::time::Duration::from_millis(ms.max(1));
        engine_config.large_guest_deadline = engine_config.deadline;
        engine_config.outer_timeout = engine_config.outer_timeout.max(engine_config.deadline * 2);
    }
    let fallback = fallback(&fallback_targets, &backends);
    let engine = PolicyEngine::new(engine_config)?;
    let mut policies = Vec::new();
    for file in args.policy.iter().chain(args.compare.iter()) {
        policies.push(load(&engine, file, &params, &fallback)?);
    }
    let source = match (&args.workload, args.synthetic) {
        (Some(p), _) => p.display().to_string(),
        (None, Some(n)) => match args.synthetic_shape {
            Shape::Mix => format!(
                "synthetic mix, {n}/day × {} days, seed {}",
                args.days, args.seed
            ),
            Shape::Fixed { input, output } => format!(
                "synthetic {input} in / {output} out, {n}/day × {} days",
                args.days
            ),
        },
        (None, None) => String::new(),
    };
    let decisions = args
        .decisions
        .as_deref()
        .map(|path| {
            std::fs::File::create(path)
                .map(|f| Arc::new(DecisionSink::new(Box::new(f))))
                .with_context(|| format!("creating the decisions file {}", path.display()))
        })
        .transpose()?;
    let opts = ReplayOptions {
        backends,
        budgets,
        outages: args.outages.clone(),
        output_ratio: args.output_ratio,
        hardware: args
            .hardware
            .clone()
            .or_else(|| config.as_ref().and_then(|c| c.hardware.clone())),
        skip_bad: args.skip_bad,
        source,
        diff_samples: args.diff_samples,
        labels: args.labels.as_deref().map(read_labels).transpose()?,
        scorer: match &config {
            Some(c) => Arc::new(crate::classifiers::Classifiers::from_config(c)?),
            None => Arc::new(crate::embeddings::NoEmbeddings),
        },
        untimed_per_day: args.per_day,
        decisions,
    };
    let workload = match (synthetic, &args.workload) {
        (Some(spec), _) => Workload::Synthetic(spec),
        (None, Some(path)) if path.as_os_str() == "-" => Workload::Stdin,
        (None, Some(path)) => Workload::File(path.clone()),
        (None, None) => anyhow::bail!("give --workload FILE or --synthetic N"),
    };
    if let Some(spec) = &args.sweep {
        let [policy] = policies.as_slice() else {
            anyhow::bail!("--sweep replays one policy: give --policy FILE");
        };
        return sweep(&args, spec, policy, workload, &opts);
    }
    let report = workload
        .replay(&policies, &opts)
        .with_context(|| format!("replaying {}", opts.source))?;
    if let Some(path) = &args.decisions {
        tracing::info!(path = %path.display(), "decisions written");
    }
    if let Some(path) = &args.chart {
        std::fs::write(path, replay::chart::daily_cost_svg(&report))
            .with_context(|| format!("writing chart {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, replay::html::page(&report))
            .with_context(|| format!("writing the HTML report {}", path.display()))?;
    }
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&report)?;
        s.push('\n');
        s
    } else {
        report.render_text()
    };
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Where the replay's records come from; a sweep reads them once per value (standard
/// input is first copied to an anonymous temporary file for that).
enum Workload {
    Synthetic(SyntheticSpec),
    File(PathBuf),
    /// `--workload -`, read as it comes.
    Stdin,
    /// Standard input copied to a temporary file, read from its start each time.
    Spooled(std::fs::File),
}

type Records = Box<dyn Iterator<Item = Result<WorkloadRecord, LineError>> + Send>;

impl Workload {
    fn records(&self) -> anyhow::Result<Records> {
        let reader = |input: Box<dyn std::io::Read + Send>| -> Records {
            Box::new(JsonlReader::new(std::io::BufReader::with_capacity(
                1 << 20,
                input,
            )))
        };
        Ok(match self {
            Self::Synthetic(spec) => Box::new(Synthetic::new(*spec).map(Ok)),
            Self::File(path) => {
                reader(Box::new(std::fs::File::open(path).with_context(|| {
                    format!("opening workload {}", path.display())
                })?))
            }
            Self::Stdin => reader(Box::new(std::io::stdin())),
            Self::Spooled(file) => {
                let mut file = file.try_clone().context("reopening the spooled workload")?;
                std::io::Seek::rewind(&mut file).context("rewinding the spooled workload")?;
                reader(Box::new(file))
            }
        })
    }

    fn replay(
        &self,
        policies: &[LoadedPolicy],
        opts: &ReplayOptions,
    ) -> anyhow::Result<replay::Report> {
        Ok(replay::replay(policies, self.records()?, opts)?)
    }

    /// Copies standard input to an anonymous temporary file (memory stays bounded however
    /// large it is), so it can be replayed more than once.
    fn rereadable(self) -> anyhow::Result<Self> {
        Ok(match self {
            Self::Stdin => {
                let mut file = tempfile::tempfile().context("creating a temporary file")?;
                std::io::copy(&mut std::io::stdin().lock(), &mut file)
                    .context("copying the workload from standard input")?;
                Self::Spooled(file)
            }
            other => other,
        })
    }
}

/// `--sweep`: the policy replayed at each value of the parameter, with progress on stderr.
fn sweep(
    args: &ReplayArgs,
    spec: &SweepSpec,
    policy: &LoadedPolicy,
    workload: Workload,
    opts: &ReplayOptions,
) -> anyhow::Result<ExitCode> {
    let workload = workload.rereadable()?;
    let values = spec.values();
    let mut points = Vec::with_capacity(values.len());
    let (mut requests, mut best_backend, mut label) = (0, None, String::new());
    for (i, value) in values.into_iter().enumerate() {
        tracing::info!(
            "sweep {}={value} ({}/{})",
            spec.param,
            i + 1,
            points.capacity()
        );
        let mut params = policy.spec().clone();
        params.params.insert(spec.param.clone(), value.clone());
        let report = workload
            .replay(&[policy.with_spec(params)], opts)
            .with_context(|| format!("replaying {} at {}={value}", opts.source, spec.param))?;
        let Some(p) = report.policies.first() else {
            anyhow::bail!("the replay reported no policy");
        };
        requests = report.workload.requests;
        label.clone_from(&p.policy);
        if best_backend.is_none() {
            best_backend = p.quality.as_ref().map(|q| q.best_backend.clone());
        }
        points.push(SweepPoint::new(value, p));
    }
    let sweep = Sweep {
        param: spec.param.clone(),
        policy: label,
        source: opts.source.clone(),
        requests,
        best_backend,
        points,
    };
    if let Some(path) = &args.csv {
        std::fs::write(path, sweep.csv())
            .with_context(|| format!("writing the CSV {}", path.display()))?;
    }
    if let Some(path) = &args.chart {
        std::fs::write(path, replay::chart::sweep_svg(&sweep))
            .with_context(|| format!("writing chart {}", path.display()))?;
    }
    if sweep.points.len() > 1 && sweep.points.windows(2).all(|w| same_outcome(&w[0], &w[1])) {
        tracing::warn!(
            "every value of {} gave the same cost, local share and quality: does the policy read that parameter?",
            spec.param
        );
    }
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&sweep)?;
        s.push('\n');
        s
    } else {
        sweep.render_text()
    };
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn same_outcome(a: &SweepPoint, b: &SweepPoint) -> bool {
    a.cost_usd == b.cost_usd && a.local_share == b.local_share && a.quality == b.quality
}

/// The labels file `--labels` names; one with no labels is refused.
fn read_labels(path: &Path) -> anyhow::Result<Arc<replay::quality::Labels>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("opening labels {}", path.display()))?;
    let labels = replay::quality::Labels::read(std::io::BufReader::new(file))
        .with_context(|| format!("reading labels {}", path.display()))?;
    anyhow::ensure!(!labels.is_empty(), "{} holds no labels", path.display());
    Ok(Arc::new(labels))
}
