//! Per-request guest cost: a fresh pooled instance + `cache-key` + drop (or a kept one with
//! `instance_reuse`, or an answer from the `key_memo_kib` memo), and a full hook sequence.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, Method, StatusCode, Uri};
use tessera::cache::Decision;
use tessera::clock::Clock;
use tessera::config::{Limits, ScriptsConfig};
use tessera::guest::{Chain, CompiledCache, GuestEngine, InstancePool, PoolSize, Script};
use tessera::request::{Client, ClientRequest, DeviceClass};

fn script(
    rt: &tokio::runtime::Runtime,
    engine: &GuestEngine,
    pool: &InstancePool,
    name: &str,
    reuse: u32,
    key_memo_bytes: usize,
) -> Arc<[Arc<Script>]> {
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
        reuse,
        key_memo_bytes,
    };
    let compiled = CompiledCache::open(&root.join("target").join("bench-compiled")).unwrap();
    let s = rt
        .block_on(Script::load(
            engine,
            pool,
            &wasm,
            Some(&compiled),
            "bench",
            limits,
        ))
        .expect("script loads");
    Arc::from(vec![Arc::new(s)])
}

fn request() -> ClientRequest {
    let mut headers = HeaderMap::new();
    for (k, v) in [
        ("host", "shop.example"),
        ("user-agent", "Mozilla/5.0 (iPhone) Mobile"),
        ("accept", "text/html,application/xhtml+xml"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("accept-encoding", "gzip, br"),
        ("cookie", "ab=A; theme=dark"),
        ("referer", "https://search.example/"),
        ("x-request-id", "bench"),
    ] {
        headers.insert(k, v.parse().unwrap());
    }
    ClientRequest {
        method: Method::GET,
        scheme: "http",
        authority: "shop.example".into(),
        uri: Uri::from_static("/products/123?utm_source=x&b=2&a=1"),
        client: Client {
            ip: "127.0.0.1".parse().unwrap(),
            country: None,
            device: DeviceClass::Mobile,
        },
        headers,
        version: 0,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = GuestEngine::new(PoolSize::default()).unwrap();
    let pool = Arc::new(InstancePool::new(&ScriptsConfig::default()));
    let key = script(&rt, &engine, &pool, "normalize-key", 0, 0);
    let reused = script(&rt, &engine, &pool, "normalize-key", 1_000_000, 0);
    let memo = script(&rt, &engine, &pool, "normalize-key", 0, 4 << 20);
    let ttl = script(&rt, &engine, &pool, "ttl-by-type", 0, 0);
    let ab = script(&rt, &engine, &pool, "ab-test", 0, 0);
    let chain = |s: &Arc<[Arc<Script>]>| {
        Chain::new(s.clone(), pool.clone(), "bench".into(), Clock::system())
    };
    let mut req = request();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "text/html".parse().unwrap());
    let proposed = Decision {
        store: true,
        ttl: Duration::from_secs(60),
        ..Default::default()
    };

    // The 8-header request, then the same hook with 0 and 32 headers (normalize-key declares
    // `key_reads` without headers, so none of them cross into the guest).
    let mut keyed = vec![(
        "fresh instance + cache-key + drop (normalize-key)".to_owned(),
        request(),
    )];
    for n in [0usize, 32] {
        let mut r = request();
        r.headers.clear();
        for i in 0..n {
            let name = http::HeaderName::try_from(format!("x-header-{i}")).unwrap();
            r.headers
                .insert(name, "a-typical-value-of-thirty-bytes".parse().unwrap());
        }
        keyed.push((format!("fresh instance + cache-key + drop, {n} headers"), r));
    }
    for (name, r) in &keyed {
        c.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut ch = chain(&key);
                    ch.cache_key(r, "shop.example/products/123".into())
                        .await
                        .unwrap()
                })
            })
        });
    }
    // The same request with `instance_reuse`: an instance kept from the previous request.
    c.bench_function(
        "kept instance + cache-key + keep (normalize-key, instance_reuse)",
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut ch = chain(&reused);
                    ch.cache_key(&keyed[0].1, "shop.example/products/123".into())
                        .await
                        .unwrap()
                })
            })
        },
    );
    // `key_memo_kib`: the same request again (a memo hit: no instance), and a request unlike
    // any before (a miss: a fresh instance as above, and its answer stored).
    c.bench_function("memo hit: cache-key from key_memo (normalize-key)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut ch = chain(&memo);
                ch.cache_key(&keyed[0].1, "shop.example/products/123".into())
                    .await
                    .unwrap()
            })
        })
    });
    // Every request unlike the last, with the memo and without: what a memo that never
    // hits costs (both build the request in the loop).
    let mut n = 0u64;
    for (name, s) in [
        (
            "memo miss: unique request, fresh instance + cache-key + store",
            &memo,
        ),
        ("no memo: unique request, fresh instance + cache-key", &key),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                let mut r = keyed[0].1.clone();
                r.uri = format!("/products/{n}?b=2").parse().unwrap();
                rt.block_on(async {
                    let mut ch = chain(s);
                    ch.cache_key(&r, "shop.example/products/123".into())
                        .await
                        .unwrap()
                })
            })
        });
    }
    c.bench_function(
        "all hooks of one request (ab-test: on-request, cache-key, on-response)",
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut ch = chain(&ab);
                    ch.on_request(&mut req).await.unwrap();
                    ch.cache_key(&req, "shop.example/products/123".into())
                        .await
                        .unwrap();
                    let mut h = headers.clone();
                    ch.on_response(&req, StatusCode::OK, &mut h).await.unwrap();
                })
            })
        },
    );
    c.bench_function("cache-policy on a fresh instance (ttl-by-type)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut ch = chain(&ttl);
                ch.cache_policy(&req, StatusCode::OK, &headers, proposed.clone())
                    .await
                    .unwrap()
            })
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
