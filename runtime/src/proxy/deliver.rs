//! Phase "deliver": responses built from stored entries, `on_response`, the cache's headers.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;

use super::driver::Exchange;
use super::headers::{append_list, append_via};
use super::outcome::{Outcome, Refusal};
use super::range::{self, RangeReply};
use super::Generation;
use crate::cache::conditional::{self, Precondition};
use crate::cache::directives::strip_targeted;
use crate::cache::{Entry, Fwd};
use crate::config::GuestErrorPolicy;
use crate::guest::{GuestError, Hook, Synthetic};
use crate::html::esi::Template;
use crate::html::rewrite::{Plan, Start};
use crate::observe::{Access, Logged};
use crate::origin::{empty, full, BoxError, OriginBody, OriginError, OutBody};
use crate::request::ClientRequest;

/// A response on its way to the client, with how the cache came to it.
pub struct Answer {
    /// The response so far.
    pub response: Response<OutBody>,
    /// How the cache answered.
    pub outcome: Outcome,
    /// Remaining freshness of the stored response it came from, in seconds.
    pub ttl: Option<i64>,
    /// The stored ESI template of the response, for the assembly stage.
    pub esi: Option<Arc<Template>>,
    /// The stored entry whose whole body this response sends, while the body is still
    /// exactly that (compression at delivery keeps its encoded copies there).
    pub encodable: Option<Arc<Entry>>,
}

impl Answer {
    /// An answer with no stored entry behind it.
    pub fn new(response: Response<OutBody>, outcome: Outcome) -> Answer {
        Answer {
            response,
            outcome,
            ttl: None,
            esi: None,
            encodable: None,
        }
    }
}

/// A response from a stored entry: preconditions (RFC 9110 §13), ranges (§14), `Age`.
pub fn from_entry(
    req: &ClientRequest,
    entry: &Arc<Entry>,
    outcome: Outcome,
    now: SystemTime,
) -> Answer {
    // RFC 9110 §13.2.1: preconditions apply only where the response would be 2xx. An ESI
    // page's validators describe its template, not what the client will get: none apply.
    // The stored fields as the map this answer sends (and its conditions and ranges read).
    // Both lent from the entry: slices of its buffer, no copy.
    let (stored, body) = entry.parts();
    let precondition = if entry.status.is_success() && entry.esi().is_none() {
        conditional::evaluate(&req.method, &req.headers, &stored)
    } else {
        Precondition::Proceed
    };
    let mut encodable = None;
    let mut response = match precondition {
        Precondition::NotModified => {
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            *r.headers_mut() = conditional::not_modified_headers(&stored);
            r
        }
        Precondition::Failed => text(StatusCode::PRECONDITION_FAILED, ""),
        Precondition::Proceed => {
            // Ranges are cut from complete 200s only (RFC 9110 §14.2).
            let ranges = if req.method == Method::GET
                && entry.status == StatusCode::OK
                && entry.esi().is_none()
            {
                range::evaluate(&req.headers, &stored, body.len() as u64)
            } else {
                RangeReply::Full
            };
            let mut r = Response::new(empty());
            *r.status_mut() = entry.status;
            *r.headers_mut() = stored;
            let body = match ranges {
                RangeReply::Full => {
                    if entry.status == StatusCode::OK && entry.esi().is_none() {
                        encodable = Some(entry.clone());
                    }
                    body
                }
                RangeReply::Partial(ranges) => {
                    *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                    range::partial(r.headers_mut(), &body, &ranges)
                }
                RangeReply::Unsatisfiable => {
                    *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                    let v = format!("bytes */{}", body.len());
                    r.headers_mut().insert(
                        header::CONTENT_RANGE,
                        HeaderValue::from_str(&v).expect("ascii"),
                    );
                    Bytes::new()
                }
            };
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            *r.body_mut() = full(body);
            r
        }
    };
    response
        .headers_mut()
        .insert(header::AGE, HeaderValue::from(entry.age(now).as_secs()));
    Answer {
        response,
        outcome,
        ttl: Some(entry.remaining_ttl(now)),
        esi: entry.esi().cloned(),
        encodable,
    }
}

/// A hit whose body is still on disk (large, plain 200, no `Range` asked): the head
/// answered as [`from_entry`] does, the body streamed from its file.
pub fn from_disk(
    req: &ClientRequest,
    head: &Arc<Entry>,
    body: crate::cache::disk::DiskBody,
    outcome: Outcome,
    now: SystemTime,
) -> Answer {
    let mut a = from_entry(req, head, outcome, now);
    // Compression at delivery would need the body whole: it goes out as stored.
    a.encodable = None;
    if a.response.status() == StatusCode::OK {
        a.response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        if req.method == Method::GET {
            *a.response.body_mut() = body.into_body();
        }
    }
    a
}

/// A complete response for this client only (nothing stored).
pub fn whole(status: StatusCode, mut headers: HeaderMap, body: Bytes, outcome: Outcome) -> Answer {
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    Answer::new(r, outcome)
}

/// An origin response passed on as it streams in.
pub fn streamed(head: http::response::Parts, body: OriginBody, outcome: Outcome) -> Answer {
    let body = body.map_err(|e| Box::new(e) as BoxError).boxed();
    Answer::new(Response::from_parts(head, body), outcome)
}

/// A response a script made up.
pub fn synthetic(s: Synthetic) -> Answer {
    let mut r = Response::new(full(s.body));
    *r.status_mut() = s.status;
    *r.headers_mut() = s.headers;
    Answer::new(r, Outcome::Synthetic)
}

/// The proxy's own answer when it will not serve the request.
pub fn refused(why: Refusal) -> Answer {
    let (status, body) = match &why {
        Refusal::NoSite => (
            StatusCode::NOT_FOUND,
            "no site is configured for this host\n",
        ),
        Refusal::BadHost => (StatusCode::BAD_REQUEST, "invalid Host\n"),
        Refusal::OnlyIfCached(_) => (StatusCode::GATEWAY_TIMEOUT, "not in cache\n"),
        Refusal::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy, try again\n"),
        Refusal::ScriptFailed(_) => (StatusCode::SERVICE_UNAVAILABLE, "script error\n"),
        Refusal::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
        Refusal::IncludeFailed(_) => (StatusCode::BAD_GATEWAY, "page could not be assembled\n"),
        Refusal::Loop => (
            StatusCode::LOOP_DETECTED,
            "request loop: this node is in its Via\n",
        ),
        Refusal::TooManyTunnels => (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many upgraded connections\n",
        ),
    };
    let mut r = text(status, body);
    if matches!(why, Refusal::Busy | Refusal::TooManyTunnels) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Answer::new(r, Outcome::Refused(why))
}

/// The origin gave no response: 502, or 504 when it was too slow.
pub fn origin_error(e: &OriginError, fwd: Fwd) -> Answer {
    let (code, body) = match e {
        OriginError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "origin timed out\n"),
        OriginError::Connect(_) => (StatusCode::BAD_GATEWAY, "origin unreachable\n"),
        OriginError::Tls(_) => (StatusCode::BAD_GATEWAY, "origin TLS failed\n"),
    };
    Answer::new(
        text(code, body),
        Outcome::OriginFailed {
            fwd,
            error: e.detail(),
        },
    )
}

/// Last stop for every routed request: ESI assembly, the site's scripts (`html-handlers`,
/// `on_response`, then the streaming rewrite), and the cache's own headers.
pub async fn finish(x: &mut Exchange, a: Answer) -> Response<OutBody> {
    let mut a = crate::html::esi::stage(x, a).await;
    let scripts_apply = !matches!(
        a.outcome,
        Outcome::Refused(Refusal::Busy | Refusal::ScriptFailed(_))
    );
    let mut rewrite = Vec::new();
    if scripts_apply && x.chain.implements(Hook::HtmlHandlers) && is_html(&x.req, &a) {
        match x
            .chain
            .html_handlers(&x.req, a.response.status(), a.response.headers())
            .await
        {
            Ok(handlers) => rewrite = handlers,
            Err(f) => a = hook_failed(x, a, f),
        }
    }
    if scripts_apply && x.chain.implements(Hook::OnResponse) && !is_refused(&a) {
        // Edits go to a copy: a failing hook leaves no half-applied edits behind.
        let mut headers = a.response.headers().clone();
        let status = a.response.status();
        match x.chain.on_response(&x.req, status, &mut headers).await {
            Ok(()) => *a.response.headers_mut() = headers,
            Err(f) => a = hook_failed(x, a, f),
        }
    }
    if !rewrite.is_empty() && !is_refused(&a) {
        a.encodable = None;
        let plan = Plan {
            handlers: rewrite,
            chain: x.chain.take(),
        };
        let limit = x.gen.config.cache.max_object_bytes;
        let response = std::mem::replace(&mut a.response, Response::new(empty()));
        match crate::html::rewrite::start(plan, response, &x.req.headers, limit).await {
            Start::Rewritten(r) => a.response = r,
            Start::Failed(f) => a = hook_failed(x, a, f),
            Start::Broken(why) => a = refused(Refusal::IncludeFailed(why)),
        }
    }
    // compress: last, so that ESI and the rewrite work on identity bytes.
    if x.site.cfg.caching.compress && !is_refused(&a) {
        a = super::compress::stage(&x.req, a);
    }
    let who = Who {
        id: x.id.clone(),
        site: x.site.cfg.name.clone(),
        method: x.req.method.clone(),
        target: x.req.uri.to_string(),
        started: x.started,
        origin_wait: x.origin_wait,
        key: x.key.as_ref().map(|k| k.key().to_owned()),
        debug: x.site.cfg.caching.debug,
    };
    decorate(&x.gen, a, who)
}

/// What the cache's own headers and the access log say about the request.
pub struct Who {
    /// Request id.
    pub id: Arc<str>,
    /// Site name (`-` when none).
    pub site: String,
    /// Method.
    pub method: Method,
    /// Path and query.
    pub target: String,
    /// When its head arrived.
    pub started: std::time::Instant,
    /// Time spent waiting for origins.
    pub origin_wait: std::time::Duration,
    /// Its cache key.
    pub key: Option<String>,
    /// Whether the site shows keys (`Cache-Status key=`, access log).
    pub debug: bool,
}

fn is_refused(a: &Answer) -> bool {
    matches!(a.outcome, Outcome::Refused(_))
}

/// Only full HTML documents are rewritten: GET, 2xx but 206, `text/html`.
fn is_html(req: &ClientRequest, a: &Answer) -> bool {
    let status = a.response.status();
    req.method == Method::GET
        && status.is_success()
        && status != StatusCode::PARTIAL_CONTENT
        && status != StatusCode::NO_CONTENT
        && a.response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html"))
            })
}

/// A delivery hook failed before the first byte: 503 unless the site falls back (its
/// edits may be security headers, and its rewrite may hide content from the wrong users).
fn hook_failed(x: &Exchange, a: Answer, f: crate::guest::HookFailure) -> Answer {
    if matches!(f.error, GuestError::Busy(_)) {
        return refused(Refusal::Busy);
    }
    if x.site.cfg.on_guest_error.on_response == GuestErrorPolicy::Fallback {
        return a;
    }
    refused(Refusal::ScriptFailed(f))
}

/// The cache's own fields on every response: `Cache-Status`, `X-Cache`, `Via`, ids.
pub fn decorate(gen: &Generation, a: Answer, who: Who) -> Response<OutBody> {
    let mut status = a.outcome.cache_status();
    status.ttl = a.ttl;
    status.key = who.key.clone().filter(|_| who.debug);
    let request_id = &*who.id;
    let head_only = who.method == Method::HEAD;
    let outcome = a.outcome.as_str();
    let mut response = a.response;
    let node = &gen.config.node_name;
    let h = response.headers_mut();
    strip_targeted(h);
    // Surrogate keys are for this cache (purge by tag), not for clients.
    h.remove("surrogate-key");
    h.remove("cache-tag");
    append_list(h, "cache-status", &status.render(node));
    append_list(h, "x-cache", status.x_cache());
    append_list(h, "x-served-by", node);
    append_via(h, node);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    if head_only {
        let (parts, _) = response.into_parts();
        response = Response::from_parts(parts, empty());
    }
    let access = Access {
        id: who.id.clone(),
        site: who.site,
        method: who.method,
        target: who.target,
        status: response.status().as_u16(),
        outcome,
        key: who.key,
        log_key: who.debug,
        started: who.started,
        head: who.started.elapsed(),
        origin_wait: who.origin_wait,
    };
    response.map(|body| Logged::new(body, access).boxed())
}

/// Adds the fields held back from the stored copy for the client whose request fetched it.
pub fn add_personal(response: &mut Response<OutBody>, personal: HeaderMap) {
    let h = response.headers_mut();
    let mut last = None;
    for (name, value) in personal {
        if let Some(n) = name {
            last = Some(n);
        }
        if let Some(n) = &last {
            h.append(n.clone(), value);
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<OutBody> {
    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
