//! The local embedder against sentence-transformers: fixtures generated once by
//! bench/embed_fixtures.py (texts of varied length, unicode, over 256 tokens), cosine ≥ 0.999
//! each, same token counts; batching and order independence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use switchyard_local::embed::{DIM, Embedder, default_model_dir};

#[derive(serde::Deserialize)]
struct Fixtures {
    texts: Vec<String>,
    token_counts: Vec<usize>,
    embeddings: Vec<Vec<f32>>,
}

fn fixtures() -> Fixtures {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/embed/minilm.json");
    serde_json::from_slice(&std::fs::read(path).expect("fixtures")).expect("fixtures parse")
}

fn embedder() -> Embedder {
    let dir = default_model_dir();
    Embedder::load_with_threads(&dir, 2).unwrap_or_else(|e| {
        panic!(
            "load {} (run host/local/fetch-embed-model.sh): {e}",
            dir.display()
        )
    })
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn matches_sentence_transformers() {
    let fx = fixtures();
    let embedder = embedder();
    let texts: Vec<&str> = fx.texts.iter().map(String::as_str).collect();
    let (vectors, counts) = embedder.embed_batch_counted(&texts).expect("embed");
    assert_eq!(vectors.len(), texts.len());
    assert_eq!(
        counts, fx.token_counts,
        "token counts differ from the reference tokenizer"
    );
    for (i, (got, want)) in vectors.iter().zip(&fx.embeddings).enumerate() {
        assert_eq!(got.len(), DIM);
        let c = cosine(got, want);
        assert!(c >= 0.999, "text {i} {:?}: cosine {c}", fx.texts[i]);
        let norm: f32 = got.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "text {i} not unit length: {norm}"
        );
    }
}

#[test]
fn batching_does_not_change_results() {
    let fx = fixtures();
    let embedder = embedder();
    let texts: Vec<&str> = fx.texts.iter().map(String::as_str).collect();
    let batched = embedder.embed_batch(&texts).expect("batch");
    let reversed: Vec<&str> = texts.iter().rev().copied().collect();
    let mut reversed_out = embedder.embed_batch(&reversed).expect("reversed");
    reversed_out.reverse();
    for (i, text) in texts.iter().enumerate() {
        let single = embedder.embed_batch(&[text]).expect("single");
        assert!(
            cosine(&single[0], &batched[i]) > 0.99999,
            "text {i} alone vs batched"
        );
        assert!(
            cosine(&reversed_out[i], &batched[i]) > 0.99999,
            "text {i} order"
        );
        assert_eq!(embedder.count_tokens(text), fx.token_counts[i]);
    }
    assert!(embedder.embed_batch(&[]).expect("empty batch").is_empty());
}
