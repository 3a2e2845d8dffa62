//! What the disk tier knows in memory about its files: per key, each variant's file, its
//! lifetime and size; URIs and tags for purges; bytes held; least recently used first out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

use crate::cache::store::{Purge, StoreKey, MAX_VARIANTS};
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
    pub tags: Box<[Arc<str>]>,
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
    /// Its file is in place: until then a lookup must not find it (the file at its path
    /// may still be an older response, or one a queued removal is about to take away).
    pub written: bool,
}

/// URI or tag → keys, counting variants (a name goes when its last variant does). The
/// name's text is shared with the variants' own (`Arc`), and a name of one key, the common
/// case, keeps it inline: a map per name would cost more than the entry.
#[derive(Debug, Default)]
pub struct Names(HashMap<Arc<str>, Holders>);

#[derive(Debug)]
enum Holders {
    One(StoreKey, u32),
    Many(HashMap<StoreKey, u32>),
}

impl Names {
    fn add(&mut self, name: &Arc<str>, key: &StoreKey) {
        match self.0.get_mut(name) {
            None => {
                self.0.insert(name.clone(), Holders::One(key.clone(), 1));
            }
            Some(Holders::One(k, n)) if k == key => *n += 1,
            Some(h @ Holders::One(..)) => {
                let Holders::One(k, n) = std::mem::replace(h, Holders::Many(HashMap::new())) else {
                    unreachable!("matched One")
                };
                if let Holders::Many(m) = h {
                    m.insert(k, n);
                    m.insert(key.clone(), 1);
                }
            }
            Some(Holders::Many(m)) => *m.entry(key.clone()).or_default() += 1,
        }
    }

    fn remove(&mut self, name: &str, key: &StoreKey) {
        let gone = match self.0.get_mut(name) {
            None => false,
            Some(Holders::One(k, n)) if k == key => {
                *n -= 1;
                *n == 0
            }
            Some(Holders::One(..)) => false,
            Some(Holders::Many(m)) => {
                if let Some(n) = m.get_mut(key) {
                    *n -= 1;
                    if *n == 0 {
                        m.remove(key);
                    }
                }
                m.is_empty()
            }
        };
        if gone {
            self.0.remove(name);
        }
    }

    fn keys_of(h: &Holders) -> Vec<StoreKey> {
        match h {
            Holders::One(k, _) => vec![k.clone()],
            Holders::Many(m) => m.keys().cloned().collect(),
        }
    }

    fn get(&self, name: &str) -> Vec<StoreKey> {
        self.0.get(name).map(Names::keys_of).unwrap_or_default()
    }

    fn with_prefix(&self, prefix: &str) -> Vec<StoreKey> {
        let mut keys: Vec<StoreKey> = self
            .0
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .flat_map(|(_, h)| Names::keys_of(h))
            .collect();
        keys.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        keys.dedup();
        keys
    }
}

/// A removal made while the start-up scan runs: entries it finds later are checked against
/// it, so nothing purged comes back because it was found after the purge.
#[derive(Debug, Clone)]
pub enum Forget {
    /// A purge, hard or soft, and when it was made.
    Purge {
        /// What it names.
        target: Purge,
        /// Marked stale rather than removed.
        soft: bool,
        /// When.
        at: SystemTime,
    },
    /// Every variant of one key.
    Key(StoreKey),
    /// One variant (a newer response whose write was dropped replaced it).
    Variant(StoreKey, Name),
}

/// What became of an entry the scan found.
#[derive(Debug, PartialEq, Eq)]
pub enum Placed {
    /// Indexed as found.
    Indexed,
    /// Indexed, and a soft purge made meanwhile must be written to its file (age in ms).
    Softened(u64),
    /// A purge made meanwhile removed it (the caller removes its file).
    Dropped,
    /// A newer write of the same variant is indexed already; the find is moot.
    Superseded,
}

fn named_by(target: &Purge, key: &StoreKey, meta: &Meta) -> bool {
    match target {
        Purge::Uri(uri) => *meta.uri == **uri,
        Purge::Prefix(prefix) => meta.uri.starts_with(prefix.as_str()),
        Purge::Tag { tag, site } => {
            meta.tags.iter().any(|t| **t == **tag)
                && site.as_deref().is_none_or(|s| key.site() == s)
        }
        Purge::Site(site) => key.site() == site,
        Purge::All => true,
    }
}

/// The whole index; one lock (only memory misses and writes reach it).
#[derive(Debug, Default)]
pub struct Index {
    /// While the start-up scan runs: the removals made so far.
    pub loading: Option<Vec<Forget>>,
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
    /// An empty index whose start-up scan is about to run.
    pub fn loading() -> Index {
        Index {
            loading: Some(Vec::new()),
            ..Index::default()
        }
    }

    /// A number no write has had yet.
    pub fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// Adds `meta` under `key`, replacing the variant of the same name; past
    /// [`MAX_VARIANTS`] the least recently used variant goes, and is returned.
    pub fn insert(&mut self, key: &StoreKey, mut meta: Meta) -> Option<Name> {
        self.tick += 1;
        meta.used = self.tick;
        self.remove_name(key, &meta.name);
        let displaced = match self.keys.get(key) {
            Some(list) if list.len() >= MAX_VARIANTS => list
                .iter()
                .min_by_key(|m| m.used)
                .map(|m| m.name)
                .and_then(|n| self.remove_name(key, &n))
                .map(|m| m.name),
            _ => None,
        };
        self.uris.add(&meta.uri, key);
        for t in meta.tags.iter() {
            self.tags.add(t, key);
        }
        self.bytes += meta.bytes;
        self.objects += 1;
        // Most keys have one variant: a Vec's first growth would reserve four.
        match self.keys.get_mut(key) {
            Some(list) => list.push(meta),
            None => {
                self.keys.insert(key.clone(), vec![meta]);
            }
        }
        displaced
    }

    /// Records that the write `serial` of variant `name` is in place.
    pub fn mark_written(&mut self, key: &StoreKey, name: &Name, serial: u64) {
        if let Some(m) = self
            .keys
            .get_mut(key)
            .and_then(|l| l.iter_mut().find(|m| &m.name == name && m.serial == serial))
        {
            m.written = true;
        }
    }

    /// Indexes an entry the start-up scan found, unless something made since says otherwise.
    pub fn place_found(&mut self, key: &StoreKey, mut meta: Meta) -> Placed {
        if self.get(key, &meta.name).is_some() {
            return Placed::Superseded;
        }
        let mut softened = None;
        for f in self.loading.iter().flatten() {
            match f {
                Forget::Key(k) if k == key => return Placed::Dropped,
                Forget::Variant(k, n) if k == key && *n == meta.name => return Placed::Dropped,
                Forget::Purge { target, soft, at } if named_by(target, key, &meta) => {
                    if !soft {
                        return Placed::Dropped;
                    }
                    let age = crate::cache::freshness::current_age(
                        meta.initial_age,
                        meta.response_time,
                        *at,
                    );
                    let age = age.as_millis().min(u128::from(u64::MAX - 1)) as u64;
                    meta.purged_at_age = meta.purged_at_age.min(age);
                    softened = Some(meta.purged_at_age);
                }
                _ => {}
            }
        }
        meta.serial = self.next_serial();
        // Found on disk: its file is in place. (A key holds at most MAX_VARIANTS files,
        // so nothing is displaced here.)
        meta.written = true;
        self.insert(key, meta);
        softened.map_or(Placed::Indexed, Placed::Softened)
    }

    /// Notes a removal while the scan runs.
    pub fn note(&mut self, forget: Forget) {
        if let Some(list) = self.loading.as_mut() {
            list.push(forget);
        }
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
        for m in list.iter_mut().filter(|m| m.until > now && m.written) {
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
                .filter(|k| k.in_site(site.as_deref()))
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
            tags: tags.iter().map(|t| Arc::from(*t)).collect(),
            response_time: SystemTime::UNIX_EPOCH,
            initial_age: Duration::ZERO,
            until: SystemTime::UNIX_EPOCH + Duration::from_secs(100),
            purged_at_age: u64::MAX,
            bytes,
            body_len: bytes,
            used: 0,
            written: true,
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
    fn what_the_scan_finds_after_a_purge_is_checked_against_it() {
        let mut i = Index::loading();
        let (a, b, c) = (
            StoreKey::new("s", "a"),
            StoreKey::new("s", "b"),
            StoreKey::new("s", "c"),
        );
        i.note(Forget::Purge {
            target: Purge::Tag {
                tag: "t".into(),
                site: None,
            },
            soft: false,
            at: SystemTime::UNIX_EPOCH,
        });
        i.note(Forget::Purge {
            target: Purge::Prefix("s/soft".into()),
            soft: true,
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(7),
        });
        i.note(Forget::Key(c.clone()));
        assert_eq!(
            i.place_found(&a, meta(1, "s/u", &["t"], 10)),
            Placed::Dropped
        );
        assert_eq!(
            i.place_found(&b, meta(2, "s/soft/1", &[], 10)),
            Placed::Softened(7_000)
        );
        assert_eq!(i.place_found(&c, meta(3, "s/x", &[], 10)), Placed::Dropped);
        i.insert(&a, meta(4, "s/new", &[], 10));
        assert_eq!(
            i.place_found(&a, meta(4, "s/old", &[], 10)),
            Placed::Superseded
        );
        assert_eq!(
            i.place_found(&a, meta(5, "s/other", &[], 10)),
            Placed::Indexed
        );
        assert_eq!(i.objects, 3);
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
