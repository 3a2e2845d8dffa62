//! Purging through the admin API: every kind, hard and soft, tags from headers and scripts,
//! publish events, the tag index under eviction, and the requests an attacker sends first.

use std::time::Duration;

use crate::support::admin::{call, post, purge, TOKEN};
use crate::support::{guest, origin_reaches, send, Lib, Origin, Reply, Seen};

const SITES: &str = r#"
[admin]
listen = "127.0.0.1:0"
token_file = "admin-token"

[[event]]
event = "publish"
type = "entry"
tags = ["entry-{id}", "content-type-{content_type}"]

[[event]]
event = "publish"
type = "asset"
urls = ["http://shop.test/assets/{id}"]
soft = true

[[event]]
event = "move"
prefixes = ["http://shop.test/{section}/"]

[[site]]
name = "shop"
hosts = ["shop.test"]
origin = "{origin}"

[[site]]
name = "blog"
hosts = ["blog.test"]
origin = "{origin}"
"#;

/// Pages cached for ten minutes, tagged from their path in both header spellings.
fn page(seen: &Seen, n: usize) -> Reply {
    let path = seen.path_and_query.as_str();
    let mut r = Reply::ok(&format!("{path} #{n}")).header("cache-control", "max-age=600");
    if let Some(id) = path.strip_prefix("/products/") {
        let id = id.split('?').next().unwrap();
        r = r.header("surrogate-key", &format!("products product-{id}"));
    }
    if let Some(id) = path.strip_prefix("/articles/") {
        r = r.header("cache-tag", &format!("articles,article-{id}"));
    }
    if path == "/vary" {
        r = r.header("vary", "accept-language");
    }
    r
}

/// (host, path, accept-language) of every page the table below fills.
const PAGES: &[(&str, &str, &str)] = &[
    ("shop.test", "/products/1", "en"),
    ("shop.test", "/products/1?color=red", "en"),
    ("shop.test", "/products/2", "en"),
    ("shop.test", "/about", "en"),
    ("shop.test", "/articles/7", "en"),
    ("shop.test", "/vary", "en"),
    ("shop.test", "/vary", "fr"),
    ("blog.test", "/products/1", "en"),
    ("blog.test", "/posts/1", "en"),
];

/// GETs every page and says which were hits; afterwards every page is cached again.
async fn hits(lib: &Lib) -> Vec<bool> {
    let mut out = Vec::new();
    for (host, path, lang) in PAGES {
        let got = lib
            .get(path, &[("host", host), ("accept-language", lang)])
            .await;
        assert_eq!(got.status, 200, "{host}{path}");
        assert!(got.body.starts_with(path), "{host}{path}: {}", got.body);
        assert_eq!(got.h("surrogate-key"), "", "tags never reach clients");
        assert_eq!(got.h("cache-tag"), "", "tags never reach clients");
        out.push(got.hit());
    }
    out
}

/// Each purge kind reaches exactly the objects it names, with the count in the answer;
/// the purged pages (and only they) go back to the origin.
async fn every_kind(soft: bool) {
    let origin = Origin::start(page).await;
    let lib = Lib::start(&origin, SITES).await;
    let admin = lib.admin.expect("admin listener");
    assert_eq!(hits(&lib).await, vec![false; PAGES.len()]);
    assert_eq!(hits(&lib).await, vec![true; PAGES.len()]);
    let table: &[(&str, u64, &[usize])] = &[
        (r#""url":"http://shop.test/vary""#, 2, &[5, 6]),
        (r#""url":"http://shop.test/products/1""#, 1, &[0]),
        (r#""url":"http://SHOP.test/products/1?color=red""#, 1, &[1]),
        (r#""prefix":"http://shop.test/products/""#, 3, &[0, 1, 2]),
        (r#""tag":"product-1""#, 3, &[0, 1, 7]),
        (r#""tag":"product-1","site":"blog""#, 1, &[7]),
        (r#""tag":"articles""#, 1, &[4]),
        (r#""tag":"nothing-has-this""#, 0, &[]),
        (r#""site":"blog""#, 2, &[7, 8]),
        (r#""all":true"#, 9, &[0, 1, 2, 3, 4, 5, 6, 7, 8]),
    ];
    for (what, objects, purged) in table {
        let before = origin.count();
        let json = format!("{{{what},\"soft\":{soft}}}");
        let answer = post(admin, "/purge", &json).await;
        assert_eq!(answer["objects"], *objects, "{json}: {answer}");
        assert_eq!(answer["soft"], soft, "{json}: {answer}");
        let after = hits(&lib).await;
        let expected: Vec<bool> = (0..PAGES.len()).map(|i| !purged.contains(&i)).collect();
        assert_eq!(after, expected, "{json}");
        assert_eq!(origin.count() - before, purged.len(), "{json}");
    }
}

#[tokio::test]
async fn every_hard_purge_kind_removes_exactly_what_it_names() {
    every_kind(false).await;
}

#[tokio::test]
async fn every_soft_purge_kind_marks_exactly_what_it_names_stale() {
    every_kind(true).await;
}

#[tokio::test]
async fn a_soft_purge_serves_stale_while_one_refresh_runs() {
    let origin = Origin::start(|_, n| {
        Reply::ok(&format!("v{n}"))
            .header("cache-control", "max-age=600, stale-while-revalidate=60")
            .header("surrogate-key", "t")
    })
    .await;
    let lib = Lib::start(&origin, SITES).await;
    let admin = lib.admin.unwrap();
    assert_eq!(lib.get("/a", &[]).await.body, "v1");
    assert_eq!(purge(admin, r#"{"tag":"t","soft":true}"#).await, 1);
    let stale = lib.get("/a", &[]).await;
    assert_eq!(stale.body, "v1", "the purged copy is still served");
    assert!(
        stale.cache_status().contains("fwd=stale"),
        "{}",
        stale.cache_status()
    );
    assert_eq!(
        origin_reaches(&origin, 2).await,
        2,
        "one background refresh"
    );
    let deadline = tokio::time::Instant::now() + crate::support::PATIENCE;
    loop {
        let got = lib.get("/a", &[]).await;
        if got.body == "v2" {
            assert!(got.hit(), "{}", got.cache_status());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refresh never stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(origin.count(), 2);
    // A hard purge leaves nothing to serve.
    assert_eq!(purge(admin, r#"{"tag":"t"}"#).await, 1);
    assert_eq!(lib.get("/a", &[]).await.body, "v3");
}

#[tokio::test]
async fn the_stale_window_of_a_soft_purge_counts_from_the_purge() {
    let origin = Origin::start(|_, n| {
        Reply::ok(&format!("v{n}"))
            .header("cache-control", "max-age=600, stale-while-revalidate=60")
    })
    .await;
    let lib = Lib::start(&origin, SITES).await;
    let admin = lib.admin.unwrap();
    assert_eq!(lib.get("/a", &[]).await.body, "v1");
    lib.advance(100);
    assert_eq!(
        purge(admin, r#"{"url":"http://shop.test/a","soft":true}"#).await,
        1
    );
    // 61 s after the purge the window has closed, although the object's own lifetime
    // (600 s) has not run out: the client waits for the origin.
    lib.advance(61);
    let got = lib.get("/a", &[]).await;
    assert_eq!(got.body, "v2", "{}", got.cache_status());
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn a_soft_purge_revalidates_with_a_conditional_request() {
    let origin = Origin::start(|seen, n| {
        let r = if seen.headers.contains_key("if-none-match") {
            Reply::status(304, "")
        } else {
            Reply::ok(&format!("v{n}"))
        };
        r.header("etag", "\"e1\"")
            .header("cache-control", "max-age=600")
    })
    .await;
    let lib = Lib::start(&origin, SITES).await;
    let admin = lib.admin.unwrap();
    assert_eq!(lib.get("/a", &[]).await.body, "v1");
    assert_eq!(
        purge(admin, r#"{"url":"http://shop.test/a","soft":true}"#).await,
        1
    );
    let got = lib.get("/a", &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, "v1"));
    let seen = origin.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].headers["if-none-match"], "\"e1\"");
    // The 304 made the object fresh again.
    assert!(lib.get("/a", &[]).await.hit());
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn a_soft_purged_object_still_covers_an_origin_failure() {
    let origin = Origin::start(|_, n| {
        if n == 1 {
            Reply::ok("good").header("cache-control", "max-age=600, stale-if-error=300")
        } else {
            Reply::status(503, "down")
        }
    })
    .await;
    let lib = Lib::start(&origin, SITES).await;
    let admin = lib.admin.unwrap();
    assert_eq!(lib.get("/a", &[]).await.body, "good");
    assert_eq!(purge(admin, r#"{"all":true,"soft":true}"#).await, 1);
    let got = lib.get("/a", &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, "good"));
    assert_eq!(origin.count(), 2);
    assert_eq!(purge(admin, r#"{"all":true}"#).await, 1);
    assert_eq!(lib.get("/a", &[]).await.status, 503);
}

#[tokio::test]
async fn tags_from_the_script_and_the_origin_are_both_purgeable() {
    let origin = Origin::start(|_, n| {
        Reply::ok(&format!("{{\"v\":{n}}}"))
            .header("content-type", "application/json")
            .header("surrogate-key", "from-origin")
    })
    .await;
    let script = guest("guest-examples/ttl-by-type");
    let toml = SITES.replacen(
        "origin = \"{origin}\"",
        &format!("origin = \"{{origin}}\"\nscript = \"{}\"", script.display()),
        1,
    );
    let lib = Lib::start(&origin, &toml).await;
    let admin = lib.admin.unwrap();
    for tag in ["product-123", "section-api", "from-origin"] {
        lib.get("/api/products/123", &[]).await;
        assert!(lib.get("/api/products/123", &[]).await.hit());
        assert_eq!(
            purge(admin, &format!(r#"{{"tag":"{tag}"}}"#)).await,
            1,
            "{tag}"
        );
        assert!(!lib.get("/api/products/123", &[]).await.hit(), "{tag}");
    }
    assert_eq!(purge(admin, r#"{"tag":"product-1234"}"#).await, 0);
}

#[tokio::test]
async fn the_tag_index_follows_evictions() {
    let origin = Origin::start(|seen, _| {
        let i = seen.path_and_query.trim_start_matches("/p/").to_owned();
        Reply::ok(&"x".repeat(4096))
            .header("cache-control", "max-age=600")
            .header("surrogate-key", &format!("all-pages page-{i}"))
    })
    .await;
    let toml = format!("[cache]\nmax_size = \"64KiB\"\n{SITES}");
    let lib = Lib::start(&origin, &toml).await;
    let admin = lib.admin.unwrap();
    for i in 0..300 {
        assert_eq!(lib.get(&format!("/p/{i}"), &[]).await.status, 200);
    }
    let store = &lib.shared().store;
    let entries = store.entry_count();
    assert!(entries < 300, "the store is bounded ({entries} entries)");
    // One tag per page still stored, plus the shared one: nothing left over from evictions.
    assert!(
        store.indexed_tags() as u64 <= entries + 1,
        "{} tags for {entries} entries",
        store.indexed_tags()
    );
    let early = purge(admin, r#"{"tag":"page-0"}"#).await;
    assert!(early <= 1);
    let rest = purge(admin, r#"{"tag":"all-pages"}"#).await;
    assert_eq!(
        rest + early,
        entries,
        "a tag reaches every stored page and nothing else"
    );
    assert_eq!(store.entry_count(), 0);
    assert_eq!(store.indexed_tags(), 0);
}

#[tokio::test]
async fn publish_events_purge_through_the_configured_rules() {
    let origin = Origin::start(|seen, n| {
        let path = seen.path_and_query.as_str();
        let mut r = Reply::ok(&format!("{path} #{n}")).header("cache-control", "max-age=600");
        if path.starts_with("/entries/") {
            r = r.header("surrogate-key", "entry-blt123 content-type-article");
        }
        r
    })
    .await;
    let lib = Lib::start(&origin, SITES).await;
    let admin = lib.admin.unwrap();
    let pages = [
        "/entries/1",
        "/assets/logo.png",
        "/news/a",
        "/news/b",
        "/other",
    ];
    for p in pages {
        lib.get(p, &[]).await;
    }
    let answer = post(
        admin,
        "/events",
        r#"{"event":"publish","type":"entry","id":"blt123","content_type":"article","locale":"en"}"#,
    )
    .await;
    assert_eq!(answer["event"], "publish entry blt123");
    // Both tags name the same page: two purges, each reaching it while it is there.
    assert_eq!(answer["objects"], 1, "{answer}");
    assert_eq!(answer["purges"].as_array().unwrap().len(), 2, "{answer}");
    assert!(!lib.get("/entries/1", &[]).await.hit());

    let answer = post(
        admin,
        "/events",
        r#"{"event":"publish","type":"asset","id":"logo.png"}"#,
    )
    .await;
    assert_eq!(answer["objects"], 1, "{answer}");
    let answer = post(admin, "/events", r#"{"event":"move","section":"news"}"#).await;
    assert_eq!(answer["objects"], 2, "{answer}");
    assert!(
        lib.get("/other", &[]).await.hit(),
        "nothing else was purged"
    );
    assert!(lib.get("/entries/1", &[]).await.hit());
}

#[tokio::test]
async fn events_no_rule_answers_are_refused_and_purge_nothing() {
    let origin = Origin::start(page).await;
    let lib = Lib::start(&origin, SITES).await;
    let admin = lib.admin.unwrap();
    lib.get("/about", &[]).await;
    for (body, status) in [
        (r#"{"event":"unpublish","type":"entry","id":"x"}"#, 422),
        (r#"{"event":"publish","type":"page","id":"x"}"#, 422),
        // A rule matches, but a field its template needs is missing.
        (r#"{"event":"publish","type":"entry","id":"x"}"#, 422),
        (
            r#"{"event":"publish","type":"entry","id":"a b","content_type":"c"}"#,
            422,
        ),
        (r#"{"type":"entry","id":"x"}"#, 422),
        (r#"{"event":"publish""#, 400),
        (r#"["publish"]"#, 400),
        ("", 400),
    ] {
        let got = call(admin, "POST", "/events", Some(TOKEN), body).await;
        assert_eq!(got.status, status, "{body}: {}", got.body);
        let err: serde_json::Value = serde_json::from_str(&got.body).expect("JSON error");
        assert!(
            err["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{}",
            got.body
        );
    }
    assert!(lib.get("/about", &[]).await.hit(), "nothing was purged");
}

#[tokio::test]
async fn malformed_purges_are_refused_with_a_reason() {
    let origin = Origin::start(page).await;
    let lib = Lib::start(&origin, SITES).await;
    let admin = lib.admin.unwrap();
    lib.get("/about", &[]).await;
    let huge = format!(r#"{{"tag":"{}"}}"#, "t".repeat(100_000));
    for (body, status) in [
        (r#"{}"#, 422),
        (r#"{"url":"http://shop.test/a","tag":"t"}"#, 422),
        (r#"{"url":"/relative"}"#, 422),
        (r#"{"url":"http://elsewhere.test/a"}"#, 422),
        (r#"{"site":"nope"}"#, 422),
        (r#"{"tag":""}"#, 422),
        (r#"{"all":false}"#, 422),
        (r#"{"url":"http://shop.test/a","site":"shop"}"#, 422),
        (r#"{"all":true,"sfot":true}"#, 400),
        (r#"{"all":"yes"}"#, 400),
        ("all", 400),
        (huge.as_str(), 413),
    ] {
        let got = call(admin, "POST", "/purge", Some(TOKEN), body).await;
        assert_eq!(
            got.status,
            status,
            "{}: {}",
            &body[..body.len().min(60)],
            got.body
        );
    }
    assert_eq!(
        call(admin, "GET", "/purge", Some(TOKEN), "").await.status,
        405
    );
    assert_eq!(
        call(admin, "POST", "/nope", Some(TOKEN), "{}").await.status,
        404
    );
    assert_eq!(
        call(admin, "POST", "/purge", None, r#"{"all":true}"#)
            .await
            .status,
        401
    );
    assert!(lib.get("/about", &[]).await.hit(), "nothing was purged");
}

#[tokio::test]
async fn the_public_listener_knows_no_purge() {
    // Varnish users try `PURGE` first; here it is just a method the origin refuses, and
    // the admin paths are the origin's paths.
    let origin = Origin::start(|seen, n| {
        if seen.method == http::Method::GET {
            page(seen, n)
        } else {
            Reply::status(405, "no")
        }
    })
    .await;
    let lib = Lib::start(&origin, SITES).await;
    lib.get("/about", &[]).await;
    for (method, path) in [("PURGE", "/about"), ("BAN", "/about"), ("POST", "/purge")] {
        let got = send(lib.addr, method, path, &[]).await;
        assert_eq!(got.status, 405, "{method} {path}");
    }
    assert!(lib.get("/about", &[]).await.hit());
    assert_eq!(lib.shared().store.entry_count(), 1);
}
