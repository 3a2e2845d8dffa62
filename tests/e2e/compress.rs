//! Compression at delivery through the real binary: br, zstd or gzip per client from one stored
//! copy, `Vary` and validators kept right, what is never compressed, and `Accept-Encoding`
//! spellings sharing one cache variant.

use std::io::Read;

use crate::support::{send_bytes, Lib, Origin, Proxy, Reply};

/// 8 KiB of compressible HTML.
fn page() -> String {
    "<p>Tessera compresses what gains from it.</p>\n".repeat(180)
}

fn gunzip(b: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(b)
        .read_to_string(&mut out)
        .unwrap();
    out
}

fn unbrotli(b: &[u8]) -> String {
    let mut out = String::new();
    brotli::Decompressor::new(b, 4096)
        .read_to_string(&mut out)
        .unwrap();
    out
}

/// An origin serving `page()` under several types and policies by path.
async fn origin() -> Origin {
    Origin::start(|seen, _| {
        let body = page();
        let r = |t: &str| {
            Reply::ok(&body)
                .header("content-type", t)
                .header("cache-control", "max-age=600")
                .header("etag", "\"v1\"")
        };
        match seen.path_and_query.as_str() {
            "/image" => r("image/png"),
            "/small" => Reply::ok("tiny")
                .header("content-type", "text/plain")
                .header("cache-control", "max-age=600"),
            "/no-transform" => r("text/html").header("cache-control", "max-age=600, no-transform"),
            "/varies" => r("text/html").header("vary", "Accept-Encoding"),
            "/pre-gzipped" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut e, b"already").unwrap();
                Reply {
                    body: e.finish().unwrap(),
                    ..Reply::ok("")
                }
                .header("content-type", "text/plain")
                .header("content-encoding", "gzip")
                .header("cache-control", "max-age=600")
            }
            _ => r("text/html; charset=utf-8"),
        }
    })
    .await
}

#[tokio::test]
async fn each_client_gets_the_coding_it_accepts_from_one_stored_copy() {
    let origin = origin().await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let gz = proxy
        .get("/p", &[("accept-encoding", "gzip, deflate")])
        .await;
    assert_eq!(gz.h("content-encoding"), "gzip");
    assert!(gz
        .h("vary")
        .to_ascii_lowercase()
        .contains("accept-encoding"));
    assert_eq!(gz.h("etag"), "W/\"v1\"");
    let raw = send_bytes(proxy.addr, "/p", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gunzip(&raw), page());
    assert!(raw.len() < page().len() / 4, "{} bytes", raw.len());

    let raw = send_bytes(
        proxy.addr,
        "/p",
        &[("accept-encoding", "gzip, deflate, br")],
    )
    .await;
    assert_eq!(unbrotli(&raw), page());

    let zstd = proxy
        .get("/p", &[("accept-encoding", "gzip, deflate, zstd")])
        .await;
    assert_eq!(zstd.h("content-encoding"), "zstd");
    let raw = send_bytes(proxy.addr, "/p", &[("accept-encoding", "zstd")]).await;
    assert_eq!(zstd::decode_all(&raw[..]).unwrap(), page().as_bytes());

    let plain = proxy.get("/p", &[]).await;
    assert_eq!(plain.h("content-encoding"), "");
    assert_eq!(plain.body, page());
    assert_eq!(plain.h("etag"), "\"v1\"");
    assert!(plain
        .h("vary")
        .to_ascii_lowercase()
        .contains("accept-encoding"));
    assert_eq!(origin.count(), 1, "one stored copy served all four");

    // The weak validator of the encoded form still revalidates.
    let nm = proxy
        .get(
            "/p",
            &[("accept-encoding", "gzip"), ("if-none-match", "W/\"v1\"")],
        )
        .await;
    assert_eq!(nm.status, 304);
    // A range is served from the identity bytes, uncompressed.
    let range = proxy
        .get("/p", &[("accept-encoding", "br"), ("range", "bytes=0-9")])
        .await;
    assert_eq!(
        (
            range.status,
            range.body.as_str(),
            range.h("content-encoding").as_str()
        ),
        (206, "<p>Tessera", "")
    );
}

#[tokio::test]
async fn what_gains_nothing_or_may_not_be_transformed_is_sent_as_it_is() {
    let origin = origin().await;
    let proxy = Proxy::quick(&origin, &[]).await;
    for path in ["/image", "/small", "/no-transform"] {
        let got = proxy.get(path, &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(
            (got.status, got.h("content-encoding").as_str()),
            (200, ""),
            "{path}"
        );
    }
    let got = proxy
        .get(
            "/p",
            &[
                ("accept-encoding", "gzip"),
                ("cache-control", "no-transform"),
            ],
        )
        .await;
    assert_eq!(
        got.h("content-encoding"),
        "",
        "the client said no-transform"
    );
    // An origin's own coding is left alone.
    let raw = send_bytes(proxy.addr, "/pre-gzipped", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gunzip(&raw), "already");
}

#[tokio::test]
async fn accept_encoding_spellings_share_one_variant() {
    let origin = origin().await;
    let proxy = Proxy::quick(&origin, &[]).await;
    // The origin says its answer varies by Accept-Encoding; browsers spell "br and gzip"
    // many ways, which the cache reads as one preference.
    for spelling in [
        "gzip, deflate, br",
        "br, gzip",
        "gzip, deflate, br, zstd",
        "br;q=1.0, gzip;q=0.9",
    ] {
        let raw = send_bytes(proxy.addr, "/varies", &[("accept-encoding", spelling)]).await;
        assert_eq!(unbrotli(&raw), page(), "{spelling}");
    }
    assert_eq!(origin.count(), 1);
    let seen = origin.seen();
    assert_eq!(seen[0].headers["accept-encoding"], "br");
    // gzip-only and no coding are their own variants.
    send_bytes(
        proxy.addr,
        "/varies",
        &[("accept-encoding", "gzip, deflate")],
    )
    .await;
    send_bytes(proxy.addr, "/varies", &[("accept-encoding", "gzip")]).await;
    send_bytes(proxy.addr, "/varies", &[]).await;
    send_bytes(proxy.addr, "/varies", &[("accept-encoding", "identity")]).await;
    assert_eq!(origin.count(), 3);
}

#[tokio::test]
async fn a_stored_body_is_encoded_once_per_coding_and_the_copy_kept() {
    let origin = origin().await;
    let lib = Lib::site(&origin, "").await;
    assert_eq!(lib.get("/p", &[]).await.body, page());
    let first = lib.get("/p", &[("accept-encoding", "gzip")]).await;
    let second = lib.get("/p", &[("accept-encoding", "gzip")]).await;
    assert!(first.hit() && second.hit());
    assert_eq!(first.body, second.body);
    assert_eq!(first.h("content-length"), second.h("content-length"));
    let key = tessera::cache::StoreKey::new("s", "shop.test/p");
    match lib.shared().store.lookup(&key, &http::HeaderMap::new()) {
        tessera::cache::Lookup::Found(e) => {
            let copies = e.encoded.get().expect("the copies are kept with the entry");
            let gzip = copies.gzip.get().expect("the gzip copy is kept");
            assert_eq!(gunzip(gzip), page());
            assert!(copies.br.get().is_none(), "no client asked for br");
        }
        _ => panic!("/p is stored"),
    }
    assert_eq!(origin.count(), 1);
}
