//! Policy decision latency: a fresh store per decision (instantiate + `route`) for a ~1 KB
//! request, p50/p99 and decisions/s on 1 and 2 threads, for every built policy found in
//! `${SWITCHYARD_POLICY_OUT:-target/policies}` (Rust, Python, JS), with and without the
//! warm-instance pool, against the same decision computed natively; `learned` with the
//! shipped router (the host's scoring included) and the router's score alone.
//!
//! Run: `cargo bench -p switchyard --bench policy_decision` (build the policies first with
//! `bash policies/build.sh`; a missing one is skipped with a note). `BENCH_SECONDS`
//! (default 2) sets the time spent per configuration; `BENCH_ONLY=<stem>` (e.g. `hybrid`)
//! runs that policy's rows only (for profiling one policy). Without `--bench` (as `cargo test
//! --all-targets` runs it) it is a smoke test: 10 ms per row, Rust policies only.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hybrid::Hybrid;
use policy_misbehave::Misbehave;
use policy_sdk::Policy;
use switchyard::classifiers::Classifiers;
use switchyard::domain::{ChatMessage, Decision, PolicyRequest, Role, Target, Verdict};
use switchyard::policy::{
    EngineConfig, HostState, LoadedPolicy, PolicyEngine, PolicySpec, StaticHost,
};
use switchyard::replay::SimHost;
use switchyard::router_model::RouterModel;

/// (label, file stem, language)
const POLICIES: &[(&str, &str, &str)] = &[
    ("misbehave (normal)", "misbehave", "rust"),
    ("hybrid", "hybrid", "rust"),
    ("ab_split", "ab_split", "python"),
    ("keyword", "keyword", "js"),
];

fn policy_out() -> PathBuf {
    let out = std::env::var_os("SWITCHYARD_POLICY_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/policies"));
    if out.is_absolute() {
        return out;
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest)
        .join(out)
}

/// About 1 KB of user text: prose with a few numbers, no PII.
fn text_1kb() -> String {
    let sentence = "Please summarise the quarterly figures for the northern region and \
                    compare them with the previous year, noting any change above 5 percent. ";
    let mut text = String::new();
    while text.len() < 1024 {
        text.push_str(sentence);
    }
    text.truncate(1024);
    text
}

fn request(text: &str) -> PolicyRequest {
    PolicyRequest {
        id: "bench-0001".into(),
        model: "auto".into(),
        messages: vec![
            ChatMessage {
                role: Role::System,
                content: "You are a helpful assistant.".into(),
            },
            ChatMessage {
                role: Role::User,
                content: text.to_owned(),
            },
        ],
        max_tokens: Some(256),
        temperature: Some(0.2),
        streaming: false,
        tenant: "acme".into(),
        labels: BTreeMap::from([("user".to_owned(), "u-42".to_owned())]),
        prompt_tokens: u32::try_from(text.len() / 4).unwrap_or(u32::MAX),
        needs: Default::default(),
    }
}

fn spec(name: &str) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        params: BTreeMap::new(),
        fallback: Decision {
            targets: vec![Target {
                backend: "local".into(),
                model: None,
            }],
            reason: "fallback".into(),
            messages: None,
            max_tokens: None,
            labels: BTreeMap::new(),
        },
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
    per_sec: f64,
    count: usize,
    failures: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs `one` on `threads` threads for `budget`; latencies of every call.
fn measure<F>(threads: usize, budget: Duration, one: F) -> Stats
where
    F: Fn() -> bool + Sync,
{
    // Warm-up: page in code, fill caches, size the pool.
    for _ in 0..20 {
        one();
    }
    let start = Instant::now();
    let results: Vec<(Vec<Duration>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut lat = Vec::new();
                    let mut failures = 0;
                    while start.elapsed() < budget && lat.len() < 2_000_000 {
                        let t = Instant::now();
                        if !one() {
                            failures += 1;
                        }
                        lat.push(t.elapsed());
                    }
                    (lat, failures)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = start.elapsed();
    let failures = results.iter().map(|r| r.1).sum();
    let mut all: Vec<Duration> = results.into_iter().flat_map(|r| r.0).collect();
    all.sort();
    Stats {
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        per_sec: all.len() as f64 / wall.as_secs_f64(),
        count: all.len(),
        failures,
    }
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn row(label: &str, mode: &str, threads: usize, s: &Stats) {
    println!(
        "| {label:<26} | {mode:<10} | {threads} | {:>10} | {:>10} | {:>12.0} | {:>8} | {:>3} |",
        us(s.p50),
        us(s.p99),
        s.per_sec,
        s.count,
        s.failures
    );
}

fn engine(warm: usize, cache: &std::path::Path) -> PolicyEngine {
    PolicyEngine::new(EngineConfig {
        // Generous limits: this measures speed, not the sandbox's limits.
        deadline: Duration::from_secs(2),
        outer_timeout: Duration::from_secs(5),
        max_instances: 32,
        warm_instances: warm,
        // Both engines share compiled artifacts: the big Python/JS components compile once.
        cache_dir: Some(cache.to_owned()),
        ..EngineConfig::default()
    })
    .expect("engine")
}

/// `learned` with the shipped router loaded as `router`: each decision includes the host
/// scoring the prompt; and the score alone, natively.
fn learned_rows(
    out: &std::path::Path,
    engines: [(&str, &PolicyEngine); 2],
    request: &PolicyRequest,
    budget: Duration,
) {
    let label = "learned [rust, router]";
    let path = out.join("learned.wasm");
    if !path.is_file() {
        println!(
            "| {label:<26} | skipped: {} missing (run `bash policies/build.sh`)",
            path.display()
        );
        return;
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let router = manifest.join("../policies/learned/router.bin");
    let model = RouterModel::load(&router).expect("the shipped router");
    let classifiers =
        Classifiers::from_models(BTreeMap::from([("router".to_owned(), model.clone())]));
    let host: Arc<dyn HostState> = Arc::new(
        SimHost::new(
            StaticHost::default().backends,
            Vec::new(),
            BTreeMap::new(),
            0,
        )
        .with_scorer(Arc::new(classifiers)),
    );
    for (mode, engine) in engines {
        let policy = engine.load_file(spec("learned"), &path).expect("learned");
        let check = policy.decide_blocking(request, host.clone());
        if let (None, Verdict::Route(d)) = (&check.failure, &check.verdict)
            && mode == "fresh"
        {
            println!("| {label:<26} | decides ({})", d.reason);
        }
        let stats = measure(1, budget, || {
            policy
                .decide_blocking(request, host.clone())
                .failure
                .is_none()
        });
        row(label, mode, 1, &stats);
    }
    let text = request
        .messages
        .last()
        .map(|m| m.content.clone())
        .unwrap_or_default();
    let stats = measure(1, budget, || {
        (0.0..=1.0).contains(&model.rank_text(std::hint::black_box(&text)))
    });
    row("router score [native]", "native", 1, &stats);
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let budget = if smoke {
        Duration::from_millis(10)
    } else {
        Duration::from_secs_f64(
            std::env::var("BENCH_SECONDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(2.0),
        )
    };
    let text = text_1kb();
    let request = request(&text);
    let host: Arc<dyn HostState> = Arc::new(StaticHost::default());
    let cache = std::env::temp_dir().join("switchyard-policy-bench-cache");
    let fresh = engine(0, &cache);
    let warm = engine(4, &cache);
    let out = policy_out();

    println!(
        "policy decision latency, request {} B of text, {:?} per row",
        text.len(),
        budget
    );
    println!(
        "| {:<26} | {:<10} | T | {:>10} | {:>10} | {:>12} | {:>8} | {:>3} |",
        "policy", "mode", "p50 µs", "p99 µs", "decisions/s", "n", "err"
    );
    println!("|{}|", "-".repeat(100));

    let only = std::env::var("BENCH_ONLY").ok();
    let selected = |stem: &str| only.as_deref().is_none_or(|o| o == stem);
    let mut fresh_p50: BTreeMap<&str, Duration> = BTreeMap::new();
    for (label, stem, lang) in POLICIES.iter().filter(|p| selected(p.1)) {
        if smoke && *lang != "rust" {
            println!(
                "| {label:<26} | skipped in smoke mode (compiling it takes long); use cargo bench"
            );
            continue;
        }
        let path = out.join(format!("{stem}.wasm"));
        if !path.is_file() {
            println!(
                "| {label:<26} | skipped: {} missing (run `bash policies/build.sh`)",
                path.display()
            );
            continue;
        }
        let label = format!("{label} [{lang}]");
        for (mode, engine) in [("fresh", &fresh), ("warm", &warm)] {
            let policy: LoadedPolicy = match engine.load_file(spec(stem), &path) {
                Ok(p) => p,
                Err(e) => {
                    println!("| {label:<26} | skipped: loading failed: {e}");
                    break;
                }
            };
            let check = policy.decide_blocking(&request, host.clone());
            match (&check.failure, &check.verdict) {
                (Some(failure), _) => {
                    println!("| {label:<26} | note: this request makes it fail ({failure})")
                }
                (None, Verdict::Route(d)) if mode == "fresh" => {
                    let to: Vec<_> = d.targets.iter().map(|t| t.backend.as_str()).collect();
                    println!("| {label:<26} | decides {to:?} ({})", d.reason);
                }
                (None, Verdict::Reject(r)) if mode == "fresh" => {
                    println!("| {label:<26} | decides: reject {}", r.status);
                }
                _ => {}
            }
            for threads in [1, 2] {
                let stats = measure(threads, budget, || {
                    policy
                        .decide_blocking(&request, host.clone())
                        .failure
                        .is_none()
                });
                if mode == "fresh" && threads == 1 {
                    fresh_p50.insert(stem, stats.p50);
                }
                row(&label, mode, threads, &stats);
            }
        }
    }

    if selected("learned") {
        learned_rows(&out, [("fresh", &fresh), ("warm", &warm)], &request, budget);
    }

    // The same decisions natively, through the SDK's mock host (same PII detector).
    let sdk_request = policy_sdk::Request::new(vec![
        policy_sdk::Message::system("You are a helpful assistant."),
        policy_sdk::Message::user(text.clone()),
    ])
    .tenant("acme")
    .with_label("user", "u-42")
    .prompt_tokens(request.prompt_tokens)
    .max_tokens(256);
    type Route = fn(&dyn policy_sdk::Host, &policy_sdk::Request) -> bool;
    let natives: [(&str, &str, Route); 2] = [
        ("misbehave [native]", "misbehave", |h, r| {
            Misbehave::route(h, r).is_ok()
        }),
        ("hybrid [native]", "hybrid", |h, r| {
            Hybrid::route(h, r).is_ok()
        }),
    ];
    for (label, stem, route) in natives.into_iter().filter(|n| selected(n.1)) {
        for threads in [1, 2] {
            let stats = measure(threads, budget, || {
                thread_local! {
                    static MOCK: policy_sdk::testing::MockHost = policy_sdk::testing::MockHost::new();
                }
                MOCK.with(|host| route(host, std::hint::black_box(&sdk_request)))
            });
            row(label, "native", threads, &stats);
            if threads == 1
                && let Some(wasm) = fresh_p50.get(stem)
            {
                println!(
                    "| {label:<26} | wasm fresh-store p50 / native p50 = {:.0}×",
                    wasm.as_secs_f64() / stats.p50.as_secs_f64().max(1e-9)
                );
            }
        }
    }
}
