//! Phase "fetch": one origin exchange for the cache path, then admission and storage.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};

use super::admit::{self, Proposal};
use super::deliver::{self, add_personal, Answer};
use super::driver::{Exchange, Flight};
use super::headers::{
    append_forwarded, append_forwarded_for, append_via, strip_hop_by_hop, CONDITIONAL,
};
use super::lookup::Stale;
use super::outcome::{NoStore, Outcome, StaleReason};
use super::stream::{self, Pending};
use super::tier::{self, Target};
use crate::cache::conditional;
use crate::cache::freshness::ExchangeTimes;
use crate::cache::{Decision, Fwd, StoreKey};
use crate::guest::Hook;
use crate::origin::{collect_limited, empty, Collected, OutBody};

/// The request to the origin: forwarding fields added, and on the cache path only the
/// query parameters the key kept.
pub fn origin_request(
    x: &Exchange,
    method: Method,
    headers: HeaderMap,
    body: OutBody,
    cache_path: bool,
) -> Request<OutBody> {
    let origin = Target {
        base: &x.site.cfg.origin,
        shield: false,
    };
    upstream_request(x, origin, method, headers, body, cache_path)
}

/// [`origin_request`] for a target: the origin, or a shield (which gets the client's Host).
pub fn upstream_request(
    x: &Exchange,
    to: Target<'_>,
    method: Method,
    mut headers: HeaderMap,
    body: OutBody,
    cache_path: bool,
) -> Request<OutBody> {
    let origin = to.base;
    // RFC 9112 §3.2.2: the Host sent on is the authority the request was routed and keyed
    // by. From an absolute-form target that is not the client's Host field, which a
    // proxy must not forward: the origin would answer for another host than the key says.
    if let Ok(v) = HeaderValue::from_str(&x.req.authority) {
        if !v.is_empty() {
            headers.insert(http::header::HOST, v);
        }
    }
    if to.shield {
        tier::for_shield(&mut headers, &x.req.authority, &x.req.client);
    }
    let path = x.req.path();
    let target = match (&x.origin_query, cache_path) {
        (Some(Some(q)), true) => format!("{path}?{q}"),
        (Some(None), true) => path.to_owned(),
        _ => x
            .req
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
    };
    let url = format!(
        "{}://{}{}",
        origin.scheme_str().unwrap_or("http"),
        origin.authority().map(|a| a.as_str()).unwrap_or_default(),
        target
    );
    append_forwarded_for(&mut headers, x.req.client.ip);
    append_forwarded(
        &mut headers,
        x.req.client.ip,
        x.req.scheme,
        &x.req.authority,
    );
    headers.insert(
        "surrogate-capability",
        HeaderValue::from_static(crate::html::esi::SURROGATE_CAPABILITY),
    );
    append_via(&mut headers, &x.gen.config.node_name);
    headers.insert(
        "x-request-id",
        HeaderValue::from_str(&x.id).unwrap_or(HeaderValue::from_static("-")),
    );
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = url.parse().unwrap_or_else(|_| origin.clone());
    *req.headers_mut() = headers;
    req
}

/// Fetches for `key` (conditionally when revalidating `stale`), decides admission through
/// the site's script, stores, and answers this request; the flight tells waiting requests.
pub async fn fill(
    x: &mut Exchange,
    key: &StoreKey,
    fwd: Fwd,
    stale: Option<Stale>,
) -> (Answer, Pending) {
    let mut headers = x.req.headers.clone();
    // The cache fills with a complete, unconditional response of its own and then answers
    // the client's conditions and ranges itself (RFC 9111 §4.3.2).
    for h in CONDITIONAL {
        headers.remove(h);
    }
    if let Some(s) = &stale {
        if let Some(etag) = s.entry.headers().get(&header::ETAG) {
            headers.insert(header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = s.entry.headers().get(&header::LAST_MODIFIED) {
            headers.insert(header::IF_MODIFIED_SINCE, lm);
        }
    }
    let clock = x.shared.clock.clone();
    let request_time = clock.now();
    let asked = std::time::Instant::now();
    let build =
        |to: Target<'_>| upstream_request(x, to, Method::GET, headers.clone(), empty(), true);
    let sent = tier::send(x, true, build).await;
    x.origin_wait += asked.elapsed();
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            let answer = match &stale {
                Some(s) if s.serve_on_error => stale_answer(x, s, e.detail()),
                _ => deliver::origin_error(&e, fwd),
            };
            return (answer, Pending::Now(Flight::Failed(e)));
        }
    };
    let times = ExchangeTimes {
        request_time,
        response_time: clock.now(),
    };
    let (mut head, body) = resp.into_parts();
    strip_hop_by_hop(&mut head.headers);
    let code = head.status.as_u16();

    if let Some(s) = &stale {
        if head.status == StatusCode::NOT_MODIFIED {
            return match revalidated(x, key, s, &head.headers, times, fwd).await {
                Some((answer, flight)) => (answer, Pending::Now(flight)),
                // The 304 is about some other response: fetch the real thing.
                None => Box::pin(fill(x, key, fwd, None)).await,
            };
        }
        if head.status.is_server_error() && s.serve_on_error {
            // RFC 5861 §4: a good stale copy beats an error.
            return (
                stale_answer(x, s, "origin-error"),
                Pending::Now(Flight::Stored(s.entry.clone(), code)),
            );
        }
    }

    let (plan, esi) = admission(
        x,
        key,
        head.status,
        head.headers.clone(),
        times,
        stale.is_some(),
    )
    .await;
    let plan = match plan {
        Ok(plan) => plan,
        Err(why) => {
            let outcome = Outcome::Forwarded {
                fwd,
                status: code,
                stored: Err(why),
            };
            return (
                deliver::streamed(head, body, outcome),
                Pending::Now(Flight::Pass),
            );
        }
    };
    if stream::eligible(x, esi) {
        // The client reads as the origin sends; the cache fills from the same chunks.
        return stream::fill(x, key, plan, body, fwd, clock.now());
    }
    let (answer, flight) = collect(x, key, plan, head, body, fwd, esi).await;
    (answer, Pending::Now(flight))
}

/// The rest of a fill when the body is read whole before anyone gets it (a range, a
/// precondition, an ESI page): stored if it fits.
async fn collect(
    x: &mut Exchange,
    key: &StoreKey,
    plan: admit::Plan,
    head: http::response::Parts,
    body: crate::origin::OriginBody,
    fwd: Fwd,
    esi: bool,
) -> (Answer, Flight) {
    let clock = x.shared.clock.clone();
    let code = head.status.as_u16();
    let limit = x.gen.config.cache.max_object_bytes;
    match collect_limited(body, limit, x.site.origin.response_timeout()).await {
        Err(e) => (deliver::origin_error(&e, fwd), Flight::Failed(e)),
        Ok(Collected::TooLarge(prefix, rest)) => {
            x.shared.store.mark_uncacheable(key);
            let outcome = Outcome::Forwarded {
                fwd,
                status: code,
                stored: Err(NoStore::TooLarge),
            };
            let response = crate::origin::prefixed(head, prefix, rest);
            (Answer::new(response, outcome), Flight::Pass)
        }
        Ok(Collected::Complete(bytes)) => {
            let admit::Plan { entry, personal } = plan;
            let mut entry = entry.with_body_of(&[bytes]);
            if esi {
                // Parsed once, now: hits only stitch.
                if let Err(e) = entry.prepare_esi(limit) {
                    let e = crate::origin::OriginError::Connect(format!("esi page: {e}"));
                    return (deliver::origin_error(&e, fwd), Flight::Failed(e));
                }
            }
            let entry = Arc::new(entry);
            x.shared.store.insert(key, entry.clone());
            let outcome = Outcome::Forwarded {
                fwd,
                status: code,
                stored: Ok(()),
            };
            let mut answer = deliver::from_entry(&x.req, &entry, outcome, clock.now());
            add_personal(&mut answer.response, personal);
            (answer, Flight::Stored(entry, code))
        }
    }
}

/// What a response for this request may leave in the cache: RFC 9111 and the site's
/// defaults propose, the script's `cache_policy` amends, `admit::plan` holds back what is
/// personal. Why nothing is kept marks the key uncacheable when it should; also whether the
/// response is an ESI page. `replaces_stale`: a stored copy is being revalidated (an error
/// never replaces it).
pub(super) async fn admission(
    x: &mut Exchange,
    key: &StoreKey,
    status: StatusCode,
    headers: HeaderMap,
    times: ExchangeTimes,
    replaces_stale: bool,
) -> (Result<admit::Plan, NoStore>, bool) {
    let too_large = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|len| len > x.gen.config.cache.max_object_bytes);
    let tags = admit::surrogate_keys(&headers);
    let proposal = admit::propose(
        &x.site.cfg.caching,
        &x.site.targets,
        &x.req.headers,
        status,
        headers,
        times,
        tags,
    );
    let esi = crate::html::esi::active(
        &x.site.cfg.esi,
        proposal.ctl.surrogate_content.as_deref(),
        x.req.path(),
    ) && status.is_success();
    let decision = match decide(x, status, &proposal).await {
        // An error is stored only to shield the origin; it never evicts a good copy that a
        // later request may still be allowed to serve stale.
        Ok(_) if replaces_stale && status.is_server_error() => Err(NoStore::KeptStaleCopy),
        other => other,
    };
    let plan = decision.and_then(|d| {
        if too_large {
            return Err(NoStore::TooLarge);
        }
        admit::plan(proposal, d, status, &x.req.headers, times, x.uri.clone())
    });
    if let Err(why) = &plan {
        if why.marks_uncacheable() {
            x.shared.store.mark_uncacheable(key);
        }
    }
    (plan, esi)
}

/// The proposal, as the site's script amends it; a failing script means "not stored".
async fn decide(x: &mut Exchange, status: StatusCode, p: &Proposal) -> Result<Decision, NoStore> {
    if !x.chain.implements(Hook::CachePolicy) {
        return Ok(p.decision.clone());
    }
    x.chain
        .cache_policy(&x.req, status, &p.headers, p.decision.clone())
        .await
        .map_err(NoStore::ScriptFailed)
}

/// A 304 answered a revalidation (RFC 9111 §4.3.3, §4.3.4). `None` when it does not
/// identify the stored response, which then cannot be used.
async fn revalidated(
    x: &mut Exchange,
    key: &StoreKey,
    s: &Stale,
    not_modified: &HeaderMap,
    times: ExchangeTimes,
    fwd: Fwd,
) -> Option<(Answer, Flight)> {
    // Copied, not shared: the stored entry's buffer stays solely its own.
    let mut stored = s.entry.headers().to_map();
    if !conditional::selects_for_update(&stored, not_modified) {
        return None;
    }
    conditional::update_stored_headers(&mut stored, not_modified);
    let status = s.entry.status;
    // The freshened response is judged anew: the origin may now say no-store or private,
    // and the script may now refuse it.
    let proposal = admit::propose(
        &x.site.cfg.caching,
        &x.site.targets,
        &x.req.headers,
        status,
        stored,
        times,
        s.entry.tags().to_vec(),
    );
    let response_headers = proposal.headers.clone();
    let plan = match decide(x, status, &proposal).await {
        Ok(d) => admit::plan(proposal, d, status, &x.req.headers, times, x.uri.clone()),
        Err(why) => Err(why),
    };
    let now = x.shared.clock.now();
    match plan {
        Ok(plan) => {
            let (mut entry, personal) = plan.with_body(s.entry.payload.body_shared());
            entry.set_esi(s.entry.esi().cloned());
            let entry = Arc::new(entry);
            x.shared.store.insert(key, entry.clone());
            let outcome = Outcome::Forwarded {
                fwd,
                status: 304,
                stored: Ok(()),
            };
            let mut answer = deliver::from_entry(&x.req, &entry, outcome, now);
            add_personal(&mut answer.response, personal);
            Some((answer, Flight::Stored(entry, 304)))
        }
        Err(why) => {
            // No longer storable: the old copy goes, and only this client gets the body.
            x.shared.store.remove(key);
            let outcome = Outcome::Forwarded {
                fwd,
                status: 304,
                stored: Err(why),
            };
            let answer = deliver::whole(status, response_headers, s.entry.body_to_send(), outcome);
            Some((answer, Flight::Pass))
        }
    }
}

/// Serves the stale copy in place of an origin failure.
pub fn stale_answer(x: &Exchange, s: &Stale, why: &'static str) -> Answer {
    deliver::from_entry(
        &x.req,
        &s.entry,
        Outcome::StaleHit(StaleReason::IfError(why)),
        x.shared.clock.now(),
    )
}
