//! The edges of the request path: 304 handling, invalidation of every variant, hit-for-miss,
//! coalescing per variant, unkeyed parameters, node naming, the compiled-code directory.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::support::{guest, origin_reaches, run_cli, send, Lib, Origin, Proxy, Reply};

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";

#[tokio::test]
async fn a_304_that_now_says_no_store_answers_this_client_and_drops_the_copy_rfc9111_4_3_4() {
    let origin = Origin::start(|s, n| {
        if s.headers.contains_key("if-none-match") {
            Reply::status(304, "")
                .header("etag", "\"e1\"")
                .header("cache-control", "no-store")
        } else {
            Reply::ok(&format!("v{n}"))
                .header("etag", "\"e1\"")
                .header("cache-control", "max-age=1")
        }
    })
    .await;
    let proxy = Lib::site(&origin, "").await;
    assert_eq!(proxy.get("/", &[]).await.body, "v1");
    proxy.advance(5);
    let revalidated = proxy.get("/", &[]).await;
    assert_eq!(
        revalidated.body, "v1",
        "the validated body, for this client"
    );
    assert!(
        revalidated.cache_status().contains("fwd-status=304")
            && revalidated.cache_status().contains("detail=\"no-store\""),
        "{}",
        revalidated.cache_status()
    );
    let next = proxy.get("/", &[]).await;
    assert_eq!(next.body, "v3", "the copy is gone: a full fetch");
    assert_eq!(origin.count(), 3);
}

#[tokio::test]
async fn a_304_for_another_validator_does_not_freshen_the_copy_rfc9111_4_3_4() {
    let origin = Origin::start(|s, n| {
        if s.headers.contains_key("if-none-match") {
            // Claims "not modified" but names a different representation.
            Reply::status(304, "").header("etag", "\"other\"")
        } else {
            Reply::ok(&format!("v{n}"))
                .header("etag", &format!("\"e{n}\""))
                .header("cache-control", "max-age=1")
        }
    })
    .await;
    let proxy = Lib::site(&origin, "").await;
    assert_eq!(proxy.get("/", &[]).await.body, "v1");
    proxy.advance(5);
    let got = proxy.get("/", &[]).await;
    assert_eq!(got.body, "v3", "fetched again, unconditionally");
    let seen = origin.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen[1].headers.contains_key("if-none-match"));
    assert!(!seen[2].headers.contains_key("if-none-match"));
}

#[tokio::test]
async fn an_unsafe_method_invalidates_every_variant_the_script_keeps_rfc9111_4_4() {
    let origin = Origin::start(|s, n| {
        if s.method == "POST" {
            Reply::ok("posted")
        } else {
            Reply::ok(&format!("v{n}")).header("cache-control", "max-age=600")
        }
    })
    .await;
    let proxy = Proxy::quick(&origin, &[guest("guest-examples/normalize-key")]).await;
    // Two entries under two script keys (desktop and mobile) for one URI.
    for ua in ["desktop", IPHONE] {
        proxy.get("/item?id=1", &[("user-agent", ua)]).await;
        assert!(proxy.get("/item?id=1", &[("user-agent", ua)]).await.hit());
    }
    assert_eq!(proxy.send("POST", "/item?id=1", &[]).await.body, "posted");
    for ua in ["desktop", IPHONE] {
        let got = proxy.get("/item?id=1", &[("user-agent", ua)]).await;
        assert!(!got.hit(), "{ua}: {}", got.cache_status());
    }
    assert_eq!(origin.count(), 5);
}

#[tokio::test]
async fn requests_for_a_key_found_uncacheable_go_to_the_origin_side_by_side() {
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let origin = Origin::start(move |_, n| {
        let r = Reply::ok(&format!("v{n}")).header("cache-control", "private");
        if n == 1 {
            r
        } else {
            r.gate(&g)
        }
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let first = proxy.get("/me", &[]).await;
    assert!(first.cache_status().contains("detail=\"private\""));
    // Five concurrent requests: none waits behind another (hit-for-miss), so all five are
    // at the origin at once while it holds its answers.
    let addr = proxy.addr;
    let tasks: Vec<_> = (0..5)
        .map(|_| tokio::spawn(async move { send(addr, "GET", "/me", &[]).await }))
        .collect();
    assert_eq!(origin_reaches(&origin, 6).await, 6);
    gate.add_permits(5);
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn misses_for_different_variants_do_not_queue_behind_each_other() {
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let origin = Origin::start(move |s, n| {
        let lang = s
            .headers
            .get("accept-language")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let r = Reply::ok(&format!("{lang} v{n}"))
            .header("cache-control", "max-age=600")
            .header("vary", "accept-language");
        if n == 1 {
            r
        } else {
            r.gate(&g)
        }
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    assert_eq!(
        proxy.get("/", &[("accept-language", "en")]).await.body,
        "en v1"
    );
    let addr = proxy.addr;
    let mut tasks = Vec::new();
    for lang in ["fr", "de", "fr", "de"] {
        tasks.push(tokio::spawn(async move {
            send(addr, "GET", "/", &[("accept-language", lang)]).await
        }));
    }
    // fr and de are fetched at once; the second fr and de wait for their own variant.
    assert_eq!(origin_reaches(&origin, 3).await, 3);
    gate.add_permits(2);
    for (t, lang) in tasks.into_iter().zip(["fr", "de", "fr", "de"]) {
        let got = t.await.unwrap();
        assert!(got.body.starts_with(lang), "{lang}: {}", got.body);
    }
    assert_eq!(origin.count(), 3, "one fetch per variant");
}

#[tokio::test]
async fn parameters_left_out_of_the_key_never_reach_the_origin() {
    let origin = Origin::start(|s, _| {
        Reply::ok(&format!("page for {}", s.path_and_query)).header("cache-control", "max-age=60")
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    // An origin that reflects a campaign parameter would otherwise store it for everyone.
    let got = proxy
        .get("/p?b=2&utm_source=evil%3Cscript%3E&a=1&fbclid=x", &[])
        .await;
    assert_eq!(got.body, "page for /p?b=2&a=1");
    let other = proxy.get("/p?a=1&b=2&utm_source=mail", &[]).await;
    assert!(other.hit());
    assert_eq!(origin.seen()[0].path_and_query, "/p?b=2&a=1");

    let keyed = Proxy::quick(&origin, &[guest("guest-examples/normalize-key")]).await;
    keyed.get("/q?x=1&ref=home", &[]).await;
    assert_eq!(origin.seen()[1].path_and_query, "/q?x=1");

    let toml = "[[site]]\nname = \"s\"\norigin = \"{origin}\"\n[site.caching]\nstrip_unkeyed_params = false\n";
    let kept = Proxy::with_config(&origin, toml).await;
    kept.get("/r?x=1&utm_source=mail", &[]).await;
    assert_eq!(origin.seen()[2].path_and_query, "/r?x=1&utm_source=mail");
}

#[tokio::test]
async fn cache_status_is_named_after_the_node() {
    let origin = Origin::start(|_, _| Reply::ok("x").header("cache-control", "max-age=60")).await;
    let toml = "node_name = \"edge-7\"\n[[site]]\nname = \"s\"\norigin = \"{origin}\"\n";
    let proxy = Proxy::with_config(&origin, toml).await;
    let got = proxy.get("/", &[]).await;
    assert!(
        got.cache_status().starts_with("edge-7; fwd=uri-miss"),
        "{}",
        got.cache_status()
    );
    assert_eq!(got.h("x-served-by"), "edge-7");
    assert!(got.h("via").contains("edge-7"), "{}", got.h("via"));
}

#[test]
fn a_compiled_code_directory_others_can_write_is_refused_by_check() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let compiled = dir.path().join("compiled");
    std::fs::create_dir(&compiled).unwrap();
    std::fs::set_permissions(&compiled, std::fs::Permissions::from_mode(0o777)).unwrap();
    let wasm = guest("guest-examples/normalize-key");
    let toml = dir.path().join("tessera.toml");
    std::fs::write(
        &toml,
        format!(
            "compiled_dir = \"compiled\"\n[[site]]\nname = \"s\"\norigin = \"http://127.0.0.1:9\"\nscript = \"{}\"\n",
            wasm.display()
        ),
    )
    .unwrap();
    let (ok, out) = run_cli(&["check", "--config", toml.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("compiled_dir") && out.contains("writable by group or others"),
        "{out}"
    );
    std::fs::set_permissions(&compiled, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (ok, out) = run_cli(&["check", "--config", toml.to_str().unwrap()]);
    assert!(ok, "{out}");
    let fresh = dir.path().join("fresh");
    std::fs::write(
        &toml,
        format!(
            "compiled_dir = \"fresh/deeper\"\n[[site]]\nname = \"s\"\norigin = \"http://127.0.0.1:9\"\nscript = \"{}\"\n",
            wasm.display()
        ),
    )
    .unwrap();
    let (ok, out) = run_cli(&["check", "--config", toml.to_str().unwrap()]);
    assert!(ok, "{out}");
    let mode = std::fs::metadata(fresh.join("deeper"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn scripts_see_the_scheme_and_the_country_from_the_trusted_header_only() {
    let origin = Origin::start(|_, _| Reply::ok("ok")).await;
    let hostile = guest("tests/guests/hostile");
    let trusted = format!(
        "[server]\nclient_country_header = \"cf-ipcountry\"\n[[site]]\nname = \"s\"\norigin = \"{{origin}}\"\nscript = \"{}\"\n",
        hostile.display()
    );
    let proxy = Proxy::with_config(&origin, &trusted).await;
    proxy.get("/whoami", &[("cf-ipcountry", "nl")]).await;
    proxy.get("/whoami", &[("cf-ipcountry", "<script>")]).await;
    let untrusted = Proxy::quick(&origin, &[hostile]).await;
    untrusted.get("/whoami", &[("cf-ipcountry", "NL")]).await;
    let seen: Vec<String> = origin
        .seen()
        .iter()
        .map(|s| s.headers["x-seen"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        seen,
        [
            "scheme=http; country=NL",
            "scheme=http; country=-",
            "scheme=http; country=-"
        ]
    );
}

#[tokio::test]
async fn one_sites_keys_can_never_name_another_sites_entries() {
    let origin = Origin::start(|s, n| {
        let host = s.headers["host"].to_str().unwrap().to_owned();
        Reply::ok(&format!("{host} #{n}")).header("cache-control", "max-age=60")
    })
    .await;
    // Both sites' scripts return the same constant key for /const-key.
    let wasm = guest("tests/guests/hostile");
    let toml = format!(
        "[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\norigin = \"{{origin}}\"\nscript = \"{w}\"\n[[site]]\nname = \"b\"\nhosts = [\"b.test\"]\norigin = \"{{origin}}\"\nscript = \"{w}\"\n",
        w = wasm.display()
    );
    let proxy = Proxy::with_config(&origin, &toml).await;
    let a = proxy.get("/const-key", &[("host", "a.test")]).await;
    let b = proxy.get("/const-key", &[("host", "b.test")]).await;
    assert_eq!(
        (a.body.as_str(), b.body.as_str()),
        ("a.test #1", "b.test #2")
    );
    assert!(proxy.get("/const-key", &[("host", "a.test")]).await.hit());
    // A POST on site b invalidates only site b's entries.
    proxy
        .send("POST", "/const-key", &[("host", "b.test")])
        .await;
    assert!(proxy.get("/const-key", &[("host", "a.test")]).await.hit());
    assert!(!proxy.get("/const-key", &[("host", "b.test")]).await.hit());
}
