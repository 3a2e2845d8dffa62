//! The object store: site-namespaced key → variants (by `Vary`), bounded by bytes.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName};
use moka::sync::Cache;
use quick_cache::{Lifecycle, OptionsBuilder, Weighter};

pub use super::entry::{Encoded, Entry, Extras, Secs};
use super::index::Index;
use crate::clock::Clock;

mod purge;
pub use purge::Purge;

/// Extra time an entry is kept past its stale windows (Varnish's "keep"): a later request
/// can revalidate it with a cheap 304. The byte bound still applies: kept entries are
/// evicted like any other.
pub const KEEP: Duration = Duration::from_secs(3600);
/// Variants kept per primary key; more means a `Vary` on a high-cardinality header.
pub const MAX_VARIANTS: usize = 16;
/// How long a key whose response was not cacheable skips request coalescing
/// (Varnish's hit-for-miss).
pub const UNCACHEABLE_MEMORY: Duration = Duration::from_secs(120);
/// Keys remembered as not cacheable, at most.
const UNCACHEABLE_CAPACITY: u64 = 100_000;

/// A primary cache key within its site's namespace: no site can name another's entries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreKey(Arc<str>);

/// Separates site and key; site names cannot contain it (config validation).
const SEP: char = '\u{1f}';

impl StoreKey {
    /// `key` in `site`'s namespace.
    pub fn new(site: &str, key: &str) -> StoreKey {
        let mut s = String::with_capacity(site.len() + 1 + key.len());
        s.push_str(site);
        s.push(SEP);
        s.push_str(key);
        StoreKey(s.into())
    }

    /// The site part.
    pub fn site(&self) -> &str {
        self.0.split_once(SEP).map(|(s, _)| s).unwrap_or("")
    }

    /// Whether the key is `site`'s (any site's when `None`): what a purge by tag reaches.
    pub fn in_site(&self, site: Option<&str>) -> bool {
        site.is_none_or(|s| self.site() == s)
    }

    /// The key as the site (or its script) made it.
    pub fn key(&self) -> &str {
        self.0.split_once(SEP).map(|(_, k)| k).unwrap_or(&self.0)
    }

    /// The namespaced form, e.g. for coalescing maps.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespaced form, sharing this key's memory (an entry's URI is its key's text
    /// when no script changed the key).
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A stored response whose `Vary` matches the request.
    Found(Arc<Entry>),
    /// Responses are stored under the key but none matches this request's `Vary` headers;
    /// carries the field names they vary on.
    VaryMiss(Vec<HeaderName>),
    /// Nothing stored under the key.
    UriMiss,
}

/// The variants stored under one key, and what the cache needs to know of them. Kept
/// inline in the cache's slot, not behind an allocation of its own: most keys hold one
/// variant, and a million small objects would pay ~80 bytes each for the holder.
#[derive(Debug, Clone)]
struct Variants {
    /// The newest variant.
    first: Arc<Entry>,
    /// The others, newest first, when the key varies.
    rest: Option<Arc<Vec<Arc<Entry>>>>,
    /// Which insert made this value: index memberships carry it (see `Index`).
    generation: u64,
    /// Bytes charged: the cache reads it on every eviction, so it is computed once.
    weight: u64,
}

impl Variants {
    /// Every variant, newest first.
    fn iter(&self) -> impl Iterator<Item = &Arc<Entry>> {
        std::iter::once(&self.first).chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    /// How many variants there are.
    fn len(&self) -> usize {
        1 + self.rest.as_ref().map_or(0, |r| r.len())
    }

    /// Whether the last of them is past use at `now` (computed, not stored: a few
    /// additions per variant cost less than the slot's room).
    fn dead_at(&self, now: SystemTime) -> bool {
        !self.iter().any(|e| e.useful_at(now))
    }
}

/// Reads a value's precomputed weight.
#[derive(Clone)]
struct ByWeight;

impl Weighter<StoreKey, Variants> for ByWeight {
    fn weight(&self, _key: &StoreKey, v: &Variants) -> u64 {
        v.weight
    }
}

/// What an eviction must undo besides the value: its index memberships.
#[derive(Clone)]
struct Forget {
    uris: Arc<Index>,
    tags: Arc<Index>,
}

impl Forget {
    fn forget(&self, key: &StoreKey, v: &Variants) {
        for e in v.iter() {
            if !e.named_by(key) {
                self.uris.remove(&e.uri, key, v.generation);
            }
            for t in e.tags() {
                self.tags.remove(t, key, v.generation);
            }
        }
    }
}

/// What an insert pushed out (the value it replaced included), handed back to the insert
/// to undo once the cache's lock is released.
type Evicted = Vec<(StoreKey, Variants)>;

/// Collects what an insert pushes out into its [`Evicted`].
#[derive(Clone)]
struct Collect;

impl Lifecycle<StoreKey, Variants> for Collect {
    type RequestState = Evicted;

    fn on_evict(&self, out: &mut Evicted, key: StoreKey, v: Variants) {
        out.push((key, v));
    }
}

/// How the store hashes keys (shard, table and ghost queue all use it).
#[derive(Clone)]
enum Hashing {
    /// Keys unknown to clients: for serving.
    Random(std::collections::hash_map::RandomState),
    /// The same on every run: for replays.
    Fixed,
}

impl std::hash::BuildHasher for Hashing {
    type Hasher = std::collections::hash_map::DefaultHasher;

    fn build_hasher(&self) -> Self::Hasher {
        match self {
            Hashing::Random(r) => r.build_hasher(),
            Hashing::Fixed => std::collections::hash_map::DefaultHasher::new(),
        }
    }
}

type Objects = quick_cache::sync::Cache<StoreKey, Variants, ByWeight, Hashing, Collect>;

/// The share of each shard for objects past probation (quick_cache's hot queue); the rest,
/// a tenth as S3-FIFO proposes (quick_cache's default is 3%), is probation: a newcomer must
/// fit there for a scan to pass through without pushing out the hot set. It is also the
/// heaviest value a shard admits.
const HOT_SHARE: f64 = 0.9;
/// Locks that give each key one insert or removal at a time (by hash; far fewer than keys).
const TURNS: usize = 64;
/// How often, by the store's clock, objects past use are swept out (lookups already
/// ignore them; the sweep gives back their room and index entries).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The shared object store.
///
/// On quick_cache (CLOCK-based hot and cold queues with a ghost list): about 20 bytes of
/// bookkeeping per object beyond a plain hash map, where moka (with per-entry expiry)
/// spent about 320. Expiry is decided where it matters, at lookup; a sweep every minute
/// drops what no lookup will use again.
#[derive(Clone)]
pub struct Store {
    objects: Arc<Objects>,
    forget: Forget,
    uncacheable: Cache<StoreKey, ()>,
    generations: Arc<AtomicU64>,
    turns: Arc<[Mutex<()>]>,
    hashing: Hashing,
    /// When the next sweep is due, in seconds of the store's clock; `u64::MAX`: never
    /// on its own (a replay sweeps when it says so).
    next_sweep: Arc<AtomicU64>,
    /// Set while a sweep runs: a slow one is never joined by the next.
    sweeping: Arc<AtomicBool>,
    clock: Clock,
    /// The disk tier, when `[cache] disk` is set.
    pub(super) disk: Option<Arc<super::disk::Disk>>,
}

impl Store {
    /// A store bounded to `max_bytes` that may hold an object of any size up to that,
    /// reading time from `clock`.
    pub fn new(max_bytes: u64, clock: Clock) -> Store {
        Store::sharded(max_bytes, max_bytes, clock)
    }

    /// A store bounded to `max_bytes` whose objects are at most `max_object_bytes`: split
    /// into shards (fewer lock waits) as long as each can still take the largest object.
    pub fn sharded(max_bytes: u64, max_object_bytes: u64, clock: Clock) -> Store {
        let shards = shards_for(max_bytes, max_object_bytes);
        let hashing = Hashing::Random(Default::default());
        let sweeps = secs(clock.now()) + SWEEP_EVERY.as_secs();
        Store::with(max_bytes, shards, hashing, sweeps, clock)
    }

    /// A store whose admission and eviction choices are the same on every run, for
    /// replaying a log (`tessera simulate`). Never for serving: its hash keys are public,
    /// so crafted keys could collide on purpose.
    pub fn reproducible(max_bytes: u64, clock: Clock) -> Store {
        Store::with(max_bytes, 1, Hashing::Fixed, u64::MAX, clock)
    }

    fn with(max_bytes: u64, shards: usize, hashing: Hashing, sweeps: u64, clock: Clock) -> Store {
        let forget = Forget {
            uris: Arc::new(Index::default()),
            tags: Arc::new(Index::default()),
        };
        // The item estimate sizes tables and the ghost list; objects of 4 KiB on average,
        // within bounds so a huge or tiny budget sizes neither absurdly.
        let items = (max_bytes / 4096).clamp(256, 1 << 22) as usize;
        let options = OptionsBuilder::new()
            .estimated_items_capacity(items)
            .weight_capacity(max_bytes)
            .shards(shards)
            .hot_allocation(HOT_SHARE)
            .build()
            .expect("cache options in range");
        let objects = Objects::with_options(options, ByWeight, hashing.clone(), Collect);
        let uncacheable = Cache::builder()
            .max_capacity(UNCACHEABLE_CAPACITY)
            .time_to_live(UNCACHEABLE_MEMORY)
            .build();
        Store {
            objects: Arc::new(objects),
            forget,
            uncacheable,
            generations: Arc::new(AtomicU64::new(0)),
            turns: (0..TURNS).map(|_| Mutex::new(())).collect(),
            hashing,
            next_sweep: Arc::new(AtomicU64::new(sweeps)),
            sweeping: Arc::new(AtomicBool::new(false)),
            clock,
            disk: None,
        }
    }

    /// This store with `disk` as its second tier: written through, read on memory misses.
    pub fn with_disk(mut self, disk: Arc<super::disk::Disk>) -> Store {
        self.disk = Some(disk);
        self
    }

    /// The disk tier, if there is one.
    pub fn disk(&self) -> Option<&Arc<super::disk::Disk>> {
        self.disk.as_ref()
    }

    /// The store's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Finds the variant stored under `key` that matches the request headers.
    pub fn lookup(&self, key: &StoreKey, req: &HeaderMap) -> Lookup {
        let Some(v) = self.objects.get(key) else {
            return Lookup::UriMiss;
        };
        let now = self.clock.now();
        let mut live = v.iter().filter(|e| e.useful_at(now)).peekable();
        let Some(&first) = live.peek() else {
            // Past use: gone now rather than at the next sweep (unless replaced meanwhile).
            if let Some((k, dead)) = self.objects.remove_if(key, |v| v.dead_at(now)) {
                self.forget.forget(&k, &dead);
            }
            return Lookup::UriMiss;
        };
        // Newest first: a fresher response for the same variant wins (RFC 9111 §4).
        match live.find(|e| e.vary().matches(req)) {
            Some(e) => Lookup::Found(e.clone()),
            None => Lookup::VaryMiss(first.vary().names()),
        }
    }

    /// Stores `entry` under `key`, replacing the variant with the same secondary key, and
    /// forgets that the key was not cacheable; queues it for the disk tier too.
    pub fn insert(&self, key: &StoreKey, entry: Arc<Entry>) {
        if let Some(disk) = &self.disk {
            disk.store(key, &entry);
        }
        self.insert_memory(key, entry);
    }

    /// [`Store::insert`] in memory only (what was read back from disk).
    pub(super) fn insert_memory(&self, key: &StoreKey, entry: Arc<Entry>) {
        let now = self.clock.now();
        {
            // One change per key at a time: the variants kept, and the memberships dropped,
            // are then those of the value this one replaces, and a purge of the key never
            // sees its variants come back from an insert that read them before it.
            let _turn = self.turn(key);
            let old = self.objects.peek(key);
            // A key's variants are charged together, and a value heavier than a shard
            // admits (its hot share) would be turned away with the key's other variants:
            // the oldest stay behind instead.
            let limit = (self.objects.shard_capacity() as f64 * HOT_SHARE) as usize;
            let mut weight = key.0.len() + entry.weight_under(key);
            let mut list: Vec<Arc<Entry>> = Vec::new();
            if let Some(old) = &old {
                let others = old
                    .iter()
                    .filter(|e| e.vary() != entry.vary() && e.useful_at(now));
                for e in others.take(MAX_VARIANTS - 1) {
                    let w = e.weight_under(key);
                    if weight + w > limit {
                        break;
                    }
                    weight += w;
                    list.push(e.clone());
                }
            }
            let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
            // Index before the value exists: the removal of the previous value (same key,
            // older generation) then leaves these memberships alone.
            for e in std::iter::once(&entry).chain(&list) {
                // A variant whose URI is its key's own text (no script changed the key)
                // is found by its key; the index holds only the others.
                if !e.named_by(key) {
                    self.forget.uris.add_shared(&e.uri, key, generation);
                }
                for t in e.tags() {
                    self.forget.tags.add(t, key, generation);
                }
            }
            let value = Variants {
                first: entry,
                rest: (!list.is_empty()).then(|| Arc::new(list)),
                generation,
                // Zero would make it unevictable.
                weight: (weight as u64).max(1),
            };
            let mut evicted = Evicted::new();
            self.objects
                .insert_with_lifecycle(key.clone(), value, &mut evicted);
            // Undone here, out of the cache's lock. The value this insert replaced is
            // reported too, and is no eviction; one too heavy to admit (this insert's
            // own) is.
            for (k, v) in evicted {
                let replaced = &k == key && v.generation != generation;
                if !replaced {
                    crate::observe::metrics()
                        .storage
                        .evictions
                        .get_or_create(&crate::observe::storage::MEMORY)
                        .inc_by(v.len() as u64);
                }
                self.forget.forget(&k, &v);
            }
        }
        self.uncacheable.invalidate(key);
        self.sweep_if_due(now);
    }

    /// This key's turn to change (see `insert_memory`).
    fn turn(&self, key: &StoreKey) -> std::sync::MutexGuard<'_, ()> {
        let i = self.hashing.hash_one(key) as usize % self.turns.len();
        // A panic while holding a turn leaves nothing half-changed that the next holder
        // could trip on: the cache and indexes have their own locks.
        self.turns[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a sweep in the background when one is due.
    fn sweep_if_due(&self, now: SystemTime) {
        let due = self.next_sweep.load(Ordering::Relaxed);
        let t = secs(now);
        if t < due {
            return;
        }
        let next = t.saturating_add(SWEEP_EVERY.as_secs());
        if self
            .next_sweep
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        let spawned = std::thread::Builder::new()
            .name("tessera-sweep".into())
            .spawn(move || {
                store.drop_useless();
                store.sweeping.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.sweeping.store(false, Ordering::Release);
            tracing::warn!("cannot start the store's sweep: {e}");
        }
    }

    /// Removes every variant under `key`, in every tier; returns how many there were.
    pub fn remove(&self, key: &StoreKey) -> usize {
        let on_disk = self.disk.as_ref().map_or(0, |d| d.remove_key(key));
        self.remove_memory(key).max(on_disk)
    }

    fn remove_memory(&self, key: &StoreKey) -> usize {
        self.uncacheable.invalidate(key);
        let _turn = self.turn(key);
        self.objects.remove(key).map_or(0, |(k, v)| {
            self.forget.forget(&k, &v);
            v.len()
        })
    }

    /// Tags in the index now (for tests: it must not outgrow the store).
    pub fn indexed_tags(&self) -> usize {
        self.forget.tags.len()
    }

    /// Remembers that `key`'s response was not cacheable: for a while its requests go to
    /// the origin in parallel instead of queueing behind one another.
    pub fn mark_uncacheable(&self, key: &StoreKey) {
        self.uncacheable.insert(key.clone(), ());
    }

    /// Whether `key` was recently found not cacheable.
    pub fn is_uncacheable(&self, key: &StoreKey) -> bool {
        self.uncacheable.contains_key(key)
    }

    /// Objects stored now (for tests and metrics).
    pub fn entry_count(&self) -> u64 {
        self.objects.len() as u64
    }

    /// Stored responses (variants) in memory now.
    pub fn variant_count(&self) -> u64 {
        self.objects.iter().map(|(_, v)| v.len() as u64).sum()
    }

    /// Drops every object past use by the store's clock; returns how many. Run by the
    /// sweep, and by a replay whenever it moves the clock (its store never sweeps on its
    /// own, so that a replay gives the same answer every time).
    pub fn drop_useless(&self) -> u64 {
        let now = self.clock.now();
        let dead: Vec<StoreKey> = self
            .objects
            .iter()
            .filter(|(_, v)| v.dead_at(now))
            .map(|(k, _)| k)
            .collect();
        let mut dropped = 0;
        for key in dead {
            // Unless a fresh value replaced it meanwhile.
            if let Some((k, v)) = self.objects.remove_if(&key, |v| v.dead_at(now)) {
                self.forget.forget(&k, &v);
                dropped += 1;
            }
        }
        dropped
    }

    /// The size bound, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.objects.capacity()
    }

    /// Bytes charged now (for tests and metrics).
    pub fn weighted_size(&self) -> u64 {
        self.objects.weight()
    }

    /// URIs in the index now (for tests: it must not outgrow the store).
    pub fn indexed_uris(&self) -> usize {
        self.forget.uris.len()
    }
}

/// Seconds since the epoch of `t` (0 before it).
fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Shards for a store: up to four per core, as long as each can still hold two of the
/// largest objects with the room compression may add (a shard turns away what exceeds
/// its part of the budget). A power of two, as quick_cache wants.
fn shards_for(max_bytes: u64, max_object_bytes: u64) -> usize {
    let heaviest = max_object_bytes.saturating_mul(2).max(1);
    let fit = (max_bytes / heaviest.saturating_mul(2)).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let wanted = fit.min(4 * cores).max(1);
    1 << (63 - wanted.leading_zeros())
}

#[cfg(test)]
mod tests;
