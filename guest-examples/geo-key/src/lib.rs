//! Example script: one cache entry per page and region, from the client's country.
//!
//! The host fills `client.country` from a header a trusted upstream sets (`[server]
//! client_country_header = "cf-ipcountry"`; two letters, else absent). `on_request` maps it
//! to a region ([`region`]: `eu`, `na`, `latam`, `apac`, else `row`) and tells the origin in
//! `x-edge-region`, overwriting whatever a client sent there; `cache_key` appends it. The
//! origin must render by `x-edge-region` only: a page that differed by country within a
//! region would be shared across that region.

use tessera_sdk::{EdgeScript, HeaderEdits, Request, RequestAction};

/// The request field the origin reads the region from.
pub const REGION_HEADER: &str = "x-edge-region";

const EU: &[&str] = &[
    "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GR", "HR", "HU",
    "IE", "IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
];
const NA: &[&str] = &["US", "CA", "MX"];
const LATAM: &[&str] = &[
    "AR", "BO", "BR", "CL", "CO", "CR", "EC", "PE", "PY", "UY", "VE",
];
const APAC: &[&str] = &[
    "AU", "CN", "HK", "ID", "IN", "JP", "KR", "MY", "NZ", "PH", "SG", "TH", "TW", "VN",
];

/// The region of a two-letter country code (any case); `row` (rest of world) otherwise.
pub fn region(country: Option<&str>) -> &'static str {
    let Some(c) = country.map(str::to_ascii_uppercase) else {
        return "row";
    };
    [("eu", EU), ("na", NA), ("latam", LATAM), ("apac", APAC)]
        .into_iter()
        .find(|(_, list)| list.contains(&c.as_str()))
        .map_or("row", |(r, _)| r)
}

/// The script.
pub struct GeoKey;

#[tessera_sdk::script]
impl EdgeScript for GeoKey {
    fn on_request(req: &Request) -> RequestAction {
        let r = region(req.client.country.as_deref());
        RequestAction::proceed_with(HeaderEdits::new().set(REGION_HEADER, r))
    }

    fn cache_key(req: &Request, default_key: &str) -> String {
        // Computed again rather than read back from the request, so that the key can never
        // come from a value a client sent.
        format!("{default_key}#{}", region(req.client.country.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::testing::{call_cache_key, call_on_request, describe, request};
    use tessera_sdk::{HookSet, ScriptInfo};

    #[test]
    fn countries_map_to_regions_and_anything_else_to_the_rest_of_the_world() {
        for (c, r) in [
            (Some("DE"), "eu"),
            (Some("fr"), "eu"),
            (Some("US"), "na"),
            (Some("BR"), "latam"),
            (Some("JP"), "apac"),
            (Some("ZA"), "row"),
            (Some("XX"), "row"),
            (Some(""), "row"),
            (None, "row"),
        ] {
            assert_eq!(region(c), r, "{c:?}");
        }
    }

    #[test]
    fn the_region_is_in_the_key_and_told_to_the_origin() {
        let de = request("/p").country("DE").build();
        let fr = request("/p").country("FR").build();
        let us = request("/p").country("US").build();
        let key = |r| call_cache_key::<GeoKey>(r, "example.com/p");
        assert_eq!(key(&de), "example.com/p#eu");
        assert_eq!(key(&de), key(&fr));
        assert_ne!(key(&de), key(&us));
        let spoofed = request("/p").header(REGION_HEADER, "na").build();
        assert_eq!(
            key(&spoofed),
            "example.com/p#row",
            "a client's header is not the key"
        );
        let RequestAction::Continue(edits) = call_on_request::<GeoKey>(&spoofed) else {
            panic!("on_request must continue")
        };
        assert_eq!(edits.set, [(REGION_HEADER.to_owned(), "row".to_owned())]);
    }

    #[test]
    fn on_request_and_cache_key_are_implemented() {
        assert_eq!(
            describe::<GeoKey>(),
            ScriptInfo {
                hooks: HookSet::ON_REQUEST | HookSet::CACHE_KEY,
                keep_state: false,
                reusable: false,
                key_reads: None,
            }
        );
    }
}
