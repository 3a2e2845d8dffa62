//! Per-request guest cost: a fresh pooled instance + `cache-key` + drop (hot, and with the
//! caches filled by other work first), a kept one with `instance_reuse`, an answer from the
//! `key_memo_kib` memo, a full hook sequence, and the floor under all of them: components
//! with nothing of ours in them, on the same engine.

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
    // The examples, and the bench's own fixture (`bench/guests/default-key`).
    let dir = match root.join("guest-examples").join(name) {
        d if d.is_dir() => d,
        _ => root.join("bench").join("guests").join(name),
    };
    let wasm = tessera::builder::build_guest(
        &dir,
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
    let empty = script(&rt, &engine, &pool, "default-key", 0, 0);
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
    // Last, the same call to a script that only returns the key it is handed: what a fresh
    // instance costs with our SDK and host, whatever the script does.
    let mut keyed = vec![(
        "fresh instance + cache-key + drop (normalize-key)".to_owned(),
        &key,
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
        keyed.push((
            format!("fresh instance + cache-key + drop, {n} headers"),
            &key,
            r,
        ));
    }
    keyed.push((
        "fresh instance + cache-key + drop (default-key)".to_owned(),
        &empty,
        request(),
    ));
    for (name, script, r) in &keyed {
        c.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut ch = chain(script);
                    ch.cache_key(r, "shop.example/products/123".into())
                        .await
                        .unwrap()
                })
            })
        });
    }
    // The same, with the core's caches filled by other work before each call (untimed): a
    // server runs the rest of a request between two instances, so what this costs there
    // lies between the hot figure above and these.
    // Criterion sizes the run by the timed part alone, so the untimed sweeps would make a
    // default-sized run take minutes: this group takes few samples.
    let mut cold = c.benchmark_group("cold");
    cold.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    let mut other = vec![0u8; 64 << 20];
    for (label, sweep) in [("2 MiB", 2usize << 20), ("64 MiB", 64 << 20)] {
        let name = format!("fresh instance + cache-key + drop, after {label} of other work");
        cold.bench_function(&name, |b| {
            b.iter_batched(
                || {
                    for line in other[..sweep].chunks_mut(64) {
                        line[0] = line[0].wrapping_add(1);
                    }
                    std::hint::black_box(&mut other);
                },
                |()| {
                    rt.block_on(async {
                        let mut ch = chain(&key);
                        ch.cache_key(&keyed[0].2, "shop.example/products/123".into())
                            .await
                            .unwrap()
                    })
                },
                criterion::BatchSize::PerIteration,
            )
        });
    }
    cold.finish();
    // The same request with `instance_reuse`: an instance kept from the previous request.
    c.bench_function(
        "kept instance + cache-key + keep (normalize-key, instance_reuse)",
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut ch = chain(&reused);
                    ch.cache_key(&keyed[0].2, "shop.example/products/123".into())
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
                ch.cache_key(&keyed[0].2, "shop.example/products/123".into())
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
                let mut r = keyed[0].2.clone();
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
    floor(c, &rt, &engine);
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

/// Components with nothing of ours in them, on the same engine and pool: what wasmtime
/// itself costs per fresh instance on this machine, the floor under every figure above.
fn floor(c: &mut Criterion, rt: &tokio::runtime::Runtime, engine: &GuestEngine) {
    use wasmtime::component::{Component, Linker};
    use wasmtime::Store;

    // `pages` of memory, `dirty` of whose 4 KiB pages the call writes (the guest's stack
    // top, its data and its first heap chunk), and optionally wit-component's layout for
    // imports that take strings: a shim table, the module, and a fixup that fills the table.
    let shape = |pages: u32, dirty: &[u32], shim: bool| {
        let writes: String = dirty
            .iter()
            .map(|p| format!("(i32.store (i32.const {}) (i32.const 1))", p * 4096 + 8))
            .collect();
        let main = format!(
            r#"(core module $main
                 (import "host" "log" (func $log (param i32)))
                 (memory (export "memory") {pages})
                 (func (export "f") (result i32) {writes} (call $log (i32.const 1)) (i32.const 7)))"#
        );
        let text = if shim {
            format!(
                r#"(component
                  (import "log" (func $log (param "x" u32)))
                  (core module $shim
                    (table (export "t") 1 1 funcref)
                    (func (export "0") (param i32) (local.get 0) (i32.const 0) (call_indirect (param i32))))
                  {main}
                  (core module $fixup
                    (import "" "t" (table 1 1 funcref))
                    (import "" "0" (func $f (param i32)))
                    (elem (i32.const 0) func $f))
                  (core instance $s (instantiate $shim))
                  (core instance $m (instantiate $main (with "host" (instance (export "log" (func $s "0"))))))
                  (core func $lowered (canon lower (func $log)))
                  (core instance (instantiate $fixup (with "" (instance
                    (export "t" (table $s "t")) (export "0" (func $lowered))))))
                  (func (export "f") (result u32) (canon lift (core func $m "f"))))"#
            )
        } else {
            format!(
                r#"(component
                  (import "log" (func $log (param "x" u32)))
                  (core func $lowered (canon lower (func $log)))
                  {main}
                  (core instance $m (instantiate $main (with "host" (instance (export "log" (func $lowered))))))
                  (func (export "f") (result u32) (canon lift (core func $m "f"))))"#
            )
        };
        let bytes = wat::parse_str(&text).expect("floor component parses");
        let component = Component::new(engine.engine(), &bytes).expect("floor component compiles");
        let mut linker = Linker::<()>::new(engine.engine());
        linker
            .root()
            .func_wrap("log", |_, (_x,): (u32,)| Ok(()))
            .unwrap();
        linker.instantiate_pre(&component).unwrap()
    };
    for (name, pre) in [
        (
            "floor: fresh instance + call + drop, 1 page, none written",
            shape(1, &[], false),
        ),
        (
            "floor: fresh instance + call + drop, 18 pages, 4 written",
            shape(18, &[255, 256, 257, 280], false),
        ),
        (
            "floor: fresh instance + call + drop, 18 pages, 4 written, shim and fixup",
            shape(18, &[255, 256, 257, 280], true),
        ),
        (
            "floor: fresh instance + call + drop, 3 pages, 4 written, shim and fixup",
            shape(3, &[15, 16, 17, 32], true),
        ),
    ] {
        let export = pre.component().get_export_index(None, "f").unwrap();
        c.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut store = Store::new(engine.engine(), ());
                    // Far enough that the ticker never interrupts: no callback here.
                    store.set_epoch_deadline(1 << 40);
                    let instance = pre.instantiate_async(&mut store).await.unwrap();
                    let f = instance
                        .get_typed_func::<(), (u32,)>(&mut store, &export)
                        .unwrap();
                    f.call_async(&mut store, ()).await.unwrap().0
                })
            })
        });
    }
}
