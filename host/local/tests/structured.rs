//! Structured output on the real model: with a `response_format`, every reply parses as JSON
//! and matches its schema, greedy or sampled; a schema that cannot be compiled is refused
//! before the request is queued.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use serde_json::{Value, json};
use switchyard_local::structured::OutputFormat;
use switchyard_local::{
    FinishReason, GenerateEvent, GenerateRequest, LocalConfig, LocalEngine, LocalError,
};

fn engine() -> LocalEngine {
    LocalEngine::start(LocalConfig {
        model_path: common::model_path(),
        device: "cpu".into(),
        ..LocalConfig::default()
    })
    .unwrap()
}

fn ask(prompt: &str, format: OutputFormat, temperature: f32, seed: u64) -> GenerateRequest {
    GenerateRequest {
        messages: vec![("user".into(), prompt.into())],
        max_tokens: 160,
        temperature,
        top_k: None,
        top_p: None,
        seed: Some(seed),
        stop: Vec::new(),
        format: Some(format),
    }
}

/// The reply's text and how it finished.
fn run(engine: &LocalEngine, request: GenerateRequest) -> (String, FinishReason) {
    let mut rx = engine.submit(request).unwrap();
    let mut text = String::new();
    while let Some(event) = rx.blocking_recv() {
        match event {
            GenerateEvent::Delta(piece) => text.push_str(&piece),
            GenerateEvent::Done { finish_reason, .. } => return (text, finish_reason),
            GenerateEvent::Error(e) => panic!("generation failed: {e} (after {text:?})"),
        }
    }
    panic!("no Done event after {text:?}");
}

const PROMPTS: &[&str] = &[
    "Describe a person called Ada who is 36 and likes maths and chess.",
    "Give me a fictional customer record.",
    "Who wrote Hamlet? Answer in JSON.",
    "List three fruits.",
    "hello",
];

/// With no bounds in the format, a small model may still be writing (a key that repeats
/// itself) when `max_tokens` runs out: then the reply says `length` and is a prefix of JSON;
/// every reply that says `stop` parses.
#[test]
fn json_object_replies_are_objects_or_cut_prefixes() {
    let engine = engine();
    let mut complete = 0;
    for (i, prompt) in PROMPTS.iter().enumerate() {
        for temperature in [0.0, 1.0] {
            let (text, finish) = run(
                &engine,
                ask(prompt, OutputFormat::JsonObject, temperature, i as u64),
            );
            let parsed = serde_json::from_str::<Value>(&text);
            match finish {
                FinishReason::Stop => {
                    let value = parsed
                        .unwrap_or_else(|e| panic!("{prompt:?} at {temperature}: {e}: {text:?}"));
                    assert!(value.is_object(), "{text}");
                    complete += 1;
                }
                FinishReason::Length => {
                    let err = parsed.expect_err(&text);
                    assert!(err.is_eof(), "not a JSON prefix: {err}: {text:?}");
                    assert!(text.starts_with('{'), "{text}");
                }
            }
        }
    }
    eprintln!("{complete} of {} replies complete", PROMPTS.len() * 2);
    assert!(complete > 0);
}

#[test]
fn json_schema_replies_match_the_schema() {
    let engine = engine();
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "mood": {"enum": ["happy", "sad", "neutral"]},
            "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 3}
        },
        "required": ["name", "age", "mood", "hobbies"],
        "additionalProperties": false
    });
    for (i, prompt) in PROMPTS.iter().enumerate() {
        for temperature in [0.0, 0.8] {
            let format = OutputFormat::JsonSchema(schema.clone());
            let (text, finish) = run(&engine, ask(prompt, format, temperature, 7 + i as u64));
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{prompt:?} at {temperature}: {e}: {text:?}"));
            let object = value.as_object().unwrap();
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["age", "hobbies", "mood", "name"], "{text}");
            assert!(
                value["name"].as_str().unwrap().chars().count() <= 40,
                "{text}"
            );
            assert!(value["age"].as_u64().unwrap() <= 150, "{text}");
            assert!(
                ["happy", "sad", "neutral"].contains(&value["mood"].as_str().unwrap()),
                "{text}"
            );
            let hobbies = value["hobbies"].as_array().unwrap();
            assert!(hobbies.len() <= 3, "{text}");
            assert!(hobbies.iter().all(Value::is_string), "{text}");
            assert_eq!(finish, FinishReason::Stop, "{text}");
        }
    }
}

/// A number with no bounds in its schema ends after at most 20 digits in a row, where
/// greedy decoding would otherwise repeat digits until `max_tokens` (seen with this prompt).
#[test]
fn numbers_end_where_a_small_model_would_repeat_digits() {
    let engine = engine();
    let schema = json!({
        "type": "object", "additionalProperties": false,
        "required": ["name", "country", "population_millions"],
        "properties": {"name": {"type": "string", "maxLength": 40},
                       "country": {"type": "string", "maxLength": 40},
                       "population_millions": {"type": "number"}}
    });
    let mut request = ask(
        "Describe Paris as JSON.",
        OutputFormat::JsonSchema(schema),
        0.0,
        1,
    );
    request.max_tokens = 200;
    let (text, finish) = run(&engine, request);
    assert_eq!(finish, FinishReason::Stop, "{text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    assert!(value["population_millions"].is_number(), "{text}");
    let longest_run = text
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap();
    assert!(longest_run <= 20, "{text}");
}

#[test]
fn a_reply_cut_by_max_tokens_says_length() {
    let engine = engine();
    let schema = json!({"type": "object", "properties": {"story": {"type": "string"}},
                        "required": ["story"]});
    let mut request = ask(
        "Tell a long story.",
        OutputFormat::JsonSchema(schema),
        0.0,
        1,
    );
    request.max_tokens = 6;
    let (text, finish) = run(&engine, request);
    assert_eq!(finish, FinishReason::Length, "{text}");
    assert!(text.starts_with("{\"story\": \""), "{text}");
}

#[test]
fn a_schema_that_cannot_compile_is_refused_before_queueing() {
    let engine = engine();
    for schema in [
        json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}, "required": ["a"]}),
        json!({"type": "integer", "minimum": 5, "maximum": 1}),
        json!({"type": "wibble"}),
    ] {
        let request = ask("hi", OutputFormat::JsonSchema(schema.clone()), 0.0, 1);
        match engine.submit(request) {
            Err(err @ LocalError::OutputFormat(_)) => {
                assert!(err.to_string().starts_with("response_format: "), "{err}")
            }
            Err(other) => panic!("{schema}: expected OutputFormat, got {other}"),
            Ok(_) => panic!("{schema}: accepted"),
        }
        assert_eq!(engine.queue_depth(), 0);
    }
}
