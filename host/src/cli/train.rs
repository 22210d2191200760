//! `switchyard train router`: fits the learned router on labelled prompts, prints the
//! held-out-by-domain cost/quality curve, and writes `router.bin`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::train::{self, TrainOptions};

#[derive(Debug, clap::Subcommand)]
pub enum TrainCommand {
    /// Fit the learned router (weak vs strong backend) on labelled prompts.
    Router(RouterArgs),
}

#[derive(Debug, clap::Args)]
pub struct RouterArgs {
    /// JSON lines: `prompt`, `domain`, `weak_correct`, `strong_correct` per prompt.
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write the trained model.
    #[arg(long)]
    pub out: PathBuf,
    /// Validation folds; whole domains are held out in each.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Hash buckets for word unigrams and bigrams.
    #[arg(long, default_value_t = 4096)]
    pub buckets: u32,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    #[arg(long, default_value_t = 17)]
    pub seed: u64,
}

pub fn run(command: TrainCommand) -> anyhow::Result<ExitCode> {
    match command {
        TrainCommand::Router(args) => router(args),
    }
}

fn router(args: RouterArgs) -> anyhow::Result<ExitCode> {
    let examples = train::load_labelled(&args.data)?;
    anyhow::ensure!(
        !examples.is_empty(),
        "{} holds no prompts",
        args.data.display()
    );
    let options = TrainOptions {
        buckets: args.buckets,
        epochs: args.epochs,
        seed: args.seed,
        ..TrainOptions::default()
    };
    let folds = train::cross_validate(&examples, args.folds, &options);
    let shares: Vec<f64> = (1..=9).map(|t| f64::from(t) / 10.0).collect();
    let points = train::curve(&folds, &shares);
    let (learned_share, random_share) = train::share_needed(&folds, 0.95);
    print_validation(
        examples.len(),
        folds.len(),
        &points,
        learned_share,
        random_share,
    );
    let model = train::fit(&examples, &options);
    let started = std::time::Instant::now();
    let ranked: f64 = examples.iter().map(|e| model.rank_text(&e.prompt)).sum();
    let per_prompt = started.elapsed() / examples.len().max(1) as u32;
    std::fs::write(&args.out, model.to_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    print_written(&args.out, per_prompt, ranked / examples.len().max(1) as f64);
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn print_validation(
    prompts: usize,
    folds: usize,
    points: &[train::CurvePoint],
    learned_share: f64,
    random_share: f64,
) {
    println!("held-out validation: {prompts} prompts, {folds} folds by domain");
    println!("strong share   learned (% of strong)   random (% of strong)");
    for p in points {
        let pct = |q: f64| 100.0 * q / p.strong_quality.max(f64::EPSILON);
        println!(
            "{:>10.0} %   {:>6.2} % ({:>6.2} %)      {:>6.2} % ({:>6.2} %)",
            100.0 * p.strong_share,
            100.0 * p.learned_quality,
            pct(p.learned_quality),
            100.0 * p.random_quality,
            pct(p.random_quality),
        );
    }
    println!(
        "95 % of strong quality: learned needs {:.0} % strong calls ({:.0} % fewer than all-strong), random {:.0} % ({:.0} % fewer)",
        100.0 * learned_share,
        100.0 * (1.0 - learned_share),
        100.0 * random_share,
        100.0 * (1.0 - random_share),
    );
}

#[allow(clippy::print_stdout)]
fn print_written(out: &std::path::Path, per_prompt: std::time::Duration, mean_rank: f64) {
    println!(
        "scoring cost: {:.1} µs per prompt (features + model, this build; mean rank {mean_rank:.3})",
        per_prompt.as_secs_f64() * 1e6
    );
    println!("wrote {} (trained on all prompts)", out.display());
}
