//! `switchyard serve`: loads the config (or the embedded default), builds the backends and
//! the routing rule, and runs the gateway until Ctrl-C / SIGTERM.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::backends::Backend;
#[cfg(feature = "local-model")]
use crate::backends::local::LocalBackend;
use crate::config::{Config, PolicySource};
use crate::decision_log::DecisionLog;
use crate::dispatch::{Dispatcher, RoutingRule, StaticTargets, TokenCounter};
use crate::domain::Decision;
use crate::domain::estimate_tokens;
use crate::http::{self, AppState};
use crate::ledger::{Budget, Ledger};
use crate::live_feed::LiveFeed;
use crate::policy::{Compiler, DecisionLimits, EngineConfig, PolicyEngine};
use crate::policy_set::admin::{self, AdminState};
use crate::policy_set::{self, ConfigReader, PolicySet, SlotConfig};
use crate::ui::{self, UiState};
#[cfg(feature = "local-model")]
use switchyard_local::{LocalConfig, LocalEngine};

/// How long shutdown waits for in-flight requests.
const DRAIN: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Config file (TOML). Without one, the embedded default runs: the local model, the
    /// hybrid policy, and each cloud provider whose API key env var is set.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Listen address (overrides the config).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// GGUF model of the embedded default's local backend.
    #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    pub model: PathBuf,
    /// Policy component of the embedded default.
    #[arg(long, default_value = crate::config::defaults::POLICY_PATH)]
    pub policy: PathBuf,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default(args.model.clone(), args.policy.clone(), |var| {
            std::env::var_os(var).is_some_and(|v| !v.is_empty())
        })?,
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, args.config.clone()))?;
    Ok(ExitCode::SUCCESS)
}

/// The fallback decision of every policy: the configured fallback targets.
fn fallback_decision(config: &Config) -> Decision {
    Decision::to_backends(config.policy.fallback.targets(), "fallback")
}

/// The policy slots a config describes: the default policy first, then the scoped ones.
fn slot_configs(config: &Config) -> Vec<SlotConfig> {
    let PolicySource::Wasm(path) = &config.policy.source else {
        return Vec::new();
    };
    let mut slots = vec![SlotConfig {
        name: config
            .policy
            .name
            .clone()
            .unwrap_or_else(|| crate::policy::name_from_path(path)),
        path: path.clone(),
        params: config.policy.params.clone(),
        fallback: fallback_decision(config),
        models: Vec::new(),
        tenants: Vec::new(),
    }];
    slots.extend(config.policy.scoped.iter().map(|p| SlotConfig {
        name: p.name.clone(),
        path: p.path.clone(),
        params: p.params.clone(),
        fallback: fallback_decision(config),
        models: p.models.clone(),
        tenants: p.tenants.clone(),
    }));
    slots
}

/// The live policies, compiled (or taken from the compiled cache), linked and self-tested
/// here, before the listener opens. `None` for a static target list.
async fn policies_for(config: &Config) -> anyhow::Result<Option<Arc<PolicySet>>> {
    let slots = slot_configs(config);
    if slots.is_empty() {
        return Ok(None);
    }
    for slot in &slots {
        if !slot.path.exists() {
            anyhow::bail!(
                "policy component {} does not exist; build the shipped policies with \
                 `bash policies/build.sh rust`, or point `[policy] path` at your own",
                slot.path.display()
            );
        }
    }
    let engine = PolicyEngine::new(EngineConfig {
        deadline: config.policy.deadline,
        large_guest_deadline: config.policy.large_guest_deadline,
        outer_timeout: config.policy.outer_timeout,
        memory_limit_bytes: config.policy.memory_limit_bytes,
        cache_dir: config.policy.cache_dir.clone(),
        warm_instances: config.policy.warm_instances,
        compiler: std::env::current_exe().map_or(Compiler::InProcess, Compiler::Child),
        decision_limits: DecisionLimits {
            max_targets: config.policy.max_targets,
            ..DecisionLimits::default()
        },
        quarantine: config.policy.quarantine,
        ..EngineConfig::default()
    })?;
    let started = std::time::Instant::now();
    let set = PolicySet::load(engine, slots)
        .await
        .map_err(|e| anyhow::anyhow!("loading policies: {e}"))?;
    tracing::info!(ms = started.elapsed().as_millis() as u64, "policies ready");
    Ok(Some(Arc::new(set)))
}

async fn serve(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    crate::metrics::install()?;
    crate::metrics::spawn_upkeep();
    let policies = policies_for(&config).await?;
    let rule: Arc<dyn RoutingRule> = match (&policies, &config.policy.source) {
        (Some(set), _) => set.clone(),
        (None, PolicySource::Static(targets)) => Arc::new(StaticTargets::new(targets.clone())),
        (None, PolicySource::Wasm(_)) => anyhow::bail!("no policy loaded"),
    };
    let env = |var: &str| std::env::var(var).ok();
    let (local, tokens) = start_local_backends(&config).await?;
    let ledger = match config.ledger_url.clone() {
        Some(url) => {
            let budgets = config.tenants.clone();
            tokio::task::spawn_blocking(move || Ledger::connect(&url, budgets, Budget::default()))
                .await?
                .context("connecting to the spend ledger database ([ledger] url)")?
        }
        None => Ledger::open(
            &config.ledger_path,
            config.tenants.clone(),
            Budget::default(),
        )
        .with_context(|| format!("opening the spend ledger {}", config.ledger_path.display()))?,
    };
    let ledger = Arc::new(
        ledger
            .with_rate_limits(config.rate_limits.clone())
            .when_down(config.ledger_when_down),
    );
    match (&policies, &config.ledger_url) {
        // Replicas on one database share policy versions too.
        (Some(set), Some(url)) => policy_set::replicas::share(set.clone(), url.clone()),
        // A single node keeps them beside its ledger, so a rollback or an upload outlives
        // a restart.
        (Some(set), None) => {
            // A store that cannot be opened (a corrupt or unwritable file) costs the
            // saved versions, not the gateway: it serves its files and says so.
            let path = policy_set::saved::path_beside(&config.ledger_path);
            match policy_set::saved::keep(set.clone(), &path).await {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "policy versions saved across restarts")
                }
                Err(e) => tracing::error!(error = %e,
                    "policy versions are not saved: a restart serves the policy files"),
            }
        }
        (None, _) => {}
    }
    let mut dispatcher =
        Dispatcher::from_config(&config, rule, local, tokens, &env)?.with_ledger(ledger.clone());
    if let Some(log) = &config.decision_log {
        let opened = DecisionLog::open(log.clone())
            .with_context(|| format!("opening the decision log {}", log.path.display()))?;
        tracing::info!(path = %log.path.display(), content = log.include_content, "decision log on");
        dispatcher = dispatcher.with_decision_log(Arc::new(opened));
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, policy = %dispatcher.policy_label(), "switchyard listening");
    let live = Arc::new(LiveFeed::new());
    let dispatcher = Arc::new(dispatcher.with_live_feed(live.clone()));
    let admin_token: Option<Arc<str>> = std::env::var(&config.admin.token_env)
        .ok()
        .filter(|t| !t.is_empty())
        .map(Arc::from);
    let mut app = http::router(AppState {
        dispatcher: dispatcher.clone(),
        max_body_bytes: config.server.max_body_bytes,
        client_keys: Arc::new(config.client_keys.clone()),
        tenants: Arc::new(http::tenants::TenantGate::new(&config)),
    });
    if admin_token.is_none() {
        tracing::info!(env = %config.admin.token_env, "admin API and dashboard closed: its token env var is unset");
    }
    app = app.merge(ui::router(UiState {
        dispatcher,
        ledger: ledger.clone(),
        live: live.clone(),
        token: admin_token.clone(),
        tenants: config.tenants.keys().cloned().collect(),
        policies: policies.is_some(),
    }));
    let _watcher = match &policies {
        Some(set) => {
            let admin = AdminState {
                policies: set.clone(),
                token: admin_token,
            };
            app = app.merge(admin::router(
                admin,
                EngineConfig::default().max_component_bytes,
            ));
            if config.admin.watch {
                let reader = config_path.map(|path| {
                    let shown = path.clone();
                    let read: ConfigReader = Box::new(move || {
                        Config::load(&path)
                            .map(|c| slot_configs(&c))
                            .map_err(|e| e.to_string())
                    });
                    (shown, read)
                });
                Some(
                    policy_set::watch(set.clone(), reader, config.admin.debounce)
                        .map_err(|e| anyhow::anyhow!(e))?,
                )
            } else {
                None
            }
        }
        None => None,
    };
    // Open dashboard streams end at shutdown instead of holding the drain.
    let shutdown = async move {
        shutdown_signal().await;
        live.close();
    };
    http::serve(listener, app, config.server.conn, DRAIN, shutdown).await;
    // Settlements are written behind: commit the last ones before exiting.
    if let Err(e) = tokio::task::spawn_blocking(move || ledger.flush()).await? {
        tracing::error!(error = %e, "flushing the spend ledger failed");
    }
    tracing::info!("switchyard stopped");
    Ok(())
}

/// The local backends' engines, and the prompt-token counter.
type LocalBackends = (BTreeMap<String, Arc<dyn Backend>>, TokenCounter);

/// Starts every local backend's engine. A model that is missing or fails to load is
/// logged and its backend reported unhealthy; the gateway still serves. Prompt tokens are
/// counted with the first loaded model's tokenizer, else estimated.
#[cfg(feature = "local-model")]
async fn start_local_backends(config: &Config) -> anyhow::Result<LocalBackends> {
    let mut out: BTreeMap<String, Arc<dyn Backend>> = BTreeMap::new();
    let mut tokens: TokenCounter = Arc::new(estimate_tokens);
    let mut have_tokenizer = false;
    for cfg in &config.backends {
        let Some(local) = &cfg.local else { continue };
        let local_config = LocalConfig {
            model_path: local.model_path.clone(),
            device: local.device.clone(),
            queue_capacity: local.queue_capacity,
            threads: local.threads,
            context_length: Some(cfg.context_window),
        };
        let started = tokio::task::spawn_blocking(move || LocalEngine::start(local_config))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match &started {
            Ok(engine) => {
                tracing::info!(backend = %cfg.name, model = engine.model_name(), "local model loaded");
                if !have_tokenizer {
                    have_tokenizer = true;
                    let engine = engine.clone();
                    tokens = Arc::new(move |text: &str| engine.count_tokens(text));
                }
            }
            Err(err) => tracing::error!(
                backend = %cfg.name,
                path = %local.model_path.display(),
                error = %err,
                "local model failed to load; serving without it (reported unhealthy)"
            ),
        }
        out.insert(
            cfg.name.clone(),
            Arc::new(LocalBackend::new(
                cfg.name.clone(),
                cfg.models.clone(),
                started,
            )),
        );
    }
    Ok((out, tokens))
}

/// A build without the `local-model` feature (the policy toolkit) serves cloud backends
/// only: a config with a local backend is refused at start, naming it.
#[cfg(not(feature = "local-model"))]
async fn start_local_backends(config: &Config) -> anyhow::Result<LocalBackends> {
    if let Some(local) = config.backends.iter().find(|b| b.local.is_some()) {
        anyhow::bail!(
            "backend {:?} is local, but this switchyard was built without the local model \
             (cargo feature `local-model`): build it with default features, or serve a \
             config with cloud backends only",
            local.name
        );
    }
    Ok((BTreeMap::new(), Arc::new(estimate_tokens)))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
