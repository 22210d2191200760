//! Guest instances: the store each call runs in (WASI without capabilities, clocks or
//! entropy, captured stdio, memory cap, hostcall fuel), the warm pool of idle instances,
//! and taking an instance for a call (a warm one re-targeted, or a fresh instantiation).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimitsBuilder};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::bindings::Guest;
use super::imports::HostCtx;
use super::loaded::classify;
use super::ticker::ticks;
use super::wasi::{FixedMonotonicClock, FixedWallClock, INSECURE_SEED, SeededRandom};
use super::{HostState, LoadedPolicy, PolicyFailure};
use crate::log_text::sanitize;

/// Captured guest stdout/stderr per call (bytes).
const MAX_STDIO_BYTES: usize = 4096;
/// Most of a stream's captured output one log line quotes (bytes, before escaping).
const MAX_STDIO_LOGGED: usize = 2048;
/// Most bytes one WASI `get-random-bytes` call may ask for.
const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// An instance kept for the next decision, with the store it lives in.
pub(super) struct Warm {
    pub(super) store: Store<HostCtx>,
    pub(super) policy: Guest,
}

/// Idle instances of one policy under one spec (see [`EngineConfig::warm_instances`]).
pub(super) struct WarmPool {
    idle: Mutex<Vec<Warm>>,
    cap: usize,
}

impl WarmPool {
    pub(super) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new(Vec::with_capacity(cap)),
            cap,
        })
    }

    pub(super) fn take(&self) -> Option<Warm> {
        if self.cap == 0 {
            return None;
        }
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    /// Keeps `warm` unless the pool is full (then it is dropped, freeing its slot).
    pub(super) fn put(&self, warm: Warm) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.cap {
            idle.push(warm);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl LoadedPolicy {
    /// A fresh store for one call: WASI without capabilities, fixed clocks and a random
    /// source seeded from the request id, captured stdio, the memory cap, hostcall fuel
    /// and the outer timeout as its first deadline.
    pub(super) fn new_store(&self, host: Arc<dyn HostState>, request_id: &str) -> Store<HostCtx> {
        let config = &self.inner.engine.inner.config;
        let stdout = MemoryOutputPipe::new(MAX_STDIO_BYTES);
        let stderr = MemoryOutputPipe::new(MAX_STDIO_BYTES);
        let random = SeededRandom::new(request_id);
        // No preopens, network, env or args: WASI is only there for the guest runtime's
        // startup (stdio, random seeds). Its clocks stand still and its random numbers
        // follow the request id, so a decision depends only on its inputs (the `clock`
        // import is a policy's time). `get-random-bytes` allocates on the host what the
        // guest asks for, so cap it well below wasmtime-wasi's 64 MiB default.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FixedWallClock)
            .monotonic_clock(FixedMonotonicClock)
            .secure_random(random.clone())
            .insecure_random(random.clone())
            .insecure_random_seed(INSECURE_SEED)
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let ctx = HostCtx {
            host,
            params: Arc::new(self.spec.params.clone()),
            policy: self.name.clone(),
            request_id: request_id.to_owned(),
            logs: 0,
            log_budget: self.log_budget.clone(),
            deadline: Instant::now() + config.outer_timeout,
            random,
            limits: StoreLimitsBuilder::new()
                .memory_size(config.memory_limit_bytes)
                .trap_on_grow_failure(true)
                .build(),
            wasi,
            table: ResourceTable::new(),
            stdout,
            stderr,
        };
        let mut store = Store::new(&self.inner.engine.inner.engine, ctx);
        store.limiter(|c| &mut c.limits);
        // Instantiation (start functions of big guests) gets the outer timeout; the call
        // itself gets `deadline` (set right before it).
        store.set_epoch_deadline(ticks(config.outer_timeout));
        store.epoch_deadline_trap();
        store.set_hostcall_fuel(config.hostcall_fuel);
        store
    }

    /// A warm instance re-targeted at this request, or a fresh store and instance.
    pub(super) fn instance(
        &self,
        host: &Arc<dyn HostState>,
        request_id: &str,
    ) -> Result<Warm, PolicyFailure> {
        if let Some(mut warm) = self.warm.take() {
            let ctx = warm.store.data_mut();
            ctx.host = host.clone();
            ctx.request_id = request_id.to_owned();
            ctx.logs = 0;
            ctx.random.reseed(request_id);
            return Ok(warm);
        }
        let mut store = self.new_store(host.clone(), request_id);
        match self.inner.pre.instantiate(&mut store) {
            Ok(policy) => Ok(Warm { store, policy }),
            Err(e) => {
                flush_stdio(&store);
                Err(classify(&e))
            }
        }
    }
}

/// Logs what the guest wrote to stdout/stderr; true when it wrote anything.
pub(super) fn flush_stdio(store: &Store<HostCtx>) -> bool {
    let ctx = store.data();
    let mut wrote = false;
    for (stream, pipe) in [("stdout", &ctx.stdout), ("stderr", &ctx.stderr)] {
        let bytes = pipe.contents();
        if !bytes.is_empty() {
            wrote = true;
            let text = String::from_utf8_lossy(&bytes);
            let text = sanitize(text.trim_end(), MAX_STDIO_LOGGED);
            tracing::debug!(policy = %ctx.policy, request_id = %ctx.request_id, stream,
                "policy output: {text}");
        }
    }
    wrote
}
