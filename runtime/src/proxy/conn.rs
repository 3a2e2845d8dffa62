//! One client connection: HTTP/1.1 or h2, with a watchdog against slow and idle clients.
//!
//! hyper's own header-read timer also runs while an HTTP/1 connection idles between
//! requests, which would make the keep-alive timeout equal to the header timeout. The
//! watchdog here tells the two apart: a client that has started a request head has
//! `header_read_timeout` to finish it; a connection with nothing in flight is closed
//! gracefully after `keepalive_timeout`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use super::driver::handle;
use super::recv::ConnInfo;
use super::Shared;
use crate::config::ServerConfig;
use crate::origin::{BoxError, OutBody};

/// Serves one connection until it closes, times out, or the server drains.
pub async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    info: ConnInfo,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = shared.generation().config.server.clone();
    let activity = Arc::new(Activity::new());
    let io = Watched {
        inner: stream,
        activity: activity.clone(),
    };
    let svc_activity = activity.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let guard = svc_activity.begin(req.version());
        async move {
            let resp = handle(shared, req, info).await;
            Ok::<_, std::convert::Infallible>(resp.map(|body| Tracked {
                body,
                _guard: guard,
            }))
        }
    });
    let builder = builder(&cfg);
    // With upgrades: a WebSocket handshake the origin accepts hands this connection over.
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut draining = *stop.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %info.peer, "connection ended: {e}");
                }
                return;
            }
            changed = stop.changed(), if !draining => {
                if changed.is_err() || *stop.borrow() {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            expired = activity.expiry(&cfg), if !draining => match expired {
                // A slow request head (slowloris): close at once, nothing is in flight.
                Expired::Header => {
                    tracing::debug!(peer = %info.peer, "request head not received in time");
                    return;
                }
                Expired::Idle => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            },
        }
    }
}

fn builder(cfg: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_headers(cfg.max_headers)
        .max_buf_size(cfg.max_header_bytes);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.h2_max_concurrent_streams)
        .max_header_list_size(cfg.max_header_bytes as u32)
        // Rapid reset (CVE-2023-44487): few streams may sit reset-but-unaccepted, and a peer
        // that keeps provoking resets loses its connection.
        .max_pending_accept_reset_streams(Some(64))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Why the watchdog wants the connection gone.
enum Expired {
    Header,
    Idle,
}

/// What the watchdog knows of a connection; times are milliseconds after `start`.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    last: AtomicU64,
    /// When the first byte of a request head arrived on an idle connection; 0 when none.
    head_started: AtomicU64,
    h2: AtomicBool,
    /// Wakes the watchdog when a head starts, so its deadline is re-computed at once.
    started: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(1),
            head_started: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            started: tokio::sync::Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    fn read(&self, n: usize) {
        let now = self.now();
        if self.h2.load(Ordering::Relaxed) {
            // h2 frames (pings, window updates) arrive between requests; only requests
            // count as activity there, so a pinging client still idles out.
            return;
        }
        self.last.store(now, Ordering::Relaxed);
        if n > 0
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started.store(now, Ordering::Relaxed);
            self.started.notify_one();
        }
    }

    fn wrote(&self) {
        if !self.h2.load(Ordering::Relaxed) {
            self.last.store(self.now(), Ordering::Relaxed);
        }
    }

    /// A request head arrived: it is in flight until its response body is done.
    fn begin(self: &Arc<Self>, version: Version) -> Guard {
        if version == Version::HTTP_2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
        Guard(self.clone())
    }

    /// Resolves when a timeout passes; re-checks whenever a deadline comes, since activity
    /// may have moved it.
    async fn expiry(&self, cfg: &ServerConfig) -> Expired {
        let header = cfg.header_read_timeout.as_millis() as u64;
        let idle = cfg.keepalive_timeout.as_millis() as u64;
        loop {
            let now = self.now();
            let wait = if self.in_flight.load(Ordering::Relaxed) > 0 {
                idle
            } else {
                let head = self.head_started.load(Ordering::Relaxed);
                if head != 0 {
                    let deadline = head + header;
                    if now >= deadline {
                        return Expired::Header;
                    }
                    deadline - now
                } else {
                    let deadline = self.last.load(Ordering::Relaxed) + idle;
                    if now >= deadline {
                        return Expired::Idle;
                    }
                    deadline - now
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait.max(10))) => {}
                _ = self.started.notified() => {}
            }
        }
    }
}

/// Marks one request in flight until dropped with its response body.
struct Guard(Arc<Activity>);

impl Drop for Guard {
    fn drop(&mut self) {
        let a = &self.0;
        a.last.store(a.now(), Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight until hyper is done with it.
struct Tracked {
    body: OutBody,
    _guard: Guard,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's stream, reporting reads and writes to the watchdog.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.activity.read(buf.filled().len() - before);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(_)) = r {
            self.activity.wrote();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(_)) = r {
            self.activity.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
