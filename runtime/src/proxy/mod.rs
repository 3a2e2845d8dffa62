//! The proxy: the listener, and the request path as phases a newcomer reads in order.
//!
//! ```text
//! server   accept, limits, timeouts, graceful drain            (server.rs, conn.rs)
//! driver   one request, top to bottom:                          (driver.rs)
//!   recv     route to a site, the client's view, on_request     (recv.rs)
//!   hash     the cache key: default, then the site's script     (hash.rs)
//!   lookup   hit | stale hit | fetch | only-if-cached: pure      (lookup.rs)
//!   fetch    origin request, coalescing, revalidation           (fetch.rs)
//!   admit    storable? for how long? what stays personal: pure  (admit.rs)
//!   pass     not from cache: forward, invalidate on unsafe      (pass.rs)
//!   deliver  entry → response, on_response, Cache-Status, log   (deliver.rs)
//! outcome  the named states of all the above → Cache-Status    (outcome.rs)
//! ```

mod admit;
mod conn;
mod deliver;
pub(crate) mod driver;
mod fetch;
mod hash;
pub(crate) mod headers;
mod lookup;
mod outcome;
mod pass;
mod range;
mod recv;
mod server;
mod site;

use std::sync::Arc;

pub(crate) use deliver::{refused, Answer};
pub(crate) use driver::Exchange;
pub use driver::Flight;
pub use outcome::{NoStore, Outcome, PassReason, Refusal, StaleReason};
pub use server::{serve, Running};
pub use site::SiteRuntime;

use crate::cache::coalesce::Coalescer;
use crate::cache::Store;
use crate::clock::Clock;
use crate::config::{Config, MAX_GUEST_MEMORY};
use crate::guest::{CompiledCache, GuestEngine, InstancePool, PoolSize};

/// Everything the request path shares across requests.
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// One runtime per configured site, same order.
    pub sites: Vec<Arc<SiteRuntime>>,
    /// The object store.
    pub store: Store,
    /// Origin fetches in flight, by key and variant.
    pub flights: Coalescer<Flight>,
    /// Script instances, handed out in turn.
    pub pool: Arc<InstancePool>,
    /// The cache's clock.
    pub clock: Clock,
}

/// Opens the compiled-component cache a config names; an unsafe directory is an error.
pub fn compiled_cache(config: &Config) -> anyhow::Result<Option<CompiledCache>> {
    match &config.compiled_dir {
        None => {
            tracing::info!("no cache directory (HOME unset): scripts are compiled at every start");
            Ok(None)
        }
        Some(dir) => CompiledCache::open(dir)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("key `compiled_dir`: {e}")),
    }
}

/// Builds everything a config describes: engine, scripts, origin clients, cache.
pub async fn build(config: Config, clock: Clock) -> anyhow::Result<Arc<Shared>> {
    let pool = Arc::new(InstancePool::new(&config.scripts));
    let engine = if config.sites.iter().any(|s| !s.scripts.is_empty()) {
        let max_memory = config
            .sites
            .iter()
            .map(|s| s.limits.memory_bytes)
            .max()
            .unwrap_or(0)
            .min(MAX_GUEST_MEMORY);
        Some(GuestEngine::new(PoolSize {
            instances: config.scripts.instances,
            max_memory,
        })?)
    } else {
        None
    };
    let compiled = compiled_cache(&config)?;
    let mut sites = Vec::with_capacity(config.sites.len());
    for s in &config.sites {
        let site = SiteRuntime::new(s.clone(), engine.as_ref(), &pool, compiled.as_ref()).await?;
        sites.push(Arc::new(site));
    }
    Ok(Arc::new(Shared {
        store: Store::new(config.cache.max_bytes, clock.clone()),
        flights: Default::default(),
        sites,
        pool,
        clock,
        config,
    }))
}
