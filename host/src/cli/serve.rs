//! `switchyard serve`: loads the config (or the embedded default), builds the backends and
//! the routing rule, and runs the gateway until Ctrl-C / SIGTERM.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{Config, PolicySource};
use crate::dispatch::{Dispatcher, Router, StaticRouter, estimate_tokens};
use crate::http::{self, AppState};

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
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

fn router_for(config: &Config) -> anyhow::Result<Arc<dyn Router>> {
    match &config.policy.source {
        PolicySource::Static(targets) => Ok(Arc::new(StaticRouter::new(targets.clone()))),
        PolicySource::Wasm(path) => anyhow::bail!(
            "policy component {} cannot be loaded: the policy runtime is not linked into this \
             build yet; use `[policy] static_targets = [...]` in a config file",
            path.display()
        ),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let router = router_for(&config)?;
    let env = |var: &str| std::env::var(var).ok();
    let local = BTreeMap::new();
    let dispatcher =
        Dispatcher::from_config(&config, router, local, Arc::new(estimate_tokens), &env)?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, policy = %dispatcher.policy_label(), "switchyard listening");
    let app = http::router(AppState {
        dispatcher: Arc::new(dispatcher),
        max_body_bytes: config.server.max_body_bytes,
    });
    http::serve(
        listener,
        app,
        config.server.header_read_timeout,
        DRAIN,
        shutdown_signal(),
    )
    .await;
    tracing::info!("switchyard stopped");
    Ok(())
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
