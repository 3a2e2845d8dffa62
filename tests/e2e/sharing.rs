//! Never one user's response to another: what may be reused, and what stays with its client.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::support::{origin_reaches, read_to, Lib, Origin, Proxy, Reply, Seen, PATIENCE};

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

/// `user`'s request for `path` on a connection of its own.
async fn ask(addr: std::net::SocketAddr, path: &str, user: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: shop.test\r\nCookie: user={user}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// `user`'s whole answer for `path`, read to the end (to be awaited later).
async fn whole(addr: std::net::SocketAddr, path: &'static str, user: &'static str) -> String {
    read_to(&mut ask(addr, path, user).await, "").await
}

/// An origin that forgot Cache-Control but sends an ETag (Express's default): each user's
/// page is stored only to be revalidated. Its first part comes at once, the rest when the
/// test opens `gate`; with `length` the fill is shared with waiting requests as it comes.
fn held_personal(gate: &Arc<Semaphore>, length: bool) -> impl Fn(&Seen, usize) -> Reply {
    let gate = gate.clone();
    move |s, _| {
        let head = format!("{} part;", personal(s));
        let mut r = Reply::ok(&head).header("etag", &format!("\"{}\"", head.len()));
        if length {
            r = r.header("content-length", &(head.len() + 5).to_string());
        }
        r.then(&gate, b" rest")
    }
}

#[tokio::test]
async fn a_request_waiting_on_another_never_streams_a_page_stored_only_for_revalidation() {
    let gate = Arc::new(Semaphore::new(0));
    let origin = Origin::start(held_personal(&gate, true)).await;
    let lib = Lib::start(&origin, "[[site]]\nname = \"s\"\norigin = \"{origin}\"\n").await;
    let mut alice = ask(lib.addr, "/account", "alice").await;
    assert!(read_to(&mut alice, "part;")
        .await
        .contains("hello alice part;"));
    // Bob asks while Alice's fill is still streaming in. It was Alice's, for her cookie:
    // Bob must get his own, not join hers.
    let mut bob = ask(lib.addr, "/account", "bob").await;
    let first = read_to(&mut bob, "part;").await;
    assert!(first.contains("hello bob part;"), "{first}");
    gate.add_permits(2);
    assert!(read_to(&mut alice, "").await.ends_with(" rest"));
    assert!(read_to(&mut bob, "").await.ends_with(" rest"));
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn a_request_waiting_on_another_never_gets_a_page_stored_only_for_revalidation() {
    // Without a length the fill is not shared as it comes: waiting requests get the stored
    // object when it is complete, and must not get this one.
    let gate = Arc::new(Semaphore::new(0));
    let origin = Origin::start(held_personal(&gate, false)).await;
    let site = "revalidate-only-waiters";
    let toml = format!("[[site]]\nname = \"{site}\"\norigin = \"{{origin}}\"\n");
    let lib = Lib::start(&origin, &toml).await;
    let mut alice = ask(lib.addr, "/account", "alice").await;
    assert!(read_to(&mut alice, "part;")
        .await
        .contains("hello alice part;"));
    let mut bob = ask(lib.addr, "/account", "bob").await;
    // Bob waits on Alice's fetch (counted as coalesced for this site, which no other test
    // uses) before the origin finishes it.
    waiting(site, 1).await;
    gate.add_permits(2);
    // Chunked: the rest arrives framed.
    assert!(read_to(&mut alice, "").await.contains(" rest"));
    let got = read_to(&mut bob, "").await;
    assert!(got.contains("hello bob part;"), "{got}");
    assert!(!got.contains("alice"), "{got}");
    assert_eq!(origin.count(), 2);
}

/// Waits until `n` requests of `site` have waited on another's fetch.
async fn waiting(site: &str, n: u64) {
    let waiters = tessera::observe::metrics()
        .coalesced
        .get_or_create(&tessera::observe::site(site))
        .clone();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while waiters.get() < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(waiters.get(), n, "requests waiting on another's fetch");
}

#[tokio::test]
async fn a_client_cannot_turn_coalescing_off_with_no_cache() {
    // A response fetched after Bob's request arrived is as fresh as `no-cache` wants
    // (RFC 9111 §5.2.1.4): Bob shares Alice's fetch of a shareable page, so a flood of
    // `no-cache` requests still costs the origin one request.
    let gate = Arc::new(Semaphore::new(0));
    let origin = Origin::start({
        let gate = gate.clone();
        move |_, _| {
            Reply::ok("shared")
                .header("cache-control", "max-age=60")
                .gate(&gate)
        }
    })
    .await;
    let site = "no-cache-waiters";
    let toml = format!("[[site]]\nname = \"{site}\"\norigin = \"{{origin}}\"\n");
    let lib = Lib::start(&origin, &toml).await;
    let alice = tokio::spawn(whole(lib.addr, "/p", "alice"));
    assert_eq!(origin_reaches(&origin, 1).await, 1);
    let mut bob = TcpStream::connect(lib.addr).await.unwrap();
    bob.write_all(b"GET /p HTTP/1.1\r\nHost: shop.test\r\nCache-Control: no-cache\r\nPragma: no-cache\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    waiting(site, 1).await;
    gate.add_permits(2);
    assert!(alice.await.unwrap().ends_with("shared"));
    let got = read_to(&mut bob, "").await;
    assert!(got.ends_with("shared"), "{got}");
    assert!(got.contains("collapsed"), "{got}");
    assert_eq!(origin.count(), 1);
}

#[tokio::test]
async fn requests_waiting_on_a_failed_refresh_get_the_stale_copy_not_the_failing_origin() {
    // The origin fails while one request revalidates a stale page; the page allows
    // stale-if-error. The request waiting on that fetch gets the stale copy too, instead of
    // asking the failing origin again (which could keep it waiting for its timeout).
    let gate = Arc::new(Semaphore::new(0));
    let origin = Origin::start({
        let gate = gate.clone();
        move |_, n| match n {
            1 => Reply::ok("v1").header("cache-control", "max-age=1, stale-if-error=600"),
            _ => Reply::status(503, "down").gate(&gate),
        }
    })
    .await;
    let site = "stale-on-error-waiters";
    let toml = format!("[[site]]\nname = \"{site}\"\norigin = \"{{origin}}\"\n");
    let lib = Lib::start(&origin, &toml).await;
    assert_eq!(lib.get("/p", &[]).await.body, "v1");
    lib.advance(5);
    let alice = tokio::spawn(whole(lib.addr, "/p", "alice"));
    assert_eq!(origin_reaches(&origin, 2).await, 2);
    let mut bob = ask(lib.addr, "/p", "bob").await;
    waiting(site, 1).await;
    // Two permits: a waiter that asked the origin again would get its own 503 in time.
    gate.add_permits(2);
    assert!(alice.await.unwrap().ends_with("v1"));
    let got = read_to(&mut bob, "").await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("v1"), "{got}");
    assert_eq!(origin.count(), 2);
}
