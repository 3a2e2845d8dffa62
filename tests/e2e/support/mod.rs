//! Shared harness: a scriptable origin, the real `tessera` binary, guest builds, an HTTP client.

pub mod admin;
pub mod mmdb;
pub mod redis;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tessera::clock::Clock;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Generous bound for anything a loaded CI machine may take; never an assertion on speed.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// What the origin saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
}

/// What the origin answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
    /// The reply waits for a permit of this gate (taken for good), so a test decides when.
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
    /// More body after `body`, sent when the test opens its gate (no Content-Length).
    pub tail: Option<Tail>,
}

/// The second part of a streamed reply.
#[derive(Debug, Clone)]
pub struct Tail {
    /// Opened by the test (a permit is taken for good).
    pub gate: Arc<tokio::sync::Semaphore>,
    /// What follows; `None`: the connection breaks instead.
    pub rest: Option<Vec<u8>>,
}

impl Reply {
    pub fn ok(body: &str) -> Reply {
        Reply {
            status: 200,
            headers: vec![],
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
            gate: None,
            tail: None,
        }
    }
    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            ..Reply::ok(body)
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
    /// Holds the reply until the test adds a permit to `gate`.
    pub fn gate(mut self, gate: &Arc<tokio::sync::Semaphore>) -> Reply {
        self.gate = Some(gate.clone());
        self
    }
    /// Sends the body at once and `rest` once the test adds a permit to `gate`, chunked.
    pub fn then(mut self, gate: &Arc<tokio::sync::Semaphore>, rest: &[u8]) -> Reply {
        self.tail = Some(Tail {
            gate: gate.clone(),
            rest: Some(rest.to_vec()),
        });
        self
    }
    /// Sends the body at once and breaks the connection once the test opens `gate`.
    pub fn then_break(mut self, gate: &Arc<tokio::sync::Semaphore>) -> Reply {
        self.tail = Some(Tail {
            gate: gate.clone(),
            rest: None,
        });
        self
    }
}

type OriginBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// The reply's body: whole, or its first part now and the tail when the gate opens.
fn reply_body(body: Vec<u8>, tail: Option<Tail>) -> OriginBody {
    let Some(tail) = tail else {
        return Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed();
    };
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        let _ = tx
            .send(Ok(hyper::body::Frame::data(Bytes::from(body))))
            .await;
        if let Ok(p) = tail.gate.acquire().await {
            p.forget();
        }
        let last = match tail.rest {
            Some(rest) => Ok(hyper::body::Frame::data(Bytes::from(rest))),
            None => Err(std::io::Error::other("origin breaks off")),
        };
        let _ = tx.send(last).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    http_body_util::StreamBody::new(stream).boxed()
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A real HTTP origin on an ephemeral loopback port that records every request.
pub struct Origin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Origin {
    /// Starts an origin; `handler` gets the request and its 1-based sequence number.
    pub async fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let log = seen.clone();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut accept_stopped = stopped.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => break },
                    _ = accept_stopped.changed() => break,
                };
                let (log, handler) = (log.clone(), handler.clone());
                let mut conn_stopped = stopped.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (log, handler) = (log.clone(), handler.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let _ = body.collect().await;
                            let s = Seen {
                                method: parts.method.clone(),
                                path_and_query: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                headers: parts.headers.clone(),
                            };
                            let n = {
                                let mut l = log.lock().unwrap();
                                l.push(s.clone());
                                l.len()
                            };
                            let reply = handler(&s, n);
                            if let Some(gate) = &reply.gate {
                                gate.acquire().await.unwrap().forget();
                            }
                            if !reply.delay.is_zero() {
                                tokio::time::sleep(reply.delay).await;
                            }
                            let mut r = Response::new(reply_body(reply.body, reply.tail));
                            *r.status_mut() = StatusCode::from_u16(reply.status).unwrap();
                            for (k, v) in reply.headers {
                                r.headers_mut().append(
                                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                                    v.parse().unwrap(),
                                );
                            }
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    // Stopping closes kept-alive connections too: the origin is really gone.
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_stopped.changed() => {}
                    }
                });
            }
        });
        Origin { addr, seen, stop }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests seen so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Origin {
    /// Closes the listener and every connection: later requests are refused.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The repository root (parent of `runtime/`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds a guest crate once per test run and returns its component.
pub fn guest(rel_dir: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    if let Some(p) = built.get(rel_dir) {
        return p.clone();
    }
    let name = rel_dir.rsplit('/').next().unwrap();
    let target = repo().join("target").join("test-guests");
    let out = target.join(format!("{name}.wasm"));
    let path = tessera::builder::build_guest(&repo().join(rel_dir), Some(&out), Some(&target))
        .expect("guest builds");
    built.insert(rel_dir.to_owned(), path.clone());
    path
}

/// A running `tessera` process; killed on drop.
pub struct Proxy {
    pub addr: SocketAddr,
    /// The admin listener, when the process started one.
    pub admin: Option<SocketAddr>,
    /// The `[[listener]]` addresses, as `(scheme, address)`.
    pub also: Vec<(String, SocketAddr)>,
    /// The config file, when started from one.
    pub config: Option<PathBuf>,
    child: tokio::process::Child,
    _dir: Option<tempfile::TempDir>,
    client: KeepAlive,
    logs: Arc<Mutex<Vec<String>>>,
}

/// A client that keeps connections alive between requests, as browsers do.
pub type KeepAlive = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

fn keep_alive() -> KeepAlive {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// How to start a `tessera` process: arguments, environment, and whether to keep its logs.
pub struct Launch {
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: Option<tempfile::TempDir>,
    config: Option<PathBuf>,
    capture_logs: bool,
    /// A program the binary is run through (its path is that program's last argument).
    wrap: Vec<String>,
}

impl Launch {
    /// `tessera serve --origin URL [--script S]…` on an ephemeral port.
    pub fn quick(origin: &Origin, scripts: &[PathBuf]) -> Launch {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--origin".into(),
            origin.url(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        for s in scripts {
            args.push("--script".into());
            args.push(s.display().to_string());
        }
        Launch {
            args,
            env: Vec::new(),
            dir: None,
            config: None,
            capture_logs: false,
            wrap: Vec::new(),
        }
    }

    /// `tessera serve --config FILE` with `toml` written to a temp dir; `{origin}`,
    /// `{compiled}` and `{dir}` (the temp dir) are replaced. The dir also holds
    /// `admin-token` (0600) with [`admin::TOKEN`].
    pub fn config(origin: &Origin, toml: &str) -> Launch {
        Launch::config_for(&origin.url(), toml)
    }

    /// [`Launch::config`] with `{origin}` replaced by `origin_url`.
    pub fn config_for(origin_url: &str, toml: &str) -> Launch {
        let dir = tempfile::tempdir().unwrap();
        admin::write_token_file(dir.path());
        let path = dir.path().join("tessera.toml");
        let text = toml
            .replace("{origin}", origin_url)
            .replace("{compiled}", &compiled_dir().display().to_string())
            .replace("{dir}", &dir.path().display().to_string());
        std::fs::write(&path, text).unwrap();
        Launch {
            args: vec![
                "serve".into(),
                "--config".into(),
                path.display().to_string(),
                "--listen".into(),
                "127.0.0.1:0".into(),
            ],
            env: Vec::new(),
            dir: Some(dir),
            config: Some(path),
            capture_logs: false,
            wrap: Vec::new(),
        }
    }

    /// The config file this launch writes (with [`Launch::config`]).
    pub fn config_path(&self) -> &Path {
        self.config.as_deref().expect("launched from a config")
    }

    /// One more command-line argument.
    pub fn arg(mut self, a: &str) -> Launch {
        self.args.push(a.into());
        self
    }

    /// An environment variable for the process.
    pub fn env(mut self, k: &str, v: &str) -> Launch {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Runs the binary through `program args… <tessera> <serve args…>` (e.g. `unshare`).
    pub fn through(mut self, program: &[&str]) -> Launch {
        self.wrap = program.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Keeps stderr (info-level logs) for [`Proxy::logs`].
    pub fn capture_logs(mut self) -> Launch {
        self.capture_logs = true;
        self
    }

    /// Starts the process and waits until it listens.
    pub async fn start(self) -> Proxy {
        let Launch {
            args,
            env,
            dir,
            config,
            capture_logs,
            wrap,
        } = self;
        let bin = env!("CARGO_BIN_EXE_tessera");
        let mut cmd = match wrap.split_first() {
            None => tokio::process::Command::new(bin),
            Some((program, rest)) => {
                let mut c = tokio::process::Command::new(program);
                c.args(rest).arg(bin);
                c
            }
        };
        cmd.args(&args)
            // Quiet by default: hostile tests make proxies log on purpose.
            .env(
                "TESSERA_LOG",
                std::env::var("TESSERA_TEST_LOG").unwrap_or_else(|_| "off".into()),
            )
            .env_remove("TESSERA_ADMIN_TOKEN")
            .env("HOSTNAME", "tessera")
            .env("XDG_CACHE_HOME", compiled_dir())
            .stdout(Stdio::piped())
            .stderr(if capture_logs {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .kill_on_drop(true);
        if capture_logs {
            cmd.env("TESSERA_LOG", "info");
        }
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("tessera binary starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    let mut logs = logs.lock().unwrap();
                    if logs.len() < 100_000 {
                        logs.push(l);
                    }
                }
            });
        }
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (addr, admin, also) = tokio::time::timeout(PATIENCE, async {
            let mut admin = None;
            let mut also = Vec::new();
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(a) = line.strip_prefix("tessera admin on http://") {
                    admin = Some(a.parse::<SocketAddr>().unwrap());
                }
                if let Some(l) = line.strip_prefix("tessera also listening on ") {
                    let (scheme, a) = l.split_once("://").unwrap();
                    also.push((scheme.to_owned(), a.parse::<SocketAddr>().unwrap()));
                }
                if let Some(a) = line.strip_prefix("tessera listening on http://") {
                    return (a.parse::<SocketAddr>().unwrap(), admin, also);
                }
            }
            panic!("tessera exited before listening (args {args:?})");
        })
        .await
        .expect("tessera listens in time");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Proxy {
            addr,
            admin,
            also,
            config,
            child,
            _dir: dir,
            client: keep_alive(),
            logs,
        }
    }
}

impl Proxy {
    /// Kills the process (SIGKILL) and waits until it is gone.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// `tessera serve --origin URL [--script S]…` on an ephemeral port.
    pub async fn quick(origin: &Origin, scripts: &[PathBuf]) -> Proxy {
        Launch::quick(origin, scripts).start().await
    }

    /// `tessera serve --config FILE` with `toml` written to a temp dir; `{origin}` is replaced.
    pub async fn with_config(origin: &Origin, toml: &str) -> Proxy {
        Launch::config(origin, toml).start().await
    }

    /// Log lines so far (with [`Launch::capture_logs`]).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Sends a request on a kept-alive connection and reads the whole response.
    pub async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
        send_with(&self.client, self.addr, method, path, headers).await
    }

    /// GET with headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Got {
        self.send("GET", path, headers).await
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Waits for the process to exit and returns whether it exited successfully.
    pub async fn exit_status(&mut self) -> bool {
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("tessera exits in time")
            .unwrap()
            .success()
    }
}

/// Where tests keep compiled components, shared by all test processes; private (0700),
/// as the proxy insists for a directory of native code.
pub fn compiled_dir() -> PathBuf {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = repo().join("target").join("test-compiled");
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir);
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    dir
}

/// The real library server in this process, on a virtual clock the test moves forward.
pub struct Lib {
    pub addr: SocketAddr,
    /// The admin listener, when the config has `[admin]`.
    pub admin: Option<SocketAddr>,
    client: KeepAlive,
    pub clock: Clock,
    running: Option<tessera::proxy::Running>,
    admin_server: Option<tessera::admin::Admin>,
    _dir: tempfile::TempDir,
}

impl Lib {
    /// Serves `toml` (with `{origin}` replaced) on an ephemeral port. The config's dir holds
    /// `admin-token` (0600) with [`admin::TOKEN`]; an `[admin]` table gets its listener on an
    /// ephemeral port too.
    pub async fn start(origin: &Origin, toml: &str) -> Lib {
        Lib::start_on(origin, toml, Clock::virtual_clock()).await
    }

    /// [`Lib::start`] on a given clock (e.g. [`Clock::frozen`], shared with the origin).
    pub async fn start_on(origin: &Origin, toml: &str, clock: Clock) -> Lib {
        let dir = tempfile::tempdir().unwrap();
        admin::write_token_file(dir.path());
        let path = dir.path().join("tessera.toml");
        let text = toml.replace("{origin}", &origin.url());
        let mut config = tessera::config::Config::parse(&path, &text).expect("valid config");
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.node_name = "tessera".into();
        config.compiled_dir = Some(compiled_dir().join("tessera").join("compiled"));
        let admin_cfg = config.admin.clone();
        let shared = tessera::proxy::build(config, clock.clone())
            .await
            .expect("proxy builds");
        let admin_server = match admin_cfg.listen {
            Some(_) => Some(
                tessera::admin::start(shared.clone(), "127.0.0.1:0".parse().unwrap(), &admin_cfg)
                    .await
                    .expect("admin listens"),
            ),
            None => None,
        };
        let running = tessera::proxy::serve(shared).await.expect("proxy listens");
        Lib {
            addr: running.addr,
            admin: admin_server.as_ref().map(|a| a.addr),
            client: keep_alive(),
            clock,
            running: Some(running),
            admin_server,
            _dir: dir,
        }
    }

    /// A site on `origin` with extra `[site]` lines, e.g. `"[site.caching]\nstale_if_error = 60"`.
    pub async fn site(origin: &Origin, extra: &str) -> Lib {
        let toml = format!("[[site]]\nname = \"s\"\norigin = \"{{origin}}\"\n{extra}\n");
        Lib::start(origin, &toml).await
    }

    /// GET with headers, on a kept-alive connection.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Got {
        send_with(&self.client, self.addr, "GET", path, headers).await
    }

    /// Moves the cache's clock forward.
    pub fn advance(&self, secs: u64) {
        assert!(self.clock.advance(Duration::from_secs(secs)));
    }

    /// The server's shared state (store, generation).
    pub fn shared(&self) -> &tessera::proxy::Shared {
        &self.running.as_ref().expect("running").shared
    }
}

impl Drop for Lib {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            // Stop accepting; the test runtime ends the rest.
            drop(tokio::spawn(r.shutdown()));
        }
        if let Some(a) = self.admin_server.take() {
            drop(tokio::spawn(a.shutdown()));
        }
    }
}

/// Writes `bytes` on a fresh connection and reads until the server closes it; panics if it
/// has not closed within `wait`.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    match tokio::time::timeout(wait, stream.read_to_end(&mut out)).await {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => panic!(
            "the server did not close the connection; read so far: {}",
            String::from_utf8_lossy(&out)
        ),
    }
}

/// Reads from `s` until `want` has arrived or the connection closes (to its end when `want`
/// is empty); what was read. Bounded by PATIENCE.
pub async fn read_to(s: &mut tokio::net::TcpStream, want: &str) -> String {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while want.is_empty() || !String::from_utf8_lossy(&got).contains(want) {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .unwrap_or_else(|_| panic!("`{want}` never arrived"));
    String::from_utf8_lossy(&got).into_owned()
}

/// Polls until the origin has seen `n` requests (background work); bounded by PATIENCE.
pub async fn origin_reaches(origin: &Origin, n: usize) -> usize {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while origin.count() < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    origin.count()
}

/// A complete response.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    pub fn h(&self, name: &str) -> String {
        let all: Vec<&str> = self
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        all.join(", ")
    }
    pub fn cache_status(&self) -> String {
        self.h("cache-status")
    }
    /// The `ttl` parameter of our `Cache-Status` member.
    pub fn ttl(&self) -> i64 {
        let cs = self.cache_status();
        // Our member is the last; upstream caches' come first.
        let ours = cs.rsplit(',').next().unwrap_or_default();
        let p = ours
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("ttl="))
            .unwrap_or_else(|| panic!("no ttl in {cs}"));
        p.parse().unwrap()
    }
    /// Whether this cache answered from its store (the last `X-Cache` member is ours; the
    /// ones before it are upstream caches').
    pub fn hit(&self) -> bool {
        self.h("x-cache").rsplit(", ").next() == Some("HIT")
    }
}

/// One request through a keep-alive client.
pub async fn send_with(
    client: &KeepAlive,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Got {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", "shop.test");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    let resp = tokio::time::timeout(PATIENCE, client.request(req))
        .await
        .expect("response in time")
        .unwrap();
    collect(resp).await
}

async fn collect(resp: Response<Incoming>) -> Got {
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .expect("body in time")
        .unwrap()
        .to_bytes();
    Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A GET's raw body bytes (for compressed bodies), over a fresh connection.
pub async fn send_bytes(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder().uri(path).header("host", "shop.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    resp.into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

/// One request over a fresh connection to `addr`.
pub async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", "shop.test");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    exchange(addr, req.body(Full::new(Bytes::new())).unwrap()).await
}

/// Sends `req` over a fresh HTTP/1.1 connection to `addr` and reads the whole response.
pub async fn exchange(addr: SocketAddr, req: Request<Full<Bytes>>) -> Got {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = tokio::time::timeout(PATIENCE, sender.send_request(req))
        .await
        .expect("response in time")
        .unwrap();
    collect(resp).await
}

/// Runs the `tessera` binary to completion and returns (success, stdout + stderr).
pub fn run_cli(args: &[&str]) -> (bool, String) {
    run_cli_env(args, &[])
}

/// [`run_cli`] with environment variables.
pub fn run_cli_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let (ok, stdout, stderr) = run_cli_split(args, env);
    (ok, format!("{stdout}{stderr}"))
}

/// Runs the binary, returning success, standard output and standard error apart. A
/// process still running after [`PATIENCE`] is killed (and reported as failed), so a
/// command that wrongly starts serving cannot hang; its output is read as it comes, so a
/// long report never blocks it on a full pipe.
pub fn run_cli_split(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(args)
        .env("XDG_CACHE_HOME", compiled_dir())
        .env_remove("TESSERA_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(PATIENCE) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on the child's pid; it has not been reaped (wait is pending).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            rx.recv().unwrap().unwrap()
        }
    };
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
