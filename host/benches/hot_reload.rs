//! Hot-reload benchmark against a running `switchyard serve` (mock upstreams, 250 req/s
//! open-loop): time from a policy file write to the first request decided by the new
//! version, p50/p99 over 50 cached and 50 uncached swaps, and the gateway's p99 latency
//! during reloads against steady state.
//!
//! `cargo bench -p switchyard --bench hot_reload` (needs `bash policies/build.sh rust`).
//! Without `--bench` (as `cargo test --all-targets` runs it) it makes a 4-swap smoke run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/gateway_support/mod.rs"]
mod gateway_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_support::{Gateway, built_policy, label, scratch, spawn_upstream, write_config};

const RATE_INTERVAL: Duration = Duration::from_millis(4);
/// Swaps per phase with `--bench`.
const SWAPS: usize = 50;
/// Swaps per phase in the smoke run.
const SMOKE_SWAPS: usize = 4;
/// Between cached swaps.
const SWAP_EVERY: Duration = Duration::from_millis(300);
/// Between uncached swaps (a Cranelift compile takes longer than `SWAP_EVERY` here).
const COMPILE_SWAP_EVERY: Duration = Duration::from_millis(1_500);

#[derive(Clone)]
struct Sample {
    started: Instant,
    latency: Duration,
    policy: String,
    ok: bool,
}

/// Runs open-loop load until `stop`; returns every sample.
async fn load(gateway: Arc<Gateway>, stop: Arc<AtomicBool>) -> Vec<Sample> {
    let client = reqwest::Client::new();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval(RATE_INTERVAL);
    let mut tasks = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let (gateway, client, samples) = (gateway.clone(), client.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let (status, headers, _) = gateway
                .chat(&client, "Classify: great product", &format!("t-{n}"))
                .await;
            let policy = headers
                .get("x-switchyard-policy")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            samples.lock().unwrap().push(Sample {
                started,
                latency: started.elapsed(),
                policy,
                ok: status == 200,
            });
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    samples.lock().unwrap().clone()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A component with a unique custom section appended: same behaviour, new digest, so
/// loading it compiles (no cache hit).
fn variant(bytes: &[u8], i: usize) -> Vec<u8> {
    let name = b"switchyard-bench";
    let payload = format!("variant-{i}-{}", std::process::id());
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(payload.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8); // < 128: one LEB128 byte
    out.extend_from_slice(&section);
    out
}

fn replace(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Swaps `swaps` times under load; returns (write → serving latencies, load samples).
async fn swap_phase(
    gateway: &Arc<Gateway>,
    live: &std::path::Path,
    swaps: usize,
    every: Duration,
    versions: &dyn Fn(usize) -> Vec<u8>,
) -> (Vec<Duration>, Vec<Sample>, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let loader = tokio::spawn(load(gateway.clone(), stop.clone()));
    let mut writes = Vec::new();
    for i in 0..swaps {
        tokio::time::sleep(every).await;
        let bytes = versions(i);
        let want = {
            use sha2::Digest;
            let digest = hex::encode(sha2::Sha256::digest(&bytes));
            format!("live@{}", &digest[..12])
        };
        replace(live, &bytes);
        writes.push((Instant::now(), want));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let samples = loader.await.unwrap();
    let mut latencies = Vec::new();
    let mut missed = 0;
    for (i, (at, want)) in writes.iter().enumerate() {
        let until = writes.get(i + 1).map(|(t, _)| *t);
        match samples
            .iter()
            .filter(|s| s.started >= *at)
            .find(|s| s.policy == *want && until.is_none_or(|u| s.started < u))
        {
            Some(s) => latencies.push(s.started - *at),
            None => missed += 1,
        }
    }
    latencies.sort();
    (latencies, samples, missed)
}

fn report_load(name: &str, samples: &[Sample]) -> Duration {
    let mut lat: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    lat.sort();
    let failed = samples.iter().filter(|s| !s.ok).count();
    println!(
        "{name:<28} {:>6} requests, {failed} failed, latency p50 {:>6.2} ms  p99 {:>6.2} ms",
        samples.len(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    pct(&lat, 0.99)
}

fn main() {
    let swaps = if std::env::args().any(|a| a == "--bench") {
        SWAPS
    } else {
        SMOKE_SWAPS
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let a = std::fs::read(built_policy("latency")).unwrap();
        let b = std::fs::read(built_policy("complexity")).unwrap();
        let scratch_dir = scratch("bench-reload");
        let dir = scratch_dir.path();
        let live = dir.join("live.wasm");
        replace(&live, &a);
        let local = spawn_upstream("local").await;
        let cloud = spawn_upstream("cloud").await;
        let config = write_config(dir, &live, local, cloud, "");
        let gateway = Arc::new(Gateway::start(&config).await);
        // Warm both versions into the compiled cache.
        replace(&live, &b);
        tokio::time::sleep(Duration::from_secs(2)).await;
        replace(&live, &a);
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!(
            "hot reload: {} req/s open-loop, {swaps} swaps every {} ms, policies {} / {}",
            1000 / RATE_INTERVAL.as_millis(),
            SWAP_EVERY.as_millis(),
            label("latency", &built_policy("latency")),
            label("complexity", &built_policy("complexity")),
        );

        let stop = Arc::new(AtomicBool::new(false));
        let loader = tokio::spawn(load(gateway.clone(), stop.clone()));
        tokio::time::sleep(SWAP_EVERY * swaps as u32).await;
        stop.store(true, Ordering::Relaxed);
        let steady = loader.await.unwrap();
        let steady_p99 = report_load("steady state", &steady);

        let (cached, samples, missed_c) = swap_phase(&gateway, &live, swaps, SWAP_EVERY, &|i| {
            if i % 2 == 0 { b.clone() } else { a.clone() }
        })
        .await;
        let cached_p99 = report_load("during cached swaps", &samples);

        let (uncached, samples, missed_u) =
            swap_phase(&gateway, &live, swaps, COMPILE_SWAP_EVERY, &|i| variant(if i % 2 == 0 { &b } else { &a }, i)).await;
        let uncached_p99 = report_load("during uncached swaps", &samples);

        for (name, lat, missed) in [
            ("cached (cache hit)", &cached, missed_c),
            ("uncached (compile)", &uncached, missed_u),
        ] {
            println!(
                "write → new version serving, {name:<20} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  ({} swaps seen, {missed} superseded)",
                ms(pct(lat, 0.5)),
                ms(pct(lat, 0.99)),
                ms(pct(lat, 1.0)),
                lat.len()
            );
        }
        println!(
            "added p99 during reloads: cached {:.2}x, uncached {:.2}x of steady state",
            cached_p99.as_secs_f64() / steady_p99.as_secs_f64(),
            uncached_p99.as_secs_f64() / steady_p99.as_secs_f64()
        );
    });
}
