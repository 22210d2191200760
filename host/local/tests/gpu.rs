//! The model on a GPU (CUDA or wgpu build) agrees with the CPU on a greedy reply. Reported
//! as ignored (with the reason) without a GPU feature; skipped with `SKIPPED ...` printed
//! when the build has one but no GPU answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use switchyard_local::{GenerateEvent, GenerateRequest, LocalConfig, LocalEngine, LocalError};

fn reply(engine: &LocalEngine) -> String {
    let mut events = engine
        .submit(GenerateRequest {
            messages: vec![
                ("system".into(), "You are a terse assistant.".into()),
                ("user".into(), "Name three primary colors.".into()),
            ],
            max_tokens: 12,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: None,
            stop: Vec::new(),
        })
        .unwrap();
    let mut text = String::new();
    while let Some(event) = events.blocking_recv() {
        match event {
            GenerateEvent::Delta(t) => text.push_str(&t),
            GenerateEvent::Done { .. } => {}
            GenerateEvent::Error(e) => panic!("{e}"),
        }
    }
    text
}

#[test]
#[cfg_attr(
    not(any(feature = "cuda", feature = "wgpu")),
    ignore = "needs a GPU build: cargo test -p switchyard-local --features cuda (or wgpu)"
)]
fn gpu_reply_matches_cpu() {
    let device = if cfg!(feature = "cuda") {
        "cuda:0"
    } else {
        "wgpu"
    };
    let config = |device: &str| LocalConfig {
        model_path: common::model_path(),
        device: device.into(),
        ..LocalConfig::default()
    };
    let gpu = match LocalEngine::start(config(device)) {
        Ok(engine) => engine,
        Err(LocalError::Device(why)) => {
            eprintln!("SKIPPED gpu_reply_matches_cpu: no usable GPU ({why})");
            return;
        }
        Err(other) => panic!("{other}"),
    };
    eprintln!("running on {}", gpu.device_name());
    let cpu = LocalEngine::start(config("cpu")).unwrap();
    let (on_gpu, on_cpu) = (reply(&gpu), reply(&cpu));
    eprintln!("gpu: {on_gpu:?}\ncpu: {on_cpu:?}");
    // 8-bit weights on the GPU vs 4-bit blocks on the CPU: the first words agree.
    let first = |s: &str| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    assert_eq!(first(&on_gpu), first(&on_cpu));
}
