//! Misses streamed to the client while the cache fills: the first bytes arrive before the
//! origin has finished, a client that hangs up does not cost the cache the object, and
//! what cannot be stored (too large, broken off) still reaches the client and is not kept.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::support::{origin_reaches, read_to, Lib, Origin, Reply, PATIENCE};

const SITE: &str = "[[site]]\nname = \"s\"\norigin = \"{origin}\"\n";

/// Sends a GET and reads until `want` has arrived (bounded by PATIENCE); the connection
/// stays open for the caller.
async fn read_until(lib: &Lib, path: &str, want: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(lib.addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let text = read_more(&mut s, want).await;
    (s, text)
}

/// Reads from `s` until `want` has arrived (bounded by PATIENCE); what was read.
async fn read_more(s: &mut TcpStream, want: &str) -> String {
    let got = read_to(s, want).await;
    assert!(got.contains(want), "closed before `{want}`: {got}");
    got
}

#[tokio::test]
async fn the_first_bytes_of_a_miss_reach_the_client_before_the_origin_has_finished() {
    let gate = Arc::new(Semaphore::new(0));
    let origin = Origin::start({
        let gate = gate.clone();
        move |_, _| {
            Reply::ok("first part;")
                .header("cache-control", "max-age=600")
                .then(&gate, b"second part")
        }
    })
    .await;
    let lib = Lib::start(&origin, SITE).await;

    // The origin holds back its second part until the test says so: the client already
    // has the first.
    let (mut conn, head) = read_until(&lib, "/big", "first part;").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.contains("second part"));
    gate.add_permits(1);
    // Up to the chunked body's last chunk, which ends the response.
    read_more(&mut conn, "second part\r\n0\r\n\r\n").await;

    // And the same bytes became the stored object.
    let hit = lib.get("/big", &[]).await;
    assert!(hit.hit(), "{}", hit.cache_status());
    assert_eq!(hit.body, "first part;second part");
    assert_eq!(origin.count(), 1);
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_miss_does_not_cost_the_cache_the_object() {
    let gate = Arc::new(Semaphore::new(0));
    let origin = Origin::start({
        let gate = gate.clone();
        move |_, _| {
            Reply::ok("head;")
                .header("cache-control", "max-age=600")
                .then(&gate, b"tail")
        }
    })
    .await;
    let lib = Lib::start(&origin, SITE).await;
    let (conn, _) = read_until(&lib, "/doc", "head;").await;
    drop(conn);
    gate.add_permits(1);
    // The fill goes on without its client: the next request is served the whole object
    // (waiting for the fill if it is still running), and the origin was asked once.
    let got = lib.get("/doc", &[]).await;
    assert_eq!(got.body, "head;tail");
    assert_eq!(origin.count(), 1);
    let again = lib.get("/doc", &[]).await;
    assert!(again.hit() && again.body == "head;tail");
}

#[tokio::test]
async fn a_streamed_body_over_the_object_limit_reaches_the_client_and_is_not_kept() {
    let gate = Arc::new(Semaphore::new(0));
    let first = "a".repeat(700);
    let second = "b".repeat(700);
    let origin = Origin::start({
        let (gate, first, second) = (gate.clone(), first.clone(), second.clone());
        move |_, _| {
            Reply::ok(&first)
                .header("cache-control", "max-age=600")
                .then(&gate, second.as_bytes())
        }
    })
    .await;
    let lib = Lib::start(
        &origin,
        &format!("[cache]\nmax_object_size = \"1KiB\"\n{SITE}"),
    )
    .await;
    gate.add_permits(2);
    for n in 1..=2 {
        let got = lib.get("/video", &[]).await;
        assert_eq!(got.body.len(), 1400);
        assert_eq!(got.body, format!("{first}{second}"));
        assert!(!got.hit());
        assert_eq!(
            origin.count(),
            n,
            "not stored: every request goes to the origin"
        );
    }
}

#[tokio::test]
async fn a_body_the_origin_breaks_off_is_cut_for_the_client_and_never_stored() {
    let gate = Arc::new(Semaphore::new(0));
    let origin = Origin::start({
        let gate = gate.clone();
        move |_, n| match n {
            1 => Reply::ok("partial;")
                .header("cache-control", "max-age=600")
                .then_break(&gate),
            _ => Reply::ok("whole").header("cache-control", "max-age=600"),
        }
    })
    .await;
    let lib = Lib::start(&origin, SITE).await;
    let (mut conn, _) = read_until(&lib, "/f", "partial;").await;
    gate.add_permits(1);
    // The client's chunked body never gets its last chunk: the connection ends without it.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut rest)).await;
    assert!(
        !String::from_utf8_lossy(&rest).contains("0\r\n\r\n"),
        "a clean end was faked"
    );
    assert_eq!(origin_reaches(&origin, 1).await, 1);
    let got = lib.get("/f", &[]).await;
    assert_eq!(got.body, "whole", "the broken body was not stored");
    assert_eq!(origin.count(), 2);
}

#[tokio::test]
async fn requests_coalesced_onto_a_streaming_miss_read_it_as_it_comes() {
    let gate = Arc::new(Semaphore::new(0));
    let origin = Origin::start({
        let gate = gate.clone();
        move |_, _| {
            // A length that fits the cache: the fill is shared as it arrives.
            Reply::ok("first;")
                .header("cache-control", "max-age=600")
                .header("content-length", "12")
                .then(&gate, b"second")
        }
    })
    .await;
    let lib = Lib::start(&origin, SITE).await;
    let (mut leader, _) = read_until(&lib, "/o", "first;").await;
    // A second client joins the fill in progress and gets its first bytes before the
    // origin has sent the rest.
    let (mut follower, head) = read_until(&lib, "/o", "first;").await;
    assert!(head.contains("collapsed"), "{head}");
    // A range request waits for the complete object instead.
    let ranged = tokio::spawn({
        let addr = lib.addr;
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /o HTTP/1.1\r\nHost: shop.test\r\nRange: bytes=6-11\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            String::from_utf8_lossy(&out).into_owned()
        }
    });
    gate.add_permits(1);
    for conn in [&mut leader, &mut follower] {
        read_more(conn, "second").await;
    }
    let ranged = tokio::time::timeout(PATIENCE, ranged)
        .await
        .unwrap()
        .unwrap();
    assert!(ranged.starts_with("HTTP/1.1 206"), "{ranged}");
    assert!(ranged.ends_with("second"), "{ranged}");
    assert_eq!(origin.count(), 1);
}

#[tokio::test]
async fn a_slow_client_on_an_oversized_miss_holds_up_no_one_else() {
    let gate = Arc::new(Semaphore::new(0));
    let big = "x".repeat(2048);
    let origin = Origin::start({
        let (gate, big) = (gate.clone(), big.clone());
        move |_, n| match n {
            // Over the 1 KiB limit at once, with no length, and then it waits.
            1 => Reply::ok(&big)
                .header("cache-control", "max-age=600")
                .then(&gate, b"tail"),
            _ => Reply::ok("second fetch").header("cache-control", "max-age=600"),
        }
    })
    .await;
    let lib = Lib::start(
        &origin,
        &format!("[cache]\nmax_object_size = \"1KiB\"\n{SITE}"),
    )
    .await;
    // The first client gets its first bytes and then reads no more.
    let (_slow, _) = read_until(&lib, "/big", "xxxx").await;
    // Another request for the same object does not wait on that client's pace.
    let got = lib.get("/big", &[]).await;
    assert_eq!(got.body, "second fetch");
    assert_eq!(origin.count(), 2);
    gate.add_permits(1);
}

/// An origin that answers every request with `chunks` one-byte chunks of `x`, written at
/// once, then closes; counts the requests it answered.
async fn tiny_chunk_origin(
    chunks: usize,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut out = b"HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\n\
                    transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                    .to_vec();
                for _ in 0..chunks {
                    out.extend_from_slice(b"1\r\nx\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                let _ = s.write_all(&out).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, answered)
}

/// A chunked body's chunks: (how many, the bytes they carry). Panics on a malformed one.
fn dechunk(body: &[u8]) -> (usize, Vec<u8>) {
    let (mut at, mut count, mut data) = (0, 0, Vec::new());
    loop {
        let line_end = at + body[at..].windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[at..line_end]).unwrap(), 16).unwrap();
        at = line_end + 2;
        if size == 0 {
            return (count, data);
        }
        data.extend_from_slice(&body[at..at + size]);
        at += size + 2;
        count += 1;
    }
}

#[tokio::test]
async fn an_origin_s_one_byte_chunks_are_gathered_not_held_one_by_one() {
    // The attack: a body of 20,000 one-byte chunks. Held as they came, each would cost the
    // fill 64 bytes and pin hyper's read buffers until it ends. They reach the client, and
    // the cache, gathered into far fewer chunks, with every byte. (A count, not a time:
    // only about 10 s of stalls of 2 ms or more, or 4 minutes of frames, could reach the
    // bound.)
    const CHUNKS: usize = 20_000;
    let (addr, answered) = tiny_chunk_origin(CHUNKS).await;
    let unused = Origin::start(|_, _| Reply::ok("unused")).await;
    let toml = format!("[[site]]\nname = \"s\"\norigin = \"http://{addr}\"\n");
    let lib = Lib::start(&unused, &toml).await;

    let mut s = TcpStream::connect(lib.addr).await.unwrap();
    s.write_all(b"GET /tiny HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut raw))
        .await
        .expect("the response ends")
        .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let (chunks, body) = dechunk(&raw[split..]);
    assert_eq!(body, vec![b'x'; CHUNKS]);
    // One chunk per 16 KiB or per 2 ms pause of the origin; a loaded machine adds a few.
    assert!(chunks < CHUNKS / 20, "{chunks} chunks reached the client");

    let hit = lib.get("/tiny", &[]).await;
    assert!(hit.hit(), "{}", hit.cache_status());
    assert_eq!(hit.body, "x".repeat(CHUNKS));
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(unused.count(), 0);
}
