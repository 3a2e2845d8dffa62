//! Shared-cache MUST-level behaviour, case by case, through the binary (RFC 9111, RFC 9110).
//! Each test pins a requirement a conformance run checks; names state the clause.

use std::time::{Duration, SystemTime};

use crate::support::{Origin, Proxy, Reply};

fn v(n: usize) -> String {
    format!("v{n}")
}

fn http_date(offset_secs: i64) -> String {
    let now = SystemTime::now();
    let t = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs as u64)
    } else {
        now - Duration::from_secs(offset_secs.unsigned_abs())
    };
    httpdate::fmt_http_date(t)
}

#[tokio::test]
async fn a_5xx_with_only_last_modified_is_not_reused_rfc9111_4_2_2() {
    // 502, 503 and 504 are not heuristically cacheable: without explicit freshness a cache
    // must not reuse them, whatever Last-Modified suggests.
    for status in [502u16, 503, 504] {
        let lm = http_date(-86_400);
        let origin =
            Origin::start(move |_, n| Reply::status(status, &v(n)).header("last-modified", &lm))
                .await;
        let proxy = Proxy::quick(&origin, &[]).await;
        assert_eq!(proxy.get("/", &[]).await.body, "v1");
        let second = proxy.get("/", &[]).await;
        assert_eq!(
            (second.status, second.body.as_str()),
            (status, "v2"),
            "{status}: {}",
            second.cache_status()
        );
    }
}

#[tokio::test]
async fn a_status_without_heuristic_cacheability_and_no_public_is_not_reused_rfc9111_4_2_2() {
    let lm = http_date(-86_400);
    let origin =
        Origin::start(move |_, n| Reply::status(599, &v(n)).header("last-modified", &lm)).await;
    let proxy = Proxy::quick(&origin, &[]).await;
    proxy.get("/", &[]).await;
    assert_eq!(proxy.get("/", &[]).await.body, "v2");
}

#[tokio::test]
async fn whitespace_around_the_equals_sign_never_grants_freshness_rfc9111_5_2() {
    // `cache-directive = token [ "=" ( token / quoted-string ) ]`: no whitespace around "=".
    for cc in ["max-age =3600", "max-age= 3600", "s-maxage =3600"] {
        let origin = Origin::start(move |_, n| Reply::ok(&v(n)).header("cache-control", cc)).await;
        let proxy = Proxy::quick(&origin, &[]).await;
        proxy.get("/", &[]).await;
        let second = proxy.get("/", &[]).await;
        assert_eq!(second.body, "v2", "{cc}: {}", second.cache_status());
    }
}

#[tokio::test]
async fn max_age_in_a_quoted_extension_is_not_a_directive_rfc9111_5_2() {
    for cc in [
        "extension=\"max-age=3600\", max-age=1",
        "max-age=1, extension=\"max-age=3600\"",
    ] {
        let origin = Origin::start(move |_, n| Reply::ok(&v(n)).header("cache-control", cc)).await;
        let proxy = crate::support::Lib::site(&origin, "").await;
        proxy.get("/", &[]).await;
        proxy.advance(2);
        assert_eq!(proxy.get("/", &[]).await.body, "v2", "{cc}");
    }
}

#[tokio::test]
async fn malformed_expires_dates_read_as_already_expired_rfc9111_5_3() {
    for exp in [
        "Thu, 18 Aug 2050 02:01:18 UTC",
        "Thu, 18 Aug 50 02:01:18 GMT",
        "Thu 18 Aug 2050 02:01:18 GMT",
        "Thu, 18  Aug  2050 02:01:18 GMT",
        "Thu, 18-Aug-2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 02.01.18 GMT",
        "Thu, 18 Aug 2050 2:01:18 GMT",
    ] {
        let origin = Origin::start(move |_, n| Reply::ok(&v(n)).header("expires", exp)).await;
        let proxy = Proxy::quick(&origin, &[]).await;
        proxy.get("/", &[]).await;
        assert_eq!(proxy.get("/", &[]).await.body, "v2", "{exp}");
    }
}

#[tokio::test]
async fn a_stale_599_with_explicit_freshness_is_not_reused_rfc9111_4_2() {
    let (expires, lm) = (http_date(-5000), http_date(-100_000));
    let origin = Origin::start(move |_, n| {
        Reply::status(599, &v(n))
            .header("expires", &expires)
            .header("last-modified", &lm)
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    proxy.get("/", &[]).await;
    let second = proxy.get("/", &[]).await;
    assert_eq!((second.status, second.body.as_str()), (599, "v2"));
}

#[tokio::test]
async fn fields_named_by_connection_are_not_stored_rfc9111_3_1() {
    let origin = Origin::start(|_, n| {
        Reply::ok(&v(n))
            .header("cache-control", "max-age=3600")
            .header("connection", "a, b")
            .header("a", "1")
            .header("b", "2")
            .header("c", "3")
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    proxy.get("/", &[]).await;
    let hit = proxy.get("/", &[]).await;
    assert!(hit.hit(), "{}", hit.cache_status());
    assert_eq!(hit.h("c"), "3");
    for gone in ["a", "b"] {
        assert!(!hit.headers.contains_key(gone), "{gone} was stored");
    }
}

#[tokio::test]
async fn a_304_replaces_stored_fields_and_the_next_hit_shows_them_rfc9111_3_2() {
    let origin = Origin::start(|s, n| {
        if s.headers.contains_key("if-none-match") {
            Reply::status(304, "")
                .header("cache-control", "max-age=3600")
                .header("etag", "\"e1\"")
                .header("content-type", "text/plain;charset=utf-8")
                .header("x-test-header", "B")
        } else {
            Reply::ok(&v(n))
                .header("cache-control", "max-age=1")
                .header("etag", "\"e1\"")
                .header("content-type", "text/plain")
                .header("x-test-header", "A")
        }
    })
    .await;
    let proxy = crate::support::Lib::site(&origin, "").await;
    proxy.get("/", &[]).await;
    proxy.advance(2);
    let validated = proxy.get("/", &[]).await;
    assert_eq!(
        (
            validated.body.as_str(),
            validated.h("x-test-header").as_str()
        ),
        ("v1", "B")
    );
    assert_eq!(validated.h("content-type"), "text/plain;charset=utf-8");
    let hit = proxy.get("/", &[]).await;
    assert!(hit.hit(), "{}", hit.cache_status());
    assert_eq!(hit.h("x-test-header"), "B");
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn a_vary_response_is_not_reused_when_the_request_omits_a_listed_header_rfc9111_4_1() {
    let origin = Origin::start(|_, n| {
        Reply::ok(&v(n))
            .header("cache-control", "max-age=3600")
            .header("vary", "Foo, Bar")
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    proxy.get("/", &[("foo", "1")]).await;
    assert_eq!(proxy.get("/", &[]).await.body, "v2");
    assert_eq!(
        proxy.get("/", &[("foo", "1"), ("bar", "x")]).await.body,
        "v3"
    );
}
