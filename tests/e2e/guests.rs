//! Fault containment: scripts that loop, allocate without end or trap never take the proxy down.

use crate::support::{guest, Origin, Proxy, Reply};

fn config(policy: &str) -> String {
    format!(
        "[[site]]\nname = \"faulty\"\norigin = \"{{origin}}\"\nscript = \"{}\"\non_guest_error = \"{policy}\"\n[site.limits]\ncpu_ms = 50\nmemory_mib = 16\n",
        guest("tests/guests/misbehave").display()
    )
}

#[tokio::test]
async fn with_fallback_a_failing_script_is_contained_and_defaults_apply() {
    let origin = Origin::start(|s, _| {
        Reply::ok(&format!("origin {}", s.path_and_query)).header("cache-control", "max-age=60")
    })
    .await;
    let mut proxy = Proxy::with_config(&origin, &config("fallback")).await;
    for path in ["/loop", "/alloc", "/trap", "/trap-later"] {
        for _ in 0..2 {
            let got = proxy.get(path, &[]).await;
            assert_eq!(
                (got.status, got.body.clone()),
                (200, format!("origin {path}")),
                "{path}"
            );
        }
        assert!(proxy.alive(), "{path}");
    }
    let fine = proxy.get("/fine", &[]).await;
    assert_eq!((fine.status, fine.body.as_str()), (200, "origin /fine"));
    let synthetic = proxy.get("/respond", &[]).await;
    assert_eq!(synthetic.body, "synthetic\n");
    // The trapping hooks fell back to the default key, so each path was fetched once.
    assert_eq!(origin.count(), 5);
}

#[tokio::test]
async fn with_fail_a_failing_script_answers_503_and_later_requests_are_fine() {
    let origin = Origin::start(|s, _| Reply::ok(&format!("origin {}", s.path_and_query))).await;
    let mut proxy = Proxy::with_config(&origin, &config("fail")).await;
    for path in ["/loop", "/alloc", "/trap", "/trap-later"] {
        let got = proxy.get(path, &[]).await;
        assert_eq!(got.status, 503, "{path}: {}", got.body);
        assert!(
            got.cache_status().contains("script-error"),
            "{}",
            got.cache_status()
        );
        assert!(proxy.alive());
    }
    let fine = proxy.get("/fine", &[]).await;
    assert_eq!((fine.status, fine.body.as_str()), (200, "origin /fine"));
    // Requests whose script failed before the cache lookup never reached the origin.
    assert_eq!(
        origin
            .seen()
            .iter()
            .filter(|s| s.path_and_query != "/trap-later" && s.path_and_query != "/fine")
            .count(),
        0
    );
}
