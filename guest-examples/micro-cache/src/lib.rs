//! Example script: micro-caching a hot API to protect the origin.
//!
//! A `GET` under `/api/` that the origin lets a shared cache store (no `no-store`, no
//! `private`) and answers with a 2xx is kept for [`MICRO_TTL`] second, then served stale
//! for [`MICRO_SWR`] more seconds while one background request refreshes it, and for
//! [`MICRO_SIE`] seconds if the origin fails. However many clients ask, the origin sees
//! about one request per second per URL; each client sees data at most a second or two old.
//! Everything else keeps the host's decision.

use tessera_sdk::{CacheDecision, EdgeScript, Request, ResponseHead};

/// Paths below this prefix are micro-cached.
pub const API_PREFIX: &str = "/api/";
/// Seconds a response stays fresh.
pub const MICRO_TTL: u32 = 1;
/// Seconds after that in which it is served while one refresh runs.
pub const MICRO_SWR: u32 = 10;
/// Seconds after that in which it is served if the origin fails.
pub const MICRO_SIE: u32 = 60;

/// The script: only `cache_policy` is defined.
pub struct MicroCache;

#[tessera_sdk::script]
impl EdgeScript for MicroCache {
    fn cache_policy(req: &Request, resp: &ResponseHead, proposed: CacheDecision) -> CacheDecision {
        // What the origin refused to share stays unshared; errors keep the host's short TTL.
        if !proposed.store
            || req.method != "GET"
            || !req.path.starts_with(API_PREFIX)
            || !(200..300).contains(&resp.status)
        {
            return proposed;
        }
        proposed
            .with_ttl(MICRO_TTL)
            .with_stale_while_revalidate(MICRO_SWR)
            .with_stale_if_error(MICRO_SIE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::testing::{call_cache_policy, describe, request, response};
    use tessera_sdk::{HookSet, ScriptInfo};

    fn decide(method: &str, path: &str, status: u16, proposed: CacheDecision) -> CacheDecision {
        let req = request(path).method(method).build();
        call_cache_policy::<MicroCache>(&req, &response(status).build(), &proposed)
    }

    fn window(d: &CacheDecision) -> (bool, u32, u32, u32) {
        (d.store, d.ttl, d.stale_while_revalidate, d.stale_if_error)
    }

    #[test]
    fn a_storable_api_answer_is_fresh_for_a_second_then_served_while_refreshed() {
        let d = decide("GET", "/api/prices", 200, CacheDecision::cache_for(0));
        assert_eq!(window(&d), (true, 1, 10, 60));
        // A longer origin TTL is cut to the micro window too: the point is freshness.
        let d = decide("GET", "/api/prices", 200, CacheDecision::cache_for(3600));
        assert_eq!(window(&d), (true, 1, 10, 60));
    }

    #[test]
    fn what_the_origin_refused_errors_writes_and_other_paths_keep_the_hosts_decision() {
        let refused = CacheDecision::cache_for(0).no_store();
        assert_eq!(
            window(&decide("GET", "/api/me", 200, refused.clone())),
            window(&refused)
        );
        let proposed = CacheDecision::cache_for(5);
        for (method, path, status) in [
            ("GET", "/api/prices", 503),
            ("GET", "/api/prices", 404),
            ("POST", "/api/orders", 201),
            ("GET", "/pages/about", 200),
            ("GET", "/apiary", 200),
        ] {
            let d = decide(method, path, status, proposed.clone());
            assert_eq!(window(&d), window(&proposed), "{method} {path} {status}");
        }
    }

    #[test]
    fn only_cache_policy_is_implemented() {
        assert_eq!(
            describe::<MicroCache>(),
            ScriptInfo {
                hooks: HookSet::CACHE_POLICY,
                keep_state: false,
                reusable: false,
                key_reads: None,
            }
        );
    }
}
