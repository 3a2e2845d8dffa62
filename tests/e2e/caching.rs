//! HTTP caching semantics through the binary, clause by clause (RFC 9111, 5861, 9213, 9110).

use std::time::Duration;

use std::sync::Arc;

use crate::support::{origin_reaches, Lib, Origin, Proxy, Reply};

fn v(n: usize) -> String {
    format!("v{n}")
}

/// Fetches "good" with a 1 s TTL, moves the clock past it, and returns the next answer.
async fn good_then_stale(proxy: &Lib) -> crate::support::Got {
    assert_eq!(proxy.get("/", &[]).await.body, "good");
    proxy.advance(2);
    proxy.get("/", &[]).await
}

#[tokio::test]
async fn s_maxage_overrides_max_age_for_a_shared_cache_rfc9111_5_2_2_10() {
    let origin =
        Origin::start(|_, n| Reply::ok(&v(n)).header("cache-control", "max-age=1, s-maxage=600"))
            .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let got = proxy.get("/", &[]).await;
    assert!((590..=600).contains(&got.ttl()), "{}", got.cache_status());
}

#[tokio::test]
async fn an_invalid_expires_means_already_stale_rfc9111_5_3() {
    let origin = Origin::start(|_, n| Reply::ok(&v(n)).header("expires", "0")).await;
    let proxy = Proxy::quick(&origin, &[]).await;
    assert_eq!(proxy.get("/", &[]).await.body, "v1");
    assert_eq!(proxy.get("/", &[]).await.body, "v2");
}

#[tokio::test]
async fn expires_in_the_future_gives_freshness_rfc9111_4_2_1() {
    let expires = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(300));
    let origin = Origin::start(move |_, n| Reply::ok(&v(n)).header("expires", &expires)).await;
    let proxy = Proxy::quick(&origin, &[]).await;
    proxy.get("/", &[]).await;
    let hit = proxy.get("/", &[]).await;
    assert!(
        hit.hit() && (290..=300).contains(&hit.ttl()),
        "{}",
        hit.cache_status()
    );
}

#[tokio::test]
async fn age_received_from_upstream_counts_towards_freshness_rfc9111_4_2_3() {
    let origin = Origin::start(|_, n| {
        Reply::ok(&v(n))
            .header("cache-control", "max-age=100")
            .header("age", "40")
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    proxy.get("/", &[]).await;
    let hit = proxy.get("/", &[]).await;
    let age: u64 = hit.h("age").parse().unwrap();
    assert!(age >= 40, "age {age}");
    assert!(hit.ttl() <= 60, "{}", hit.cache_status());
}

#[tokio::test]
async fn cdn_cache_control_takes_precedence_and_surrogate_control_is_removed_rfc9213() {
    let origin = Origin::start(|s, n| {
        let r = Reply::ok(&v(n)).header("cache-control", "no-store");
        if s.path_and_query == "/cdn" {
            r.header("cdn-cache-control", "max-age=120")
        } else {
            r.header("surrogate-control", "max-age=240")
        }
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let cdn = proxy.get("/cdn", &[]).await;
    assert!(
        cdn.cache_status().contains("stored") && (110..=120).contains(&cdn.ttl()),
        "{}",
        cdn.cache_status()
    );
    let sc = proxy.get("/sc", &[]).await;
    assert!((230..=240).contains(&sc.ttl()), "{}", sc.cache_status());
    assert!(!sc.headers.contains_key("surrogate-control"));
    assert!(proxy.get("/cdn", &[]).await.hit() && proxy.get("/sc", &[]).await.hit());
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn private_and_no_store_responses_are_not_stored_rfc9111_5_2_2() {
    let origin = Origin::start(|s, n| {
        let cc = if s.path_and_query == "/private" {
            "private, max-age=60"
        } else {
            "no-store, max-age=60"
        };
        Reply::ok(&v(n)).header("cache-control", cc)
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    for p in ["/private", "/private", "/nostore", "/nostore"] {
        assert!(!proxy.get(p, &[]).await.hit());
    }
    assert_eq!(origin.count(), 4);
}

#[tokio::test]
async fn no_cache_is_stored_but_revalidated_with_a_304_rfc9111_5_2_2_4() {
    let origin = Origin::start(|s, n| {
        if s.headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"e1\"")
        {
            Reply::status(304, "").header("etag", "\"e1\"")
        } else {
            Reply::ok(&v(n))
                .header("cache-control", "no-cache")
                .header("etag", "\"e1\"")
        }
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    assert_eq!(proxy.get("/", &[]).await.body, "v1");
    let again = proxy.get("/", &[]).await;
    assert_eq!(again.body, "v1");
    assert!(
        again.cache_status().contains("fwd-status=304"),
        "{}",
        again.cache_status()
    );
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn request_no_cache_forces_revalidation_and_only_if_cached_gives_504_rfc9111_5_2_1() {
    let origin = Origin::start(|_, n| Reply::ok(&v(n)).header("cache-control", "max-age=60")).await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let cold = proxy
        .get("/x", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(cold.status, 504);
    proxy.get("/x", &[]).await;
    let forced = proxy.get("/x", &[("cache-control", "no-cache")]).await;
    assert_eq!(forced.body, "v2");
    assert!(
        forced.cache_status().contains("fwd=request"),
        "{}",
        forced.cache_status()
    );
    assert_eq!(
        proxy
            .get("/x", &[("cache-control", "only-if-cached")])
            .await
            .body,
        "v2"
    );
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn vary_keeps_one_variant_per_header_value_and_star_never_matches_rfc9111_4_1() {
    let origin = Origin::start(|s, n| {
        let lang = s
            .headers
            .get("accept-language")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let vary = if s.path_and_query == "/star" {
            "*"
        } else {
            "accept-language"
        };
        Reply::ok(&format!("{lang} {n}"))
            .header("cache-control", "max-age=60")
            .header("vary", vary)
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    assert_eq!(
        proxy.get("/", &[("accept-language", "en")]).await.body,
        "en 1"
    );
    assert_eq!(
        proxy.get("/", &[("accept-language", "fr")]).await.body,
        "fr 2"
    );
    let en = proxy.get("/", &[("accept-language", "en")]).await;
    assert_eq!(en.body, "en 1");
    let fr = proxy.get("/", &[("accept-language", "fr")]).await;
    assert_eq!(fr.body, "fr 2");
    let de = proxy.get("/", &[("accept-language", "de")]).await;
    assert!(
        de.cache_status().contains("fwd=vary-miss"),
        "{}",
        de.cache_status()
    );
    proxy.get("/star", &[]).await;
    assert!(!proxy.get("/star", &[]).await.hit());
    assert_eq!(origin.count(), 5);
}

#[tokio::test]
async fn a_clients_conditional_request_gets_304_from_cache_rfc9110_13() {
    let origin = Origin::start(|_, n| {
        Reply::ok(&v(n))
            .header("cache-control", "max-age=60")
            .header("etag", "W/\"abc\"")
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    proxy.get("/", &[]).await;
    let nm = proxy.get("/", &[("if-none-match", "\"abc\"")]).await;
    assert_eq!((nm.status, nm.body.as_str()), (304, ""));
    assert_eq!(nm.h("etag"), "W/\"abc\"");
    let other = proxy.get("/", &[("if-none-match", "\"zzz\"")]).await;
    assert_eq!(other.status, 200);
    assert_eq!(origin.count(), 1);
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get_rfc9110_9_3_2() {
    let origin = Origin::start(|_, n| Reply::ok(&v(n)).header("cache-control", "max-age=60")).await;
    let proxy = Proxy::quick(&origin, &[]).await;
    proxy.get("/", &[]).await;
    let head = proxy.send("HEAD", "/", &[]).await;
    assert!(head.hit());
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(head.h("content-length"), "2");
    assert_eq!(origin.count(), 1);
}

#[tokio::test]
async fn unsafe_methods_are_forwarded_and_invalidate_the_uri_rfc9111_4_4() {
    let origin = Origin::start(|s, n| {
        let r = Reply::ok(&format!("{} {n}", s.method)).header("cache-control", "max-age=60");
        if s.method == "POST" {
            r.header("location", "/other")
        } else {
            r
        }
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    for m in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        assert!(proxy.send(m, "/m", &[]).await.body.starts_with(m), "{m}");
    }
    assert_eq!(proxy.get("/doc", &[]).await.body, "GET 5");
    assert_eq!(proxy.get("/other", &[]).await.body, "GET 6");
    assert!(proxy.get("/doc", &[]).await.hit());
    assert_eq!(proxy.send("POST", "/doc", &[]).await.body, "POST 7");
    assert_eq!(proxy.get("/doc", &[]).await.body, "GET 8");
    assert_eq!(
        proxy.get("/other", &[]).await.body,
        "GET 9",
        "same-origin Location invalidated too"
    );
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_runs_one_background_refresh_rfc5861_3() {
    // The refresh is held at the origin until every stale request has been answered, so
    // "one refresh" is counted while it is still in flight, with no quiet period.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let origin = Origin::start(move |_, n| {
        if n == 1 {
            Reply::ok("v1").header("cache-control", "max-age=1, stale-while-revalidate=60")
        } else {
            Reply::ok(&v(n))
                .header("cache-control", "max-age=600")
                .gate(&g)
        }
    })
    .await;
    let proxy = Lib::site(&origin, "").await;
    assert_eq!(proxy.get("/", &[]).await.body, "v1");
    proxy.advance(2);
    let addr = proxy.addr;
    let tasks: Vec<_> = (0..10)
        .map(|_| tokio::spawn(crate::support::send(addr, "GET", "/", &[])))
        .collect();
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.body, "v1");
        assert!(
            got.cache_status().contains("stale-while-revalidate"),
            "{}",
            got.cache_status()
        );
    }
    assert_eq!(origin_reaches(&origin, 2).await, 2);
    assert_eq!(
        origin.count(),
        2,
        "ten stale answers, one refresh in flight"
    );
    gate.add_permits(1);
    let mut body = String::new();
    for _ in 0..500 {
        body = proxy.get("/", &[]).await.body;
        if body != "v1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(body, "v2");
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_origin_fails_rfc5861_4() {
    let origin = Origin::start(|_, n| {
        if n == 1 {
            Reply::ok("good").header("cache-control", "max-age=1, stale-if-error=60")
        } else {
            Reply::status(503, "down")
        }
    })
    .await;
    let proxy = Lib::site(&origin, "").await;
    let got = good_then_stale(&proxy).await;
    assert_eq!((got.status, got.body.as_str()), (200, "good"));
    assert!(
        got.cache_status().contains("stale-if-error"),
        "{}",
        got.cache_status()
    );
}

#[tokio::test]
async fn a_404_without_freshness_is_cached_briefly_and_a_403_is_not() {
    let origin = Origin::start(|s, n| {
        if s.path_and_query == "/gone" {
            Reply::status(404, &v(n))
        } else {
            Reply::status(403, &v(n))
        }
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let first = proxy.get("/gone", &[]).await;
    assert_eq!(first.status, 404);
    assert!((50..=60).contains(&first.ttl()), "{}", first.cache_status());
    assert!(proxy.get("/gone", &[]).await.hit());
    proxy.get("/forbidden", &[]).await;
    assert!(!proxy.get("/forbidden", &[]).await.hit());
    assert_eq!(origin.count(), 3);
}

#[tokio::test]
async fn hop_by_hop_fields_are_neither_forwarded_nor_stored_rfc9110_7_6_1() {
    let origin = Origin::start(|_, n| {
        Reply::ok(&v(n))
            .header("cache-control", "max-age=60")
            .header("connection", "x-hop")
            .header("x-hop", "secret")
            .header("x-end", "kept")
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let miss = proxy
        .get(
            "/",
            &[("connection", "x-client-hop"), ("x-client-hop", "1")],
        )
        .await;
    assert!(!miss.headers.contains_key("x-hop"));
    assert_eq!(miss.h("x-end"), "kept");
    assert!(!origin.seen()[0].headers.contains_key("x-client-hop"));
    assert!(!proxy.get("/", &[]).await.headers.contains_key("x-hop"));
}

#[tokio::test]
async fn ranges_are_served_from_the_complete_stored_response_rfc9110_14() {
    let origin = Origin::start(|_, _| {
        Reply::ok("0123456789")
            .header("cache-control", "max-age=60")
            .header("etag", "\"r1\"")
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let first = proxy.get("/r", &[("range", "bytes=0-3")]).await;
    assert_eq!((first.status, first.body.as_str()), (206, "0123"));
    assert_eq!(first.h("content-range"), "bytes 0-3/10");
    let suffix = proxy.get("/r", &[("range", "bytes=-2")]).await;
    assert_eq!((suffix.status, suffix.body.as_str()), (206, "89"));
    let multi = proxy.get("/r", &[("range", "bytes=0-0,9-9")]).await;
    assert_eq!(multi.status, 206);
    assert!(multi
        .h("content-type")
        .starts_with("multipart/byteranges; boundary="));
    assert!(
        multi.body.contains("Content-Range: bytes 9-9/10\r\n\r\n9"),
        "{}",
        multi.body
    );
    let beyond = proxy.get("/r", &[("range", "bytes=50-60")]).await;
    assert_eq!(
        (beyond.status, beyond.h("content-range").as_str()),
        (416, "bytes */10")
    );
    let stale_validator = proxy
        .get("/r", &[("range", "bytes=0-3"), ("if-range", "\"old\"")])
        .await;
    assert_eq!(
        (stale_validator.status, stale_validator.body.as_str()),
        (200, "0123456789")
    );
    assert_eq!(origin.count(), 1);
    assert!(
        !origin.seen()[0].headers.contains_key("range"),
        "the cache fills with the whole representation"
    );
}

#[tokio::test]
async fn partial_responses_from_the_origin_are_not_stored_as_complete_rfc9111_3_3() {
    let origin = Origin::start(|_, n| {
        Reply::status(206, &v(n))
            .header("cache-control", "max-age=60")
            .header("content-range", "bytes 0-1/10")
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    assert_eq!(proxy.get("/p", &[]).await.status, 206);
    assert!(!proxy.get("/p", &[]).await.hit());
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_origin_refuses_connections_rfc5861_4() {
    let origin = Origin::start(|_, _| {
        Reply::ok("good").header("cache-control", "max-age=1, stale-if-error=60")
    })
    .await;
    let proxy = Lib::site(&origin, "").await;
    assert_eq!(proxy.get("/", &[]).await.body, "good");
    origin.stop();
    proxy.advance(2);
    let got = proxy.get("/", &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, "good"));
    assert!(
        got.cache_status().contains("origin-unreachable"),
        "{}",
        got.cache_status()
    );
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_origin_times_out_rfc5861_4() {
    let origin = Origin::start(|_, n| {
        let r = Reply::ok("good").header("cache-control", "max-age=1, stale-if-error=60");
        if n == 1 {
            r
        } else {
            r.delay(Duration::from_secs(5))
        }
    })
    .await;
    let proxy = Lib::site(&origin, "response_timeout_ms = 300").await;
    let got = good_then_stale(&proxy).await;
    assert_eq!((got.status, got.body.as_str()), (200, "good"));
    assert!(
        got.cache_status().contains("origin-timeout"),
        "{}",
        got.cache_status()
    );
}

#[tokio::test]
async fn must_revalidate_forbids_serving_stale_even_on_error_rfc9111_5_2_2_2() {
    let origin = Origin::start(|_, n| {
        if n == 1 {
            Reply::ok("good").header(
                "cache-control",
                "max-age=1, must-revalidate, stale-if-error=60",
            )
        } else {
            Reply::status(503, "down")
        }
    })
    .await;
    let proxy = Lib::site(&origin, "").await;
    proxy.get("/", &[]).await;
    proxy.advance(2);
    assert_eq!(
        proxy
            .get("/", &[("cache-control", "max-stale=600")])
            .await
            .status,
        503
    );
}

#[tokio::test]
async fn an_origin_error_never_evicts_a_good_stale_copy_and_max_stale_can_use_it_rfc9111_5_2_1_2() {
    let origin = Origin::start(|_, n| {
        if n == 1 {
            Reply::ok("good").header("cache-control", "max-age=1")
        } else {
            Reply::status(503, "down")
        }
    })
    .await;
    let proxy = Lib::site(&origin, "").await;
    proxy.get("/", &[]).await;
    proxy.advance(2);
    let err = proxy.get("/", &[]).await;
    assert_eq!(
        err.status, 503,
        "no stale-if-error: the client sees the error"
    );
    let stale = proxy.get("/", &[("cache-control", "max-stale=600")]).await;
    assert_eq!((stale.status, stale.body.as_str()), (200, "good"));
    assert!(stale.hit());
}

#[tokio::test]
async fn refresh_ahead_refreshes_in_the_background_before_expiry() {
    let origin =
        Origin::start(|_, n| Reply::ok(&v(n)).header("cache-control", "max-age=100")).await;
    let proxy = Lib::site(&origin, "[site.caching]\nrefresh_ahead = 0.25").await;
    assert_eq!(proxy.get("/", &[]).await.body, "v1");
    assert!(
        proxy.get("/", &[]).await.hit(),
        "before the refresh point: a plain hit"
    );
    assert_eq!(origin.count(), 1);
    proxy.advance(30);
    let hit = proxy.get("/", &[]).await;
    assert!(hit.hit() && hit.body == "v1", "{}", hit.cache_status());
    assert_eq!(origin_reaches(&origin, 2).await, 2);
    // Bounded wait for the refreshed copy to be stored.
    let mut body = String::new();
    for _ in 0..500 {
        body = proxy.get("/", &[]).await.body;
        if body == "v2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(body, "v2");
}

#[tokio::test]
async fn heuristic_freshness_is_a_tenth_of_the_last_modified_age_rfc9111_4_2_2() {
    let lm =
        httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(2 * 86_400));
    let origin = Origin::start(move |_, n| Reply::ok(&v(n)).header("last-modified", &lm)).await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let got = proxy.get("/", &[]).await;
    assert!(
        (17_270..=17_280).contains(&got.ttl()),
        "{}",
        got.cache_status()
    );
    assert!(proxy.get("/", &[]).await.hit());
}

#[tokio::test]
async fn authorization_requests_are_stored_only_when_the_response_allows_it_rfc9111_3_5() {
    let origin = Origin::start(|s, n| {
        let cc = if s.path_and_query == "/public" {
            "public, max-age=60"
        } else {
            "max-age=60"
        };
        Reply::ok(&v(n)).header("cache-control", cc)
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let auth = [("authorization", "Bearer alice")];
    proxy.get("/mine", &auth).await;
    assert_eq!(
        proxy
            .get("/mine", &[("authorization", "Bearer bob")])
            .await
            .body,
        "v2",
        "alice's response is never served to bob"
    );
    proxy.get("/public", &auth).await;
    assert!(proxy.get("/public", &auth).await.hit());
    assert_eq!(origin.count(), 3);
}

#[tokio::test]
async fn qualified_private_strips_the_named_field_from_the_stored_copy_rfc9111_5_2_2_7() {
    let origin = Origin::start(|_, n| {
        Reply::ok(&v(n))
            .header("cache-control", "private=\"x-user\", max-age=60")
            .header("x-user", "alice")
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    proxy.get("/", &[]).await;
    let hit = proxy.get("/", &[]).await;
    assert!(hit.hit());
    assert!(!hit.headers.contains_key("x-user"));
}

#[tokio::test]
async fn cache_status_chains_after_upstream_caches_and_shows_the_key_only_when_debugging_rfc9211_2()
{
    let origin = Origin::start(|_, _| {
        Reply::ok("x")
            .header("cache-control", "max-age=60")
            .header("cache-status", "upstream; hit")
            .header("x-cache", "HIT")
    })
    .await;
    let proxy = Proxy::with_config(
        &origin,
        "[[site]]\nname = \"s\"\norigin = \"{origin}\"\n[site.caching]\ndebug = true\n",
    )
    .await;
    let got = proxy.get("/k?b=1&a=2", &[]).await;
    assert!(
        got.cache_status()
            .starts_with("upstream; hit, tessera; fwd=uri-miss"),
        "{}",
        got.cache_status()
    );
    assert!(
        got.cache_status().contains("key=\"shop.test/k?a=2&b=1\""),
        "{}",
        got.cache_status()
    );
    assert_eq!(got.h("x-cache"), "HIT, MISS");
    let plain = Proxy::quick(&origin, &[]).await;
    assert!(!plain.get("/k", &[]).await.cache_status().contains("key="));
}

#[tokio::test]
async fn only_if_cached_never_goes_forward_even_for_a_stale_entry_rfc9111_5_2_1_7() {
    let origin = Origin::start(|_, n| Reply::ok(&v(n)).header("cache-control", "max-age=1")).await;
    let proxy = Lib::site(&origin, "").await;
    proxy.get("/", &[]).await;
    proxy.advance(2);
    let got = proxy.get("/", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(got.status, 504);
    let allowed = proxy
        .get("/", &[("cache-control", "only-if-cached, max-stale")])
        .await;
    assert_eq!((allowed.status, allowed.body.as_str()), (200, "v1"));
    assert_eq!(origin.count(), 1);
}

#[tokio::test]
async fn the_sites_stale_if_error_default_applies_when_the_origin_sends_none() {
    let origin = Origin::start(|_, n| {
        if n == 1 {
            Reply::ok("good").header("cache-control", "max-age=1")
        } else {
            Reply::status(502, "bad")
        }
    })
    .await;
    let toml =
        "[[site]]\nname = \"s\"\norigin = \"{origin}\"\n[site.caching]\nstale_if_error = 300\n";
    let proxy = Lib::start(&origin, toml).await;
    proxy.get("/", &[]).await;
    proxy.advance(2);
    let got = proxy.get("/", &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, "good"));
}

#[tokio::test]
async fn a_5xx_without_freshness_is_kept_briefly_when_the_operator_opts_in() {
    let origin = Origin::start(|_, n| Reply::status(503, &v(n))).await;
    let toml =
        "[[site]]\nname = \"s\"\norigin = \"{origin}\"\n[site.caching.negative_ttl]\n503 = 10\n";
    let proxy = Proxy::with_config(&origin, toml).await;
    let first = proxy.get("/", &[]).await;
    assert!(
        first.cache_status().contains("stored") && (8..=10).contains(&first.ttl()),
        "{}",
        first.cache_status()
    );
    let second = proxy.get("/", &[]).await;
    assert_eq!(
        (second.status, second.body.as_str(), second.hit()),
        (503, "v1", true)
    );
    assert_eq!(origin.count(), 1);
}

#[tokio::test]
async fn a_request_with_no_store_is_answered_but_its_response_not_stored_rfc9111_5_2_1_5() {
    let origin = Origin::start(|_, n| Reply::ok(&v(n)).header("cache-control", "max-age=60")).await;
    let proxy = Proxy::quick(&origin, &[]).await;
    assert_eq!(
        proxy.get("/", &[("cache-control", "no-store")]).await.body,
        "v1"
    );
    assert_eq!(proxy.get("/", &[]).await.body, "v2");
    assert!(
        proxy.get("/", &[("cache-control", "no-store")]).await.hit(),
        "a stored response may still answer it"
    );
}
