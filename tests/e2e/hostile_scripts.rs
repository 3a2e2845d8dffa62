//! Scripts that return hostile output: oversized, framing-breaking, invalid. Each hook
//! that does counts as failed, and the request fails closed.

use crate::support::{guest, raw, Origin, Proxy, Reply, PATIENCE};

fn site(policy: &str) -> String {
    format!(
        "[[site]]\nname = \"h\"\norigin = \"{{origin}}\"\nscript = \"{}\"\non_guest_error = \"{policy}\"\n",
        guest("tests/guests/hostile").display()
    )
}

fn echo() -> impl Fn(&crate::support::Seen, usize) -> Reply + Send + Sync + 'static {
    |s, n| {
        Reply::ok(&format!("origin {} #{n}", s.path_and_query))
            .header("cache-control", "max-age=60")
    }
}

#[tokio::test]
async fn a_key_over_the_cap_or_not_utf8_passes_the_request_uncached() {
    let origin = Origin::start(echo()).await;
    let proxy = Proxy::with_config(&origin, &site("fail")).await;
    for path in ["/giant-key", "/bad-utf8", "/log-flood", "/clock-flood"] {
        for _ in 0..2 {
            let got = proxy.get(path, &[]).await;
            assert_eq!(got.status, 200, "{path}");
            assert!(got.body.starts_with(&format!("origin {path}")), "{path}");
            let cs = got.cache_status();
            assert!(
                cs.contains("fwd=bypass") && cs.contains("script-error; cache-key"),
                "{path}: {cs}"
            );
        }
    }
    // Each went to the origin twice: nothing was stored under any key.
    assert_eq!(origin.count(), 8);
}

#[tokio::test]
async fn request_edits_that_break_framing_or_caps_fail_the_request_before_the_origin() {
    let origin = Origin::start(echo()).await;
    let proxy = Proxy::with_config(&origin, &site("fail")).await;
    for path in [
        "/many-edits",
        "/framing-req?h=content-length",
        "/framing-req?h=transfer-encoding",
        "/framing-req?h=host",
        "/framing-req?h=connection",
        "/framing-req?h=upgrade",
        "/status?s=100",
        "/status?s=101",
        "/status?s=199",
        "/status?s=600",
        "/status?s=0",
        "/big-body",
        "/synthetic-framing",
        "/rate-limit-giant-key",
        "/rate-limit-no-window",
        "/pass-framing",
    ] {
        let got = proxy.get(path, &[]).await;
        assert_eq!(got.status, 503, "{path}: {}", got.body);
        assert!(
            got.cache_status().contains("script-error; on-request;"),
            "{path}: {}",
            got.cache_status()
        );
    }
    assert_eq!(origin.count(), 0);
}

#[tokio::test]
async fn with_fallback_refused_request_edits_are_dropped_whole() {
    let origin = Origin::start(echo()).await;
    let proxy = Proxy::with_config(&origin, &site("fallback")).await;
    for h in [
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
        "upgrade",
    ] {
        let got = proxy.get(&format!("/framing-req?h={h}"), &[]).await;
        assert_eq!(got.status, 200, "{h}");
    }
    proxy.get("/many-edits", &[]).await;
    for s in origin.seen() {
        assert_eq!(
            s.headers["host"], "shop.test",
            "the host decides where requests go"
        );
        assert!(!s.headers.contains_key("upgrade"));
        assert!(!s.headers.contains_key("transfer-encoding"));
        assert!(
            !s.headers.contains_key("x-e0"),
            "none of 10,000 edits applied"
        );
    }
}

#[tokio::test]
async fn a_chain_that_fails_with_fallback_undoes_the_edits_of_the_scripts_before() {
    // `stateless` sets `x-drawn` on the request, then `hostile` refuses (a Host edit). An
    // earlier script's edit may be meant for a request its `pass` kept out of the cache
    // (jwt-gate's `x-user-id`): with the chain failed, the request goes on as it arrived.
    let origin = Origin::start(echo()).await;
    let config = format!(
        "[[site]]\nname = \"h\"\norigin = \"{{origin}}\"\nscript = [\"{}\", \"{}\"]\non_guest_error = \"fallback\"\n",
        guest("tests/guests/stateless").display(),
        guest("tests/guests/hostile").display()
    );
    let proxy = Proxy::with_config(&origin, &config).await;
    let got = proxy.get("/framing-req?h=host", &[]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let got = proxy.get("/fine", &[]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let seen = origin.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        !seen[0].headers.contains_key("x-drawn"),
        "the failed chain's earlier edit reached the origin"
    );
    assert_eq!(seen[0].headers["host"], "shop.test");
    assert!(
        seen[1].headers.contains_key("x-drawn"),
        "a chain that succeeds keeps its edits"
    );
}

#[tokio::test]
async fn response_edits_that_break_framing_or_inject_fields_never_reach_the_client() {
    let origin = Origin::start(echo()).await;
    let proxy = Proxy::with_config(&origin, &site("fail")).await;
    for path in [
        "/framing-resp?h=content-length",
        "/framing-resp?h=transfer-encoding",
        "/framing-resp?h=connection",
        "/crlf",
    ] {
        let got = proxy.get(path, &[]).await;
        assert_eq!(got.status, 503, "{path}");
        assert!(got.h("set-cookie").is_empty(), "{path}");
    }
    // With fallback the edits are dropped, and the keep-alive connection stays in step:
    // a second request on it gets its own, whole answer.
    let lenient = Proxy::with_config(&origin, &site("fallback")).await;
    let two = b"GET /framing-resp?h=content-length HTTP/1.1\r\nHost: shop.test\r\n\r\nGET /crlf HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n";
    let got = raw(lenient.addr, two, PATIENCE).await;
    assert_eq!(got.matches("HTTP/1.1 200").count(), 2, "{got}");
    assert!(
        got.contains("origin /framing-resp?h=content-length"),
        "{got}"
    );
    assert!(got.contains("origin /crlf"), "{got}");
    assert!(!got.to_ascii_lowercase().contains("pwned"), "{got}");
}

#[tokio::test]
async fn a_decision_with_too_many_tags_is_not_stored_but_still_answered() {
    let origin = Origin::start(echo()).await;
    let proxy = Proxy::with_config(&origin, &site("fail")).await;
    for n in 1..=2 {
        let got = proxy.get("/many-tags", &[]).await;
        assert_eq!(got.body, format!("origin /many-tags #{n}"));
        assert!(
            got.cache_status()
                .contains("script-error; cache-policy; output"),
            "{}",
            got.cache_status()
        );
    }
}

#[tokio::test]
async fn the_proxy_stays_healthy_after_a_burst_of_hostile_requests() {
    let origin = Origin::start(echo()).await;
    let mut proxy = Proxy::with_config(&origin, &site("fail")).await;
    let addr = proxy.addr;
    let paths = [
        "/giant-key",
        "/many-edits",
        "/big-body",
        "/crlf",
        "/bad-utf8",
        "/fine",
    ];
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let path = paths[i % paths.len()];
            tokio::spawn(async move { (path, crate::support::send(addr, "GET", path, &[]).await) })
        })
        .collect();
    for t in tasks {
        let (path, got) = tokio::time::timeout(PATIENCE, t).await.unwrap().unwrap();
        assert!(
            got.status == 200 || got.status == 503,
            "{path}: {}",
            got.status
        );
    }
    assert!(proxy.alive());
    let fine = proxy.get("/fine", &[]).await;
    assert_eq!(fine.status, 200);
}
