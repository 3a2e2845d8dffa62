//! The admin listener, on an address of its own: purge and publish events, metrics,
//! health, and a status page, behind a bearer token.
//!
//! ```text
//! auth     the token and the constant-time check            (auth.rs)
//! routes   one request → one answer; the audit log           (routes.rs)
//! purge    JSON purge requests and publish events → targets  (purge.rs)
//! status   the HTML status page with its SVG charts          (status.rs)
//! ```

mod auth;
pub mod client;
pub mod purge;
mod routes;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

pub use auth::{Token, MIN_TOKEN_LEN};

use crate::config::AdminConfig;
use crate::proxy::Shared;

/// Admin connections served at once; more wait in the kernel's queue.
const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A running admin listener.
pub struct Admin {
    /// The address bound.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Admin {
    /// Stops accepting and closes idle connections.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the admin listener on `listen`. Refuses to when no token is configured, unless
/// `listen` is a loopback address (development on one's own machine).
pub async fn start(
    shared: Arc<Shared>,
    listen: SocketAddr,
    cfg: &AdminConfig,
) -> anyhow::Result<Admin> {
    let token = Token::from_config(cfg)?;
    match &token {
        None if !listen.ip().is_loopback() => anyhow::bail!(
            "admin listener {listen}: no token configured (set the environment variable {} or \
             `admin.token_file`); without one it may only listen on a loopback address",
            cfg.token_env
        ),
        None => tracing::warn!(
            "admin listener {listen} has no token: anyone on this machine can purge (development only)"
        ),
        Some(_) => {}
    }
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("admin listener: cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let ctx = Arc::new(routes::Ctx::new(shared, token));
    let task = tokio::spawn(accept_loop(ctx, listener, stopped));
    Ok(Admin { addr, stop, task })
}

async fn accept_loop(
    ctx: Arc<routes::Ctx>,
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Some((slot, stream, peer)) =
            crate::proxy::next_connection(&listener, &slots, &mut stopped, "admin").await
        else {
            break;
        };
        let ctx = ctx.clone();
        let mut stop = stopped.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, std::convert::Infallible>(routes::handle(&ctx, peer, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(HEADER_TIMEOUT, conn).await;
                }
            }
            drop(slot);
        });
    }
}
