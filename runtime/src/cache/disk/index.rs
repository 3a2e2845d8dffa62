//! What the disk tier knows in memory about its files: per key, each variant's file, its
//! lifetime and size; URIs and tags for purges; bytes held; least recently used first out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

use crate::cache::store::{Purge, StoreKey};
use crate::cache::vary::VaryKey;

/// A file's name: SHA-256 of the key and the variant's secondary key.
pub type Name = [u8; 32];

/// One variant on disk.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Its file.
    pub name: Name,
    /// Which write made it (a later write of the same name has a larger one).
    pub serial: u64,
    /// Secondary key.
    pub vary: VaryKey,
    /// Normalised URI of the request that stored it.
    pub uri: Arc<str>,
    /// Surrogate keys.
    pub tags: Box<[Box<str>]>,
    /// For soft purges: the age is computed from these.
    pub response_time: SystemTime,
    /// Corrected initial age.
    pub initial_age: Duration,
    /// Past this, of no use (the store's own reckoning).
    pub until: SystemTime,
    /// A soft purge recorded here before its file has it (ms of age; `u64::MAX`: none).
    pub purged_at_age: u64,
    /// File bytes.
    pub bytes: u64,
    /// Body bytes.
    pub body_len: u64,
    /// Last use, in the index's ticks.
    pub used: u64,
}

/// URI or tag → keys, counting variants (a name goes when its last variant does).
#[derive(Debug, Default)]
pub struct Names(HashMap<Box<str>, HashMap<StoreKey, u32>>);

impl Names {
    fn add(&mut self, name: &str, key: &StoreKey) {
        *self
            .0
            .entry(name.into())
            .or_default()
            .entry(key.clone())
            .or_default() += 1;
    }

    fn remove(&mut self, name: &str, key: &StoreKey) {
        let Some(keys) = self.0.get_mut(name) else {
            return;
        };
        if let Some(n) = keys.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                keys.remove(key);
            }
        }
        if keys.is_empty() {
            self.0.remove(name);
        }
    }

    fn get(&self, name: &str) -> Vec<StoreKey> {
        self.0
            .get(name)
            .map(|k| k.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn with_prefix(&self, prefix: &str) -> Vec<StoreKey> {
        let mut keys: Vec<StoreKey> = self
            .0
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .flat_map(|(_, k)| k.keys().cloned())
            .collect();
        keys.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        keys.dedup();
        keys
    }
}

/// The whole index; one lock (only memory misses and writes reach it).
#[derive(Debug, Default)]
pub struct Index {
    keys: HashMap<StoreKey, Vec<Meta>>,
    uris: Names,
    tags: Names,
    /// File bytes indexed.
    pub bytes: u64,
    /// Variants indexed.
    pub objects: u64,
    tick: u64,
    serial: u64,
}

/// What a lookup found on disk.
#[derive(Debug)]
pub enum Find {
    /// A variant that matches the request.
    Candidate(Meta),
    /// Variants stored, none for this request: the names they vary on.
    VaryMiss(Vec<http::HeaderName>),
    /// Nothing.
    Miss,
}

impl Index {
    /// A number no write has had yet.
    pub fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// Adds `meta` under `key`, replacing the variant of the same name.
    pub fn insert(&mut self, key: &StoreKey, mut meta: Meta) {
        self.tick += 1;
        meta.used = self.tick;
        self.remove_name(key, &meta.name);
        self.uris.add(&meta.uri, key);
        for t in meta.tags.iter() {
            self.tags.add(t, key);
        }
        self.bytes += meta.bytes;
        self.objects += 1;
        self.keys.entry(key.clone()).or_default().push(meta);
    }

    /// Removes the variant `name` of `key`; returns it.
    pub fn remove_name(&mut self, key: &StoreKey, name: &Name) -> Option<Meta> {
        let list = self.keys.get_mut(key)?;
        let i = list.iter().position(|m| &m.name == name)?;
        let meta = list.swap_remove(i);
        if list.is_empty() {
            self.keys.remove(key);
        }
        self.forget(key, &meta);
        Some(meta)
    }

    /// Removes the variant `name` of `key` only if it is still the one `serial` wrote.
    pub fn remove_serial(&mut self, key: &StoreKey, name: &Name, serial: u64) -> bool {
        let current = self.get(key, name).is_some_and(|m| m.serial == serial);
        if current {
            self.remove_name(key, name);
        }
        current
    }

    fn forget(&mut self, key: &StoreKey, meta: &Meta) {
        self.uris.remove(&meta.uri, key);
        for t in meta.tags.iter() {
            self.tags.remove(t, key);
        }
        self.bytes -= meta.bytes;
        self.objects -= 1;
    }

    /// Every variant of `key`, removed.
    pub fn remove_key(&mut self, key: &StoreKey) -> Vec<Meta> {
        let list = self.keys.remove(key).unwrap_or_default();
        for m in &list {
            self.forget(key, m);
        }
        list
    }

    /// The variant `name` of `key`.
    pub fn get(&self, key: &StoreKey, name: &Name) -> Option<&Meta> {
        self.keys.get(key)?.iter().find(|m| &m.name == name)
    }

    /// The variant of `key` that serves `req` at `now`, marked used.
    pub fn find(&mut self, key: &StoreKey, req: &HeaderMap, now: SystemTime) -> Find {
        let Some(list) = self.keys.get_mut(key) else {
            return Find::Miss;
        };
        let mut names = None;
        let mut best: Option<&mut Meta> = None;
        for m in list.iter_mut().filter(|m| m.until > now) {
            names.get_or_insert_with(|| m.vary.names());
            // The newest of the matching variants (same rule as memory).
            if m.vary.matches(req)
                && best
                    .as_ref()
                    .is_none_or(|b| b.response_time < m.response_time)
            {
                best = Some(m);
            }
        }
        match (best, names) {
            (Some(m), _) => {
                self.tick += 1;
                m.used = self.tick;
                Find::Candidate(m.clone())
            }
            (None, Some(names)) => Find::VaryMiss(names),
            (None, None) => Find::Miss,
        }
    }

    /// The keys a purge names.
    pub fn keys_for(&self, target: &Purge) -> Vec<StoreKey> {
        match target {
            Purge::Uri(uri) => self.uris.get(uri),
            Purge::Prefix(prefix) => self.uris.with_prefix(prefix),
            Purge::Tag { tag, site } => self
                .tags
                .get(tag)
                .into_iter()
                .filter(|k| site.as_deref().is_none_or(|s| k.site() == s))
                .collect(),
            Purge::Site(site) => self
                .keys
                .keys()
                .filter(|k| k.site() == site)
                .cloned()
                .collect(),
            Purge::All => self.keys.keys().cloned().collect(),
        }
    }

    /// The variants of `key`, to mark.
    pub fn variants_mut(&mut self, key: &StoreKey) -> &mut [Meta] {
        self.keys.get_mut(key).map_or(&mut [], |l| l.as_mut_slice())
    }

    /// Removes the least recently used variants until at most `target` bytes are held;
    /// returns their names.
    pub fn evict_to(&mut self, target: u64) -> Vec<Name> {
        if self.bytes <= target {
            return Vec::new();
        }
        let mut all: Vec<(u64, StoreKey, Name, u64)> = self
            .keys
            .iter()
            .flat_map(|(k, l)| l.iter().map(|m| (m.used, k.clone(), m.name, m.bytes)))
            .collect();
        all.sort_unstable_by_key(|(used, ..)| *used);
        let mut excess = self.bytes - target;
        let mut gone = Vec::new();
        for (_, key, name, bytes) in all {
            if excess == 0 {
                break;
            }
            self.remove_name(&key, &name);
            excess = excess.saturating_sub(bytes);
            gone.push(name);
        }
        gone
    }

    /// Removes every variant of no use at `now`; returns their names.
    pub fn expire(&mut self, now: SystemTime) -> Vec<Name> {
        let dead: Vec<(StoreKey, Name)> = self
            .keys
            .iter()
            .flat_map(|(k, l)| {
                l.iter()
                    .filter(|m| m.until <= now)
                    .map(|m| (k.clone(), m.name))
            })
            .collect();
        for (k, n) in &dead {
            self.remove_name(k, n);
        }
        dead.into_iter().map(|(_, n)| n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: u8, uri: &str, tags: &[&str], bytes: u64) -> Meta {
        Meta {
            name: [name; 32],
            serial: 0,
            vary: VaryKey::Any,
            uri: uri.into(),
            tags: tags.iter().map(|t| Box::from(*t)).collect(),
            response_time: SystemTime::UNIX_EPOCH,
            initial_age: Duration::ZERO,
            until: SystemTime::UNIX_EPOCH + Duration::from_secs(100),
            purged_at_age: u64::MAX,
            bytes,
            body_len: bytes,
            used: 0,
        }
    }

    #[test]
    fn names_follow_variants_and_bytes_add_up() {
        let mut i = Index::default();
        let (a, b) = (StoreKey::new("s", "a"), StoreKey::new("s", "b"));
        i.insert(&a, meta(1, "s/u", &["t"], 10));
        i.insert(&b, meta(2, "s/u", &["t"], 20));
        i.insert(&a, meta(1, "s/u", &["t", "x"], 30));
        assert_eq!((i.objects, i.bytes), (2, 50));
        assert_eq!(
            i.keys_for(&Purge::Tag {
                tag: "x".into(),
                site: None
            }),
            vec![a.clone()]
        );
        assert_eq!(i.keys_for(&Purge::Prefix("s/".into())).len(), 2);
        i.remove_key(&a);
        i.remove_name(&b, &[2; 32]);
        assert_eq!((i.objects, i.bytes), (0, 0));
        assert!(i.uris.0.is_empty() && i.tags.0.is_empty() && i.keys.is_empty());
    }

    #[test]
    fn eviction_takes_the_least_recently_used_first() {
        let mut i = Index::default();
        let keys: Vec<StoreKey> = (0..4).map(|n| StoreKey::new("s", &n.to_string())).collect();
        for (n, k) in keys.iter().enumerate() {
            i.insert(k, meta(n as u8, "s/u", &[], 10));
        }
        let now = SystemTime::UNIX_EPOCH;
        assert!(matches!(
            i.find(&keys[0], &HeaderMap::new(), now),
            Find::Candidate(_)
        ));
        assert_eq!(i.evict_to(20), vec![[1; 32], [2; 32]]);
        assert!(matches!(
            i.find(&keys[0], &HeaderMap::new(), now),
            Find::Candidate(_)
        ));
        let late = now + Duration::from_secs(100);
        assert!(matches!(
            i.find(&keys[0], &HeaderMap::new(), late),
            Find::Miss
        ));
        assert_eq!(i.expire(late).len(), 2);
        assert_eq!(i.objects, 0);
    }
}
