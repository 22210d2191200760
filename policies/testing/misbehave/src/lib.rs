//! A deliberately misbehaving policy for the sandbox tests and benchmarks. The request
//! label `misbehave` picks what it does:
//!
//! | label             | behaviour                                                        |
//! |-------------------|------------------------------------------------------------------|
//! | `loop`            | spins forever (the epoch deadline must stop it)                  |
//! | `alloc`           | allocates and touches memory without bound (the memory cap)      |
//! | `trap`            | panics, which is `unreachable` in wasm                           |
//! | `unknown-backend` | routes to a backend the host does not have                       |
//! | `empty-targets`   | returns a decision with no targets                               |
//! | `bad-status`      | rejects with HTTP status 99                                      |
//! | `flood`           | hands the host imports 8 MiB strings, again and again (hostcall fuel) |
//! | `sleep`           | sleeps for an hour (WASI timers must not block the host)         |
//! | `count`           | the normal targets, reason `count:N`: N counts calls in this instance |
//! | `huge`            | a legal but huge decision: label `targets` targets (default 2000), one replacement message of `message-bytes` (default 100 000), a reason of `reason-bytes` (default 6), `label-count` labels (default 0) |
//! | `log-forge`       | logs a message with newlines that look like other log lines, and one of 1 MiB; then the normal decision |
//! | `log-flood`       | logs `lines` lines (default 100), then the normal decision       |
//! | `pii-loop`        | calls `pii.detect` on `flood-bytes` (default 4 000 000) bytes of text forever |
//! | `wasi`            | the normal targets, reason `wall_ms=W mono_ns=M random=R`: what WASI's clocks and random give it |
//! | `echo-reason`     | the normal targets, the reason the `reason` label names (metric cardinality) |
//! | anything else     | the normal decision: `local`, then `openai`, reason `normal`     |
//!
//! `flood-bytes` overrides the size of each string handed to the host in `flood` and
//! `pii-loop` modes.

use std::sync::atomic::{AtomicU64, Ordering};

use policy_sdk::{
    Decision, Host, LogLevel, Message, Policy, PolicyInfo, Rejection, Request, Role, Target,
};

/// Calls of `route` in this instance (shows whether an instance is reused).
static CALLS: AtomicU64 = AtomicU64::new(0);

/// The misbehaving policy.
pub struct Misbehave;

/// Default size of each string `flood` hands to the host: twice the engine's default
/// hostcall fuel (4 MiB), so the very first call is refused.
pub const FLOOD_BYTES: usize = 8 << 20;

impl Policy for Misbehave {
    fn info() -> PolicyInfo {
        PolicyInfo::new(
            "misbehave",
            env!("CARGO_PKG_VERSION"),
            "test guest: misbehaves as the `misbehave` request label asks",
        )
    }

    fn route(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        match request.label("misbehave").unwrap_or("") {
            "loop" => spin(),
            "alloc" => hoard(),
            "trap" => panic!("misbehave: trap requested"),
            "unknown-backend" => Ok(Decision::to("no-such-backend").reason("unknown-backend")),
            "empty-targets" => Ok(Decision::new(Vec::new()).reason("empty-targets")),
            "bad-status" => Err(Rejection {
                status: 99,
                message: "misbehave: status 99".into(),
            }),
            "flood" => {
                let size = request
                    .label("flood-bytes")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(FLOOD_BYTES);
                flood(host, size)
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(normal().reason("slept"))
            }
            "count" => Ok(normal().reason(format!("count:{calls}"))),
            "huge" => Ok(huge(request)),
            "log-forge" => {
                host.log(
                    LogLevel::Info,
                    "innocent\n2030-01-01T00:00:00.000000Z ERROR switchyard::admin: FORGED admin token leaked\r\nand more",
                    &[("key\nFORGED-FIELD", "value\nFORGED-VALUE")],
                );
                host.log(LogLevel::Warn, &"L".repeat(1 << 20), &[]);
                Ok(normal())
            }
            "log-flood" => {
                let lines = number(request, "lines", 100);
                for i in 0..lines {
                    host.log(LogLevel::Info, &format!("flood line {i}"), &[]);
                }
                Ok(normal())
            }
            "pii-loop" => {
                let text = "x".repeat(number(request, "flood-bytes", 4_000_000));
                let mut found = 0usize;
                loop {
                    found = std::hint::black_box(found + host.detect_pii(&text).len());
                }
            }
            "wasi" => Ok(normal().reason(wasi_view())),
            "echo-reason" => Ok(normal().reason(request.label("reason").unwrap_or(""))),
            _ => Ok(normal()),
        }
    }
}

/// The decision for a well-behaved request.
pub fn normal() -> Decision {
    Decision::to_all(["local", "openai"]).reason("normal")
}

/// The request label `key` as a number, `default` when absent or not a number.
fn number(request: &Request, key: &str, default: usize) -> usize {
    request
        .label(key)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A decision as big as the request labels ask (see the module table).
fn huge(request: &Request) -> Decision {
    let targets = (0..number(request, "targets", 2000))
        .map(|i| Target::new(if i % 2 == 0 { "local" } else { "openai" }))
        .collect();
    let message = Message::new(
        Role::User,
        "m".repeat(number(request, "message-bytes", 100_000)),
    );
    let mut decision = Decision::new(targets)
        .reason("r".repeat(number(request, "reason-bytes", 6)))
        .rewrite(vec![message]);
    for i in 0..number(request, "label-count", 0) {
        decision = decision.label(format!("k{i}"), "v");
    }
    decision
}

/// What WASI's clocks and random source show this guest: the wall clock (ms since the
/// Unix epoch), how far the monotonic clock moves across a busy loop (ns), one random u64.
fn wasi_view() -> String {
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(u128::MAX, |d| d.as_millis());
    let start = std::time::Instant::now();
    let mut n: u64 = 0;
    for i in 0..100_000u64 {
        n = std::hint::black_box(n.wrapping_add(i));
    }
    let mono_ns = start.elapsed().as_nanos();
    let random = getrandom::u64().unwrap_or(0);
    format!("wall_ms={wall_ms} mono_ns={mono_ns} random={random:016x}")
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn hoard() -> ! {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        // 1 MiB at a time; each one grows linear memory.
        let mut block: Vec<u8> = Vec::with_capacity(1 << 20);
        block.push(1);
        kept.push(std::hint::black_box(block));
    }
}

fn flood(host: &dyn Host, size: usize) -> Result<Decision, Rejection> {
    let big = "x".repeat(size);
    let mut total: u64 = 0;
    loop {
        total = total.wrapping_add(u64::from(host.count_tokens(&big)));
        total = total.wrapping_add(host.detect_pii(&big).len() as u64);
        host.log(LogLevel::Info, &big, &[("flood", &big)]);
        std::hint::black_box(total);
    }
}

policy_sdk::export_policy!(Misbehave);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use policy_sdk::testing::MockHost;

    fn ask(mode: &str) -> Result<Decision, Rejection> {
        Misbehave::route(
            &MockHost::new(),
            &Request::user("hi").with_label("misbehave", mode),
        )
    }

    #[test]
    fn normal_and_unknown_modes_route_local_then_openai() {
        for mode in ["", "normal", "something-else"] {
            let d = ask(mode).unwrap();
            assert_eq!(d.backends(), ["local", "openai"]);
            assert_eq!(d.reason, "normal");
        }
        let d = Misbehave::route(&MockHost::new(), &Request::user("hi")).unwrap();
        assert_eq!(d.backends(), ["local", "openai"]);
    }

    #[test]
    fn bad_outputs_are_returned_as_asked() {
        assert_eq!(
            ask("unknown-backend").unwrap().backends(),
            ["no-such-backend"]
        );
        assert!(ask("empty-targets").unwrap().targets.is_empty());
        assert_eq!(ask("bad-status").unwrap_err().status, 99);
        let echoed = Misbehave::route(
            &MockHost::new(),
            &Request::user("hi")
                .with_label("misbehave", "echo-reason")
                .with_label("reason", "r42: anything"),
        )
        .unwrap();
        assert_eq!(echoed.reason, "r42: anything");
    }

    #[test]
    #[should_panic(expected = "trap requested")]
    fn trap_panics() {
        let _ = ask("trap");
    }
}
