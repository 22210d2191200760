//! Bad input never panics: truncated, bad-magic and unsupported-type GGUF files give errors
//! naming the problem, an over-long prompt is refused, a full queue answers QueueFull.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use switchyard_local::gguf::write::{W, gguf};
use switchyard_local::gguf::{GgufError, GgufFile};
use switchyard_local::{GenerateEvent, GenerateRequest, LocalConfig, LocalEngine, LocalError};

fn small_file(tensor_type: u32, bytes: usize) -> Vec<u8> {
    gguf(
        &[
            ("general.architecture", W::Str("llama".into())),
            ("llama.block_count", W::U32(1)),
        ],
        &[(
            "token_embd.weight",
            vec![32, 2],
            tensor_type,
            vec![7u8; bytes],
        )],
    )
}

fn start(bytes: &[u8], name: &str) -> LocalError {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = LocalEngine::start(LocalConfig {
        model_path: path,
        device: "cpu".into(),
        ..LocalConfig::default()
    })
    .unwrap_err();
    eprintln!("{name}: {err}");
    err
}

#[test]
fn truncated_files_fail_cleanly_at_every_length() {
    let full = small_file(8, 2 * 34);
    GgufFile::parse(full.clone()).unwrap();
    for len in 0..full.len() - 32 {
        let err = GgufFile::parse(full[..len].to_vec()).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                GgufError::Truncated { .. } | GgufError::TensorOutOfBounds { .. }
            ),
            "length {len}: {msg}"
        );
    }
    // The data section cut short names the tensor.
    let err = start(&full[..full.len() - 40], "truncated.gguf").to_string();
    assert!(
        err.contains("token_embd.weight") && err.contains("beyond the end"),
        "{err}"
    );
}

#[test]
fn bad_magic_is_reported() {
    let mut bytes = small_file(8, 2 * 34);
    bytes[..4].copy_from_slice(b"GGML");
    let err = start(&bytes, "magic.gguf").to_string();
    assert!(err.contains("bad magic"), "{err}");
}

#[test]
fn unsupported_tensor_type_names_the_tensor() {
    // 13 = Q5_K.
    let err = start(&small_file(13, 176), "q5k.gguf").to_string();
    assert!(
        err.contains("token_embd.weight") && err.contains("Q5_K"),
        "{err}"
    );
}

#[test]
fn corrupt_counts_do_not_allocate_or_panic() {
    let mut bytes = small_file(8, 2 * 34);
    // Tensor count field → huge.
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(GgufFile::parse(bytes).is_err());
    let mut bytes = small_file(8, 2 * 34);
    // First metadata key length → huge.
    bytes[24..32].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert!(matches!(
        GgufFile::parse(bytes),
        Err(GgufError::Truncated { .. })
    ));
}

#[test]
fn missing_file_is_an_error() {
    let err = LocalEngine::start(LocalConfig {
        model_path: "/nonexistent/model.gguf".into(),
        ..LocalConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/model.gguf"), "{err}");
}

fn ask(text: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        messages: vec![("user".into(), text.into())],
        max_tokens,
        temperature: 0.0,
        top_k: None,
        top_p: None,
        seed: None,
        stop: Vec::new(),
        format: None,
    }
}

#[test]
fn prompt_over_the_context_is_refused_and_the_queue_bounded() {
    let engine = LocalEngine::start(LocalConfig {
        model_path: common::model_path(),
        device: "cpu".into(),
        context_length: Some(64),
        queue_capacity: 1,
        threads: Some(1),
    })
    .unwrap();
    assert_eq!(engine.context_window(), 64);
    let long = "word ".repeat(100);
    match engine.submit(ask(&long, 8)) {
        Err(LocalError::PromptTooLong {
            prompt_tokens,
            context: 64,
        }) => assert!(prompt_tokens > 64),
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
    // Capacity 1: a running request fills the queue.
    let mut first = engine.submit(ask("Count to ten.", 16)).unwrap();
    assert!(matches!(
        engine.submit(ask("hi", 4)),
        Err(LocalError::QueueFull { capacity: 1 })
    ));
    let mut completion = None;
    while let Some(event) = first.blocking_recv() {
        if let GenerateEvent::Done {
            completion_tokens, ..
        } = event
        {
            completion = Some(completion_tokens);
        }
    }
    assert!(completion.is_some());
    while engine.queue_depth() != 0 {
        std::thread::yield_now();
    }
    // The context also caps generation: prompt (~30 tokens) + completion ≤ 64.
    let mut events = engine.submit(ask("Tell me a long story.", 1000)).unwrap();
    while let Some(event) = events.blocking_recv() {
        if let GenerateEvent::Done {
            prompt_tokens,
            completion_tokens,
            ..
        } = event
        {
            assert!(
                prompt_tokens + completion_tokens <= 64,
                "{prompt_tokens} + {completion_tokens}"
            );
        }
    }
}

#[test]
fn dropping_the_receiver_cancels_and_frees_the_worker() {
    let engine = LocalEngine::start(LocalConfig {
        model_path: common::model_path(),
        device: "cpu".into(),
        queue_capacity: 1,
        threads: Some(1),
        ..LocalConfig::default()
    })
    .unwrap();
    // A long generation whose reader goes away at once.
    drop(
        engine
            .submit(ask("Write a very long story.", 100_000))
            .unwrap(),
    );
    while engine.queue_depth() != 0 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The slot is free again and the next request runs to the end.
    let mut events = engine.submit(ask("hi", 4)).unwrap();
    let mut done = false;
    while let Some(event) = events.blocking_recv() {
        done |= matches!(event, GenerateEvent::Done { .. });
    }
    assert!(done);
}
