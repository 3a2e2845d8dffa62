//! Per-request guest cost: a fresh pooled instance + `cache-key` + drop, and a full hook sequence.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tessera::config::Limits;
use tessera::guest::{
    response_head, CacheDecision, GuestEngine, PoolSize, Request, Script, Session,
};

fn script(engine: &GuestEngine, name: &str) -> Arc<Script> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target").join("test-guests");
    let wasm = tessera::builder::build_guest(
        &root.join("guest-examples").join(name),
        Some(&target.join(format!("{name}.wasm"))),
        Some(&target),
    )
    .expect("guest builds");
    let limits = Limits {
        cpu: Duration::from_millis(50),
        memory_bytes: 64 << 20,
    };
    Arc::new(
        Script::load(
            engine,
            &wasm,
            &root.join("target").join("bench-compiled"),
            "bench",
            limits,
        )
        .expect("script loads"),
    )
}

fn request() -> Request {
    let req = http::Request::builder()
        .uri("/products/123?utm_source=x&b=2&a=1")
        .header("user-agent", "Mozilla/5.0 (iPhone) Mobile")
        .header("cookie", "ab=A; theme=dark")
        .body(())
        .unwrap();
    let (parts, ()) = req.into_parts();
    Request::from_parts(&parts, "shop.example", "127.0.0.1".parse().unwrap())
}

fn bench(c: &mut Criterion) {
    let engine = GuestEngine::new(PoolSize::default()).unwrap();
    let key = script(&engine, "normalize-key");
    let ttl = script(&engine, "ttl-by-type");
    let ab = script(&engine, "ab-test");
    let req = request();
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "text/html".parse().unwrap());
    let head = response_head(http::StatusCode::OK, &headers);
    let proposed = CacheDecision {
        store: true,
        ttl: 60,
        stale_while_revalidate: 0,
        stale_if_error: 0,
        tags: vec![],
    };

    c.bench_function("fresh instance + cache-key + drop (normalize-key)", |b| {
        b.iter(|| {
            let mut s = Session::new(key.clone(), "bench".into());
            s.cache_key(&req, "shop.example/products/123").unwrap()
        })
    });
    c.bench_function(
        "all hooks of one request (ab-test: on-request, cache-key, on-response)",
        |b| {
            b.iter(|| {
                let mut s = Session::new(ab.clone(), "bench".into());
                s.on_request(&req).unwrap();
                s.cache_key(&req, "shop.example/products/123").unwrap();
                s.on_response(&req, &head).unwrap()
            })
        },
    );
    c.bench_function("cache-policy on a fresh instance (ttl-by-type)", |b| {
        b.iter(|| {
            let mut s = Session::new(ttl.clone(), "bench".into());
            s.cache_policy(&req, &head, &proposed).unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
