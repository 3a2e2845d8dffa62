//! Metrics of the storage tiers: hits, objects, bytes and evictions of memory and disk apart,
//! and the disk tier's health (damaged entries, I/O errors, writes dropped, up or degraded).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels naming a storage tier.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Tier {
    /// `memory` or `disk`.
    pub tier: &'static str,
}

/// Labels naming a disk operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DiskOp {
    /// `write`, `read`, `remove`, `purge`.
    pub op: &'static str,
}

/// The memory tier's label.
pub const MEMORY: Tier = Tier { tier: "memory" };
/// The disk tier's label.
pub const DISK: Tier = Tier { tier: "disk" };

/// One tier's hit counters, taken from the families once: a hit counts itself without a
/// label lookup (the families' lock and hash stay off the hit path).
pub struct TierHits {
    /// Hits.
    pub hits: Counter,
    /// Their body bytes.
    pub bytes: Counter,
}

/// Storage series.
pub struct Storage {
    /// Hits (fresh or stale) by the tier that held the response.
    pub hits: Family<Tier, Counter>,
    /// Body bytes of those hits, by tier.
    pub hit_bytes: Family<Tier, Counter>,
    /// Objects removed to make room, by tier.
    pub evictions: Family<Tier, Counter>,
    /// Stored responses, by tier (set when scraped).
    pub objects: Family<Tier, Gauge>,
    /// Bytes held, by tier (set when scraped).
    pub bytes: Family<Tier, Gauge>,
    /// Disk entries found damaged (checksum, truncation, encoding) and dropped.
    pub disk_damaged: Counter,
    /// Disk I/O errors, by operation.
    pub disk_errors: Family<DiskOp, Counter>,
    /// Disk writes skipped because the queue was full or the tier was degraded.
    pub disk_writes_dropped: Counter,
    /// 1 while the disk tier is in use, 0 while degraded to memory only.
    pub disk_up: Gauge,
    /// 1 while the start-up scan of the disk tier runs.
    pub disk_loading: Gauge,
    /// `hits` and `hit_bytes` of the memory tier.
    pub memory: TierHits,
    /// `hits` and `hit_bytes` of the disk tier.
    pub disk: TierHits,
}

impl Default for Storage {
    fn default() -> Storage {
        let (hits, hit_bytes) = (Family::<Tier, Counter>::default(), Family::default());
        let tier = |t: &Tier| TierHits {
            hits: hits.get_or_create_owned(t),
            bytes: hit_bytes.get_or_create_owned(t),
        };
        Storage {
            memory: tier(&MEMORY),
            disk: tier(&DISK),
            hits,
            hit_bytes,
            evictions: Family::default(),
            objects: Family::default(),
            bytes: Family::default(),
            disk_damaged: Counter::default(),
            disk_errors: Family::default(),
            disk_writes_dropped: Counter::default(),
            disk_up: Gauge::default(),
            disk_loading: Gauge::default(),
        }
    }
}

impl Storage {
    /// The hit counters of `tier`.
    pub fn tier(&self, tier: &Tier) -> &TierHits {
        if *tier == DISK {
            &self.disk
        } else {
            &self.memory
        }
    }

    /// Registers every series in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "cache_tier_hits",
            "Hits by the storage tier that held the response",
            self.hits.clone(),
        );
        r.register(
            "cache_tier_hit_bytes",
            "Body bytes of hits by storage tier",
            self.hit_bytes.clone(),
        );
        r.register(
            "cache_evictions",
            "Objects removed to make room, by storage tier",
            self.evictions.clone(),
        );
        r.register(
            "cache_tier_objects",
            "Stored responses by tier",
            self.objects.clone(),
        );
        r.register("cache_tier_bytes", "Bytes held by tier", self.bytes.clone());
        r.register(
            "cache_disk_damaged",
            "Disk entries found damaged and dropped",
            self.disk_damaged.clone(),
        );
        r.register(
            "cache_disk_errors",
            "Disk I/O errors by operation",
            self.disk_errors.clone(),
        );
        r.register(
            "cache_disk_writes_dropped",
            "Disk writes skipped (queue full or tier degraded)",
            self.disk_writes_dropped.clone(),
        );
        r.register(
            "cache_disk_up",
            "1 while the disk tier is in use, 0 while degraded to memory only",
            self.disk_up.clone(),
        );
        r.register(
            "cache_disk_loading",
            "1 while the start-up scan of the disk tier runs (entries serve as they are found)",
            self.disk_loading.clone(),
        );
    }
}
