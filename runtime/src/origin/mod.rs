//! Origin client: pooled HTTP/1.1 connections (plain or TLS) with connect and response timeouts.

mod connect;

use connect::Connector;
pub use connect::LocalOrigin;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Body type of requests sent to origins.
pub type OutBody = BoxBody<Bytes, BoxError>;
/// Boxed error of bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the origin gave no response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OriginError {
    /// Connection refused, reset or unroutable.
    #[error("origin unreachable: {0}")]
    Connect(String),
    /// No response head (or body) within the configured time.
    #[error("origin timed out")]
    Timeout,
    /// The TLS handshake failed: an unknown or wrong certificate, or no common protocol.
    #[error("origin TLS failed: {0}")]
    Tls(String),
}

impl OriginError {
    /// Token for `Cache-Status` `detail`.
    pub fn detail(&self) -> &'static str {
        match self {
            OriginError::Connect(_) => "origin-unreachable",
            OriginError::Timeout => "origin-timeout",
            OriginError::Tls(_) => "origin-tls-error",
        }
    }
}

/// A pooled client for one site's origin.
#[derive(Clone)]
pub struct OriginClient {
    client: Client<Connector, OutBody>,
    response_timeout: Duration,
    site: std::sync::Arc<str>,
}

/// A response body from an origin, counted into the site's `origin_bytes` as it is read.
pub struct OriginBody {
    inner: Incoming,
    site: std::sync::Arc<str>,
    bytes: u64,
}

impl Drop for OriginBody {
    fn drop(&mut self) {
        crate::observe::metrics()
            .origin_bytes
            .get_or_create(&crate::observe::site(&self.site))
            .inc_by(self.bytes);
    }
}

impl http_body::Body for OriginBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                self.bytes += d.len() as u64;
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl OriginClient {
    /// A client for `site`'s origin with the site's timeouts; `tls` for an https origin
    /// (then only TLS connections are made), `None` for plain http.
    pub fn new(
        site: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
        tls: Option<rustls::ClientConfig>,
    ) -> OriginClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        // The https connector wraps TCP either way; only the scheme of the site's origin
        // (fixed by the config) decides whether TLS is spoken, never a fallback.
        connector.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let connector = match tls {
            Some(config) => builder.with_tls_config(config).https_only(),
            None => builder
                .with_tls_config(
                    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                )
                .https_or_http(),
        }
        .enable_http1()
        .wrap_connector(connector);
        OriginClient::with(site, Connector::Net(connector), response_timeout)
    }

    /// A client for `site` whose connections go to `origin`, in this process.
    pub fn local(site: &str, response_timeout: Duration, origin: LocalOrigin) -> OriginClient {
        OriginClient::with(site, Connector::Local(origin), response_timeout)
    }

    fn with(site: &str, connector: Connector, response_timeout: Duration) -> OriginClient {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        OriginClient {
            client,
            response_timeout,
            site: site.into(),
        }
    }

    /// How long the origin has for its response head, and again for its body.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// Sends a request and waits for the response head.
    pub async fn send(&self, req: Request<OutBody>) -> Result<Response<OriginBody>, OriginError> {
        let m = crate::observe::metrics();
        let site = crate::observe::site(&self.site);
        m.origin_requests.get_or_create(&site).inc();
        crate::observe::board().origin();
        let started = std::time::Instant::now();
        let r = self.send_timed(req).await;
        m.origin_seconds
            .get_or_create(&site)
            .observe(started.elapsed().as_secs_f64());
        r.map(|resp| {
            resp.map(|inner| OriginBody {
                inner,
                site: self.site.clone(),
                bytes: 0,
            })
        })
    }

    async fn send_timed(&self, req: Request<OutBody>) -> Result<Response<Incoming>, OriginError> {
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(OriginError::Timeout),
            Ok(Err(e)) => {
                if is_timeout(&e) {
                    Err(OriginError::Timeout)
                } else if crate::tls::client::is_tls_error(&e) {
                    Err(OriginError::Tls(error_chain(&e)))
                } else {
                    Err(OriginError::Connect(error_chain(&e)))
                }
            }
            Ok(Ok(r)) => Ok(r),
        }
    }
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        if err.to_string().contains("timed out") {
            return true;
        }
        cur = err.source();
    }
    false
}

pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(err) = cur {
        parts.push(err.to_string());
        cur = err.source();
    }
    parts.join(": ")
}

/// An empty request body.
pub fn empty() -> OutBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A complete request body.
pub fn full(bytes: Bytes) -> OutBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed()
}

/// A response whose body is `prefix` (already read) followed by the rest of `body`.
pub fn prefixed(head: http::response::Parts, prefix: Bytes, rest: OriginBody) -> Response<OutBody> {
    let first =
        futures_util::stream::once(
            async move { Ok::<_, BoxError>(hyper::body::Frame::data(prefix)) },
        );
    let rest = http_body_util::BodyStream::new(rest.map_err(|e| Box::new(e) as BoxError));
    let stream = futures_util::StreamExt::chain(first, rest);
    Response::from_parts(head, http_body_util::StreamBody::new(stream).boxed())
}

/// Reads a whole response body of at most `limit` bytes (a one-piece body without a copy).
pub async fn collect_body(mut body: OutBody, limit: u64) -> Result<Bytes, String> {
    let mut first: Option<Bytes> = None;
    let mut rest = bytes::BytesMut::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len() as u64;
        if len > limit {
            return Err(format!("body larger than {limit} bytes"));
        }
        match first.take() {
            None if rest.is_empty() => first = Some(data),
            None => rest.extend_from_slice(&data),
            Some(f) => {
                rest.extend_from_slice(&f);
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

/// How a body read ended when a size bound applies.
pub enum Collected {
    /// The whole body, within the bound.
    Complete(Bytes),
    /// The bound was passed: what was read so far and the rest, still streaming.
    TooLarge(Bytes, OriginBody),
}

/// Reads a body up to `limit` bytes within `timeout`.
pub async fn collect_limited(
    mut body: OriginBody,
    limit: u64,
    timeout: Duration,
) -> Result<Collected, OriginError> {
    let mut buf = bytes::BytesMut::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| OriginError::Connect(error_chain(&e)))?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() as u64 > limit {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(OriginError::Timeout),
        Ok(Err(e)) => Err(e),
        Ok(Ok(false)) => Ok(Collected::Complete(buf.freeze())),
        Ok(Ok(true)) => Ok(Collected::TooLarge(buf.freeze(), body)),
    }
}
