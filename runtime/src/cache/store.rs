//! The object store: site-namespaced key → variants (by `Vary`), bounded by bytes in moka.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use moka::notification::RemovalCause;
use moka::sync::Cache;
use moka::Expiry;

use super::index::Index;
use super::vary::VaryKey;
use crate::clock::Clock;

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
/// Bytes charged per entry for the bookkeeping around it.
const ENTRY_OVERHEAD: usize = 256;

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

/// One stored response.
#[derive(Debug)]
pub struct Entry {
    /// Status code.
    pub status: StatusCode,
    /// Header fields as stored (hop-by-hop and per-client ones removed), compactly.
    pub headers: super::Fields,
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
    /// Never serve stale (`must-revalidate`, `proxy-revalidate`, `s-maxage`, or no explicit
    /// permission to be shared beyond its lifetime: see `admit`).
    pub must_revalidate: bool,
    /// Surrogate keys for purge by tag.
    pub tags: Vec<String>,
    /// Secondary key.
    pub vary: VaryKey,
    /// The normalised URI (site + default key) of the request that stored it.
    pub uri: Arc<str>,
    /// Set by a soft purge: the entry's age then, in milliseconds (`u64::MAX`: never
    /// purged). Its freshness ends there, so serve-stale windows count from the purge.
    pub purged_at_age: AtomicU64,
    /// The body parsed as an ESI page, when it is one (parsed once, when stored).
    pub esi: Option<Arc<crate::html::esi::Template>>,
    /// Compressed copies of the body, made by the first delivery that needs each.
    pub encoded: std::sync::OnceLock<Box<Encoded>>,
}

/// Compressed copies of a stored body (compression at delivery encodes a hit once, not
/// on every request). Their room is reserved in the entry's weight when it is stored.
#[derive(Debug, Default)]
pub struct Encoded {
    /// The body in gzip.
    pub gzip: std::sync::OnceLock<Bytes>,
    /// The body in br.
    pub br: std::sync::OnceLock<Bytes>,
    /// The body in zstd.
    pub zstd: std::sync::OnceLock<Bytes>,
}

impl Encoded {
    /// The copy in `coding`, if it is one that is kept.
    pub fn cell(&self, coding: crate::encoding::Coding) -> Option<&std::sync::OnceLock<Bytes>> {
        use crate::encoding::Coding;
        match coding {
            Coding::Gzip => Some(&self.gzip),
            Coding::Brotli => Some(&self.br),
            Coding::Zstd => Some(&self.zstd),
            Coding::Identity | Coding::Deflate => None,
        }
    }
}

impl Entry {
    /// A copy of everything but the body and its compressed copies: a fill's head, for
    /// requests that read the body as it arrives.
    pub fn clone_head(&self) -> Entry {
        Entry {
            status: self.status,
            headers: self.headers.clone(),
            body: Bytes::new(),
            response_time: self.response_time,
            initial_age: self.initial_age,
            ttl: self.ttl,
            swr: self.swr,
            sie: self.sie,
            no_cache: self.no_cache,
            must_revalidate: self.must_revalidate,
            tags: self.tags.clone(),
            vary: self.vary.clone(),
            uri: self.uri.clone(),
            purged_at_age: AtomicU64::new(self.purged_at_age.load(Ordering::Relaxed)),
            esi: self.esi.clone(),
            encoded: Default::default(),
        }
    }

    /// Current age (RFC 9111 §4.2.3).
    pub fn age(&self, now: SystemTime) -> Duration {
        super::freshness::current_age(self.initial_age, self.response_time, now)
    }

    /// Remaining freshness in whole seconds; negative once stale.
    pub fn remaining_ttl(&self, now: SystemTime) -> i64 {
        self.effective_ttl().as_secs() as i64 - self.age(now).as_secs() as i64
    }

    /// Freshness lifetime, cut short at the age it had when soft-purged.
    pub fn effective_ttl(&self) -> Duration {
        match self.purged_at_age.load(Ordering::Relaxed) {
            u64::MAX => self.ttl,
            ms => self.ttl.min(Duration::from_millis(ms)),
        }
    }

    /// Marks the entry stale from `now` on (a soft purge). The first purge wins: a later
    /// one never lends it more freshness.
    pub fn soft_purge(&self, now: SystemTime) {
        let age = self.age(now).as_millis().min(u128::from(u64::MAX - 1)) as u64;
        self.purged_at_age.fetch_min(age, Ordering::Relaxed);
    }

    /// How long after `response_time` the entry may still be of use.
    fn useful_for(&self) -> Duration {
        (self.ttl + self.swr.max(self.sie) + KEEP).saturating_sub(self.initial_age)
    }

    fn useful_at(&self, now: SystemTime) -> bool {
        self.response_time + self.useful_for() > now
    }

    /// Bytes this entry costs: body, every header, tags, Vary data and bookkeeping.
    /// Room for the compressed copies a delivery may add: three quarters of the body (text
    /// compresses to a quarter or less in each of three codings), for bodies compression
    /// at delivery would encode.
    fn encoded_room(&self) -> usize {
        let compressible = self.status == StatusCode::OK
            && self.esi.is_none()
            && crate::encoding::compressible_identity(&self.headers.to_map());
        if compressible {
            self.body.len() / 4 * 3
        } else {
            0
        }
    }

    fn weight(&self) -> usize {
        let head = self.headers.text_len() + 4 * self.headers.len();
        let tags: usize = self.tags.iter().map(|t| t.len() + 24).sum();
        let esi = self.esi.as_ref().map_or(0, |t| t.weight());
        self.body.len()
            + head
            + tags
            + self.vary.weight()
            + self.uri.len()
            + esi
            + self.encoded_room()
            + ENTRY_OVERHEAD
    }
}

/// What a purge reaches. Names are in the store's namespaced form (`site` + `\u{1f}` + …).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Purge {
    /// Every variant and script key of one URI (site + default key).
    Uri(String),
    /// Every URI starting with this (site + default-key prefix).
    Prefix(String),
    /// Every response carrying a tag, in one site or all.
    Tag {
        /// The tag.
        tag: String,
        /// Only this site's.
        site: Option<String>,
    },
    /// Everything of one site.
    Site(String),
    /// Everything.
    All,
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

#[derive(Debug)]
struct Variants {
    // Most keys hold one variant: kept inline, not in an allocation of its own.
    list: smallvec::SmallVec<[Arc<Entry>; 1]>,
    until: SystemTime,
    generation: u64,
}

struct UsefulLife(Clock);

impl UsefulLife {
    fn left(&self, v: &Variants) -> Duration {
        v.until.duration_since(self.0.now()).unwrap_or_default()
    }
}

impl Expiry<StoreKey, Arc<Variants>> for UsefulLife {
    fn expire_after_create(
        &self,
        _k: &StoreKey,
        v: &Arc<Variants>,
        _at: Instant,
    ) -> Option<Duration> {
        Some(self.left(v))
    }
    fn expire_after_update(
        &self,
        _k: &StoreKey,
        v: &Arc<Variants>,
        _at: Instant,
        _d: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.left(v))
    }
}

/// How the store hashes keys (moka's admission sketch and table both use it).
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

/// The shared object store.
#[derive(Clone)]
pub struct Store {
    objects: Cache<StoreKey, Arc<Variants>, Hashing>,
    uris: Arc<Index>,
    tags: Arc<Index>,
    uncacheable: Cache<StoreKey, ()>,
    generations: Arc<AtomicU64>,
    clock: Clock,
    /// The disk tier, when `[cache] disk` is set.
    pub(super) disk: Option<Arc<super::disk::Disk>>,
}

impl Store {
    /// A store bounded to `max_bytes`, reading time from `clock`.
    pub fn new(max_bytes: u64, clock: Clock) -> Store {
        Store::with_hashing(max_bytes, clock, Hashing::Random(Default::default()))
    }

    /// A store whose admission and eviction choices are the same on every run, for
    /// replaying a log (`tessera simulate`). Never for serving: its hash keys are public,
    /// so crafted keys could collide on purpose.
    pub fn reproducible(max_bytes: u64, clock: Clock) -> Store {
        Store::with_hashing(max_bytes, clock, Hashing::Fixed)
    }

    fn with_hashing(max_bytes: u64, clock: Clock, hashing: Hashing) -> Store {
        let uris = Arc::new(Index::default());
        let tags = Arc::new(Index::default());
        let listener_uris = uris.clone();
        let listener_tags = tags.clone();
        let objects = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &StoreKey, v: &Arc<Variants>| {
                let w = k.0.len() + v.list.iter().map(|e| e.weight()).sum::<usize>();
                w.min(u32::MAX as usize) as u32
            })
            .expire_after(UsefulLife(clock.clone()))
            .eviction_listener(
                move |k: Arc<StoreKey>, v: Arc<Variants>, cause: RemovalCause| {
                    if cause == RemovalCause::Size {
                        crate::observe::metrics()
                            .storage
                            .evictions
                            .get_or_create(&crate::observe::storage::MEMORY)
                            .inc_by(v.list.len() as u64);
                    }
                    for e in &v.list {
                        listener_uris.remove(&e.uri, &k, v.generation);
                        for t in &e.tags {
                            listener_tags.remove(t, &k, v.generation);
                        }
                    }
                },
            )
            .build_with_hasher(hashing);
        let uncacheable = Cache::builder()
            .max_capacity(UNCACHEABLE_CAPACITY)
            .time_to_live(UNCACHEABLE_MEMORY)
            .build();
        Store {
            objects,
            uris,
            tags,
            uncacheable,
            generations: Arc::new(AtomicU64::new(0)),
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
        let mut live = v.list.iter().filter(|e| e.useful_at(now)).peekable();
        let names = live.peek().map(|e| e.vary.names());
        // Newest first: a fresher response for the same variant wins (RFC 9111 §4).
        match live.find(|e| e.vary.matches(req)) {
            Some(e) => Lookup::Found(e.clone()),
            None => match names {
                Some(n) => Lookup::VaryMiss(n),
                None => Lookup::UriMiss,
            },
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
        let mut list: smallvec::SmallVec<[Arc<Entry>; 1]> = smallvec::smallvec![entry.clone()];
        if let Some(old) = self.objects.get(key) {
            list.extend(
                old.list
                    .iter()
                    .filter(|e| e.vary != entry.vary && e.useful_at(now))
                    .take(MAX_VARIANTS - 1)
                    .cloned(),
            );
        }
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        // Index before the value exists: the removal of the previous value (same key, older
        // generation) then leaves these memberships alone.
        for e in &list {
            self.uris.add_shared(&e.uri, key, generation);
            for t in &e.tags {
                self.tags.add(t, key, generation);
            }
        }
        let until = list
            .iter()
            .map(|e| e.response_time + e.useful_for())
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.objects.insert(
            key.clone(),
            Arc::new(Variants {
                list,
                until,
                generation,
            }),
        );
        self.uncacheable.invalidate(key);
    }

    /// Removes every variant under `key`, in every tier; returns how many there were.
    pub fn remove(&self, key: &StoreKey) -> usize {
        let on_disk = self.disk.as_ref().map_or(0, |d| d.remove_key(key));
        self.remove_memory(key).max(on_disk)
    }

    fn remove_memory(&self, key: &StoreKey) -> usize {
        self.uncacheable.invalidate(key);
        self.objects.remove(key).map_or(0, |v| v.list.len())
    }

    /// Removes every object stored for requests to `uri` (site + default key), whatever
    /// keys and variants the site's script gave them; returns how many objects went.
    pub fn remove_uri(&self, uri: &str) -> usize {
        self.purge(&Purge::Uri(uri.to_owned()), false)
    }

    /// Purges what `target` names: removes it (hard), or marks it stale so that
    /// stale-while-revalidate and stale-if-error may still serve it while it is refreshed
    /// (soft). Returns how many stored responses (variants) it reached.
    ///
    /// Disk first: a variant read back from disk is promoted into memory only while still
    /// indexed there (`Disk::confirm`), so once disk has forgotten it, the memory pass below
    /// reaches any copy promoted before. Disk holds what memory holds and more: the count
    /// is the larger of the two tiers'.
    pub fn purge(&self, target: &Purge, soft: bool) -> usize {
        let on_disk = self.disk.as_ref().map_or(0, |d| d.purge(target, soft));
        self.purge_memory(target, soft).max(on_disk)
    }

    fn purge_memory(&self, target: &Purge, soft: bool) -> usize {
        let now = self.clock.now();
        let keys: Vec<StoreKey> = match target {
            Purge::Uri(uri) => self.uris.get(uri),
            Purge::Prefix(prefix) => self.uris.with_prefix(prefix),
            Purge::Tag { tag, site } => self
                .tags
                .get(tag)
                .into_iter()
                .filter(|k| site.as_deref().is_none_or(|s| k.site() == s))
                .collect(),
            Purge::Site(site) => self
                .objects
                .iter()
                .map(|(k, _)| (*k).clone())
                .filter(|k| k.site() == site)
                .collect(),
            Purge::All => self.objects.iter().map(|(k, _)| (*k).clone()).collect(),
        };
        keys.iter()
            .map(|k| {
                if soft {
                    self.objects.get(k).map_or(0, |v| {
                        v.list
                            .iter()
                            .filter(|e| match target {
                                // A tag purge reaches only the variants carrying the tag.
                                Purge::Tag { tag, .. } => e.tags.iter().any(|t| t == tag),
                                _ => true,
                            })
                            .map(|e| e.soft_purge(now))
                            .count()
                    })
                } else {
                    self.remove_memory(k)
                }
            })
            .sum()
    }

    /// Tags in the index now (for tests: it must not outgrow the store).
    pub fn indexed_tags(&self) -> usize {
        self.objects.run_pending_tasks();
        self.tags.len()
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

    /// Objects stored now (approximate, for tests and metrics).
    pub fn entry_count(&self) -> u64 {
        self.objects.run_pending_tasks();
        self.objects.entry_count()
    }

    /// Stored responses (variants) in memory now.
    pub fn variant_count(&self) -> u64 {
        self.objects.run_pending_tasks();
        self.objects.iter().map(|(_, v)| v.list.len() as u64).sum()
    }

    /// Drops every object past use by the store's clock; returns how many. moka's own
    /// timers run on real time, which a replay that moves the clock by hours outruns: left
    /// alone, dead objects would hold room that live ones have in production.
    pub fn drop_useless(&self) -> u64 {
        let now = self.clock.now();
        let mut dropped = 0;
        for (k, v) in self.objects.iter() {
            if v.until <= now {
                self.objects.invalidate(&*k);
                dropped += 1;
            }
        }
        self.objects.run_pending_tasks();
        dropped
    }

    /// Finishes the store's pending maintenance (admission, eviction) now, so a replay gives
    /// the same result every time instead of depending on when moka's housekeeping ran.
    pub fn settle(&self) {
        self.objects.run_pending_tasks();
    }

    /// The size bound, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.objects.policy().max_capacity().unwrap_or(u64::MAX)
    }

    /// Bytes charged now (approximate, for tests and metrics).
    pub fn weighted_size(&self) -> u64 {
        self.objects.run_pending_tasks();
        self.objects.weighted_size()
    }

    /// URIs in the index now (for tests: it must not outgrow the store).
    pub fn indexed_uris(&self) -> usize {
        self.objects.run_pending_tasks();
        self.uris.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uri: &str, body: &str, ttl: u64) -> Arc<Entry> {
        Arc::new(Entry {
            status: StatusCode::OK,
            headers: Default::default(),
            body: Bytes::from(body.to_owned()),
            response_time: SystemTime::now(),
            initial_age: Duration::ZERO,
            ttl: Duration::from_secs(ttl),
            swr: Duration::ZERO,
            sie: Duration::ZERO,
            no_cache: false,
            must_revalidate: false,
            tags: vec![],
            vary: VaryKey::Any,
            uri: uri.into(),
            purged_at_age: AtomicU64::new(u64::MAX),
            encoded: Default::default(),
            esi: None,
        })
    }

    #[test]
    fn sites_cannot_reach_each_others_keys() {
        let s = Store::new(1 << 20, Clock::system());
        s.insert(&StoreKey::new("a", "k"), entry("a\u{1f}/p", "A", 60));
        assert!(matches!(
            s.lookup(&StoreKey::new("b", "k"), &HeaderMap::new()),
            Lookup::UriMiss
        ));
        assert_eq!(StoreKey::new("a", "k").site(), "a");
        assert_eq!(StoreKey::new("a", "x\u{1f}y").key(), "x\u{1f}y");
    }

    #[test]
    fn a_uri_reaches_every_key_stored_for_it_and_the_index_follows_evictions() {
        let s = Store::new(1 << 20, Clock::system());
        let (k1, k2) = (
            StoreKey::new("a", "p#mobile"),
            StoreKey::new("a", "p#desktop"),
        );
        s.insert(&k1, entry("a\u{1f}/p", "m", 60));
        s.insert(&k2, entry("a\u{1f}/p", "d", 60));
        s.insert(&k2, entry("a\u{1f}/p", "d2", 60));
        assert_eq!(s.remove_uri("a\u{1f}/p"), 2);
        assert!(matches!(s.lookup(&k1, &HeaderMap::new()), Lookup::UriMiss));
        assert_eq!(s.indexed_uris(), 0);
    }

    #[test]
    fn evictions_by_size_leave_no_index_behind() {
        let s = Store::new(64 << 10, Clock::system());
        for i in 0..2000 {
            let body = "x".repeat(100);
            s.insert(
                &StoreKey::new("a", &format!("k{i}")),
                entry(&format!("a\u{1f}/p{i}"), &body, 60),
            );
        }
        let stored = s.entry_count() as usize;
        assert!(stored < 2000);
        assert!(
            s.indexed_uris() <= stored,
            "{} > {stored}",
            s.indexed_uris()
        );
    }

    fn tagged(uri: &str, tags: &[&str]) -> Arc<Entry> {
        Arc::new(Entry {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Arc::try_unwrap(entry(uri, "b", 600)).unwrap()
        })
    }

    #[test]
    fn purges_reach_what_they_name_and_the_tag_index_empties() {
        let s = Store::new(1 << 20, Clock::system());
        let put = |site: &str, k: &str, tags: &[&str]| {
            s.insert(
                &StoreKey::new(site, k),
                tagged(StoreKey::new(site, k).as_str(), tags),
            );
        };
        put("a", "h/p/1", &["p", "p-1"]);
        put("a", "h/p/2", &["p"]);
        put("a", "h/q", &[]);
        put("b", "h/p/1", &["p-1"]);
        let tag = |t: &str, site: Option<&str>| Purge::Tag {
            tag: t.into(),
            site: site.map(Into::into),
        };
        assert_eq!(s.purge(&tag("p-1", Some("b")), false), 1);
        assert_eq!(s.purge(&tag("p-1", None), false), 1);
        assert_eq!(
            s.purge(
                &Purge::Prefix(StoreKey::new("a", "h/p/").as_str().into()),
                false
            ),
            1
        );
        assert_eq!(
            s.purge(
                &Purge::Uri(StoreKey::new("a", "h/q").as_str().into()),
                false
            ),
            1
        );
        assert_eq!(s.purge(&Purge::All, false), 0);
        assert_eq!(s.indexed_tags(), 0);
        assert_eq!(s.indexed_uris(), 0);
        put("a", "h/x", &["x"]);
        put("b", "h/x", &["x"]);
        assert_eq!(s.purge(&Purge::Site("b".into()), false), 1);
        assert_eq!(s.purge(&tag("x", None), false), 1);
    }

    #[test]
    fn a_soft_purge_ends_freshness_now_and_keeps_the_object() {
        let clock = Clock::frozen();
        let s = Store::new(1 << 20, clock.clone());
        let k = StoreKey::new("a", "h/p");
        let e = Arc::new(Entry {
            response_time: clock.now(),
            ..Arc::try_unwrap(tagged(k.as_str(), &["t"])).unwrap()
        });
        s.insert(&k, e.clone());
        assert!(clock.advance(Duration::from_secs(100)));
        assert_eq!(
            s.purge(
                &Purge::Tag {
                    tag: "t".into(),
                    site: None
                },
                true
            ),
            1
        );
        assert_eq!(e.effective_ttl(), Duration::from_secs(100));
        assert_eq!(e.remaining_ttl(clock.now()), 0);
        // A second soft purge later does not push the end of freshness back.
        assert!(clock.advance(Duration::from_secs(50)));
        assert_eq!(s.purge(&Purge::All, true), 1);
        assert_eq!(e.effective_ttl(), Duration::from_secs(100));
        assert!(matches!(s.lookup(&k, &HeaderMap::new()), Lookup::Found(_)));
        assert_eq!(s.indexed_tags(), 1, "a soft purge keeps the object indexed");
    }

    #[test]
    fn tags_and_vary_data_are_weighed() {
        let plain = entry("u", "", 60);
        let mut tagged = Entry {
            tags: (0..50).map(|i| format!("tag-{i}")).collect(),
            ..Arc::try_unwrap(entry("u", "", 60)).unwrap()
        };
        assert!(tagged.weight() > plain.weight() + 50 * 5);
        tagged.vary = VaryKey::of(
            &[("vary", "x-long")]
                .into_iter()
                .map(|(k, v)| (HeaderName::from_static(k), v.parse().unwrap()))
                .collect(),
            &[("x-long", "y".repeat(1000))]
                .into_iter()
                .map(|(k, v)| (HeaderName::from_static(k), v.parse().unwrap()))
                .collect(),
        );
        assert!(tagged.weight() > plain.weight() + 1000);
    }
}
