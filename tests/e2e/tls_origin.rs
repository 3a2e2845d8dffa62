//! https origins through the real binary: verified against a CA the test makes (rcgen),
//! SNI, connection reuse, 502 on a bad certificate and never a plaintext fallback; the
//! `Forwarded` / `X-Forwarded-Proto` fields the origin receives.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::support::tls::{Ca, Leaf};
use crate::support::{run_cli, Launch};

/// A CA and a leaf it signed for `names`.
struct Pki {
    ca_pem: String,
    leaf: Leaf,
}

fn pki(names: &[&str]) -> Pki {
    let ca = Ca::new();
    Pki {
        leaf: ca.issue(names),
        ca_pem: ca.pem,
    }
}

/// What a TLS origin saw.
#[derive(Default)]
struct Seen {
    /// TCP connections accepted.
    connections: AtomicUsize,
    /// Connections whose first byte was not a TLS handshake record.
    plaintext: AtomicUsize,
    /// Completed TLS handshakes, with the SNI name each sent.
    sni: Mutex<Vec<Option<String>>>,
    /// Requests: path and header fields.
    requests: Mutex<Vec<(String, HeaderMap)>>,
}

/// An HTTPS origin on loopback answering `secure <n>`, cacheable for ten minutes.
async fn tls_origin(pki: &Pki) -> (SocketAddr, Arc<Seen>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf.der.clone()], pki.leaf.key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), s.clone());
            tokio::spawn(async move {
                seen.connections.fetch_add(1, Ordering::SeqCst);
                let mut first = [0u8; 1];
                if stream.peek(&mut first).await.unwrap_or(0) == 1 && first[0] != 0x16 {
                    seen.plaintext.fetch_add(1, Ordering::SeqCst);
                }
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().map(str::to_owned);
                seen.sni.lock().unwrap().push(sni);
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let n = {
                            let mut r = seen.requests.lock().unwrap();
                            r.push((req.uri().path().to_owned(), req.headers().clone()));
                            r.len()
                        };
                        let resp = Response::builder()
                            .header("cache-control", "max-age=600")
                            .body(Full::new(Bytes::from(format!("secure {n}"))))
                            .unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn site(origin: &str, ca: bool) -> String {
    let ca = if ca {
        "origin_ca = \"{dir}/ca.pem\"\n"
    } else {
        ""
    };
    format!("[[site]]\nname = \"shop\"\nhosts = [\"shop.test\"]\norigin = \"{origin}\"\n{ca}")
}

#[tokio::test]
async fn an_https_origin_is_verified_against_the_sites_ca_and_its_connections_reused() {
    let pki = pki(&["localhost"]);
    let (addr, seen) = tls_origin(&pki).await;
    let launch = Launch::config_for(
        "",
        &site(&format!("https://localhost:{}", addr.port()), true),
    );
    let dir = launch.config_path().parent().unwrap().to_owned();
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    let proxy = launch.start().await;

    let got = proxy.get("/a", &[("x-forwarded-proto", "https")]).await;
    assert_eq!(
        (got.status, got.body.as_str()),
        (200, "secure 1"),
        "{}",
        got.cache_status()
    );
    assert!(proxy.get("/a", &[]).await.hit());
    for i in 0..5 {
        let got = proxy.get(&format!("/miss/{i}"), &[]).await;
        assert_eq!(got.status, 200);
    }
    let requests = seen.requests.lock().unwrap();
    assert_eq!(requests.len(), 6);
    let sni = seen.sni.lock().unwrap().clone();
    assert!(
        sni.iter().all(|n| n.as_deref() == Some("localhost")),
        "{sni:?}"
    );
    assert!(
        sni.len() < 6,
        "connections are reused: {} handshakes for 6 requests",
        sni.len()
    );
    assert_eq!(seen.plaintext.load(Ordering::SeqCst), 0);
    // The client's claim to have come over https is replaced by what this node knows.
    let (_, headers) = &requests[0];
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(
        headers["forwarded"],
        "for=127.0.0.1;proto=http;host=\"shop.test\""
    );
}

#[tokio::test]
async fn an_origin_certificate_that_does_not_verify_is_a_502_and_never_plaintext() {
    // Signed by a CA the proxy does not know (system roots only).
    let unknown = pki(&["localhost"]);
    let (unknown_addr, unknown_seen) = tls_origin(&unknown).await;
    // Known CA, but the certificate names another host.
    let misnamed = pki(&["other.test"]);
    let (misnamed_addr, misnamed_seen) = tls_origin(&misnamed).await;

    for (addr, seen, pem, ca) in [
        (unknown_addr, &unknown_seen, &unknown.ca_pem, false),
        (misnamed_addr, &misnamed_seen, &misnamed.ca_pem, true),
    ] {
        let launch =
            Launch::config_for("", &site(&format!("https://localhost:{}", addr.port()), ca));
        std::fs::write(launch.config_path().parent().unwrap().join("ca.pem"), pem).unwrap();
        let proxy = launch.start().await;
        for _ in 0..2 {
            let got = proxy.get("/a", &[]).await;
            assert_eq!(got.status, 502, "{}", got.body);
            assert!(
                got.cache_status().contains("origin-tls-error"),
                "{}",
                got.cache_status()
            );
        }
        assert!(
            seen.connections.load(Ordering::SeqCst) >= 1,
            "TLS was attempted"
        );
        assert_eq!(
            seen.plaintext.load(Ordering::SeqCst),
            0,
            "no plaintext fallback"
        );
        assert!(
            seen.sni.lock().unwrap().is_empty(),
            "no handshake completed"
        );
        assert!(seen.requests.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_bad_origin_ca_is_refused_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
    let cases = [
        (
            "origin = \"https://localhost:1\"\norigin_ca = \"junk.pem\"",
            "junk.pem",
        ),
        (
            "origin = \"https://localhost:1\"\norigin_ca = \"missing.pem\"",
            "missing.pem",
        ),
        (
            "origin = \"http://localhost:1\"\norigin_ca = \"junk.pem\"",
            "https",
        ),
        ("origin = \"ftp://localhost:1\"", "https://"),
    ];
    for (lines, word) in cases {
        let path = dir.path().join("tessera.toml");
        std::fs::write(&path, format!("[[site]]\nname = \"s\"\n{lines}\n")).unwrap();
        let (ok, out) = run_cli(&["check", "--config", &path.display().to_string()]);
        assert!(!ok, "{lines}: {out}");
        assert!(
            out.contains("tessera.toml:") && out.contains(word),
            "{lines}: {out}"
        );
        assert!(out.contains("origin"), "{lines}: {out}");
    }
}
