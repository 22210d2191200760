//! `switchyard policy check|test|route`: validate, test and try policy components.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::policy_new;
use crate::domain::{Decision, PolicyRequest, Verdict};
use crate::policy::cases::{self, Case, CaseFile};
use crate::policy::{EngineConfig, LoadedPolicy, PolicyEngine, PolicySpec, StaticHost};

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Write a standalone policy project (template, SDK, WIT contract) that builds and
    /// passes its unit tests and case file on the first run.
    New {
        /// Policy name: ASCII letters, digits, '-' or '_'.
        name: String,
        #[arg(long, value_enum, default_value_t = policy_new::Lang::Rust)]
        lang: policy_new::Lang,
        /// Project folder (default: ./NAME); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Load a component: compile, link against the world, call info().
    Check { file: PathBuf },
    /// Run a case file through the real sandbox; exit 1 when any case fails.
    Test {
        file: PathBuf,
        cases: PathBuf,
        /// Also run the cases on reused instances and fail when any verdict changes: the
        /// check a policy must pass before it runs with `warm_instances`.
        #[arg(long)]
        warm: bool,
        #[command(flatten)]
        run: RunOptions,
    },
    /// Route one request (a case-file `request` object) with the demo backends; print JSON.
    Route {
        file: PathBuf,
        request: PathBuf,
        /// Policy parameter KEY=VALUE (repeatable).
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
        #[command(flatten)]
        run: RunOptions,
    },
    /// Internal: compile the component on stdin into the compiled-policy cache. `serve`
    /// runs this in a child process so that the server never maps the compiler.
    #[command(hide = true)]
    CompileCache {
        #[arg(long)]
        cache_dir: PathBuf,
        #[arg(long)]
        memory_limit_bytes: usize,
        #[arg(long)]
        max_instances: u32,
    },
}

/// How `test` and `route` run the component.
#[derive(Debug, clap::Args)]
pub struct RunOptions {
    /// Epoch deadline of one decision, ms. Tests check what a policy decides, not how
    /// fast, so the default is generous; pass the gateway's (`[policy] deadline_ms`,
    /// by default 5, 50 for a large Python or JS component) to check that every case also
    /// decides in time.
    #[arg(long, default_value_t = 1000)]
    deadline_ms: u64,
    /// Compiled-component cache (default: `$XDG_CACHE_HOME/switchyard/policies`, else
    /// `~/.cache/switchyard/policies`): a rerun of an unchanged component skips the
    /// compile (about a minute for a Python or JS component).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// A gateway config: decision times are compared with its `[policy] deadline_ms`
    /// (else the gateway's default: 5 ms, 50 ms for a large Python or JS component);
    /// `route` also takes its backends and `[policy.params]`.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl RunOptions {
    fn gateway_config(&self) -> anyhow::Result<Option<crate::config::Config>> {
        self.config
            .as_deref()
            .map(|path| crate::config::Config::load(path).map_err(anyhow::Error::from))
            .transpose()
    }

    fn engine_config(&self) -> EngineConfig {
        let deadline = std::time::Duration::from_millis(self.deadline_ms.max(1));
        let defaults = EngineConfig::default();
        EngineConfig {
            deadline,
            large_guest_deadline: deadline,
            outer_timeout: defaults.outer_timeout.max(deadline * 2),
            cache_dir: self
                .cache_dir
                .clone()
                .or_else(|| crate::config::defaults::policy_cache_dir(|v| std::env::var(v).ok())),
            ..defaults
        }
    }
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    if let PolicyCommand::CompileCache {
        cache_dir,
        memory_limit_bytes,
        max_instances,
    } = cmd
    {
        return compile_cache(cache_dir, memory_limit_bytes, max_instances);
    }
    if let PolicyCommand::New { name, lang, dir } = cmd {
        let dir = policy_new::create(&name, lang, dir)?;
        #[allow(clippy::print_stdout)]
        {
            println!("created {}", dir.display());
            println!("next: {}", policy_new::next_steps(lang, &dir));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(cmd))
}

fn fallback() -> Decision {
    Decision::to_backends(["local"], "fallback")
}

fn load(file: &Path, params: BTreeMap<String, String>) -> anyhow::Result<LoadedPolicy> {
    load_with(file, params, EngineConfig::default())
}

fn load_with(
    file: &Path,
    params: BTreeMap<String, String>,
    config: EngineConfig,
) -> anyhow::Result<LoadedPolicy> {
    let engine = PolicyEngine::new(config)?;
    let spec = PolicySpec {
        name: crate::policy::name_from_path(file),
        params,
        fallback: fallback(),
    };
    engine
        .load_file(spec, file)
        .with_context(|| format!("loading {}", file.display()))
}

/// `policy compile-cache`: the engine is configured like the server's (the cache entry's
/// name carries that configuration's fingerprint); exit status
/// [`crate::policy::COMPILE_FAILED_EXIT`] when the component does not compile.
#[allow(clippy::print_stderr)]
fn compile_cache(
    cache_dir: PathBuf,
    memory_limit_bytes: usize,
    max_instances: u32,
) -> anyhow::Result<ExitCode> {
    use std::io::Read as _;
    let config = EngineConfig {
        memory_limit_bytes,
        max_instances,
        cache_dir: Some(cache_dir),
        ..EngineConfig::default()
    };
    let limit = config.max_component_bytes;
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut bytes)
        .context("reading the component from stdin")?;
    anyhow::ensure!(
        bytes.len() <= limit,
        "the component is over the {limit}-byte limit"
    );
    let engine = PolicyEngine::new(config)?;
    match engine.compile_to_cache(&bytes) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(crate::policy::PolicyError::Compile(message)) => {
            eprintln!("{message}");
            Ok(ExitCode::from(
                u8::try_from(crate::policy::COMPILE_FAILED_EXIT).unwrap_or(1),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

async fn run_async(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { file } => {
            let policy = load(&file, BTreeMap::new())?;
            print_check(&policy);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test {
            file,
            cases,
            warm,
            run,
        } => {
            let text = std::fs::read_to_string(&cases)
                .with_context(|| format!("reading {}", cases.display()))?;
            let case_file =
                CaseFile::parse(&text).with_context(|| format!("parsing {}", cases.display()))?;
            let size = std::fs::metadata(&file).map_or(0, |m| m.len());
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            let gateway_deadline = match run.gateway_config()? {
                Some(c) => EngineConfig {
                    deadline: c.policy.deadline,
                    large_guest_deadline: c.policy.large_guest_deadline,
                    ..EngineConfig::default()
                },
                None => EngineConfig::default(),
            }
            .deadline_for(size);
            let policy = load_with(&file, BTreeMap::new(), run.engine_config())?;
            let results = cases::run(&policy, &case_file).await;
            let mut failed = results.iter().filter(|r| !r.passed()).count();
            print_results(&results);
            print_timing(&results, gateway_deadline);
            if warm {
                let config = EngineConfig {
                    warm_instances: 1,
                    ..run.engine_config()
                };
                let reused = load_with(&file, BTreeMap::new(), config)?;
                let differences = cases::warm_differences(&reused, &case_file, &results).await;
                print_warm(&differences);
                failed += differences.len();
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PolicyCommand::Route {
            file,
            request,
            params,
            run,
        } => {
            let text = std::fs::read_to_string(&request)
                .with_context(|| format!("reading {}", request.display()))?;
            let case_request = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", request.display()))?;
            let case = Case {
                name: "request".to_owned(),
                request: case_request,
                backends: None,
                params: BTreeMap::new(),
                spend: BTreeMap::new(),
                expect: cases::Expect::default(),
            };
            let mut host = StaticHost::default();
            let mut all_params = BTreeMap::new();
            if let Some(config) = run.gateway_config()? {
                host.backends = config
                    .backends
                    .iter()
                    .map(crate::cli::replay::backend_status)
                    .collect();
                all_params = config.policy.params;
            }
            all_params.extend(params);
            let req: PolicyRequest = cases::build_request(&case, &host);
            let policy = load_with(&file, all_params, run.engine_config())?;
            let eval = policy.decide(&req, Arc::new(host)).await;
            print_route(
                &eval.verdict,
                eval.failure.as_ref().map(ToString::to_string),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::CompileCache { .. } | PolicyCommand::New { .. } => {
            anyhow::bail!("this command runs without a runtime")
        }
    }
}

#[allow(clippy::print_stdout)]
fn print_check(policy: &LoadedPolicy) {
    let info = policy.info();
    println!(
        "ok: {}@{} contract: {} info: name={:?} version={:?} description={:?}",
        policy.name(),
        policy.short_digest(),
        policy.contract(),
        info.name,
        info.version,
        info.description
    );
}

#[allow(clippy::print_stdout)]
fn print_results(results: &[cases::CaseResult]) {
    for r in results {
        if r.passed() {
            println!("PASS {}", r.name);
        } else {
            println!("FAIL {}", r.name);
            for p in &r.problems {
                println!("    {p}");
            }
            if let Ok(json) = serde_json::to_string(&r.verdict) {
                println!("    verdict: {json}");
            }
        }
    }
    let failed = results.iter().filter(|r| !r.passed()).count();
    println!("{} passed, {} failed", results.len() - failed, failed);
}

/// Each case's decision time (a fresh instance each: instantiation included), their
/// p50/p99, and a warning when p99 is above half of the gateway's deadline.
#[allow(clippy::print_stdout)]
fn print_timing(results: &[cases::CaseResult], gateway_deadline: std::time::Duration) {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let mut times: Vec<std::time::Duration> = results.iter().map(|r| r.elapsed).collect();
    if times.is_empty() {
        return;
    }
    times.sort();
    let at = |q: f64| {
        let rank = (q * times.len() as f64).ceil() as usize;
        times[rank.clamp(1, times.len()) - 1]
    };
    let (p50, p99) = (at(0.50), at(0.99));
    println!("decision time per case (fresh instance, instantiation included):");
    for r in results {
        println!("  {:>8.2} ms  {}", ms(r.elapsed), r.name);
    }
    println!(
        "decision time: p50 {:.2} ms, p99 {:.2} ms; the gateway's deadline is {:.0} ms",
        ms(p50),
        ms(p99),
        ms(gateway_deadline)
    );
    if p99 * 2 > gateway_deadline {
        println!(
            "WARNING: p99 is above half of the gateway's deadline: under load some live \
             decisions would miss it and take the fallback. Raise `[policy] deadline_ms`, or \
             run the policy with `warm_instances` once `policy test --warm` passes."
        );
    }
}

#[allow(clippy::print_stdout)]
fn print_warm(differences: &[String]) {
    if differences.is_empty() {
        println!("warm: every verdict is the same on reused instances");
        return;
    }
    for d in differences {
        println!("WARM {d}");
    }
    println!(
        "warm: {} decision(s) changed on reused instances: the policy keeps state between \
         requests; run it with warm_instances = 0",
        differences.len()
    );
}

#[allow(clippy::print_stdout)]
fn print_route(verdict: &Verdict, failure: Option<String>) -> anyhow::Result<()> {
    let out = serde_json::json!({ "verdict": verdict, "failure": failure });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
