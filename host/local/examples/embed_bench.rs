//! Benchmark of the local embedder: p50 latency of one text and texts/s for batches of 32.
//! Reads the texts from a JSON file `{"single": "...", "batch": ["...", ...]}` (written by
//! bench/embed.py, which runs the sentence-transformers reference in the same run). Prints
//! one JSON object.
//!
//! `cargo run --release -p switchyard-local --example embed_bench -- TEXTS.json [--threads 2]
//!  [--model-dir DIR] [--runs 50] [--batches 10]`

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::PathBuf;
use std::time::Instant;
use switchyard_local::embed::{Embedder, default_model_dir};

#[derive(serde::Deserialize)]
struct Texts {
    single: String,
    batch: Vec<String>,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut texts_path = None;
    let (mut threads, mut runs, mut batches) = (2usize, 50usize, 10usize);
    let mut dir = default_model_dir();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => threads = args.next().expect("--threads N").parse().expect("threads"),
            "--runs" => runs = args.next().expect("--runs N").parse().expect("runs"),
            "--batches" => batches = args.next().expect("--batches N").parse().expect("batches"),
            "--model-dir" => dir = PathBuf::from(args.next().expect("--model-dir DIR")),
            other => texts_path = Some(PathBuf::from(other)),
        }
    }
    let texts: Texts = serde_json::from_slice(
        &std::fs::read(texts_path.expect("usage: embed_bench TEXTS.json")).expect("read texts"),
    )
    .expect("texts json");
    let start = Instant::now();
    let embedder = Embedder::load_with_threads(&dir, threads).expect("load model");
    let load_s = start.elapsed().as_secs_f64();
    let single_tokens = embedder.count_tokens(&texts.single);
    embedder.embed_batch(&[&texts.single]).expect("warm-up");
    let mut latencies: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            embedder.embed_batch(&[&texts.single]).expect("embed");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let p50_ms = latencies[latencies.len() / 2];
    let batch: Vec<&str> = texts.batch.iter().map(String::as_str).collect();
    embedder.embed_batch(&batch).expect("warm-up batch");
    let t = Instant::now();
    for _ in 0..batches {
        embedder.embed_batch(&batch).expect("embed batch");
    }
    let texts_per_s = (batches * batch.len()) as f64 / t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "engine": "switchyard",
            "threads": threads,
            "load_s": load_s,
            "single_tokens": single_tokens,
            "p50_ms": p50_ms,
            "batch_size": batch.len(),
            "texts_per_s": texts_per_s,
        })
    );
}
