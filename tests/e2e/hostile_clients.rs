//! Clients that misbehave: slow heads, idle keep-alives, huge heads, pipelining, odd ranges,
//! oversized bodies, too many connections, and a shutdown while requests are in flight.

use std::time::Duration;

use crate::support::{origin_reaches, raw, send, Origin, Proxy, Reply, PATIENCE};

fn cacheable(body: &str) -> Reply {
    Reply::ok(body).header("cache-control", "max-age=60")
}

fn server(extra: &str) -> String {
    format!("[server]\n{extra}\n[[site]]\nname = \"s\"\norigin = \"{{origin}}\"\n")
}

#[tokio::test]
async fn a_request_head_sent_too_slowly_gets_the_connection_closed() {
    let origin = Origin::start(|_, _| cacheable("page")).await;
    let proxy = Proxy::with_config(&origin, &server("header_read_timeout_ms = 200")).await;
    // Half a request head, then silence: the server must hang up, not wait forever.
    let got = raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: shop.test\r\nX-Slow: ",
        PATIENCE,
    )
    .await;
    assert_eq!(got, "", "closed without an answer");
    assert_eq!(origin.count(), 0);
    // Other clients are still served.
    assert_eq!(proxy.get("/", &[]).await.body, "page");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout() {
    let origin = Origin::start(|_, _| cacheable("page")).await;
    let proxy = Proxy::with_config(
        &origin,
        &server("keepalive_timeout_ms = 200\nheader_read_timeout_ms = 60000"),
    )
    .await;
    // One complete request on a kept-alive connection, then nothing: the answer arrives,
    // then the server closes the idle connection by itself (read_to_end sees EOF).
    let got = raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n",
        PATIENCE,
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("page"), "{got}");
}

#[tokio::test]
async fn too_many_or_too_large_header_fields_get_431_and_never_reach_the_origin() {
    let origin = Origin::start(|_, _| cacheable("page")).await;
    let proxy = Proxy::with_config(
        &origin,
        &server("max_headers = 20\nmax_header_bytes = \"8KiB\""),
    )
    .await;
    let mut many = String::from("GET / HTTP/1.1\r\nHost: shop.test\r\n");
    for i in 0..50 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let got = raw(proxy.addr, many.as_bytes(), PATIENCE).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: shop.test\r\nX-Big: {}\r\n\r\n",
        "b".repeat(16 << 10)
    );
    let got = raw(proxy.addr, big.as_bytes(), PATIENCE).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    assert_eq!(origin.count(), 0);
}

#[tokio::test]
async fn pipelined_requests_on_one_connection_are_answered_in_order() {
    let origin = Origin::start(|s, n| cacheable(&format!("{} #{n}", s.path_and_query))).await;
    let proxy = Proxy::quick(&origin, &[]).await;
    let two = b"GET /a HTTP/1.1\r\nHost: shop.test\r\n\r\nGET /b HTTP/1.1\r\nHost: shop.test\r\n\r\nGET /a HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n";
    let got = raw(proxy.addr, two, PATIENCE).await;
    let a = got.find("/a #1").expect("first answer");
    let b = got.find("/b #2").expect("second answer");
    let again = got.rfind("/a #1").expect("third answer, from cache");
    assert!(a < b && b < again, "{got}");
    assert_eq!(got.matches("HTTP/1.1 200").count(), 3, "{got}");
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn ranges_on_empty_and_tiny_bodies_never_break_the_connection() {
    let origin = Origin::start(|s, _| {
        let body = if s.path_and_query == "/empty" {
            ""
        } else {
            "x"
        };
        cacheable(body)
    })
    .await;
    let proxy = Proxy::quick(&origin, &[]).await;
    for path in ["/empty", "/tiny"] {
        assert_eq!(proxy.get(path, &[]).await.status, 200, "filled");
    }
    for range in [
        "bytes=0-",
        "bytes=-5",
        "bytes=0-0",
        "bytes=1-",
        "bytes=0-0,0-0,-1",
        "bytes=5-1",
        "bytes=-0",
    ] {
        // Each odd range, then an ordinary request on the same kept-alive connection: the
        // connection must survive whatever the range did.
        let req = format!(
            "GET /empty HTTP/1.1\r\nHost: shop.test\r\nRange: {range}\r\n\r\nGET /tiny HTTP/1.1\r\nHost: shop.test\r\nRange: {range}\r\n\r\nGET /tiny HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"
        );
        let got = raw(proxy.addr, req.as_bytes(), PATIENCE).await;
        assert_eq!(got.matches("HTTP/1.1 ").count(), 3, "{range}: {got}");
        assert!(got.ends_with("\r\n\r\nx"), "{range}: {got}");
        assert!(!got.contains("HTTP/1.1 5"), "{range}: {got}");
    }
    let empty = proxy.get("/empty", &[("range", "bytes=0-")]).await;
    assert_eq!(empty.status, 416);
    assert_eq!(empty.h("content-range"), "bytes */0");
    let tiny = proxy.get("/tiny", &[("range", "bytes=-5")]).await;
    assert_eq!((tiny.status, tiny.body.as_str()), (206, "x"));
    assert_eq!(tiny.h("content-range"), "bytes 0-0/1");
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn a_request_body_over_the_cap_gets_413() {
    let origin = Origin::start(|_, _| Reply::ok("accepted")).await;
    let proxy = Proxy::with_config(&origin, &server("max_request_body = \"1KiB\"")).await;
    let declared = format!(
        "POST /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n{}",
        "x".repeat(4096)
    );
    let got = raw(proxy.addr, declared.as_bytes(), PATIENCE).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert_eq!(origin.count(), 0, "refused before the origin");
    let chunk = "x".repeat(1000);
    let chunked = format!(
        "POST /upload HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3e8\r\n{chunk}\r\n3e8\r\n{chunk}\r\n3e8\r\n{chunk}\r\n0\r\n\r\n"
    );
    let got = raw(proxy.addr, chunked.as_bytes(), PATIENCE).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    let small = format!(
        "POST /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{}",
        "x".repeat(10)
    );
    let got = raw(proxy.addr, small.as_bytes(), PATIENCE).await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("accepted"),
        "{got}"
    );
}

#[tokio::test]
async fn past_max_connections_new_clients_wait_until_one_leaves() {
    let origin = Origin::start(|_, _| cacheable("page")).await;
    let proxy = Proxy::with_config(&origin, &server("max_connections = 1")).await;
    let mut first = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        first
            .write_all(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = first.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    // The only slot is held by the idle keep-alive connection above: a second client is
    // not served while it lasts (this can only fail if the limit is broken)...
    let addr = proxy.addr;
    let second = tokio::spawn(async move { send(addr, "GET", "/", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "served past max_connections");
    // ...and is served as soon as it ends.
    drop(first);
    let got = tokio::time::timeout(PATIENCE, second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.body, "page");
}

#[tokio::test]
async fn sigterm_drains_requests_in_flight_then_exits_cleanly() {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let origin = Origin::start(move |_, _| Reply::ok("finished").gate(&g)).await;
    let mut proxy = Proxy::quick(&origin, &[]).await;
    let addr = proxy.addr;
    let slow = tokio::spawn(async move { send(addr, "GET", "/slow", &[]).await });
    assert_eq!(origin_reaches(&origin, 1).await, 1);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(proxy.pid() as i32, libc::SIGTERM) };
    // New connections are refused once the listener is gone...
    let mut refused = false;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "listener still open after SIGTERM");
    // ...while the request in flight completes.
    gate.add_permits(1);
    let got = slow.await.unwrap();
    assert_eq!((got.status, got.body.as_str()), (200, "finished"));
    assert!(proxy.exit_status().await, "exit code 0 after draining");
}

#[tokio::test]
async fn a_host_that_is_not_host_and_port_gets_400_and_never_reaches_the_origin() {
    // `shop.test:8080/account` with `GET /x` would otherwise key `/x`'s answer under
    // `/account/x`'s key (the port is stripped to find the site, the rest kept).
    let origin = Origin::start(|s, _| cacheable(&format!("page {}", s.path_and_query))).await;
    let proxy = Proxy::with_config(&origin, &server("")).await;
    for host in [
        "shop.test:8080/account",
        "shop.test?x=1",
        "user@shop.test",
        "shop.test:x",
    ] {
        let req = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let got = raw(proxy.addr, req.as_bytes(), PATIENCE).await;
        assert!(got.starts_with("HTTP/1.1 400"), "{host}: {got}");
        assert!(got.contains("bad-host"), "{host}: {got}");
    }
    // Two Host lines (which one would the origin believe?), and one that is not text.
    for req in [
        &b"GET /x HTTP/1.1\r\nHost: shop.test\r\nHost: other.test\r\nConnection: close\r\n\r\n"[..],
        &b"GET /x HTTP/1.1\r\nHost: shop.test\xff/account\r\nConnection: close\r\n\r\n"[..],
        &b"GET http://shop.test/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"[..],
    ] {
        let got = raw(proxy.addr, req, PATIENCE).await;
        assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    }
    assert_eq!(origin.count(), 0);
}

#[tokio::test]
async fn an_absolute_form_target_decides_the_host_the_origin_is_asked_for() {
    // RFC 9112 §3.2.2: the target's authority wins over a Host field beside it, for the key
    // and for the origin alike; otherwise a tenant's page would be stored under another's.
    let origin = Origin::start(|s, _| {
        cacheable(&format!(
            "page for {}",
            s.headers["host"].to_str().unwrap_or("?")
        ))
    })
    .await;
    let proxy = Proxy::with_config(&origin, &server("")).await;
    let got = raw(
        proxy.addr,
        b"GET http://shop.test/p HTTP/1.1\r\nHost: tenant.example\r\nConnection: close\r\n\r\n",
        PATIENCE,
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("page for shop.test"), "{got}");
    assert_eq!(origin.seen()[0].headers["host"], "shop.test");
    // Stored under shop.test's key, and what shop.test's visitors get is shop.test's page.
    assert_eq!(proxy.get("/p", &[]).await.body, "page for shop.test");
    assert_eq!(origin.count(), 1);
}
