//! The listener: accepts connections up to a limit and drains them on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use super::conn;
use super::recv::ConnInfo;
use super::Shared;

/// Connections the kernel may hold for us while we are at `max_connections`.
const BACKLOG: u32 = 4096;

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

/// Binds the configured address and serves in the background.
pub async fn serve(shared: Arc<Shared>) -> anyhow::Result<Running> {
    let listen = shared.generation().config.listen;
    let listener = bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let state = shared.clone();
    let task = tokio::spawn(accept_loop(state, listener, stopped));
    Ok(Running {
        addr,
        shared,
        stop,
        task,
    })
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
) {
    let cfg = shared.generation().config.server.clone();
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let Some((slot, stream, peer)) =
            next_connection(&listener, &slots, &mut stopped, "proxy").await
        else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let info = ConnInfo {
            peer,
            scheme: "http",
        };
        let shared = shared.clone();
        let stop = stopped.clone();
        tracker.spawn(async move {
            conn::serve(shared, stream, info, stop).await;
            drop(slot);
        });
    }
    drop(listener);
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
