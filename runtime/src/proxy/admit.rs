//! Phase "admit": may this response be stored, and for how long? Pure decisions.
//!
//! [`propose`] applies RFC 9111 and the site's defaults; the site's script may then change
//! the proposal (`cache_policy`); [`plan`] turns the final decision into what is stored,
//! holding back whatever belongs to the one client whose request fetched it.
//!
//! The sharing rule: a stored response is served without asking the origin (fresh hits,
//! `max-stale`, stale-while-revalidate, stale-if-error) only if something explicitly allowed
//! it to be shared for a while: a positive freshness lifetime (explicit, heuristic, a
//! `negative_ttl`, or set by the script), a stale window from the origin or the script, or
//! `public`. Otherwise it is kept only to be revalidated (every reuse asks the origin), and
//! not kept at all if it has no validator to revalidate with.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use super::outcome::NoStore;
use crate::cache::directives::{effective_response_control, EffectiveControl, Targets};
use crate::cache::freshness::{self, ExchangeTimes, Heuristic, NotStorable};
use crate::cache::vary::VaryKey;
use crate::cache::{Decision, Entry, Extras};
use crate::config::CachePolicyConfig;

/// What the standards and the site's defaults propose for one response.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// The proposed decision (a script may change it).
    pub decision: Decision,
    /// Why `decision.store` is false, when it is.
    pub refused: Option<NotStorable>,
    /// The response's caching directives for this cache.
    pub ctl: EffectiveControl,
    /// The response headers, with `Date` added if the origin sent none.
    pub headers: HeaderMap,
}

/// What is stored (everything but the body) and what only the fetching client gets.
#[derive(Debug)]
pub struct Plan {
    /// The entry, with an empty body.
    pub entry: Entry,
    /// Fields held back from the stored copy (`Set-Cookie`, qualified `private` /
    /// `no-cache` fields): the client whose request fetched the response still gets them.
    pub personal: HeaderMap,
}

impl Plan {
    /// The entry with its body.
    pub fn with_body(self, body: Bytes) -> (Entry, HeaderMap) {
        (self.entry.with_body(body), self.personal)
    }
}

/// Applies RFC 9111 §3 and §4.2 and the site's defaults to a response for a GET.
pub fn propose(
    cfg: &CachePolicyConfig,
    targets: &Targets,
    req: &HeaderMap,
    status: StatusCode,
    mut headers: HeaderMap,
    times: ExchangeTimes,
    tags: Vec<String>,
) -> Proposal {
    let ctl = effective_response_control(&headers, targets);
    if !headers.contains_key(header::DATE) {
        // RFC 9110 §6.6.1: a cache records when it received a Date-less response.
        let date = httpdate::fmt_http_date(times.response_time);
        headers.insert(
            header::DATE,
            HeaderValue::from_str(&date).expect("http-date is ascii"),
        );
    }
    let storable = freshness::storable(
        &Method::GET,
        req,
        status,
        &headers,
        &ctl,
        cfg.allow_set_cookie,
    );
    let lifetime =
        freshness::freshness_lifetime(status, &headers, &ctl, times, &Heuristic::default());
    let explicit = freshness::has_explicit_freshness(&headers, &ctl);
    let negative = cfg
        .negative_ttl
        .get(&status.as_u16())
        .copied()
        .filter(|_| !explicit);
    let (store, ttl, refused) = match (storable, negative) {
        (Ok(()), Some(neg)) | (Err(NotStorable::NoFreshness), Some(neg)) => (true, neg, None),
        (Ok(()), None) => (true, lifetime.ttl, None),
        (Err(r), _) => (false, Duration::ZERO, Some(r)),
    };
    // The site's stale defaults extend a lifetime; they never make a response without one
    // shareable.
    let site_default = |d: Duration| if ttl.is_zero() { Duration::ZERO } else { d };
    let secs = |v: Option<u32>| v.map(|s| Duration::from_secs(u64::from(s)));
    let decision = Decision {
        store,
        ttl,
        swr: secs(ctl.cc.stale_while_revalidate)
            .unwrap_or(site_default(cfg.stale_while_revalidate)),
        sie: secs(ctl.cc.stale_if_error).unwrap_or(site_default(cfg.stale_if_error)),
        tags,
    };
    Proposal {
        decision,
        refused,
        ctl,
        headers,
    }
}

/// Turns the final decision into what is stored, or why nothing is.
pub fn plan(
    proposal: Proposal,
    decision: Decision,
    status: StatusCode,
    req: &HeaderMap,
    times: ExchangeTimes,
    uri: Arc<str>,
) -> Result<Plan, NoStore> {
    let Proposal {
        refused,
        ctl,
        mut headers,
        ..
    } = proposal;
    if !decision.store {
        return Err(match refused {
            Some(r) => NoStore::Rfc(r),
            None => NoStore::Script,
        });
    }
    // Whatever a script says, a partial or interim response is not a complete one.
    let code = status.as_u16();
    if code == 206 {
        return Err(NoStore::Rfc(NotStorable::Partial));
    }
    if code < 200 || code == 304 {
        return Err(NoStore::Rfc(NotStorable::Status));
    }
    let has_validator =
        headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED);
    let shareable = !decision.ttl.is_zero()
        || !decision.swr.is_zero()
        || !decision.sie.is_zero()
        || ctl.cc.public;
    if !shareable && !has_validator {
        return Err(NoStore::NoPermission);
    }
    // Fields a shared cache must not hand to others (RFC 9111 §5.2.2.4, §5.2.2.7), and the
    // cookie of the client who caused the fetch: never replayed to anyone else.
    let mut personal = HeaderMap::new();
    let mut hold_back = freshness::fields_to_strip(&ctl);
    hold_back.push(header::SET_COOKIE);
    for name in hold_back {
        for v in headers.get_all(&name) {
            personal.append(name.clone(), v.clone());
        }
        headers.remove(&name);
    }
    let must_revalidate = ctl.cc.must_revalidate
        || ctl.cc.proxy_revalidate
        || ctl.cc.s_maxage.is_some()
        || !shareable;
    let entry = Entry {
        status,
        extras: Extras::boxed(decision.tags.into(), VaryKey::of(&headers, req), None),
        initial_age: freshness::corrected_initial_age(&headers, times).into(),
        payload: crate::cache::Payload::head(&headers),
        response_time: times.response_time.into(),
        ttl: decision.ttl.into(),
        swr: if shareable {
            decision.swr
        } else {
            Duration::ZERO
        }
        .into(),
        sie: if shareable {
            decision.sie
        } else {
            Duration::ZERO
        }
        .into(),
        no_cache: ctl.cc.no_cache_unqualified(),
        must_revalidate,
        uri,
        purged_at_age: std::sync::atomic::AtomicU64::new(u64::MAX),
        encoded: Default::default(),
    };
    Ok(Plan { entry, personal })
}

/// Tags from `Surrogate-Key` (space-separated, Fastly) and `Cache-Tag` (comma-separated),
/// capped like a script's tags.
pub fn surrogate_keys(headers: &HeaderMap) -> Vec<String> {
    use crate::guest::sanitize::{MAX_TAGS, MAX_TAG_BYTES};
    let mut tags: Vec<String> = Vec::new();
    let space = headers
        .get_all("surrogate-key")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split_ascii_whitespace());
    let comma = headers
        .get_all("cache-tag")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(str::trim));
    for t in space.chain(comma) {
        if tags.len() >= MAX_TAGS {
            break;
        }
        if !t.is_empty() && t.len() <= MAX_TAG_BYTES && !tags.iter().any(|x| x == t) {
            tags.push(t.to_owned());
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn times() -> ExchangeTimes {
        let t = SystemTime::now();
        ExchangeTimes {
            request_time: t,
            response_time: t,
        }
    }

    fn run(cfg: &CachePolicyConfig, resp: &[(&str, &str)]) -> Result<Plan, NoStore> {
        let p = propose(
            cfg,
            &Targets::default(),
            &HeaderMap::new(),
            StatusCode::OK,
            headers(resp),
            times(),
            vec![],
        );
        let d = p.decision.clone();
        plan(p, d, StatusCode::OK, &HeaderMap::new(), times(), "u".into())
    }

    #[test]
    fn a_personalised_page_without_cache_control_or_validator_is_not_kept() {
        let cfg = CachePolicyConfig {
            stale_if_error: Duration::from_secs(600),
            stale_while_revalidate: Duration::from_secs(600),
            ..Default::default()
        };
        assert_eq!(
            run(&cfg, &[("content-type", "text/html")]).unwrap_err(),
            NoStore::NoPermission
        );
    }

    #[test]
    fn a_zero_lifetime_response_with_a_validator_is_kept_only_for_revalidation() {
        let cfg = CachePolicyConfig {
            stale_if_error: Duration::from_secs(600),
            ..Default::default()
        };
        let plan = run(&cfg, &[("etag", "\"a\"")]).unwrap();
        assert!(
            plan.entry.must_revalidate,
            "never served without asking the origin"
        );
        assert_eq!(
            (plan.entry.swr.get(), plan.entry.sie.get()),
            (Duration::ZERO, Duration::ZERO)
        );
    }

    #[test]
    fn site_stale_defaults_extend_only_a_positive_lifetime() {
        let cfg = CachePolicyConfig {
            stale_if_error: Duration::from_secs(600),
            ..Default::default()
        };
        let plan = run(&cfg, &[("cache-control", "max-age=60")]).unwrap();
        assert_eq!(plan.entry.sie.get(), Duration::from_secs(600));
        assert!(!plan.entry.must_revalidate);
    }

    #[test]
    fn set_cookie_and_qualified_private_fields_stay_with_the_fetching_client() {
        let cfg = CachePolicyConfig {
            allow_set_cookie: true,
            ..Default::default()
        };
        let plan = run(
            &cfg,
            &[
                ("cache-control", "max-age=60, private=\"x-user\""),
                ("set-cookie", "session=abc"),
                ("x-user", "alice"),
            ],
        )
        .unwrap();
        assert!(!plan.entry.headers().contains(&http::header::SET_COOKIE));
        assert!(!plan.entry.headers().to_map().contains_key("x-user"));
        assert_eq!(plan.personal["set-cookie"], "session=abc");
        assert_eq!(plan.personal["x-user"], "alice");
    }

    #[test]
    fn a_script_cannot_store_a_partial_response() {
        let p = propose(
            &CachePolicyConfig::default(),
            &Targets::default(),
            &HeaderMap::new(),
            StatusCode::PARTIAL_CONTENT,
            headers(&[("cache-control", "max-age=60")]),
            times(),
            vec![],
        );
        let forced = Decision {
            store: true,
            ttl: Duration::from_secs(60),
            ..Default::default()
        };
        let r = plan(
            p,
            forced,
            StatusCode::PARTIAL_CONTENT,
            &HeaderMap::new(),
            times(),
            "u".into(),
        );
        assert_eq!(r.unwrap_err(), NoStore::Rfc(NotStorable::Partial));
    }

    #[test]
    fn surrogate_keys_are_deduplicated_and_capped() {
        let many = (0..200)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let h = headers(&[
            ("surrogate-key", "a b a"),
            ("cache-tag", "c, ,a"),
            ("cache-tag", &many),
        ]);
        let tags = surrogate_keys(&h);
        assert_eq!(&tags[..3], ["a", "b", "c"]);
        assert_eq!(tags.len(), crate::guest::sanitize::MAX_TAGS);
    }
}
