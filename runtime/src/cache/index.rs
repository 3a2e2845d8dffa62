//! Secondary indexes over stored objects (URI → keys), kept consistent with evictions.
//!
//! Each membership carries the generation of the stored value that created it. A removal
//! (eviction, expiry, replacement, invalidation) drops only memberships of the generation
//! that went away, so a replacement that re-adds the same membership is never undone by
//! the removal of its predecessor, and nothing stays in the index after its object is gone.

use std::collections::HashMap;
use std::sync::Mutex;

use super::store::StoreKey;

/// name → primary keys, with the generation each membership belongs to.
#[derive(Debug, Default)]
pub struct Index {
    map: Mutex<HashMap<Box<str>, HashMap<StoreKey, u64>>>,
}

impl Index {
    /// Records that `key` (at `generation`) is reachable under `name`.
    pub fn add(&self, name: &str, key: &StoreKey, generation: u64) {
        let mut map = self.map.lock().expect("index lock");
        map.entry(name.into())
            .or_default()
            .insert(key.clone(), generation);
    }

    /// Forgets `key` under `name` if the membership is still of `generation`.
    pub fn remove(&self, name: &str, key: &StoreKey, generation: u64) {
        let mut map = self.map.lock().expect("index lock");
        if let Some(keys) = map.get_mut(name) {
            if keys.get(key) == Some(&generation) {
                keys.remove(key);
            }
            if keys.is_empty() {
                map.remove(name);
            }
        }
    }

    /// The keys reachable under `name`.
    pub fn get(&self, name: &str) -> Vec<StoreKey> {
        self.map
            .lock()
            .expect("index lock")
            .get(name)
            .map(|keys| keys.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The keys reachable under any name starting with `prefix`.
    pub fn with_prefix(&self, prefix: &str) -> Vec<StoreKey> {
        let map = self.map.lock().expect("index lock");
        let mut keys: Vec<StoreKey> = map
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .flat_map(|(_, keys)| keys.keys().cloned())
            .collect();
        keys.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        keys.dedup();
        keys
    }

    /// Number of names indexed (for tests and metrics).
    pub fn len(&self) -> usize {
        self.map.lock().expect("index lock").len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_an_old_generation_keeps_the_new_membership() {
        let i = Index::default();
        let k = StoreKey::new("site", "k");
        i.add("/p", &k, 1);
        i.add("/p", &k, 2);
        i.remove("/p", &k, 1);
        assert_eq!(i.get("/p"), vec![k.clone()]);
        i.remove("/p", &k, 2);
        assert!(i.get("/p").is_empty());
        assert!(i.is_empty(), "empty names are dropped");
    }
}
