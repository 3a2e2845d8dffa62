//! A stored response: its status, fields, body, lifetimes, tags and what it weighs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;

use super::store::KEEP;
use super::vary::VaryKey;

/// Bytes charged per entry for the bookkeeping around it: what `bench/memory.rs` measures
/// beyond body, head and key text for an object under its default key (535), so that
/// `max_size` bounds resident memory rather than payload alone.
const ENTRY_OVERHEAD: usize = 536;
/// Bytes charged besides for an entry in the URI index (a script-made key's): what the
/// memory bench's `keyed` mode measures beyond the default key's cost, its text aside.
const INDEXED_OVERHEAD: usize = 168;

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
    pub(super) fn useful_for(&self) -> Duration {
        (self.ttl + self.swr.max(self.sie) + KEEP).saturating_sub(self.initial_age)
    }

    /// Whether this entry's URI is `key`'s own text (stored under the default key).
    pub(super) fn named_by(&self, key: &super::StoreKey) -> bool {
        *self.uri == *key.as_str()
    }

    pub(super) fn useful_at(&self, now: SystemTime) -> bool {
        self.response_time + self.useful_for() > now
    }

    /// Room for the compressed copies a delivery may add: three quarters of the body (text
    /// compresses to a quarter or less in each of three codings), for bodies compression
    /// at delivery would encode.
    fn encoded_room(&self) -> usize {
        let compressible = self.status == StatusCode::OK && self.esi.is_none() && {
            // The two fields that decide it, not the whole head as a map.
            let mut head = http::HeaderMap::new();
            for name in [http::header::CONTENT_ENCODING, http::header::CONTENT_TYPE] {
                for v in self.headers.get_all(&name) {
                    head.append(name.clone(), v);
                }
            }
            crate::encoding::compressible_identity(&head)
        };
        if compressible {
            self.body.len() / 4 * 3
        } else {
            0
        }
    }

    /// [`Entry::weight`] stored under `key`: its URI costs nothing more when it is the key's
    /// own text, its text and an index entry otherwise.
    pub(super) fn weight_under(&self, key: &super::StoreKey) -> usize {
        let uri = if self.named_by(key) {
            0
        } else {
            self.uri.len() + INDEXED_OVERHEAD
        };
        self.weight() + uri
    }

    /// Bytes this entry costs wherever it is stored: body, head, tags, `Vary` data, ESI
    /// template, room for compressed copies, bookkeeping.
    pub(super) fn weight(&self) -> usize {
        let head = self.headers.text_len() + 4 * self.headers.len();
        let tags: usize = self.tags.iter().map(|t| t.len() + 24).sum();
        let esi = self.esi.as_ref().map_or(0, |t| t.weight());
        self.body.len()
            + head
            + tags
            + self.vary.weight()
            + esi
            + self.encoded_room()
            + ENTRY_OVERHEAD
    }
}
