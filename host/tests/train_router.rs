//! The learned router's trainer: deterministic fits, held-out-by-domain validation, the
//! `switchyard train router` command and the router.bin it writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use switchyard::router_model::RouterModel;
use switchyard::train::{self, LabelledPrompt, TrainOptions};

fn labelled(domain: &str, prompt: &str, weak_correct: bool) -> LabelledPrompt {
    LabelledPrompt {
        id: String::new(),
        domain: domain.to_owned(),
        prompt: prompt.to_owned(),
        weak_correct,
        strong_correct: true,
    }
}

/// Prompts that mention an integral are the ones the weak model fails, in every domain.
fn synthetic() -> Vec<LabelledPrompt> {
    let mut out = Vec::new();
    for d in 0..6 {
        for i in 0..30 {
            let domain = format!("domain{d}");
            out.push(labelled(
                &domain,
                &format!("Compute the integral of item {i} in {domain}?"),
                false,
            ));
            out.push(labelled(
                &domain,
                &format!("Name the colour of item {i} in {domain}?"),
                true,
            ));
        }
    }
    out
}

#[test]
fn learns_a_signal_that_generalises_to_held_out_domains() {
    let folds = train::cross_validate(&synthetic(), 3, &TrainOptions::default());
    assert_eq!(folds.len(), 3);
    let points = train::curve(&folds, &[0.0, 0.5, 1.0]);
    // Share 0 is all-weak (half right), share 1 all-strong; at 50 % the router should
    // send exactly the integral prompts to strong and get everything right.
    assert!((points[0].learned_quality - 0.5).abs() < 1e-9);
    assert!((points[2].learned_quality - 1.0).abs() < 1e-9);
    assert!(
        (points[1].learned_quality - 1.0).abs() < 1e-9,
        "{:?}",
        points[1]
    );
    assert!((points[1].random_quality - 0.75).abs() < 1e-9);
    let (learned, random) = train::share_needed(&folds, 0.95);
    assert!(learned <= 0.5 && random >= 0.9, "{learned} {random}");
}

#[test]
fn fitting_is_deterministic_and_the_model_round_trips() {
    let data = synthetic();
    let a = train::fit(&data, &TrainOptions::default()).to_bytes();
    let b = train::fit(&data, &TrainOptions::default()).to_bytes();
    assert_eq!(a, b);
    let model = RouterModel::from_bytes(&a).expect("model decodes");
    let hard = model.score_text("Compute the integral of item 3 in domain1?");
    let easy = model.score_text("Name the colour of item 3 in domain1?");
    assert!(hard > 0.5 && easy < 0.5, "hard {hard} easy {easy}");
    // Half the training prompts are hard: a 50 % strong share puts the threshold at the
    // top easy training score, below every hard one.
    let threshold = model.threshold_for_share(0.5);
    assert!(
        easy <= threshold && threshold <= hard,
        "{easy} {threshold} {hard}"
    );
}

#[test]
fn train_router_command_prints_the_curve_and_writes_a_loadable_model() {
    let data =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/routing_labelled_sample.jsonl");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("router.bin");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["train", "router", "--folds", "3", "--epochs", "5", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("switchyard runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("240 prompts, 3 folds by domain"),
        "{stdout}"
    );
    assert!(
        stdout.contains("95 % of strong quality: learned needs"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches(" %   ").count(),
        9,
        "nine curve rows: {stdout}"
    );
    let model = RouterModel::load(&out).expect("written model loads");
    let score = model.score_text("What is the capital of France?\nA. Paris\nB. Rome\nAnswer:");
    assert!((0.0..=1.0).contains(&score));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": 3}\n").expect("write");
    assert!(train::load_labelled(&bad).is_err());
    let garbage = dir.path().join("router.bin");
    std::fs::write(&garbage, b"SYRM\x01\x00\x00\x00\xff\xff\xff\xff").expect("write");
    assert!(RouterModel::load(&garbage).is_err());
}
