//! TLS listeners of the real binary: ALPN h2 and http/1.1, a certificate per SNI name,
//! `https` in the scripts' view and in `Forwarded`, certificates swapped on reload, and
//! what an attacker sends to a TLS port first.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::support::tls::{connect, presented, Ca, Leaf};
use crate::support::{guest, raw, run_cli, send, Launch, Origin, Proxy, Reply, PATIENCE};

/// A config with one TLS listener (`shop.pem` by default, `blog.pem` for the blog names)
/// on an ephemeral port, and a site running the `hostile` fixture (it tells the origin the
/// scheme it saw in `x-seen` on `/whoami`).
fn config() -> String {
    format!(
        r#"
[[listener]]
address = "127.0.0.1:0"
certificate = "shop.pem"
key = "shop.key"
[[listener.sni]]
names = ["blog.test", "*.blog.test"]
certificate = "blog.pem"
key = "blog.key"

[[site]]
name = "shop"
origin = "{{origin}}"
script = "{}"
"#,
        guest("tests/guests/hostile").display()
    )
}

fn write_pair(dir: &Path, name: &str, leaf: &Leaf) {
    std::fs::write(dir.join(format!("{name}.pem")), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), &leaf.key_pem).unwrap();
}

/// Starts the proxy with `config()`, the certificates written first.
async fn start(origin: &Origin, shop: &Leaf, blog: &Leaf, capture: bool) -> Proxy {
    let launch = Launch::config(origin, &config());
    let dir = launch.config_path().parent().unwrap().to_owned();
    write_pair(&dir, "shop", shop);
    write_pair(&dir, "blog", blog);
    let launch = if capture {
        launch.capture_logs()
    } else {
        launch
    };
    launch.start().await
}

fn tls_addr(proxy: &Proxy) -> std::net::SocketAddr {
    let (scheme, addr) = &proxy.also[0];
    assert_eq!(scheme, "https");
    *addr
}

/// GET `path` of `host` over a new HTTP/1.1-over-TLS connection to `addr`.
async fn get_http1(
    addr: std::net::SocketAddr,
    ca: &Ca,
    host: &str,
    path: &str,
) -> http::Response<hyper::body::Incoming> {
    let tls = connect(addr, host, ca.client(&[b"http/1.1"])).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    sender.send_request(req).await.unwrap()
}

fn cacheable(seen: &crate::support::Seen, _: usize) -> Reply {
    Reply::ok(&format!("page {}", seen.path_and_query)).header("cache-control", "max-age=600")
}

#[tokio::test]
async fn a_tls_listener_speaks_h2_and_http1_by_alpn_with_the_certificate_for_the_sni_name() {
    let ca = Ca::new();
    let (shop, blog) = (
        ca.issue(&["shop.test"]),
        ca.issue(&["blog.test", "*.blog.test"]),
    );
    let origin = Origin::start(cacheable).await;
    let proxy = start(&origin, &shop, &blog, false).await;
    let addr = tls_addr(&proxy);

    // h2 by ALPN, the default certificate.
    let tls = connect(addr, "shop.test", ca.client(&[b"h2", b"http/1.1"])).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(presented(&tls), shop.der);
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for expected in ["MISS", "HIT"] {
        let req = Request::get("https://shop.test/a")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.clone().send_request(req).await.unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(resp.headers()["x-cache"], expected);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"page /a");
    }
    let req = Request::get("https://shop.test/whoami")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(
        sender.clone().send_request(req).await.unwrap().status(),
        200
    );

    // HTTP/1.1 by ALPN; the SNI certificate, exact and by wildcard.
    for name in ["blog.test", "www.blog.test"] {
        let tls = connect(addr, name, ca.client(&[b"http/1.1"])).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(presented(&tls), blog.der, "{name}");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/b")
            .header("host", name)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(
            (resp.version(), resp.status().as_u16()),
            (Version::HTTP_11, 200)
        );
    }
    // TLS 1.2 is accepted too (1.3 is what the clients above got).
    let tls12 = ca.client_with(&[&rustls::version::TLS12], &[b"http/1.1"]);
    let tls = connect(addr, "shop.test", tls12).await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let tls = connect(addr, "shop.test", ca.client(&[])).await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    // A name no entry has gets the default certificate (which the client then refuses to
    // trust for that name: the handshake is the client's to fail, not the server's).
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(ca.client(&[])));
    let name = rustls::pki_types::ServerName::try_from("other.test").unwrap();
    assert!(connector.connect(name, tcp).await.is_err());

    // The scheme the scripts and the origin are told.
    let seen = origin.seen();
    let whoami = seen.iter().find(|s| s.path_and_query == "/whoami").unwrap();
    assert_eq!(whoami.headers["x-seen"], "scheme=https; country=-");
    assert_eq!(whoami.headers["x-forwarded-proto"], "https");
    assert!(whoami.headers["forwarded"]
        .to_str()
        .unwrap()
        .ends_with(";proto=https;host=\"shop.test\""));
    // The cleartext listener still says http.
    send(proxy.addr, "GET", "/whoami?via=cleartext", &[]).await;
    let last = origin.seen().pop().unwrap();
    assert_eq!(last.headers["x-seen"], "scheme=http; country=-");
}

#[tokio::test]
async fn certificates_are_swapped_on_sighup_and_a_bad_pair_keeps_the_old_one() {
    let ca = Ca::new();
    let (first, blog) = (ca.issue(&["shop.test"]), ca.issue(&["blog.test"]));
    let origin = Origin::start(cacheable).await;
    let proxy = start(&origin, &first, &blog, true).await;
    let addr = tls_addr(&proxy);
    let dir = proxy.config.as_ref().unwrap().parent().unwrap().to_owned();
    let presented_now = || async { presented(&connect(addr, "shop.test", ca.client(&[])).await) };
    assert_eq!(presented_now().await, first.der);

    // Renewed in place, then SIGHUP: new connections get the new certificate.
    let renewed = ca.issue(&["shop.test"]);
    write_pair(&dir, "shop", &renewed);
    hangup(&proxy);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while presented_now().await != renewed.der {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A key that belongs to another certificate: refused, the renewed one stays.
    let other = ca.issue(&["shop.test"]);
    std::fs::write(dir.join("shop.key"), &other.key_pem).unwrap();
    hangup(&proxy);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !proxy
        .logs()
        .iter()
        .any(|l| l.contains("refused") && l.contains("does not belong"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:#?}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(presented_now().await, renewed.der);
    assert!(
        proxy.logs().iter().any(|l| l.contains("shop.key")),
        "the error names the file"
    );

    // `check` says the same, naming file, line and key.
    let (ok, out) = run_cli(&[
        "check",
        "--config",
        &proxy.config.as_ref().unwrap().display().to_string(),
    ]);
    assert!(
        !ok && out.contains("shop.key")
            && out.contains("does not belong")
            && out.contains("listener.certificate"),
        "{out}"
    );
}

fn hangup(proxy: &Proxy) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(
        unsafe { libc::kill(proxy.pid() as libc::pid_t, libc::SIGHUP) },
        0
    );
}

#[tokio::test]
async fn plaintext_garbage_and_silence_on_the_tls_port_are_dropped() {
    let ca = Ca::new();
    let (shop, blog) = (ca.issue(&["shop.test"]), ca.issue(&["blog.test"]));
    let origin = Origin::start(cacheable).await;
    let proxy = start(&origin, &shop, &blog, false).await;
    let addr = tls_addr(&proxy);
    // A cleartext request to the TLS port: no HTTP answer, the connection closes.
    let got = raw(addr, b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n", PATIENCE).await;
    assert!(!got.contains("HTTP/1.1"), "{got:?}");
    // A ClientHello cut short, then random bytes.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc, 0x03, 0x03,
    ];
    hello.extend((0..200u8).map(|i| i.wrapping_mul(37)));
    raw(addr, &hello, PATIENCE).await;
    // A client that sends nothing is closed after the handshake time (10 s), not held.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(
        PATIENCE,
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
    )
    .await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    // The listener still works, and nothing reached the origin.
    assert_eq!(get_http1(addr, &ca, "shop.test", "/a").await.status(), 200);
    assert_eq!(origin.count(), 1);
}

#[tokio::test]
async fn listener_config_errors_name_file_line_and_key() {
    let ca = Ca::new();
    let leaf = ca.issue(&["shop.test"]);
    let other = ca.issue(&["shop.test"]);
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), "good", &leaf);
    std::fs::write(
        dir.path().join("junk.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("other.key"), &other.key_pem).unwrap();
    let site = "[[site]]\nname = \"s\"\norigin = \"http://127.0.0.1:9\"\n";
    for (listener, words) in [
        ("address = \"127.0.0.1:0\"\ncertificate = \"good.pem\"\nkey = \"other.key\"", &["other.key", "does not belong", ":3:"][..]),
        ("address = \"127.0.0.1:0\"\ncertificate = \"junk.pem\"\nkey = \"good.key\"", &["junk.pem", ":3:"]),
        ("address = \"127.0.0.1:0\"\ncertificate = \"good.pem\"\nkey = \"good.pem\"", &["good.pem", "private key"]),
        ("address = \"127.0.0.1:0\"\ncertificate = \"missing.pem\"\nkey = \"good.key\"", &["missing.pem"]),
        ("address = \"127.0.0.1:0\"\ncertificate = \"good.pem\"", &["both `certificate` and `key`"]),
        ("address = \"localhost\"", &["listener.address"]),
        ("address = \"127.0.0.1:0\"\nalt_svc = \"h3=443\"", &["listener.alt_svc", ":3:", "quoted"]),
        ("address = \"127.0.0.1:0\"\ncertificate = \"good.pem\"\nkey = \"good.key\"\n[[listener.sni]]\nnames = [\"a b\"]\ncertificate = \"good.pem\"\nkey = \"good.key\"", &["listener.sni.names", "a b"]),
    ] {
        let path = dir.path().join("tessera.toml");
        std::fs::write(&path, format!("[[listener]]\n{listener}\n{site}")).unwrap();
        let (ok, out) = run_cli(&["check", "--config", &path.display().to_string()]);
        assert!(!ok, "{listener}: {out}");
        for w in words {
            assert!(out.contains(w), "{listener}: {out} lacks {w}");
        }
    }
}

#[tokio::test]
async fn a_listener_advertises_its_configured_alt_svc_in_place_of_the_origins() {
    let ca = Ca::new();
    let shop = ca.issue(&["shop.test"]);
    let origin = Origin::start(|seen: &crate::support::Seen, n| {
        cacheable(seen, n).header("alt-svc", "h2=\"origin.internal:8443\"")
    })
    .await;
    let toml = r#"
[[listener]]
address = "127.0.0.1:0"
certificate = "shop.pem"
key = "shop.key"
alt_svc = 'h3=":443"; ma=86400'

[[listener]]
address = "127.0.0.1:0"

[[site]]
name = "shop"
origin = "{origin}"
"#;
    let launch = Launch::config(&origin, toml);
    write_pair(launch.config_path().parent().unwrap(), "shop", &shop);
    let proxy = launch.start().await;
    assert_eq!(proxy.also.len(), 2);
    let (tls, plain) = (proxy.also[0].1, proxy.also[1].1);

    // The TLS listener: its own advertisement, on a miss and on a hit alike.
    for expected in ["MISS", "HIT"] {
        let resp = get_http1(tls, &ca, "shop.test", "/a").await;
        assert_eq!(resp.headers()["x-cache"], expected);
        let all: Vec<_> = resp.headers().get_all("alt-svc").iter().collect();
        assert_eq!(all, [r#"h3=":443"; ma=86400"#], "{expected}");
    }
    // Listeners without `alt_svc`, and `listen`, pass the stored field through untouched.
    for addr in [plain, proxy.addr] {
        let got = send(addr, "GET", "/a", &[]).await;
        assert_eq!(got.h("x-cache"), "HIT");
        assert_eq!(got.h("alt-svc"), r#"h2="origin.internal:8443""#);
    }
    assert_eq!(origin.count(), 1);
}
