//! The site's script rewriting HTML as it streams: every operation, personalisation of one
//! cached page, compression, failures before and after the first byte, chunk invariance.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::support::{guest, raw, Origin, Proxy, Reply, PATIENCE};

fn html(body: &str) -> Reply {
    Reply::ok(body)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "max-age=60")
}

const PAGE: &str = concat!(
    "<div data-set-attr=\"1\">a</div><div data-around>x</div><div data-replace>gone</div>",
    "<div data-inner>old</div><div data-remove>bye</div><div data-unwrap><span>kept</span></div>",
    "<p class=\"whole\">Hello &amp; world</p><p class=\"chunks\">abc</p>",
    "<div class=\"comments\"><!--c1--></div><section class=\"end\">s</section>"
);

const REWRITTEN: &str = concat!(
    "<div data-done=\"yes\">a</div><b>B</b><div data-around>Px<i>E</i></div>A&amp;R",
    "<div data-inner><em>I</em></div><span>kept</span>",
    "<p class=\"whole\">[Hello &amp; world]</p><p class=\"chunks\">ABC</p>",
    "<div class=\"comments\"><!--seen:c1--></div><section class=\"end\">s<footer>end</footer></section>",
    "<!--rewritten-->"
);

fn site(script: &str, extra: &str) -> String {
    format!(
        "[[site]]\nname = \"r\"\norigin = \"{{origin}}\"\nscript = \"{}\"\n{extra}\n",
        guest(script).display()
    )
}

#[tokio::test]
async fn every_mutation_applies_as_htmlrewriter_would() {
    let origin = Origin::start(|_, _| html(PAGE)).await;
    let proxy = Proxy::with_config(&origin, &site("tests/guests/rewrite", "")).await;
    for _ in 0..2 {
        let got = proxy.get("/page", &[]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, REWRITTEN);
        assert_eq!(got.h("cache-control"), "private, no-cache");
        assert!(got.h("content-length").is_empty());
    }
    assert_eq!(
        origin.count(),
        1,
        "the stored copy is the original, rewritten per request"
    );
    // No handlers, no rewrite: the page goes out as stored.
    let plain = proxy.get("/none", &[]).await;
    assert_eq!(plain.body, PAGE);
    assert_eq!(plain.h("cache-control"), "max-age=60");
    let kept = proxy.get("/keep", &[]).await;
    assert_eq!(kept.body, PAGE);
}

/// The sample contract of `guest-examples/personalize`.
const SHOP: &str = concat!(
    "<header><span data-greeting>Welcome!</span> <a href=\"/cart\">Cart <b data-cart-count hidden>0</b></a></header>",
    "<section data-segment=\"pro\">pro offer</section><section data-segment=\"free anonymous\">join us</section>",
    "<main>one page for everybody</main>"
);

#[tokio::test]
async fn one_cached_page_greets_each_visitor_by_name_and_nobody_sees_another() {
    let origin = Origin::start(|_, _| html(SHOP)).await;
    let proxy = Proxy::quick(&origin, &[guest("guest-examples/personalize")]).await;
    let addr = proxy.addr;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            tokio::spawn(async move {
                let cookie = format!("user=visitor{i}; segment=pro; cart={i}");
                let got = crate::support::send(addr, "GET", "/shop", &[("cookie", &cookie)]).await;
                (i, got)
            })
        })
        .collect();
    for t in tasks {
        let (i, got) = t.await.unwrap();
        assert!(
            got.body
                .contains(&format!("<span data-greeting>Hello, visitor{i}</span>")),
            "{}",
            got.body
        );
        for j in (0..20).filter(|j| *j != i) {
            assert!(
                !got.body.contains(&format!("visitor{j}<")),
                "visitor {i} saw {j}: {}",
                got.body
            );
        }
        assert!(
            got.body.contains("pro offer") && !got.body.contains("join us"),
            "{}",
            got.body
        );
        assert!(
            got.body.contains(&format!(">{i}</b>")),
            "cart badge: {}",
            got.body
        );
    }
    let anonymous = proxy.get("/shop", &[]).await;
    assert!(
        anonymous
            .body
            .contains("<span data-greeting>Welcome!</span>"),
        "{}",
        anonymous.body
    );
    assert!(anonymous.body.contains("join us") && !anonymous.body.contains("pro offer"));
    assert_eq!(origin.count(), 1, "fetched once for every visitor");
}

#[tokio::test]
async fn a_hostile_name_in_a_cookie_is_inserted_as_text() {
    let origin = Origin::start(|_, _| html(SHOP)).await;
    let proxy = Proxy::quick(&origin, &[guest("guest-examples/personalize")]).await;
    let got = proxy
        .get(
            "/shop",
            &[("cookie", "user=%3Cscript%3Ealert(1)%3C%2Fscript%3E")],
        )
        .await;
    assert!(
        got.body
            .contains("Hello, &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        got.body
    );
    assert!(!got.body.contains("<script>"), "{}", got.body);
}

#[tokio::test]
async fn esi_fragments_are_personalised_after_assembly() {
    let origin = Origin::start(|s, _| match s.path_and_query.as_str() {
        "/page" => html("<esi:include src=\"/header\"/><main>story</main>")
            .header("surrogate-control", "content=\"ESI/1.0\""),
        _ => html("<span data-greeting>Welcome!</span>"),
    })
    .await;
    let proxy = Proxy::quick(&origin, &[guest("guest-examples/personalize")]).await;
    let got = proxy.get("/page", &[("cookie", "user=Ann")]).await;
    assert_eq!(
        got.body,
        "<span data-greeting>Hello, Ann</span><main>story</main>"
    );
}

#[tokio::test]
async fn compressed_pages_are_decoded_rewritten_and_encoded_as_the_client_prefers() {
    use std::io::{Read, Write};
    let origin = Origin::start(|_, _| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(PAGE.as_bytes()).unwrap();
        let mut r = html("");
        r.body = e.finish().unwrap();
        r.header("content-encoding", "gzip")
    })
    .await;
    let proxy = Proxy::with_config(&origin, &site("tests/guests/rewrite", "")).await;
    let br = proxy.get("/page", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(br.h("content-encoding"), "br");
    assert!(br.h("vary").contains("accept-encoding"));
    // `Got` holds the body as lossy text; fetch the raw bytes again to decode them.
    let raw_br =
        crate::support::send_bytes(proxy.addr, "/page", &[("accept-encoding", "br")]).await;
    let mut out = String::new();
    brotli::Decompressor::new(&raw_br[..], 4096)
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, REWRITTEN);
    let raw_gz =
        crate::support::send_bytes(proxy.addr, "/page", &[("accept-encoding", "gzip")]).await;
    let mut out = String::new();
    flate2::read::GzDecoder::new(&raw_gz[..])
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, REWRITTEN);
    let identity = proxy.get("/page", &[]).await;
    assert!(identity.h("content-encoding").is_empty());
    assert_eq!(identity.body, REWRITTEN);
}

#[tokio::test]
async fn a_script_failing_before_the_first_byte_follows_the_error_policy() {
    let origin = Origin::start(|_, _| html("<div>boom</div>")).await;
    let strict = Proxy::with_config(
        &origin,
        &site("tests/guests/rewrite", "[site.limits]\ncpu_ms = 50"),
    )
    .await;
    for (path, kind) in [
        ("/bad-selector", "html-handlers; output"),
        ("/trap-element", "html; trap"),
        ("/loop-element", "html; timeout"),
        ("/too-many", "html; output"),
    ] {
        let got = strict.get(path, &[]).await;
        assert_eq!(got.status, 503, "{path}: {}", got.body);
        assert!(
            got.cache_status().contains(kind),
            "{path}: {}",
            got.cache_status()
        );
    }
    let lenient = Proxy::with_config(
        &origin,
        &site(
            "tests/guests/rewrite",
            "on_guest_error = { on_response = \"fallback\" }",
        ),
    )
    .await;
    let got = lenient.get("/bad-selector", &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, "<div>boom</div>"));
}

#[tokio::test]
async fn a_script_failing_after_the_first_byte_cuts_the_stream() {
    // ESI streams the page in two parts; the second holds the `div` the script traps on.
    let origin = Origin::start(|s, _| match s.path_and_query.as_str() {
        "/trap-element" => html(
            "<p>start</p><esi:include src=\"/ok\"/><p>mid</p><esi:include src=\"/div\"/><p>end</p>",
        )
        .header("surrogate-control", "content=\"ESI/1.0\""),
        "/ok" => html("<p>ok</p>"),
        _ => html("<div>boom</div>"),
    })
    .await;
    let proxy = Proxy::with_config(&origin, &site("tests/guests/rewrite", "")).await;
    let got = raw(
        proxy.addr,
        b"GET /trap-element HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        PATIENCE,
    )
    .await;
    // What went out before the failure may or may not have reached the socket before the
    // connection was dropped; either way the client can tell the page is incomplete.
    if !got.is_empty() {
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert!(got.contains("<p>start</p>"), "{got}");
    }
    assert!(
        !got.contains("<p>end</p>") && !got.ends_with("0\r\n\r\n"),
        "{got}"
    );
}

/// A tag, an attribute, a text node or a comment cut at every byte offset between two body
/// chunks gives the same output (run on the library with the real fixture script).
#[tokio::test]
async fn a_cut_at_any_byte_offset_gives_identical_output() {
    use tessera::config::{Limits, ScriptsConfig};
    use tessera::encoding::Coding;
    use tessera::guest::{Chain, GuestEngine, InstancePool, PoolSize, Script};
    use tessera::html::rewrite::{rewrite, Plan};

    let engine = GuestEngine::new(PoolSize {
        instances: 4,
        max_memory: 64 << 20,
    })
    .unwrap();
    let pool = Arc::new(InstancePool::new(&ScriptsConfig {
        instances: 4,
        ..Default::default()
    }));
    let limits = Limits {
        cpu: std::time::Duration::from_secs(5),
        memory_bytes: 64 << 20,
        reuse: 0,
        key_memo_bytes: 0,
    };
    let script = Script::load(
        &engine,
        &pool,
        &guest("tests/guests/rewrite"),
        None,
        "r",
        limits,
    )
    .await
    .unwrap();
    let scripts: Arc<[Arc<Script>]> = Arc::from(vec![Arc::new(script)]);
    let req = tessera::request::ClientRequest {
        method: http::Method::GET,
        scheme: "http",
        authority: "shop.test".into(),
        uri: "/page".parse().unwrap(),
        headers: http::HeaderMap::new(),
        client: tessera::request::Client {
            ip: "127.0.0.1".parse().unwrap(),
            country: None,
            device: tessera::request::DeviceClass::Desktop,
        },
        version: 0,
    };
    let mut head = http::HeaderMap::new();
    head.insert("content-type", "text/html".parse().unwrap());
    let page = Bytes::from_static(PAGE.as_bytes());
    for cut in 0..=page.len() {
        let mut chain = Chain::new(
            scripts.clone(),
            pool.clone(),
            "t".into(),
            tessera::clock::Clock::system(),
        );
        let handlers = chain
            .html_handlers(&req, http::StatusCode::OK, &head)
            .await
            .unwrap();
        let plan = Plan { handlers, chain };
        let chunks = vec![
            Ok::<_, tessera::origin::BoxError>(hyper::body::Frame::data(page.slice(..cut))),
            Ok(hyper::body::Frame::data(page.slice(cut..))),
        ];
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(chunks)).boxed();
        let mut rx = rewrite(plan, body, Coding::Identity, Coding::Identity, 1 << 20);
        let mut out = Vec::new();
        while let Some(chunk) = rx.recv().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(String::from_utf8(out).unwrap(), REWRITTEN, "cut at {cut}");
    }
}
