//! ESI 1.0 through the binary: every element, variables, errors, limits, parallel fetching.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::support::{guest, origin_reaches, raw, Lib, Origin, Proxy, Reply, Seen, PATIENCE};

/// An ESI page (the origin asks for processing) cached for a minute.
fn page(body: &str) -> Reply {
    Reply::ok(body)
        .header("content-type", "text/html")
        .header("surrogate-control", "content=\"ESI/1.0\"")
        .header("cache-control", "max-age=60")
}

fn fragment(body: &str) -> Reply {
    Reply::ok(body).header("cache-control", "max-age=60")
}

/// The path the origin was asked for, without the query.
fn path(s: &Seen) -> &str {
    s.path_and_query.split('?').next().unwrap_or("")
}

/// Requests the origin saw for exactly this path and query.
fn count(origin: &Origin, pq: &str) -> usize {
    origin
        .seen()
        .iter()
        .filter(|s| s.path_and_query == pq)
        .count()
}

#[tokio::test]
async fn a_page_is_stitched_from_cached_fragments_in_document_order() {
    let origin = Origin::start(|s, _| match path(s) {
        "/page" => page(
            "<h1>Top</h1><esi:include src=\"/frag/a\"/>|<esi:include src=\"frag/b\"/><p>end</p>",
        ),
        "/frag/a" => fragment("[A]"),
        "/frag/b" => fragment("[B]"),
        _ => Reply::status(404, "no"),
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    for round in 0..3 {
        let got = proxy.get("/page", &[]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, "<h1>Top</h1>[A]|[B]<p>end</p>", "round {round}");
        assert!(got.h("surrogate-control").is_empty());
        assert_eq!(got.h("cache-control"), "private, no-cache");
        assert!(got.h("content-length").is_empty() && got.h("etag").is_empty());
    }
    // Parsed once and stored as a template; fragments cached under their own keys.
    for p in ["/page", "/frag/a", "/frag/b"] {
        assert_eq!(count(&origin, p), 1, "{p}");
    }
    // Tessera told the origin it speaks ESI.
    assert!(origin.seen()[0].headers["surrogate-capability"]
        .to_str()
        .unwrap()
        .contains("ESI/1.0"));
}

#[tokio::test]
async fn site_config_turns_esi_on_for_paths_and_markup_elsewhere_is_left_alone() {
    let origin = Origin::start(|s, _| match path(s) {
        "/esi/p" | "/plain" => {
            Reply::ok("x<esi:include src=\"/f\"/>y").header("cache-control", "max-age=60")
        }
        "/f" => fragment("F"),
        _ => Reply::status(404, ""),
    })
    .await;
    let toml = "[[site]]\nname = \"s\"\norigin = \"{origin}\"\n[site.esi]\npaths = [\"/esi/\"]\n";
    let proxy = Proxy::with_config(&origin, toml).await;
    assert_eq!(proxy.get("/esi/p", &[]).await.body, "xFy");
    assert_eq!(
        proxy.get("/plain", &[]).await.body,
        "x<esi:include src=\"/f\"/>y"
    );
}

#[tokio::test]
async fn remove_comment_and_esi_comments_esi_3() {
    let origin = Origin::start(|s, _| match path(s) {
        "/p" => page("a<esi:remove><esi:include src=\"/never\"/>fallback</esi:remove>b<esi:comment text=\"note\"/>c<!--esi <esi:include src=\"/f\"/> -->d"),
        "/f" => fragment("F"),
        _ => Reply::status(404, ""),
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    assert_eq!(proxy.get("/p", &[]).await.body, "abc F d");
    assert_eq!(count(&origin, "/never"), 0);
}

#[tokio::test]
async fn variables_are_substituted_escaped_and_never_parsed_again_esi_5() {
    let origin = Origin::start(|s, _| match path(s) {
        "/p" => page(concat!(
            "<esi:vars>Hi $(HTTP_COOKIE{name}|'guest') on $(HTTP_HOST), page $(QUERY_STRING{n}), ",
            "nl=$(HTTP_ACCEPT_LANGUAGE{nl}) os=$(HTTP_USER_AGENT{os}) from $(HTTP_REFERER|none)</esi:vars>",
            "<esi:include src=\"/f?who=$(HTTP_COOKIE{name})\"/>"
        )),
        "/f" => fragment(&format!("[{}]", s.path_and_query)),
        _ => Reply::status(404, ""),
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let got = proxy
        .get(
            "/p?n=7",
            &[
                ("cookie", "name=Zo%C3%AB"),
                ("accept-language", "nl-BE, en;q=0.5"),
                ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
            ],
        )
        .await;
    assert_eq!(
        got.body,
        "Hi Zo%C3%AB on shop.test, page 7, nl=true os=UNIX from none[/f?who=Zo%25C3%25AB]"
    );
    let anon = proxy.get("/p", &[]).await;
    assert!(
        anon.body
            .starts_with("Hi guest on shop.test, page , nl=false"),
        "{}",
        anon.body
    );
    // A value that looks like markup, or like ESI, is text: escaped, never processed.
    let evil = proxy
        .get(
            "/p",
            &[("cookie", "name=<esi:include src=\"/secret\"/><b>")],
        )
        .await;
    assert!(
        evil.body
            .starts_with("Hi &lt;esi:include src=&quot;/secret&quot;/&gt;&lt;b&gt; on"),
        "{}",
        evil.body
    );
    assert_eq!(count(&origin, "/secret"), 0);
    assert_eq!(count(&origin, "/p"), 1, "one template for every visitor");
}

#[tokio::test]
async fn choose_picks_the_first_true_branch_esi_3_3() {
    let origin = Origin::start(|s, _| match path(s) {
        "/p" => page(concat!(
            "<esi:choose><esi:when test=\"$(HTTP_COOKIE{tier})=='gold'\">GOLD<esi:include src=\"/gold\"/></esi:when>",
            "<esi:when test=\"$(QUERY_STRING{n}) > 5 | $(HTTP_COOKIE{tier})=='silver'\">SILVER</esi:when>",
            "<esi:otherwise>PLAIN</esi:otherwise></esi:choose>"
        )),
        "/gold" => fragment("+g"),
        _ => Reply::status(404, ""),
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    assert_eq!(
        proxy.get("/p", &[("cookie", "tier=gold")]).await.body,
        "GOLD+g"
    );
    assert_eq!(
        proxy.get("/p", &[("cookie", "tier=silver")]).await.body,
        "SILVER"
    );
    assert_eq!(proxy.get("/p?n=9", &[]).await.body, "SILVER");
    assert_eq!(proxy.get("/p", &[]).await.body, "PLAIN");
    assert_eq!(
        count(&origin, "/gold"),
        1,
        "only the chosen branch is fetched"
    );
}

#[tokio::test]
async fn try_alt_and_onerror_handle_failing_fragments_esi_3_4() {
    let origin = Origin::start(|s, _| match path(s) {
        "/p" => page(concat!(
            "<esi:try><esi:attempt>A<esi:include src=\"/broken\"/></esi:attempt>",
            "<esi:except>E<esi:include src=\"/ok\"/></esi:except></esi:try>|",
            "<esi:include src=\"/missing\" alt=\"/ok\"/>|",
            "<esi:include src=\"/broken\" onerror=\"continue\"/>|end"
        )),
        "/ok" => fragment("ok"),
        "/broken" => Reply::status(500, "boom"),
        _ => Reply::status(404, "nope"),
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let got = proxy.get("/p", &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, "Eok|ok||end"));
}

#[tokio::test]
async fn a_failing_first_include_makes_a_502_and_a_later_one_cuts_the_stream() {
    let origin = Origin::start(|s, _| match path(s) {
        "/first" => page("<esi:include src=\"/broken\"/>tail"),
        "/later" => page("head<esi:include src=\"/ok\"/>middle<esi:include src=\"/broken\"/>tail"),
        "/ok" => fragment("OK"),
        _ => Reply::status(500, "boom"),
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let first = proxy.get("/first", &[]).await;
    assert_eq!(first.status, 502);
    assert!(
        first.cache_status().contains("esi;"),
        "{}",
        first.cache_status()
    );
    // Bytes went out before the failure: the response is cut, never a complete-looking page.
    let got = raw(
        proxy.addr,
        b"GET /later HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        PATIENCE,
    )
    .await;
    // What went out before the failure may or may not have reached the socket before the
    // connection was dropped; either way the client can tell the page is incomplete.
    if !got.is_empty() {
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert!(got.contains("head"), "{got}");
    }
    assert!(!got.contains("tail"), "{got}");
    assert!(
        !got.ends_with("0\r\n\r\n"),
        "the chunked body must not end cleanly: {got}"
    );
}

#[tokio::test]
async fn all_includes_of_a_page_are_fetched_at_once() {
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let origin = Origin::start(move |s, _| match path(s) {
        "/p" => page("<esi:include src=\"/slow1\"/>-<esi:include src=\"/slow2\"/>"),
        p => fragment(&p[1..]).gate(&g),
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let addr = proxy.addr;
    let task = tokio::spawn(async move { crate::support::send(addr, "GET", "/p", &[]).await });
    // Both fragment requests are at the origin while it holds both answers.
    assert_eq!(origin_reaches(&origin, 3).await, 3);
    gate.add_permits(2);
    assert_eq!(task.await.unwrap().body, "slow1-slow2");
}

#[tokio::test]
async fn loops_depth_ssrf_and_include_counts_are_bounded() {
    let origin = Origin::start(|s, _| {
        let p = path(s).to_owned();
        match p.as_str() {
            "/loop" => page("L<esi:include src=\"/loop\" onerror=\"continue\"/>"),
            "/ssrf" => page(concat!(
                "<esi:include src=\"http://169.254.169.254/latest/meta-data\" onerror=\"continue\"/>",
                "<esi:include src=\"http://other.test/f\" onerror=\"continue\"/>",
                "<esi:include src=\"http://shop.test/f\"/>"
            )),
            "/many" => page(&(0..300).map(|i| format!("<esi:include src=\"/f?i={i}\" onerror=\"continue\"/>")).collect::<String>()),
            p if p.starts_with("/d") => {
                let n: u32 = p[2..].parse().unwrap();
                page(&format!("{n}<esi:include src=\"/d{}\"/>", n + 1))
            }
            _ => fragment("f"),
        }
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    assert_eq!(proxy.get("/loop", &[]).await.body, "L");
    assert_eq!(proxy.get("/ssrf", &[]).await.body, "f");
    assert!(
        origin
            .seen()
            .iter()
            .all(|s| s.headers["host"] == "shop.test"),
        "only the site's own origin"
    );
    assert_eq!(count(&origin, "/f"), 1);
    let many = proxy.get("/many", &[]).await;
    assert_eq!(many.body, "f".repeat(256), "max_includes = 256");
    // Depth: /d1 includes /d2 … each one level deeper; level 6 is refused (max_depth 5).
    let deep = proxy.get("/d1", &[]).await;
    assert_eq!(deep.status, 502);
    assert_eq!(count(&origin, "/d7"), 0);
}

#[tokio::test]
async fn allowed_hosts_must_be_served_by_a_site_of_this_config() {
    let origin = Origin::start(|s, _| {
        let host = s.headers["host"].to_str().unwrap().to_owned();
        match path(s) {
            "/p" => page("<esi:include src=\"http://fragments.test/f\"/>"),
            _ => fragment(&format!("from {host}")),
        }
    })
    .await;
    let toml = "[[site]]\nname = \"shop\"\nhosts = [\"shop.test\"]\norigin = \"{origin}\"\n[site.esi]\nallow_hosts = [\"fragments.test\"]\n[[site]]\nname = \"frags\"\nhosts = [\"fragments.test\"]\norigin = \"{origin}\"\n";
    let proxy = Proxy::with_config(&origin, toml).await;
    assert_eq!(proxy.get("/p", &[]).await.body, "from fragments.test");
}

#[tokio::test]
async fn a_fragment_keeps_its_own_lifetime_inside_a_longer_lived_page() {
    let origin = Origin::start(|s, n| match path(s) {
        "/p" => page("[<esi:include src=\"/clock\"/>]"),
        _ => Reply::ok(&format!("t{n}")).header("cache-control", "max-age=10"),
    })
    .await;
    let proxy = Lib::site(&origin, "").await;
    assert_eq!(proxy.get("/p", &[]).await.body, "[t2]");
    assert_eq!(proxy.get("/p", &[]).await.body, "[t2]");
    proxy.advance(11);
    assert_eq!(proxy.get("/p", &[]).await.body, "[t3]");
    assert_eq!(count(&origin, "/p"), 1);
}

#[tokio::test]
async fn malformed_esi_never_fails_the_page() {
    let origin = Origin::start(|s, _| match path(s) {
        "/p" => page("a<esi:choose><esi:when test=\"((\">x</esi:when><esi:otherwise>o</esi:otherwise></esi:choose><esi:frob>k</esi:frob></esi:try><esi:include src=\"/f\""),
        _ => fragment("F"),
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let got = proxy.get("/p", &[]).await;
    assert_eq!(
        (got.status, got.body.as_str()),
        (200, "aok<esi:include src=\"/f\"")
    );
}

#[tokio::test]
async fn nested_and_compressed_esi_pages_are_assembled() {
    let origin = Origin::start(|s, _| match path(s) {
        "/p" => {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(b"<main><esi:include src=\"/inner\"/></main>")
                .unwrap();
            let gz = e.finish().unwrap();
            let mut r = page("");
            r.body = gz;
            r.header("content-encoding", "gzip")
        }
        "/inner" => page("in(<esi:include src=\"/leaf\"/>)"),
        _ => fragment("leaf"),
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let got = proxy.get("/p", &[]).await;
    assert_eq!(got.body, "<main>in(leaf)</main>");
    assert!(got.h("content-encoding").is_empty());
    // A client that takes gzip gets the assembled page compressed anew.
    let raw = crate::support::send_bytes(proxy.addr, "/p", &[("accept-encoding", "gzip")]).await;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&raw[..]), &mut out).unwrap();
    assert_eq!(out, "<main>in(leaf)</main>");
}

#[tokio::test]
async fn fragments_go_through_the_sites_script_hooks() {
    let origin = Origin::start(|s, _| match path(s) {
        "/p" => page(
            "<esi:include src=\"/f?x=1&utm_source=a\"/><esi:include src=\"/f?utm_medium=b&x=1\"/>",
        ),
        _ => fragment(&format!("<{}>", s.path_and_query)),
    })
    .await;
    let proxy = Proxy::quick(&origin, &[guest("guest-examples/normalize-key")]).await;
    assert_eq!(proxy.get("/p", &[]).await.body, "</f?x=1></f?x=1>");
    assert_eq!(
        count(&origin, "/f?x=1"),
        1,
        "one key for both: tracking parameters dropped"
    );
}

#[tokio::test]
async fn a_fragment_slower_than_its_timeout_counts_as_failed() {
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let origin = Origin::start(move |s, _| match path(s) {
        "/p" => page("a<esi:include src=\"/stuck\" onerror=\"continue\"/>b<esi:try><esi:attempt><esi:include src=\"/stuck2\"/></esi:attempt><esi:except>late</esi:except></esi:try>"),
        // Never answered while the test runs: only the fragment timeout can end the wait.
        _ => fragment("never").gate(&g),
    })
    .await;
    let toml =
        "[[site]]\nname = \"s\"\norigin = \"{origin}\"\n[site.esi]\nfragment_timeout_ms = 200\n";
    let proxy = Proxy::with_config(&origin, toml).await;
    let got = proxy.get("/p", &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, "ablate"));
    gate.add_permits(10);
}
