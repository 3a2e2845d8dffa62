//! Secondary indexes over stored objects (URI → keys), kept consistent with evictions.
//!
//! Each membership carries the generation of the stored value that created it. A removal
//! (eviction, expiry, replacement, invalidation) drops only memberships of the generation
//! that went away, so a replacement that re-adds the same membership is never undone by
//! the removal of its predecessor, and nothing stays in the index after its object is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::store::StoreKey;

/// name → primary keys, with the generation each membership belongs to.
#[derive(Debug, Default)]
pub struct Index {
    // Names are shared with the entries that carry them where they can be (a URI is its
    // entry's `uri`): one copy of the text per object, not two.
    map: Mutex<HashMap<Arc<str>, Members>>,
}

/// The keys under one name. Most names (a URI, a tag of one object) have one key: that
/// case is kept inline, since a map per name would cost more than the object's own headers;
/// the map of the others is boxed, so that every slot of the index is 40 bytes, not 64.
#[derive(Debug)]
enum Members {
    One(StoreKey, u64),
    // Boxed on purpose (the lint's advice would put the map's 48 bytes in every slot).
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<StoreKey, u64>>),
}

impl Members {
    fn insert(&mut self, key: &StoreKey, generation: u64) {
        match self {
            Members::One(k, g) if k == key => *g = generation,
            Members::One(k, g) => {
                let map = HashMap::from([(k.clone(), *g), (key.clone(), generation)]);
                *self = Members::Many(Box::new(map));
            }
            Members::Many(map) => {
                map.insert(key.clone(), generation);
            }
        }
    }

    /// Drops `key` if it is of `generation`; whether no key is left.
    fn remove(&mut self, key: &StoreKey, generation: u64) -> bool {
        match self {
            Members::One(k, g) => k == key && *g == generation,
            Members::Many(map) => {
                if map.get(key) == Some(&generation) {
                    map.remove(key);
                }
                map.is_empty()
            }
        }
    }

    fn keys(&self) -> Box<dyn Iterator<Item = &StoreKey> + '_> {
        match self {
            Members::One(k, _) => Box::new(std::iter::once(k)),
            Members::Many(map) => Box::new(map.keys()),
        }
    }
}

impl Index {
    /// Records that `key` (at `generation`) is reachable under `name`.
    pub fn add(&self, name: &str, key: &StoreKey, generation: u64) {
        self.add_with(name, || name.into(), key, generation);
    }

    /// [`Index::add`] keeping `name`'s own memory when it is new, not a copy.
    pub fn add_shared(&self, name: &Arc<str>, key: &StoreKey, generation: u64) {
        self.add_with(name, || name.clone(), key, generation);
    }

    fn add_with(
        &self,
        name: &str,
        own: impl FnOnce() -> Arc<str>,
        key: &StoreKey,
        generation: u64,
    ) {
        let mut map = self.map.lock().expect("index lock");
        match map.get_mut(name) {
            Some(members) => members.insert(key, generation),
            None => {
                map.insert(own(), Members::One(key.clone(), generation));
            }
        }
    }

    /// Forgets `key` under `name` if the membership is still of `generation`.
    pub fn remove(&self, name: &str, key: &StoreKey, generation: u64) {
        let mut map = self.map.lock().expect("index lock");
        if map
            .get_mut(name)
            .is_some_and(|members| members.remove(key, generation))
        {
            map.remove(name);
        }
    }

    /// The keys reachable under `name`.
    pub fn get(&self, name: &str) -> Vec<StoreKey> {
        self.map
            .lock()
            .expect("index lock")
            .get(name)
            .map(|members| members.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The keys reachable under any name starting with `prefix`.
    pub fn with_prefix(&self, prefix: &str) -> Vec<StoreKey> {
        let map = self.map.lock().expect("index lock");
        let mut keys: Vec<StoreKey> = map
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .flat_map(|(_, members)| members.keys().cloned())
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
    #[cfg(target_pointer_width = "64")]
    fn a_name_costs_a_forty_byte_slot() {
        // Every indexed URI and tag pays for one; a key's own map is boxed.
        assert_eq!(std::mem::size_of::<(Arc<str>, Members)>(), 40);
    }

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

    #[test]
    fn a_name_with_several_keys_keeps_each_until_its_own_generation_goes() {
        let i = Index::default();
        let (a, b, c) = (
            StoreKey::new("s", "a"),
            StoreKey::new("s", "b"),
            StoreKey::new("s", "c"),
        );
        i.add("/p", &a, 1);
        i.add("/p", &b, 1);
        i.add("/p", &c, 1);
        i.add("/p", &b, 2);
        let mut got = i.get("/p");
        got.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        assert_eq!(got, vec![a.clone(), b.clone(), c.clone()]);
        i.remove("/p", &b, 1);
        i.remove("/p", &a, 1);
        assert_eq!(i.get("/p").len(), 2, "b is of generation 2 now");
        i.remove("/p", &b, 2);
        i.remove("/p", &c, 1);
        assert!(i.is_empty());
        let q: Arc<str> = "/q".into();
        i.add_shared(&q, &a, 7);
        assert_eq!(
            Arc::strong_count(&q),
            2,
            "the index keeps the name it was given"
        );
        i.remove("/q", &b, 7);
        assert_eq!(i.get("/q"), vec![a]);
    }
}
