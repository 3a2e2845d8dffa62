//! Property tests for the parsers that read network bytes: directives, Vary, keys, dates,
//! conditionals. Whatever a client or origin sends, they never panic and keep their promises.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use proptest::prelude::*;

use super::conditional;
use super::directives::{effective_response_control, CacheControl, Targets, DELTA_SECONDS_MAX};
use super::freshness::{self, ExchangeTimes, Heuristic};
use super::key::{default_key, origin_query};
use super::vary::{variant_id, VaryKey};

/// Any field value a peer can send: visible ASCII, tabs and obs-text bytes.
fn value() -> impl Strategy<Value = HeaderValue> {
    proptest::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..80)
        .prop_map(|b| HeaderValue::from_bytes(&b).expect("no CR, LF or NUL"))
}

/// Text made of the characters that matter to directive and list syntax.
fn syntax() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r#"[a-zA-Z0-9=,;" \t\-_*/\\.:+]{0,60}"#).unwrap()
}

fn map(pairs: Vec<(&'static str, HeaderValue)>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(HeaderName::from_static(n), v);
    }
    h
}

fn times() -> ExchangeTimes {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    ExchangeTimes {
        request_time: t,
        response_time: t,
    }
}

proptest! {
    #[test]
    fn directives_never_panic_and_clamp_delta_seconds(text in syntax(), n in any::<u64>()) {
        let _ = CacheControl::parse([text.as_str()]);
        let cc = CacheControl::parse([format!("max-age={n}").as_str()]);
        prop_assert_eq!(cc.max_age, Some(n.min(u64::from(DELTA_SECONDS_MAX)) as u32));
    }

    #[test]
    fn known_directives_survive_case_spacing_and_junk(
        age in 0u32..1_000_000,
        upper in any::<bool>(),
        pad in "[ \t]{0,3}",
        junk in "[a-z]{1,8}(=[a-z0-9]{0,4})?",
    ) {
        let d = format!("{pad}{junk},{pad}max-age={age}{pad},no-store");
        let d = if upper { d.to_uppercase() } else { d };
        let cc = CacheControl::parse([d.as_str()]);
        prop_assert_eq!(cc.max_age, Some(age));
        prop_assert!(cc.no_store);
    }

    #[test]
    fn any_response_fields_give_a_decision_without_panicking(
        cc in value(), cdn in value(), surrogate in value(), expires in value(),
        age in value(), date in value(), lm in value(), vary in value(), status in 100u16..600,
    ) {
        let h = map(vec![
            ("cache-control", cc), ("cdn-cache-control", cdn), ("surrogate-control", surrogate),
            ("expires", expires), ("age", age), ("date", date), ("last-modified", lm), ("vary", vary),
        ]);
        let ctl = effective_response_control(&h, &Targets::default());
        let status = StatusCode::from_u16(status).unwrap();
        let life = freshness::freshness_lifetime(status, &h, &ctl, times(), &Heuristic::default());
        prop_assert!(life.ttl <= Duration::from_secs(u64::from(DELTA_SECONDS_MAX)));
        let _ = freshness::storable(&Method::GET, &HeaderMap::new(), status, &h, &ctl, false);
        let _ = freshness::corrected_initial_age(&h, times());
    }

    #[test]
    fn a_vary_key_selects_the_request_it_was_made_from(
        names in "[a-zA-Z, *-]{0,40}", a in value(), b in value(),
    ) {
        let Ok(vary) = HeaderValue::from_str(&names) else { return Ok(()) };
        let resp = map(vec![("vary", vary)]);
        let req = map(vec![("accept-language", a), ("x-device", b)]);
        let key = VaryKey::of(&resp, &req);
        if key != VaryKey::Never {
            prop_assert!(key.matches(&req));
        }
        let _ = variant_id(&key.names(), &req);
    }

    #[test]
    fn default_keys_are_canonical_and_drop_tracking(
        authority in "[a-zA-Z0-9.:-]{1,20}",
        path in "/[a-zA-Z0-9/%._~-]{0,30}",
        pairs in proptest::collection::vec("(utm_[a-z]{1,5}|fbclid|gclid|[a-z]{1,4})(=[a-zA-Z0-9%]{0,5})?", 0..8),
    ) {
        let query = pairs.join("&");
        let q = (!query.is_empty()).then_some(query.as_str());
        let key = default_key(&authority, &path, q);
        prop_assert!(!key.contains("utm_") && !key.contains("fbclid") && !key.contains("gclid"));
        // Idempotent: the key of the key's own query is the key.
        let (_, kq) = key.split_once('?').map_or((key.as_str(), None), |(a, b)| (a, Some(b)));
        prop_assert_eq!(default_key(&authority, &path, kq), key.clone());
        // The origin is sent exactly the keyed parameters.
        if let Some(Some(sent)) = origin_query(q, &key) {
            for p in sent.split('&') {
                prop_assert!(!p.starts_with("utm_") && !p.starts_with("fbclid") && !p.starts_with("gclid"));
            }
        }
    }

    #[test]
    fn origin_query_only_ever_removes(query in "[a-z=&%0-9]{0,40}", key in "[a-z=&?#%0-9/]{0,40}") {
        if let Some(kept) = origin_query(Some(&query), &key) {
            let original: Vec<&str> = query.split('&').collect();
            for p in kept.iter().flat_map(|k| k.split('&')) {
                prop_assert!(original.contains(&p));
            }
        }
    }

    #[test]
    fn http_dates_round_trip_and_garbage_is_no_date(secs in 0u64..4_000_000_000, junk in value()) {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let h = map(vec![("date", HeaderValue::from_str(&httpdate::fmt_http_date(t)).unwrap())]);
        prop_assert_eq!(freshness::http_date(&h, &http::header::DATE), Some(t));
        let _ = freshness::http_date(&map(vec![("date", junk)]), &http::header::DATE);
    }

    #[test]
    fn preconditions_never_panic(inm in value(), im in value(), ims in value(), ius in value(), etag in value(), lm in value()) {
        let req = map(vec![
            ("if-none-match", inm), ("if-match", im), ("if-modified-since", ims), ("if-unmodified-since", ius),
        ]);
        let stored = map(vec![("etag", etag), ("last-modified", lm)]);
        let _ = conditional::evaluate(&Method::GET, &req, &stored);
        let _ = conditional::selects_for_update(&stored, &req);
    }
}
