//! `fresh-vs-cached`: one API, two routes.
//!
//! - `/delivery/…` (and everything outside `/fresh/`) is the **cached** route, open to all:
//!   the cache answers, the origin sees a request per object per TTL;
//! - `/fresh/…` goes **past the cache** to the origin, for clients with an API key in
//!   `x-api-key`, each client held to `rate_limit_per_minute` requests per minute (default
//!   60; 429 with `Retry-After` beyond). The origin gets `x-api-client: <name>`, never the
//!   key.
//!
//! Keys come from `[site.script_config] api_keys`: `name:key` pairs separated by commas,
//! best read from a file (`api_keys = { file = "api-keys" }`). A missing or wrong key is a
//! 401; with no keys configured the fresh route is closed to everybody.

use tessera_sdk::{
    config, now_ms, rate_limit, EdgeScript, HeaderEdits, Request, RequestAction, SyntheticResponse,
};

/// Where the fresh route starts.
pub const FRESH_PREFIX: &str = "/fresh/";
/// The header a client sends its key in.
pub const KEY_HEADER: &str = "x-api-key";
/// The header the origin learns the client's name from.
pub const CLIENT_HEADER: &str = "x-api-client";
/// Requests per client per minute on the fresh route, unless configured.
pub const DEFAULT_PER_MINUTE: u32 = 60;

/// Equal in time independent of where the bytes differ: a key is not guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The name of the client whose key is `key` in `api_keys` (`name:key,name:key`).
pub fn client_of<'a>(api_keys: &'a str, key: &str) -> Option<&'a str> {
    let mut found = None;
    // Every entry is compared, so timing does not tell which one matched.
    for entry in api_keys.split(',') {
        if let Some((name, k)) = entry.trim().split_once(':') {
            if !k.is_empty() && same(k.trim().as_bytes(), key.as_bytes()) && found.is_none() {
                found = Some(name.trim());
            }
        }
    }
    found.filter(|n| !n.is_empty())
}

fn refuse(status: u16, retry_after: Option<u64>) -> RequestAction {
    let mut r = SyntheticResponse::new(status)
        .header("cache-control", "no-store")
        .header("content-type", "text/plain");
    if let Some(s) = retry_after {
        r = r.header("retry-after", s.to_string());
    }
    let body = if status == 429 {
        "slow down\n"
    } else {
        "an API key is needed\n"
    };
    r.body(body).into()
}

/// The script.
pub struct FreshVsCached;

#[tessera_sdk::script]
impl EdgeScript for FreshVsCached {
    fn on_request(req: &Request) -> RequestAction {
        let edits = HeaderEdits::new().remove(CLIENT_HEADER).remove(KEY_HEADER);
        if !req.path.starts_with(FRESH_PREFIX) {
            return RequestAction::proceed_with(edits);
        }
        let keys = config("api_keys").unwrap_or_default();
        let Some(client) = req.header(KEY_HEADER).and_then(|k| client_of(&keys, k)) else {
            return refuse(401, None);
        };
        let per_minute = config("rate_limit_per_minute")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_PER_MINUTE);
        if !rate_limit(&format!("fresh:{client}"), per_minute, 60) {
            let into_window = now_ms() / 1000 % 60;
            return refuse(429, Some(60 - into_window));
        }
        RequestAction::pass_with(edits.set(CLIENT_HEADER, client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::testing::{self, call_on_request, request};

    const KEYS: &str = "partner-a:key-a-123, partner-b:key-b-456";

    fn fresh(key: &str) -> RequestAction {
        call_on_request::<FreshVsCached>(&request("/fresh/stock").header(KEY_HEADER, key).build())
    }

    #[test]
    fn keys_name_their_client_and_nothing_else_does() {
        assert_eq!(client_of(KEYS, "key-a-123"), Some("partner-a"));
        assert_eq!(client_of(KEYS, "key-b-456"), Some("partner-b"));
        for wrong in ["", "key-a-12", "key-a-1234", "partner-a", "KEY-A-123"] {
            assert_eq!(client_of(KEYS, wrong), None, "{wrong}");
        }
        assert_eq!(client_of("noname, :k, x:", "k"), None);
    }

    #[test]
    fn the_fresh_route_needs_a_key_and_holds_each_client_to_its_rate() {
        testing::set_config(&[("api_keys", KEYS), ("rate_limit_per_minute", "2")]);
        testing::set_now_ms(1_800_000_010_000);
        for _ in 0..2 {
            let RequestAction::Pass(edits) = fresh("key-a-123") else {
                panic!("passes")
            };
            assert!(edits
                .set
                .contains(&(CLIENT_HEADER.into(), "partner-a".into())));
            assert!(
                edits.remove.contains(&KEY_HEADER.to_string()),
                "the key stays at the edge"
            );
        }
        let RequestAction::Respond(r) = fresh("key-a-123") else {
            panic!("limited")
        };
        assert_eq!(r.status, 429);
        assert!(
            r.headers.contains(&("retry-after".into(), "50".into())),
            "{:?}",
            r.headers
        );
        assert!(
            matches!(fresh("key-b-456"), RequestAction::Pass(_)),
            "clients are apart"
        );
        testing::set_now_ms(1_800_000_060_000);
        assert!(
            matches!(fresh("key-a-123"), RequestAction::Pass(_)),
            "a new minute"
        );
        assert!(matches!(fresh("nope"), RequestAction::Respond(r) if r.status == 401));
    }

    #[test]
    fn the_cached_route_is_open_and_no_client_can_name_itself() {
        testing::set_config(&[("api_keys", KEYS)]);
        let req = request("/delivery/stock")
            .header(CLIENT_HEADER, "partner-a")
            .build();
        let RequestAction::Continue(edits) = call_on_request::<FreshVsCached>(&req) else {
            panic!("cached route")
        };
        assert!(edits.remove.contains(&CLIENT_HEADER.to_string()));
        testing::set_config(&[]);
        assert!(
            matches!(fresh("key-a-123"), RequestAction::Respond(r) if r.status == 401),
            "no keys: closed"
        );
    }
}
