//! A loopback origin for benchmarks: hyper serving one answer function on an ephemeral port.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

/// Starts an origin on 127.0.0.1 that answers every request with `answer(request)`.
pub async fn start<F>(answer: F) -> SocketAddr
where
    F: Fn(&hyper::Request<hyper::body::Incoming>) -> hyper::Response<Full<Bytes>>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let resp = answer(&req);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}
