//! `switchyard spend`: prints spend per tenant from the ledger.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::{Config, defaults};
use crate::ledger::{Budget, Ledger};

#[derive(Debug, clap::Args)]
pub struct SpendArgs {
    /// Config file whose `[ledger]` (`path` or `url`) and `[tenants]` budgets to use.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Ledger database (overrides the config).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: SpendArgs) -> anyhow::Result<ExitCode> {
    let (path, url, budgets) = match &args.config {
        Some(c) => {
            let config = Config::load(c)?;
            (config.ledger_path, config.ledger_url, config.tenants)
        }
        None => (
            PathBuf::from(defaults::LEDGER_PATH),
            None,
            Default::default(),
        ),
    };
    let ledger = match (args.ledger, url) {
        (None, Some(url)) => Ledger::inspect_postgres(&url, budgets, Budget::default())
            .context("reading the spend ledger database ([ledger] url)")?,
        (path_arg, _) => {
            let path = path_arg.unwrap_or(path);
            if !path.exists() {
                anyhow::bail!("no ledger at {}", path.display());
            }
            Ledger::inspect(&path, budgets, Budget::default())
                .with_context(|| format!("opening {}", path.display()))?
        }
    };
    let rows = ledger.tenants()?;
    print(&ledger, &rows, args.json)?;
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn print(ledger: &Ledger, rows: &[crate::ledger::TenantSpend], json: bool) -> anyhow::Result<()> {
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                let b = ledger.budget(&r.tenant);
                serde_json::json!({"tenant": r.tenant, "today_usd": r.today_usd,
                    "month_usd": r.month_usd, "total_usd": r.total_usd,
                    "attempts": r.settled_attempts, "open_reservations": r.open_reservations,
                    "daily_budget_usd": b.daily_usd, "monthly_budget_usd": b.monthly_usd,
                    "hard_cap_usd": b.hard_cap_usd})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{:<20} {:>12} {:>12} {:>12} {:>9} {:>12}",
        "tenant", "today $", "month $", "total $", "attempts", "hard cap $"
    );
    for r in rows {
        let cap = ledger
            .budget(&r.tenant)
            .hard_cap_usd
            .map_or_else(|| "-".to_owned(), |c| format!("{c:.4}"));
        println!(
            "{:<20} {:>12.6} {:>12.6} {:>12.6} {:>9} {:>12}",
            r.tenant, r.today_usd, r.month_usd, r.total_usd, r.settled_attempts, cap
        );
    }
    Ok(())
}
