//! A cache hit through the library server over a kept-alive loopback connection, with and
//! without a script, beside a direct request to the origin for scale; and what a hit pays to
//! turn a stored head into the map it sends, from the compact block and from a kept map.

use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tessera::config::{Config, Site};

#[path = "support/origin.rs"]
mod origin;

async fn origin() -> SocketAddr {
    origin::start(|_req| {
        hyper::Response::builder()
            .header("cache-control", "max-age=3600")
            .header("content-type", "text/html")
            .body(Full::new(Bytes::from(vec![b'x'; 4096])))
            .unwrap()
    })
    .await
}

async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    tx
}

async fn get(tx: &mut SendRequest<Full<Bytes>>, path: &str) -> usize {
    tx.ready().await.unwrap();
    let req = hyper::Request::builder()
        .uri(path)
        .header("host", "bench.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    resp.into_body().collect().await.unwrap().to_bytes().len()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target").join("test-guests");
    let key_wasm = tessera::builder::build_guest(
        &root.join("guest-examples/normalize-key"),
        Some(&target.join("normalize-key.wasm")),
        Some(&target),
    )
    .unwrap();
    let (origin_addr, plain, scripted) = rt.block_on(async {
        let o = origin().await;
        let mut addrs = Vec::new();
        for scripts in [vec![], vec![key_wasm.clone()]] {
            let mut config = Config::quick(
                "127.0.0.1:0".parse().unwrap(),
                Site::quick(format!("http://{o}").parse().unwrap(), scripts),
            );
            config.compiled_dir = Some(root.join("target").join("bench-compiled"));
            let shared = tessera::proxy::build(config, tessera::clock::Clock::system())
                .await
                .unwrap();
            let running = tessera::proxy::serve(shared).await.unwrap();
            addrs.push(running.addr);
            std::mem::forget(running);
        }
        (o, addrs[0], addrs[1])
    });
    for (name, addr) in [
        ("origin direct (scale)", origin_addr),
        ("hit, no script", plain),
        ("hit, normalize-key script", scripted),
    ] {
        let mut tx = rt.block_on(connect(addr));
        rt.block_on(get(&mut tx, "/page?b=1&a=2"));
        c.bench_function(name, |b| {
            b.iter(|| rt.block_on(get(&mut tx, "/page?b=1&a=2")))
        });
    }
}

/// A typical origin response head: what a hit sends back.
fn origin_head() -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (n, v) in [
        ("content-type", "text/html; charset=utf-8"),
        ("content-length", "20480"),
        (
            "cache-control",
            "public, max-age=300, stale-while-revalidate=60",
        ),
        ("etag", "\"5f3a9c2e-5000\""),
        ("last-modified", "Mon, 23 Nov 2026 08:00:00 GMT"),
        ("date", "Mon, 23 Nov 2026 09:00:00 GMT"),
        ("vary", "Accept-Encoding"),
        ("server", "origin/1.0"),
        ("x-request-id", "8f14e45fceea167a5a36dedd4bea2543"),
        ("accept-ranges", "bytes"),
    ] {
        h.append(n, http::HeaderValue::from_str(v).unwrap());
    }
    h
}

fn head(c: &mut Criterion) {
    let map = origin_head();
    let block = Bytes::from(tessera::cache::fields::encode(&map));
    let fields = tessera::cache::Fields::split_front(&block).0;
    c.bench_function("stored head to a response map: compact block", |b| {
        b.iter(|| std::hint::black_box(&fields).to_map_in(&block))
    });
    // What a hit does: head and body lent from the entry (one small allocation for the
    // loan, then slices).
    let entry = std::sync::Arc::new(
        tessera::cache::Entry::new(
            http::StatusCode::OK,
            &map,
            "s\u{1f}h/p".into(),
            std::time::SystemTime::now(),
            std::time::Duration::from_secs(60),
        )
        .with_body_of(&[Bytes::from(vec![b'x'; 2048])]),
    );
    c.bench_function(
        "stored head and body to a response: lent from the entry",
        |b| b.iter(|| std::hint::black_box(&entry).parts()),
    );
    c.bench_function("stored head to a response map: HeaderMap clone", |b| {
        b.iter(|| std::hint::black_box(&map).clone())
    });
}

criterion_group!(benches, head, bench);
criterion_main!(benches);
