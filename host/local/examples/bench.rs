//! Benchmark of the local model: load time, prefill tok/s (~100 and ~500-token prompts),
//! decode tok/s (128 greedy tokens), peak RSS. Prints one JSON object.
//!
//! `cargo run --release -p switchyard-local --example bench -- [--model PATH] [--device cpu]
//!  [--threads N] [--decode 128] [--prefill 100,500]`

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::Instant;
use switchyard_local::gguf::GgufFile;
use switchyard_local::model::Llama;
use switchyard_local::sampling::Sampler;
use switchyard_local::tokenizer::TextCodec;

const TEXT: &str = include_str!("../bench/text.txt");

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let model_path = arg("--model").map_or_else(switchyard_local::default_model_path, Into::into);
    let device_spec = arg("--device").unwrap_or_else(|| "cpu".into());
    let threads: usize = arg("--threads").map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |t| t.parse().unwrap(),
    );
    let decode_n: usize = arg("--decode").map_or(128, |n| n.parse().unwrap());
    let prefill: Vec<usize> = arg("--prefill")
        .unwrap_or_else(|| "100,500".into())
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();

    let t0 = Instant::now();
    let file = GgufFile::open(&model_path).expect("model file (run host/local/fetch-model.sh)");
    let codec = TextCodec::from_gguf(&file).unwrap();
    let (device, compute, device_name) =
        switchyard_local::engine::resolve_device(&device_spec).unwrap();
    let model = Llama::load(&file, &device, compute, 4096).unwrap();
    drop(file);
    let load_s = t0.elapsed().as_secs_f64();

    let corpus = codec.encode(&TEXT.repeat(8), false).unwrap();
    pool.install(|| {
        // Warm-up: one short prefill and a few decode steps.
        let mut cache = model.new_cache();
        let logits = model.forward(&corpus[..16], &mut cache);
        let mut sampler = Sampler::new(0.0, None, None, 0);
        let mut id = sampler.sample(&logits);
        for _ in 0..4 {
            id = sampler.sample(&model.forward(&[id], &mut cache));
        }

        let mut prefill_out = Vec::new();
        for &n in &prefill {
            let mut best = f64::MAX;
            for _ in 0..3 {
                let mut cache = model.new_cache();
                let t = Instant::now();
                model.forward(&corpus[..n], &mut cache);
                best = best.min(t.elapsed().as_secs_f64());
            }
            prefill_out.push(format!("\"{n}\": {:.1}", n as f64 / best));
        }

        let mut cache = model.new_cache();
        let prompt = codec
            .encode(
                &codec
                    .render_chat(&[("user".into(), "Write a long story about a lighthouse keeper.".into())])
                    .unwrap(),
                true,
            )
            .unwrap();
        let logits = model.forward(&prompt, &mut cache);
        let mut id = sampler.sample(&logits);
        let t = Instant::now();
        for _ in 0..decode_n {
            id = sampler.sample(&model.forward(&[id], &mut cache));
        }
        let decode_s = t.elapsed().as_secs_f64();
        println!(
            "{{\"engine\": \"switchyard\", \"device\": \"{device_name}\", \"threads\": {threads}, \"load_s\": {load_s:.3}, \"prefill_tok_s\": {{{}}}, \"decode_tok_s\": {:.1}, \"peak_rss_mib\": {:.1}}}",
            prefill_out.join(", "),
            decode_n as f64 / decode_s,
            peak_rss_mib()
        );
    });
}
