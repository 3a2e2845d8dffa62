//! The object store: primary key → variants (by `Vary`), bounded by bytes in moka.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use moka::sync::Cache;
use moka::Expiry;

use super::vary::VaryKey;

/// Extra time an entry is kept past its stale windows (Varnish's "keep"): a later request
/// can revalidate it with a cheap 304, or accept it stale with `max-stale` (RFC 9111 §5.2.1.2).
/// The byte bound still applies: kept entries are evicted like any other.
pub const KEEP: Duration = Duration::from_secs(3600);
/// Variants kept per primary key; more means a `Vary` on a high-cardinality header.
pub const MAX_VARIANTS: usize = 16;

/// One stored response.
#[derive(Debug)]
pub struct Entry {
    /// Status code.
    pub status: StatusCode,
    /// Headers as stored (hop-by-hop and stripped fields removed).
    pub headers: HeaderMap,
    /// The complete body.
    pub body: Bytes,
    /// When the response was received (`response_time`, RFC 9111 §4.2.3).
    pub response_time: SystemTime,
    /// Corrected initial age at `response_time`.
    pub initial_age: Duration,
    /// Freshness lifetime.
    pub ttl: Duration,
    /// Stale-while-revalidate window after `ttl`.
    pub swr: Duration,
    /// Stale-if-error window after `ttl`.
    pub sie: Duration,
    /// Always revalidate before reuse (`no-cache` without field names).
    pub no_cache: bool,
    /// Never serve stale (`must-revalidate`, `proxy-revalidate`, `s-maxage`).
    pub must_revalidate: bool,
    /// Surrogate keys for purge by tag.
    pub tags: Vec<String>,
    /// Secondary key.
    pub vary: VaryKey,
    /// Set by a soft purge: the entry is treated as stale from then on.
    pub invalidated: std::sync::atomic::AtomicBool,
}

impl Entry {
    /// Current age (RFC 9111 §4.2.3).
    pub fn age(&self, now: SystemTime) -> Duration {
        super::freshness::current_age(self.initial_age, self.response_time, now)
    }

    /// Remaining freshness in whole seconds; negative once stale.
    pub fn remaining_ttl(&self, now: SystemTime) -> i64 {
        self.effective_ttl().as_secs() as i64 - self.age(now).as_secs() as i64
    }

    /// Freshness lifetime, zero after a soft purge.
    pub fn effective_ttl(&self) -> Duration {
        if self.invalidated.load(std::sync::atomic::Ordering::Relaxed) {
            Duration::ZERO
        } else {
            self.ttl
        }
    }

    /// How long after `response_time` the entry may still be of use.
    fn useful_for(&self) -> Duration {
        (self.ttl + self.swr.max(self.sie) + KEEP).saturating_sub(self.initial_age)
    }

    fn weight(&self) -> u64 {
        let head: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        (self.body.len() + head + 256) as u64
    }
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A stored response whose `Vary` matches the request.
    Found(Arc<Entry>),
    /// Responses are stored under the key but none matches this request's `Vary` headers.
    VaryMiss,
    /// Nothing stored under the key.
    UriMiss,
}

#[derive(Debug)]
struct Variants {
    list: Vec<Arc<Entry>>,
    until: SystemTime,
}

impl Variants {
    fn new(list: Vec<Arc<Entry>>) -> Variants {
        let until = list
            .iter()
            .map(|e| e.response_time + e.useful_for())
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Variants { list, until }
    }
}

struct UsefulLife;

impl Expiry<String, Arc<Variants>> for UsefulLife {
    fn expire_after_create(
        &self,
        _k: &String,
        v: &Arc<Variants>,
        _at: Instant,
    ) -> Option<Duration> {
        Some(
            v.until
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        )
    }
    fn expire_after_update(
        &self,
        _k: &String,
        v: &Arc<Variants>,
        _at: Instant,
        _d: Option<Duration>,
    ) -> Option<Duration> {
        Some(
            v.until
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        )
    }
}

/// The shared object store.
#[derive(Clone)]
pub struct Store {
    objects: Cache<String, Arc<Variants>>,
}

impl Store {
    /// A store bounded to `max_bytes` of bodies and heads.
    pub fn new(max_bytes: u64) -> Store {
        let objects = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &String, v: &Arc<Variants>| {
                let w: u64 = k.len() as u64 + v.list.iter().map(|e| e.weight()).sum::<u64>();
                w.min(u32::MAX as u64) as u32
            })
            .expire_after(UsefulLife)
            .build();
        Store { objects }
    }

    /// Finds the variant stored under `key` that matches the request headers.
    pub fn lookup(&self, key: &str, req: &HeaderMap) -> Lookup {
        match self.objects.get(key) {
            None => Lookup::UriMiss,
            Some(v) => {
                let now = SystemTime::now();
                // Newest first: a fresher response for the same variant wins (RFC 9111 §4).
                v.list
                    .iter()
                    .filter(|e| e.response_time + e.useful_for() > now)
                    .find(|e| e.vary.matches(req))
                    .map(|e| Lookup::Found(e.clone()))
                    .unwrap_or(Lookup::VaryMiss)
            }
        }
    }

    /// Stores `entry` under `key`, replacing the variant with the same secondary key.
    pub fn insert(&self, key: &str, entry: Arc<Entry>) {
        let now = SystemTime::now();
        let mut list: Vec<Arc<Entry>> = vec![entry.clone()];
        if let Some(old) = self.objects.get(key) {
            list.extend(
                old.list
                    .iter()
                    .filter(|e| e.vary != entry.vary && e.response_time + e.useful_for() > now)
                    .take(MAX_VARIANTS - 1)
                    .cloned(),
            );
        }
        self.objects
            .insert(key.to_owned(), Arc::new(Variants::new(list)));
    }

    /// Removes every variant under `key`; returns whether anything was there.
    pub fn remove(&self, key: &str) -> bool {
        self.objects.remove(key).is_some()
    }
}
