//! `instance_reuse`: a site may let one instance serve several requests in turn; by default
//! every request gets a fresh one, and an instance that failed is never handed out again.

use crate::support::admin::{metric, scrape_until};
use crate::support::{guest, Launch, Origin, Proxy, Reply};

/// A site running the `misbehave` test guest, with `limits` added to `[site.limits]`.
fn site(limits: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin-token\"\n[[site]]\nname = \"r\"\norigin = \"{{origin}}\"\nscript = \"{}\"\n[site.limits]\ncpu_ms = 50\nmemory_mib = 16\n{limits}\n",
        guest("tests/guests/misbehave").display()
    )
}

async fn origin() -> Origin {
    Origin::start(|s, _| match s.path_and_query.as_str() {
        "/html" => Reply::ok("<html><body>page</body></html>")
            .header("content-type", "text/html")
            .header("cache-control", "max-age=60"),
        p => Reply::ok(&format!("origin {p}")).header("cache-control", "max-age=60"),
    })
    .await
}

/// The number of the instance that ran `on_response` for `path` (empty: none did).
async fn instance(proxy: &Proxy, path: &str) -> String {
    let got = proxy.get(path, &[("x-which-instance", "1")]).await;
    got.h("x-instance")
}

#[tokio::test]
async fn every_request_gets_a_fresh_instance_unless_the_site_opts_into_reuse() {
    let origin = origin().await;
    let fresh = Proxy::with_config(&origin, &site("")).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(instance(&fresh, "/a").await);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "four requests, four instances: {seen:?}");

    // Hits take one instance each (no origin wait in between); each serves two requests.
    let reused = Proxy::with_config(&origin, &site("instance_reuse = 2")).await;
    let warm = reused.get("/a", &[]).await;
    assert_eq!(warm.status, 200);
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(instance(&reused, "/a").await);
    }
    assert!(ids.iter().all(|id| !id.is_empty()), "{ids:?}");
    assert_eq!(ids[0], ids[1], "{ids:?}");
    assert_eq!(ids[2], ids[3], "{ids:?}");
    assert_eq!(ids[4], ids[5], "{ids:?}");
    assert!(
        ids[0] != ids[2] && ids[2] != ids[4],
        "an instance serves instance_reuse requests, then a fresh one: {ids:?}"
    );
    // The warm-up miss took two (before and after its origin wait), the six hits six.
    let admin = reused.admin.unwrap();
    let fresh = r#"tessera_guest_instances_total{site="r",how="fresh"}"#;
    let kept = r#"tessera_guest_instances_total{site="r",how="reused"}"#;
    let text = scrape_until(admin, &[(fresh, 4.0), (kept, 4.0)]).await;
    assert_eq!(metric(&text, fresh), Some(4.0), "{text}");
    assert_eq!(metric(&text, kept), Some(4.0), "{text}");
}

#[tokio::test]
async fn an_instance_that_failed_or_grew_is_never_handed_out_again() {
    let origin = origin().await;
    let proxy = Proxy::with_config(&origin, &site("instance_reuse = 1000")).await;
    let first = instance(&proxy, "/a").await;
    assert!(!first.is_empty());
    assert_eq!(instance(&proxy, "/b").await, first, "kept between requests");

    // A trap or a script over its time budget in cache_key, a trap in on_response: the
    // instance that ran it (the kept one) is gone, and the next request gets another.
    let mut before = first;
    for bad in ["/trap", "/loop", "/trap-later"] {
        let got = proxy.get(bad, &[("x-which-instance", "1")]).await;
        let cs = got.cache_status();
        assert!(cs.contains("script-error"), "{bad}: {cs}");
        // After a failed cache-key the request goes on uncached, and its on_response
        // runs on another instance.
        assert_ne!(got.h("x-instance"), before, "{bad}");
        let next = instance(&proxy, "/c").await;
        assert!(!next.is_empty());
        assert_ne!(next, before, "the instance that failed on {bad} came back");
        assert_eq!(
            instance(&proxy, "/d").await,
            next,
            "reuse goes on after {bad}"
        );
        before = next;
    }

    // An instance whose memory grew past what is kept answers its request, and is then
    // dropped: /grow's response comes from another instance (its origin wait came between).
    let grown = instance(&proxy, "/grow").await;
    assert!(!grown.is_empty());
    assert_ne!(grown, before, "the grown instance was kept");
    assert_eq!(instance(&proxy, "/e").await, grown);
}

#[tokio::test]
async fn an_instance_that_ran_an_html_rewrite_is_not_kept() {
    // A rewrite may stop halfway through a document (the client leaves, the markup breaks),
    // with the script halfway through it too.
    let origin = origin().await;
    let proxy = Proxy::with_config(&origin, &site("instance_reuse = 1000")).await;
    let kept = instance(&proxy, "/a").await;
    assert_eq!(instance(&proxy, "/b").await, kept);
    let page = proxy.get("/html", &[("x-which-instance", "1")]).await;
    assert!(page.body.contains("data-seen"), "{}", page.body);
    assert_eq!(
        page.h("x-instance"),
        kept,
        "the kept instance ran the rewrite"
    );
    let next = instance(&proxy, "/c").await;
    assert!(!next.is_empty());
    assert_ne!(
        next, kept,
        "an instance that rewrote a page served another request"
    );
}

#[tokio::test]
async fn a_script_that_does_not_declare_reusable_gets_fresh_instances_whatever_the_site_says() {
    let origin = origin().await;
    let toml = format!(
        "[[site]]\nname = \"s\"\norigin = \"{{origin}}\"\nscript = \"{}\"\n[site.limits]\ninstance_reuse = 1000\n",
        guest("tests/guests/stateless").display()
    );
    let proxy = Launch::config(&origin, &toml).capture_logs().start().await;
    for path in ["/a", "/b", "/c"] {
        // Kept across its origin wait, the instance would still hold the drawn number.
        assert_eq!(proxy.get(path, &[]).await.h("x-kept"), "lost", "{path}");
    }
    let logs = proxy.logs().join("\n");
    assert!(
        logs.contains("instance_reuse is set but the script does not declare `reusable`"),
        "{logs}"
    );
}
