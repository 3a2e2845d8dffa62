//! Example script: edge TTLs by content type, no storage for cart and checkout, purge tags from the path.
//!
//! `cache_policy` keeps the host's `store` verdict (so `private`, `no-store` or cookie-setting
//! responses stay uncached) and, for successful (2xx) responses, sets the freshness by media type:
//!
//! | media type         | ttl             | stale-while-revalidate |
//! |--------------------|-----------------|------------------------|
//! | `image/*`          | 30 days         | as proposed            |
//! | `application/json` | 300 s           | 3600 s                 |
//! | `text/html`        | 120 s           | as proposed            |
//! | anything else      | as proposed     | as proposed            |
//!
//! Anything under `/cart` or `/checkout` is never stored. Purge tags come from the path:
//! `section-<first segment>`, plus `<singular>-<id>` for each `/<plural>/<id>` pair, so
//! `/api/products/123` is tagged `section-api` and `product-123`.

use tessera_sdk::{CacheDecision, EdgeScript, Request, ResponseHead};

/// Freshness for images: 30 days.
pub const IMAGE_TTL: u32 = 30 * 24 * 60 * 60;
/// Freshness for JSON API responses.
pub const JSON_TTL: u32 = 300;
/// Stale-while-revalidate window for JSON API responses.
pub const JSON_SWR: u32 = 3600;
/// Freshness for HTML pages.
pub const HTML_TTL: u32 = 120;
/// Path prefixes whose responses are personal and never stored (the prefix and all below it).
pub const NO_STORE_PREFIXES: &[&str] = &["/cart", "/checkout"];

/// The script: only `cache_policy` is defined.
pub struct TtlByType;

#[tessera_sdk::script(reusable)]
impl EdgeScript for TtlByType {
    fn cache_policy(req: &Request, resp: &ResponseHead, proposed: CacheDecision) -> CacheDecision {
        if is_no_store_path(&req.path) {
            return proposed.no_store();
        }
        let mut decision = proposed;
        // Errors keep the host's (short, negative-caching) TTL.
        if (200..300).contains(&resp.status) {
            decision = match resp.media_type().as_deref() {
                Some(t) if t.starts_with("image/") => decision.with_ttl(IMAGE_TTL),
                Some("application/json") => decision
                    .with_ttl(JSON_TTL)
                    .with_stale_while_revalidate(JSON_SWR),
                Some("text/html") => decision.with_ttl(HTML_TTL),
                _ => decision,
            };
        }
        decision.with_tags(path_tags(&req.path))
    }
}

/// True for `/cart`, `/checkout` and anything below them (ASCII case-insensitive, to err on the safe side).
pub fn is_no_store_path(path: &str) -> bool {
    NO_STORE_PREFIXES.iter().any(|prefix| {
        path.len() >= prefix.len()
            && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
    })
}

/// Purge tags for `path`: `section-<first segment>` and `<singular>-<id>` per `/<plural>/<id>`.
///
/// A plural is a word ending in `s` (not `ss`); its singular drops the `s` (`ies` → `y`).
/// An id is a segment of letters, digits, `-` and `_` that holds at least one digit.
/// A lone file at the root (`/favicon.ico`) gets no section tag.
pub fn path_tags(path: &str) -> Vec<String> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut tags = Vec::new();
    if let Some(first) = segments.first() {
        if segments.len() > 1 || !first.contains('.') {
            tags.push(format!("section-{first}"));
        }
    }
    for pair in segments.windows(2) {
        if let Some(singular) = singular(pair[0]) {
            if is_id(pair[1]) {
                let tag = format!("{singular}-{}", pair[1]);
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
        }
    }
    tags
}

fn singular(word: &str) -> Option<String> {
    let plain = word.len() > 1
        && word.starts_with(|c: char| c.is_ascii_alphabetic())
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !plain || !word.ends_with('s') || word.ends_with("ss") {
        return None;
    }
    Some(match word.strip_suffix("ies") {
        Some(stem) if !stem.is_empty() => format!("{stem}y"),
        _ => word[..word.len() - 1].to_owned(),
    })
}

fn is_id(segment: &str) -> bool {
    segment.chars().any(|c| c.is_ascii_digit())
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::testing::{call_cache_policy, describe, request, response};
    use tessera_sdk::{HookSet, ScriptInfo};

    fn decide(
        path: &str,
        status: u16,
        content_type: &str,
        proposed: CacheDecision,
    ) -> CacheDecision {
        let req = request(path).build();
        let resp = response(status)
            .header("content-type", content_type)
            .build();
        call_cache_policy::<TtlByType>(&req, &resp, &proposed)
    }

    fn proposed() -> CacheDecision {
        CacheDecision::cache_for(60)
            .with_stale_while_revalidate(5)
            .with_stale_if_error(7)
    }

    #[test]
    fn images_are_fresh_for_thirty_days() {
        let d = decide("/img/logo.png", 200, "image/png", proposed());
        assert_eq!(
            (d.store, d.ttl, d.stale_while_revalidate, d.stale_if_error),
            (true, 2_592_000, 5, 7)
        );
    }

    #[test]
    fn json_gets_five_minutes_and_an_hour_of_stale_while_revalidate() {
        let d = decide(
            "/api/products/123",
            200,
            "application/json; charset=utf-8",
            proposed(),
        );
        assert_eq!(
            (d.ttl, d.stale_while_revalidate, d.stale_if_error),
            (300, 3600, 7)
        );
        assert_eq!(d.tags, ["section-api", "product-123"]);
    }

    #[test]
    fn html_gets_two_minutes() {
        let d = decide("/", 200, "Text/HTML; charset=UTF-8", proposed());
        assert_eq!((d.ttl, d.stale_while_revalidate), (120, 5));
        assert!(d.tags.is_empty());
    }

    #[test]
    fn other_types_and_missing_type_keep_the_proposed_decision() {
        assert_eq!(decide("/f.css", 200, "text/css", proposed()), proposed());
        let req = request("/robots.txt").build();
        let d = call_cache_policy::<TtlByType>(&req, &response(200).build(), &proposed());
        assert_eq!(d, proposed());
    }

    #[test]
    fn host_refusal_to_store_is_kept() {
        let d = decide("/products/1", 200, "text/html", proposed().no_store());
        assert!(!d.store);
        assert_eq!(d.ttl, 120);
    }

    #[test]
    fn error_responses_keep_the_proposed_ttl() {
        let d = decide(
            "/products/1",
            404,
            "text/html",
            CacheDecision::cache_for(60),
        );
        assert_eq!(d.ttl, 60);
        assert_eq!(d.tags, ["section-products", "product-1"]);
    }

    #[test]
    fn cart_and_checkout_are_never_stored() {
        for path in [
            "/cart",
            "/cart/",
            "/cart/items/3",
            "/checkout",
            "/checkout/pay",
            "/CART",
        ] {
            assert!(!decide(path, 200, "text/html", proposed()).store, "{path}");
        }
        for path in [
            "/carton",
            "/cartography",
            "/checkouts-info",
            "/products/cart",
        ] {
            assert!(decide(path, 200, "text/html", proposed()).store, "{path}");
        }
    }

    #[test]
    fn proposed_tags_are_kept_and_not_duplicated() {
        let d = decide(
            "/products/9",
            200,
            "text/html",
            proposed().with_tag("product-9").with_tag("x"),
        );
        assert_eq!(d.tags, ["product-9", "x", "section-products"]);
    }

    #[test]
    fn tags_follow_plural_id_pairs() {
        assert_eq!(
            path_tags("/products/123"),
            ["section-products", "product-123"]
        );
        assert_eq!(
            path_tags("/api/products/123"),
            ["section-api", "product-123"]
        );
        assert_eq!(
            path_tags("/categories/7/products/sku-42/reviews"),
            ["section-categories", "category-7", "product-sku-42"]
        );
        assert_eq!(
            path_tags("/blog/posts/2024-hello-world"),
            ["section-blog", "post-2024-hello-world"]
        );
    }

    #[test]
    fn segments_that_are_not_plural_id_pairs_give_no_item_tag() {
        assert_eq!(path_tags("/about"), ["section-about"]);
        assert_eq!(path_tags("/products/new"), ["section-products"]);
        assert_eq!(path_tags("/address/12"), ["section-address"]);
        assert_eq!(path_tags("/s/12"), ["section-s"]);
        assert_eq!(path_tags("/products/12.json"), ["section-products"]);
        assert!(path_tags("/").is_empty());
        assert!(path_tags("/favicon.ico").is_empty());
        assert_eq!(path_tags("/static/app.js"), ["section-static"]);
    }

    #[test]
    fn other_hooks_are_left_to_the_host() {
        assert_eq!(
            describe::<TtlByType>(),
            ScriptInfo {
                hooks: HookSet::CACHE_POLICY,
                keep_state: false,
                reusable: true,
                key_reads: None,
            }
        );
    }
}
