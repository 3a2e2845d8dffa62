//! Bench fixture: the least a `cache-key` script can do, so that what a fresh instance costs
//! with our SDK can be told apart from what a script's own code costs (`bench/guest.rs`,
//! `bench/load/hits.py`).
//!
//! It reads nothing of the request and returns the key the host proposed, so the site keys
//! exactly as it would without a script.

use tessera_sdk::{EdgeScript, Request};

/// The script: `cache_key` hands back the default key.
pub struct DefaultKey;

#[tessera_sdk::script(reusable, key_reads())]
impl EdgeScript for DefaultKey {
    fn cache_key(_req: &Request, default_key: &str) -> String {
        default_key.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::DefaultKey;
    use tessera_sdk::testing::{call_cache_key, request};

    #[test]
    fn the_key_is_the_one_the_host_proposed() {
        let req = request("/p?utm_source=x&b=2").build();
        assert_eq!(
            call_cache_key::<DefaultKey>(&req, "example.com/p?utm_source=x&b=2"),
            "example.com/p?utm_source=x&b=2"
        );
    }
}
