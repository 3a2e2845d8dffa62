//! A lookup across tiers: memory first; on a miss the disk tier, whose find is promoted into
//! memory (the store's policy then decides whether it stays there).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::HeaderMap;

use super::disk::Find;
use super::store::{Lookup, Store, StoreKey};
use crate::observe::storage::{Tier, DISK, MEMORY};

/// Bodies at least this large are streamed from disk on a hit, never promoted to memory.
pub const STREAM_FROM_DISK: u64 = 1 << 20;

/// What a lookup across tiers found.
#[derive(Debug)]
pub struct Tiered {
    /// What was found.
    pub lookup: Lookup,
    /// The tier that held it.
    pub tier: Tier,
    /// For a large body on disk: the entry found is only its head (an empty body) and this
    /// reads the body. Such an entry serves a plain hit and nothing else (never a stale
    /// copy to revalidate, never memory).
    pub body: Option<super::disk::DiskBody>,
}

impl Tiered {
    fn memory(lookup: Lookup) -> Tiered {
        Tiered {
            lookup,
            tier: MEMORY,
            body: None,
        }
    }
}

impl Store {
    /// Finds the variant that serves `req`, in memory or else on disk; says which tier
    /// held it. With `stream` a large plain body on disk comes as a [`Tiered::body`].
    pub async fn lookup_tiered(&self, key: &StoreKey, req: &HeaderMap, stream: bool) -> Tiered {
        let memory = self.lookup(key, req);
        let disk = match &self.disk {
            Some(d) if !matches!(memory, Lookup::Found(_)) => d.clone(),
            _ => return Tiered::memory(memory),
        };
        let found = match disk.find(key, req) {
            Find::Candidate(found) => found,
            Find::VaryMiss(names) if matches!(memory, Lookup::UriMiss) => {
                return Tiered::memory(Lookup::VaryMiss(names))
            }
            Find::VaryMiss(_) | Find::Miss => return Tiered::memory(memory),
        };
        let stream_from = if stream { STREAM_FROM_DISK } else { u64::MAX };
        // A whole read holds its size in memory until served: those in flight are bounded.
        let _permit = if found.body_len < stream_from {
            Some(disk.read_permit(found.body_len).await)
        } else {
            None
        };
        let (d, k, f) = (disk.clone(), key.clone(), found.clone());
        let read = tokio::task::spawn_blocking(move || d.read(&k, &f, stream_from)).await;
        let Ok(Some((entry, body))) = read else {
            return Tiered::memory(memory);
        };
        let entry = Arc::new(entry);
        let promoted = disk.confirm(key, &found, |purged| {
            entry.purged_at_age.fetch_min(purged, Ordering::Relaxed);
            if body.is_none() {
                self.insert_memory(key, entry.clone());
            }
        });
        if !promoted {
            return Tiered::memory(memory);
        }
        Tiered {
            lookup: Lookup::Found(entry),
            tier: DISK,
            body,
        }
    }

    /// Sets the per-tier gauges (objects, bytes, disk up) for a scrape.
    pub fn gauge_tiers(&self, m: &crate::observe::storage::Storage) {
        m.objects
            .get_or_create(&MEMORY)
            .set(self.variant_count() as i64);
        m.bytes
            .get_or_create(&MEMORY)
            .set(self.weighted_size() as i64);
        if let Some(d) = &self.disk {
            let (objects, bytes) = d.usage();
            m.objects.get_or_create(&DISK).set(objects as i64);
            m.bytes.get_or_create(&DISK).set(bytes as i64);
            m.disk_up.set(i64::from(d.is_up()));
            m.disk_loading.set(i64::from(d.is_loading()));
        }
    }
}
