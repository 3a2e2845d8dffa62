//! `tessera key` through the real binary: the key a request gets from the site's scripts,
//! offline (the origin is never asked), and every way it can go wrong named.

use crate::support::{guest, run_cli, Origin, Reply};

fn line<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{out}"))
}

#[test]
fn a_script_key_collapses_tracking_variants_and_splits_devices() {
    let script = guest("guest-examples/normalize-key").display().to_string();
    let key = |url: &str, ua: &str| {
        let (ok, out) = run_cli(&[
            "key",
            "--script",
            &script,
            url,
            "-H",
            &format!("User-Agent: {ua}"),
        ]);
        assert!(ok, "{out}");
        out
    };
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148";
    let a = key(
        "https://Shop.Example/p?utm_source=x&b=2&fbclid=1&a=1",
        iphone,
    );
    let b = key("https://shop.example/p?a=1&gclid=zz&b=2", iphone);
    let desktop = key(
        "https://shop.example/p?a=1&b=2",
        "Mozilla/5.0 (X11; Linux x86_64)",
    );
    assert_eq!(line(&a, "key "), "shop.example/p?a=1&b=2#mobile");
    assert_eq!(line(&b, "key "), line(&a, "key "));
    assert_eq!(line(&desktop, "key "), "shop.example/p?a=1&b=2#desktop");
    assert_eq!(line(&a, "device class"), "mobile");
    assert_eq!(line(&a, "hooks run"), "cache-key (normalize-key.wasm)");
    assert_eq!(line(&a, "default key"), "shop.example/p?a=1&b=2");
    assert_eq!(
        line(&a, "origin query"),
        "b=2&a=1 (parameters not in the key are not sent)"
    );

    let (ok, explained) = run_cli(&[
        "key",
        "--script",
        &script,
        "https://Shop.Example/p?utm_source=x&b=2&fbclid=1&a=1",
        "--explain",
    ]);
    assert!(ok, "{explained}");
    for step in [
        "authority lower-cased: Shop.Example → shop.example",
        "tracking parameters dropped: utm_source=x, fbclid=1",
        "parameters sorted: b=2&a=1 → a=1&b=2",
    ] {
        assert!(explained.contains(step), "{step} missing in:\n{explained}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_routes_by_host_runs_on_request_first_and_never_asks_the_origin() {
    // A real origin, so that a request reaching it would be counted, not refused.
    let origin = Origin::start(|_, _| Reply::ok("page")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            "[[site]]\nname = \"shop\"\nhosts = [\"shop.test\"]\norigin = \"{}\"\nscript = [\"{}\", \"{}\"]\n",
            origin.url(),
            guest("guest-examples/bot-block").display(),
            guest("guest-examples/normalize-key").display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();

    let (ok, out) = run_cli(&["key", "-c", &config, "http://shop.test/a?b=1"]);
    assert!(ok, "{out}");
    assert_eq!(line(&out, "site"), "shop");
    assert_eq!(
        line(&out, "hooks run"),
        "on-request (bot-block.wasm), cache-key (normalize-key.wasm)"
    );
    assert_eq!(line(&out, "key "), "shop.test/a?b=1#desktop");

    // A blocked agent is answered by on_request: no key, no cache.
    let (ok, out) = run_cli(&[
        "key",
        "-c",
        &config,
        "http://shop.test/a",
        "-H",
        "User-Agent: sqlmap/1.7",
    ]);
    assert!(ok, "{out}");
    assert!(
        line(&out, "outcome").starts_with("answered at the edge with 403"),
        "{out}"
    );
    assert!(!out.contains("\nkey "), "{out}");

    // Only GET and HEAD are looked up.
    let (ok, out) = run_cli(&["key", "-c", &config, "http://shop.test/a", "-X", "POST"]);
    assert!(ok, "{out}");
    assert!(line(&out, "outcome").contains("never stored"), "{out}");

    // An unknown host has no site.
    let (ok, out) = run_cli(&["key", "-c", &config, "http://elsewhere.test/"]);
    assert!(
        !ok && out.contains("no site serves host `elsewhere.test`"),
        "{out}"
    );
    assert_eq!(origin.count(), 0, "keying is offline");
}

#[test]
fn a_failing_cache_key_is_reported_as_passing_uncached() {
    let script = guest("tests/guests/hostile").display().to_string();
    let (ok, out) = run_cli(&["key", "--script", &script, "http://shop.test/giant-key"]);
    assert!(ok, "{out}");
    let outcome = line(&out, "outcome");
    assert!(
        outcome.starts_with("cache-key") && outcome.contains("uncached"),
        "{out}"
    );
    assert!(!out.contains("\nkey "), "{out}");
}

#[test]
fn bad_arguments_are_named() {
    let script = guest("guest-examples/normalize-key").display().to_string();
    for (args, words) in [
        (
            vec!["http://shop.test/", "-H", "no colon"],
            "expected `Name: value`",
        ),
        (
            vec!["http://shop.test/", "-H", "bad name: x"],
            "is not a field name",
        ),
        (vec!["/relative"], "absolute http:// or https:// URL"),
        (vec!["ftp://shop.test/"], "absolute http:// or https:// URL"),
        (vec!["http://shop.test/", "-X", "GE T"], "is not a method"),
    ] {
        let mut all = vec!["key", "--script", &script];
        all.extend(args.iter().copied());
        let (ok, out) = run_cli(&all);
        assert!(!ok && out.contains(words), "{args:?}: {out}");
    }
    let (ok, out) = run_cli(&["key", "--script", "/nonexistent.wasm", "http://shop.test/"]);
    assert!(!ok && out.contains("/nonexistent.wasm"), "{out}");
    let (ok, out) = run_cli(&["key", "http://shop.test/"]);
    assert!(!ok, "{out}");
}

#[test]
fn a_request_the_script_passes_is_reported_as_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            "[[site]]\nname = \"api\"\nhosts = [\"api.test\"]\norigin = \"http://127.0.0.1:9\"\nscript = \"{}\"\n[site.script_config]\napi_keys = \"partner-a:key-a-1\"\n",
            guest("guest-examples/fresh-vs-cached").display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let (ok, out) = run_cli(&[
        "key",
        "-c",
        &config,
        "http://api.test/fresh/stock",
        "-H",
        "x-api-key: key-a-1",
    ]);
    assert!(ok, "{out}");
    assert_eq!(
        line(&out, "outcome"),
        "passed to the origin past the cache (on-request), never stored"
    );
    let (ok, out) = run_cli(&["key", "-c", &config, "http://api.test/delivery/stock"]);
    assert!(ok, "{out}");
    assert_eq!(line(&out, "key "), "api.test/delivery/stock");
}
