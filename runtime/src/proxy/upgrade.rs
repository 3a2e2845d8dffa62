//! Phase "upgrade": a client's HTTP/1.1 protocol upgrade (WebSocket) after `on_request`,
//! forwarded to the origin and, when it agrees (101), tunnelled byte for byte both ways
//! until either side closes or the tunnel stays idle. Never cached, never rewritten.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::deliver::{self, Answer};
use super::driver::Exchange;
use super::fetch::origin_request;
use super::headers::strip_hop_by_hop;
use super::outcome::{Outcome, PassReason, Refusal};

/// What a client asked to switch to, and the handle to its connection once switched.
pub struct ClientUpgrade {
    /// The `Upgrade` field as sent (e.g. `websocket`).
    protocol: HeaderValue,
    on: OnUpgrade,
}

/// The upgrade a request asks for: HTTP/1.1 `GET` with `Connection: upgrade` and an
/// `Upgrade` field (RFC 9110 §7.8). Takes hyper's handle to the connection.
pub fn requested<B>(req: &mut Request<B>) -> Option<ClientUpgrade> {
    if req.version() != Version::HTTP_11 || req.method() != Method::GET {
        return None;
    }
    let connection_says_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let protocol = req.headers().get(header::UPGRADE)?.clone();
    if !connection_says_upgrade || protocol.is_empty() {
        return None;
    }
    Some(ClientUpgrade {
        protocol,
        on: hyper::upgrade::on(req),
    })
}

/// Forwards the upgrade request; on the origin's 101, answers 101 and tunnels.
pub async fn forward(x: &mut Exchange, up: ClientUpgrade) -> Answer {
    // Tunnels outlive their request; they are bounded apart from requests.
    let Ok(permit) = x.shared.tunnels.clone().try_acquire_owned() else {
        return deliver::refused(Refusal::TooManyTunnels);
    };
    x.chain.park();
    let mut headers = x.req.headers.clone();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, up.protocol.clone());
    let out = origin_request(x, Method::GET, headers, crate::origin::empty(), false);
    let asked = Instant::now();
    let sent = x.site.origin.send(out).await;
    x.origin_wait += asked.elapsed();
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => return deliver::origin_error(&e, crate::cache::Fwd::Bypass),
    };
    let status = resp.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        // The origin declined: its answer goes back as it is, uncached.
        let (mut head, body) = resp.into_parts();
        strip_hop_by_hop(&mut head.headers);
        let body = crate::origin::prefixed(head, bytes::Bytes::new(), body);
        return Answer::new(
            body,
            Outcome::Pass {
                reason: PassReason::Upgrade,
                status: Some(status.as_u16()),
            },
        );
    }
    let origin_on = hyper::upgrade::on(&mut resp);
    let (mut head, _) = resp.into_parts();
    let protocol = head
        .headers
        .get(header::UPGRADE)
        .cloned()
        .unwrap_or(up.protocol);
    strip_hop_by_hop(&mut head.headers);
    head.headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    head.headers.insert(header::UPGRADE, protocol);
    let idle = x.gen.config.server.upgrade_idle_timeout;
    let id = x.id.clone();
    tokio::spawn(async move {
        let _permit = permit;
        match tokio::try_join!(up.on, origin_on) {
            Ok((client, origin)) => {
                tunnel(TokioIo::new(client), TokioIo::new(origin), idle, &id).await
            }
            Err(e) => tracing::debug!(request_id = &*id, "upgrade not completed: {e}"),
        }
    });
    let mut r = http::Response::from_parts(head, crate::origin::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    Answer::new(
        r,
        Outcome::Pass {
            reason: PassReason::Upgrade,
            status: Some(101),
        },
    )
}

/// Copies both ways until one side closes, an error, or `idle` without a byte.
async fn tunnel<A, B>(client: A, origin: B, idle: Duration, id: &str)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let clock = Arc::new(Clock::new());
    let mut client = Touching {
        inner: client,
        clock: clock.clone(),
    };
    let mut origin = Touching {
        inner: origin,
        clock: clock.clone(),
    };
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut origin) => match r {
            Ok((up, down)) => tracing::debug!(request_id = id, up, down, "tunnel closed"),
            Err(e) => tracing::debug!(request_id = id, "tunnel ended: {e}"),
        },
        () = clock.expired(idle) => tracing::debug!(request_id = id, "tunnel idle: closed"),
    }
}

/// When bytes last moved through a tunnel.
struct Clock {
    start: Instant,
    last_ms: AtomicU64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Resolves once `idle` has passed since the last byte.
    async fn expired(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let since = self.start.elapsed().saturating_sub(last);
            if since >= idle {
                return;
            }
            tokio::time::sleep(idle - since).await;
        }
    }
}

/// An IO that notes on the clock every read or write that moved bytes.
struct Touching<T> {
    inner: T,
    clock: Arc<Clock>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Touching<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Touching<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
