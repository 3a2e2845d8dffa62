//! Memoised cache keys (`key_memo_kib`): a `cache-key` answer reused for requests equal in
//! everything the script declared it reads, and only for those.

use crate::support::admin::{metric, scrape_until};
use crate::support::{guest, run_cli, Launch, Origin, Proxy, Reply};

/// A site running `script`, with `limits` added to `[site.limits]`.
fn site(script: &str, limits: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin-token\"\n[[site]]\nname = \"m\"\norigin = \"{{origin}}\"\nscript = \"{}\"\n[site.limits]\n{limits}\n",
        guest(script).display()
    )
}

/// An origin whose answer names the user it was made for.
async fn origin() -> Origin {
    Origin::start(|s, _| {
        let user = s
            .headers
            .get("x-user")
            .map(|v| v.to_str().unwrap_or("?").to_owned())
            .unwrap_or_else(|| "-".into());
        Reply::ok(&format!("{} for {user}", s.path_and_query)).header("cache-control", "max-age=60")
    })
    .await
}

const FRESH: &str = r#"tessera_guest_instances_total{site="m",how="fresh"}"#;
const HIT: &str = r#"tessera_guest_key_memo_total{site="m",result="hit"}"#;
const STORED: &str = r#"tessera_guest_key_memo_total{site="m",result="stored"}"#;
const UNSTORED: &str = r#"tessera_guest_key_memo_total{site="m",result="unstored"}"#;

async fn get(proxy: &Proxy, path: &str, user: &str, cookie: &str) -> String {
    let got = proxy
        .get(path, &[("x-user", user), ("cookie", cookie)])
        .await;
    assert_eq!(got.status, 200, "{path} {user}");
    got.body
}

#[tokio::test]
async fn a_memoised_key_skips_the_script_only_for_requests_equal_in_what_it_reads() {
    let origin = origin().await;
    let proxy = Proxy::with_config(&origin, &site("tests/guests/memo", "key_memo_kib = 64")).await;
    // ann twice (different cookies, which the script does not read), bob, then both again:
    // each gets the page made for them, and the script ran once per user.
    assert_eq!(get(&proxy, "/p", "ann", "s=1").await, "/p for ann");
    assert_eq!(get(&proxy, "/p", "ann", "s=2").await, "/p for ann");
    assert_eq!(get(&proxy, "/p", "bob", "s=1").await, "/p for bob");
    assert_eq!(get(&proxy, "/p", "ann", "s=3").await, "/p for ann");
    assert_eq!(get(&proxy, "/p", "bob", "s=2").await, "/p for bob");
    // Another path is another memo entry, though the user is the same.
    assert_eq!(get(&proxy, "/q", "ann", "s=1").await, "/q for ann");
    assert_eq!(origin.count(), 3, "one origin request per page and user");

    let admin = proxy.admin.unwrap();
    let text = scrape_until(admin, &[(FRESH, 3.0), (HIT, 3.0), (STORED, 3.0)]).await;
    assert_eq!(metric(&text, FRESH), Some(3.0), "{text}");
    assert_eq!(metric(&text, STORED), Some(3.0), "{text}");
    assert_eq!(metric(&text, HIT), Some(3.0), "{text}");
}

#[tokio::test]
async fn an_answer_that_read_the_clock_is_never_memoised() {
    let origin = origin().await;
    let proxy = Proxy::with_config(&origin, &site("tests/guests/memo", "key_memo_kib = 64")).await;
    for cookie in ["s=1", "s=2", "s=3"] {
        assert_eq!(
            get(&proxy, "/clock/p", "ann", cookie).await,
            "/clock/p for ann"
        );
    }
    assert_eq!(origin.count(), 1, "still one cache entry");
    let admin = proxy.admin.unwrap();
    let text = scrape_until(admin, &[(FRESH, 3.0), (UNSTORED, 3.0)]).await;
    assert_eq!(
        metric(&text, FRESH),
        Some(3.0),
        "the script ran every time: {text}"
    );
    assert_eq!(metric(&text, UNSTORED), Some(3.0), "{text}");
    assert_eq!(metric(&text, HIT).unwrap_or(0.0), 0.0, "{text}");
}

#[tokio::test]
async fn without_the_memo_the_script_runs_for_every_request_and_sees_only_what_it_declared() {
    let origin = origin().await;
    let proxy = Proxy::with_config(&origin, &site("tests/guests/memo", "")).await;
    for cookie in ["s=1", "s=2"] {
        assert_eq!(get(&proxy, "/p", "ann", cookie).await, "/p for ann");
    }
    assert_eq!(
        origin.count(),
        1,
        "the undeclared cookie never reached the key, memo or not"
    );
    let admin = proxy.admin.unwrap();
    let text = scrape_until(admin, &[(FRESH, 2.0)]).await;
    assert_eq!(metric(&text, FRESH), Some(2.0), "{text}");
    assert_eq!(metric(&text, HIT), None, "{text}");
}

#[tokio::test]
async fn a_script_with_hooks_besides_cache_key_is_never_memoised() {
    // misbehave also implements on_response, which shares cache_key's instance on a hit:
    // skipping cache_key would change what it finds there.
    let origin = origin().await;
    let toml = site("tests/guests/misbehave", "key_memo_kib = 64");
    let proxy = Launch::config(&origin, &toml).capture_logs().start().await;
    for _ in 0..3 {
        assert_eq!(proxy.get("/a", &[]).await.status, 200);
    }
    let logs = proxy.logs().join("\n");
    assert!(
        logs.contains("key_memo_kib is set but the script implements other hooks than cache_key"),
        "{logs}"
    );
    let admin = proxy.admin.unwrap();
    // The miss takes two instances (before and after its origin wait), each hit one.
    let text = scrape_until(admin, &[(FRESH, 4.0)]).await;
    assert_eq!(metric(&text, FRESH), Some(4.0), "{text}");
    assert_eq!(metric(&text, HIT), None, "{text}");
}

#[test]
fn check_says_what_a_key_hook_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    let toml = format!(
        "[[site]]\nname = \"m\"\norigin = \"http://127.0.0.1:9\"\nscript = \"{}\"\n",
        guest("tests/guests/memo").display()
    );
    std::fs::write(&path, toml).unwrap();
    let (ok, out) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(
        out.contains("hooks cache-key (cache_key reads path, header x-user)"),
        "{out}"
    );
}
