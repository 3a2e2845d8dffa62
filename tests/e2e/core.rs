//! The core slice: cache keys and TTLs from scripts, coalescing, origin failures.

use std::time::Duration;

use crate::support::{guest, Origin, Proxy, Reply};

const IPHONE: &str =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15";
const DESKTOP: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36";

fn cacheable(body: &str) -> Reply {
    Reply::ok(body).header("cache-control", "max-age=60")
}

#[tokio::test]
async fn a_miss_is_stored_and_the_next_request_hits() {
    let origin = Origin::start(|_, n| cacheable(&format!("v{n}"))).await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let first = proxy.get("/page", &[]).await;
    assert_eq!((first.status, first.body.as_str()), (200, "v1"));
    assert_eq!(first.h("x-cache"), "MISS");
    assert!(
        first
            .cache_status()
            .starts_with("tessera; fwd=uri-miss; fwd-status=200; stored; ttl="),
        "{}",
        first.cache_status()
    );
    assert!((58..=60).contains(&first.ttl()), "{}", first.cache_status());
    let second = proxy.get("/page", &[]).await;
    assert_eq!(second.body, "v1");
    assert!(second.hit(), "{:?}", second.headers);
    assert!(
        second.cache_status().starts_with("tessera; hit; ttl="),
        "{}",
        second.cache_status()
    );
    assert!(second.headers.contains_key("age"));
    assert!(!second.h("x-request-id").is_empty());
    assert!(!second.h("x-served-by").is_empty());
    assert_eq!(origin.count(), 1);
}

/// Stored fields are kept as one compact block and rebuilt on each hit: every field must
/// come back as the origin sent it — repeats in order, odd bytes, empty and large values.
#[tokio::test]
async fn a_hit_sends_every_stored_field_as_the_origin_sent_it() {
    let big = "b".repeat(6000);
    let sent = move || {
        let mut r = cacheable("body")
            .header("x-multi", "first")
            .header("link", "</a.css>; rel=preload")
            .header("x-multi", "second")
            .header("x-empty", "")
            .header("x-utf8", "café ☕")
            .header("x-big", &big)
            .header("link", "</b.js>; rel=preload")
            .header("x-multi", "third");
        for i in 0..60 {
            r = r.header(&format!("x-f-{i}"), &format!("value {i}"));
        }
        r
    };
    let expected = sent();
    let origin = Origin::start(move |_, _| sent()).await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let miss = proxy.get("/fields", &[]).await;
    let hit = proxy.get("/fields", &[]).await;
    assert!(hit.hit(), "{:?}", hit.headers);
    assert_eq!((hit.body.as_str(), origin.count()), ("body", 1));
    let values = |got: &crate::support::Got, name: &str| -> Vec<Vec<u8>> {
        got.headers
            .get_all(name)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    };
    let mut names: Vec<&str> = expected.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let want: Vec<Vec<u8>> = expected
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_bytes().to_vec())
            .collect();
        assert_eq!(values(&hit, name), want, "{name} on the hit");
        assert_eq!(values(&miss, name), want, "{name} on the miss");
    }
}

#[tokio::test]
async fn the_client_request_id_is_echoed_and_forwarded() {
    let origin = Origin::start(|_, _| cacheable("x")).await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let got = proxy.get("/", &[("x-request-id", "abc-123")]).await;
    assert_eq!(got.h("x-request-id"), "abc-123");
    assert_eq!(origin.seen()[0].headers["x-request-id"], "abc-123");
    assert!(origin.seen()[0].headers["x-forwarded-for"]
        .to_str()
        .unwrap()
        .contains("127.0.0.1"));
}

#[tokio::test]
async fn normalize_key_collapses_tracking_variants_into_one_origin_request() {
    let origin = Origin::start(|_, n| cacheable(&format!("v{n}"))).await;
    let proxy = Proxy::quick(&origin, &[guest("guest-examples/normalize-key")]).await;
    let variants = [
        "/p?a=1&b=2",
        "/p?b=2&a=1",
        "/p?a=1&b=2&utm_source=news",
        "/p?utm_medium=mail&b=2&a=1",
        "/p?a=1&fbclid=XYZ&b=2",
        "/p?gclid=1&a=1&b=2",
        "/p?a=1&b=2&ref=home",
        "/p?utm_campaign=x&utm_source=y&a=1&b=2",
        "/p?b=2&ref=x&gclid=2&a=1",
        "/p?a=1&utm_content=z&b=2&fbclid=q",
    ];
    for v in variants {
        let got = proxy.get(v, &[("user-agent", DESKTOP)]).await;
        assert_eq!(got.body, "v1", "{v}");
    }
    assert_eq!(origin.count(), 1);
}

#[tokio::test]
async fn device_classes_get_separate_entries() {
    let origin = Origin::start(|s, _| {
        let ua = s
            .headers
            .get("user-agent")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        cacheable(if ua.contains("iPhone") {
            "mobile page"
        } else {
            "big page"
        })
    })
    .await;
    let proxy = Proxy::quick(&origin, &[guest("guest-examples/normalize-key")]).await;
    for _ in 0..2 {
        assert_eq!(
            proxy.get("/home", &[("user-agent", DESKTOP)]).await.body,
            "big page"
        );
        assert_eq!(
            proxy.get("/home", &[("user-agent", IPHONE)]).await.body,
            "mobile page"
        );
        assert_eq!(
            proxy.get("/home", &[("user-agent", IPAD)]).await.body,
            "big page"
        );
    }
    assert_eq!(origin.count(), 3, "one entry per device class");
}

fn typed(path: &str) -> Reply {
    let ctype = if path.starts_with("/images/") {
        "image/png"
    } else if path.starts_with("/api/") {
        "application/json"
    } else {
        "text/html; charset=utf-8"
    };
    // Origin freshness that ttl-by-type must override.
    Reply::ok(path)
        .header("content-type", ctype)
        .header("cache-control", "max-age=5")
}

#[tokio::test]
async fn ttl_by_type_sets_ttls_windows_and_tags() {
    let origin = Origin::start(|s, _| typed(&s.path_and_query)).await;
    let proxy = Proxy::quick(&origin, &[guest("guest-examples/ttl-by-type")]).await;
    let img = proxy.get("/images/logo.png", &[]).await;
    assert!(
        img.cache_status().contains("stored"),
        "{}",
        img.cache_status()
    );
    assert!(
        (2_591_990..=2_592_000).contains(&img.ttl()),
        "{}",
        img.cache_status()
    );
    let api = proxy.get("/api/products/123", &[]).await;
    assert!((290..=300).contains(&api.ttl()), "{}", api.cache_status());
    let html = proxy.get("/products/123", &[]).await;
    assert!((110..=120).contains(&html.ttl()), "{}", html.cache_status());
    for p in ["/images/logo.png", "/api/products/123", "/products/123"] {
        assert!(proxy.get(p, &[]).await.hit(), "{p}");
    }
    assert_eq!(origin.count(), 3);
}

#[tokio::test]
async fn an_expired_entry_is_fetched_again() {
    // On a virtual clock: the hit cannot miss its window on a slow machine, and expiry
    // needs no sleeping.
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("v{n}")).header("cache-control", "max-age=120"))
            .await;
    let proxy = crate::support::Lib::site(&origin, "").await;
    assert_eq!(proxy.get("/short", &[]).await.body, "v1");
    assert!(proxy.get("/short", &[]).await.hit());
    proxy.advance(121);
    let again = proxy.get("/short", &[]).await;
    assert_eq!(again.body, "v2");
    assert!(!again.hit(), "{}", again.cache_status());
    assert!(
        again.cache_status().contains("fwd=stale"),
        "{}",
        again.cache_status()
    );
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn cart_and_checkout_are_never_stored() {
    let origin = Origin::start(|s, n| typed(&s.path_and_query).header("x-n", &n.to_string())).await;
    let proxy = Proxy::quick(&origin, &[guest("guest-examples/ttl-by-type")]).await;
    for p in ["/cart", "/cart", "/checkout/pay", "/checkout/pay"] {
        let got = proxy.get(p, &[]).await;
        assert_eq!(got.status, 200);
        assert!(
            !got.cache_status().contains("stored"),
            "{}",
            got.cache_status()
        );
        assert!(!got.hit());
    }
    assert_eq!(origin.count(), 4);
}

#[tokio::test]
async fn responses_with_set_cookie_are_not_stored_nor_replayed() {
    let origin = Origin::start(|_, n| {
        cacheable(&format!("user {n}")).header("set-cookie", &format!("session={n}"))
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let a = proxy.get("/account", &[]).await;
    let b = proxy.get("/account", &[]).await;
    assert_eq!(
        (a.body.as_str(), a.h("set-cookie").as_str()),
        ("user 1", "session=1")
    );
    assert_eq!(
        (b.body.as_str(), b.h("set-cookie").as_str()),
        ("user 2", "session=2")
    );
    assert!(
        a.cache_status().contains("detail=\"set-cookie\""),
        "{}",
        a.cache_status()
    );
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn fifty_concurrent_cold_requests_cause_one_origin_request() {
    let origin =
        Origin::start(|_, n| cacheable(&format!("v{n}")).delay(Duration::from_millis(500))).await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let addr = proxy.addr;
    let tasks: Vec<_> = (0..50)
        .map(|_| tokio::spawn(crate::support::send(addr, "GET", "/hot", &[])))
        .collect();
    let mut collapsed = 0;
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!((got.status, got.body.as_str()), (200, "v1"));
        collapsed += got.cache_status().contains("collapsed") as usize;
    }
    assert_eq!(origin.count(), 1);
    // Every request but the leader either waited on it or arrived after it stored.
    assert!(collapsed <= 49);
}

#[tokio::test]
async fn ab_test_assigns_a_sticky_bucket_that_is_part_of_the_key() {
    let origin = Origin::start(|s, _| {
        let bucket = s
            .headers
            .get("x-ab-bucket")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        cacheable(&format!("variant {bucket}"))
    })
    .await;
    let proxy = Proxy::quick(&origin, &[guest("guest-examples/ab-test")]).await;
    let first = proxy.get("/landing", &[]).await;
    let cookie = first.h("set-cookie");
    let bucket = first.h("x-ab-bucket");
    assert!(bucket == "A" || bucket == "B", "{bucket}");
    assert!(cookie.starts_with(&format!("ab={bucket}")), "{cookie}");
    assert_eq!(first.body, format!("variant {bucket}"));
    // Returning visitors keep their bucket and get no new cookie; each bucket is cached once.
    for b in ["A", "B", "A", "B"] {
        let got = proxy
            .get("/landing", &[("cookie", &format!("ab={b}"))])
            .await;
        assert_eq!(got.body, format!("variant {b}"));
        assert_eq!(got.h("x-ab-bucket"), b);
        assert!(got.h("set-cookie").is_empty());
    }
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn bot_block_answers_403_without_touching_the_origin() {
    let origin = Origin::start(|_, _| cacheable("page")).await;
    let proxy = Proxy::quick(&origin, &[guest("guest-examples/bot-block")]).await;
    let got = proxy
        .get(
            "/",
            &[("user-agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")],
        )
        .await;
    assert_eq!(got.status, 403);
    assert_eq!(origin.count(), 0);
    let ok = proxy.get("/", &[("user-agent", DESKTOP)]).await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "page"));
    let google = proxy
        .get(
            "/",
            &[(
                "user-agent",
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            )],
        )
        .await;
    assert_eq!(google.status, 200);
}

#[tokio::test]
async fn origin_down_gives_502() {
    let origin = Origin::start(|_, _| Reply::ok("never")).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let toml = format!(
        "[[site]]\nname = \"dead\"\norigin = \"http://{dead}\"\nconnect_timeout_ms = 5000\n"
    );
    let proxy = Proxy::with_config(&origin, &toml).await;
    let got = proxy.get("/", &[]).await;
    assert_eq!(got.status, 502);
    assert!(
        got.cache_status().contains("detail=\"origin-unreachable\""),
        "{}",
        got.cache_status()
    );
}

#[tokio::test]
async fn origin_too_slow_gives_504() {
    let origin = Origin::start(|_, _| Reply::ok("late").delay(Duration::from_secs(5))).await;
    let toml = "[[site]]\nname = \"slow\"\norigin = \"{origin}\"\nresponse_timeout_ms = 300\n";
    let proxy = Proxy::with_config(&origin, toml).await;
    let got = proxy.get("/", &[]).await;
    assert_eq!(got.status, 504);
    assert!(
        got.cache_status().contains("origin-timeout"),
        "{}",
        got.cache_status()
    );
}

#[tokio::test]
async fn objects_over_the_size_bound_stream_through_uncached() {
    let big = "x".repeat(4096);
    let origin =
        Origin::start(move |_, _| Reply::ok(&big).header("cache-control", "max-age=60")).await;
    let toml =
        "[cache]\nmax_object_size = \"1KiB\"\n[[site]]\nname = \"s\"\norigin = \"{origin}\"\n";
    let proxy = Proxy::with_config(&origin, toml).await;
    for _ in 0..2 {
        let got = proxy.get("/big", &[]).await;
        assert_eq!(got.body.len(), 4096);
        assert!(
            got.cache_status().contains("detail=\"too-large\""),
            "{}",
            got.cache_status()
        );
    }
    assert_eq!(origin.count(), 2);
}
