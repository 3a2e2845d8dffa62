//! Purges: what they name (a URI, a prefix, a tag, a site, everything) and how the store
//! finds it — its URI index for script-made keys, its own keys for the rest.

use std::sync::Arc;

use super::{Store, StoreKey, Variants};

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

impl Store {
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
            Purge::Uri(uri) => {
                let mut keys = self.forget.uris.get(uri);
                let own = StoreKey(Arc::from(uri.as_str()));
                let named = |v: &Variants| v.iter().any(|e| e.named_by(&own));
                if self.objects.peek(&own).is_some_and(|v| named(&v)) && !keys.contains(&own) {
                    keys.push(own);
                }
                keys
            }
            Purge::Prefix(prefix) => {
                // The index holds script-keyed URIs; the rest are keys of their own.
                let mut keys = self.forget.uris.with_prefix(prefix);
                keys.extend(
                    self.objects
                        .iter()
                        .filter(|(k, v)| {
                            k.as_str().starts_with(prefix.as_str())
                                && v.iter().any(|e| e.named_by(k))
                        })
                        .map(|(k, _)| k),
                );
                keys.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                keys.dedup();
                keys
            }
            Purge::Tag { tag, site } => self
                .forget
                .tags
                .get(tag)
                .into_iter()
                .filter(|k| k.in_site(site.as_deref()))
                .collect(),
            Purge::Site(site) => self
                .objects
                .iter()
                .map(|(k, _)| k)
                .filter(|k| k.site() == site)
                .collect(),
            Purge::All => self.objects.iter().map(|(k, _)| k).collect(),
        };
        keys.iter()
            .map(|k| {
                if soft {
                    self.objects.peek(k).map_or(0, |v| {
                        v.iter()
                            .filter(|e| match target {
                                // A tag purge reaches only the variants carrying the tag.
                                Purge::Tag { tag, .. } => e.tags().iter().any(|t| t == tag),
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
}
