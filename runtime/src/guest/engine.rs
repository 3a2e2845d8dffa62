//! The shared wasmtime engine: pooling allocator, epoch ticker, per-store state.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, StoreLimits};

/// How often the epoch advances; CPU budgets are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Instance slots whose memory is returned to the OS together.
const DECOMMIT_BATCH: usize = 32;
/// Bytes of each memory and table reset in place (memset) rather than returned to the OS.
const KEEP_RESIDENT: usize = 64 << 10;

/// Sizing of the instance pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    /// Instances that may be alive at once (one per in-flight scripted request).
    pub instances: u32,
    /// Largest linear memory any site allows, in bytes.
    pub max_memory: usize,
}

impl Default for PoolSize {
    fn default() -> Self {
        PoolSize {
            instances: 256,
            max_memory: 64 << 20,
        }
    }
}

/// Data each guest store carries: its limits and what its log lines are tagged with.
pub struct State {
    /// Memory cap enforcement.
    pub limits: StoreLimits,
    /// Site the request belongs to.
    pub site: Arc<str>,
    /// Request id for log correlation.
    pub request_id: Arc<str>,
    /// Lines logged so far by this request's script.
    pub log_lines: u32,
}

/// A wasmtime engine set up for short-lived, sandboxed per-request instances.
#[derive(Clone)]
pub struct GuestEngine {
    engine: Engine,
    _ticker: Arc<Ticker>,
}

struct Ticker(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl GuestEngine {
    /// Builds the engine and starts the thread that advances its epoch.
    pub fn new(pool: PoolSize) -> anyhow::Result<GuestEngine> {
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_component_instances(pool.instances)
            .total_core_instances(pool.instances * 4)
            .total_memories(pool.instances * 2)
            .total_tables(pool.instances * 4)
            .max_memory_size(pool.max_memory)
            // Every dropped instance returns its pages with madvise, and in a multi-threaded
            // server each madvise costs a TLB shootdown across cores; batching the decommits
            // pays that once per batch (measured in bench/cache.rs).
            .decommit_batch_size(DECOMMIT_BATCH)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .wasm_component_model(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling))
            .max_wasm_stack(512 << 10);
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;

        // The ticker holds only a weak handle so a dropped engine is freed, and a flag so the
        // thread ends with the last `GuestEngine` clone.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("tessera-epoch".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(GuestEngine {
            engine,
            _ticker: Arc::new(Ticker(stop)),
        })
    }

    /// The underlying wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}
