//! Phase "pass": requests the cache does not serve, forwarded with their body; invalidation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::{Method, Uri};
use http_body_util::BodyExt;

use super::deliver::{self, Answer};
use super::driver::Exchange;
use super::fetch::upstream_request;
use super::headers::strip_hop_by_hop;
use super::outcome::{Outcome, PassReason, Refusal};
use crate::cache::{key, StoreKey};
use crate::origin::{BoxError, OutBody};

/// Forwards the request and streams the answer back; a successful unsafe method invalidates
/// every stored variant of its URI (RFC 9111 §4.4).
pub async fn forward(x: &mut Exchange, reason: PassReason, body: Option<OutBody>) -> Answer {
    let limit = x.gen.config.server.max_request_body;
    let declared = x
        .req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return deliver::refused(Refusal::BodyTooLarge);
    }
    x.chain.park();
    // Bodies stream through; one that grows past the cap mid-way aborts the origin request.
    let overflowed = Arc::new(AtomicBool::new(false));
    let flag = overflowed.clone();
    let body_absent = body.is_none();
    let body = match body {
        None => crate::origin::empty(),
        Some(body) => http_body_util::Limited::new(body, limit as usize)
            .map_err(move |e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    flag.store(true, Ordering::Relaxed);
                }
                e as BoxError
            })
            .boxed(),
    };
    // A request may try the next shield when one fails only if sending it twice is
    // harmless: safe methods, without a body (a body is sent once).
    let idempotent = matches!(x.req.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let retry = body_absent && idempotent;
    let body = std::sync::Mutex::new(Some(body));
    let method = x.req.method.clone();
    let build = |to: super::tier::Target<'_>| {
        let b = body
            .lock()
            .ok()
            .and_then(|mut b| b.take())
            .unwrap_or_else(crate::origin::empty);
        upstream_request(x, to, method.clone(), x.req.headers.clone(), b, false)
    };
    let asked = std::time::Instant::now();
    let sent = super::tier::send(x, retry, build).await;
    x.origin_wait += asked.elapsed();
    let resp = match sent {
        Ok(r) => r,
        Err(_) if overflowed.load(Ordering::Relaxed) => {
            return deliver::refused(Refusal::BodyTooLarge)
        }
        Err(e) => return deliver::origin_error(&e, crate::cache::Fwd::Method),
    };
    let (mut head, body) = resp.into_parts();
    strip_hop_by_hop(&mut head.headers);
    let unsafe_method = !matches!(
        x.req.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if unsafe_method && (head.status.is_success() || head.status.is_redirection()) {
        invalidate(x, &head.headers);
    }
    let status = Some(head.status.as_u16());
    deliver::streamed(head, body, Outcome::Pass { reason, status })
}

/// RFC 9111 §4.4: the target URI and same-origin `Location` / `Content-Location`, in every
/// variant and under every key the site's script gave them.
fn invalidate(x: &Exchange, headers: &HeaderMap) {
    let store = &x.shared.store;
    let site = &x.site.cfg.name;
    store.remove_uri(&x.uri);
    if let Some(k) = &x.key {
        store.remove(k);
    }
    for h in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(uri) = headers
            .get(&h)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Uri>().ok())
        else {
            continue;
        };
        let same_origin = uri
            .authority()
            .is_none_or(|a| a.as_str().eq_ignore_ascii_case(&x.req.authority));
        if same_origin && uri.path().starts_with('/') {
            let default = key::default_key(&x.req.authority, uri.path(), uri.query());
            store.remove_uri(StoreKey::new(site, &default).as_str());
        }
    }
}
