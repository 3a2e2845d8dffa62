//! `tessera simulate`: a logged request taken through the real phases (recv, hash, lookup,
//! admit, the store and its size bound) against an origin made up from the log line.
//!
//! Nothing leaves the process: the "origin" answers at once with the logged status and
//! size and a configured header set, so the script's policy decides the TTLs. Requests are
//! replayed one at a time, in log order, so a fetch is always finished before the next
//! request looks: the cache coalesces perfectly, as it does for a burst in production.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};

use super::driver::Exchange;
use super::hash::{self, Keyed};
use super::lookup::{self, Action, Directives, Stale};
use super::recv::{self, ConnInfo};
use super::{fetch, Shared};
use crate::cache::freshness::ExchangeTimes;
use crate::cache::StoreKey;

/// What the cache did with one replayed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// From cache, fresh.
    Hit,
    /// From cache, stale (stale-while-revalidate, stale-if-error).
    StaleHit,
    /// From the origin, through the cache (stored or not).
    Miss,
    /// From the origin, past the cache (method, or a failed `cache_key`).
    Pass,
    /// Answered by the script's `on_request`.
    Edge,
    /// Refused by the proxy (a failed script, `only-if-cached`).
    Refused,
}

/// One replayed request's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// How it was answered.
    pub served: Served,
    /// The key it was looked up under (without the site's namespace).
    pub key: Option<String>,
    /// Requests the origin got for it: a miss or pass is one, a background refresh too.
    pub origin_requests: u32,
    /// Whether a response was stored.
    pub stored: bool,
}

/// The made-up origin's answer to one request.
#[derive(Debug, Clone)]
pub struct Synthetic<'a> {
    /// The logged status (a 304 or 206 the client got stands for the full 200).
    pub status: u16,
    /// The logged body size.
    pub bytes: u64,
    /// The header set every response carries (e.g. `Cache-Control`).
    pub headers: &'a HeaderMap,
    /// `Content-Type`, logged or guessed from the path.
    pub content_type: Option<&'a str>,
}

/// Replays `req` from `peer`; `None` when no site serves its host.
pub async fn replay(
    shared: &Arc<Shared>,
    req: Request<()>,
    peer: SocketAddr,
    origin: &Synthetic<'_>,
) -> Option<Replayed> {
    let conn = ConnInfo {
        peer,
        scheme: if req.uri().scheme_str() == Some("https") {
            "https"
        } else {
            "http"
        },
        listener: None,
    };
    let gen = shared.generation();
    let (parts, ()) = req.into_parts();
    let (site, creq) = recv::route(&gen, parts, &conn).ok()?;
    let started = std::time::Instant::now();
    let mut x = Exchange::new(shared.clone(), gen, site, creq, "simulate".into(), started);
    let mut done = Replayed {
        served: Served::Miss,
        key: None,
        origin_requests: 0,
        stored: false,
    };
    match recv::hooks(&mut x).await {
        Err(answer) => {
            done.served = if answer.outcome == super::Outcome::Synthetic {
                Served::Edge
            } else {
                Served::Refused
            };
            return Some(done);
        }
        Ok(recv::Route::Pass) => {
            done.served = Served::Pass;
            done.origin_requests = 1;
            return Some(done);
        }
        Ok(recv::Route::Cache) => {}
    }
    let key = match hash::key(&mut x).await {
        Err(_) => {
            done.served = Served::Refused;
            return Some(done);
        }
        Ok(Keyed::Failed(_)) => {
            done.served = Served::Pass;
            done.origin_requests = 1;
            return Some(done);
        }
        Ok(Keyed::Key(k)) => k,
    };
    done.key = Some(key.key().to_owned());
    if !matches!(x.req.method, Method::GET | Method::HEAD) {
        done.served = Served::Pass;
        done.origin_requests = 1;
        return Some(done);
    }
    let found = x.shared.store.lookup(&key, &x.req.headers);
    let directives = Directives::of(&x.req.headers);
    let now = x.shared.clock.now();
    match lookup::decide(&found, &directives, now, x.site.cfg.caching.refresh_ahead) {
        Action::Hit { entry, refresh } => {
            done.served = Served::Hit;
            if refresh {
                done.origin_requests = 1;
                done.stored = refresh_now(&mut x, &key, origin, entry).await;
            }
        }
        Action::StaleHit { entry, refresh, .. } => {
            done.served = Served::StaleHit;
            if refresh {
                done.origin_requests = 1;
                done.stored = refresh_now(&mut x, &key, origin, entry).await;
            }
        }
        Action::OnlyIfCached(_) => done.served = Served::Refused,
        Action::Fetch { stale, .. } => {
            done.origin_requests = 1;
            let rescued = stale
                .as_ref()
                .is_some_and(|s| s.serve_on_error && origin.status >= 500);
            done.stored = fill(&mut x, &key, origin, stale.as_ref()).await;
            // RFC 5861 §4: a good stale copy beats an error.
            done.served = if rescued {
                Served::StaleHit
            } else {
                Served::Miss
            };
        }
    }
    Some(done)
}

/// The background refresh a hit started, finished before the next request (the origin
/// answers at once).
async fn refresh_now(
    x: &mut Exchange,
    key: &StoreKey,
    origin: &Synthetic<'_>,
    entry: Arc<crate::cache::Entry>,
) -> bool {
    let stale = Stale {
        entry,
        serve_on_error: true,
    };
    fill(x, key, origin, Some(&stale)).await
}

/// The made-up origin's response, admitted as `fetch::fill` admits a real one; whether it
/// was stored.
async fn fill(
    x: &mut Exchange,
    key: &StoreKey,
    origin: &Synthetic<'_>,
    stale: Option<&Stale>,
) -> bool {
    let status = match origin.status {
        // The client's conditional or range request hid a complete response.
        206 | 304 => StatusCode::OK,
        s => StatusCode::from_u16(s).unwrap_or(StatusCode::OK),
    };
    let mut headers = origin.headers.clone();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(origin.bytes));
    if let Some(ct) = origin
        .content_type
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    let now = x.shared.clock.now();
    let times = ExchangeTimes {
        request_time: now,
        response_time: now,
    };
    let limit = x.gen.config.cache.max_object_bytes;
    match fetch::admission(x, key, status, headers, times, stale.is_some()).await {
        (Err(_), _) => false,
        (Ok(plan), _) => {
            let (entry, _personal) = plan.with_body(zeros(origin.bytes, limit));
            x.shared.store.insert(key, Arc::new(entry));
            true
        }
    }
}

/// A body of `len` bytes that costs no memory: a slice of one zeroed allocation whose pages
/// the kernel never backs, since nothing writes or reads them. The store weighs it by length.
fn zeros(len: u64, limit: u64) -> Bytes {
    static ZEROS: OnceLock<Bytes> = OnceLock::new();
    let all = ZEROS.get_or_init(|| Bytes::from(vec![0u8; limit.min(1 << 32) as usize]));
    all.slice(..(len as usize).min(all.len()))
}
