//! One request, top to bottom: the async glue that moves data between the phases.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::BodyExt;

use super::deliver::{self, Answer};
use super::hash::{self, Keyed};
use super::lookup::{self, Action, Directives, Stale};
use super::outcome::{Outcome, PassReason, Refusal};
use super::recv::{self, ConnInfo, Route};
use super::site::SiteRuntime;
use super::{fetch, pass, upgrade, Generation, Shared};
use crate::cache::coalesce::Role;
use crate::cache::tiers::Tiered;
use crate::cache::vary::variant_id;
use crate::cache::{key, Entry, Fwd, Lookup, StoreKey};
use crate::guest::Chain;
use crate::origin::{BoxError, OriginError, OutBody};
use crate::request::ClientRequest;

/// What a finished origin fetch hands to the requests that waited for it.
#[derive(Clone)]
pub enum Flight {
    /// The response was stored (or revalidated); waiters serve this entry.
    Stored(Arc<Entry>, u16),
    /// Early, while the body still arrives: waiters that take the whole response read it
    /// as it comes; the flight ends with another outcome.
    Streaming(Arc<super::stream::Streamed>),
    /// Not shareable (private, too large, not storable): waiters fetch on their own.
    Pass,
    /// The origin failed; waiters answer with the same error.
    Failed(OriginError),
}

/// One request on its way through the phases.
pub struct Exchange {
    /// What all requests share.
    pub shared: Arc<Shared>,
    /// The configuration this request started with (a reload never changes it midway).
    pub gen: Arc<Generation>,
    /// The site it was routed to.
    pub site: Arc<SiteRuntime>,
    /// The request, with the scripts' edits.
    pub req: ClientRequest,
    /// The site's scripts for this request.
    pub chain: Chain,
    /// Request id (the client's, or made up).
    pub id: Arc<str>,
    /// The normalised URI in the site's namespace (the URI index's name for it).
    pub uri: Arc<str>,
    /// The cache key, once hashed.
    pub key: Option<StoreKey>,
    /// When the request head arrived.
    pub started: std::time::Instant,
    /// Time spent waiting for origin response heads (for the access log).
    pub origin_wait: std::time::Duration,
    /// The query the origin gets on the cache path (`None`: unchanged).
    pub origin_query: Option<Option<String>>,
    /// The protocol upgrade the client asked for, if any.
    pub upgrade: Option<upgrade::ClientUpgrade>,
    /// It already came through this node (a trusted edge's loop): origin only.
    pub looped: bool,
}

/// Bounded: a follower whose leader gave up, or whose shared response is another variant,
/// looks again; a flapping origin must not make it spin.
const LOOKUPS: usize = 3;

/// Answers one client request; never fails (errors become 5xx responses).
///
/// Any protocol's listener feeds requests here: the body type is its own (hyper's for
/// HTTP/1.1 and h2; a QUIC listener's for h3), boxed only when there is a body to forward.
pub async fn handle<B>(shared: Arc<Shared>, req: Request<B>, conn: ConnInfo) -> Response<OutBody>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let alt_svc = conn
        .listener
        .and_then(|i| shared.generation().config.listeners.get(i)?.alt_svc.clone());
    let mut response = respond(shared, req, conn).await;
    if let (Some(v), false) = (alt_svc, response.status().is_informational()) {
        // The edge's alternatives, not the origin's: clients reach this listener, and an
        // origin's own advertisement would send them around the cache.
        response.headers_mut().insert(http::header::ALT_SVC, v);
    }
    response
}

async fn respond<B>(shared: Arc<Shared>, req: Request<B>, conn: ConnInfo) -> Response<OutBody>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let started = std::time::Instant::now();
    let id = recv::request_id(req.headers());
    let mut req = req;
    let upgrade = upgrade::requested(&mut req);
    let (parts, body) = req.into_parts();
    let gen = shared.generation();
    // recv: which site?
    let method = parts.method.clone();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    // Refused before any site is involved: logged with the request, never cached.
    let refuse = |why: Refusal, id: Arc<str>| {
        let who = deliver::Who {
            id,
            site: "-".into(),
            method: method.clone(),
            target: target.clone(),
            started,
            origin_wait: std::time::Duration::ZERO,
            key: None,
            debug: false,
        };
        deliver::decorate(&gen, deliver::refused(why), who)
    };
    // Read once: a loop from anyone but a trusted edge is refused here; one from a trusted
    // edge goes to the origin (`answer`, `tier::send`).
    let looped = super::tier::via_names(&parts.headers, &gen.config.node_name);
    let trusted = &gen.config.server.trusted_edges;
    if looped && !super::tier::trusted(conn.peer.ip(), trusted) {
        return refuse(Refusal::Loop, id);
    }
    let (site, req) = match recv::route(&gen, parts, &conn) {
        Ok(routed) => routed,
        Err(why) => return refuse(why, id),
    };
    let mut x = Exchange::new(shared, gen, site, req, id, started);
    x.upgrade = upgrade;
    x.looped = looped;
    let body = (!body.is_end_stream()).then(|| body.map_err(Into::into).boxed());
    let answer = x.answer(body).await;
    // deliver: ESI assembly, the scripts' rewrite and on_response, the cache's headers.
    deliver::finish(&mut x, answer).await
}

/// A request the host makes itself (an ESI fragment): through `on_request`, the key, the
/// cache and the origin like any other, but not through delivery, which is the page's.
pub async fn subrequest(
    shared: Arc<Shared>,
    gen: Arc<Generation>,
    site: Arc<SiteRuntime>,
    req: ClientRequest,
    id: Arc<str>,
) -> Answer {
    let mut x = Exchange::new(shared, gen, site, req, id, std::time::Instant::now());
    x.answer(None).await
}

impl Exchange {
    /// A request's state before any phase ran, with a fresh script chain of its site.
    pub(super) fn new(
        shared: Arc<Shared>,
        gen: Arc<Generation>,
        site: Arc<SiteRuntime>,
        req: ClientRequest,
        id: Arc<str>,
        started: std::time::Instant,
    ) -> Exchange {
        let chain = Chain::new(
            site.scripts.clone(),
            shared.pool.clone(),
            id.clone(),
            shared.clock.clone(),
        );
        Exchange {
            shared,
            gen,
            site,
            req,
            chain,
            id,
            uri: Arc::from(""),
            key: None,
            started,
            origin_wait: std::time::Duration::ZERO,
            origin_query: None,
            upgrade: None,
            looped: false,
        }
    }

    async fn answer(&mut self, body: Option<OutBody>) -> Answer {
        // recv: the site's on_request may answer, edit, pass, or (failing) refuse.
        let route = match recv::hooks(self).await {
            Ok(route) => route,
            Err(answer) => return answer,
        };
        // upgrade: a WebSocket goes to the origin as a tunnel, past the cache.
        if let Some(up) = self.upgrade.take() {
            return upgrade::forward(self, up).await;
        }
        if self.looped {
            // Back from a trusted edge: straight to the origin, never onto our own flight
            // for this key (its leader is the request waiting for this one).
            return pass::forward(self, PassReason::Loop, body).await;
        }
        if route == Route::Pass {
            // No key, no lookup, nothing stored; an unsafe method still invalidates.
            let default = key::default_key(&self.req.authority, self.req.path(), self.req.query());
            self.uri = StoreKey::new(&self.site.cfg.name, &default).as_str().into();
            return pass::forward(self, PassReason::Script, body).await;
        }
        // hash: the key in the site's namespace.
        let keyed = match hash::key(self).await {
            Ok(k) => k,
            Err(answer) => return answer,
        };
        let cacheable_method = matches!(self.req.method, Method::GET | Method::HEAD);
        match keyed {
            Keyed::Key(key) => {
                self.key = Some(key.clone());
                if cacheable_method {
                    self.cache_path(key).await
                } else {
                    pass::forward(self, PassReason::Method, body).await
                }
            }
            Keyed::Failed(f) => pass::forward(self, PassReason::KeyFailed(f), body).await,
        }
    }

    /// lookup → hit | stale hit | fetch (coalesced per variant) | only-if-cached.
    async fn cache_path(&mut self, key: StoreKey) -> Answer {
        let directives = Directives::of(&self.req.headers);
        let refresh_ahead = self.site.cfg.caching.refresh_ahead;
        let mut flight = key.as_str().to_owned();
        for _ in 0..LOOKUPS {
            let store = &self.shared.store;
            let streamable = matches!(self.req.method, Method::GET | Method::HEAD)
                && !self.req.headers.contains_key(http::header::RANGE);
            let mut tiered = store
                .lookup_tiered(&key, &self.req.headers, streamable)
                .await;
            let now = self.shared.clock.now();
            if tiered.body.is_some()
                && !matches!(
                    lookup::decide(&tiered.lookup, &directives, now, refresh_ahead),
                    Action::Hit { refresh: false, .. }
                )
            {
                // A body left on disk serves a plain hit only: anything else (a stale copy
                // to revalidate, a refresh) needs it whole.
                tiered = store.lookup_tiered(&key, &self.req.headers, false).await;
            }
            let Tiered {
                lookup: found,
                tier,
                body,
            } = tiered;
            if let Lookup::VaryMiss(names) = &found {
                flight = format!("{}{}", key.as_str(), variant_id(names, &self.req.headers));
            }
            // The same `now` as the check above: a head whose body is left on disk must get
            // the plain hit that check saw, never become a stale copy a moment later.
            let (fwd, stale) = match lookup::decide(&found, &directives, now, refresh_ahead) {
                Action::Hit { entry, refresh } => {
                    if let Some(body) = body {
                        count_hit(&tier, body.len());
                        return deliver::from_disk(&self.req, &entry, body, Outcome::Hit, now);
                    }
                    count_hit(&tier, entry.body().len() as u64);
                    if refresh {
                        self.refresh_in_background(&key, &flight, entry.clone());
                    }
                    return deliver::from_entry(&self.req, &entry, Outcome::Hit, now);
                }
                Action::StaleHit {
                    entry,
                    reason,
                    refresh,
                } => {
                    count_hit(&tier, entry.body().len() as u64);
                    if refresh {
                        self.refresh_in_background(&key, &flight, entry.clone());
                    }
                    return deliver::from_entry(&self.req, &entry, Outcome::StaleHit(reason), now);
                }
                Action::OnlyIfCached(fwd) => return deliver::refused(Refusal::OnlyIfCached(fwd)),
                Action::Fetch { fwd, stale } => (fwd, stale),
            };
            // fetch: nothing of the script is needed while waiting on the origin.
            self.chain.park();
            if self.shared.store.is_uncacheable(&key) {
                // Hit-for-miss: this key's responses were not shareable lately, so requests
                // for it go to the origin side by side instead of queueing.
                return fetch::fill(self, &key, fwd, stale).await.0;
            }
            let follower = match self.shared.flights.join(&flight) {
                Role::Leader(leader) => {
                    // Another request's fetch may have finished between our lookup and
                    // our joining: what it stored may serve us without a second fetch.
                    let now = self.shared.clock.now();
                    let again = self.shared.store.lookup(&key, &self.req.headers);
                    if let Action::Hit { entry, .. } =
                        lookup::decide(&again, &directives, now, None)
                    {
                        leader.finish(Flight::Stored(entry.clone(), entry.status.as_u16()));
                        return deliver::from_entry(&self.req, &entry, Outcome::Hit, now);
                    }
                    let (answer, pending) = fetch::fill(self, &key, fwd, stale).await;
                    pending.finish(leader);
                    return answer;
                }
                Role::Follower(f) => f,
            };
            crate::observe::metrics()
                .coalesced
                .get_or_create(&crate::observe::site(&self.site.cfg.name))
                .inc();
            let joins = super::stream::takes_whole(&self.req);
            let accept = |f: &Flight| joins || !matches!(f, Flight::Streaming(_));
            // What another request's fetch brought is this request's only if the response
            // may be reused without going forward (RFC 9111 §4): not one stored only to be
            // revalidated (`no-cache`, or no lifetime: the leader's, for its cookies or
            // credentials). This request's own directives are not asked: a response fetched
            // after it arrived is as fresh as it could want (§5.2.1.4), and a client must
            // not be able to turn coalescing off with `no-cache`.
            let clock = self.shared.clock.clone();
            let reuse = |entry: &Arc<Entry>, d: &Directives| {
                lookup::decide(&Lookup::Found(entry.clone()), d, clock.now(), None)
            };
            let response_only = Directives::default();
            match follower.wait_for(accept).await {
                Some(Flight::Streaming(s)) if s.matches(&self.req.headers) => {
                    return match reuse(s.head(), &response_only) {
                        Action::Hit { .. } | Action::StaleHit { .. } => {
                            super::stream::join(&s, fwd, self.shared.clock.now())
                        }
                        Action::OnlyIfCached(fwd) => deliver::refused(Refusal::OnlyIfCached(fwd)),
                        // Not conditionally: the streamed head has no body to keep on a 304.
                        Action::Fetch { fwd, .. } => fetch::fill(self, &key, fwd, None).await.0,
                    };
                }
                // Another variant: wait with the requests for ours.
                Some(Flight::Streaming(s)) => {
                    let names = s.vary_names();
                    flight = format!("{}{}", key.as_str(), variant_id(&names, &self.req.headers));
                }
                Some(Flight::Stored(entry, status)) if entry.vary().matches(&self.req.headers) => {
                    return match reuse(&entry, &response_only) {
                        Action::Hit { .. } | Action::StaleHit { .. } => {
                            let now = self.shared.clock.now();
                            let outcome = Outcome::Collapsed { fwd, status };
                            deliver::from_entry(&self.req, &entry, outcome, now)
                        }
                        Action::OnlyIfCached(fwd) => deliver::refused(Refusal::OnlyIfCached(fwd)),
                        // The origin failed and the leader served this stale copy: so does
                        // this request if its own directives allow, rather than asking the
                        // failing origin again.
                        Action::Fetch { fwd, .. } if status >= 500 => {
                            match reuse(&entry, &directives) {
                                Action::Fetch { stale: Some(s), .. } if s.serve_on_error => {
                                    fetch::stale_answer(self, &s, "origin-error")
                                }
                                _ => fetch::fill(self, &key, fwd, None).await.0,
                            }
                        }
                        Action::Fetch { fwd, stale } => fetch::fill(self, &key, fwd, stale).await.0,
                    };
                }
                // Another variant: wait with the requests for ours.
                Some(Flight::Stored(entry, _)) => {
                    let names = entry.vary().names();
                    flight = format!("{}{}", key.as_str(), variant_id(&names, &self.req.headers));
                }
                Some(Flight::Failed(e)) => {
                    return match &stale {
                        Some(s) if s.serve_on_error => fetch::stale_answer(self, s, e.detail()),
                        _ => deliver::origin_error(&e, fwd),
                    };
                }
                Some(Flight::Pass) => return fetch::fill(self, &key, fwd, stale).await.0,
                // The leader went away (its client hung up): look again.
                None => {}
            }
        }
        fetch::fill(self, &key, Fwd::UriMiss, None).await.0
    }

    /// Starts one background revalidation of `entry` unless one is already running. It
    /// runs with a fresh script chain: hooks are per request, and this one may be gone.
    fn refresh_in_background(&self, key: &StoreKey, flight: &str, entry: Arc<Entry>) {
        let Role::Leader(leader) = self.shared.flights.join(flight) else {
            return;
        };
        let mut bg = Exchange::new(
            self.shared.clone(),
            self.gen.clone(),
            self.site.clone(),
            self.req.clone(),
            self.id.clone(),
            std::time::Instant::now(),
        );
        bg.uri = self.uri.clone();
        bg.key = self.key.clone();
        bg.origin_query = self.origin_query.clone();
        bg.req.method = Method::GET;
        let key = key.clone();
        tokio::spawn(async move {
            let stale = Stale {
                entry,
                serve_on_error: true,
            };
            let (_, pending) = fetch::fill(&mut bg, &key, Fwd::Stale, Some(stale)).await;
            pending.finish(leader);
        });
    }
}

/// A hit, by the tier that held it.
fn count_hit(tier: &crate::observe::storage::Tier, body_bytes: u64) {
    let t = crate::observe::metrics().storage.tier(tier);
    t.hits.inc();
    t.bytes.inc_by(body_bytes);
}
