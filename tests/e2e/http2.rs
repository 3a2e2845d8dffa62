//! HTTP/2 to clients in cleartext (prior knowledge) through the real binary: streams
//! multiplexed on one connection, hits and misses side by side, a client's stream reset,
//! and a rapid-reset flood.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::support::{origin_reaches, send, Origin, Proxy, Reply, PATIENCE};

/// One HTTP/2 connection (prior knowledge, no upgrade dance).
async fn h2(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

/// GET on an HTTP/2 connection: (status, x-cache, body).
async fn get(sender: &SendRequest<Empty<Bytes>>, path: &str) -> (u16, String, String) {
    let req = Request::get(format!("http://shop.test{path}"))
        .body(Empty::new())
        .unwrap();
    let resp = tokio::time::timeout(PATIENCE, sender.clone().send_request(req))
        .await
        .expect("answer in time")
        .expect("a response");
    assert_eq!(resp.version(), Version::HTTP_2);
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("x-cache")
        .map_or(String::new(), |v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, cache, String::from_utf8_lossy(&body).into_owned())
}

fn cacheable(seen: &crate::support::Seen, _: usize) -> Reply {
    Reply::ok(&format!("page {}", seen.path_and_query)).header("cache-control", "max-age=600")
}

#[tokio::test]
async fn streams_on_one_connection_get_hits_and_misses_side_by_side() {
    let origin = Origin::start(cacheable).await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let conn = h2(proxy.addr).await;
    assert_eq!(
        get(&conn, "/warm").await,
        (200, "MISS".into(), "page /warm".into())
    );
    // 20 streams at once on the same connection: 10 hits of /warm, 10 misses of their own.
    let mut streams = Vec::new();
    for i in 0..20 {
        let conn = conn.clone();
        let path = if i % 2 == 0 {
            "/warm".to_owned()
        } else {
            format!("/cold/{i}")
        };
        streams.push(tokio::spawn(async move {
            (path.clone(), get(&conn, &path).await)
        }));
    }
    let (mut hits, mut misses) = (0, 0);
    for s in streams {
        let (path, (status, cache, body)) = s.await.unwrap();
        assert_eq!((status, body), (200, format!("page {path}")));
        match cache.as_str() {
            "HIT" => hits += 1,
            _ => misses += 1,
        }
    }
    assert_eq!((hits, misses), (10, 10));
    assert_eq!(origin.count(), 11);
}

#[tokio::test]
async fn a_stream_the_client_resets_leaves_the_others_and_the_cache_intact() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let origin = Origin::start({
        let gate = gate.clone();
        move |seen, n| match seen.path_and_query.as_str() {
            "/slow" => Reply::ok("slow, whole")
                .header("cache-control", "max-age=600")
                .gate(&gate),
            _ => cacheable(seen, n),
        }
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let conn = h2(proxy.addr).await;
    let abandoned = {
        let conn = conn.clone();
        tokio::spawn(async move { get(&conn, "/slow").await })
    };
    assert_eq!(origin_reaches(&origin, 1).await, 1);
    // The client gives up on that stream: hyper sends RST_STREAM(CANCEL).
    abandoned.abort();
    let _ = abandoned.await;
    assert_eq!(
        get(&conn, "/a").await,
        (200, "MISS".into(), "page /a".into())
    );
    assert_eq!(get(&conn, "/a").await.1, "HIT");
    // Enough permits for the abandoned fetch and any new ones.
    gate.add_permits(10);
    // Whatever happened to the fetch the reset left behind, nobody gets a cut body.
    let got = send(proxy.addr, "GET", "/slow", &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, "slow, whole"));
    let again = get(&conn, "/slow").await;
    assert_eq!((again.0, again.2.as_str()), (200, "slow, whole"));
}

#[tokio::test]
async fn a_rapid_reset_flood_does_not_hurt_other_clients() {
    let origin = Origin::start(cacheable).await;
    let proxy = Proxy::quick(&origin, &[]).await;
    assert_eq!(send(proxy.addr, "GET", "/a", &[]).await.status, 200);

    // CVE-2023-44487: open a stream and reset it at once, 5,000 times, on one connection.
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(stream).await.expect("h2 handshake");
    let driver = tokio::spawn(conn);
    let mut client = Some(client);
    let mut sent = 0;
    for _ in 0..5_000 {
        let Some(c) = client.take() else { break };
        let Ok(Ok(mut c)) = tokio::time::timeout(PATIENCE, c.ready()).await else {
            break;
        };
        let req = Request::get("http://shop.test/a").body(()).unwrap();
        let Ok((_, mut body)) = c.send_request(req, true) else {
            break;
        };
        body.send_reset(h2::Reason::CANCEL);
        sent += 1;
        client = Some(c);
    }
    assert!(sent > 0);
    drop(client);
    let _ = tokio::time::timeout(PATIENCE, driver).await;

    // Other clients are served as before, and the origin saw no flood.
    let got = send(proxy.addr, "GET", "/a", &[]).await;
    assert_eq!((got.status, got.hit()), (200, true));
    let conn = h2(proxy.addr).await;
    assert_eq!(get(&conn, "/a").await.0, 200);
    assert!(origin.count() <= 2, "origin saw {}", origin.count());
}
