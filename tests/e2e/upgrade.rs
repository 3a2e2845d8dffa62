//! WebSocket (HTTP/1.1 upgrade) through the real binary: tunnelled both ways after
//! `on_request`, never cached, closed when idle; an origin that declines is answered as is.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{guest, Launch, Proxy, PATIENCE};

/// A WebSocket-like origin on raw TCP: records each request head; answers 101 and then
/// echoes every byte back, or (`accept = false`) answers 400.
async fn echo_origin(accept: bool) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else {
                    return;
                };
                seen.lock().unwrap().push(head);
                if !accept {
                    let _ = s
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 7\r\ncache-control: max-age=600\r\n\r\nno ws\r\n")
                        .await;
                    return;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
                    .await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, heads)
}

/// Reads up to the end of an HTTP head (bounded).
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Opens a connection to the proxy and sends a WebSocket handshake.
async fn handshake(proxy: &Proxy, user_agent: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let req = format!(
        "GET /chat HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: {user_agent}\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(PATIENCE, read_head(&mut s))
        .await
        .expect("an answer in time")
        .expect("an answer");
    (s, head)
}

fn config(origin: SocketAddr, extra: &str) -> String {
    format!(
        "{extra}\n[[site]]\nname = \"shop\"\norigin = \"http://{origin}\"\nscript = \"{}\"\n",
        guest("guest-examples/bot-block").display()
    )
}

#[tokio::test]
async fn a_websocket_is_tunnelled_both_ways_and_never_cached() {
    let (origin, heads) = echo_origin(true).await;
    let proxy = Launch::config_for("", &config(origin, "")).start().await;
    for round in 0..2 {
        let (mut s, head) = handshake(&proxy, "Mozilla/5.0").await;
        let lower = head.to_ascii_lowercase();
        assert!(lower.starts_with("http/1.1 101"), "{head}");
        assert!(
            lower.contains("upgrade: websocket") && lower.contains("connection: upgrade"),
            "{head}"
        );
        assert!(
            lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        for msg in [
            &b"hello"[..],
            &[0x81, 0x85, 1, 2, 3, 4, 0x49, 0x67, 0x6f, 0x68, 0x6e][..],
        ] {
            s.write_all(msg).await.unwrap();
            let mut back = vec![0u8; msg.len()];
            tokio::time::timeout(PATIENCE, s.read_exact(&mut back))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(back, msg, "round {round}");
        }
    }
    // Each handshake reached the origin, with the upgrade fields and the key.
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 2);
    for h in &heads {
        let lower = h.to_ascii_lowercase();
        assert!(lower.contains("upgrade: websocket"), "{h}");
        assert!(lower.contains("connection: upgrade"), "{h}");
        assert!(
            lower.contains("sec-websocket-key: dghlihnhbxbszsbub25jzq=="),
            "{h}"
        );
    }
}

#[tokio::test]
async fn on_request_runs_before_the_upgrade_and_a_declining_origin_is_answered_as_is() {
    let (origin, heads) = echo_origin(true).await;
    let proxy = Launch::config_for("", &config(origin, "")).start().await;
    let (_, head) = handshake(&proxy, "BadBot/1.0").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(
        heads.lock().unwrap().is_empty(),
        "the origin never heard of it"
    );

    let (declining, heads) = echo_origin(false).await;
    let proxy = Launch::config_for("", &config(declining, "")).start().await;
    for _ in 0..2 {
        let (mut s, head) = handshake(&proxy, "Mozilla/5.0").await;
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("upgrade: websocket"),
            "{head}"
        );
        // Not switched: after the 400's body, the connection still speaks HTTP.
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("a framed answer");
        let mut body = vec![0u8; length];
        s.read_exact(&mut body).await.unwrap();
        s.write_all(b"GET /again HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            .await
            .unwrap();
        let next = tokio::time::timeout(PATIENCE, read_head(&mut s))
            .await
            .unwrap()
            .unwrap();
        assert!(next.starts_with("HTTP/1.1 "), "{next}");
    }
    // Both declined handshakes went to the origin: nothing was cached.
    let upgrades = heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.starts_with("GET /chat"))
        .count();
    assert_eq!(upgrades, 2);
}

#[tokio::test]
async fn an_idle_tunnel_is_closed() {
    let (origin, _) = echo_origin(true).await;
    let proxy = Launch::config_for(
        "",
        &config(origin, "[server]\nupgrade_idle_timeout_ms = 300"),
    )
    .start()
    .await;
    let (mut s, head) = handshake(&proxy, "Mozilla/5.0").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).await.unwrap();
    // Then silence: the proxy closes the tunnel (the read sees the end).
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, s.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
}

#[tokio::test]
async fn tunnels_are_bounded_by_max_connections() {
    let (origin, heads) = echo_origin(true).await;
    let proxy = Launch::config_for("", &config(origin, "[server]\nmax_connections = 2"))
        .start()
        .await;
    let (_first, a) = handshake(&proxy, "Mozilla/5.0").await;
    let (_second, b) = handshake(&proxy, "Mozilla/5.0").await;
    assert!(
        a.starts_with("HTTP/1.1 101") && b.starts_with("HTTP/1.1 101"),
        "{a}{b}"
    );
    let (_, third) = handshake(&proxy, "Mozilla/5.0").await;
    assert!(third.starts_with("HTTP/1.1 503"), "{third}");
    assert!(
        third.to_ascii_lowercase().contains("upgrade-limit"),
        "{third}"
    );
    assert_eq!(heads.lock().unwrap().len(), 2);
    // A tunnel that ends gives its place back.
    drop(_first);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_s, head) = handshake(&proxy, "Mozilla/5.0").await;
        if head.starts_with("HTTP/1.1 101") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{head}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
