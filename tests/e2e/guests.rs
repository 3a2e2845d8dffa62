//! Scripts that fail, loop or need state: failures are contained and fail closed, instances
//! never run out, and a looping script cannot stall the server.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::support::{guest, origin_reaches, raw, send, Origin, Proxy, Reply, PATIENCE};

fn misbehave(extra: &str) -> String {
    format!(
        "[[site]]\nname = \"faulty\"\norigin = \"{{origin}}\"\nscript = \"{}\"\n{extra}\n[site.limits]\ncpu_ms = 50\nmemory_mib = 16\n",
        guest("tests/guests/misbehave").display()
    )
}

fn echo(s: &crate::support::Seen, n: usize) -> Reply {
    Reply::ok(&format!("origin {} #{n}", s.path_and_query)).header("cache-control", "max-age=60")
}

#[tokio::test]
async fn a_failing_cache_key_passes_the_request_uncached_and_never_merges_entries() {
    let origin = Origin::start(echo).await;
    // on_response may fall back here: a looping cache_key spends the request's whole
    // script budget, and on_response (which this script implements) could not run after it.
    let mut proxy = Proxy::with_config(
        &origin,
        &misbehave("on_guest_error = { on_response = \"fallback\" }"),
    )
    .await;
    for (path, kind) in [
        ("/loop", "timeout"),
        ("/alloc", "memory"),
        ("/trap", "trap"),
    ] {
        for _ in 0..2 {
            let got = proxy.get(path, &[]).await;
            assert_eq!(got.status, 200, "{path}");
            assert!(got.body.starts_with(&format!("origin {path}")), "{path}");
            let cs = got.cache_status();
            assert!(
                cs.contains("fwd=bypass")
                    && cs.contains(&format!("script-error; cache-key; {kind}")),
                "{path}: {cs}"
            );
        }
        assert!(proxy.alive(), "{path}");
    }
    // No default key stood in for the failed ones: each request went to the origin.
    assert_eq!(origin.count(), 6);
    let fine = proxy.get("/fine", &[]).await;
    assert_eq!(fine.body, "origin /fine #7");
    assert!(proxy.get("/fine", &[]).await.hit());
    assert_eq!(proxy.get("/respond", &[]).await.body, "synthetic\n");
    assert_eq!(origin.count(), 7);
}

#[tokio::test]
async fn a_failing_on_response_answers_503_unless_the_site_opts_into_fallback() {
    let origin = Origin::start(echo).await;
    let strict = Proxy::with_config(&origin, &misbehave("")).await;
    // A loop in cache_key spent the budget on_response needed: fail closed.
    let spent = strict.get("/loop", &[]).await;
    assert_eq!(spent.status, 503);
    assert!(
        spent.cache_status().contains("on-response; timeout"),
        "{}",
        spent.cache_status()
    );
    let got = strict.get("/trap-later", &[]).await;
    assert_eq!(got.status, 503, "{}", got.body);
    assert!(
        got.cache_status()
            .contains("script-error; on-response; trap"),
        "{}",
        got.cache_status()
    );
    let lenient = Proxy::with_config(
        &origin,
        &misbehave("on_guest_error = { on_response = \"fallback\" }"),
    )
    .await;
    let got = lenient.get("/trap-later", &[]).await;
    assert_eq!(got.status, 200);
    assert!(got.body.starts_with("origin /trap-later"));
}

#[tokio::test]
async fn state_kept_between_hooks_survives_an_origin_wait_only_with_keep_state() {
    let origin = Origin::start(echo).await;
    for (fixture, keeps) in [
        ("tests/guests/stateful", true),
        ("tests/guests/stateless", false),
    ] {
        let proxy = Proxy::quick(&origin, &[guest(fixture)]).await;
        let path = format!("/{}", fixture.rsplit('/').next().unwrap());
        let miss = proxy.get(&path, &[]).await;
        let drawn = origin.seen().last().unwrap().headers["x-drawn"]
            .to_str()
            .unwrap()
            .to_owned();
        if keeps {
            assert_eq!(
                miss.h("x-kept"),
                drawn,
                "{fixture}: same instance across the fetch"
            );
        } else {
            assert_eq!(
                miss.h("x-kept"),
                "lost",
                "{fixture}: released while waiting"
            );
        }
        // A hit never waits on the origin, so one instance serves the whole request.
        let hit = proxy.get(&path, &[]).await;
        assert!(hit.hit());
        assert_ne!(hit.h("x-kept"), "lost", "{fixture}");
    }
}

fn pool(instances: u32, max_queued: u32, script: &str) -> String {
    format!(
        "[scripts]\ninstances = {instances}\nmax_queued = {max_queued}\nqueue_timeout_ms = 60000\n[[site]]\nname = \"p\"\norigin = \"{{origin}}\"\nscript = \"{}\"\n",
        guest(script).display()
    )
}

#[tokio::test]
async fn without_a_free_instance_a_request_waits_in_line_or_gets_503_with_retry_after() {
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let origin = Origin::start(move |s, n| echo(s, n).gate(&g)).await;
    // keep-state holds the only instance while the first request waits on the origin.
    let full = Proxy::with_config(&origin, &pool(1, 0, "tests/guests/stateful")).await;
    let addr = full.addr;
    let first = tokio::spawn(async move { send(addr, "GET", "/a", &[]).await });
    assert_eq!(origin_reaches(&origin, 1).await, 1);
    let refused = full.get("/b", &[]).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.h("retry-after"), "1");
    assert!(
        refused.cache_status().contains("busy"),
        "{}",
        refused.cache_status()
    );
    gate.add_permits(1);
    assert_eq!(first.await.unwrap().status, 200);

    let queued = Proxy::with_config(&origin, &pool(1, 10, "tests/guests/stateful")).await;
    let addr = queued.addr;
    let first = tokio::spawn(async move { send(addr, "GET", "/c", &[]).await });
    assert_eq!(origin_reaches(&origin, 2).await, 2);
    let second = tokio::spawn(async move { send(addr, "GET", "/d", &[]).await });
    gate.add_permits(2);
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(second.await.unwrap().status, 200, "waited for the instance");
}

#[tokio::test]
async fn a_released_instance_lets_many_slow_requests_through_a_tiny_pool() {
    // Two instances, stateless scripts: each request holds one only while its hooks run,
    // never across the origin wait, so forty slow requests are at the origin at once.
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let origin = Origin::start(move |s, n| echo(s, n).gate(&g)).await;
    let proxy = Proxy::with_config(&origin, &pool(2, 1000, "guest-examples/ab-test")).await;
    let addr = proxy.addr;
    let tasks: Vec<_> = (0..40)
        .map(|i| tokio::spawn(async move { send(addr, "GET", &format!("/p{i}"), &[]).await }))
        .collect();
    assert_eq!(origin_reaches(&origin, 40).await, 40);
    gate.add_permits(40);
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.status, 200, "{}: {}", got.body, got.cache_status());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn looping_scripts_do_not_stall_other_requests() {
    let origin = Origin::start(echo).await;
    let proxy = Proxy::with_config(
        &origin,
        &misbehave("on_guest_error = { on_response = \"fallback\" }")
            .replace("cpu_ms = 50", "cpu_ms = 300"),
    )
    .await;
    let addr = proxy.addr;
    let loops: Vec<_> = (0..24)
        .map(|_| tokio::spawn(async move { send(addr, "GET", "/loop", &[]).await }))
        .collect();
    // While two dozen scripts spin, ordinary requests (also scripted) are answered, and a
    // script doing real work within its budget is not cut short by the others' time.
    for i in 0..20 {
        let got = send(addr, "GET", &format!("/fine{i}"), &[]).await;
        assert_eq!(got.status, 200);
        assert!(got.body.starts_with(&format!("origin /fine{i}")));
        let work = send(addr, "GET", &format!("/work?i={i}"), &[]).await;
        assert!(
            !work.cache_status().contains("script-error"),
            "{}",
            work.cache_status()
        );
    }
    for t in loops {
        let got = tokio::time::timeout(PATIENCE, t).await.unwrap().unwrap();
        assert!(
            got.cache_status().contains("cache-key; timeout"),
            "{}",
            got.cache_status()
        );
    }
}

#[tokio::test]
async fn a_user_agent_with_a_byte_outside_ascii_is_still_seen_by_bot_block() {
    let origin = Origin::start(echo).await;
    let proxy = Proxy::quick(&origin, &[guest("guest-examples/bot-block")]).await;
    let req = b"GET / HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: sqlmap/1.7\x80\r\nConnection: close\r\n\r\n";
    let got = raw(proxy.addr, req, PATIENCE).await;
    assert!(got.starts_with("HTTP/1.1 403"), "{got}");
    assert_eq!(origin.count(), 0);
}
