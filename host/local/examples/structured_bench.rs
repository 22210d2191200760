//! Constrained decoding against unconstrained decoding on the same prompts: completion
//! tokens per second after the first token (greedy), each prompt once free and once with a
//! `json_schema` response format, and the mask's own cost per step replayed on the
//! constrained replies. Prints one JSON object.
//!
//! `cargo run --release -p switchyard-local --example structured_bench -- [--model PATH]
//!  [--threads N] [--max-tokens 128] [--rounds 1]`

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_local::gguf::GgufFile;
use switchyard_local::structured::{Grammars, OutputFormat};
use switchyard_local::tokenizer::TextCodec;
use switchyard_local::{GenerateEvent, GenerateRequest, LocalConfig, LocalEngine};

const PROMPTS: &[&str] = &[
    "Extract the person: Maria Lopez is 34 years old, lives in Madrid and works as a nurse.",
    "Extract the person: Kenji Sato is 51, a chef from Osaka.",
    "Describe a fictional employee of a bakery.",
    "Classify this review: the battery lasts two days and the screen is gorgeous.",
    "Classify this review: arrived broken and support never answered.",
    "Give me the details of a book you like.",
    "Describe the city of Lyon.",
    "Summarise: the meeting moved to Tuesday at 3 pm in room 4.",
];

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["title", "kind", "score", "facts"],
        "properties": {
            "title": {"type": "string", "maxLength": 60},
            "kind": {"enum": ["person", "review", "place", "thing", "event"]},
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
            "facts": {"type": "array", "maxItems": 4,
                      "items": {"type": "string", "maxLength": 80}}
        }
    })
}

/// One run: (completion tokens after the first, seconds from the first token to Done, text).
fn run(
    engine: &LocalEngine,
    prompt: &str,
    format: Option<OutputFormat>,
    max: u32,
) -> (u32, f64, String) {
    let mut rx = engine
        .submit(GenerateRequest {
            messages: vec![("user".into(), prompt.into())],
            max_tokens: max,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: Some(1),
            stop: Vec::new(),
            format,
        })
        .unwrap();
    let mut first = None;
    let mut text = String::new();
    while let Some(event) = rx.blocking_recv() {
        match event {
            GenerateEvent::Delta(piece) => {
                first.get_or_insert_with(Instant::now);
                text.push_str(&piece);
            }
            GenerateEvent::Done {
                completion_tokens, ..
            } => {
                let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
                return (completion_tokens.saturating_sub(1), secs, text);
            }
            GenerateEvent::Error(e) => panic!("{e}"),
        }
    }
    panic!("no Done");
}

fn main() {
    let model_path = arg("--model").map_or_else(switchyard_local::default_model_path, Into::into);
    let threads = arg("--threads").map(|t| t.parse().unwrap());
    let max: u32 = arg("--max-tokens").map_or(128, |n| n.parse().unwrap());
    let rounds: usize = arg("--rounds").map_or(1, |n| n.parse().unwrap());
    let engine = LocalEngine::start(LocalConfig {
        model_path: model_path.clone(),
        device: "cpu".into(),
        threads,
        ..LocalConfig::default()
    })
    .expect("model file (run host/local/fetch-model.sh)");
    let format = OutputFormat::JsonSchema(schema());
    // Warm-up: indexes the vocabulary once (reported apart) and touches the weights.
    let t = Instant::now();
    run(&engine, PROMPTS[0], Some(format.clone()), 4);
    let first_format_s = t.elapsed().as_secs_f64();
    run(&engine, PROMPTS[0], None, 4);

    let (mut free_tokens, mut free_secs) = (0u32, 0.0f64);
    let (mut json_tokens, mut json_secs) = (0u32, 0.0f64);
    let mut replies = Vec::new();
    for _ in 0..rounds {
        for prompt in PROMPTS {
            let (n, s, _) = run(&engine, prompt, None, max);
            free_tokens += n;
            free_secs += s;
            let (n, s, text) = run(&engine, prompt, Some(format.clone()), max);
            json_tokens += n;
            json_secs += s;
            replies.push(text);
        }
    }
    let valid = replies
        .iter()
        .filter(|r| serde_json::from_str::<Value>(r).is_ok())
        .count();

    // The mask alone: replay each constrained reply's tokens through a fresh constraint.
    let file = GgufFile::open(&model_path).unwrap();
    let codec = Arc::new(TextCodec::from_gguf(&file).unwrap());
    let grammars = Grammars::new(Arc::clone(&codec)).unwrap();
    let mut logits = vec![0.0f32; codec.vocab_size()];
    let (mut steps, mut mask_time) = (0u32, Duration::ZERO);
    for reply in &replies {
        let mut constraint = grammars.constraint(&format).unwrap();
        for id in codec.encode(reply, false).unwrap() {
            let t = Instant::now();
            constraint.mask(&mut logits).unwrap();
            mask_time += t.elapsed();
            steps += 1;
            if constraint.accept(id).is_err() {
                break;
            }
        }
    }

    let free_rate = f64::from(free_tokens) / free_secs;
    let json_rate = f64::from(json_tokens) / json_secs;
    let report = json!({
        "model": model_path.display().to_string(),
        "prompts": PROMPTS.len() * rounds,
        "max_tokens": max,
        "unconstrained": {"tokens": free_tokens, "seconds": free_secs,
                          "tokens_per_s": free_rate},
        "json_schema": {"tokens": json_tokens, "seconds": json_secs, "tokens_per_s": json_rate,
                        "replies_parsing": valid},
        "ratio_constrained_over_unconstrained": json_rate / free_rate,
        "mask_us_per_step": mask_time.as_secs_f64() * 1e6 / f64::from(steps.max(1)),
        "mask_steps": steps,
        "first_format_request_s": first_format_s,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
