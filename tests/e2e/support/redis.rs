//! A real `redis-server` on a loopback port for fleet tests (Debian's package, installed
//! on first use when missing), and a TCP relay in front of it that a test can cut.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::PATIENCE;

/// Installs Debian's redis-server once per test run if it is not on the machine.
fn ensure_installed() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if *done {
        return;
    }
    let present = || {
        Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !present() {
        for args in [
            &["install", "-y", "-q", "redis-server"][..],
            &["update", "-q"],
            &["install", "-y", "-q", "redis-server"],
        ] {
            let _ = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if present() {
                break;
            }
        }
    }
    assert!(
        present(),
        "redis-server is missing and `apt-get install redis-server` did not install it"
    );
    *done = true;
}

/// A redis-server of this test, stopped on drop.
pub struct Redis {
    /// Where it listens.
    pub addr: SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one on a free loopback port, without persistence.
    pub async fn start() -> Redis {
        ensure_installed();
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new("redis-server")
                .args([
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while tokio::time::Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break; // the port was taken after all: another one
                }
                if TcpStream::connect(addr).await.is_ok() {
                    return Redis {
                        addr,
                        child,
                        _dir: dir,
                    };
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay to `target` that a test can cut (every connection closed, new ones closed at
/// once) and restore.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    cut: Arc<tokio::sync::watch::Sender<bool>>,
    open: Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    /// Relays from a free loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = open.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *rx.borrow() {
                    drop(client);
                    continue;
                }
                let mut cut = rx.clone();
                let open = counted.clone();
                open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.wait_for(|c| *c) => {}
                        }
                    }
                    open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        Relay {
            addr,
            cut: Arc::new(tx),
            open,
        }
    }

    /// Closes every relayed connection (returns once they are closed) and refuses new ones
    /// until [`Relay::restore`].
    pub async fn cut(&self) {
        let _ = self.cut.send(true);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.open.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "relayed connections stay open"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Relays again.
    pub fn restore(&self) {
        let _ = self.cut.send(false);
    }
}
