//! The request pipeline: route, script hooks, cache lookup, origin fetch, delivery.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::headers::{
    append_forwarded_for, append_list, append_via, apply_edits, strip_hop_by_hop,
};
use super::range::{self, RangeReply};
use super::site::SiteRuntime;
use crate::cache::coalesce::{Coalescer, Role};
use crate::cache::conditional::{self, Precondition};
use crate::cache::directives::{effective_response_control, strip_targeted, CacheControl};
use crate::cache::freshness::{self, ExchangeTimes, Heuristic, NotStorable, Reuse, StoredFacts};
use crate::cache::{key, CacheStatus, Entry, Fwd, Lookup, Store};
use crate::config::{Config, GuestErrorPolicy};
use crate::guest::{self, CacheDecision, GuestError, Hook, RequestAction, Session};
use crate::origin::{collect_limited, empty, BoxError, Collected, OriginError, OutBody};

/// Everything the pipeline shares across requests.
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// One runtime per configured site, same order.
    pub sites: Vec<Arc<SiteRuntime>>,
    /// The object store.
    pub store: Store,
    /// Origin fetches in flight, by cache key.
    pub flights: Coalescer<Flight>,
}

/// What a finished origin fetch hands to the requests that waited for it.
#[derive(Clone)]
pub enum Flight {
    /// The response was stored (or revalidated); waiters serve this entry.
    Stored(Arc<Entry>, u16),
    /// Not shareable (private, too large, not storable): waiters fetch on their own.
    Pass,
    /// The origin failed; waiters answer with the same error.
    Failed(OriginError),
}

/// A response on its way to the client, with what the cache did for it.
struct Delivery {
    response: Response<OutBody>,
    status: CacheStatus,
}

/// The script failed and the site's policy is `fail`.
struct PolicyFailure;

/// Per-request state: the site, the script sessions and the scripts' view of the request.
struct Ctx {
    site: Arc<SiteRuntime>,
    request_id: Arc<str>,
    /// One session per script of the site, in chain order.
    sessions: Vec<Session>,
    view: guest::Request,
    client: SocketAddr,
    /// The primary cache key, once known.
    key: String,
}

impl Ctx {
    fn new(
        site: Arc<SiteRuntime>,
        request_id: Arc<str>,
        view: guest::Request,
        client: SocketAddr,
    ) -> Ctx {
        let sessions = site
            .scripts
            .iter()
            .map(|s| Session::new(s.clone(), request_id.clone()))
            .collect();
        Ctx {
            site,
            request_id,
            sessions,
            view,
            client,
            key: String::new(),
        }
    }

    /// Runs a hook on script `i`; a failure yields `None` (fallback) or `PolicyFailure` (fail).
    fn hook<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Session, &guest::Request) -> Result<Option<R>, GuestError>,
    ) -> Result<Option<R>, PolicyFailure> {
        match f(&mut self.sessions[i], &self.view) {
            Ok(r) => Ok(r),
            Err(_) if self.site.cfg.on_guest_error == GuestErrorPolicy::Fallback => Ok(None),
            Err(_) => Err(PolicyFailure),
        }
    }

    fn implements(&self, hook: Hook) -> bool {
        self.sessions.iter().any(|s| s.implements(hook))
    }

    /// `cache-key` through the chain: each script refines the previous key.
    fn cache_key(&mut self, default_key: String) -> Result<String, PolicyFailure> {
        let mut key = default_key;
        for i in 0..self.sessions.len() {
            if let Some(k) = self.hook(i, |s, r| s.cache_key(r, &key))? {
                key = k;
            }
        }
        Ok(key)
    }

    /// `cache-policy` through the chain: each script's decision is the next one's proposal.
    fn cache_policy(
        &mut self,
        head: &guest::ResponseHead,
        proposed: CacheDecision,
    ) -> Result<CacheDecision, PolicyFailure> {
        let mut decision = proposed;
        for i in 0..self.sessions.len() {
            if let Some(d) = self.hook(i, |s, r| s.cache_policy(r, head, &decision))? {
                decision = d;
            }
        }
        Ok(decision)
    }
}

impl Shared {
    /// Answers one client request; never fails (errors become 5xx responses).
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<OutBody> {
        let request_id: Arc<str> = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 200)
            .map(Arc::from)
            .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().simple().to_string()));
        let (mut parts, body) = req.into_parts();
        let authority = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let host = strip_port(&authority);
        let Some(site) = self.sites.iter().find(|s| s.cfg.matches(host)).cloned() else {
            let d = Delivery {
                response: text(
                    StatusCode::NOT_FOUND,
                    "no site is configured for this host\n",
                ),
                status: CacheStatus {
                    fwd: Some(Fwd::Bypass),
                    detail: Some("no-site".into()),
                    ..Default::default()
                },
            };
            return self.finish(None, d, &request_id, false);
        };
        strip_hop_by_hop(&mut parts.headers);
        let view = guest::Request::from_parts(&parts, &authority, client.ip());
        let mut ctx = Ctx::new(site, request_id.clone(), view, client);
        let head_only = parts.method == Method::HEAD;

        let delivery = match self.route(&mut ctx, parts, body, &authority).await {
            Ok(d) => d,
            Err(PolicyFailure) => script_failed(),
        };
        self.finish(Some(&mut ctx), delivery, &request_id, head_only)
    }

    async fn route(
        self: &Arc<Self>,
        ctx: &mut Ctx,
        mut parts: http::request::Parts,
        body: Incoming,
        authority: &str,
    ) -> Result<Delivery, PolicyFailure> {
        for i in 0..ctx.sessions.len() {
            match ctx.hook(i, |s, r| s.on_request(r))? {
                Some(RequestAction::Respond(r)) => {
                    let mut response = Response::new(crate::origin::full(Bytes::from(r.body)));
                    *response.status_mut() =
                        StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
                    apply_edits(
                        response.headers_mut(),
                        &guest::HeaderEdits {
                            set: r.headers,
                            append: vec![],
                            remove: vec![],
                        },
                    );
                    let status = CacheStatus {
                        detail: Some("synthetic".into()),
                        ..Default::default()
                    };
                    return Ok(Delivery { response, status });
                }
                Some(RequestAction::Continue(edits)) => {
                    apply_edits(&mut parts.headers, &edits);
                    ctx.view.headers = guest::header_list(&parts.headers);
                }
                None => {}
            }
        }
        let default_key = key::default_key(authority, parts.uri.path(), parts.uri.query());
        let cache_key = ctx.cache_key(default_key.clone())?;
        ctx.key.clone_from(&cache_key);
        if parts.method == Method::GET || parts.method == Method::HEAD {
            self.lookup(ctx, &parts, cache_key).await
        } else {
            self.pass(ctx, parts, body, &[cache_key, default_key]).await
        }
    }

    /// Cache path for GET and HEAD.
    async fn lookup(
        self: &Arc<Self>,
        ctx: &mut Ctx,
        parts: &http::request::Parts,
        key: String,
    ) -> Result<Delivery, PolicyFailure> {
        let req_cc = CacheControl::from_headers(&parts.headers);
        // RFC 9111 §5.4: Pragma counts only when the request has no Cache-Control.
        let pragma_no_cache = freshness::pragma_no_cache(&parts.headers);
        // A follower whose leader gave up, or whose shared response does not fit its
        // Vary headers, looks again; bounded so a flapping origin cannot spin us.
        for _ in 0..3 {
            let now = SystemTime::now();
            let fwd = match self.store.lookup(&key, &parts.headers) {
                Lookup::Found(entry) => {
                    let facts = StoredFacts {
                        ttl: entry.effective_ttl(),
                        age: entry.age(now),
                        swr: entry.swr,
                        sie: entry.sie,
                        no_cache: entry.no_cache,
                        must_revalidate: entry.must_revalidate,
                    };
                    let reuse = freshness::reuse(&facts, &req_cc, pragma_no_cache);
                    if req_cc.only_if_cached
                        && !matches!(reuse, Reuse::Fresh | Reuse::StaleAllowedByRequest)
                    {
                        // RFC 9111 §5.2.1.7: stored but not usable without going forward.
                        return Ok(only_if_cached(Fwd::Stale));
                    }
                    match reuse {
                        Reuse::Fresh | Reuse::StaleAllowedByRequest => {
                            self.maybe_refresh_ahead(ctx, parts, &key, &entry, now);
                            return Ok(self.hit(
                                ctx,
                                parts,
                                &entry,
                                CacheStatus {
                                    hit: true,
                                    ..Default::default()
                                },
                            ));
                        }
                        Reuse::Stale {
                            within_swr: true, ..
                        } => {
                            self.refresh_in_background(ctx, parts, &key, Some(entry.clone()));
                            let status = CacheStatus {
                                hit: true,
                                fwd: Some(Fwd::Stale),
                                detail: Some("stale-while-revalidate".into()),
                                ..Default::default()
                            };
                            return Ok(self.hit(ctx, parts, &entry, status));
                        }
                        Reuse::Stale { within_sie, .. } => {
                            let stale = Stale {
                                entry,
                                serve_on_error: within_sie,
                            };
                            match self
                                .fetch(ctx, parts, &key, Fwd::Stale, Some(stale))
                                .await?
                            {
                                Some(d) => return Ok(d),
                                None => continue,
                            }
                        }
                        Reuse::MustRevalidate => {
                            let fwd = if req_cc.no_cache.is_some()
                                || pragma_no_cache
                                || req_cc.max_age.is_some()
                                || req_cc.min_fresh.is_some()
                            {
                                Fwd::Request
                            } else {
                                Fwd::Stale
                            };
                            let stale = Stale {
                                entry,
                                serve_on_error: false,
                            };
                            match self.fetch(ctx, parts, &key, fwd, Some(stale)).await? {
                                Some(d) => return Ok(d),
                                None => continue,
                            }
                        }
                    }
                }
                Lookup::VaryMiss => Fwd::VaryMiss,
                Lookup::UriMiss => Fwd::UriMiss,
            };
            if req_cc.only_if_cached {
                return Ok(only_if_cached(fwd));
            }
            if let Some(d) = self.fetch(ctx, parts, &key, fwd, None).await? {
                return Ok(d);
            }
        }
        self.fetch_alone(ctx, parts, &key, Fwd::UriMiss, None)
            .await
            .map(|(d, _)| d)
    }

    /// Fetches through the coalescer; `None` means "look up again".
    async fn fetch(
        &self,
        ctx: &mut Ctx,
        parts: &http::request::Parts,
        key: &str,
        fwd: Fwd,
        stale: Option<Stale>,
    ) -> Result<Option<Delivery>, PolicyFailure> {
        match self.flights.join(key) {
            Role::Leader(leader) => {
                let (delivery, flight) = self.fetch_alone(ctx, parts, key, fwd, stale).await?;
                leader.finish(flight);
                Ok(Some(delivery))
            }
            Role::Follower(follower) => match follower.wait().await {
                Some(Flight::Stored(entry, code)) if entry.vary.matches(&parts.headers) => {
                    let status = CacheStatus {
                        fwd: Some(fwd),
                        fwd_status: Some(code),
                        collapsed: true,
                        ..Default::default()
                    };
                    Ok(Some(self.hit(ctx, parts, &entry, status)))
                }
                Some(Flight::Failed(e)) => match stale {
                    Some(s) if s.serve_on_error => {
                        Ok(Some(self.stale_on_error(ctx, parts, &s.entry, e.detail())))
                    }
                    _ => Ok(Some(origin_error(&e, fwd))),
                },
                Some(Flight::Pass) => self
                    .fetch_alone(ctx, parts, key, fwd, stale)
                    .await
                    .map(|(d, _)| Some(d)),
                _ => Ok(None),
            },
        }
    }

    /// One origin exchange for the cache path, storing the result when allowed.
    async fn fetch_alone(
        &self,
        ctx: &mut Ctx,
        parts: &http::request::Parts,
        key: &str,
        fwd: Fwd,
        stale: Option<Stale>,
    ) -> Result<(Delivery, Flight), PolicyFailure> {
        let site = ctx.site.clone();
        let mut headers = parts.headers.clone();
        // The cache fills with a complete, unconditional response of its own and then
        // answers the client's conditions and ranges itself (RFC 9111 §4.3.2).
        for h in [
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_MATCH,
            header::IF_UNMODIFIED_SINCE,
            header::IF_RANGE,
            header::RANGE,
        ] {
            headers.remove(h);
        }
        if let Some(s) = &stale {
            if let Some(etag) = s.entry.headers.get(header::ETAG) {
                headers.insert(header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(lm) = s.entry.headers.get(header::LAST_MODIFIED) {
                headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
            }
        }
        let request_time = SystemTime::now();
        let out = self.origin_request(ctx, Method::GET, &parts.uri, headers, empty());
        let resp = match site.origin.send(out).await {
            Ok(r) => r,
            Err(e) => {
                let d = match &stale {
                    Some(s) if s.serve_on_error => {
                        self.stale_on_error(ctx, parts, &s.entry, e.detail())
                    }
                    _ => origin_error(&e, fwd),
                };
                return Ok((d, Flight::Failed(e)));
            }
        };
        let response_time = SystemTime::now();
        let times = ExchangeTimes {
            request_time,
            response_time,
        };
        let (mut head, body) = resp.into_parts();
        strip_hop_by_hop(&mut head.headers);
        let code = head.status.as_u16();

        if let Some(s) = &stale {
            if head.status == StatusCode::NOT_MODIFIED {
                // RFC 9111 §4.3.4: freshen the stored response with the 304's fields.
                let mut stored = s.entry.headers.clone();
                conditional::update_stored_headers(&mut stored, &head.headers);
                let entry = Arc::new(
                    self.build_entry(
                        ctx,
                        parts,
                        s.entry.status,
                        stored,
                        s.entry.body.clone(),
                        times,
                        Some(s.entry.tags.clone()),
                    )?
                    .0,
                );
                self.store.insert(key, entry.clone());
                let status = CacheStatus {
                    fwd: Some(fwd),
                    fwd_status: Some(304),
                    stored: true,
                    ..Default::default()
                };
                return Ok((
                    self.hit(ctx, parts, &entry, status),
                    Flight::Stored(entry, 304),
                ));
            }
            if head.status.is_server_error() && s.serve_on_error {
                // RFC 5861 §4: a good stale copy beats an error.
                return Ok((
                    self.stale_on_error(ctx, parts, &s.entry, "origin-error"),
                    Flight::Stored(s.entry.clone(), code),
                ));
            }
        }

        let (entry, mut decision) = self.build_entry(
            ctx,
            parts,
            head.status,
            head.headers.clone(),
            Bytes::new(),
            times,
            None,
        )?;
        if stale.is_some() && head.status.is_server_error() {
            // An error is stored only to shield the origin; it never evicts a good copy
            // that a later request may still be allowed to serve stale.
            decision = Decision {
                store: false,
                reason: "kept-stale-copy".into(),
            };
        }
        let too_large = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|len| len > self.config.cache.max_object_bytes);
        let mut status = CacheStatus {
            fwd: Some(fwd),
            fwd_status: Some(code),
            ..Default::default()
        };
        if !decision.store || too_large {
            status.detail = Some(if too_large {
                "too-large".into()
            } else {
                decision.reason
            });
            let response =
                Response::from_parts(head, body.map_err(|e| Box::new(e) as BoxError).boxed());
            return Ok((Delivery { response, status }, Flight::Pass));
        }
        match collect_limited(
            body,
            self.config.cache.max_object_bytes,
            site.origin.response_timeout(),
        )
        .await
        {
            Err(e) => Ok((origin_error(&e, fwd), Flight::Failed(e))),
            Ok(Collected::TooLarge(prefix, rest)) => {
                status.detail = Some("too-large".into());
                let first = futures_util::stream::once(async move {
                    Ok::<_, BoxError>(hyper::body::Frame::data(prefix))
                });
                let rest =
                    http_body_util::BodyStream::new(rest.map_err(|e| Box::new(e) as BoxError));
                let stream = futures_util::StreamExt::chain(first, rest);
                let response =
                    Response::from_parts(head, http_body_util::StreamBody::new(stream).boxed());
                Ok((Delivery { response, status }, Flight::Pass))
            }
            Ok(Collected::Complete(bytes)) => {
                let entry = Arc::new(Entry {
                    body: bytes,
                    ..entry
                });
                self.store.insert(key, entry.clone());
                status.stored = true;
                Ok((
                    self.hit(ctx, parts, &entry, status),
                    Flight::Stored(entry, code),
                ))
            }
        }
    }

    /// Works out how to store a response: RFC 9111 rules, site defaults, then the script.
    #[allow(clippy::too_many_arguments)]
    fn build_entry(
        &self,
        ctx: &mut Ctx,
        parts: &http::request::Parts,
        status: StatusCode,
        mut headers: HeaderMap,
        body: Bytes,
        times: ExchangeTimes,
        keep_tags: Option<Vec<String>>,
    ) -> Result<(Entry, Decision), PolicyFailure> {
        let site = ctx.site.clone();
        let caching = &site.cfg.caching;
        let ctl = effective_response_control(&headers, &site.targets);
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
            &parts.headers,
            status,
            &headers,
            &ctl,
            caching.allow_set_cookie,
        );
        let lifetime =
            freshness::freshness_lifetime(status, &headers, &ctl, times, &Heuristic::default());
        let explicit = freshness::has_explicit_freshness(&headers, &ctl);
        let negative = caching
            .negative_ttl
            .get(&status.as_u16())
            .copied()
            .filter(|_| !explicit);
        let (store, ttl, reason) = match (storable, negative) {
            (Ok(()), Some(neg)) => (true, neg, String::new()),
            (Err(NotStorable::NoFreshness), Some(neg)) => (true, neg, String::new()),
            (Ok(()), None) => (true, lifetime.ttl, String::new()),
            (Err(r), _) => (false, Duration::ZERO, r.as_str().to_owned()),
        };
        let tags = keep_tags.unwrap_or_else(|| surrogate_keys(&headers));
        let proposed = CacheDecision {
            store,
            ttl: secs(ttl),
            stale_while_revalidate: ctl
                .cc
                .stale_while_revalidate
                .unwrap_or(secs(caching.stale_while_revalidate)),
            stale_if_error: ctl
                .cc
                .stale_if_error
                .unwrap_or(secs(caching.stale_if_error)),
            tags,
        };
        let decision = if ctx.implements(Hook::CachePolicy) {
            let head = guest::response_head(status, &headers);
            ctx.cache_policy(&head, proposed)?
        } else {
            proposed
        };
        let reason = if decision.store {
            String::new()
        } else if reason.is_empty() {
            "script".into()
        } else {
            reason
        };
        // Fields a shared cache must not hand to others (RFC 9111 §5.2.2.4, §5.2.2.7).
        for f in freshness::fields_to_strip(&ctl) {
            headers.remove(f);
        }
        if !caching.allow_set_cookie {
            // Even when a script stores a response that set a cookie, the cookie belongs to
            // the one client that caused the fetch; it is never replayed to others.
            headers.remove(header::SET_COOKIE);
        }
        let must_revalidate =
            ctl.cc.must_revalidate || ctl.cc.proxy_revalidate || ctl.cc.s_maxage.is_some();
        let entry = Entry {
            status,
            vary: crate::cache::vary::VaryKey::of(&headers, &parts.headers),
            headers,
            body,
            response_time: times.response_time,
            initial_age: Duration::ZERO,
            ttl: Duration::from_secs(decision.ttl as u64),
            swr: Duration::from_secs(decision.stale_while_revalidate as u64),
            sie: Duration::from_secs(decision.stale_if_error as u64),
            no_cache: ctl.cc.no_cache.as_ref().is_some_and(|f| f.is_empty()),
            must_revalidate,
            tags: decision.tags.clone(),
            invalidated: Default::default(),
        };
        let entry = Entry {
            initial_age: freshness::corrected_initial_age(&entry.headers, times),
            ..entry
        };
        Ok((
            entry,
            Decision {
                store: decision.store,
                reason,
            },
        ))
    }

    /// Requests that the cache does not serve: forwarded with their body, streamed back.
    async fn pass(
        &self,
        ctx: &mut Ctx,
        parts: http::request::Parts,
        body: Incoming,
        keys: &[String],
    ) -> Result<Delivery, PolicyFailure> {
        let unsafe_method = !matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        let out = self.origin_request(
            ctx,
            parts.method.clone(),
            &parts.uri,
            parts.headers.clone(),
            body.map_err(|e| Box::new(e) as BoxError).boxed(),
        );
        let resp = match ctx.site.origin.send(out).await {
            Ok(r) => r,
            Err(e) => return Ok(origin_error(&e, Fwd::Method)),
        };
        let (mut head, body) = resp.into_parts();
        strip_hop_by_hop(&mut head.headers);
        if unsafe_method && (head.status.is_success() || head.status.is_redirection()) {
            // RFC 9111 §4.4: a non-error response to an unsafe method invalidates the
            // target URI and same-origin Location / Content-Location.
            for k in keys {
                self.store.remove(k);
            }
            let authority = ctx.view.authority.clone();
            for h in [header::LOCATION, header::CONTENT_LOCATION] {
                if let Some(uri) = head
                    .headers
                    .get(&h)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<Uri>().ok())
                {
                    let same_origin = uri
                        .authority()
                        .is_none_or(|a| a.as_str().eq_ignore_ascii_case(&authority));
                    if same_origin && uri.path().starts_with('/') {
                        self.store
                            .remove(&key::default_key(&authority, uri.path(), uri.query()));
                    }
                }
            }
        }
        let status = CacheStatus {
            fwd: Some(Fwd::Method),
            fwd_status: Some(head.status.as_u16()),
            ..Default::default()
        };
        let response =
            Response::from_parts(head, body.map_err(|e| Box::new(e) as BoxError).boxed());
        Ok(Delivery { response, status })
    }

    fn origin_request(
        &self,
        ctx: &Ctx,
        method: Method,
        uri: &Uri,
        mut headers: HeaderMap,
        body: OutBody,
    ) -> Request<OutBody> {
        let origin = &ctx.site.cfg.origin;
        let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let target = format!(
            "{}://{}{}",
            origin.scheme_str().unwrap_or("http"),
            origin.authority().map(|a| a.as_str()).unwrap_or_default(),
            path_and_query
        );
        append_forwarded_for(&mut headers, ctx.client.ip());
        append_via(&mut headers, &self.config.node_name);
        headers.insert(
            "x-request-id",
            HeaderValue::from_str(&ctx.request_id).unwrap_or(HeaderValue::from_static("-")),
        );
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = target.parse().unwrap_or_else(|_| origin.clone());
        *req.headers_mut() = headers;
        req
    }

    /// A response served from a stored entry: preconditions, `Age`, the cache's view of ttl.
    fn hit(
        &self,
        ctx: &Ctx,
        parts: &http::request::Parts,
        entry: &Entry,
        mut status: CacheStatus,
    ) -> Delivery {
        let now = SystemTime::now();
        status.ttl = Some(entry.remaining_ttl(now));
        if ctx.site.cfg.caching.debug {
            status.key = Some(ctx.key.clone());
        }
        // RFC 9110 §13.2.1: preconditions apply only where the response would be 2xx.
        let precondition = if entry.status.is_success() {
            conditional::evaluate(&parts.method, &parts.headers, &entry.headers)
        } else {
            Precondition::Proceed
        };
        let mut response = match precondition {
            Precondition::NotModified => {
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                *r.headers_mut() = conditional::not_modified_headers(&entry.headers);
                r
            }
            Precondition::Failed => text(StatusCode::PRECONDITION_FAILED, ""),
            Precondition::Proceed => {
                let mut r = Response::new(empty());
                *r.status_mut() = entry.status;
                *r.headers_mut() = entry.headers.clone();
                // Ranges are cut from complete 200s only (RFC 9110 §14.2).
                let ranges = if parts.method == Method::GET && entry.status == StatusCode::OK {
                    range::evaluate(&parts.headers, &entry.headers, entry.body.len() as u64)
                } else {
                    RangeReply::Full
                };
                let body = match ranges {
                    RangeReply::Full => entry.body.clone(),
                    RangeReply::Partial(ranges) => {
                        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                        range::partial(r.headers_mut(), &entry.body, &ranges)
                    }
                    RangeReply::Unsatisfiable => {
                        *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                        let v = format!("bytes */{}", entry.body.len());
                        r.headers_mut().insert(
                            header::CONTENT_RANGE,
                            HeaderValue::from_str(&v).expect("ascii"),
                        );
                        Bytes::new()
                    }
                };
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                *r.body_mut() = crate::origin::full(body);
                r
            }
        };
        response
            .headers_mut()
            .insert(header::AGE, HeaderValue::from(entry.age(now).as_secs()));
        Delivery { response, status }
    }

    fn stale_on_error(
        &self,
        ctx: &Ctx,
        parts: &http::request::Parts,
        entry: &Entry,
        why: &str,
    ) -> Delivery {
        let status = CacheStatus {
            hit: true,
            fwd: Some(Fwd::Stale),
            detail: Some(format!("stale-if-error; {why}")),
            ..Default::default()
        };
        self.hit(ctx, parts, entry, status)
    }

    fn maybe_refresh_ahead(
        self: &Arc<Self>,
        ctx: &Ctx,
        parts: &http::request::Parts,
        key: &str,
        entry: &Arc<Entry>,
        now: SystemTime,
    ) {
        let Some(fraction) = ctx.site.cfg.caching.refresh_ahead else {
            return;
        };
        let ttl = entry.effective_ttl();
        if !ttl.is_zero() && entry.age(now).as_secs_f64() >= ttl.as_secs_f64() * fraction {
            self.refresh_in_background(ctx, parts, key, Some(entry.clone()));
        }
    }

    /// Starts one background revalidation for `key` unless one is already running.
    fn refresh_in_background(
        self: &Arc<Self>,
        ctx: &Ctx,
        parts: &http::request::Parts,
        key: &str,
        entry: Option<Arc<Entry>>,
    ) {
        let Role::Leader(leader) = self.flights.join(key) else {
            return;
        };
        let shared = self.clone();
        let key = key.to_owned();
        let mut req = Request::new(());
        *req.method_mut() = Method::GET;
        *req.uri_mut() = parts.uri.clone();
        *req.headers_mut() = parts.headers.clone();
        let (parts, ()) = req.into_parts();
        // The background fetch runs without the script session of the request that
        // triggered it: hooks are per request, and this one may already be gone.
        let mut bg = Ctx::new(
            ctx.site.clone(),
            ctx.request_id.clone(),
            ctx.view.clone(),
            ctx.client,
        );
        bg.key = key.clone();
        tokio::spawn(async move {
            let stale = entry.map(|entry| Stale {
                entry,
                serve_on_error: true,
            });
            let flight = match shared
                .fetch_alone(&mut bg, &parts, &key, Fwd::Stale, stale)
                .await
            {
                Ok((_, flight)) => flight,
                Err(PolicyFailure) => Flight::Pass,
            };
            leader.finish(flight);
        });
    }

    /// Last stop for every response: script's `on-response`, then the cache's own headers.
    fn finish(
        &self,
        ctx: Option<&mut Ctx>,
        mut d: Delivery,
        request_id: &str,
        head_only: bool,
    ) -> Response<OutBody> {
        if let Some(ctx) = ctx {
            for i in 0..ctx.sessions.len() {
                if !ctx.sessions[i].implements(Hook::OnResponse) {
                    continue;
                }
                let head = guest::response_head(d.response.status(), d.response.headers());
                match ctx.hook(i, |s, r| s.on_response(r, &head)) {
                    Ok(Some(edits)) => apply_edits(d.response.headers_mut(), &edits),
                    Ok(None) => {}
                    Err(PolicyFailure) => {
                        d = script_failed();
                        break;
                    }
                }
            }
        }
        let node = &self.config.node_name;
        let h = d.response.headers_mut();
        strip_targeted(h);
        append_list(h, "cache-status", &d.status.render("tessera"));
        append_list(h, "x-cache", d.status.x_cache());
        append_list(h, "x-served-by", node);
        append_via(h, node);
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert("x-request-id", v);
        }
        if head_only {
            let (parts, _) = d.response.into_parts();
            return Response::from_parts(parts, empty());
        }
        d.response
    }
}

/// A stored response that needs revalidation, and whether it may stand in for an error.
struct Stale {
    entry: Arc<Entry>,
    serve_on_error: bool,
}

/// The storage decision after the script had its say.
struct Decision {
    store: bool,
    reason: String,
}

fn secs(d: Duration) -> u32 {
    d.as_secs().min(u32::MAX as u64) as u32
}

/// Tags from `Surrogate-Key` (space-separated, Fastly) and `Cache-Tag` (comma-separated).
fn surrogate_keys(headers: &HeaderMap) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for v in headers
        .get_all("surrogate-key")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        tags.extend(v.split_whitespace().map(str::to_owned));
    }
    for v in headers
        .get_all("cache-tag")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        tags.extend(
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        );
    }
    tags
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .split(']')
            .next()
            .map(|h| &h[1..])
            .unwrap_or(authority);
    }
    authority
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(authority)
}

fn text(status: StatusCode, body: &'static str) -> Response<OutBody> {
    let mut r = Response::new(crate::origin::full(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn origin_error(e: &OriginError, fwd: Fwd) -> Delivery {
    let (code, body) = match e {
        OriginError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "origin timed out\n"),
        OriginError::Connect(_) => (StatusCode::BAD_GATEWAY, "origin unreachable\n"),
    };
    let status = CacheStatus {
        fwd: Some(fwd),
        detail: Some(e.detail().into()),
        ..Default::default()
    };
    Delivery {
        response: text(code, body),
        status,
    }
}

/// RFC 9111 §5.2.1.7: the client accepts only a stored response, and there is none usable.
fn only_if_cached(fwd: Fwd) -> Delivery {
    let status = CacheStatus {
        fwd: Some(fwd),
        detail: Some("only-if-cached".into()),
        ..Default::default()
    };
    Delivery {
        response: text(StatusCode::GATEWAY_TIMEOUT, "not in cache\n"),
        status,
    }
}

fn script_failed() -> Delivery {
    let status = CacheStatus {
        detail: Some("script-error".into()),
        ..Default::default()
    };
    Delivery {
        response: text(StatusCode::SERVICE_UNAVAILABLE, "script error\n"),
        status,
    }
}
