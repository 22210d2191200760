//! A guest's log lines as they reach the gateway's log: a newline in a message cannot
//! start a forged line, a huge message is cut, and a flood is rate-limited with the
//! dropped lines counted (`switchyard_policy_log_dropped_total`) and summed up. Alone in
//! its test binary: it installs the process-wide log subscriber that captures the lines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod policy_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use policy_support::{metrics, misbehave, request, require_policy, spec};
use switchyard::policy::{EngineConfig, HostState, PolicyEngine, StaticHost};

/// Everything logged, as the gateway's text format writes it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn dropped_lines(policy: &str) -> u64 {
    let rendered = switchyard::metrics::render().unwrap_or_default();
    rendered
        .lines()
        .filter(|l| l.starts_with("switchyard_policy_log_dropped_total{"))
        .filter(|l| l.contains(&format!("policy=\"{policy}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[test]
fn guest_logs_are_escaped_cut_and_rate_limited() {
    metrics();
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        // The gateway's own lines at every level (wasmtime's compiler traces are not ours).
        .with_env_filter("switchyard=trace,switchyard_gateway=trace")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let engine = PolicyEngine::new(EngineConfig::default()).unwrap();
    let host: Arc<dyn HostState> = Arc::new(StaticHost::default());

    let forger = engine
        .load(spec("log-forger"), &require_policy("misbehave"))
        .unwrap();
    let eval = forger.decide_blocking(&misbehave("log-forge"), host.clone());
    assert!(eval.failure.is_none(), "{:?}", eval.failure);
    let text = captured.text();
    let lines: Vec<&str> = text.lines().collect();
    let guest: Vec<&&str> = lines.iter().filter(|l| l.contains("policy: ")).collect();
    assert_eq!(guest.len(), 2, "{text}");
    assert!(guest[0].contains("innocent\\n2030-01-01"), "{}", guest[0]);
    for line in &lines {
        // Every line that mentions the forged text is the guest's own line, escaped.
        if line.contains("FORGED") {
            assert!(line.contains("policy: innocent"), "forged line: {line}");
        }
        assert!(!line.starts_with("2030-01-01"), "forged line: {line}");
    }
    assert!(guest[1].contains("…[+"), "the 1 MiB message is cut");
    let longest = lines.iter().map(|l| l.len()).max().unwrap();
    println!("longest log line after a 1 MiB guest message: {longest} bytes");
    assert!(longest <= 16 << 10, "a log line of {longest} bytes");

    let flooder = engine
        .load(spec("log-flooder"), &require_policy("misbehave"))
        .unwrap();
    let flood = request(
        "log-flood",
        "hi",
        &[("misbehave", "log-flood"), ("lines", "30")],
    );
    for _ in 0..40 {
        let eval = flooder.decide_blocking(&flood, host.clone());
        assert!(eval.failure.is_none(), "{:?}", eval.failure);
    }
    let text = captured.text();
    let written = text.lines().filter(|l| l.contains("flood line")).count();
    let dropped = dropped_lines("log-flooder");
    println!("log flood: 1,200 guest lines, {written} written, {dropped} dropped");
    assert!(dropped > 0);
    assert_eq!(written as u64 + dropped, 1200);
    // The burst, plus what the bucket earned while the flood ran (well under 2 s).
    assert!(written <= 300, "{written} lines written");
    assert!(
        text.lines()
            .any(|l| l.contains("policy log lines dropped") && l.contains("log-flooder")),
        "a summary line"
    );
}
