//! Shared helpers of the integration tests: where the model and the llama.cpp fixtures are.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
#![allow(dead_code)]

use std::path::PathBuf;

/// The model file; fails (never skips) when it is missing.
pub fn model_path() -> PathBuf {
    let path = switchyard_local::default_model_path();
    assert!(
        path.is_file(),
        "model file {} is missing: run host/local/fetch-model.sh (or set SWITCHYARD_MODEL)",
        path.display()
    );
    path
}

/// `expected.json` of the llama.cpp reference outputs kept in `tests/fixtures/llamacpp`
/// (`$SWITCHYARD_FIXTURES` names another directory; `regenerate.py` there remakes them).
pub fn fixtures() -> serde_json::Value {
    let dir = std::env::var_os("SWITCHYARD_FIXTURES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llamacpp"),
        PathBuf::from,
    );
    let path = dir.join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (set SWITCHYARD_FIXTURES)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

pub fn messages(case: &serde_json::Value) -> Vec<(String, String)> {
    case["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
