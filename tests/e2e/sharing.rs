//! Never one user's response to another: what may be reused, and what stays with its client.

use crate::support::{Origin, Proxy, Reply, Seen};

/// A page personalised by the `user` cookie, as an origin that forgot Cache-Control sends it.
fn personal(s: &Seen) -> String {
    let cookie = s
        .headers
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("user=nobody");
    format!("hello {}", cookie.trim_start_matches("user="))
}

#[tokio::test]
async fn max_stale_never_hands_a_page_without_freshness_to_another_user() {
    let origin = Origin::start(|s, _| Reply::ok(&personal(s))).await;
    // Site stale defaults must not make it shareable either.
    let toml = "[[site]]\nname = \"s\"\norigin = \"{origin}\"\n[site.caching]\nstale_while_revalidate = 600\nstale_if_error = 600\n";
    let proxy = Proxy::with_config(&origin, toml).await;
    let alice = proxy.get("/account", &[("cookie", "user=alice")]).await;
    assert_eq!(alice.body, "hello alice");
    assert!(
        alice.cache_status().contains("detail=\"no-permission\""),
        "{}",
        alice.cache_status()
    );
    for cc in [
        "max-stale",
        "max-stale=3600",
        "max-stale, stale-if-error=3600",
    ] {
        let bob = proxy
            .get("/account", &[("cookie", "user=bob"), ("cache-control", cc)])
            .await;
        assert_eq!(bob.body, "hello bob", "{cc}: {}", bob.cache_status());
        assert!(!bob.hit());
    }
    assert_eq!(origin.count(), 4);
}

#[tokio::test]
async fn a_zero_lifetime_page_with_a_validator_is_only_reused_after_the_origin_agrees() {
    // The origin tags each user's page with its own ETag and honours If-None-Match.
    let origin = Origin::start(|s, _| {
        let body = personal(s);
        let etag = format!("\"{}\"", body.replace(' ', "-"));
        let inm = s.headers.get("if-none-match").and_then(|v| v.to_str().ok());
        if inm == Some(etag.as_str()) {
            Reply::status(304, "").header("etag", &etag)
        } else {
            Reply::ok(&body).header("etag", &etag)
        }
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    assert_eq!(
        proxy.get("/me", &[("cookie", "user=alice")]).await.body,
        "hello alice"
    );
    let bob = proxy
        .get(
            "/me",
            &[("cookie", "user=bob"), ("cache-control", "max-stale")],
        )
        .await;
    assert_eq!(bob.body, "hello bob");
    // Alice again: her page is revalidated, never served without asking.
    let alice = proxy.get("/me", &[("cookie", "user=alice")]).await;
    assert_eq!(alice.body, "hello alice");
    let seen = origin.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen[1].headers.contains_key("if-none-match"),
        "bob's request revalidated"
    );
}

#[tokio::test]
async fn a_stored_response_never_replays_set_cookie_and_the_filling_client_keeps_its_own() {
    let origin = Origin::start(|_, n| {
        Reply::ok("catalogue")
            .header("cache-control", "max-age=60")
            .header("set-cookie", &format!("session={n}; HttpOnly"))
    })
    .await;
    let toml =
        "[[site]]\nname = \"s\"\norigin = \"{origin}\"\n[site.caching]\nallow_set_cookie = true\n";
    let proxy = Proxy::with_config(&origin, toml).await;
    let first = proxy.get("/list", &[]).await;
    assert!(
        first.cache_status().contains("stored"),
        "{}",
        first.cache_status()
    );
    assert_eq!(
        first.h("set-cookie"),
        "session=1; HttpOnly",
        "the filler's own cookie"
    );
    for _ in 0..3 {
        let later = proxy.get("/list", &[]).await;
        assert!(later.hit());
        assert_eq!(later.body, "catalogue");
        assert_eq!(later.h("set-cookie"), "", "never replayed");
    }
    assert_eq!(origin.count(), 1);
}

#[tokio::test]
async fn a_private_field_is_held_back_from_the_copy_but_given_to_its_own_client() {
    let origin = Origin::start(|_, n| {
        Reply::ok("shared part")
            .header("cache-control", "max-age=60, private=\"x-user\"")
            .header("x-user", &format!("user-{n}"))
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    assert_eq!(proxy.get("/p", &[]).await.h("x-user"), "user-1");
    let hit = proxy.get("/p", &[]).await;
    assert!(hit.hit());
    assert_eq!(hit.h("x-user"), "");
}
