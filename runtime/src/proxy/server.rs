//! The listeners: cleartext and TLS addresses, accepted up to one connection limit and
//! drained together on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::conn;
use super::recv::ConnInfo;
use super::Shared;

/// Connections the kernel may hold for us while we are at `max_connections`.
const BACKLOG: u32 = 4096;

/// A running proxy: its bound addresses and a handle to stop it.
pub struct Running {
    /// The address of `listen` actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The `[[listener]]` addresses actually bound, in config order, with their scheme.
    pub listeners: Vec<(SocketAddr, &'static str)>,
    /// The shared state, for inspection (tests, admin).
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish (up to the drain timeout), returns.
    pub async fn shutdown(self) {
        self.shared.start_draining();
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops (it only stops when told to).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// One bound address and how its connections begin.
struct Bound {
    listener: TcpListener,
    /// `None`: cleartext (HTTP/1.1 and h2c); else the TLS handshake first.
    tls: Option<TlsAcceptor>,
    /// Its place among the `[[listener]]`s (`None`: `listen`); requests carry it so that
    /// per-listener settings are read from the configuration of the moment.
    configured: Option<usize>,
}

/// Binds `listen` and every `[[listener]]`, and serves them all in the background; one
/// connection limit and one drain cover them together.
pub async fn serve(shared: Arc<Shared>) -> anyhow::Result<Running> {
    let config = shared.generation().config.clone();
    if let Some(fleet) = &shared.fleet {
        // Other nodes' purges reach this one for as long as it serves.
        fleet.clone().follow(shared.store.clone());
    }
    let mut bound = Vec::new();
    let listener =
        bind(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    bound.push(Bound {
        listener,
        tls: None,
        configured: None,
    });
    let mut listeners = Vec::new();
    for (i, (l, resolver)) in config.listeners.iter().zip(&shared.tls).enumerate() {
        let listener =
            bind(l.address).with_context(|| format!("listener: cannot listen on {}", l.address))?;
        let tls = match resolver {
            Some(resolver) => Some(TlsAcceptor::from(Arc::new(resolver.server_config()?))),
            None => None,
        };
        listeners.push((
            listener.local_addr()?,
            if tls.is_some() { "https" } else { "http" },
        ));
        bound.push(Bound {
            listener,
            tls,
            configured: Some(i),
        });
    }
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(shared.clone(), bound, stopped));
    Ok(Running {
        addr,
        listeners,
        shared,
        stop,
        task,
    })
}

/// Accepts on every bound address until told to stop, then drains.
async fn run(shared: Arc<Shared>, bound: Vec<Bound>, stopped: watch::Receiver<bool>) {
    let cfg = shared.generation().config.server.clone();
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let tracker = TaskTracker::new();
    let loops: Vec<_> = bound
        .into_iter()
        .map(|b| {
            accept_loop(
                shared.clone(),
                b,
                slots.clone(),
                tracker.clone(),
                stopped.clone(),
            )
        })
        .collect();
    futures_util::future::join_all(loops).await;
    tracker.close();
    if tokio::time::timeout(cfg.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "drain timeout: {} connection(s) still open are closed",
            tracker.len()
        );
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    bound: Bound,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    mut stopped: watch::Receiver<bool>,
) {
    let Bound {
        listener,
        tls,
        configured,
    } = bound;
    let scheme = if tls.is_some() { "https" } else { "http" };
    loop {
        let Some((slot, stream, peer)) =
            next_connection(&listener, &slots, &mut stopped, scheme).await
        else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let info = ConnInfo {
            peer,
            scheme,
            listener: configured,
        };
        let shared = shared.clone();
        let stop = stopped.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            match tls {
                None => conn::serve(shared, stream, info, stop).await,
                Some(acceptor) => {
                    // The handshake gets the time a request head gets: a client that opens
                    // connections and never finishes the handshake holds nothing for long.
                    let limit = shared.generation().config.server.header_read_timeout;
                    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => conn::serve(shared, tls, info, stop).await,
                        Ok(Err(e)) => tracing::debug!(peer = %peer, "TLS handshake failed: {e}"),
                        Err(_) => {
                            tracing::debug!(peer = %peer, "TLS handshake not finished in time")
                        }
                    }
                }
            }
            drop(slot);
        });
    }
}

/// Waits for a free connection slot, then for a connection; `None` once `stopped` changes.
///
/// At the limit no connection is accepted: the kernel queues newcomers (and refuses them once
/// its backlog is full) instead of this process running out of memory or descriptors.
/// Accept errors (EMFILE and friends) back off instead of spinning.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    stopped: &mut watch::Receiver<bool>,
    what: &str,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    let slot = tokio::select! {
        s = slots.clone().acquire_owned() => s.expect("never closed"),
        _ = stopped.changed() => return None,
    };
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => return Some((slot, stream, peer)),
                Err(e) => {
                    tracing::warn!("{what}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stopped.changed() => return None,
        }
    }
}
