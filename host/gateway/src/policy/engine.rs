//! The wasmtime engine behind policies: engine settings, the pooling allocator, the
//! linker, the epoch ticker, and loading a component into a [`LoadedPolicy`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{ContractVersion, Pre};
use super::imports::{self, HostCtx};
use super::loaded::digest_of;
use super::ticker::Ticker;
use super::{EngineConfig, LoadedPolicy, PolicyError, PolicySpec, cache};

/// Bytes of each pooled linear memory kept resident between decisions.
const KEEP_RESIDENT_BYTES: usize = 16 << 20;

pub(super) struct EngineInner {
    pub(super) engine: Engine,
    linker: Linker<HostCtx>,
    pub(super) config: EngineConfig,
    /// Names this engine's entries in the compiled-component cache.
    pub(super) fingerprint: String,
    /// Cranelift compiles (cache misses).
    pub(super) compiles: AtomicU64,
    pub(super) ticker: Arc<Ticker>,
    /// Decisions running at once (one per core); more wait their turn before their
    /// deadline starts, so load does not turn into deadline failures.
    pub(super) running: Arc<tokio::sync::Semaphore>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

/// Compiles and runs policy components. Cheap to clone.
#[derive(Clone)]
pub struct PolicyEngine {
    pub(super) inner: Arc<EngineInner>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
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
        imports::link(&mut linker).map_err(err)?;
        let fingerprint = cache::fingerprint(&engine, &config);
        let ticker = Ticker::start(&engine)
            .map_err(|e| PolicyError::Engine(format!("starting the epoch ticker: {e}")))?;

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
        cache::check_component_header(bytes)?;
        let digest = digest_of(bytes);
        let component = self.component(bytes, &digest)?;
        let Some(version) = ContractVersion::of(&component) else {
            // Name what it imports that the host does not provide, too.
            let imports = match self.inner.linker.instantiate_pre(&component) {
                Err(e) => format!("; {e:#}"),
                Ok(_) => String::new(),
            };
            return Err(PolicyError::WrongWorld(format!(
                "the component exports no `switchyard:policy/router` of a known version \
                 (0.2.0, 0.1.0){imports}"
            )));
        };
        let wrong = |e: wasmtime::Error| PolicyError::WrongWorld(format!("{version}: {e:#}"));
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(wrong)?;
        let pre = Pre::new(version, instance_pre).map_err(wrong)?;
        let deadline = self.inner.config.deadline_for(bytes.len());
        LoadedPolicy::new(self.clone(), pre, digest, deadline, spec)
    }
}
