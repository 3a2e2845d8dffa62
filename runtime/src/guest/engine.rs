//! The shared wasmtime engine: pooling allocator, epoch ticker, per-store state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter,
    StoreLimits,
};

use super::meter::Meter;
use crate::clock::Clock;

/// How often the epoch advances: a running script is checked against its budget, and
/// yields to other connections, this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Instance slots whose memory is returned to the OS together.
const DECOMMIT_BATCH: usize = 32;
/// Dirty bytes of a linear memory reset in place (memcpy from the image, or zeroed) rather
/// than returned to the OS when its instance is dropped. The `PAGEMAP_SCAN` ioctl finds
/// the pages a request wrote (the top of the stack, some data, the first heap chunk), so
/// only those are reset and the next request on the slot takes no page faults; pages
/// beyond this budget are decommitted.
const KEEP_RESIDENT: usize = 256 << 10;
/// Bytes of each table and fiber stack reset in place (memset) rather than decommitted.
const STACK_KEEP_RESIDENT: usize = 64 << 10;
/// Host stack for one async call: the guest's own stack (`max_wasm_stack`) plus host frames.
const ASYNC_STACK: usize = 1 << 20;
/// Most stack a guest may use.
const MAX_WASM_STACK: usize = 512 << 10;

/// Sizing of the instance pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    /// Instances that may be alive at once.
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

/// Data each guest store carries: its limits, meter, and what its log lines are tagged with.
pub struct State {
    /// Memory cap enforcement.
    pub limits: Limiter,
    /// Site the request belongs to.
    pub site: Arc<str>,
    /// Request id for log correlation.
    pub request_id: Arc<str>,
    /// The request's script time and host-call budget.
    pub meter: Arc<Meter>,
    /// The clock scripts read with `now_ms`.
    pub clock: Clock,
    /// The site's script settings and rate-limit counters.
    pub env: Arc<super::ScriptEnv>,
    /// Set once anything on this store read the clock, randomness or a rate-limit counter:
    /// its answers are not a function of the request alone, so they are not memoised.
    pub impure: bool,
}

/// A store's limits, and how far its linear memories have grown (what a kept instance holds).
pub struct Limiter {
    limits: StoreLimits,
    /// Bytes of linear memory granted so far, all of the store's memories together.
    pub memory: usize,
}

impl Limiter {
    /// Enforces `limits`.
    pub fn new(limits: StoreLimits) -> Limiter {
        Limiter { limits, memory: 0 }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let granted = self.limits.memory_growing(current, desired, maximum)?;
        // Called with `current` 0 when a memory is created, so this sums every memory.
        if granted {
            self.memory = self.memory.saturating_add(desired.saturating_sub(current));
        }
        Ok(granted)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// A wasmtime engine set up for short-lived, sandboxed per-request instances.
#[derive(Clone)]
pub struct GuestEngine {
    engine: Engine,
    _ticker: Arc<Ticker>,
}

struct Ticker(Arc<AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl GuestEngine {
    /// Builds the engine and starts the thread that advances its epoch.
    pub fn new(pool: PoolSize) -> anyhow::Result<GuestEngine> {
        // Freed slots wait in the decommit batch before they can be reused, so the pool holds
        // a batch more than the instances admitted at once (`InstancePool` admits at most
        // `instances`), and a batch is never larger than a quarter of the pool: a batch that
        // cannot fill would keep its slots forever.
        let batch = DECOMMIT_BATCH.min(pool.instances as usize / 4).max(1);
        // Instances kept for reuse between requests hold slots outside admission.
        let slots = pool.instances + batch as u32 + super::reuse::MAX_KEPT as u32;
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_component_instances(slots)
            // A component built by wit-bindgen holds a few core instances (the module and
            // its adapter shims), one memory, and a table or two.
            .total_core_instances(slots * 4)
            .total_memories(slots * 2)
            .total_tables(slots * 4)
            // One fiber stack per store with a call in progress.
            .total_stacks(slots)
            .max_memory_size(pool.max_memory)
            // Every dropped instance returns its pages with madvise, and in a multi-threaded
            // server each madvise costs a TLB shootdown across cores; batching the decommits
            // pays that once per batch (measured in bench/cache.rs).
            .decommit_batch_size(batch)
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(STACK_KEEP_RESIDENT)
            .async_stack_keep_resident(STACK_KEEP_RESIDENT);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .wasm_component_model(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling))
            // Bounds are checked by the compiled code instead of by guard pages and a
            // signal handler. A guard-page memory must have its protection shrunk back with
            // mprotect (a TLB shootdown across cores) every time an instance that grew its
            // memory is dropped, and every guest's allocator grows memory on first use;
            // explicit checks cost a compare per access instead (bench/guest.rs: a fresh
            // instance + `cache-key` + drop went from 17 µs to 11 µs).
            .signals_based_traps(false)
            .memory_guard_size(0)
            .async_stack_size(ASYNC_STACK)
            .max_wasm_stack(MAX_WASM_STACK);
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;

        // The ticker holds only a weak handle so a dropped engine is freed, and a flag so the
        // thread ends with the last `GuestEngine` clone.
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("tessera-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
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
