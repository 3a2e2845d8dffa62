//! The memory bench's `http` mode: objects filled through the library server from a real
//! origin on loopback and each hit once, so that what the fill path really keeps is counted
//! (hyper's buffers, the loan a hit makes, the allocator's churn), not only what an entry
//! built by hand costs.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tessera::cache::store::Lookup;
use tessera::cache::StoreKey;
use tessera::config::{Config, Site};

/// Connections the client spreads its requests over (the proxy's origin pool follows).
const CLIENTS: usize = 8;

/// An origin answering every path with 100 bytes and the four fields of `headers()` in
/// `memory.rs` it sets itself (hyper adds `date` and `content-length`).
async fn origin() -> SocketAddr {
    super::origin::start(|req| {
        let id = req.uri().path().rsplit('/').next().unwrap_or("");
        let etag = format!("\"{:x}\"", id.parse::<u64>().unwrap_or(0));
        hyper::Response::builder()
            .header("content-type", "application/json")
            .header("cache-control", "max-age=300")
            .header("etag", etag)
            .header("last-modified", "Mon, 23 Nov 2026 08:00:00 GMT")
            .body(Full::new(Bytes::from_static(&[b'x'; 100])))
            .unwrap()
    })
    .await
}

/// Asks for objects `range` over `CLIENTS` kept-alive connections.
async fn ask(proxy: SocketAddr, range: std::ops::Range<usize>) {
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let range = range.clone();
        tasks.push(tokio::spawn(async move {
            let s = tokio::net::TcpStream::connect(proxy).await.unwrap();
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                .await
                .unwrap();
            tokio::spawn(conn);
            for i in range.filter(|i| i % CLIENTS == c) {
                tx.ready().await.unwrap();
                let req = hyper::Request::builder()
                    .uri(format!("/products/{i}?a=1"))
                    .header("host", "shop.example")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let resp = tx.send_request(req).await.unwrap();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body.len(), 100);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Fills `n` objects through the server, hits each once, and prints what each costs.
pub fn run(n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let running = rt.block_on(async {
        let o = origin().await;
        let mut config = Config::quick(
            "127.0.0.1:0".parse().unwrap(),
            Site::quick(format!("http://{o}").parse().unwrap(), vec![]),
        );
        // Room for every object: the bench measures bookkeeping, not eviction.
        config.cache.max_bytes = 16 << 30;
        let shared = tessera::proxy::build(config, tessera::clock::Clock::system())
            .await
            .unwrap();
        tessera::proxy::serve(shared).await.unwrap()
    });
    let proxy = running.addr;
    // Warm connections, pools and the allocator's arenas so that their fixed costs are
    // not counted; these objects are not counted either.
    let warm = 2_000;
    rt.block_on(ask(proxy, 0..warm));
    rt.block_on(ask(proxy, 0..warm));
    let before = super::rss();
    let started = Instant::now();
    rt.block_on(ask(proxy, warm..warm + n));
    let filled = started.elapsed();
    rt.block_on(ask(proxy, warm..warm + n));
    let grown = super::rss().saturating_sub(before);
    let store = &running.shared.store;
    let (mut payload, mut keys, mut found) = (0usize, 0usize, 0usize);
    for i in warm..warm + n {
        let text = tessera::cache::key::default_key(
            "shop.example",
            &format!("/products/{i}"),
            Some("a=1"),
        );
        let key = StoreKey::new("default", &text);
        if let Lookup::Found(e) = store.lookup(&key, &HeaderMap::new()) {
            payload += e.body().len() + e.headers().text_len();
            keys += key.as_str().len();
            found += 1;
        }
    }
    println!(
        "objects stored:           {found} of {n} filled over HTTP in {filled:.2?} (then each hit once)"
    );
    super::report(grown, n, payload, keys);
}
