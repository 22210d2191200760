//! Parity with llama.cpp (../shared/fixtures/llamacpp): tokenizer ids for every fixture
//! string, and greedy chat completions (identical prompt token counts, identical first
//! token; the agreeing prefix is printed).
//!
//! Why the 16-token count is printed, not asserted: this 135M Q4_1 model's greedy choices
//! often hang on logit gaps below 0.1, so they move with float rounding. llama-cpp-python
//! 0.3.36 itself, built on this machine (AVX2, no AVX-512), reproduces the fixture's first 16
//! tokens on only 1 of the 4 cases (the fixtures came from another CPU); we get 2 of 4 here.
//! See host/local/README.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use switchyard_local::gguf::GgufFile;
use switchyard_local::tokenizer::TextCodec;
use switchyard_local::{FinishReason, GenerateEvent, GenerateRequest, LocalConfig, LocalEngine};

#[test]
fn tokenizer_ids_match_llama_cpp() {
    let file = GgufFile::open(&common::model_path()).unwrap();
    let codec = TextCodec::from_gguf(&file).unwrap();
    let fixtures = common::fixtures();
    let cases = fixtures["tokenize"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(
            codec.encode(text, true).unwrap(),
            want,
            "tokenizing {text:?}"
        );
    }
    // Without special-token parsing the markers are ordinary text.
    let plain = codec.encode("<|im_start|>", false).unwrap();
    assert!(plain.len() > 1, "{plain:?}");
}

#[test]
fn greedy_chat_matches_llama_cpp() {
    let engine = LocalEngine::start(LocalConfig {
        model_path: common::model_path(),
        device: "cpu".into(),
        ..LocalConfig::default()
    })
    .unwrap();
    let fixtures = common::fixtures();
    let cases = fixtures["chat"].as_array().unwrap();
    let mut agreeing = 0;
    for case in cases {
        let messages = common::messages(case);
        let want_text = case["text"].as_str().unwrap();
        let want_prompt = case["prompt_tokens"].as_u64().unwrap() as u32;
        let max_tokens = case["max_tokens"].as_u64().unwrap() as u32;
        let mut events = engine
            .submit(GenerateRequest {
                messages: messages.clone(),
                max_tokens,
                temperature: 0.0,
                top_k: Some(1),
                top_p: None,
                seed: Some(0),
                stop: Vec::new(),
            })
            .unwrap();
        let mut text = String::new();
        let mut done = None;
        while let Some(event) = events.blocking_recv() {
            match event {
                GenerateEvent::Delta(piece) => text.push_str(&piece),
                GenerateEvent::Done {
                    finish_reason,
                    prompt_tokens,
                    completion_tokens,
                } => done = Some((finish_reason, prompt_tokens, completion_tokens)),
                GenerateEvent::Error(e) => panic!("generation failed: {e}"),
            }
        }
        let (finish, prompt_tokens, completion_tokens) = done.unwrap();
        assert_eq!(prompt_tokens, want_prompt, "prompt tokens for {messages:?}");
        assert!(completion_tokens <= max_tokens);
        if finish == FinishReason::Length {
            assert_eq!(completion_tokens, max_tokens);
        }
        // How many leading tokens of the reply agree with llama.cpp's.
        let ours = engine.tokenize(&text, false);
        let theirs = engine.tokenize(want_text, false);
        let same = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
        eprintln!(
            "{messages:?}\n  llama.cpp: {want_text:?}\n  ours:      {text:?}\n  leading tokens equal: {same}"
        );
        assert!(
            same >= 1,
            "first token differs for {messages:?}: {text:?} vs {want_text:?}"
        );
        agreeing += usize::from(same >= 16.min(theirs.len()));
    }
    eprintln!(
        "{agreeing} of {} cases agree with llama.cpp on the first 16 tokens",
        cases.len()
    );
}
