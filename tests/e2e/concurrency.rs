//! Ten thousand scripted requests at once against a slow origin: every one answered right.

use std::time::Duration;

use crate::support::{guest, send, Origin, Proxy, Reply, PATIENCE};

/// Lets this test process hold ten thousand client sockets.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on our own process with a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_scripted_requests_against_a_slow_origin_are_all_answered() {
    const REQUESTS: usize = 10_000;
    const PATHS: usize = 50;
    raise_fd_limit();
    let origin = Origin::start(|s, _| {
        let bucket = s.headers["x-ab-bucket"].to_str().unwrap().to_owned();
        Reply::ok(&format!("{} for {}", bucket, s.path_and_query))
            .header("cache-control", "max-age=600")
            .delay(Duration::from_millis(500))
    })
    .await;
    // ab-test runs three hooks per request; the pool has its default 256 instances.
    let proxy = Proxy::quick(&origin, &[guest("guest-examples/ab-test")]).await;
    let addr = proxy.addr;
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|i| {
            tokio::spawn(async move {
                let bucket = if (i / PATHS).is_multiple_of(2) {
                    "A"
                } else {
                    "B"
                };
                let path = format!("/item/{}", i % PATHS);
                let cookie = format!("ab={bucket}");
                let got = send(addr, "GET", &path, &[("cookie", &cookie)]).await;
                (bucket, path, got)
            })
        })
        .collect();
    let mut answered = 0;
    for t in tasks {
        let (bucket, path, got) = tokio::time::timeout(PATIENCE * 3, t)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.status, 200, "{path}: {}", got.body);
        assert_eq!(got.body, format!("{bucket} for {path}"));
        assert_eq!(got.h("x-ab-bucket"), bucket);
        answered += 1;
    }
    assert_eq!(answered, REQUESTS);
    // One fetch per path and bucket: the rest waited for it or hit the stored copy.
    assert_eq!(origin.count(), PATHS * 2);
}
