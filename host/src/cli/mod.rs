//! Command-line surface: one submodule per command group, each with its own clap `Args`.

#[cfg(feature = "local-model")]
pub mod local;
pub mod policy;
mod policy_new;
pub mod replay;
pub mod serve;
pub mod spend;
pub mod train;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

/// Switchyard: an LLM gateway whose routing rule is a sandboxed WebAssembly policy.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
pub struct Cli {
    /// Log line format (stderr). Filter with RUST_LOG, e.g. RUST_LOG=switchyard=debug.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(serve::ServeArgs),
    /// Check, test and try policy components.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Use the local model directly.
    #[cfg(feature = "local-model")]
    #[command(subcommand)]
    Local(local::LocalCommand),
    /// Print spend per tenant from the ledger.
    Spend(spend::SpendArgs),
    /// Replay a workload through one or two policies: cost, local share, budgets, PII.
    Replay(Box<replay::ReplayArgs>),
    /// Train models the gateway loads (the learned router).
    #[command(subcommand)]
    Train(train::TrainCommand),
}

/// Runs one parsed command; the exit code is the command's verdict.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Policy(cmd) => policy::run(cmd),
        #[cfg(feature = "local-model")]
        Command::Local(cmd) => local::run(cmd),
        Command::Spend(args) => spend::run(args),
        Command::Replay(args) => replay::run(*args),
        Command::Train(cmd) => train::run(cmd),
    }
}

/// Installs the tracing subscriber: stderr, `RUST_LOG` filter (default `info`), text or JSON;
/// colours only when stderr is a terminal (not in files or log collectors).
pub fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
