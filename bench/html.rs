//! ESI and rewrite costs on a 100 KB page with 5 includes: parsing the template, a plain
//! lol_html pass, and the personalize script's rewrite (instance, handlers and callbacks).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::BodyExt;
use tessera::config::{Limits, ScriptsConfig};
use tessera::encoding::Coding;
use tessera::guest::{Chain, GuestEngine, InstancePool, PoolSize, Script};
use tessera::html::rewrite::{rewrite, Plan};
use tessera::request::{Client, ClientRequest, DeviceClass};

/// The page `bench/load/esi.sh` serves: 100 KB of paragraphs, 5 includes, personalisation targets.
fn page() -> Bytes {
    let para = format!(
        "<p>{}</p>\n",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(17)
    );
    let mut s = String::from("<!doctype html><html><body>");
    for i in 1..=5 {
        s.push_str(&para.repeat(20));
        s.push_str(&format!(
            "<section data-segment=\"pro\">offer {i}</section>"
        ));
        if i == 1 {
            s.push_str("<header><span data-greeting>Welcome!</span> <b data-cart-count hidden>0</b></header>");
        }
        s.push_str(&format!("<esi:include src=\"/esi/frag/{i}\"/>"));
    }
    s.push_str("</body></html>");
    Bytes::from(s)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let page = page();
    let mut g = c.benchmark_group("html");
    g.throughput(Throughput::Bytes(page.len() as u64));
    g.bench_function("esi template parse (100 KB)", |b| {
        b.iter(|| tessera::html::esi::parse::parse(page.clone()))
    });
    g.bench_function("lol_html pass, no handlers (100 KB)", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(page.len());
            let mut r = lol_html::HtmlRewriter::new(lol_html::Settings::new(), |c: &[u8]| {
                out.extend_from_slice(c)
            });
            r.write(&page).unwrap();
            r.end().unwrap();
            out.len()
        })
    });

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target").join("test-guests");
    let wasm = tessera::builder::build_guest(
        &root.join("guest-examples/personalize"),
        Some(&target.join("personalize.wasm")),
        Some(&target),
    )
    .unwrap();
    let engine = GuestEngine::new(PoolSize::default()).unwrap();
    let pool = Arc::new(InstancePool::new(&ScriptsConfig::default()));
    let limits = Limits {
        cpu: Duration::from_millis(50),
        memory_bytes: 64 << 20,
        reuse: 0,
        key_memo_bytes: 0,
    };
    let script = rt
        .block_on(Script::load(&engine, &pool, &wasm, None, "bench", limits))
        .unwrap();
    let scripts: Arc<[Arc<Script>]> = Arc::from(vec![Arc::new(script)]);
    let mut headers = http::HeaderMap::new();
    headers.insert("cookie", "user=Ann; segment=pro; cart=3".parse().unwrap());
    let req = ClientRequest {
        method: http::Method::GET,
        scheme: "http",
        authority: "shop.test".into(),
        uri: "/esi/page".parse().unwrap(),
        headers,
        client: Client {
            ip: "127.0.0.1".parse().unwrap(),
            country: None,
            device: DeviceClass::Desktop,
        },
        version: 0,
    };
    let mut head = http::HeaderMap::new();
    head.insert("content-type", "text/html".parse().unwrap());
    g.bench_function("personalize rewrite incl. instance (100 KB)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut chain = Chain::new(
                    scripts.clone(),
                    pool.clone(),
                    "b".into(),
                    tessera::clock::Clock::system(),
                );
                let handlers = chain
                    .html_handlers(&req, http::StatusCode::OK, &head)
                    .await
                    .unwrap();
                let body = http_body_util::Full::new(page.clone())
                    .map_err(|n| match n {})
                    .boxed();
                let mut rx = rewrite(
                    Plan { handlers, chain },
                    body,
                    Coding::Identity,
                    Coding::Identity,
                    1 << 30,
                );
                let mut n = 0;
                while let Some(c) = rx.recv().await {
                    n += c.unwrap().len();
                }
                n
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
