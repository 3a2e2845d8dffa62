//! Phase "hash": the cache key, in the site's namespace; the default, or the script's.

use super::deliver::{self, Answer};
use super::driver::Exchange;
use super::outcome::Refusal;
use crate::cache::{key, StoreKey};
use crate::guest::{GuestError, Hook, HookFailure};

/// The key a request is cached under, or why it has none.
pub enum Keyed {
    /// Look up and store under this key.
    Key(StoreKey),
    /// The script's `cache_key` failed: the request must not touch the cache, since any key
    /// the host could make up might merge entries the script keeps apart.
    Failed(HookFailure),
}

/// Computes the request's key; records its URI (for invalidation) and what query the origin
/// may see.
pub async fn key(x: &mut Exchange) -> Result<Keyed, Answer> {
    let default = key::default_key(&x.req.authority, x.req.path(), x.req.query());
    let uri = StoreKey::new(&x.site.cfg.name, &default);
    x.uri = uri.shared();
    if !x.chain.implements(Hook::CacheKey) {
        if x.site.cfg.caching.strip_unkeyed_params {
            x.origin_query = key::origin_query(x.req.query(), &default);
        }
        return Ok(Keyed::Key(uri));
    }
    let text = match x.chain.cache_key(&x.req, default).await {
        Ok(k) => k,
        Err(f) if matches!(f.error, GuestError::Busy(_)) => {
            return Err(deliver::refused(Refusal::Busy))
        }
        Err(f) => return Ok(Keyed::Failed(f)),
    };
    if x.site.cfg.caching.strip_unkeyed_params {
        x.origin_query = key::origin_query(x.req.query(), &text);
    }
    // A script that keeps the default key shares its text with the entry's URI.
    if uri.key() == text {
        return Ok(Keyed::Key(uri));
    }
    Ok(Keyed::Key(StoreKey::new(&x.site.cfg.name, &text)))
}
