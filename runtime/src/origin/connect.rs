//! How origin connections are made: over the network (TCP, TLS when the origin is https),
//! or in-process to a local origin (`tessera test`'s sample pages: no port, no socket).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::net::TcpStream;

use super::BoxError;

/// Bytes buffered each way on an in-process connection.
const LOCAL_BUFFER: usize = 64 * 1024;

/// An origin served in this process: given the server's end of each new connection, it
/// serves HTTP/1.1 on it.
#[derive(Clone)]
pub struct LocalOrigin(Arc<dyn Fn(DuplexStream) + Send + Sync>);

impl LocalOrigin {
    /// An origin that serves each connection with `serve`.
    pub fn new(serve: impl Fn(DuplexStream) + Send + Sync + 'static) -> LocalOrigin {
        LocalOrigin(Arc::new(serve))
    }
}

impl std::fmt::Debug for LocalOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalOrigin")
    }
}

/// Makes an origin client's connections.
#[derive(Clone)]
pub enum Connector {
    /// TCP, with TLS for an https origin.
    Net(HttpsConnector<HttpConnector>),
    /// In-process.
    Local(LocalOrigin),
}

/// One origin connection.
// The network variant is the one in use outside tests: boxing it would cost every origin
// connection an allocation to save bytes on the test runner's.
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    /// Over the network.
    Net(MaybeHttpsStream<TokioIo<TcpStream>>),
    /// In-process.
    Local(TokioIo<DuplexStream>),
}

impl tower_service::Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Connector::Net(c) => c.poll_ready(cx),
            Connector::Local(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        match self {
            Connector::Net(c) => {
                let connecting = c.call(uri);
                Box::pin(async move { connecting.await.map(Conn::Net) })
            }
            Connector::Local(origin) => {
                let (client, server) = tokio::io::duplex(LOCAL_BUFFER);
                (origin.0)(server);
                Box::pin(async move { Ok(Conn::Local(TokioIo::new(client))) })
            }
        }
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Conn::Net(s) => s.connected(),
            Conn::Local(_) => Connected::new(),
        }
    }
}

impl Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Net(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Local(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Net(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Local(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Net(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Local(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Net(s) => s.is_write_vectored(),
            Conn::Local(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Net(s) => Pin::new(s).poll_flush(cx),
            Conn::Local(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Net(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Local(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
