//! Example script: one cache entry per page and device class, whatever tracking parameters say.
//!
//! `cache_key` rebuilds the key from the request as `{authority}{path}[?{query}]#{device}`:
//! the authority lower-cased, `utm_*`, `fbclid`, `gclid` and `ref` dropped from the query,
//! the remaining parameters sorted, and the device class (`desktop`, `mobile`, `tablet`,
//! `bot`) appended so each class gets the markup the origin made for it.
//!
//! `https://Shop.Example/p?utm_source=x&b=2&a=1` from a phone → `shop.example/p?a=1&b=2#mobile`.

use tessera_sdk::{EdgeScript, Request};

/// Query parameter names that only track the visitor and never change the page.
pub const TRACKING_PARAMS: &[&str] = &["fbclid", "gclid", "ref"];

/// Prefix of campaign-tracking parameter names (`utm_source`, `utm_medium`, …).
pub const TRACKING_PREFIX: &str = "utm_";

/// The script: only `cache_key` is defined.
pub struct NormalizeKey;

// It reads four parts of a request and nothing else: the host passes only those, and a site
// with `key_memo_kib` reuses a key for requests equal in all four.
#[tessera_sdk::script(reusable, key_reads(authority, path, query, device))]
impl EdgeScript for NormalizeKey {
    fn cache_key(req: &Request, _default_key: &str) -> String {
        let mut query = req.query();
        query.remove_prefix(TRACKING_PREFIX);
        for name in TRACKING_PARAMS {
            query.remove(name);
        }
        query.sort();

        let authority = req.authority.to_ascii_lowercase();
        let device = req.client.device;
        if query.is_empty() {
            format!("{authority}{}#{device}", req.path)
        } else {
            format!("{authority}{}?{query}#{device}", req.path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NormalizeKey;
    use tessera_sdk::testing::{call_cache_key, describe, request};
    use tessera_sdk::{DeviceClass, HookSet, RequestParts, RequestReads, ScriptInfo};

    fn key(req: &tessera_sdk::Request) -> String {
        call_cache_key::<NormalizeKey>(req, "ignored/default?z=1")
    }

    #[test]
    fn tracking_parameters_are_dropped_and_the_rest_sorted() {
        let req = request("/p?utm_source=news&b=2&fbclid=abc&a=1&gclid=x&ref=home&utm_campaign=c")
            .build();
        assert_eq!(key(&req), "example.com/p?a=1&b=2#desktop");
    }

    #[test]
    fn query_made_only_of_tracking_parameters_leaves_no_question_mark() {
        let req = request("/p?utm_medium=email&ref").build();
        assert_eq!(key(&req), "example.com/p#desktop");
        assert_eq!(key(&request("/p").build()), "example.com/p#desktop");
        assert_eq!(key(&request("/p?").build()), "example.com/p#desktop");
    }

    #[test]
    fn same_page_with_different_tracking_shares_a_key() {
        let a = request("/shoes?size=42&utm_source=a").build();
        let b = request("/shoes?gclid=zz&size=42").build();
        assert_eq!(key(&a), key(&b));
    }

    #[test]
    fn device_class_separates_entries() {
        let keys: Vec<String> = [
            DeviceClass::Desktop,
            DeviceClass::Mobile,
            DeviceClass::Tablet,
            DeviceClass::Bot,
        ]
        .into_iter()
        .map(|d| key(&request("/").device(d).build()))
        .collect();
        assert_eq!(
            keys,
            [
                "example.com/#desktop",
                "example.com/#mobile",
                "example.com/#tablet",
                "example.com/#bot"
            ]
        );
    }

    #[test]
    fn authority_is_lower_cased_but_path_and_encoding_are_kept() {
        let req = request("/A%2Fb?q=Red%20Shoes&Q=1")
            .authority("Shop.EXAMPLE:8443")
            .build();
        assert_eq!(
            key(&req),
            "shop.example:8443/A%2Fb?Q=1&q=Red%20Shoes#desktop"
        );
    }

    #[test]
    fn flags_and_empty_values_stay_distinct() {
        let req = request("/s?q=&preview").build();
        assert_eq!(key(&req), "example.com/s?preview&q=#desktop");
    }

    #[test]
    fn parameters_that_merely_resemble_tracking_ones_are_kept() {
        let req = request("/p?utm=1&referrer=x&refs=2").build();
        assert_eq!(key(&req), "example.com/p?referrer=x&refs=2&utm=1#desktop");
    }

    #[test]
    fn other_hooks_are_left_to_the_host() {
        assert_eq!(
            describe::<NormalizeKey>(),
            ScriptInfo {
                hooks: HookSet::CACHE_KEY,
                keep_state: false,
                reusable: true,
                key_reads: Some(RequestReads {
                    parts: RequestParts::AUTHORITY
                        | RequestParts::PATH
                        | RequestParts::QUERY
                        | RequestParts::DEVICE,
                    headers: vec![],
                }),
            }
        );
    }
}
