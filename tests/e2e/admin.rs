//! The admin listener of the real binary: who gets in, what `/metrics` counts, the status
//! page, the `tessera purge` command and the JSON access log.

use base64::Engine;

use crate::support::admin::{call, call_with, metric, purge, scrape_until, TOKEN};
use crate::support::{guest, run_cli, run_cli_env, Launch, Origin, Proxy, Reply};

/// A site with a script (so guest time is measured) and the admin API on loopback.
fn config() -> String {
    format!(
        r#"
node_name = "edge-a"

[admin]
listen = "127.0.0.1:0"
token_file = "admin-token"

[[site]]
name = "shop"
hosts = ["shop.test"]
origin = "{{origin}}"
script = "{}"
"#,
        guest("guest-examples/normalize-key").display()
    )
}

/// `/a` is cached for ten minutes, `/nostore` never.
async fn origin() -> Origin {
    Origin::start(|seen, _| match seen.path_and_query.as_str() {
        "/nostore" => Reply::ok("private!").header("cache-control", "no-store"),
        _ => Reply::ok("hello")
            .header("cache-control", "max-age=600")
            .header("surrogate-key", "greeting"),
    })
    .await
}

async fn start() -> (Origin, Proxy) {
    let origin = origin().await;
    let proxy = Launch::config(&origin, &config()).start().await;
    (origin, proxy)
}

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[tokio::test]
async fn admin_requests_without_the_token_get_401() {
    let (_origin, proxy) = start().await;
    let admin = proxy.admin.expect("admin listener");
    // Probes are open and say nothing else.
    assert_eq!(call(admin, "GET", "/healthz", None, "").await.body, "ok\n");
    assert_eq!(call(admin, "GET", "/readyz", None, "").await.status, 200);

    assert!(proxy.get("/a", &[]).await.body == "hello");
    let wrong_same_length = format!("{}8", &TOKEN[..TOKEN.len() - 1]);
    let refused = [
        vec![],
        vec![("authorization", format!("Bearer {wrong_same_length}"))],
        vec![("authorization", format!("Bearer {TOKEN}x"))],
        vec![("authorization", "Bearer ".to_owned())],
        vec![("authorization", TOKEN.to_owned())],
        vec![("authorization", basic("admin", "guess"))],
        vec![("authorization", format!("Basic {TOKEN}"))],
        vec![("x-admin-token", TOKEN.to_owned())],
    ];
    let mut denied = 0;
    for headers in &refused {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for (method, path, body) in [
            ("GET", "/", ""),
            ("GET", "/metrics", ""),
            ("POST", "/purge", r#"{"all":true}"#),
            ("POST", "/events", r#"{"event":"publish"}"#),
        ] {
            let got = call_with(admin, method, path, &h, body).await;
            assert_eq!(got.status, 401, "{method} {path} with {headers:?}");
            assert!(got.h("www-authenticate").contains("Bearer"), "{headers:?}");
            assert!(!got.body.contains("tessera_"), "nothing leaks");
            denied += 1;
        }
    }
    assert!(
        proxy.get("/a", &[]).await.hit(),
        "the refused purges purged nothing"
    );

    // The token, as a bearer or as a browser's Basic password, gets in.
    let bearer = format!("Bearer {TOKEN}");
    let browser = basic("anyone", TOKEN);
    for auth in [bearer.as_str(), browser.as_str()] {
        let got = call_with(admin, "GET", "/metrics", &[("authorization", auth)], "").await;
        assert_eq!(got.status, 200, "{auth}");
        assert_eq!(
            metric(&got.body, "tessera_admin_denied_total"),
            Some(denied as f64)
        );
    }
    assert_eq!(purge(admin, r#"{"all":true}"#).await, 1);
}

#[tokio::test]
async fn the_admin_listener_refuses_to_start_unguarded() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, admin: &str| {
        let path = dir.path().join(name);
        let text =
            format!("[admin]\n{admin}\n[[site]]\nname = \"s\"\norigin = \"http://127.0.0.1:9\"\n");
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();

    let open = write("open.toml", "listen = \"0.0.0.0:0\"");
    let (ok, out) = run_cli(&["serve", "--config", &open, "--listen", "127.0.0.1:0"]);
    assert!(
        !ok && out.contains("no token configured") && out.contains("TESSERA_ADMIN_TOKEN"),
        "{out}"
    );

    let (ok, out) = run_cli_env(
        &["serve", "--config", &open, "--listen", "127.0.0.1:0"],
        &[("TESSERA_ADMIN_TOKEN", "short")],
    );
    assert!(!ok && out.contains("16"), "{out}");

    let shared = write(
        "shared.toml",
        "listen = \"127.0.0.1:0\"\ntoken_file = \"token\"",
    );
    let (ok, out) = run_cli(&["serve", "--config", &shared, "--listen", "127.0.0.1:0"]);
    assert!(!ok && out.contains("chmod 600"), "{out}");

    let missing = write(
        "missing.toml",
        "listen = \"127.0.0.1:0\"\ntoken_file = \"nope\"",
    );
    let (ok, out) = run_cli(&["serve", "--config", &missing, "--listen", "127.0.0.1:0"]);
    assert!(
        !ok && out.contains("missing.toml")
            && out.contains("admin.token_file")
            && out.contains(":3"),
        "{out}"
    );
}

#[tokio::test]
async fn a_loopback_admin_without_a_token_is_open_for_development() {
    let origin = origin().await;
    let proxy = Launch::quick(&origin, &[])
        .arg("--admin")
        .arg("127.0.0.1:0")
        .start()
        .await;
    let admin = proxy.admin.expect("--admin starts the listener");
    assert!(admin.ip().is_loopback());
    proxy.get("/a", &[]).await;
    let got = call(admin, "POST", "/purge", None, r#"{"all":true}"#).await;
    assert_eq!(
        (got.status, got.body.contains("\"objects\":1")),
        (200, true),
        "{}",
        got.body
    );
}

#[tokio::test]
async fn the_token_may_come_from_the_environment() {
    let origin = origin().await;
    let proxy = Launch::quick(&origin, &[])
        .arg("--admin")
        .arg("127.0.0.1:0")
        .env("TESSERA_ADMIN_TOKEN", TOKEN)
        .start()
        .await;
    let admin = proxy.admin.unwrap();
    assert_eq!(call(admin, "GET", "/metrics", None, "").await.status, 401);
    assert_eq!(
        call(admin, "GET", "/metrics", Some(TOKEN), "").await.status,
        200
    );
}

#[tokio::test]
async fn metrics_reflect_a_known_sequence_of_requests_exactly() {
    let (_origin, proxy) = start().await;
    let admin = proxy.admin.unwrap();
    for _ in 0..3 {
        assert_eq!(proxy.get("/a", &[]).await.body, "hello");
    }
    assert_eq!(proxy.get("/nostore", &[]).await.body, "private!");
    assert_eq!(call(admin, "GET", "/metrics", None, "").await.status, 401);
    assert_eq!(purge(admin, r#"{"tag":"greeting","soft":true}"#).await, 1);
    assert_eq!(purge(admin, r#"{"url":"http://shop.test/a"}"#).await, 1);
    let site = r#"site="shop""#;
    let served = (3 * "hello".len() + "private!".len()) as f64;
    let fetched = ("hello".len() + "private!".len()) as f64;
    let expected: Vec<(String, f64)> = vec![
        (
            format!("tessera_requests_total{{{site},outcome=\"miss\"}}"),
            1.0,
        ),
        (
            format!("tessera_requests_total{{{site},outcome=\"hit\"}}"),
            2.0,
        ),
        (
            format!("tessera_requests_total{{{site},outcome=\"uncacheable\"}}"),
            1.0,
        ),
        (
            format!("tessera_response_duration_seconds_count{{{site}}}"),
            4.0,
        ),
        (format!("tessera_origin_requests_total{{{site}}}"), 2.0),
        (
            format!("tessera_origin_duration_seconds_count{{{site}}}"),
            2.0,
        ),
        (format!("tessera_served_bytes_total{{{site}}}"), served),
        (format!("tessera_origin_bytes_total{{{site}}}"), fetched),
        (
            "tessera_guest_call_duration_seconds_count{hook=\"cache-key\"}".into(),
            4.0,
        ),
        (
            "tessera_purges_total{kind=\"tag\",soft=\"true\"}".into(),
            1.0,
        ),
        (
            "tessera_purges_total{kind=\"url\",soft=\"false\"}".into(),
            1.0,
        ),
        ("tessera_purged_objects_total".into(), 2.0),
        ("tessera_cache_entries".into(), 0.0),
        ("tessera_admin_denied_total".into(), 1.0),
    ];
    let wanted: Vec<(&str, f64)> = expected.iter().map(|(s, v)| (s.as_str(), *v)).collect();
    let text = scrape_until(admin, &wanted).await;
    for (series, value) in &wanted {
        assert_eq!(metric(&text, series), Some(*value), "{series}\n{text}");
    }
    // Nothing else was counted: no other outcome, no guest error, no coalescing.
    let outcomes = text
        .lines()
        .filter(|l| l.starts_with("tessera_requests_total{"))
        .count();
    assert_eq!(outcomes, 3, "{text}");
    assert!(!text.contains("tessera_guest_errors_total{"), "{text}");
    assert!(!text.contains("tessera_coalesced_waiters_total{"), "{text}");
    assert!(text.contains("# TYPE tessera_origin_duration_seconds histogram"));
    assert!(text.trim_end().ends_with("# EOF"));
}

#[tokio::test]
async fn the_status_page_shows_traffic_purges_and_scripts_escaped() {
    let (_origin, proxy) = start().await;
    let admin = proxy.admin.unwrap();
    for _ in 0..3 {
        proxy.get("/a", &[]).await;
    }
    // An operator (or a leaked token) names a tag made to break the page.
    assert_eq!(
        purge(admin, r#"{"tag":"<img src=x onerror=alert(1)>"}"#).await,
        0
    );
    let got = call(admin, "GET", "/", Some(TOKEN), "").await;
    assert_eq!(got.status, 200);
    assert!(got.h("content-type").starts_with("text/html"));
    assert!(got
        .h("content-security-policy")
        .contains("default-src 'none'"));
    let page = &got.body;
    for part in [
        "<title>Tessera · edge-a</title>",
        "Hit ratio",
        "Origin requests per second",
        "<svg",
        "Top keys by hits",
        "shop.test/a",
        "Recent purges",
        "tag &lt;img src=x onerror=alert(1)&gt;",
        "Scripts",
        "normalize-key.wasm",
        "cache-key",
    ] {
        assert!(page.contains(part), "missing {part:?} in\n{page}");
    }
    assert!(!page.contains("<img"), "{page}");
    assert!(!page.contains("<script"), "no script runs on the page");
}

/// Renders the status page in headless Chromium (Debian's `chromium`) and checks that it
/// loads without console errors (a CSP violation, a malformed SVG…). Skipped, with a
/// message, where no browser is installed.
#[tokio::test]
async fn the_status_page_renders_in_a_real_browser() {
    let Some(browser) = [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists()) else {
        eprintln!("SKIPPED the_status_page_renders_in_a_real_browser: no chromium installed (apt install chromium)");
        return;
    };
    let origin = origin().await;
    // The browser cannot send a bearer token from the command line: a loopback listener
    // without a token, as in development.
    let proxy = Launch::quick(&origin, &[guest("guest-examples/normalize-key")])
        .arg("--admin")
        .arg("127.0.0.1:0")
        .start()
        .await;
    let admin = proxy.admin.unwrap();
    proxy.get("/a", &[]).await;
    proxy.get("/a", &[]).await;
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{admin}/");
    let out = tokio::task::spawn_blocking({
        let browser = browser.to_owned();
        let profile = profile.path().to_owned();
        move || {
            std::process::Command::new(browser)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--enable-logging=stderr",
                    "--log-level=0",
                    "--virtual-time-budget=2000",
                    "--dump-dom",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg(url)
                .output()
                .expect("chromium runs")
        }
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        dom.contains("Top keys by hits") && dom.contains("<svg"),
        "{dom}\n{log}"
    );
    let console_errors: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("CONSOLE")
                || l.contains("Content Security Policy")
                || l.contains("Refused to")
        })
        .collect();
    assert!(console_errors.is_empty(), "{console_errors:#?}");
}

#[tokio::test]
async fn the_purge_command_talks_to_the_admin_api() {
    let (_origin, proxy) = start().await;
    let admin = format!("http://{}", proxy.admin.unwrap());
    proxy.get("/a", &[]).await;
    let (ok, out) = run_cli_env(
        &["purge", "--admin", &admin, "--tag", "greeting"],
        &[("TESSERA_ADMIN_TOKEN", "wrong-token-but-long-enough")],
    );
    assert!(!ok && out.contains("401"), "{out}");
    assert!(proxy.get("/a", &[]).await.hit());

    let (ok, out) = run_cli(&[
        "purge", "--admin", &admin, "--token", TOKEN, "--tag", "greeting", "--soft",
    ]);
    assert!(ok, "{out}");
    let answer: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(
        (answer["objects"].as_u64(), answer["soft"].as_bool()),
        (Some(1), Some(true))
    );

    let (ok, out) = run_cli_env(
        &["purge", "--admin", &admin, "--url", "http://shop.test/a"],
        &[("TESSERA_ADMIN_TOKEN", TOKEN)],
    );
    assert!(ok && out.contains("\"objects\":1"), "{out}");
    assert!(!proxy.get("/a", &[]).await.hit());

    let (ok, out) = run_cli(&["purge", "--admin", &admin, "--token", TOKEN, "--all"]);
    assert!(ok && out.contains("\"objects\":1"), "{out}");
    let (ok, out) = run_cli(&[
        "purge", "--admin", &admin, "--token", TOKEN, "--url", "relative",
    ]);
    assert!(
        !ok && out.contains("422") && out.contains("absolute"),
        "{out}"
    );
    let (ok, out) = run_cli(&["purge", "--admin", &admin, "--token", TOKEN]);
    assert!(!ok && out.contains("--url"), "a target is required: {out}");
}

#[tokio::test]
async fn access_lines_are_json_with_the_request_id_when_asked() {
    let origin = origin().await;
    let toml = format!("{}\n[site.caching]\ndebug = true\n", config());
    let proxy = Launch::config(&origin, &toml)
        .arg("--log-format")
        .arg("json")
        .capture_logs()
        .start()
        .await;
    let got = proxy.get("/a?b=2&a=1", &[("x-request-id", "req-42")]).await;
    assert_eq!(got.h("x-request-id"), "req-42");
    let deadline = tokio::time::Instant::now() + crate::support::PATIENCE;
    let line = loop {
        let found = proxy
            .logs()
            .into_iter()
            .find(|l| l.contains("tessera::access"));
        if let Some(l) = found {
            break l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:#?}",
            proxy.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&line).expect(&line);
    let f = &v["fields"];
    assert_eq!(v["target"], "tessera::access");
    assert_eq!(f["request_id"], "req-42", "{line}");
    assert_eq!(f["site"], "shop");
    assert_eq!(f["status"], 200);
    assert_eq!(f["outcome"], "miss");
    assert_eq!(f["bytes"], 5);
    assert_eq!(f["target"], "/a?b=2&a=1");
    assert!(
        f["key"].as_str().is_some_and(|k| k.contains("shop.test/a")),
        "{line}"
    );
    for d in ["duration_ms", "head_ms", "origin_ms"] {
        assert!(f[d].as_f64().is_some_and(|ms| ms >= 0.0), "{d}: {line}");
    }
    // Every line is JSON, not just the access line.
    for l in proxy.logs() {
        assert!(serde_json::from_str::<serde_json::Value>(&l).is_ok(), "{l}");
    }
}
