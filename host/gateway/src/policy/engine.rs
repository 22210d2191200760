//! The wasmtime engine behind policies: the one `bindgen!` site, pooling allocator, epoch
//! ticker, memory limits, compiled-component cache, loading and per-request decisions.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime::{StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::{
    Compiler, EngineConfig, Evaluation, FailureKind, HostState, PolicyError, PolicyFailure,
    PolicyInfo, PolicySpec,
};
use crate::domain::{self, Verdict};

wasmtime::component::bindgen!({
    world: "policy",
    path: "../../wit",
});

use self::exports::switchyard::policy::router::{
    Decision as WitDecision, Rejection as WitRejection,
};
use self::switchyard::policy::{backends, clock, logging, params, pii, spend, tokens, types};

/// Epoch tick period of the background ticker.
const TICK: Duration = Duration::from_millis(1);
/// The epoch ticker sleeps after this long without a guest running.
const IDLE_BEFORE_PARKING: Duration = Duration::from_millis(100);
/// Deadline for the `info()` call made once at load time.
const INFO_DEADLINE: Duration = Duration::from_secs(1);
/// Log lines a guest may emit per call before the rest are dropped.
const MAX_LOG_LINES: u32 = 32;
/// Longest guest log message kept (bytes).
const MAX_LOG_BYTES: usize = 1024;
/// Captured guest stdout/stderr per call (bytes).
const MAX_STDIO_BYTES: usize = 4096;
/// Bytes of each pooled linear memory kept resident between decisions.
const KEEP_RESIDENT_BYTES: usize = 16 << 20;
/// Most bytes one WASI `get-random-bytes` call may ask for.
const MAX_RANDOM_BYTES: u64 = 64 << 10;
/// Decisions that recently took less than this run on the calling (async) thread.
const INLINE_BELOW: Duration = Duration::from_micros(500);

struct EngineInner {
    engine: Engine,
    linker: Linker<HostCtx>,
    config: EngineConfig,
    fingerprint: String,
    compiles: AtomicU64,
    ticker: Arc<Ticker>,
    /// Decisions running at once (one per core); more wait their turn before their
    /// deadline starts, so load does not turn into deadline failures.
    running: Arc<tokio::sync::Semaphore>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.ticker.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.ticker.thread.get() {
            thread.unpark();
        }
    }
}

/// The epoch ticker: advances the engine's epoch every [`TICK`] while guests run, and
/// sleeps once none has run for [`IDLE_BEFORE_PARKING`] (an idle server does not wake a
/// thousand times a second).
#[derive(Default)]
struct Ticker {
    /// Guests instantiating or running now.
    active: AtomicUsize,
    parked: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

/// Marks a guest as running while alive.
struct Busy<'a>(&'a Ticker);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ticker {
    /// Call before a guest runs: wakes the ticker if it sleeps.
    fn busy(&self) -> Busy<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
        Busy(self)
    }

    fn run(&self, engine: &wasmtime::EngineWeak) {
        // Ticks follow the wall clock: when a sleep overshoots (a loaded machine), the
        // missed ticks are added at once, so a deadline of N ms expires after about N ms
        // of wall time rather than N oversleeping sleeps.
        let tick_ns = TICK.as_nanos().max(1);
        let mut started = Instant::now();
        let mut ticked: u128 = 0;
        let mut idle: u32 = 0;
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
            let Some(engine) = engine.upgrade() else {
                break;
            };
            let due = started.elapsed().as_nanos() / tick_ns;
            while ticked < due {
                engine.increment_epoch();
                ticked += 1;
            }
            drop(engine);
            if self.active.load(Ordering::SeqCst) > 0 {
                idle = 0;
                continue;
            }
            idle += 1;
            if TICK * idle < IDLE_BEFORE_PARKING {
                continue;
            }
            // `busy` raises `active` before reading `parked`; this sets `parked` before
            // reading `active`: one of the two sees the other, so no guest runs untimed.
            self.parked.store(true, Ordering::SeqCst);
            if self.active.load(Ordering::SeqCst) == 0 {
                std::thread::park_timeout(Duration::from_secs(1));
            }
            self.parked.store(false, Ordering::SeqCst);
            // Time spent parked is not ticked: no guest ran whose deadline it could end.
            started = Instant::now();
            ticked = 0;
            idle = 0;
        }
    }
}

/// Compiles and runs policy components. Cheap to clone.
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<EngineInner>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Per-store state: the host facts, the spec params, WASI with no capabilities, limits.
struct HostCtx {
    host: Arc<dyn HostState>,
    params: Arc<BTreeMap<String, String>>,
    policy: Arc<str>,
    request_id: String,
    logs: u32,
    limits: StoreLimits,
    wasi: WasiCtx,
    table: ResourceTable,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
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
            .map(|b| backends::BackendStatus {
                name: b.name,
                kind: match b.kind {
                    domain::BackendKind::Local => backends::BackendKind::Local,
                    domain::BackendKind::Cloud => backends::BackendKind::Cloud,
                },
                models: b.models,
                healthy: b.healthy,
                latency_p50_ms: b.latency_p50_ms,
                latency_p95_ms: b.latency_p95_ms,
                error_rate: b.error_rate,
                in_flight: b.in_flight,
                queue_depth: b.queue_depth,
                usd_per_mtok_in: b.usd_per_mtok_in,
                usd_per_mtok_out: b.usd_per_mtok_out,
                context_window: b.context_window,
                labels: to_labels(&b.labels),
            })
            .collect()
    }
}

impl pii::Host for HostCtx {
    fn detect(&mut self, text: String) -> Vec<pii::PiiMatch> {
        use super::pii::Kind;
        self.host
            .detect_pii(&text)
            .into_iter()
            .map(|m| pii::PiiMatch {
                kind: match m.kind {
                    Kind::Email => pii::PiiKind::Email,
                    Kind::Phone => pii::PiiKind::Phone,
                    Kind::CreditCard => pii::PiiKind::CreditCard,
                    Kind::UsSsn => pii::PiiKind::UsSsn,
                    Kind::Iban => pii::PiiKind::Iban,
                    Kind::IpAddress => pii::PiiKind::IpAddress,
                    Kind::ApiKey => pii::PiiKind::ApiKey,
                },
                start: u32::try_from(m.start).unwrap_or(u32::MAX),
                end: u32::try_from(m.end).unwrap_or(u32::MAX),
            })
            .collect()
    }
}

impl tokens::Host for HostCtx {
    fn count(&mut self, text: String) -> u32 {
        self.host.count_tokens(&text)
    }
}

impl spend::Host for HostCtx {
    fn get(&mut self, scope: String) -> spend::SpendStatus {
        let s = self.host.spend(&scope);
        spend::SpendStatus {
            scope: s.scope,
            today_usd: s.today_usd,
            month_usd: s.month_usd,
            daily_budget_usd: s.daily_budget_usd,
            monthly_budget_usd: s.monthly_budget_usd,
            hard_cap_usd: s.hard_cap_usd,
        }
    }
}

impl params::Host for HostCtx {
    fn get(&mut self, key: String) -> Option<String> {
        self.params.get(&key).cloned()
    }
    fn all(&mut self) -> Vec<types::Label> {
        to_labels(&self.params)
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
            if self.logs == MAX_LOG_LINES + 1 {
                tracing::warn!(policy = %self.policy, request_id = %self.request_id,
                    "policy log cap reached; dropping further lines for this call");
            }
            return;
        }
        let message = truncate(&message, MAX_LOG_BYTES);
        let fields: Vec<String> = fields
            .iter()
            .take(16)
            .map(|l| format!("{}={}", truncate(&l.key, 64), truncate(&l.value, 256)))
            .collect();
        let fields = fields.join(" ");
        let (policy, id) = (&*self.policy, &self.request_id);
        match level {
            logging::Level::Trace => {
                tracing::trace!(policy, request_id = %id, fields, "policy: {message}")
            }
            logging::Level::Debug => {
                tracing::debug!(policy, request_id = %id, fields, "policy: {message}")
            }
            logging::Level::Info => {
                tracing::info!(policy, request_id = %id, fields, "policy: {message}")
            }
            logging::Level::Warn => {
                tracing::warn!(policy, request_id = %id, fields, "policy: {message}")
            }
            logging::Level::Error => {
                tracing::error!(policy, request_id = %id, fields, "policy: {message}")
            }
        }
    }
}

/// Epoch ticks covering `d` (at least one).
fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

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

fn to_labels(map: &BTreeMap<String, String>) -> Vec<types::Label> {
    map.iter()
        .map(|(k, v)| types::Label {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

fn from_labels(labels: Vec<types::Label>) -> BTreeMap<String, String> {
    labels.into_iter().map(|l| (l.key, l.value)).collect()
}

fn to_role(role: domain::Role) -> types::Role {
    match role {
        domain::Role::System => types::Role::System,
        domain::Role::User => types::Role::User,
        domain::Role::Assistant => types::Role::Assistant,
        domain::Role::Tool => types::Role::Tool,
    }
}

fn from_role(role: types::Role) -> domain::Role {
    match role {
        types::Role::System => domain::Role::System,
        types::Role::User => domain::Role::User,
        types::Role::Assistant => domain::Role::Assistant,
        types::Role::Tool => domain::Role::Tool,
    }
}

fn to_request(r: &domain::PolicyRequest) -> types::Request {
    types::Request {
        id: r.id.clone(),
        model: r.model.clone(),
        messages: r
            .messages
            .iter()
            .map(|m| types::Message {
                role: to_role(m.role),
                content: m.content.clone(),
            })
            .collect(),
        max_tokens: r.max_tokens,
        temperature: r.temperature,
        streaming: r.streaming,
        tenant: r.tenant.clone(),
        labels: to_labels(&r.labels),
        prompt_tokens: r.prompt_tokens,
    }
}

fn from_decision(d: WitDecision) -> domain::Decision {
    domain::Decision {
        targets: d
            .targets
            .into_iter()
            .map(|t| domain::Target {
                backend: t.backend,
                model: t.model,
            })
            .collect(),
        reason: d.reason,
        messages: d.messages.map(|ms| {
            ms.into_iter()
                .map(|m| domain::ChatMessage {
                    role: from_role(m.role),
                    content: m.content,
                })
                .collect()
        }),
        max_tokens: d.max_tokens,
        labels: from_labels(d.labels),
    }
}

fn from_rejection(r: WitRejection) -> domain::Rejection {
    domain::Rejection {
        status: r.status,
        message: r.message,
    }
}

impl PolicyEngine {
    /// Builds the engine and starts its epoch ticker thread.
    pub fn new(config: EngineConfig) -> Result<Self, PolicyError> {
        let err = |e: wasmtime::Error| PolicyError::Engine(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::default();
        let instances = config.max_instances.max(1);
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(32))
            .total_memories(instances.saturating_mul(4))
            .total_tables(instances.saturating_mul(32))
            .max_core_instances_per_component(64)
            .max_memories_per_component(4)
            .max_tables_per_component(64)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            .max_memory_size(config.memory_limit_bytes)
            // Reset a used slot by zeroing only its resident pages (found with
            // PAGEMAP_SCAN where the kernel has it) instead of madvise plus a page
            // fault per page on the next decision.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES / 16)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut wasm = Config::new();
        // One compile thread: a reload compiling a new version then takes one core, not
        // every core, from the requests being served (compiles are cached and rare).
        wasm.wasm_component_model(true)
            .parallel_compilation(false)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(err)?;
        // The PII detector compiles its patterns on first use (milliseconds): here, not
        // inside the first decision's deadline.
        let _ = super::pii::detect("");
        let mut linker = Linker::<HostCtx>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(err)?;
        forbid_sleep(&mut linker).map_err(err)?;
        Policy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(err)?;

        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        config.memory_limit_bytes.hash(&mut hasher);
        instances.hash(&mut hasher);
        let fingerprint = format!("wt{}-{:016x}", wasmtime_version(), hasher.finish());

        let ticker = Arc::new(Ticker::default());
        let ticker_engine = engine.weak();
        let state = ticker.clone();
        let thread = std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || state.run(&ticker_engine))
            .map_err(|e| PolicyError::Engine(format!("starting the epoch ticker: {e}")))?;
        let _ = ticker.thread.set(thread.thread().clone());

        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                config,
                fingerprint,
                compiles: AtomicU64::new(0),
                ticker,
                running: Arc::new(tokio::sync::Semaphore::new(cores)),
            }),
        })
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// How many components this engine compiled with Cranelift (cache misses).
    pub fn compile_count(&self) -> u64 {
        self.inner.compiles.load(Ordering::Relaxed)
    }

    /// Reads `path` and loads it; see [`PolicyEngine::load`].
    pub fn load_file(&self, spec: PolicySpec, path: &Path) -> Result<LoadedPolicy, PolicyError> {
        let read_err = |source| PolicyError::Read {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        let limit = self.inner.config.max_component_bytes;
        if usize::try_from(size).map_or(true, |s| s > limit) {
            return Err(PolicyError::TooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                limit,
            });
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        self.load(spec, &bytes)
    }

    /// Blocking (Cranelift or cache read): call at startup or in spawn_blocking, never per request.
    pub fn load(&self, spec: PolicySpec, bytes: &[u8]) -> Result<LoadedPolicy, PolicyError> {
        let limit = self.inner.config.max_component_bytes;
        if bytes.len() > limit {
            return Err(PolicyError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        check_component_header(bytes)?;
        let digest = hex::encode(Sha256::digest(bytes));
        let component = self.component(bytes, &digest)?;
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PolicyError::WrongWorld(format!("{e:#}")))?;
        let pre =
            PolicyPre::new(instance_pre).map_err(|e| PolicyError::WrongWorld(format!("{e:#}")))?;
        let mut policy = LoadedPolicy {
            inner: Arc::new(LoadedInner {
                engine: self.clone(),
                pre,
                digest,
                info: PolicyInfo {
                    name: String::new(),
                    version: String::new(),
                    description: String::new(),
                },
                recent_ns: AtomicU64::new(u64::MAX),
                blocking_only: AtomicBool::new(false),
            }),
            spec: Arc::new(spec),
            name: Arc::from(""),
            warm: WarmPool::new(self.inner.config.warm_instances),
        };
        policy.name = Arc::from(policy.spec.name.as_str());
        let info = policy.call_info().map_err(PolicyError::Info)?;
        if let Some(inner) = Arc::get_mut(&mut policy.inner) {
            inner.info = info;
        }
        Ok(policy)
    }

    fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.inner.config.cache_dir.as_ref()?;
        Some(dir.join(format!("{digest}-{}.cwasm", self.inner.fingerprint)))
    }

    fn component(&self, bytes: &[u8], digest: &str) -> Result<Component, PolicyError> {
        let cache = self.cache_path(digest);
        if let Some(path) = cache.as_deref().filter(|p| p.is_file())
            && let Some(component) = self.cached(path)
        {
            return Ok(component);
        }
        self.inner.compiles.fetch_add(1, Ordering::Relaxed);
        if let (Compiler::Child(exe), Some(path)) = (&self.inner.config.compiler, &cache) {
            match self.compile_in_child(exe, bytes, path) {
                Ok(()) => {
                    if let Some(component) = self.cached(path) {
                        return Ok(component);
                    }
                }
                Err(ChildCompile::Failed(message)) => return Err(PolicyError::Compile(message)),
                Err(ChildCompile::Unavailable(why)) => {
                    tracing::warn!(exe = %exe.display(), error = %why,
                        "compiling the policy in a child process failed; compiling in process");
                }
            }
        }
        let component = Component::new(&self.inner.engine, bytes)
            .map_err(|e| PolicyError::Compile(format!("{e:#}")))?;
        if let Some(path) = cache
            && let Err(e) = store_cache(&component, &path)
        {
            tracing::warn!(path = %path.display(), error = %e,
                "writing the compiled policy cache failed");
        }
        Ok(component)
    }

    /// The compiled component in cache entry `path`, if it loads.
    fn cached(&self, path: &Path) -> Option<Component> {
        // SAFETY: `path` lies in our own cache directory, named by the sha256 of the
        // source bytes and this engine's compatibility fingerprint, and is only ever
        // written by `store_cache` (temp file + rename, here or in a `compile-cache` child
        // running this same executable), so it holds an artifact this wasmtime version
        // serialized from a component we compiled.
        #[allow(unsafe_code)]
        let cached = unsafe { Component::deserialize_file(&self.inner.engine, path) };
        match cached {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"),
                    "compiled policy cache entry unusable; recompiling");
                None
            }
        }
    }

    /// Runs `exe policy compile-cache` on `bytes`, which writes the cache entry `path`.
    fn compile_in_child(&self, exe: &Path, bytes: &[u8], path: &Path) -> Result<(), ChildCompile> {
        use std::io::Write as _;
        let config = &self.inner.config;
        let dir = path
            .parent()
            .ok_or_else(|| ChildCompile::Unavailable("cache path has no parent".into()))?;
        let unavailable = |e: std::io::Error| ChildCompile::Unavailable(e.to_string());
        let mut child = std::process::Command::new(exe)
            .args(["policy", "compile-cache", "--cache-dir"])
            .arg(dir)
            .arg("--memory-limit-bytes")
            .arg(config.memory_limit_bytes.to_string())
            .arg("--max-instances")
            .arg(config.max_instances.to_string())
            .env("RUST_LOG", "error")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(unavailable)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(bytes).map_err(unavailable)?;
        }
        let output = child.wait_with_output().map_err(unavailable)?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        match output.status.code() {
            Some(0) if path.is_file() => Ok(()),
            Some(0) => Err(ChildCompile::Unavailable(format!(
                "it wrote no cache entry {}",
                path.display()
            ))),
            Some(COMPILE_FAILED_EXIT) => Err(ChildCompile::Failed(stderr)),
            _ => Err(ChildCompile::Unavailable(format!(
                "{}: {stderr}",
                output.status
            ))),
        }
    }

    /// Compiles `bytes` into the cache (the `compile-cache` child's side).
    pub fn compile_to_cache(&self, bytes: &[u8]) -> Result<PathBuf, PolicyError> {
        check_component_header(bytes)?;
        let digest = hex::encode(Sha256::digest(bytes));
        let path = self
            .cache_path(&digest)
            .ok_or_else(|| PolicyError::Engine("no compiled-policy cache directory".into()))?;
        let component = Component::new(&self.inner.engine, bytes)
            .map_err(|e| PolicyError::Compile(format!("{e:#}")))?;
        store_cache(&component, &path)
            .map_err(|e| PolicyError::Engine(format!("writing {}: {e}", path.display())))?;
        Ok(path)
    }
}

/// Exit status of `switchyard policy compile-cache` when the component does not compile.
pub const COMPILE_FAILED_EXIT: i32 = 3;

/// Why compiling in a child process did not give a component.
enum ChildCompile {
    /// The component does not compile (the child's message).
    Failed(String),
    /// The child could not do the job (spawn, I/O, crash): compile in process instead.
    Unavailable(String),
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

fn wasmtime_version() -> &'static str {
    // The cache key also carries `precompile_compatibility_hash`, which covers the version.
    "48"
}

fn store_cache(component: &Component, path: &Path) -> Result<(), String> {
    let bytes = component.serialize().map_err(|e| format!("{e:#}"))?;
    let dir = path.parent().ok_or("cache path has no parent")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

/// Rejects core modules and non-wasm bytes with a clear message before compiling.
fn check_component_header(bytes: &[u8]) -> Result<(), PolicyError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(PolicyError::NotComponent(
            "missing the \\0asm magic header (not a wasm file, or empty/truncated)".into(),
        ));
    }
    // Core modules carry version 1 (layer 0); components carry layer 1 in bytes 6..8.
    if bytes[6..8] == [0, 0] {
        return Err(PolicyError::NotComponent(
            "this is a core wasm module; build the policy as a component (wasm32-wasip2)".into(),
        ));
    }
    Ok(())
}

struct LoadedInner {
    engine: PolicyEngine,
    pre: PolicyPre<HostCtx>,
    digest: String,
    info: PolicyInfo,
    /// Moving average of this component's decision run time, ns (`u64::MAX` before the
    /// first); decides whether a decision runs on the calling thread.
    recent_ns: AtomicU64,
    /// Set once the guest called a WASI function that blocks on tokio (see `decide`).
    blocking_only: AtomicBool,
}

/// A compiled, linked policy ready to decide. Cheap to clone.
#[derive(Clone)]
pub struct LoadedPolicy {
    inner: Arc<LoadedInner>,
    spec: Arc<PolicySpec>,
    name: Arc<str>,
    warm: Arc<WarmPool>,
}

/// An instance kept for the next decision, with the store it lives in.
struct Warm {
    store: Store<HostCtx>,
    policy: Policy,
}

/// Idle instances of one policy under one spec (see [`EngineConfig::warm_instances`]).
struct WarmPool {
    idle: Mutex<Vec<Warm>>,
    cap: usize,
}

impl WarmPool {
    fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new(Vec::with_capacity(cap)),
            cap,
        })
    }

    fn take(&self) -> Option<Warm> {
        if self.cap == 0 {
            return None;
        }
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    /// Keeps `warm` unless the pool is full (then it is dropped, freeing its slot).
    fn put(&self, warm: Warm) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.cap {
            idle.push(warm);
        }
    }

    fn len(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("name", &self.name)
            .field("digest", &self.inner.digest)
            .finish_non_exhaustive()
    }
}

enum Outcome {
    Verdict(Verdict),
    Failed(PolicyFailure),
}

impl LoadedPolicy {
    pub fn name(&self) -> &str {
        &self.name
    }
    /// sha256 hex of the component bytes.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }
    /// First 12 hex chars of the digest; `name@short_digest` in headers.
    pub fn short_digest(&self) -> &str {
        &self.inner.digest[..12]
    }
    pub fn info(&self) -> &PolicyInfo {
        &self.inner.info
    }
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }
    /// The same compiled component under another spec (name, params, fallback); no recompile.
    pub fn with_spec(&self, spec: PolicySpec) -> Self {
        Self {
            inner: self.inner.clone(),
            name: Arc::from(spec.name.as_str()),
            spec: Arc::new(spec),
            // Warm instances carry the spec's params and name: never share them.
            warm: WarmPool::new(self.inner.engine.inner.config.warm_instances),
        }
    }

    fn new_store(&self, host: Arc<dyn HostState>, request_id: &str) -> Store<HostCtx> {
        let config = &self.inner.engine.inner.config;
        let stdout = MemoryOutputPipe::new(MAX_STDIO_BYTES);
        let stderr = MemoryOutputPipe::new(MAX_STDIO_BYTES);
        // No preopens, network, env or args: WASI is only there for the guest runtime's
        // startup (stdio, random seeds). `get-random-bytes` allocates on the host what the
        // guest asks for, so cap it well below wasmtime-wasi's 64 MiB default.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let ctx = HostCtx {
            host,
            params: Arc::new(self.spec.params.clone()),
            policy: self.name.clone(),
            request_id: request_id.to_owned(),
            logs: 0,
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

    fn call_info(&self) -> Result<PolicyInfo, String> {
        let _busy = self.inner.engine.inner.ticker.busy();
        let host: Arc<dyn HostState> = Arc::new(super::StaticHost::default());
        let mut store = self.new_store(host, "info");
        let result = self.inner.pre.instantiate(&mut store).and_then(|p| {
            store.set_epoch_deadline(ticks(INFO_DEADLINE));
            p.switchyard_policy_router().call_info(&mut store)
        });
        flush_stdio(&store);
        let info = result.map_err(|e| format!("{e:#}"))?;
        Ok(PolicyInfo {
            name: info.name,
            version: info.version,
            description: info.description,
        })
    }

    /// Runs the guest with a fresh store (or a warm instance); any failure yields the
    /// spec's fallback decision. A policy whose recent decisions ran in under
    /// [`INLINE_BELOW`] runs on the calling thread (handing it to a blocking thread and
    /// back costs more than the decision); others run on a blocking thread, at most one
    /// per core, under the outer timeout.
    pub async fn decide(
        &self,
        request: &domain::PolicyRequest,
        host: Arc<dyn HostState>,
    ) -> Evaluation {
        let start = Instant::now();
        let running = &self.inner.engine.inner.running;
        // Inline decisions take no permit: the async threads (one per core) bound them.
        if !self.inner.blocking_only.load(Ordering::Relaxed)
            && self.inner.recent_ns.load(Ordering::Relaxed) < INLINE_BELOW.as_nanos() as u64
        {
            // WASI's synchronous stream and poll functions (a guest writing to stdout, for
            // one) block on tokio, which panics on a runtime thread: such a guest's
            // decision is run again on a blocking thread, as are all its later ones.
            let inline = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.run_timed(request, host.clone())
            }));
            match inline {
                Ok(outcome) => return self.finish(outcome, &request.id, start.elapsed()),
                Err(_) => {
                    self.inner.blocking_only.store(true, Ordering::Relaxed);
                    tracing::info!(policy = %self.name, digest = %self.inner.digest,
                        "the policy calls blocking WASI functions; its decisions run on blocking threads");
                }
            }
        }
        let outer = self.inner.engine.inner.config.outer_timeout;
        // At most one decision per core runs: under load the others queue here, before
        // their wall-clock deadline starts, instead of timing out while descheduled.
        let permit = match running.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => {
                let failure = PolicyFailure {
                    kind: FailureKind::Internal,
                    message: "policy engine is shutting down".to_owned(),
                };
                return self.finish(Outcome::Failed(failure), &request.id, start.elapsed());
            }
        };
        let this = self.clone();
        let req = request.clone();
        let task = tokio::task::spawn_blocking(move || {
            let outcome = this.run_timed(&req, host);
            drop(permit);
            outcome
        });
        let outcome = match tokio::time::timeout(outer, task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(join)) => Outcome::Failed(PolicyFailure {
                kind: FailureKind::Internal,
                message: format!("policy task failed: {join}"),
            }),
            Err(_) => Outcome::Failed(PolicyFailure {
                kind: FailureKind::Timeout,
                message: format!("policy call exceeded {} ms", outer.as_millis()),
            }),
        };
        self.finish(outcome, &request.id, start.elapsed())
    }

    /// [`LoadedPolicy::run_blocking`], folding its run time into the moving average.
    fn run_timed(&self, request: &domain::PolicyRequest, host: Arc<dyn HostState>) -> Outcome {
        let started = Instant::now();
        let outcome = self.run_blocking(request, host);
        let sample = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let recent = &self.inner.recent_ns;
        let old = recent.load(Ordering::Relaxed);
        let new = if old == u64::MAX {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        recent.store(new, Ordering::Relaxed);
        outcome
    }

    /// The same as [`LoadedPolicy::decide`] on the calling thread, without the outer
    /// timeout (the epoch deadline still applies). For benchmarks and tools.
    pub fn decide_blocking(
        &self,
        request: &domain::PolicyRequest,
        host: Arc<dyn HostState>,
    ) -> Evaluation {
        let start = Instant::now();
        let outcome = self.run_blocking(request, host);
        self.finish(outcome, &request.id, start.elapsed())
    }

    fn finish(&self, outcome: Outcome, request_id: &str, elapsed: Duration) -> Evaluation {
        match outcome {
            Outcome::Verdict(verdict) => Evaluation {
                verdict,
                failure: None,
                elapsed,
            },
            Outcome::Failed(failure) => {
                tracing::warn!(policy = %self.name, digest = %self.inner.digest,
                    request_id, kind = failure.kind.as_str(), error = %failure.message,
                    "policy failed; using the fallback decision");
                metrics::counter!("switchyard_policy_failures_total",
                    "policy" => self.name.to_string(), "kind" => failure.kind.as_str())
                .increment(1);
                Evaluation {
                    verdict: Verdict::Route(self.spec.fallback.clone()),
                    failure: Some(failure),
                    elapsed,
                }
            }
        }
    }

    /// Idle warm instances this policy holds now (always 0 when the pool is off).
    pub fn warm_instances(&self) -> usize {
        self.warm.len()
    }

    /// A warm instance re-targeted at this request, or a fresh store and instance.
    fn instance(&self, host: &Arc<dyn HostState>, request_id: &str) -> Result<Warm, PolicyFailure> {
        if let Some(mut warm) = self.warm.take() {
            let ctx = warm.store.data_mut();
            ctx.host = host.clone();
            ctx.request_id = request_id.to_owned();
            ctx.logs = 0;
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

    fn run_blocking(&self, request: &domain::PolicyRequest, host: Arc<dyn HostState>) -> Outcome {
        let _busy = self.inner.engine.inner.ticker.busy();
        let deadline = self.inner.engine.inner.config.deadline;
        let wit_request = to_request(request);
        let mut warm = match self.instance(&host, &request.id) {
            Ok(warm) => warm,
            Err(failure) => return Outcome::Failed(failure),
        };
        warm.store.set_epoch_deadline(ticks(deadline));
        let result = warm
            .policy
            .switchyard_policy_router()
            .call_route(&mut warm.store, &wit_request);
        let quiet = !flush_stdio(&warm.store) && warm.store.data().logs <= MAX_LOG_LINES;
        let outcome = match result {
            Ok(Ok(decision)) => validate_decision(from_decision(decision), host.as_ref()),
            Ok(Err(rejection)) => {
                let rejection = from_rejection(rejection);
                if (400..=599).contains(&rejection.status) {
                    Outcome::Verdict(Verdict::Reject(rejection))
                } else {
                    Outcome::Failed(PolicyFailure {
                        kind: FailureKind::BadStatus,
                        message: format!(
                            "rejection status {} is outside 400..=599",
                            rejection.status
                        ),
                    })
                }
            }
            Err(e) => Outcome::Failed(classify(&e)),
        };
        // Only an instance that just answered well, and wrote nothing to stdio (whose
        // buffers are per store), is kept; a trap or an interrupt leaves it unusable.
        if quiet && matches!(outcome, Outcome::Verdict(_)) {
            self.warm.put(warm);
        }
        outcome
    }
}

fn validate_decision(decision: domain::Decision, host: &dyn HostState) -> Outcome {
    if decision.targets.is_empty() {
        return Outcome::Failed(PolicyFailure {
            kind: FailureKind::EmptyTargets,
            message: "decision has no targets".into(),
        });
    }
    for target in &decision.targets {
        if !host.has_backend(&target.backend) {
            return Outcome::Failed(PolicyFailure {
                kind: FailureKind::UnknownBackend,
                message: format!("decision names unknown backend {:?}", target.backend),
            });
        }
    }
    Outcome::Verdict(Verdict::Route(decision))
}

/// Sorts a failed instantiate/call into a [`FailureKind`]. Only the epoch interrupt is a
/// deadline; the store limiter's forced trap is the memory cap; running out of the pooling
/// allocator's slots is the host's problem (internal), not the guest's; anything else the
/// guest did (unreachable, out-of-bounds, too much data handed to the host) is a trap.
fn classify(e: &wasmtime::Error) -> PolicyFailure {
    let message = format!("{e:#}");
    let kind = match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => FailureKind::Deadline,
        Some(_) => FailureKind::Trap,
        None if e.is::<wasmtime::PoolConcurrencyLimitError>() => FailureKind::Internal,
        None if message.contains("forcing trap when growing memory")
            || message.contains("forcing a memory growth failure") =>
        {
            FailureKind::Memory
        }
        None => FailureKind::Trap,
    };
    PolicyFailure { kind, message }
}

/// Logs what the guest wrote to stdout/stderr; true when it wrote anything.
fn flush_stdio(store: &Store<HostCtx>) -> bool {
    let ctx = store.data();
    let mut wrote = false;
    for (stream, pipe) in [("stdout", &ctx.stdout), ("stderr", &ctx.stderr)] {
        let bytes = pipe.contents();
        if !bytes.is_empty() {
            wrote = true;
            let text = String::from_utf8_lossy(&bytes);
            tracing::debug!(policy = %ctx.policy, request_id = %ctx.request_id, stream,
                "policy output: {}", text.trim_end());
        }
    }
    wrote
}
