//! What a guest's imports reach: the per-store context ([`HostCtx`]) and its answers to
//! contract 0.1's imports (backends, pii, tokens, spend, params, clock, logging; 0.2's
//! are in `bindings/v0_2.rs`), plus the ban on WASI timers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::StoreLimits;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::HostState;
use super::bindings::v0_1::{backends, clock, logging, params, pii, spend, tokens, types};
use super::bindings::{self, v0_1};
use super::budget;
use super::guest_log::LogBudget;
use super::wasi::SeededRandom;
use crate::log_text::sanitize;

/// Log lines a guest may emit per call before the rest are dropped.
pub(super) const MAX_LOG_LINES: u32 = 32;
/// Longest guest log message kept (bytes, before escaping).
const MAX_LOG_BYTES: usize = 1024;
/// Most bytes of a guest log line's fields kept (all of them, before escaping).
const MAX_LOG_FIELD_BYTES: usize = 1024;

/// Per-store state: the host facts, the spec params, WASI with no capabilities, limits.
pub(super) struct HostCtx {
    pub(super) host: Arc<dyn HostState>,
    pub(super) params: Arc<BTreeMap<String, String>>,
    pub(super) policy: Arc<str>,
    pub(super) request_id: String,
    /// Log lines the guest emitted in this call.
    pub(super) logs: u32,
    /// The policy's log rate budget (shared by its instances).
    pub(super) log_budget: Arc<LogBudget>,
    /// When the current call's time is up: scanning imports are charged against it.
    pub(super) deadline: Instant,
    /// WASI's random source, seeded for this request.
    pub(super) random: SeededRandom,
    pub(super) limits: StoreLimits,
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) stdout: MemoryOutputPipe,
    pub(super) stderr: MemoryOutputPipe,
}

impl WasiView for HostCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostCtx {}

impl backends::Host for HostCtx {
    fn list(&mut self) -> Vec<backends::BackendStatus> {
        self.host
            .backends()
            .into_iter()
            .map(v0_1::to_backend)
            .collect()
    }
}

impl pii::Host for HostCtx {
    fn detect(&mut self, text: String) -> wasmtime::Result<Vec<pii::PiiMatch>> {
        budget::charge(self.deadline, "pii.detect", text.len())?;
        Ok(self
            .host
            .detect_pii(&text)
            .into_iter()
            .map(v0_1::to_pii_match)
            .collect())
    }
}

impl tokens::Host for HostCtx {
    fn count(&mut self, text: String) -> wasmtime::Result<u32> {
        budget::charge(self.deadline, "tokens.count", text.len())?;
        Ok(self.host.count_tokens(&text))
    }
}

impl spend::Host for HostCtx {
    fn get(&mut self, scope: String) -> spend::SpendStatus {
        v0_1::to_spend(self.host.spend(&scope))
    }
}

impl params::Host for HostCtx {
    fn get(&mut self, key: String) -> Option<String> {
        self.params.get(&key).cloned()
    }
    fn all(&mut self) -> Vec<types::Label> {
        v0_1::to_labels(&self.params)
    }
}

impl clock::Host for HostCtx {
    fn now_ms(&mut self) -> u64 {
        self.host.now_ms()
    }
}

impl logging::Host for HostCtx {
    fn log(&mut self, level: logging::Level, message: String, fields: Vec<types::Label>) {
        self.logs = self.logs.saturating_add(1);
        if self.logs > MAX_LOG_LINES {
            self.log_budget.dropped(&self.policy);
            return;
        }
        if !self.log_budget.admit(&self.policy) {
            return;
        }
        // Escaped and cut: a newline in a guest's message cannot start a forged line.
        let message = sanitize(&message, MAX_LOG_BYTES);
        let fields: Vec<String> = fields
            .iter()
            .take(16)
            .map(|l| format!("{}={}", truncate(&l.key, 64), truncate(&l.value, 256)))
            .collect();
        let fields = fields.join(" ");
        let fields = sanitize(&fields, MAX_LOG_FIELD_BYTES);
        let (policy, id) = (&*self.policy, &self.request_id);
        match level {
            logging::Level::Trace => {
                tracing::trace!(policy, request_id = %id, fields = %fields, "policy: {message}")
            }
            logging::Level::Debug => {
                tracing::debug!(policy, request_id = %id, fields = %fields, "policy: {message}")
            }
            logging::Level::Info => {
                tracing::info!(policy, request_id = %id, fields = %fields, "policy: {message}")
            }
            logging::Level::Warn => {
                tracing::warn!(policy, request_id = %id, fields = %fields, "policy: {message}")
            }
            logging::Level::Error => {
                tracing::error!(policy, request_id = %id, fields = %fields, "policy: {message}")
            }
        }
    }
}

/// `s` cut to at most `max` bytes, on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// WASI (no capabilities granted by the store), the sleep ban and the contract's imports.
pub(super) fn link(linker: &mut Linker<HostCtx>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    forbid_sleep(linker)?;
    bindings::add_to_linker(linker)
}

/// The WASI monotonic clock whose subscriptions [`forbid_sleep`] replaces (the version
/// wasmtime-wasi 48 links; guests importing any 0.2.x match it).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Replaces `subscribe-duration` and `subscribe-instant` with a trap. A pollable from them
/// makes `wasi:io/poll` block the host thread for as long as the guest asked (forever for
/// a far-off instant), and the epoch deadline cannot interrupt host code: one sleeping
/// guest would hold a blocking thread and a pool slot for good. Policies get time from
/// the `clock` import; `now` and `resolution` stay.
fn forbid_sleep(linker: &mut Linker<HostCtx>) -> wasmtime::Result<()> {
    fn refuse() -> wasmtime::Error {
        wasmtime::format_err!(
            "policies may not sleep or wait on a timer ({MONOTONIC_CLOCK} subscriptions are disabled)"
        )
    }
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> { Err(refuse()) },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> { Err(refuse()) },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_keeps_char_boundaries() {
        assert_eq!(truncate("hello", 10), "hello");
        assert_eq!(truncate("hello", 3), "hel");
        assert_eq!(truncate("héllo", 2), "h");
    }
}
