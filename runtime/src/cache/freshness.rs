//! Freshness, age, storability and reuse decisions for a shared cache (RFC 9111 §3, §4.2, RFC 5861).

use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderName, AGE, AUTHORIZATION, DATE, EXPIRES, LAST_MODIFIED};
use http::header::{CACHE_CONTROL, PRAGMA, SET_COOKIE, VARY};
use http::{Method, StatusCode};

use super::directives::{CacheControl, EffectiveControl, DELTA_SECONDS_MAX};

/// Times the cache recorded around one origin exchange (RFC 9111 §4.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeTimes {
    /// When the cache sent the request that produced the response.
    pub request_time: SystemTime,
    /// When the cache received the response.
    pub response_time: SystemTime,
}

/// The corrected initial age of a response: §4.2.3 (apparent_age from Date, corrected_age_value from Age + response_delay).
pub fn corrected_initial_age(headers: &HeaderMap, times: ExchangeTimes) -> Duration {
    // RFC 9111 §4.2.3: a missing Date means "received now", so apparent_age is 0.
    let apparent_age = http_date(headers, &DATE)
        .and_then(|date| times.response_time.duration_since(date).ok())
        .unwrap_or(Duration::ZERO);
    let response_delay = times
        .response_time
        .duration_since(times.request_time)
        .unwrap_or(Duration::ZERO);
    let corrected_age_value = age_value(headers) + response_delay;
    apparent_age.max(corrected_age_value)
}

/// Current age of a stored response at `now` (§4.2.3).
pub fn current_age(
    corrected_initial_age: Duration,
    response_time: SystemTime,
    now: SystemTime,
) -> Duration {
    let resident_time = now.duration_since(response_time).unwrap_or(Duration::ZERO);
    corrected_initial_age + resident_time
}

/// How long a response stays fresh, and whether that came from a heuristic (§4.2.1, §4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// The freshness lifetime.
    pub ttl: Duration,
    /// True when no explicit expiration was given and the lifetime is heuristic (§4.2.2).
    pub heuristic: bool,
}

/// Heuristic freshness settings (§4.2.2): fraction of (Date - Last-Modified), capped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heuristic {
    /// Fraction of the time since Last-Modified granted as lifetime (RFC 9111 §4.2.2 suggests 10%).
    pub fraction: f64,
    /// Upper bound on any heuristic lifetime.
    pub max: Duration,
}

impl Default for Heuristic {
    fn default() -> Self {
        Heuristic {
            fraction: 0.1,
            max: Duration::from_secs(86_400),
        }
    }
}

/// Freshness lifetime for a shared cache (§4.2.1): s-maxage, then max-age, then Expires - Date, then heuristic.
pub fn freshness_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    ctl: &EffectiveControl,
    times: ExchangeTimes,
    heuristic: &Heuristic,
) -> Lifetime {
    let explicit = |secs: u32| Lifetime {
        ttl: Duration::from_secs(u64::from(secs)),
        heuristic: false,
    };
    // RFC 9111 §4.2.1: a shared cache prefers s-maxage, then max-age.
    if let Some(s) = ctl.cc.s_maxage {
        return explicit(s);
    }
    if let Some(m) = ctl.cc.max_age {
        return explicit(m);
    }
    let date = http_date(headers, &DATE).unwrap_or(times.response_time);
    if !ctl.ignores_expires() && headers.contains_key(EXPIRES) {
        // RFC 9111 §5.3: an invalid Expires (e.g. "0") is a time in the past; conflicting
        // duplicate lines also read as stale (§4.2.1).
        let ttl = single_http_date(headers, &EXPIRES)
            .and_then(|exp| exp.duration_since(date).ok())
            .unwrap_or(Duration::ZERO);
        // Whole seconds, as every lifetime is stored (`Secs`): decided on what is kept, so
        // that a lifetime under a second is no lifetime (Expires against the time received,
        // when there is no Date).
        return Lifetime {
            ttl: Duration::from_secs(ttl.as_secs())
                .min(Duration::from_secs(u64::from(DELTA_SECONDS_MAX))),
            heuristic: false,
        };
    }
    // RFC 9111 §4.2.2: heuristics only for heuristically cacheable statuses or explicit `public`.
    if !(heuristically_cacheable(status) || ctl.cc.public) {
        return Lifetime {
            ttl: Duration::ZERO,
            heuristic: false,
        };
    }
    let ttl = http_date(headers, &LAST_MODIFIED)
        .and_then(|lm| date.duration_since(lm).ok())
        .map(|since| {
            since
                .mul_f64(heuristic.fraction.clamp(0.0, 1.0))
                .min(heuristic.max)
        })
        .unwrap_or(Duration::ZERO);
    Lifetime {
        ttl: Duration::from_secs(ttl.as_secs()),
        heuristic: true,
    }
}

/// Status codes cacheable by default (RFC 9110 §15.1): 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501.
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// True when the response carries explicit expiration for this cache (RFC 9111 §4.2.1).
pub fn has_explicit_freshness(headers: &HeaderMap, ctl: &EffectiveControl) -> bool {
    ctl.cc.s_maxage.is_some()
        || ctl.cc.max_age.is_some()
        || (!ctl.ignores_expires() && headers.contains_key(EXPIRES))
}

/// Why a response may not be stored; `as_str()` goes into Cache-Status `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// The request method is not GET (HEAD is answered from a GET entry).
    Method,
    /// The status is not final, not understood, or 304.
    Status,
    /// `no-store` in the request or the response (§5.2.1.5, §5.2.2.5).
    NoStore,
    /// Unqualified `private` (§5.2.2.7).
    Private,
    /// The request carried `Authorization` and the response did not allow shared caching (§3.5).
    Authorization,
    /// The response sets a cookie and the site did not opt in.
    SetCookie,
    /// 206 Partial Content: only complete responses are stored.
    Partial,
    /// `Vary: *` can never be matched (§4.1).
    Vary,
    /// No explicit freshness, not heuristically cacheable and not `public` (§3).
    NoFreshness,
}

impl NotStorable {
    /// Token for the Cache-Status `detail` parameter (RFC 9211 §2.8).
    pub fn as_str(&self) -> &'static str {
        match self {
            NotStorable::Method => "method",
            NotStorable::Status => "status",
            NotStorable::NoStore => "no-store",
            NotStorable::Private => "private",
            NotStorable::Authorization => "authorization",
            NotStorable::SetCookie => "set-cookie",
            NotStorable::Partial => "partial",
            NotStorable::Vary => "vary-star",
            NotStorable::NoFreshness => "no-freshness",
        }
    }
}

impl std::fmt::Display for NotStorable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status codes whose caching requirements this cache implements (RFC 9110 §15, for `must-understand`).
pub fn understood_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

/// Decides whether a shared cache may store this response (§3). `allow_set_cookie` is the site's opt-in.
pub fn storable(
    method: &Method,
    req_headers: &HeaderMap,
    status: StatusCode,
    resp_headers: &HeaderMap,
    ctl: &EffectiveControl,
    allow_set_cookie: bool,
) -> Result<(), NotStorable> {
    let cc = &ctl.cc;
    // RFC 9111 §3: the method must be understood and cacheable; HEAD is served from GET entries.
    if *method != Method::GET {
        return Err(NotStorable::Method);
    }
    let code = status.as_u16();
    if code == 206 {
        return Err(NotStorable::Partial);
    }
    // RFC 9111 §3: final status only; 304 freshens, it is never an entry of its own; with
    // must-understand the status must be one we implement (§5.2.2.3).
    if code < 200 || code == 304 || (cc.must_understand && !understood_status(status)) {
        return Err(NotStorable::Status);
    }
    // RFC 9111 §5.2.2.3: must-understand overrides no-store for a cache that understands the status.
    let response_no_store = cc.no_store && !cc.must_understand;
    if response_no_store || CacheControl::from_headers(req_headers).no_store {
        return Err(NotStorable::NoStore);
    }
    if cc.private_unqualified() {
        return Err(NotStorable::Private);
    }
    // RFC 9111 §3.5: only public, s-maxage or must-revalidate let a shared cache store these.
    if req_headers.contains_key(AUTHORIZATION)
        && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
    {
        return Err(NotStorable::Authorization);
    }
    if resp_headers.contains_key(SET_COOKIE) && !allow_set_cookie {
        return Err(NotStorable::SetCookie);
    }
    if vary_star(resp_headers) {
        return Err(NotStorable::Vary);
    }
    if !(has_explicit_freshness(resp_headers, ctl) || heuristically_cacheable(status) || cc.public)
    {
        return Err(NotStorable::NoFreshness);
    }
    Ok(())
}

/// Fields a shared cache must drop before storing: qualified `private` and `no-cache` (§3.1, §5.2.2.4, §5.2.2.7).
pub fn fields_to_strip(ctl: &EffectiveControl) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = Vec::new();
    for list in [&ctl.cc.private, &ctl.cc.no_cache].into_iter().flatten() {
        for f in list {
            if let Ok(name) = HeaderName::from_bytes(f.as_bytes()) {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// True when any Vary member is `*` (RFC 9110 §12.5.5).
fn vary_star(headers: &HeaderMap) -> bool {
    headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| m.trim() == "*")
}

/// What the cache must do before reusing a stored response for a request (§4.2.4, §5.2.1, §5.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Fresh and acceptable to the client: serve it.
    Fresh,
    /// Stale, but the client's `max-stale` accepts it (§5.2.1.2): serve it without revalidating.
    StaleAllowedByRequest,
    /// Stale: revalidate; meanwhile it may be served within stale-while-revalidate, or on
    /// origin error within stale-if-error (RFC 5861).
    Stale {
        /// Staleness is within stale-while-revalidate.
        within_swr: bool,
        /// Staleness is within stale-if-error (response value, or the request's if larger).
        within_sie: bool,
    },
    /// Must be validated with the origin; never serve it without a successful validation.
    MustRevalidate,
}

/// What the cache knows about one stored response when deciding reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredFacts {
    /// Freshness lifetime.
    pub ttl: Duration,
    /// Current age (§4.2.3).
    pub age: Duration,
    /// stale-while-revalidate window (RFC 5861 §3).
    pub swr: Duration,
    /// stale-if-error window (RFC 5861 §4).
    pub sie: Duration,
    /// Unqualified no-cache on the response: always revalidate (§5.2.2.4).
    pub no_cache: bool,
    /// must-revalidate, proxy-revalidate, or s-maxage present: never serve stale (§5.2.2.2, §5.2.2.8, §5.2.2.10).
    pub must_revalidate: bool,
}

impl StoredFacts {
    /// Gathers the facts from a response's effective control, its lifetime and its current age.
    pub fn new(ctl: &EffectiveControl, ttl: Duration, age: Duration) -> StoredFacts {
        let secs = |v: Option<u32>| Duration::from_secs(u64::from(v.unwrap_or(0)));
        StoredFacts {
            ttl,
            age,
            swr: secs(ctl.cc.stale_while_revalidate),
            sie: secs(ctl.cc.stale_if_error),
            no_cache: ctl.cc.no_cache_unqualified(),
            must_revalidate: ctl.cc.must_revalidate
                || ctl.cc.proxy_revalidate
                || ctl.cc.s_maxage.is_some(),
        }
    }
}

/// True when a request's `Pragma: no-cache` counts: only without Cache-Control (RFC 9111 §5.4).
pub fn pragma_no_cache(req_headers: &HeaderMap) -> bool {
    !req_headers.contains_key(CACHE_CONTROL)
        && req_headers
            .get_all(PRAGMA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
}

/// Applies request directives (max-age, min-fresh, max-stale, no-cache, and `Pragma: no-cache` when there is no Cache-Control §5.4) to a stored response.
pub fn reuse(facts: &StoredFacts, req: &CacheControl, req_pragma_no_cache: bool) -> Reuse {
    // RFC 9111 §5.2.2.4 and §5.2.1.4: no-cache on either side forbids reuse without validation.
    if facts.no_cache || req.no_cache.is_some() || req_pragma_no_cache {
        return Reuse::MustRevalidate;
    }
    // RFC 9111 §5.2.1.1: the client does not want a response older than max-age.
    if let Some(max_age) = req.max_age {
        if facts.age > Duration::from_secs(u64::from(max_age)) {
            return Reuse::MustRevalidate;
        }
    }
    // RFC 9111 §4.2: fresh iff freshness_lifetime > current_age.
    if facts.ttl > facts.age {
        let remaining = facts.ttl - facts.age;
        // RFC 9111 §5.2.1.3: the client wants it to stay fresh at least min-fresh longer.
        return match req.min_fresh {
            Some(min) if remaining < Duration::from_secs(u64::from(min)) => Reuse::MustRevalidate,
            _ => Reuse::Fresh,
        };
    }
    // RFC 9111 §4.2.4: a stale response with must-revalidate (or proxy-revalidate / s-maxage in a
    // shared cache) is never served stale, whatever max-stale or stale-if-error say (RFC 5861 §4).
    // A min-fresh request cannot be satisfied by a stale response either (§5.2.1.3).
    if facts.must_revalidate || req.min_fresh.is_some() {
        return Reuse::MustRevalidate;
    }
    let staleness = facts.age - facts.ttl;
    match req.max_stale {
        Some(None) => return Reuse::StaleAllowedByRequest,
        Some(Some(n)) if staleness <= Duration::from_secs(u64::from(n)) => {
            return Reuse::StaleAllowedByRequest;
        }
        _ => {}
    }
    // RFC 5861 §4: a request's stale-if-error widens the window for this request.
    let sie = facts.sie.max(Duration::from_secs(u64::from(
        req.stale_if_error.unwrap_or(0),
    )));
    let within = |window: Duration| !window.is_zero() && staleness <= window;
    Reuse::Stale {
        within_swr: within(facts.swr),
        within_sie: within(sie),
    }
}

/// Parses a field as an HTTP-date (RFC 9110 §5.6.7: IMF-fixdate, RFC 850, asctime); first line only.
pub fn http_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let v = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(v.trim()).ok()
}

/// Like [`http_date`], but `None` when several lines disagree (RFC 9111 §4.2.1).
fn single_http_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    if lines.any(|v| v != first) {
        return None;
    }
    httpdate::parse_http_date(first.to_str().ok()?.trim()).ok()
}

/// The Age field (RFC 9111 §5.1): first list member; an invalid value is ignored.
fn age_value(headers: &HeaderMap) -> Duration {
    let secs = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .map(|v| {
            v.parse::<u64>()
                .unwrap_or(u64::MAX)
                .min(u64::from(DELTA_SECONDS_MAX))
        })
        .unwrap_or(0);
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::super::directives::{effective_response_control, Source, Targets};
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn at(secs: u64) -> SystemTime {
        // 2015-10-21T07:28:00Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480 + secs)
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(at(secs))
    }

    fn times(req: u64, resp: u64) -> ExchangeTimes {
        ExchangeTimes {
            request_time: at(req),
            response_time: at(resp),
        }
    }

    fn ctl(h: &HeaderMap) -> EffectiveControl {
        effective_response_control(h, &Targets::default())
    }

    fn lifetime(status: u16, h: &HeaderMap) -> Lifetime {
        freshness_lifetime(
            StatusCode::from_u16(status).unwrap(),
            h,
            &ctl(h),
            times(0, 0),
            &Heuristic::default(),
        )
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    // --- age, RFC 9111 §4.2.3 ---

    #[test]
    fn apparent_age_comes_from_date_rfc9111_4_2_3() {
        let h = headers(&[("date", &date(0))]);
        assert_eq!(corrected_initial_age(&h, times(10, 10)), secs(10));
    }

    #[test]
    fn age_header_plus_response_delay_is_used_when_larger_rfc9111_4_2_3() {
        let h = headers(&[("date", &date(10)), ("age", "100")]);
        assert_eq!(corrected_initial_age(&h, times(8, 10)), secs(102));
    }

    #[test]
    fn date_in_the_future_gives_zero_apparent_age_rfc9111_4_2_3() {
        let h = headers(&[("date", &date(500))]);
        assert_eq!(corrected_initial_age(&h, times(10, 10)), secs(0));
    }

    #[test]
    fn invalid_age_is_ignored_and_list_uses_first_member_rfc9111_5_1() {
        assert_eq!(
            corrected_initial_age(&headers(&[("age", "abc")]), times(0, 0)),
            secs(0)
        );
        assert_eq!(
            corrected_initial_age(&headers(&[("age", "-5")]), times(0, 0)),
            secs(0)
        );
        assert_eq!(
            corrected_initial_age(&headers(&[("age", "7, 9")]), times(0, 0)),
            secs(7)
        );
    }

    #[test]
    fn current_age_adds_resident_time_rfc9111_4_2_3() {
        assert_eq!(current_age(secs(5), at(100), at(130)), secs(35));
        assert_eq!(current_age(secs(5), at(100), at(90)), secs(5));
    }

    // --- lifetime, RFC 9111 §4.2.1 ---

    #[test]
    fn s_maxage_overrides_max_age_for_shared_cache_rfc9111_5_2_2_10() {
        let h = headers(&[("cache-control", "max-age=10, s-maxage=100")]);
        assert_eq!(lifetime(200, &h).ttl, secs(100));
    }

    #[test]
    fn max_age_overrides_expires_rfc9111_5_3() {
        let h = headers(&[
            ("cache-control", "max-age=10"),
            ("date", &date(0)),
            ("expires", &date(1000)),
        ]);
        assert_eq!(
            lifetime(200, &h),
            Lifetime {
                ttl: secs(10),
                heuristic: false
            }
        );
    }

    #[test]
    fn expires_minus_date_is_the_lifetime_rfc9111_4_2_1() {
        let h = headers(&[("date", &date(0)), ("expires", &date(300))]);
        assert_eq!(
            lifetime(200, &h),
            Lifetime {
                ttl: secs(300),
                heuristic: false
            }
        );
    }

    #[test]
    fn expires_without_date_uses_response_time_rfc9111_4_2_1() {
        let h = headers(&[("expires", &date(300))]);
        let l = freshness_lifetime(
            StatusCode::OK,
            &h,
            &ctl(&h),
            times(0, 100),
            &Heuristic::default(),
        );
        assert_eq!(l.ttl, secs(200));
    }

    #[test]
    fn a_lifetime_is_whole_seconds_so_one_under_a_second_is_none() {
        // Received 0.4 s before the Expires instant, no Date: 0.4 s is not kept (lifetimes
        // are stored in whole seconds), so it must not count as a lifetime either.
        let h = headers(&[("expires", &date(1))]);
        for (received, ttl) in [
            (at(0) + Duration::from_millis(600), secs(0)),
            (at(0) - Duration::from_millis(600), secs(1)),
        ] {
            let times = ExchangeTimes {
                request_time: at(0),
                response_time: received,
            };
            let l = freshness_lifetime(StatusCode::OK, &h, &ctl(&h), times, &Heuristic::default());
            assert_eq!(l.ttl, ttl);
        }
    }

    #[test]
    fn invalid_expires_including_zero_means_already_expired_rfc9111_5_3() {
        let lm = date(0);
        for bad in ["0", "-1", "tomorrow", ""] {
            let h = headers(&[
                ("date", &date(1000)),
                ("expires", bad),
                ("last-modified", &lm),
            ]);
            assert_eq!(
                lifetime(200, &h),
                Lifetime {
                    ttl: secs(0),
                    heuristic: false
                },
                "{bad:?}"
            );
        }
    }

    #[test]
    fn conflicting_expires_lines_are_stale_rfc9111_4_2_1() {
        let h = headers(&[
            ("date", &date(0)),
            ("expires", &date(100)),
            ("expires", &date(200)),
        ]);
        assert_eq!(lifetime(200, &h).ttl, secs(0));
    }

    #[test]
    fn expires_is_ignored_when_a_targeted_field_decides_rfc9213_2_1() {
        let h = headers(&[
            ("cdn-cache-control", "public"),
            ("date", &date(1000)),
            ("expires", &date(2000)),
            ("last-modified", &date(0)),
        ]);
        let l = lifetime(200, &h);
        assert_eq!(
            l,
            Lifetime {
                ttl: secs(100),
                heuristic: true
            }
        );
    }

    #[test]
    fn http_dates_in_all_three_formats_are_accepted_rfc9110_5_6_7() {
        for exp in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            let h = headers(&[("date", "Sun, 06 Nov 1994 08:48:37 GMT"), ("expires", exp)]);
            assert_eq!(lifetime(200, &h).ttl, secs(60), "{exp}");
        }
    }

    // --- heuristics, RFC 9111 §4.2.2 ---

    #[test]
    fn heuristic_is_a_fraction_of_time_since_last_modified_rfc9111_4_2_2() {
        let h = headers(&[("date", &date(1000)), ("last-modified", &date(0))]);
        assert_eq!(
            lifetime(200, &h),
            Lifetime {
                ttl: secs(100),
                heuristic: true
            }
        );
    }

    #[test]
    fn heuristic_is_capped_rfc9111_4_2_2() {
        let h = headers(&[("date", &date(100 * 86_400)), ("last-modified", &date(0))]);
        assert_eq!(lifetime(200, &h).ttl, secs(86_400));
    }

    #[test]
    fn heuristic_needs_a_heuristically_cacheable_status_or_public_rfc9111_4_2_2() {
        let lm = [("date", date(1000)), ("last-modified", date(0))];
        let h = headers(&[(lm[0].0, &lm[0].1), (lm[1].0, &lm[1].1)]);
        assert_eq!(
            lifetime(302, &h),
            Lifetime {
                ttl: secs(0),
                heuristic: false
            }
        );
        let h = headers(&[
            (lm[0].0, &lm[0].1),
            (lm[1].0, &lm[1].1),
            ("cache-control", "public"),
        ]);
        assert_eq!(
            lifetime(302, &h),
            Lifetime {
                ttl: secs(100),
                heuristic: true
            }
        );
    }

    #[test]
    fn heuristic_without_last_modified_is_zero_rfc9111_4_2_2() {
        let h = headers(&[("date", &date(1000))]);
        assert_eq!(
            lifetime(200, &h),
            Lifetime {
                ttl: secs(0),
                heuristic: true
            }
        );
    }

    #[test]
    fn heuristically_cacheable_statuses_rfc9110_15_1() {
        for s in [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501] {
            assert!(
                heuristically_cacheable(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
        for s in [201, 302, 303, 307, 400, 403, 500, 502, 503] {
            assert!(
                !heuristically_cacheable(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
    }

    // --- storage, RFC 9111 §3 ---

    fn store(
        method: Method,
        req: &[(&str, &str)],
        status: u16,
        resp: &[(&str, &str)],
        cookies: bool,
    ) -> Result<(), NotStorable> {
        let rh = headers(resp);
        storable(
            &method,
            &headers(req),
            StatusCode::from_u16(status).unwrap(),
            &rh,
            &ctl(&rh),
            cookies,
        )
    }

    #[test]
    fn plain_200_is_storable_rfc9111_3() {
        assert_eq!(store(Method::GET, &[], 200, &[], false), Ok(()));
    }

    #[test]
    fn only_get_is_stored_rfc9111_3() {
        for m in [Method::HEAD, Method::POST, Method::PUT] {
            assert_eq!(
                store(m, &[], 200, &[("cache-control", "max-age=60")], false),
                Err(NotStorable::Method)
            );
        }
    }

    #[test]
    fn interim_partial_and_not_modified_are_not_stored_rfc9111_3() {
        assert_eq!(
            store(Method::GET, &[], 103, &[], false),
            Err(NotStorable::Status)
        );
        assert_eq!(
            store(Method::GET, &[], 304, &[], false),
            Err(NotStorable::Status)
        );
        assert_eq!(
            store(
                Method::GET,
                &[],
                206,
                &[("cache-control", "max-age=9")],
                false
            ),
            Err(NotStorable::Partial)
        );
    }

    #[test]
    fn other_statuses_need_explicit_freshness_or_public_rfc9111_3() {
        assert_eq!(
            store(Method::GET, &[], 302, &[], false),
            Err(NotStorable::NoFreshness)
        );
        assert_eq!(
            store(Method::GET, &[], 500, &[], false),
            Err(NotStorable::NoFreshness)
        );
        assert_eq!(
            store(
                Method::GET,
                &[],
                302,
                &[("cache-control", "max-age=60")],
                false
            ),
            Ok(())
        );
        assert_eq!(
            store(Method::GET, &[], 302, &[("expires", "0")], false),
            Ok(())
        );
        assert_eq!(
            store(Method::GET, &[], 503, &[("cache-control", "public")], false),
            Ok(())
        );
        assert_eq!(
            store(
                Method::GET,
                &[],
                299,
                &[("cache-control", "s-maxage=5")],
                false
            ),
            Ok(())
        );
    }

    #[test]
    fn no_store_in_request_or_response_prevents_storage_rfc9111_5_2_1_5_and_5_2_2_5() {
        assert_eq!(
            store(
                Method::GET,
                &[],
                200,
                &[("cache-control", "no-store, max-age=60")],
                false
            ),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            store(
                Method::GET,
                &[("cache-control", "no-store")],
                200,
                &[("cache-control", "max-age=60")],
                false
            ),
            Err(NotStorable::NoStore)
        );
    }

    #[test]
    fn must_understand_overrides_no_store_for_understood_status_rfc9111_5_2_2_3() {
        let cc = [("cache-control", "must-understand, no-store, max-age=60")];
        assert_eq!(store(Method::GET, &[], 200, &cc, false), Ok(()));
        assert_eq!(
            store(Method::GET, &[], 299, &cc, false),
            Err(NotStorable::Status)
        );
    }

    #[test]
    fn unqualified_private_is_not_stored_by_shared_cache_rfc9111_5_2_2_7() {
        assert_eq!(
            store(
                Method::GET,
                &[],
                200,
                &[("cache-control", "private, max-age=60")],
                false
            ),
            Err(NotStorable::Private)
        );
        assert_eq!(
            store(
                Method::GET,
                &[],
                200,
                &[("cache-control", "private=\"x-user\", max-age=60")],
                false
            ),
            Ok(())
        );
    }

    #[test]
    fn qualified_private_and_no_cache_fields_are_stripped_rfc9111_5_2_2_4_and_5_2_2_7() {
        let h = headers(&[(
            "cache-control",
            "private=\"X-User, set-cookie\", no-cache=\"x-debug, x-user\", max-age=60",
        )]);
        let mut names: Vec<_> = fields_to_strip(&ctl(&h))
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect();
        // Each once, in no particular order.
        names.sort();
        assert_eq!(names, ["set-cookie", "x-debug", "x-user"]);
    }

    #[test]
    fn authorization_needs_public_s_maxage_or_must_revalidate_rfc9111_3_5() {
        let auth = [("authorization", "Bearer x")];
        assert_eq!(
            store(
                Method::GET,
                &auth,
                200,
                &[("cache-control", "max-age=60")],
                false
            ),
            Err(NotStorable::Authorization)
        );
        for ok in ["public", "s-maxage=60", "must-revalidate, max-age=60"] {
            assert_eq!(
                store(Method::GET, &auth, 200, &[("cache-control", ok)], false),
                Ok(()),
                "{ok}"
            );
        }
    }

    #[test]
    fn set_cookie_needs_the_site_opt_in() {
        let r = [("set-cookie", "a=b"), ("cache-control", "max-age=60")];
        assert_eq!(
            store(Method::GET, &[], 200, &r, false),
            Err(NotStorable::SetCookie)
        );
        assert_eq!(store(Method::GET, &[], 200, &r, true), Ok(()));
    }

    #[test]
    fn vary_star_is_not_stored_rfc9111_4_1() {
        assert_eq!(
            store(
                Method::GET,
                &[],
                200,
                &[("vary", "accept-encoding, *")],
                false
            ),
            Err(NotStorable::Vary)
        );
        assert_eq!(
            store(Method::GET, &[], 200, &[("vary", "accept-encoding")], false),
            Ok(())
        );
    }

    #[test]
    fn targeted_field_decides_storage_over_cache_control_rfc9213_2_1() {
        let r = [
            ("cache-control", "private, no-store"),
            ("cdn-cache-control", "max-age=60"),
        ];
        assert_eq!(store(Method::GET, &[], 200, &r, false), Ok(()));
        let r = [
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "no-store"),
        ];
        assert_eq!(
            store(Method::GET, &[], 200, &r, false),
            Err(NotStorable::NoStore)
        );
    }

    #[test]
    fn not_storable_reasons_have_cache_status_tokens_rfc9211_2_8() {
        assert_eq!(NotStorable::NoStore.as_str(), "no-store");
        assert_eq!(NotStorable::Vary.to_string(), "vary-star");
    }

    // --- reuse, RFC 9111 §4.2.4, §5.2.1, RFC 5861 ---

    fn facts(ttl: u64, age: u64) -> StoredFacts {
        StoredFacts {
            ttl: secs(ttl),
            age: secs(age),
            ..Default::default()
        }
    }

    fn req(v: &str) -> CacheControl {
        CacheControl::parse([v])
    }

    #[test]
    fn fresh_response_is_served_rfc9111_4_2() {
        assert_eq!(reuse(&facts(60, 10), &req(""), false), Reuse::Fresh);
        assert_eq!(
            reuse(&facts(60, 60), &req(""), false),
            Reuse::Stale {
                within_swr: false,
                within_sie: false
            }
        );
    }

    #[test]
    fn response_no_cache_always_revalidates_rfc9111_5_2_2_4() {
        let f = StoredFacts {
            no_cache: true,
            ..facts(60, 0)
        };
        assert_eq!(reuse(&f, &req(""), false), Reuse::MustRevalidate);
    }

    #[test]
    fn request_no_cache_and_pragma_revalidate_rfc9111_5_2_1_4_and_5_4() {
        assert_eq!(
            reuse(&facts(60, 0), &req("no-cache"), false),
            Reuse::MustRevalidate
        );
        assert_eq!(reuse(&facts(60, 0), &req(""), true), Reuse::MustRevalidate);
        assert!(pragma_no_cache(&headers(&[("pragma", "No-Cache")])));
        assert!(!pragma_no_cache(&headers(&[
            ("pragma", "no-cache"),
            ("cache-control", "max-age=5")
        ])));
    }

    #[test]
    fn request_max_age_limits_acceptable_age_rfc9111_5_2_1_1() {
        assert_eq!(
            reuse(&facts(600, 30), &req("max-age=10"), false),
            Reuse::MustRevalidate
        );
        assert_eq!(
            reuse(&facts(600, 10), &req("max-age=10"), false),
            Reuse::Fresh
        );
        assert_eq!(
            reuse(&facts(600, 1), &req("max-age=0"), false),
            Reuse::MustRevalidate
        );
    }

    #[test]
    fn min_fresh_requires_remaining_freshness_rfc9111_5_2_1_3() {
        assert_eq!(
            reuse(&facts(60, 40), &req("min-fresh=30"), false),
            Reuse::MustRevalidate
        );
        assert_eq!(
            reuse(&facts(60, 30), &req("min-fresh=30"), false),
            Reuse::Fresh
        );
    }

    #[test]
    fn max_stale_accepts_stale_within_bound_rfc9111_5_2_1_2() {
        assert_eq!(
            reuse(&facts(60, 1000), &req("max-stale"), false),
            Reuse::StaleAllowedByRequest
        );
        assert_eq!(
            reuse(&facts(60, 90), &req("max-stale=30"), false),
            Reuse::StaleAllowedByRequest
        );
        assert_eq!(
            reuse(&facts(60, 91), &req("max-stale=30"), false),
            Reuse::Stale {
                within_swr: false,
                within_sie: false
            }
        );
    }

    #[test]
    fn must_revalidate_forbids_stale_even_with_max_stale_or_stale_if_error_rfc9111_4_2_4_rfc5861_4()
    {
        let f = StoredFacts {
            must_revalidate: true,
            swr: secs(100),
            sie: secs(100),
            ..facts(60, 70)
        };
        assert_eq!(reuse(&f, &req("max-stale"), false), Reuse::MustRevalidate);
        assert_eq!(
            reuse(&f, &req("stale-if-error=600"), false),
            Reuse::MustRevalidate
        );
        let fresh = StoredFacts {
            must_revalidate: true,
            ..facts(60, 10)
        };
        assert_eq!(reuse(&fresh, &req(""), false), Reuse::Fresh);
    }

    #[test]
    fn s_maxage_implies_proxy_revalidate_rfc9111_5_2_2_10() {
        let h = headers(&[("cache-control", "s-maxage=60, stale-while-revalidate=30")]);
        let f = StoredFacts::new(&ctl(&h), secs(60), secs(70));
        assert!(f.must_revalidate);
        assert_eq!(reuse(&f, &req(""), false), Reuse::MustRevalidate);
    }

    #[test]
    fn stale_windows_are_reported_rfc5861_3_and_4() {
        let h = headers(&[(
            "cache-control",
            "max-age=60, stale-while-revalidate=30, stale-if-error=300",
        )]);
        let c = ctl(&h);
        assert_eq!(c.source, Source::CacheControl);
        let r = |age| reuse(&StoredFacts::new(&c, secs(60), secs(age)), &req(""), false);
        assert_eq!(
            r(80),
            Reuse::Stale {
                within_swr: true,
                within_sie: true
            }
        );
        assert_eq!(
            r(200),
            Reuse::Stale {
                within_swr: false,
                within_sie: true
            }
        );
        assert_eq!(
            r(400),
            Reuse::Stale {
                within_swr: false,
                within_sie: false
            }
        );
    }

    #[test]
    fn request_stale_if_error_extends_the_window_rfc5861_4() {
        let f = StoredFacts {
            sie: secs(10),
            ..facts(60, 100)
        };
        assert_eq!(
            reuse(&f, &req("stale-if-error=50"), false),
            Reuse::Stale {
                within_swr: false,
                within_sie: true
            }
        );
        assert_eq!(
            reuse(&f, &req(""), false),
            Reuse::Stale {
                within_swr: false,
                within_sie: false
            }
        );
    }
}
