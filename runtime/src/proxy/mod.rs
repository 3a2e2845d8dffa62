//! The proxy: the listener, and the request path as phases a newcomer reads in order.
//!
//! ```text
//! server   accept, limits, timeouts, graceful drain            (server.rs, conn.rs)
//! driver   one request, top to bottom:                          (driver.rs)
//!   recv     route to a site, the client's view, on_request     (recv.rs)
//!   hash     the cache key: default, then the site's script     (hash.rs)
//!   lookup   hit | stale hit | fetch | only-if-cached: pure      (lookup.rs)
//!   fetch    origin request, coalescing, revalidation           (fetch.rs)
//!   stream   a miss streamed to its client while the cache fills (stream.rs)
//!   tier     where a fetch goes: a shield by key, or the origin   (tier.rs)
//!   admit    storable? for how long? what stays personal: pure  (admit.rs)
//!   pass     not from cache: forward, invalidate on unsafe      (pass.rs)
//!   deliver  entry → response, on_response, Cache-Status, log   (deliver.rs)
//! replay   a logged request through recv..admit, for simulate   (replay.rs)
//! outcome  the named states of all the above → Cache-Status    (outcome.rs)
//! ```

mod admit;
mod compress;
mod conn;
mod deliver;
pub(crate) mod driver;
mod explain;
mod fetch;
mod hash;
pub(crate) mod headers;
mod lookup;
mod outcome;
mod pass;
mod range;
mod recv;
mod replay;
mod server;
mod site;
mod stream;
mod tier;
mod upgrade;

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

pub(crate) use deliver::{refused, Answer};
pub(crate) use driver::handle;
pub(crate) use driver::Exchange;
pub use driver::Flight;
pub use explain::{explain, KeyReport};
pub use outcome::{NoStore, Outcome, PassReason, Refusal, StaleReason};
pub(crate) use recv::ConnInfo;
pub use replay::{replay, Replayed, Served, Synthetic};
pub(crate) use server::next_connection;
pub use server::{serve, Running};
pub use site::SiteRuntime;

use crate::cache::coalesce::Coalescer;
use crate::cache::Store;
use crate::clock::Clock;
use crate::config::{Config, MAX_GUEST_MEMORY};
use crate::guest::{CompiledCache, GuestEngine, InstancePool, PoolSize};

/// Everything the request path shares across requests, for the life of the process.
pub struct Shared {
    /// The configuration and sites now in force; swapped whole by a reload.
    current: ArcSwap<Generation>,
    /// The object store (it outlives reloads).
    pub store: Store,
    /// Origin fetches in flight, by key and variant.
    pub flights: Coalescer<Flight>,
    /// Script instances, handed out in turn.
    pub pool: Arc<InstancePool>,
    /// Scripts' rate-limit counters (they outlive reloads).
    pub limiter: Arc<crate::guest::RateLimiter>,
    /// The fleet's purge stream, when `[fleet]` is configured.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// The cache's clock.
    pub clock: Clock,
    /// The wasm engine, made when the first script is loaded.
    engine: OnceLock<GuestEngine>,
    /// Largest guest memory the engine was sized for.
    max_memory: usize,
    /// The on-disk cache of compiled components.
    compiled: Option<CompiledCache>,
    /// Serialises reloads.
    reloading: tokio::sync::Mutex<()>,
    /// Certificates of each `[[listener]]` in config order (`None`: cleartext); the
    /// listeners are fixed at start, so the order holds across reloads.
    pub(crate) tls: Vec<Option<Arc<crate::tls::server::Resolver>>>,
    /// Upgraded connections (WebSocket tunnels) open at once, at most `max_connections`.
    pub(crate) tunnels: Arc<tokio::sync::Semaphore>,
    /// Set when shutdown begins: `/readyz` then answers 503.
    draining: std::sync::atomic::AtomicBool,
}

/// One version of the configuration and the sites built from it. A request holds the
/// generation it started with to its end, so a reload never changes a request halfway.
pub struct Generation {
    /// The validated configuration.
    pub config: Config,
    /// One runtime per configured site, same order.
    pub sites: Vec<Arc<SiteRuntime>>,
    /// 1 for the configuration the process started with, then one more per reload.
    pub version: u64,
}

impl Shared {
    /// The generation in force now.
    pub fn generation(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Whether shutdown has begun.
    pub fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Marks the start of shutdown (load balancers polling `/readyz` move away).
    pub fn start_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn engine(&self, config: &Config) -> anyhow::Result<Option<&GuestEngine>> {
        if config.sites.iter().all(|s| s.scripts.is_empty()) {
            return Ok(self.engine.get());
        }
        if let Some(e) = self.engine.get() {
            return Ok(Some(e));
        }
        let e = GuestEngine::new(PoolSize {
            instances: config.scripts.instances,
            max_memory: self.max_memory,
        })?;
        Ok(Some(self.engine.get_or_init(|| e)))
    }

    async fn sites(&self, config: &Config) -> anyhow::Result<Vec<Arc<SiteRuntime>>> {
        let engine = self.engine(config)?;
        let mut sites = Vec::with_capacity(config.sites.len());
        for s in &config.sites {
            let site = SiteRuntime::new(
                s.clone(),
                engine,
                &self.pool,
                self.compiled.as_ref(),
                &self.limiter,
            )
            .await?;
            sites.push(Arc::new(site));
        }
        Ok(sites)
    }

    /// Validates `config` and, if it is good, puts it and its scripts in force at once.
    /// Requests already running finish with the old version; the cache is kept. Settings
    /// that shape the process itself (`listen`, `[server]`, `[scripts]`, `[cache]`,
    /// `compiled_dir`, `admin`, listener addresses) need a restart; certificates reload: a config that changes them is refused.
    pub async fn reload(&self, config: Config) -> anyhow::Result<u64> {
        let _one = self.reloading.lock().await;
        let old = self.generation();
        let c = &old.config;
        for (key, same) in [
            ("listen", c.listen == config.listen),
            ("server", c.server == config.server),
            ("scripts", c.scripts == config.scripts),
            ("cache", c.cache == config.cache),
            ("compiled_dir", c.compiled_dir == config.compiled_dir),
            ("admin", c.admin == config.admin),
            ("fleet", c.fleet == config.fleet),
            ("listener", same_listeners(&c.listeners, &config.listeners)),
        ] {
            anyhow::ensure!(
                same,
                "key `{key}` changed: that needs a restart (nothing was reloaded)"
            );
        }
        let wanted = config
            .sites
            .iter()
            .map(|s| s.limits.memory_bytes)
            .max()
            .unwrap_or(0);
        anyhow::ensure!(
            wanted <= self.max_memory,
            "key `limits.memory_mib`: more memory than at start ({} MiB) needs a restart",
            self.max_memory >> 20
        );
        let sites = self.sites(&config).await?;
        // Certificates are read again (they may have been renewed in place) and all must
        // load before anything changes.
        let mut certs = Vec::new();
        for (l, resolver) in config.listeners.iter().zip(&self.tls) {
            if let (Some(tls), Some(resolver)) = (&l.tls, resolver) {
                certs.push((
                    resolver,
                    crate::tls::server::Resolver::load(tls).map_err(anyhow::Error::msg)?,
                ));
            }
        }
        let version = old.version + 1;
        self.current.store(Arc::new(Generation {
            config,
            sites,
            version,
        }));
        for (resolver, loaded) in certs {
            resolver.install(loaded);
        }
        Ok(version)
    }
}

/// Whether two configs have the same listeners (addresses, and TLS or not); certificate
/// files may change.
fn same_listeners(
    a: &[crate::config::ListenerConfig],
    b: &[crate::config::ListenerConfig],
) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.address == y.address && x.tls.is_some() == y.tls.is_some())
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
    let mut store = Store::sharded(
        config.cache.max_bytes,
        config.cache.max_object_bytes,
        clock.clone(),
    );
    if let Some(disk) = &config.cache.disk {
        let disk = crate::cache::disk::Disk::open(disk, clock.clone())
            .map_err(|e| anyhow::anyhow!("key `cache.disk.path`: {e:#}"))?;
        store = store.with_disk(disk);
    }
    build_with(config, clock, store).await
}

/// [`build`] with a store that decides the same on every run, for replaying a log.
pub async fn build_for_replay(config: Config, clock: Clock) -> anyhow::Result<Arc<Shared>> {
    let store = Store::reproducible(config.cache.max_bytes, clock.clone());
    build_with(config, clock, store).await
}

async fn build_with(config: Config, clock: Clock, store: Store) -> anyhow::Result<Arc<Shared>> {
    let max_memory = config
        .sites
        .iter()
        .map(|s| s.limits.memory_bytes)
        .max()
        .unwrap_or(0)
        .min(MAX_GUEST_MEMORY);
    let shared = Shared {
        store,
        flights: Default::default(),
        pool: Arc::new(InstancePool::new(&config.scripts)),
        limiter: Default::default(),
        fleet: match &config.fleet {
            None => None,
            Some(f) => Some(Arc::new(
                crate::fleet::Fleet::new(f, &config.node_name)
                    .map_err(|e| anyhow::anyhow!("key `fleet.redis`: {e}"))?,
            )),
        },
        clock,
        engine: OnceLock::new(),
        max_memory,
        compiled: compiled_cache(&config)?,
        reloading: Default::default(),
        draining: Default::default(),
        tunnels: Arc::new(tokio::sync::Semaphore::new(config.server.max_connections)),
        tls: config
            .listeners
            .iter()
            .map(|l| {
                l.tls
                    .as_ref()
                    .map(|t| crate::tls::server::Resolver::new(t).map_err(anyhow::Error::msg))
                    .transpose()
            })
            .collect::<anyhow::Result<_>>()?,
        current: ArcSwap::from_pointee(Generation {
            config: config.clone(),
            sites: Vec::new(),
            version: 1,
        }),
    };
    let sites = shared.sites(&config).await?;
    shared.current.store(Arc::new(Generation {
        config,
        sites,
        version: 1,
    }));
    Ok(Arc::new(shared))
}
