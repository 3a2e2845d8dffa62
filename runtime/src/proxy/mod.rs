//! The proxy server: listener, connection handling and the request pipeline.

mod headers;
mod pipeline;
mod range;
mod site;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use pipeline::Shared;
pub use site::SiteRuntime;

use crate::cache::Store;
use crate::config::{Config, MAX_GUEST_MEMORY};
use crate::guest::{GuestEngine, PoolSize};

/// Builds everything a config describes: engine, scripts, origin clients, cache.
pub fn build(config: Config) -> anyhow::Result<Arc<Shared>> {
    let engine = if config.sites.iter().any(|s| !s.scripts.is_empty()) {
        let max_memory = config
            .sites
            .iter()
            .map(|s| s.limits.memory_bytes)
            .max()
            .unwrap_or(0)
            .min(MAX_GUEST_MEMORY);
        Some(GuestEngine::new(PoolSize {
            max_memory,
            ..PoolSize::default()
        })?)
    } else {
        None
    };
    let mut sites = Vec::with_capacity(config.sites.len());
    for s in &config.sites {
        sites.push(Arc::new(SiteRuntime::new(
            s.clone(),
            engine.as_ref(),
            &config.compiled_dir,
        )?));
    }
    Ok(Arc::new(Shared {
        store: Store::new(config.cache.max_bytes),
        flights: Default::default(),
        sites,
        config,
    }))
}

/// A running proxy: its bound address and a handle to stop it.
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The shared state, for inspection (tests, admin).
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops (it only stops when told to).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds the configured address and serves in the background.
pub async fn serve(shared: Arc<Shared>) -> anyhow::Result<Running> {
    let listen = shared.config.listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let state = shared.clone();
    let task = tokio::spawn(async move {
        loop {
            let (stream, client) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopped.changed() => break,
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(state.handle(req, client).await) }
                });
                if let Err(e) = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%client, "connection ended: {e}");
                }
            });
        }
    });
    Ok(Running {
        addr,
        shared,
        stop,
        task,
    })
}
