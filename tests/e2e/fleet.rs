//! Fleet purges through a real Redis: a purge accepted by one node empties the object on
//! the others, also on a node whose link to Redis was cut while the purge happened.

use crate::support::admin::{call, TOKEN};
use crate::support::redis::{Redis, Relay};
use crate::support::{Launch, Origin, Proxy, Reply, PATIENCE};

fn node(name: &str, redis: &str) -> String {
    format!(
        "node_name = \"{name}\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin-token\"\n[fleet]\nredis = \"{redis}\"\n[[site]]\nname = \"s\"\nhosts = [\"shop.test\"]\norigin = \"{{origin}}\"\n"
    )
}

async fn origin() -> Origin {
    Origin::start(|seen, n| {
        Reply::ok(&format!("{} v{n}", seen.path_and_query)).header("cache-control", "max-age=600")
    })
    .await
}

/// Asks `proxy` for `path` until it is not a hit any more (bounded by PATIENCE).
async fn until_purged(proxy: &Proxy, path: &str) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = proxy.get(path, &[]).await;
        if !got.hit() {
            return got.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} was never purged on this node"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Asserts that `proxy` emptied its cache once for want of knowing what it missed.
async fn flushed_once(proxy: &Proxy) {
    let metrics = call(proxy.admin.unwrap(), "GET", "/metrics", Some(TOKEN), "")
        .await
        .body;
    assert!(
        metrics.contains("tessera_fleet_events_total{event=\"flushed_behind\"} 1"),
        "{metrics}"
    );
}

async fn purge_on(proxy: &Proxy, url: &str) -> serde_json::Value {
    let got = call(
        proxy.admin.unwrap(),
        "POST",
        "/purge",
        Some(TOKEN),
        &format!("{{\"url\":\"{url}\"}}"),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    serde_json::from_str(&got.body).unwrap()
}

#[tokio::test]
async fn a_purge_on_one_edge_empties_the_object_on_the_other_and_the_shield() {
    let redis = Redis::start().await;
    let origin = origin().await;
    let shield = Launch::config(&origin, &node("shield", &redis.url()))
        .start()
        .await;
    let edge = |name: &str| {
        let shields = format!("shields = [\"http://{}\"]\n", shield.addr);
        Launch::config(&origin, &(node(name, &redis.url()) + &shields))
    };
    let a = edge("edge-a").start().await;
    let b = edge("edge-b").start().await;
    for p in [&a, &b] {
        p.get("/p", &[]).await;
        assert!(p.get("/p", &[]).await.hit());
    }
    assert_eq!(origin.count(), 1, "the shield fetched once for both edges");
    let answer = purge_on(&a, "http://shop.test/p").await;
    assert!(answer["fleet"]["stream_id"].is_string(), "{answer}");
    // The shield and b get it through the stream; a purged it itself. (The shield is
    // asked first: an edge that refetched from a shield that has not applied the purge yet
    // would keep the old copy — see README, "Running a fleet".)
    until_purged(&shield, "/p").await;
    until_purged(&b, "/p").await;
    assert!(!a.get("/p", &[]).await.hit());
    assert_eq!(origin.count(), 2, "refetched once, through the shield");
    // Unrelated objects stay.
    b.get("/q", &[]).await;
    assert!(b.get("/q", &[]).await.hit());
}

/// Redis, an origin, edge a on Redis and edge b behind a relay the test can cut (`cut`:
/// already before b starts).
async fn relayed_pair(cut: bool) -> (Redis, Relay, Origin, Proxy, Proxy) {
    let redis = Redis::start().await;
    let relay = Relay::start(redis.addr).await;
    let origin = origin().await;
    if cut {
        relay.cut().await;
    }
    let a = Launch::config(&origin, &node("edge-a", &redis.url()))
        .start()
        .await;
    let b = Launch::config(&origin, &node("edge-b", &format!("redis://{}", relay.addr)))
        .start()
        .await;
    (redis, relay, origin, a, b)
}

#[tokio::test]
async fn a_node_cut_off_from_redis_applies_the_purge_when_it_is_back() {
    let (_redis, relay, _origin, a, b) = relayed_pair(false).await;
    b.get("/p", &[]).await;
    assert!(b.get("/p", &[]).await.hit());
    // b's link to the stream is cut; the purge happens meanwhile.
    relay.cut().await;
    purge_on(&a, "http://shop.test/p").await;
    assert!(b.get("/p", &[]).await.hit(), "b cannot know yet");
    relay.restore();
    // b reconnects and replays from the last entry it saw.
    until_purged(&b, "/p").await;
}

#[tokio::test]
async fn without_redis_the_purge_says_it_stayed_on_this_node() {
    let origin = origin().await;
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = Launch::config(
        &origin,
        &node("edge-a", &format!("redis://127.0.0.1:{port}")),
    )
    .start()
    .await;
    a.get("/p", &[]).await;
    let got = call(
        a.admin.unwrap(),
        "POST",
        "/purge",
        Some(TOKEN),
        "{\"url\":\"http://shop.test/p\"}",
    )
    .await;
    assert_eq!(got.status, 503, "{}", got.body);
    assert!(
        got.body.contains("applied on this node only"),
        "{}",
        got.body
    );
    assert!(!a.get("/p", &[]).await.hit(), "applied here all the same");
    // Requests are answered throughout.
    assert_eq!(a.get("/q", &[]).await.status, 200);
}

#[tokio::test]
async fn a_node_the_stream_was_trimmed_past_empties_its_cache_and_says_so() {
    let (redis, relay, _origin, a, b) = relayed_pair(false).await;
    // b sees one purge, so it has a last entry to come back to.
    b.get("/seen", &[]).await;
    purge_on(&a, "http://shop.test/seen").await;
    until_purged(&b, "/seen").await;
    b.get("/kept", &[]).await;
    assert!(b.get("/kept", &[]).await.hit());
    // Cut off, b misses a purge and the stream is trimmed past its last entry.
    relay.cut().await;
    purge_on(&a, "http://shop.test/elsewhere").await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("XTRIM")
        .arg("tessera:purges")
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut con)
        .await
        .unwrap();
    purge_on(&a, "http://shop.test/later").await;
    relay.restore();
    // b cannot know what it missed: everything goes.
    until_purged(&b, "/kept").await;
    flushed_once(&b).await;
}

#[tokio::test]
async fn nodes_with_the_same_name_still_purge_each_other() {
    let redis = Redis::start().await;
    let origin = origin().await;
    // HOSTNAME unset everywhere: every node is called the same.
    let a = Launch::config(&origin, &node("tessera", &redis.url()))
        .start()
        .await;
    let b = Launch::config(&origin, &node("tessera", &redis.url()))
        .start()
        .await;
    b.get("/p", &[]).await;
    assert!(b.get("/p", &[]).await.hit());
    purge_on(&a, "http://shop.test/p").await;
    until_purged(&b, "/p").await;
}

#[tokio::test]
async fn a_node_that_caches_before_it_first_reaches_redis_applies_the_purges_made_meanwhile() {
    // b starts cut off: it serves (and caches) before it has ever read the stream.
    let (_redis, relay, _origin, a, b) = relayed_pair(true).await;
    b.get("/p", &[]).await;
    assert!(b.get("/p", &[]).await.hit());
    purge_on(&a, "http://shop.test/p").await;
    relay.restore();
    // Its first read starts from when it started, not from the stream's end.
    until_purged(&b, "/p").await;
}

/// A node on Redis with a disk tier at `disk`.
fn disk_node(name: &str, redis: &str, disk: &std::path::Path) -> String {
    node(name, redis)
        + &format!(
            "[cache]\ndisk = {{ path = \"{}\", size = \"64MiB\" }}\n",
            disk.display()
        )
}

/// Waits until the disk tier at `disk` has recorded a stream position.
async fn position_saved(disk: &std::path::Path) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !disk.join("fleet-position").exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no stream position was saved"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_disk_cache_resumes_the_stream_where_it_left_off_after_a_restart() {
    let redis = Redis::start().await;
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let a = Launch::config(&origin, &node("edge-a", &redis.url()))
        .start()
        .await;
    let toml = disk_node("edge-b", &redis.url(), &disk);
    let b = crate::disk::start(&origin, &toml).await;
    for path in ["/p", "/q"] {
        b.get(path, &[]).await;
    }
    position_saved(&disk).await;
    crate::disk::stop(b).await;
    // Purged while b is down.
    purge_on(&a, "http://shop.test/p").await;
    let b = crate::disk::start(&origin, &toml).await;
    until_purged(&b, "/p").await;
    assert!(
        b.get("/q", &[]).await.hit(),
        "what was not purged stays (the cache was not emptied)"
    );
}

#[tokio::test]
async fn a_disk_cache_with_no_record_of_the_stream_is_emptied_before_it_serves() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    // Filled by a node outside any fleet: what was purged meanwhile is unknown.
    let alone = format!(
        "[cache]\ndisk = {{ path = \"{}\", size = \"64MiB\" }}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin-token\"\n[[site]]\nname = \"s\"\nhosts = [\"shop.test\"]\norigin = \"{{origin}}\"\n",
        disk.display()
    );
    let b = crate::disk::start(&origin, &alone).await;
    b.get("/q", &[]).await;
    assert!(b.get("/q", &[]).await.hit());
    crate::disk::stop(b).await;
    // It joins a fleet whose Redis does not answer (nothing listens on this port): the
    // cache is emptied all the same, before the first request.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("redis://127.0.0.1:{port}");
    let b = crate::disk::start(&origin, &disk_node("edge-b", &dead, &disk)).await;
    assert!(!b.get("/q", &[]).await.hit(), "served from an unknown past");
    flushed_once(&b).await;
}
